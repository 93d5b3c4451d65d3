package charm

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gruyaume/goops"
	"github.com/gruyaume/goops/goopstest"

	"github.com/calico-lb/calico-lb/charm/calicolink"
	"github.com/calico-lb/calico-lb/tests/fakecontroller"
	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/calico"
	"github.com/calico-lb/calico-lb/workload/config"
)

const (
	calicoModel = "3f1c0a9e-7d2b-4c55-9a1e-2b7c4d6e8f01"
	jujuPass    = "very-s3cret"
)

// linked is a fake controller with calico (one global peer, 10.0.0.1, and
// an operator's CIDR in bgp-service-loadbalancer-ips), and the state of a
// leader unit configured to reach it.
func linked(t *testing.T, set map[string]any) (*fakecontroller.Controller, goopstest.State) {
	fc := fakecontroller.Start(t)
	fc.Users["lb"] = fakecontroller.User{Password: jujuPass, Models: map[string]fakecontroller.Access{calicoModel: fakecontroller.Write}}
	fc.Apps[calicoModel] = map[string]map[string]fakecontroller.Option{"calico": {
		calico.OptGlobalPeers:     {Type: "string", Value: "[{address: 10.0.0.1, as-number: 64512}]"},
		calico.OptSubnetPeers:     {Type: "string", Value: "{}"},
		calico.OptUnitPeers:       {Type: "string", Value: "{}"},
		calico.OptMesh:            {Type: "boolean", Value: true},
		calico.OptLoadBalancerIPs: {Type: "string", Value: "198.51.100.0/24"},
		calico.OptExternalIPs:     {Type: "string", Value: ""},
	}}
	cfg := map[string]any{"pools": "10.208.1.0/28", "juju-credentials": "secret:creds", "calico-model": calicoModel}
	for k, v := range set {
		cfg[k] = v
	}
	ctr, _ := container(t, true)
	return fc, goopstest.State{Leader: true, Config: withDefaults(t, cfg), Containers: []goopstest.Container{ctr},
		Secrets: []goopstest.Secret{{ID: "secret:creds", Content: map[string]string{
			"controller-addresses": fc.Address(), "ca-cert": fc.CACert, "username": "lb", "password": jujuPass}}},
		PeerRelations: []goopstest.PeerRelation{{Endpoint: PeerEndpoint, Interface: "calico-lb-peers", ID: "calico-lb-peers:0"}}}
}

func calicoValue(fc *fakecontroller.Controller, opt string) any {
	fc.Lock()
	defer fc.Unlock()
	return fc.Apps[calicoModel]["calico"][opt].Value
}

