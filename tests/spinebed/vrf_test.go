package spinebed

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/calico-lb/calico-lb/tests/cluster"
)

// TestVRFRecipeDocumented: docs/topologies.md gives the VRF router's
// interfaces and FRR config exactly as the test bed runs them.
func TestVRFRecipeDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(cluster.Root(), "docs", "topologies.md"))
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"VRFRouterSetup": VRFRouterSetup, "VRFRouterFRR": VRFRouterFRR} {
		if !strings.Contains(string(doc), "```sh\n"+text+"```") && !strings.Contains(string(doc), "```\n"+text+"```") {
			t.Errorf("docs/topologies.md does not give %s as the bed runs it:\n%s", name, text)
		}
	}
}
