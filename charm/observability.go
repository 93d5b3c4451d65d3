package charm

import (
	"fmt"
	"strings"

	"github.com/gruyaume/goops"
	"go.yaml.in/yaml/v3"

	"github.com/calico-lb/calico-lb/charm/cos"
	"github.com/calico-lb/calico-lb/workload/pebblelayer"
)

// DashboardEndpoint is the grafana_dashboard relation.
const DashboardEndpoint = "grafana-dashboard"

// topology is this unit's place in Juju, for COS.
func topology() cos.Topology {
	env := goops.ReadEnv()
	app, _, _ := strings.Cut(env.UnitName, "/")
	return cos.Topology{Model: env.ModelName, ModelUUID: env.ModelUUID, Application: app, Unit: env.UnitName}
}

// publishDashboard gives each grafana-dashboard relation the dashboard
// (the leader, as the application's data). The data carries a fresh uuid
// each time, so it is written only when the dashboard in it differs from
// what the relation has: every hook would otherwise wake Grafana.
func (c *Charm) publishDashboard() error {
	data, err := cos.DashboardData(topology())
	if err != nil {
		return err
	}
	want, err := cos.DecodeDashboards(data)
	if err != nil {
		return err
	}
	for _, id := range c.facts.dashboardRels {
		if have, err := goops.GetAppRelationData(id, goops.ReadEnv().UnitName); err == nil {
			if got, err := cos.DecodeDashboards(have[cos.DashboardKey]); err == nil && sameDashboards(got, want) {
				continue
			}
		}
		if err := goops.SetAppRelationData(id, map[string]string{cos.DashboardKey: data}); err != nil {
			return fmt.Errorf("%s %s: %w", DashboardEndpoint, id, err)
		}
	}
	return nil
}

func sameDashboards(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if string(b[k]) != string(v) {
			return false
		}
	}
	return true
}

// logTargets are the Pebble log targets for the logging relations' Loki
// units, and the charm's earlier targets whose Loki has gone (from the
// plan Pebble has now), switched off. A Loki unit whose endpoint cannot
// be read is left out, with a warning.
func (c *Charm) logTargets() (map[string]pebblelayer.LogTarget, error) {
	ids, err := relationIDs(cos.LoggingEndpoint)
	if err != nil {
		return nil, err
	}
	lokis := map[string]string{}
	for _, id := range ids {
		units, err := goops.ListRelationUnits(id)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", cos.LoggingEndpoint, id, err)
		}
		for _, u := range units {
			data, err := goops.GetUnitRelationData(id, u)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", cos.LoggingEndpoint, id, err)
			}
			if data["endpoint"] == "" {
				continue // not published yet
			}
			loc, err := cos.LokiURL(data["endpoint"])
			if err != nil {
				goops.LogWarningf("%s: %s's %v", cos.LoggingEndpoint, u, err)
				continue
			}
			lokis[u] = loc
		}
	}
	current := map[string]string{}
	if b, err := c.pebbleClient().PlanBytes(nil); err == nil {
		var p struct {
			LogTargets map[string]pebblelayer.LogTarget `yaml:"log-targets"`
		}
		if yaml.Unmarshal(b, &p) == nil {
			for name, t := range p.LogTargets {
				current[name] = t.Location
			}
		}
	}
	return cos.LogTargets(lokis, current, topology()), nil
}

// alertRules is the alert_rules value for metrics-endpoint.
func alertRules() (string, error) { return cos.AlertRules(topology()) }
