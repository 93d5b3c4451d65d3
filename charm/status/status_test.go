package status

import (
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/config"
)

func TestActiveSummary(t *testing.T) {
	snap := api.Snapshot{Mode: config.ModeCalico, Pools: []api.PoolView{{Name: "default", Capacity: "252", InUse: 3}},
		Services: []api.ServiceView{{Name: "a", IPs: []string{"10.0.0.1"}}}}
	if got := FromWorkload(snap, api.PoolChange{}); got != (Status{"active", "calico mode; 1 pool, 3/252 in use"}) {
		t.Fatalf("got %v", got)
	}
	snap.Pools = append(snap.Pools, api.PoolView{Name: "v6", Capacity: "18446744073709551616", InUse: 1})
	snap.Services = append(snap.Services, api.ServiceView{Name: "b", Issues: "no free IP in pool default"})
	want := "calico mode; 2 pools, 4/~2^64 in use, 1 Service(s) waiting for an IP (list-allocations says why)"
	if got := FromWorkload(snap, api.PoolChange{}); got.Message != want {
		t.Fatalf("got %q\nwant %q", got.Message, want)
	}
	if c := count(new(big.Int).Lsh(big.NewInt(1), 64)); c != "2^64" {
		t.Fatalf("count %s", c)
	}
}

func TestBlocked(t *testing.T) {
	var svcs []api.ServiceView
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		svcs = append(svcs, api.ServiceView{Namespace: "web", Name: n})
	}
	got := FromWorkload(api.Snapshot{PendingChange: true}, api.PoolChange{Pending: true, Services: svcs})
	if got.Name != "blocked" || !strings.Contains(got.Message, "web/a, web/b, web/c, and 2 more") || !strings.Contains(got.Message, "apply-pool-change") {
		t.Fatalf("got %v", got)
	}
	got = FromWorkload(api.Snapshot{ConfigError: "pools: bad\nsecond line"}, api.PoolChange{})
	if got.Name != "blocked" || strings.Contains(got.Message, "second line") {
		t.Fatalf("got %v", got)
	}
	// Speakers the mode needs but the workload cannot deploy come before a
	// held-back change: without them nothing is announced at all.
	got = FromWorkload(api.Snapshot{PendingChange: true, SpeakersError: "no speaker image: cannot read the controller's own Pod"}, api.PoolChange{Pending: true, Services: svcs})
	if got != (Status{"blocked", "no speaker image: cannot read the controller's own Pod"}) {
		t.Fatalf("got %v", got)
	}
	_, _, err := config.FromOptions(config.Options{Pools: "10.0.0.0/33", PeeringMode: "bgp", CalicoApplication: "calico", ASNumber: 64512, CalicoServiceIPOption: "auto", LogLevel: "info"})
	st := InvalidConfig(err)
	if st.Name != "blocked" || !strings.Contains(st.Message, "more)") || strings.Contains(st.Message, "\n") {
		t.Fatalf("got %v (from %v)", st, err)
	}
	if st := InvalidConfig(errors.New("plain")); st.Message != "invalid config: plain" {
		t.Fatalf("got %v", st)
	}
}
