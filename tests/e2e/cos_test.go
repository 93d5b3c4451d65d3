package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/charm"
	"github.com/calico-lb/calico-lb/charm/cos"
	"github.com/calico-lb/calico-lb/tests/fakejuju"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/promrules"
)

// lokiStandIn records what Pebble pushes to Loki's push API: each
// stream's labels.
type lokiStandIn struct {
	mu      sync.Mutex
	streams []map[string]string
}

func (l *lokiStandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Streams []struct {
			Stream map[string]string `json:"stream"`
		} `json:"streams"`
	}
	b, _ := io.ReadAll(r.Body)
	if r.URL.Path != "/loki/api/v1/push" || json.Unmarshal(b, &body) != nil {
		http.Error(w, "bad push", http.StatusBadRequest)
		return
	}
	l.mu.Lock()
	for _, s := range body.Streams {
		l.streams = append(l.streams, s.Stream)
	}
	l.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (l *lokiStandIn) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.streams)
}

// TestCharmCOS: the three COS relations through the real dispatch binary,
// a real Pebble and the real workload. grafana-dashboard carries the
// dashboard, which decodes back to the dashboard file; metrics-endpoint
// carries the alert rules with the topology, which Prometheus' rule
// parser loads, and which Prometheus' own alerting rules, evaluated on
// the workload's real metrics with a full pool and a Service waiting,
// fire exactly for the pool alerts; logging puts a Loki log target into
// Pebble's plan, which Pebble accepts and really pushes the workload's
// logs with the topology to, until -broken switches it off.
func TestCharmCOS(t *testing.T) {
	loki := &lokiStandIn{}
	srv := httptest.NewServer(loki)
	defer srv.Close()
	cfg := fakejuju.Defaults(t)
	cfg["pools"] = "10.0.0.0/30"
	cfg["peering-mode"] = "calico"
	endpoint := fmt.Sprintf(`{"url": "%s/loki/api/v1/push"}`, srv.URL)
	b := newCharmBed(t, &fakejuju.State{Config: cfg, Leader: true, Address: "127.0.0.1",
		Relations: map[string][]*fakejuju.Relation{
			charm.MetricsEndpoint:   {{ID: "metrics-endpoint:5", RemoteApp: "prometheus"}},
			charm.DashboardEndpoint: {{ID: "grafana-dashboard:6", RemoteApp: "grafana"}},
			// Loki joins later, with logging-relation-changed.
			cos.LoggingEndpoint: {{ID: "logging:7", RemoteApp: "loki"}},
		}})
	j, hook, pb, kube := b.j, b.hook, b.pb, b.kube
	hook("install")
	hook("calico-lb-pebble-ready")
	hook("config-changed")
	waitHTTP(t, "http://"+b.apiAddr+"/readyz")

	// The dashboard.
	st := j.State(t)
	boards, err := cos.DecodeDashboards(st.Relation("grafana-dashboard:6").AppData[cos.DashboardKey])
	if err != nil || len(boards["file:calico-lb"]) == 0 {
		t.Fatalf("dashboards data: %v %q", err, st.Relation("grafana-dashboard:6").AppData)
	}
	published, err := cos.Comparable(boards["file:calico-lb"])
	if file, _ := cos.Comparable(cos.Dashboard); err != nil || published != file {
		t.Fatalf("the published dashboard does not decode back to the dashboard file: %v", err)
	}
	before := st.Relation("grafana-dashboard:6").AppData[cos.DashboardKey]
	hook("update-status")
	if j.State(t).Relation("grafana-dashboard:6").AppData[cos.DashboardKey] != before {
		t.Fatal("the dashboard was written again though it did not change")
	}

	// The log target: none while Loki has said nothing; in Pebble's plan
	// once logging-relation-changed brings its endpoint, and Pebble pushes
	// to it.
	planYAML := func() string {
		p, err := pb.Client.PlanBytes(nil)
		if err != nil {
			t.Fatal(err)
		}
		return string(p)
	}
	if p := planYAML(); strings.Contains(p, "log-targets") {
		t.Fatalf("a log target before Loki published its endpoint:\n%s", p)
	}
	j.Update(t, func(s *fakejuju.State) {
		s.Relations[cos.LoggingEndpoint][0].Remote = map[string]map[string]string{"loki/0": {"endpoint": endpoint}}
	})
	hook("logging-relation-changed")
	var plan struct {
		LogTargets map[string]struct {
			Type     string            `yaml:"type"`
			Location string            `yaml:"location"`
			Services []string          `yaml:"services"`
			Labels   map[string]string `yaml:"labels"`
		} `yaml:"log-targets"`
	}
	if err := yaml.Unmarshal([]byte(planYAML()), &plan); err != nil {
		t.Fatal(err)
	}
	tg := plan.LogTargets["loki-loki-0"]
	if tg.Type != "loki" || tg.Location != srv.URL+"/loki/api/v1/push" || !slices.Equal(tg.Services, []string{"all"}) || tg.Labels["juju_model"] != "lb" || tg.Labels["juju_unit"] == "" {
		t.Fatalf("Pebble's plan has no Loki target for loki/0:\n%s\nlogs: %v\ncalls: %v", planYAML(), j.State(t).Logs, j.State(t).Calls)
	}
	if _, err := netns.WaitFor(context.Background(), 60*time.Second, func() bool { return loki.count() > 0 }); err != nil {
		t.Fatal("Pebble pushed no logs to Loki within a minute")
	}
	loki.mu.Lock()
	first := loki.streams[0]
	loki.mu.Unlock()
	if first["juju_application"] != "calico-lb" || first["juju_charm"] != "calico-lb" || first["pebble_service"] != "calico-lb" {
		t.Fatalf("Loki got a stream labelled %v", first)
	}
	t.Logf("Loki stand-in got %d stream(s); the first labelled %v", loki.count(), first)

	// A full pool with a Service waiting: the workload's real metrics.
	ctx := context.Background()
	for i := range 4 {
		if _, err := kube.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("svc", i)},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var scrape string
	if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool {
		scrape = httpBody(t, "http://127.0.0.1:9401/metrics")
		return strings.Contains(scrape, `calico_lb_services_waiting{reason="PoolExhausted"} 1`)
	}); err != nil {
		t.Fatalf("no Service waits on the exhausted pool:\n%s", scrape)
	}
	rulesData := j.State(t).Relation("metrics-endpoint:5").AppData[cos.AlertRulesKey]
	target := map[string]string{"juju_model": "lb", "juju_model_uuid": fakejuju.ModelUUID, "juju_application": "calico-lb", "juju_charm": "calico-lb", "juju_unit": "calico-lb/0"}
	series, err := promrules.FromScrape(scrape, "calico_lb_", target)
	if err != nil {
		t.Fatal(err)
	}
	firing := promrules.Firing(t, rulesData, series, 2*time.Hour)
	wantFiring := []string{"CalicoLBPoolExhausted", "CalicoLBPoolNearlyFull", "CalicoLBServiceWaiting"}
	if !slices.Equal(firing, wantFiring) {
		t.Fatalf("alerts firing on the workload's metrics: %v, want %v", firing, wantFiring)
	}
	// The same metrics from another application's unit: no rule matches.
	target["juju_application"], target["juju_unit"] = "other", "other/0"
	others, err := promrules.FromScrape(scrape, "calico_lb_", target)
	if err != nil {
		t.Fatal(err)
	}
	if other := promrules.Firing(t, rulesData, others, 2*time.Hour); len(other) != 0 {
		t.Fatalf("the rules fire on another application's metrics: %v", other)
	}

	// The relation goes: the target forwards nothing, and Pebble still
	// accepts the layer.
	j.Update(t, func(s *fakejuju.State) { s.Relations[cos.LoggingEndpoint][0].Remote = nil })
	hook("logging-relation-broken")
	plan.LogTargets = nil
	if err := yaml.Unmarshal([]byte(planYAML()), &plan); err != nil {
		t.Fatal(err)
	}
	// Pebble keeps "-all" in the merged plan: no service's logs go.
	if tg := plan.LogTargets["loki-loki-0"]; !slices.Equal(tg.Services, []string{"-all"}) {
		t.Fatalf("after logging-relation-broken the target still forwards %v:\n%s", tg.Services, planYAML())
	}
	time.Sleep(3 * time.Second) // what Pebble had buffered is flushed
	n := loki.count()
	if _, err := kube.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "after"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	if loki.count() != n {
		t.Fatalf("Pebble pushed %d more stream(s) after the relation went", loki.count()-n)
	}
}