// pushedConfig is the workload config file the hook pushed.
func pushedConfig(t *testing.T, st goopstest.State) *config.Config {
	t.Helper()
	for _, m := range st.Containers[0].Mounts {
		data, err := os.ReadFile(filepath.Join(m.Source, config.DefaultPath))
		if err != nil {
			t.Fatalf("no config pushed: %v", err)
		}
		cfg, err := config.Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	t.Fatal("no mount")
	return nil
}

func TestLinkAutoCalico(t *testing.T) {
	fc, st := linked(t, nil)
	base := workloadAPI(t, api.Snapshot{Mode: config.ModeCalico, Pools: []api.PoolView{{Name: "default", Addresses: []string{"10.208.1.0/28"}, Capacity: "14"}}}, api.PoolChange{}, st.Containers[0].Mounts["etc"].Source)
	out, ctx := run(t, base, st)
	if ctx.CharmErr != nil {
		t.Fatal(ctx.CharmErr)
	}
	// auto: no spine peers and a link: calico; the pools go into calico's
	// option next to the operator's CIDR; what we added is remembered.
	if got := calicoValue(fc, calico.OptLoadBalancerIPs); got != "198.51.100.0/24 10.208.1.0/28" {
		t.Fatalf("calico's option: %v", got)
	}
	peer := out.PeerRelations[0].LocalAppData
	if peer[keyOurs] != `["10.208.1.0/28"]` || !strings.Contains(peer[keyLink], `"mode":"calico"`) {
		t.Fatalf("peer data %v", peer)
	}
	if cfg := pushedConfig(t, out); cfg.Mode != config.ModeCalico || cfg.ServiceIPOption != config.ServiceIPLoadBalancer {
		t.Fatalf("pushed %s / %s", cfg.Mode, cfg.ServiceIPOption)
	}
	if !strings.HasPrefix(out.UnitStatus.Message, "calico mode (auto: no spine peers; Calico peers with 10.0.0.1 (global-bgp-peers)); 1 pool") {
		t.Fatalf("status %+v", out.UnitStatus)
	}
	// A second hook writes nothing.
	writes := len(fc.CallsTo("Application", "SetConfigs"))
	st.PeerRelations = out.PeerRelations
	if _, ctx := run(t, base, st); ctx.CharmErr != nil || len(fc.CallsTo("Application", "SetConfigs")) != writes {
		t.Fatalf("a second config-changed wrote calico's config again (%v)", ctx.CharmErr)
	}
}

func TestLinkConflicts(t *testing.T) {
	conflicting := map[string]any{"spine-peers": "[{address: 10.0.0.1, as-number: 64512}]"}

	// auto: the spine peer is Calico's. auto does not pick which routers
	// learn the VIPs: blocked, naming both choices; nothing pushed and
	// calico left as it was.
	fc, st := linked(t, conflicting)
	out, _ := run(t, "http://127.0.0.1:1", st)
	if msg := out.UnitStatus.Message; out.UnitStatus.Name != "blocked" || !strings.Contains(msg, "peering-mode=auto cannot decide: spine peer 10.0.0.1") ||
		!strings.Contains(msg, "set peering-mode=calico") || !strings.Contains(msg, "spine routers Calico does not use") {
		t.Fatalf("auto with a conflicting spine peer: %+v", out.UnitStatus)
	}
	if len(out.Containers[0].Layers) != 0 || calicoValue(fc, calico.OptLoadBalancerIPs) != "198.51.100.0/24" {
		t.Fatal("auto undecided changed the workload or calico")
	}
	// Calico with no router outside the cluster (a mesh only) and no
	// spine peers: nobody would learn the VIPs; blocked, naming l2 too.
	fc, st = linked(t, nil)
	fc.Lock()
	fc.Apps[calicoModel]["calico"][calico.OptGlobalPeers] = fakecontroller.Option{Type: "string", Value: "[]"}
	fc.Unlock()
	out, _ = run(t, "http://127.0.0.1:1", st)
	if msg := out.UnitStatus.Message; out.UnitStatus.Name != "blocked" || !strings.Contains(msg, "Calico peers with no router outside the cluster") || !strings.Contains(msg, "peering-mode=l2") {
		t.Fatalf("auto with a mesh-only Calico: %+v", out.UnitStatus)
	}

	// spine, explicitly: blocked, naming the peer, calico's option and the
	// fix; nothing pushed, so the workload keeps its previous peers.
	conflicting["peering-mode"] = "spine"
	_, st = linked(t, conflicting)
	out, ctx := run(t, "http://127.0.0.1:1", st)
	if ctx.CharmErr != nil {
		t.Fatal(ctx.CharmErr)
	}
	msg := out.UnitStatus.Message
	if out.UnitStatus.Name != "blocked" || !strings.Contains(msg, "spine peer 10.0.0.1") || !strings.Contains(msg, "global-bgp-peers") || !strings.Contains(msg, "peering-mode=calico") {
		t.Fatalf("status %+v", out.UnitStatus)
	}
	if len(out.Containers[0].Layers) != 0 {
		t.Fatal("conflicting spine peers reached the workload")
	}
	// A later hook without the controller keeps the block (from the peer data).
	st.PeerRelations = out.PeerRelations
	out, _ = runHook(t, "http://127.0.0.1:1", "calico-lb-peers-relation-changed", st)
	if out.UnitStatus.Name != "blocked" || len(out.Containers[0].Layers) != 0 {
		t.Fatalf("the block did not hold without the controller: %+v", out.UnitStatus)
	}
}

func TestLinkFailures(t *testing.T) {
	fc, st := linked(t, nil)
	st.Secrets[0].Content["password"] = "wrong"
	out, _ := run(t, "http://127.0.0.1:1", st)
	if out.UnitStatus.Name != "blocked" || !strings.Contains(out.UnitStatus.Message, "refused user lb's password") {
		t.Fatalf("status %+v", out.UnitStatus)
	}
	// The allocator still works: the config is pushed (mode from the options).
	if len(out.Containers[0].Layers) == 0 {
		t.Fatal("a link failure stopped the workload's config")
	}

	_, st = linked(t, map[string]any{"calico-application": "calico-typo"})
	out, _ = run(t, "http://127.0.0.1:1", st)
	if !strings.Contains(out.UnitStatus.Message, `no application "calico-typo"; set calico-application`) {
		t.Fatalf("status %+v", out.UnitStatus)
	}
	_, hookCtx := run(t, "http://127.0.0.1:1", st)
	var logs []string
	for _, l := range hookCtx.JujuLog {
		logs = append(logs, l.Message)
	}
	for _, l := range append([]string{out.UnitStatus.Message}, logs...) {
		if strings.Contains(l, jujuPass) {
			t.Fatalf("the password leaked: %s", l)
		}
	}
	_ = fc
}

func TestLinkNonLeaderFollows(t *testing.T) {
	// The leader decides calico (no spine peers; Calico peers with a
	// router).
	_, st := linked(t, nil)
	out, _ := run(t, "http://127.0.0.1:1", st)
	// Another unit, with spine peers in its options before the leader has
	// looked again: not the leader, so no controller; it renders what the
	// leader decided (calico), not what its options alone say (spine).
	st.Config["spine-peers"] = "[{address: 10.0.9.1, as-number: 64512}]"
	st.Leader, st.PeerRelations = false, out.PeerRelations
	ctr, _ := container(t, true)
	st.Containers = []goopstest.Container{ctr}
	out, _ = run(t, "http://127.0.0.1:1", st)
	if cfg := pushedConfig(t, out); cfg.Mode != config.ModeCalico {
		t.Fatalf("the non-leader pushed %s", cfg.Mode)
	}
}

func TestSyncCalicoAction(t *testing.T) {
	fc, st := linked(t, nil)
	c := New(Layout{})
	c.APIBase = "http://127.0.0.1:1"
	ctx := goopstest.NewContext(func() error { return c.Action("sync-calico") }, goopstest.WithUnitID("calico-lb/0"))
	out, err := ctx.RunAction("sync-calico", st, map[string]any{"dry-run": true})
	if err != nil || ctx.ActionError != nil {
		t.Fatal(err, ctx.ActionError)
	}
	r := ctx.ActionResults
	if r["before"] != "198.51.100.0/24" || r["after"] != "198.51.100.0/24 10.208.1.0/28" || r["added"] != "10.208.1.0/28" || r["applied"] != "false" ||
		calicoValue(fc, calico.OptLoadBalancerIPs) != "198.51.100.0/24" {
		t.Fatalf("dry run: %v", r)
	}
	c = New(Layout{})
	c.APIBase = "http://127.0.0.1:1"
	ctx = goopstest.NewContext(func() error { return c.Action("sync-calico") }, goopstest.WithUnitID("calico-lb/0"))
	out, err = ctx.RunAction("sync-calico", out, map[string]any{"dry-run": false})
	if err != nil || ctx.ActionError != nil || ctx.ActionResults["applied"] != "true" || calicoValue(fc, calico.OptLoadBalancerIPs) != "198.51.100.0/24 10.208.1.0/28" {
		t.Fatalf("apply: %v %v %v", ctx.ActionResults, err, ctx.ActionError)
	}
	var ours []string
	if json.Unmarshal([]byte(out.PeerRelations[0].LocalAppData[keyOurs]), &ours) != nil || len(ours) != 1 {
		t.Fatalf("peer data %v", out.PeerRelations[0].LocalAppData)
	}
}

// remove takes our CIDRs out of calico's option and leaves the operator's.
func TestLinkRemove(t *testing.T) {
	fc, st := linked(t, nil)
	out, _ := run(t, "http://127.0.0.1:1", st)
	if calicoValue(fc, calico.OptLoadBalancerIPs) != "198.51.100.0/24 10.208.1.0/28" {
		t.Fatal("not linked")
	}
	st.PeerRelations = out.PeerRelations
	_, _ = runHook(t, "http://127.0.0.1:1", "remove", st)
	if got := calicoValue(fc, calico.OptLoadBalancerIPs); got != "198.51.100.0/24" {
		t.Fatalf("after remove calico has %v", got)
	}
}

// The charm's hooks and calico-lb-juju run one flow: through the same
// pool change, held back and then applied, they leave calico's option the
// same. While the change is held back, the CIDR whose addresses Services
// still hold stays in calico for both.
func TestCharmAndCLIAgree(t *testing.T) {
	const lbModel = "9a7d3c21-5b4e-4f60-8d2a-1c3b5e7f9a0b"
	oldPool := api.PoolView{Name: "default", Addresses: []string{"10.208.1.0/28"}, Capacity: "14"}
	newPool := api.PoolView{Name: "default", Addresses: []string{"10.208.2.0/28"}, Capacity: "14"}
	heldBack := "pool change held back: it would take the IPs of web/shop; run the apply-pool-change action to apply it, or revert pools"
	steps := []struct {
		pools   string
		inForce api.PoolView
		held    bool
		want    string
	}{
		{"10.208.1.0/28", oldPool, false, "198.51.100.0/24 10.208.1.0/28"},
		{"10.208.2.0/28", oldPool, true, "198.51.100.0/24 10.208.1.0/28 10.208.2.0/28"},
		{"10.208.2.0/28", newPool, false, "198.51.100.0/24 10.208.2.0/28"},
	}

	// The charm, with juju-credentials.
	fc, st := linked(t, nil)
	for i, s := range steps {
		st.Config["pools"] = s.pools
		snap := api.Snapshot{Mode: config.ModeCalico, Pools: []api.PoolView{s.inForce}, PendingChange: s.held}
		base := workloadAPI(t, snap, api.PoolChange{Pending: s.held}, st.Containers[0].Mounts["etc"].Source)
		out, ctx := run(t, base, st)
		if ctx.CharmErr != nil {
			t.Fatal(ctx.CharmErr)
		}
		if got := calicoValue(fc, calico.OptLoadBalancerIPs); got != s.want {
			t.Fatalf("charm, step %d: calico has %q, want %q", i, got, s.want)
		}
		st.PeerRelations = out.PeerRelations
	}

	// calico-lb-juju, with the operator's login, calico-lb showing the
	// status the charm sets.
	fc, _ = linked(t, nil)
	dir := t.TempDir()
	t.Setenv("JUJU_DATA", dir)
	if err := fc.WriteClientStore(dir, "lb", jujuPass, map[string]string{"admin/k8s": lbModel, "admin/machines": calicoModel}, "admin/k8s"); err != nil {
		t.Fatal(err)
	}
	for i, s := range steps {
		status := fakecontroller.AppStatus{Status: "active", Info: "calico mode"}
		if s.held {
			status = fakecontroller.AppStatus{Status: "blocked", Info: heldBack}
		}
		fc.Lock()
		fc.Users["lb"].Models[lbModel] = fakecontroller.Write
		fc.Apps[lbModel] = map[string]map[string]fakecontroller.Option{"calico-lb": {
			"pools":              {Type: "string", Value: s.pools},
			"peering-mode":       {Type: "string", Value: "calico"},
			"calico-model":       {Type: "string", Value: calicoModel},
			"calico-application": {Type: "string", Value: "calico"},
		}}
		fc.Statuses[lbModel] = map[string]fakecontroller.AppStatus{"calico-lb": status}
		fc.Unlock()
		var out strings.Builder
		if code := calicolink.CLI(context.Background(), []string{"sync", "--yes"}, strings.NewReader(""), &out); code != 0 {
			t.Fatalf("calico-lb-juju sync, step %d: exit %d\n%s", i, code, out.String())
		}
		if got := calicoValue(fc, calico.OptLoadBalancerIPs); got != s.want {
			t.Fatalf("calico-lb-juju, step %d: calico has %q, want %q\n%s", i, got, s.want, out.String())
		}
	}
}

// A workload that does not answer cannot say which pools it has in force
// (a held-back change keeps the old ones): the link adds the new CIDRs and
// takes nothing of its own out.
func TestLinkKeepsCIDRsWhileWorkloadIsSilent(t *testing.T) {
	fc, st := linked(t, nil)
	base := workloadAPI(t, api.Snapshot{Mode: config.ModeCalico, Pools: []api.PoolView{{Name: "default", Addresses: []string{"10.208.1.0/28"}, Capacity: "14"}}}, api.PoolChange{}, st.Containers[0].Mounts["etc"].Source)
	out, ctx := run(t, base, st)
	if ctx.CharmErr != nil || calicoValue(fc, calico.OptLoadBalancerIPs) != "198.51.100.0/24 10.208.1.0/28" {
		t.Fatalf("first sync: %v, calico has %v", ctx.CharmErr, calicoValue(fc, calico.OptLoadBalancerIPs))
	}
	st.PeerRelations = out.PeerRelations
	st.Config["pools"] = "10.208.2.0/28"
	if _, ctx := run(t, "http://127.0.0.1:1", st); ctx.CharmErr != nil {
		t.Fatal(ctx.CharmErr)
	}
	if got := calicoValue(fc, calico.OptLoadBalancerIPs); got != "198.51.100.0/24 10.208.1.0/28 10.208.2.0/28" {
		t.Fatalf("with the workload silent calico has %q; the old CIDR must stay", got)
	}
}

// failingRelationSet makes relation-set fail, as it does when the
// controller is unreachable mid-hook.
type failingRelationSet struct{ goops.CommandRunner }

func (f failingRelationSet) Run(name string, args ...string) ([]byte, error) {
	if name == "relation-set" {
		return nil, errors.New("relation-set: connection is shut down")
	}
	return f.CommandRunner.Run(name, args...)
}

// The link writes calico's option only when it can remember what it adds:
// in install (no peer relation yet) and when relation-set fails, calico
// is left as it was and the status says why; the next hook that can
// remember writes it, and what was remembered is exactly what was added.
func TestLinkWritesOnlyWhatItCanRemember(t *testing.T) {
	fc, st := linked(t, nil)
	base := workloadAPI(t, api.Snapshot{Mode: config.ModeCalico, Pools: []api.PoolView{{Name: "default", Addresses: []string{"10.208.1.0/28"}, Capacity: "14"}}}, api.PoolChange{}, st.Containers[0].Mounts["etc"].Source)

	// install: the peer relation is not there yet.
	install := st
	install.PeerRelations = nil
	out, _ := runHook(t, base, "install", install)
	if got := calicoValue(fc, calico.OptLoadBalancerIPs); got != "198.51.100.0/24" || len(fc.CallsTo("Application", "SetConfigs")) != 0 {
		t.Fatalf("install wrote calico's option (%v) with nowhere to remember it", got)
	}
	if !strings.Contains(out.UnitStatus.Message, "not written yet") {
		t.Fatalf("install's status %+v does not say calico's option is not written yet", out.UnitStatus)
	}

	// relation-set fails: nothing written either.
	c := New(Layout{})
	c.Exec, c.APIBase, c.Wait = fakeExec(nil, ""), base, 0
	c.Network = func(string) (*goops.Network, error) {
		return &goops.Network{BindAddresses: []goops.BindAddress{{InterfaceName: "eth0", Addresses: []goops.Address{{Value: "10.1.0.7", CIDR: "10.1.0.0/16"}}}}}, nil
	}
	hook := func() error {
		goops.SetCommandRunner(failingRelationSet{goops.GetCommandRunner()})
		return c.Hook()
	}
	out = goopstest.NewContext(hook, goopstest.WithUnitID("calico-lb/0")).Run("config-changed", st)
	if got := calicoValue(fc, calico.OptLoadBalancerIPs); got != "198.51.100.0/24" {
		t.Fatalf("calico's option written (%v) although relation-set failed", got)
	}
	if !strings.Contains(out.UnitStatus.Message, "cannot be remembered") {
		t.Fatalf("status %+v does not say why calico's option is not written", out.UnitStatus)
	}

	// The next hook can: written, and remembered exactly.
	out, ctx := run(t, base, st)
	if ctx.CharmErr != nil {
		t.Fatal(ctx.CharmErr)
	}
	if got := calicoValue(fc, calico.OptLoadBalancerIPs); got != "198.51.100.0/24 10.208.1.0/28" {
		t.Fatalf("calico's option after a hook that can remember: %v", got)
	}
	if peer := out.PeerRelations[0].LocalAppData; peer[keyOurs] != `["10.208.1.0/28"]` {
		t.Fatalf("remembered %v", peer[keyOurs])
	}
}

// A secret that pins calico's model keeps the link from writing anywhere
// else: someone who may change calico-lb's config aims calico-model at
// another model the credentials' user can write, and nothing is written
// there.
func TestLinkWritesOnlyWhereTheSecretPins(t *testing.T) {
	const other = "9a1e2b7c-4d6e-8f01-3f1c-0a9e7d2b4c55"
	fc, st := linked(t, map[string]any{"calico-model": other})
	fc.Lock()
	fc.Users["lb"].Models[other] = fakecontroller.Write
	fc.Apps[other] = map[string]map[string]fakecontroller.Option{"calico": maps.Clone(fc.Apps[calicoModel]["calico"])}
	fc.Unlock()
	st.Secrets[0].Content[calicolink.KeyModel] = calicoModel
	base := workloadAPI(t, api.Snapshot{Mode: config.ModeCalico, Pools: []api.PoolView{{Name: "default", Addresses: []string{"10.208.1.0/28"}, Capacity: "14"}}}, api.PoolChange{}, st.Containers[0].Mounts["etc"].Source)
	out, _ := run(t, base, st)
	fc.Lock()
	got := fc.Apps[other]["calico"][calico.OptLoadBalancerIPs].Value
	fc.Unlock()
	if got != "198.51.100.0/24" || len(fc.CallsTo("Application", "SetConfigs")) != 0 {
		t.Fatalf("the link wrote %v into a model the secret does not pin", got)
	}
	if !strings.Contains(out.UnitStatus.Message, "juju-credentials are for calico's model "+calicoModel) {
		t.Fatalf("status %+v does not say where the credentials are for", out.UnitStatus)
	}
	// Pinned where calico-model points: written.
	fc2, st2 := linked(t, nil)
	st2.Secrets[0].Content[calicolink.KeyModel] = calicoModel
	if _, ctx := run(t, base, st2); ctx.CharmErr != nil || calicoValue(fc2, calico.OptLoadBalancerIPs) != "198.51.100.0/24 10.208.1.0/28" {
		t.Fatalf("pinned to calico-model's own model, the link did not write: %v %v", ctx.CharmErr, calicoValue(fc2, calico.OptLoadBalancerIPs))
	}
}
