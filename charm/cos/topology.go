// Package cos is what calico-lb gives the Canonical Observability Stack:
// its Grafana dashboard as grafana_dashboard's provider publishes it, its
// alert rules as prometheus_scrape carries them, and the Pebble log
// targets that send the workload's logs to Loki (loki_push_api). It is
// pure: the charm publishes what it returns.
package cos

import (
	"fmt"
	"strings"
)

// CharmName is the charm's name in metadata.yaml.
const CharmName = "calico-lb"

// Topology is the unit's place in Juju, which COS labels everything with.
type Topology struct {
	Model, ModelUUID, Application, Unit string
}

// Labels are the topology's labels without the unit (alert rules and
// their matchers must hold for every unit of the application).
func (t Topology) Labels() map[string]string {
	return map[string]string{"juju_model": t.Model, "juju_model_uuid": t.ModelUUID, "juju_application": t.Application, "juju_charm": CharmName}
}

// matchers is Labels as PromQL label matchers, in a fixed order.
func (t Topology) matchers() string {
	return fmt.Sprintf(`juju_model=%q,juju_model_uuid=%q,juju_application=%q,juju_charm=%q`, t.Model, t.ModelUUID, t.Application, CharmName)
}

// identifier is the terse name COS gives rule groups: model, the model
// UUID's first 8 characters, application.
func (t Topology) identifier() string {
	short := t.ModelUUID
	if len(short) > 8 {
		short = short[:8]
	}
	return strings.ReplaceAll(strings.Join([]string{t.Model, short, t.Application}, "_"), "/", "_")
}
