package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"
	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/charm"
	"github.com/calico-lb/calico-lb/charm/cos"
	"github.com/calico-lb/calico-lb/tests/fakejuju"
	"github.com/calico-lb/calico-lb/tests/netns"
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
			cos.LoggingEndpoint:     {{ID: "logging:7", RemoteApp: "loki", Remote: map[string]map[string]string{"loki/0": {"endpoint": endpoint}}}},
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
	var got, want map[string]any
	_ = json.Unmarshal(boards["file:calico-lb"], &got)
	_ = json.Unmarshal(cos.Dashboard, &want)
	if got["title"] != want["title"] || len(got["panels"].([]any)) != len(want["panels"].([]any)) || len(got["uid"].(string)) != 40 {
		t.Fatalf("the published dashboard is not the dashboard file: %v", got["title"])
	}
	before := st.Relation("grafana-dashboard:6").AppData[cos.DashboardKey]
	hook("update-status")
	if j.State(t).Relation("grafana-dashboard:6").AppData[cos.DashboardKey] != before {
		t.Fatal("the dashboard was written again though it did not change")
	}

	// The log target: in Pebble's plan, and Pebble pushes to it.
	planYAML := func() string {
		p, err := pb.Client.PlanBytes(nil)
		if err != nil {
			t.Fatal(err)
		}
		return string(p)
	}
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
	firing := evalAlerts(t, rulesData, scrape, map[string]string{"juju_model": "lb", "juju_model_uuid": fakejuju.ModelUUID, "juju_application": "calico-lb", "juju_charm": "calico-lb", "juju_unit": "calico-lb/0"})
	wantFiring := []string{"CalicoLBPoolExhausted", "CalicoLBPoolNearlyFull", "CalicoLBServiceWaiting"}
	if !slices.Equal(firing, wantFiring) {
		t.Fatalf("alerts firing on the workload's metrics: %v, want %v", firing, wantFiring)
	}
	// The same metrics from another application's unit: no rule matches.
	if other := evalAlerts(t, rulesData, scrape, map[string]string{"juju_model": "lb", "juju_model_uuid": fakejuju.ModelUUID, "juju_application": "other", "juju_charm": "calico-lb", "juju_unit": "other/0"}); len(other) != 0 {
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

// evalAlerts loads the alert_rules data with Prometheus' rule parser and
// evaluates each rule with Prometheus' alerting rules on the scraped
// metrics, labelled with topo as Prometheus labels the target, held
// constant for two hours (longer than any rule's for:). It returns the
// firing alerts' names, sorted.
func evalAlerts(t *testing.T, data, scrape string, topo map[string]string) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(data), &v); err != nil {
		t.Fatalf("alert_rules %q: %v", data, err)
	}
	y, _ := yaml.Marshal(v)
	groups, errs := rulefmt.Parse(y, false, model.UTF8Validation)
	if len(errs) > 0 {
		t.Fatalf("rulefmt: %v", errs)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(scrape))
	if err != nil {
		t.Fatal(err)
	}
	const steps, step = 480, 15 * time.Second
	var load strings.Builder
	fmt.Fprintf(&load, "load %s\n", step)
	for name, mf := range mfs {
		if !strings.HasPrefix(name, "calico_lb_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			var val float64
			switch {
			case m.GetGauge() != nil:
				val = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				val = m.GetCounter().GetValue()
			default:
				continue
			}
			ls := map[string]string{}
			for k, v := range topo {
				ls[k] = v
			}
			for _, l := range m.GetLabel() {
				ls[l.GetName()] = l.GetValue()
			}
			keys := make([]string, 0, len(ls))
			for k := range ls {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var parts []string
			for _, k := range keys {
				parts = append(parts, fmt.Sprintf("%s=%q", k, ls[k]))
			}
			fmt.Fprintf(&load, "  %s{%s} %v+0x%d\n", name, strings.Join(parts, ","), val, steps)
		}
	}
	storage := promqltest.LoadedStorage(t, load.String())
	defer storage.Close()
	engine := promqltest.NewTestEngine(t, false, 0, 1_000_000)
	query := rules.EngineQueryFunc(engine, storage)
	var firing []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			expr, err := parser.ParseExpr(r.Expr)
			if err != nil {
				t.Fatalf("%s: %v", r.Alert, err)
			}
			rule := rules.NewAlertingRule(r.Alert, expr, time.Duration(r.For), 0, labels.FromMap(r.Labels), labels.FromMap(r.Annotations), labels.EmptyLabels(), "", false, nil)
			for i := 0; i <= steps; i += 4 {
				if _, err := rule.Eval(context.Background(), 0, time.Unix(0, 0).Add(time.Duration(i)*step), query, nil, 0); err != nil {
					t.Fatalf("%s: %v", r.Alert, err)
				}
			}
			for _, a := range rule.ActiveAlerts() {
				if a.State == rules.StateFiring {
					firing = append(firing, r.Alert)
					break
				}
			}
		}
	}
	sort.Strings(firing)
	return firing
}
