package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/calico-lb/calico-lb/charm"
	"github.com/calico-lb/calico-lb/tests/fakecontroller"
	"github.com/calico-lb/calico-lb/tests/fakejuju"
	"github.com/calico-lb/calico-lb/workload/calico"
	"github.com/calico-lb/calico-lb/workload/config"
)

// TestCharmCalicoLink runs the real dispatch binary (with the real Juju
// client library in it), a real Pebble and the real workload against the
// in-process controller: config-changed puts the pools into calico's option
// and keeps the decision in the peer relation; sync-calico shows there is
// nothing left to do; spine peers that are Calico's block the unit and never
// reach the workload; the password appears in no log and no status.
func TestCharmCalicoLink(t *testing.T) {
	const model, password = "3f1c0a9e-7d2b-4c55-9a1e-2b7c4d6e8f01", "e2e-s3cret"
	fc := fakecontroller.Start(t)
	fc.Users["lb"] = fakecontroller.User{Password: password, Models: map[string]fakecontroller.Access{model: fakecontroller.Write}}
	fc.Apps[model] = map[string]map[string]fakecontroller.Option{"calico": {
		calico.OptGlobalPeers:     {Type: "string", Value: "[{address: 10.0.255.1, as-number: 65000}]"},
		calico.OptMesh:            {Type: "boolean", Value: true},
		calico.OptLoadBalancerIPs: {Type: "string", Value: "198.51.100.0/24"},
		calico.OptExternalIPs:     {Type: "string", Value: ""},
	}}
	cfg := fakejuju.Defaults(t)
	cfg["pools"], cfg["juju-credentials"], cfg["calico-model"] = "10.208.1.1-10.208.1.6", "secret:creds", model
	b := newCharmBed(t, &fakejuju.State{Config: cfg, Leader: true,
		Secrets:   map[string]map[string]string{"secret:creds": {"controller-addresses": fc.Address(), "ca-cert": fc.CACert, "username": "lb", "password": password}},
		Relations: map[string][]*fakejuju.Relation{charm.PeerEndpoint: {{ID: "calico-lb-peers:0", RemoteApp: "calico-lb", Peer: true}}}})
	j := b.j
	b.hook("install")
	b.hook("calico-lb-pebble-ready")
	b.hook("config-changed")
	// The range 10.208.1.1-6 is four CIDRs, none wider than the range.
	want := "198.51.100.0/24 10.208.1.1/32 10.208.1.2/31 10.208.1.4/31 10.208.1.6/32"
	fc.Lock()
	got := fc.Apps[model]["calico"][calico.OptLoadBalancerIPs].Value
	fc.Unlock()
	if got != want {
		t.Fatalf("calico's option is %v, want %q", got, want)
	}
	st := j.State(t)
	peer := st.Relation("calico-lb-peers:0").AppData
	if !strings.Contains(peer["calico-link"], `"mode":"calico"`) || !strings.Contains(peer["calico-cidrs"], "10.208.1.2/31") {
		t.Fatalf("peer data %v", peer)
	}
	if n := len(fc.CallsTo("Application", "SetConfigs")); n != 1 {
		t.Fatalf("%d writes", n)
	}
	// The workload runs in the mode auto picked.
	cfgFile := filepath.Join(b.root, config.DefaultPath)
	waitHTTP(t, "http://"+b.apiAddr+"/readyz")
	b.hook("update-status")
	if st := j.State(t).UnitStatus; st.Name != "active" || !strings.HasPrefix(st.Message, "calico mode (auto: no spine peers; Calico peers with 10.0.255.1 (global-bgp-peers)); 1 pool, 0/6 in use") {
		t.Fatalf("status %+v", st)
	}

	// sync-calico through the real dispatch: nothing left to change.
	a, out, err := j.Action(t, b.dispatch, "sync-calico", map[string]any{"dry-run": false})
	if err != nil || a.Failed != nil {
		t.Fatalf("sync-calico: %v %v\n%s", err, a.Failed, out)
	}
	if r := a.Results; r["applied"] != "false" || r["after"] != want || !strings.Contains(r["summary"], "already in line") {
		t.Fatalf("sync-calico results %v", r)
	}
	if n := len(fc.CallsTo("Application", "SetConfigs")); n != 1 {
		t.Fatalf("the idempotent sync wrote (%d writes)", n)
	}

	// Spine mode with Calico's own peer: a second session between the same
	// machines. Blocked, and the workload keeps the config it had.
	before, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	j.Update(t, func(s *fakejuju.State) {
		s.Config["peering-mode"], s.Config["spine-peers"] = "spine", "[{address: 10.0.255.1, as-number: 65000}]"
	})
	b.hook("config-changed")
	if st := j.State(t).UnitStatus; st.Name != "blocked" || !strings.Contains(st.Message, "spine peer 10.0.255.1 (spine-peers) is also Calico's BGP peer (calico global-bgp-peers)") {
		t.Fatalf("status %+v", st)
	}
	if after, _ := os.ReadFile(cfgFile); string(after) != string(before) {
		t.Fatalf("conflicting spine peers reached the workload:\n%s", after)
	}
	// A hook that does not call the controller keeps the block.
	b.hook("calico-lb-peers-relation-changed")
	if st := j.State(t).UnitStatus; st.Name != "blocked" {
		t.Fatalf("status after a relation hook %+v", st)
	}
	// Back to auto: the spine peer is Calico's, and auto does not choose
	// which routers learn the VIPs: still blocked, naming both choices,
	// and the workload keeps what it had.
	j.Update(t, func(s *fakejuju.State) { s.Config["peering-mode"] = "auto" })
	b.hook("config-changed")
	if st := j.State(t).UnitStatus; st.Name != "blocked" || !strings.Contains(st.Message, "peering-mode=auto cannot decide: spine peer 10.0.255.1 is also Calico's peer") ||
		!strings.Contains(st.Message, "set peering-mode=calico") {
		t.Fatalf("status %+v", st)
	}
	if after, _ := os.ReadFile(cfgFile); string(after) != string(before) {
		t.Fatalf("an undecided auto reached the workload:\n%s", after)
	}

	// Another unit (not the leader, no controller): its options alone say
	// spine (spine peers are set), but it keeps the leader's word: blocked,
	// and its workload keeps calico mode.
	j.Update(t, func(s *fakejuju.State) { s.Leader = false })
	b.hook("config-changed")
	data, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	if pushed, err := config.Parse(data); err != nil || pushed.Mode != config.ModeCalico {
		t.Fatalf("the non-leader pushed %v (%v)", pushed, err)
	}
	if st := j.State(t).UnitStatus; st.Name != "blocked" {
		t.Fatalf("the non-leader's status %+v", st)
	}

	st = j.State(t)
	for _, l := range append(st.Logs, st.UnitStatus.Message, st.AppStatus.Message) {
		if strings.Contains(l, password) {
			t.Fatalf("the password leaked: %s", l)
		}
	}
	for _, call := range st.Calls {
		if strings.Contains(strings.Join(call, " "), password) {
			t.Fatalf("the password went to a hook tool: %v", call)
		}
	}
}
