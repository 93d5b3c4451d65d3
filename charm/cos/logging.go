package cos

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/calico-lb/calico-lb/workload/pebblelayer"
)

// LoggingEndpoint is the loki_push_api relation.
const LoggingEndpoint = "logging"

// lokiPrefix names the log targets the charm owns in its Pebble layer.
const lokiPrefix = "loki-"

// LokiURL reads a loki_push_api provider unit's "endpoint" value:
// {"url": "http://…/loki/api/v1/push"}.
func LokiURL(endpoint string) (string, error) {
	var e struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal([]byte(endpoint), &e); err != nil {
		return "", fmt.Errorf("endpoint %q: %w", endpoint, err)
	}
	u, err := url.Parse(e.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("endpoint %q: not an http(s) URL", endpoint)
	}
	return e.URL, nil
}

// TargetName is the log target for a Loki unit ("loki/0": "loki-loki-0").
func TargetName(lokiUnit string) string { return lokiPrefix + strings.ReplaceAll(lokiUnit, "/", "-") }

// LogTargets are the Pebble log targets for the Loki units related now
// (unit -> push URL): every service's logs, labelled with the topology
// and the unit. A target the layer has (current: name -> location) whose
// Loki has gone is kept with no services, so that it forwards nothing:
// a layer combined into Pebble's plan cannot drop an entry, only
// override it.
func LogTargets(lokis map[string]string, current map[string]string, t Topology) map[string]pebblelayer.LogTarget {
	out := map[string]pebblelayer.LogTarget{}
	labels := t.Labels()
	labels["juju_unit"] = t.Unit
	for unit, loc := range lokis {
		out[TargetName(unit)] = pebblelayer.LogTarget{Override: "replace", Type: "loki", Location: loc, Services: []string{"all"}, Labels: labels}
	}
	for name, loc := range current {
		if _, ok := out[name]; !ok && strings.HasPrefix(name, lokiPrefix) {
			out[name] = pebblelayer.LogTarget{Override: "replace", Type: "loki", Location: loc, Services: []string{"-all"}}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
