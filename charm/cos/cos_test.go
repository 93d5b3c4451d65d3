package cos

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/ulikunitz/xz"
	"go.yaml.in/yaml/v3"

	"github.com/calico-lb/calico-lb/workload/controller"
	"github.com/calico-lb/calico-lb/workload/speaker"
)

var topo = Topology{Model: "k8s", ModelUUID: "0b6f2a9e-4c1d-4e8a-9f3b-7d5c2e1a6b04", Application: "lb", Unit: "lb/0"}

// The library's Python gives these (hashlib.shake_256, lzma.compress with
// base64): the same names must come out here, or Grafana keys the
// dashboard differently from every other charm's.
func TestEncodingsMatchTheLibrary(t *testing.T) {
	if got := shake("calico-lb-file:calico-lb", 8); got != "f40de69ba7bfe0e6" {
		t.Errorf("alt uid %s", got)
	}
	if got := shake("calico-lb-"+DashboardPath, 20); got != "44bd0175adad4b83edd234f34db60871c60ad08a" {
		t.Errorf("uid %s", got)
	}
	// Python's lzma.compress output decodes with our reader.
	b, _ := base64.StdEncoding.DecodeString("/Td6WFoAAATm1rRGAgAhARYAAAB0L+WjAQAHeyJhIjogMX0A3GfKofJFxeEAASAIuxnZux+2830BAAAAAARZWg==")
	r, err := xz.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if out, _ := io.ReadAll(r); string(out) != `{"a": 1}` {
		t.Errorf("decoded %q", out)
	}
}

func TestDashboardData(t *testing.T) {
	data, err := DashboardData(topo)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Templates map[string]dashboardTemplate `json:"templates"`
		UUID      string                       `json:"uuid"`
	}
	if err := json.Unmarshal([]byte(data), &raw); err != nil {
		t.Fatal(err)
	}
	tmpl, ok := raw.Templates["file:calico-lb"]
	if !ok || len(raw.UUID) != 36 || tmpl.Charm != "calico-lb" || !tmpl.InjectDropdowns || tmpl.AltUID != "f40de69ba7bfe0e6" ||
		tmpl.JujuTopology["model_uuid"] != topo.ModelUUID || tmpl.JujuTopology["unit"] != "lb/0" {
		t.Fatalf("dashboards data %s", data)
	}
	boards, err := DecodeDashboards(data)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(boards["file:calico-lb"], &got); err != nil {
		t.Fatal(err)
	}
	if got["uid"] != "44bd0175adad4b83edd234f34db60871c60ad08a" || !slices.Contains(got["tags"].([]any), any("charm: calico-lb")) {
		t.Fatalf("uid %v tags %v", got["uid"], got["tags"])
	}
	g, err := Comparable(boards["file:calico-lb"])
	w, _ := Comparable(Dashboard)
	if err != nil || g != w {
		t.Fatalf("the published dashboard decodes to something else than the dashboard file: %v", err)
	}
	if again, _ := DashboardData(topo); again == data {
		t.Error("a republish carries the same uuid: Juju would not see a change")
	}
}

// exported is every metric name the controller and the speakers register.
func exported() map[string]bool {
	m := map[string]bool{}
	for _, n := range append(controller.MetricNames(), speaker.MetricNames()...) {
		m[n] = true
	}
	return m
}

// metricsIn parses a PromQL expression and returns the metrics it reads
// (a histogram's series named by the histogram).
func metricsIn(t *testing.T, expr string) []string {
	t.Helper()
	e, err := parser.ParseExpr(expr)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	var names []string
	for _, vs := range selectors(e) {
		n := vs.Name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(n, suffix); ok && strings.HasSuffix(base, "_seconds") {
				n = base
			}
		}
		names = append(names, n)
	}
	return names
}

func selectors(e parser.Expr) []*parser.VectorSelector {
	var out []*parser.VectorSelector
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

// Every panel reads only metrics the workload exports.
func TestDashboardUsesExportedMetrics(t *testing.T) {
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(Dashboard, &d); err != nil {
		t.Fatal(err)
	}
	have, n := exported(), 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, m := range metricsIn(t, tg.Expr) {
				n++
				if !have[m] {
					t.Errorf("panel %q reads %s, which neither the controller nor a speaker registers", p.Title, m)
				}
			}
		}
	}
	if n < 15 {
		t.Fatalf("only %d metric reads in the dashboard", n)
	}
}

// The published rules load with Prometheus' own rule parser; every
// selector is restricted to the topology, every rule is labelled with it,
// reads only exported metrics, and says what to do.
func TestAlertRules(t *testing.T) {
	data, err := AlertRules(topo)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal([]byte(data), &v); err != nil {
		t.Fatal(err)
	}
	y, _ := yaml.Marshal(v)
	groups, errs := rulefmt.Parse(y, false, model.UTF8Validation)
	if len(errs) > 0 {
		t.Fatalf("rulefmt: %v\n%s", errs, y)
	}
	have := exported()
	var names []string
	for _, g := range groups.Groups {
		if g.Name != "k8s_0b6f2a9e_lb_calico-lb_alerts" {
			t.Errorf("group name %q", g.Name)
		}
		for _, r := range g.Rules {
			names = append(names, r.Alert)
			if r.Labels["juju_model_uuid"] != topo.ModelUUID || r.Labels["juju_charm"] != "calico-lb" || r.Labels["severity"] == "" {
				t.Errorf("%s: labels %v", r.Alert, r.Labels)
			}
			if r.Annotations["summary"] == "" || len(r.Annotations["description"]) < 60 {
				t.Errorf("%s: annotations %v", r.Alert, r.Annotations)
			}
			e, _ := parser.ParseExpr(r.Expr)
			for _, vs := range selectors(e) {
				if !have[vs.Name] {
					t.Errorf("%s reads %s, which neither the controller nor a speaker registers", r.Alert, vs.Name)
				}
				found := 0
				for _, m := range vs.LabelMatchers {
					if want, ok := topo.Labels()[m.Name]; ok && m.Value == want {
						found++
					}
				}
				if found != 4 {
					t.Errorf("%s: selector %s lacks the topology matchers", r.Alert, vs)
				}
			}
		}
	}
	want := []string{"CalicoLBPoolNearlyFull", "CalicoLBPoolExhausted", "CalicoLBServiceWaiting", "CalicoLBBGPSessionDown", "CalicoLBNoLeader", "CalicoLBConfigRejected", "CalicoLBPoolChangeHeldBack", "CalicoLBL2ClockSkew", "CalicoLBL2HeartbeatsRejected"}
	if !slices.Equal(names, want) {
		t.Fatalf("alerts %v, want %v", names, want)
	}
}
