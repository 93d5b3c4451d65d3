package speaker

import (
	"testing"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/calico-lb/calico-lb/workload/config"
)

// The config's well-known community names carry the values GoBGP (and the
// RFCs) give them.
func TestWellKnownCommunities(t *testing.T) {
	for name, v := range bgp.WellKnownCommunityValueMap {
		c, err := config.ParseCommunity(name)
		if err != nil {
			continue // a name calico-lb does not accept
		}
		if got, ok := c.Standard(); !ok || got != uint32(v) {
			t.Errorf("%s = %#x, GoBGP says %#x", name, got, uint32(v))
		}
	}
	if c := config.MustCommunity("65000:100"); func() uint32 { v, _ := c.Standard(); return v }() != 65000<<16|100 {
		t.Error("65000:100 parsed wrong")
	}
	if p, ok := config.MustCommunity("4200000000:1:2").Large(); !ok || p != [3]uint32{4200000000, 1, 2} {
		t.Errorf("large community parsed as %v", p)
	}
}
