package charm_test

import (
	"github.com/calico-lb/calico-lb/charm/cos"

	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"
)

func readYAML(t *testing.T, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// metadata.yaml is a sidecar charm with the workload container, its image
// resource, a peer relation and the metrics endpoint.
func TestMetadata(t *testing.T) {
	var md struct {
		Name       string
		Assumes    []string
		Containers map[string]struct{ Resource string }
		Resources  map[string]struct{ Type string }
		Peers      map[string]struct{ Interface string }
		Provides   map[string]struct{ Interface string }
		Requires   map[string]struct{ Interface string }
	}
	readYAML(t, "metadata.yaml", &md)
	if md.Name != "calico-lb" || !slices.Contains(md.Assumes, "k8s-api") {
		t.Fatalf("name %q assumes %v", md.Name, md.Assumes)
	}
	c, ok := md.Containers["calico-lb"]
	if !ok || md.Resources[c.Resource].Type != "oci-image" {
		t.Fatalf("container calico-lb %+v, resources %+v", c, md.Resources)
	}
	if len(md.Peers) != 1 || md.Provides["metrics-endpoint"].Interface != "prometheus_scrape" || md.Provides["grafana-dashboard"].Interface != "grafana_dashboard" ||
		md.Requires[cos.LoggingEndpoint].Interface != "loki_push_api" {
		t.Fatalf("peers %+v provides %+v requires %+v", md.Peers, md.Provides, md.Requires)
	}
}

// actions.yaml has the charm's actions, each documented, with
// typed parameters and no unknown ones accepted.
func TestActions(t *testing.T) {
	var acts map[string]struct {
		Description          string
		Params               map[string]struct{ Type, Description string }
		Required             []string
		AdditionalProperties *bool `yaml:"additionalProperties"`
	}
	readYAML(t, "actions.yaml", &acts)
	want := map[string][]string{ // action -> required params
		"verify": nil, "failover-test": {"service"}, "list-allocations": nil, "bgp-status": nil,
		"reallocate": {"service"}, "apply-pool-change": nil, "sync-calico": nil,
	}
	for name, req := range want {
		a, ok := acts[name]
		if !ok {
			t.Errorf("action %s missing", name)
			continue
		}
		if a.Description == "" || a.AdditionalProperties == nil || *a.AdditionalProperties {
			t.Errorf("%s: needs a description and additionalProperties: false", name)
		}
		if !slices.Equal(a.Required, req) {
			t.Errorf("%s: required %v, want %v", name, a.Required, req)
		}
		for p, spec := range a.Params {
			if spec.Type == "" || spec.Description == "" {
				t.Errorf("%s: param %s needs a type and a description", name, p)
			}
		}
	}
	for name := range acts {
		if _, ok := want[name]; !ok {
			t.Errorf("action %s is not one the charm implements", name)
		}
	}
}
