// Package promrules evaluates alert rules as Prometheus does, for tests:
// the rules as the charm publishes them (prometheus_scrape's alert_rules
// JSON), loaded with Prometheus' rule parser, and run by Prometheus' own
// alerting rules on series held constant for a while.
package promrules

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
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
)

// Series is one time series' labels (its name under __name__) and value.
type Series struct {
	Labels map[string]string
	Value  float64
	Slope  float64 // added every 15 s: a counter that grows
}

// FromScrape reads a scrape (Prometheus' text format) into series: the
// gauges and counters named with prefix, each labelled with target too, as
// Prometheus labels what it scrapes from a target.
func FromScrape(text, prefix string, target map[string]string) ([]Series, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return nil, err
	}
	var out []Series
	for name, mf := range mfs {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		for _, m := range mf.GetMetric() {
			s := Series{Labels: map[string]string{"__name__": name}}
			switch {
			case m.GetGauge() != nil:
				s.Value = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				s.Value = m.GetCounter().GetValue()
			default:
				continue
			}
			for k, v := range target {
				s.Labels[k] = v
			}
			for _, l := range m.GetLabel() {
				s.Labels[l.GetName()] = l.GetValue()
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// Firing loads the alert_rules data and evaluates every rule every minute
// over series that have held their values for d, and returns the alerts
// firing at the end, sorted.
func Firing(t testing.TB, data string, series []Series, d time.Duration) []string {
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
	const step = 15 * time.Second
	steps := int(d / step)
	var load strings.Builder
	fmt.Fprintf(&load, "load %s\n", step)
	for _, s := range series {
		keys := make([]string, 0, len(s.Labels))
		for k := range s.Labels {
			if k != "__name__" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s=%q", k, s.Labels[k]))
		}
		fmt.Fprintf(&load, "  %s{%s} %v+%vx%d\n", s.Labels["__name__"], strings.Join(parts, ","), s.Value, s.Slope, steps)
	}
	storage := promqltest.LoadedStorage(t, load.String())
	defer storage.Close()
	query := rules.EngineQueryFunc(promqltest.NewTestEngine(t, false, 0, 1_000_000), storage)
	var firing []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			expr, err := parser.ParseExpr(r.Expr)
			if err != nil {
				t.Fatalf("%s: %v", r.Alert, err)
			}
			rule := rules.NewAlertingRule(r.Alert, expr, time.Duration(r.For), 0, labels.FromMap(r.Labels), labels.FromMap(r.Annotations), labels.EmptyLabels(), "", false, nil)
			for at := time.Duration(0); at <= time.Duration(steps)*step; at += time.Minute {
				if _, err := rule.Eval(context.Background(), 0, time.Unix(0, 0).Add(at), query, nil, 0); err != nil {
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
