package cos

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Rules is calico-lb's alert rules file, as shipped.
//
//go:embed alerts/calico-lb.rules
var Rules []byte

// AlertRulesKey is the application data key prometheus_scrape reads.
const AlertRulesKey = "alert_rules"

type ruleGroups struct {
	Groups []ruleGroup `json:"groups" yaml:"groups"`
}

type ruleGroup struct {
	Name  string `json:"name" yaml:"name"`
	Rules []rule `json:"rules" yaml:"rules"`
}

type rule struct {
	Alert       string            `json:"alert" yaml:"alert"`
	Expr        string            `json:"expr" yaml:"expr"`
	For         string            `json:"for,omitempty" yaml:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty" yaml:"annotations,omitempty"`
}

// AlertRules is the alert_rules data for metrics-endpoint: the rules
// file's groups named <model>_<uuid8>_<application>_<group>_alerts, each
// rule labelled with the topology and its expression restricted to it
// (%%juju_topology%% in each selector), as the prometheus_scrape provider
// library publishes rules.
func AlertRules(t Topology) (string, error) {
	var f ruleGroups
	if err := yaml.Unmarshal(Rules, &f); err != nil {
		return "", fmt.Errorf("alert rules: %w", err)
	}
	for gi := range f.Groups {
		g := &f.Groups[gi]
		g.Name = t.identifier() + "_" + g.Name + "_alerts"
		for ri := range g.Rules {
			r := &g.Rules[ri]
			if !strings.Contains(r.Expr, "%%juju_topology%%") {
				return "", fmt.Errorf("alert rule %s: its expression has no %%%%juju_topology%%%% matcher", r.Alert)
			}
			r.Expr = strings.ReplaceAll(r.Expr, "%%juju_topology%%", t.matchers())
			if r.Labels == nil {
				r.Labels = map[string]string{}
			}
			for k, v := range t.Labels() {
				r.Labels[k] = v
			}
		}
	}
	b, err := json.Marshal(f)
	return string(b), err
}
