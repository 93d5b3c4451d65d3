package calico

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/iprange"
)

func TestPoolCIDRs(t *testing.T) {
	pools := []config.Pool{
		{Name: "a", Addresses: []iprange.Range{iprange.MustParse("10.0.0.1-10.0.0.6"), iprange.MustParse("fd00::/120")}},
		{Name: "b", Addresses: []iprange.Range{iprange.MustParse("192.0.2.0/28")}},
	}
	want := []string{"10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32", "fd00::/120", "192.0.2.0/28"}
	if got := PoolCIDRs(pools); !slices.Equal(got, want) {
		t.Fatalf("PoolCIDRs = %v, want %v", got, want)
	}
}

func TestMerge(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		current, want, before []string
		value                 string
		added, removed, ours  []string
	}{
		{name: "first sync keeps the operator's CIDRs", current: []string{"198.51.100.0/24"}, want: []string{"10.0.0.0/28"},
			value: "198.51.100.0/24 10.0.0.0/28", added: []string{"10.0.0.0/28"}, ours: []string{"10.0.0.0/28"}},
		{name: "nothing to do", current: []string{"198.51.100.0/24", "10.0.0.0/28"}, want: []string{"10.0.0.0/28"}, before: []string{"10.0.0.0/28"},
			value: "198.51.100.0/24 10.0.0.0/28", ours: []string{"10.0.0.0/28"}},
		{name: "a pool moves: only what we added goes", current: []string{"10.0.0.0/28", "198.51.100.0/24"}, want: []string{"10.0.1.0/28"},
			before: []string{"10.0.0.0/28"}, value: "198.51.100.0/24 10.0.1.0/28", added: []string{"10.0.1.0/28"}, removed: []string{"10.0.0.0/28"}, ours: []string{"10.0.1.0/28"}},
		{name: "the operator had our CIDR first: it stays theirs", current: []string{"10.0.0.0/28"}, want: []string{"10.0.0.0/28"},
			value: "10.0.0.0/28"},
		{name: "the operator removed one of ours: it comes back", current: []string{}, want: []string{"10.0.0.0/28"}, before: []string{"10.0.0.0/28"},
			value: "10.0.0.0/28", added: []string{"10.0.0.0/28"}, ours: []string{"10.0.0.0/28"}},
		{name: "one prefix, two spellings", current: []string{"fd00:0:0::/120"}, want: []string{"fd00::/120"}, before: []string{"fd00::/120"},
			value: "fd00:0:0::/120", ours: []string{"fd00::/120"}},
	} {
		ch := Merge(tc.current, tc.want, tc.before)
		if ch.Value != tc.value || !slices.Equal(ch.Added, tc.added) || !slices.Equal(ch.Removed, tc.removed) || !slices.Equal(ch.Ours, tc.ours) {
			t.Errorf("%s: %+v", tc.name, ch)
		}
		if again := Merge(strings.Fields(ch.Value), tc.want, ch.Ours); again.Changed() || again.Value != ch.Value {
			t.Errorf("%s: a second merge changes things: %+v", tc.name, again)
		}
	}
}

// FuzzMerge: whatever is there, the result holds every CIDR we want, keeps
// every CIDR we did not add, drops only ours, and a second merge is a no-op.
func FuzzMerge(f *testing.F) {
	f.Add(uint64(0x0a000000_0a000100), uint64(0xc6336400), uint8(0b1011), uint8(0b0110))
	f.Fuzz(func(t *testing.T, seedA, seedB uint64, curMask, beforeMask uint8) {
		var universe []string
		for _, s := range []uint64{seedA, seedA >> 32, seedB, seedB >> 32} {
			a := netip.AddrFrom4([4]byte{byte(s >> 24), byte(s >> 16), byte(s >> 8), 0})
			universe = append(universe, netip.PrefixFrom(a, 24).String())
		}
		pick := func(mask uint8) []string {
			var out []string
			for i, u := range universe {
				if mask&(1<<i) != 0 && !slices.Contains(out, u) {
					out = append(out, u)
				}
			}
			return out
		}
		current, before, want := pick(curMask), pick(beforeMask), pick(curMask^beforeMask|1)
		ch := Merge(current, want, before)
		value := strings.Fields(ch.Value)
		for _, w := range want {
			if !slices.Contains(value, w) {
				t.Fatalf("wanted %s missing from %q", w, ch.Value)
			}
		}
		for _, c := range current {
			if !slices.Contains(before, c) && !slices.Contains(value, c) {
				t.Fatalf("the operator's %s was removed: %q", c, ch.Value)
			}
		}
		for _, r := range ch.Removed {
			if !slices.Contains(before, r) || slices.Contains(want, r) {
				t.Fatalf("removed %s, which was not ours or is still wanted", r)
			}
		}
		if again := Merge(value, want, ch.Ours); again.Changed() {
			t.Fatalf("not idempotent: %+v then %+v", ch, again)
		}
	})
}
