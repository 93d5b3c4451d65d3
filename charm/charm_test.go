package charm

import (
	"github.com/calico-lb/calico-lb/charm/calicolink"
	"github.com/calico-lb/calico-lb/charm/cos"

	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canonical/pebble/client"
	"github.com/gruyaume/goops"
	"github.com/gruyaume/goops/goopstest"

	"github.com/calico-lb/calico-lb/charm/pebble"
	"github.com/calico-lb/calico-lb/charm/plan"
	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/config"
)

// withDefaults is what Juju passes: config.yaml's defaults, overridden by
// set (goopstest's config-get applies no defaults).
func withDefaults(t *testing.T, set map[string]any) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := config.CharmDefaults(data)
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(out, set)
	return out
}

// workloadAPI stands in for the workload's local API with snap. Like the
// controller, it has taken in the config file under src (a container
// mount; "" for none) once asked to reload it.
func workloadAPI(t *testing.T, snap api.Snapshot, change api.PoolChange, src string) string {
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/v1/reload":
			if data, err := os.ReadFile(filepath.Join(src, config.DefaultPath)); err == nil && src != "" {
				snap.ConfigDigest = api.ConfigDigest(data)
			}
			_ = json.NewEncoder(w).Encode(snap)
		case "/v1/allocations":
			_ = json.NewEncoder(w).Encode(snap)
		case "/v1/pool-change":
			_ = json.NewEncoder(w).Encode(change)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func run(t *testing.T, apiBase string, st goopstest.State) (goopstest.State, *goopstest.Context) {
	t.Helper()
	return runHook(t, apiBase, "config-changed", st)
}

func runHook(t *testing.T, apiBase, hook string, st goopstest.State) (goopstest.State, *goopstest.Context) {
	t.Helper()
	return runWith(t, apiBase, hook, st, fakeExec(nil, ""))
}

// fakeExec stands in for the commands the charm runs in the workload
// container (the unit tests have no workload binary): it records them and
// fails with err, writing stderr, when err is set.
func fakeExec(ran *[][]string, stderr string, errs ...error) func(pebble.Client, *client.ExecOptions) error {
	return func(_ pebble.Client, o *client.ExecOptions) error {
		if ran != nil {
			*ran = append(*ran, o.Command)
		}
		if len(errs) > 0 {
			if o.Stderr != nil {
				_, _ = io.WriteString(o.Stderr, stderr)
			}
			return errs[0]
		}
		return nil
	}
}

func runWith(t *testing.T, apiBase, hook string, st goopstest.State, exec func(pebble.Client, *client.ExecOptions) error) (goopstest.State, *goopstest.Context) {
	t.Helper()
	c := New(Layout{})
	c.Exec = exec
	c.APIBase = apiBase
	c.Wait = 0
	c.Network = func(string) (*goops.Network, error) {
		return &goops.Network{BindAddresses: []goops.BindAddress{{InterfaceName: "eth0", Addresses: []goops.Address{{Value: "10.1.0.7", CIDR: "10.1.0.0/16"}}}}}, nil
	}
	ctx := goopstest.NewContext(c.Hook, goopstest.WithUnitID("calico-lb/0"))
	return ctx.Run(hook, st), ctx
}

func container(t *testing.T, connect bool) (goopstest.Container, string) {
	src := t.TempDir()
	return goopstest.Container{Name: Container, CanConnect: connect,
		Mounts: map[string]goopstest.Mount{"etc": {Location: "/etc/calico-lb", Source: src}}}, src
}

func TestConfigChangedActive(t *testing.T) {
	ctr, src := container(t, true)
	base := workloadAPI(t, api.Snapshot{Mode: config.ModeCalico, Pools: []api.PoolView{{Name: "default", Capacity: "254", InUse: 2}}}, api.PoolChange{}, src)
	out, ctx := run(t, base, goopstest.State{Leader: true, Config: withDefaults(t, map[string]any{"pools": "10.0.0.0/24", "peering-mode": "calico"}), Containers: []goopstest.Container{ctr}})
	if ctx.CharmErr != nil {
		t.Fatal(ctx.CharmErr)
	}
	// No juju-credentials: the operator is told the exact command.
	if out.UnitStatus.Name != "active" || out.UnitStatus.Message != "calico mode; 1 pool, 2/254 in use; no Calico link, so run: "+calicolink.Command("calico", "bgp-service-loadbalancer-ips", []string{"10.0.0.0/24"}) {
		t.Fatalf("status %+v", out.UnitStatus)
	}
	if out.AppStatus != out.UnitStatus {
		t.Fatalf("the leader's application status %+v, unit %+v", out.AppStatus, out.UnitStatus)
	}
	layer, ok := out.Containers[0].Layers["calico-lb"]
	if !ok || !strings.Contains(layer.Services[plan.Service].Command, "calico-lb controller --config "+config.DefaultPath+" --token-file "+plan.TokenFile) {
		t.Fatalf("layers %+v", out.Containers[0].Layers)
	}
	data, err := os.ReadFile(filepath.Join(src, config.DefaultPath))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(data)
	if err != nil || cfg.Mode != config.ModeCalico || len(cfg.Pools) != 1 {
		t.Fatalf("pushed config %+v, %v", cfg, err)
	}
}

func TestConfigChangedBlockedAndWaiting(t *testing.T) {
	base := workloadAPI(t, api.Snapshot{}, api.PoolChange{}, "")
	ctr, _ := container(t, true)
	out, _ := run(t, base, goopstest.State{Config: withDefaults(t, map[string]any{"pools": "10.0.0.0/33", "as-number": 0, "peering-mode": "l2"}), Containers: []goopstest.Container{ctr}})
	if out.UnitStatus.Name != "blocked" || !strings.HasPrefix(out.UnitStatus.Message, "invalid config: ") || !strings.Contains(out.UnitStatus.Message, "(and 1 more)") {
		t.Fatalf("status %+v", out.UnitStatus)
	}
	if len(out.Containers[0].Layers) != 0 {
		t.Fatal("an invalid config reached the workload")
	}

	ctr, _ = container(t, false)
	out, _ = run(t, base, goopstest.State{Config: withDefaults(t, map[string]any{"pools": "10.0.0.0/24", "peering-mode": "l2"}), Containers: []goopstest.Container{ctr}})
	if out.UnitStatus.Name != "waiting" || !strings.Contains(out.UnitStatus.Message, "Pebble") {
		t.Fatalf("status %+v", out.UnitStatus)
	}

	ctr, _ = container(t, true)
	out, _ = run(t, base, goopstest.State{Config: withDefaults(t, map[string]any{"pools": "10.0.0.0/24", "peering-mode": "l2", "bgp-passwords": "secret:nothere"}), Containers: []goopstest.Container{ctr}})
	if out.UnitStatus.Name != "blocked" || !strings.Contains(out.UnitStatus.Message, "juju grant-secret") {
		t.Fatalf("status %+v", out.UnitStatus)
	}

	// A workload that has not taken in the pushed file: its figures would
	// describe the old config, so the status waits instead.
	ctr, _ = container(t, true)
	stale := workloadAPI(t, api.Snapshot{Mode: config.ModeCalico, ConfigDigest: "an-older-file"}, api.PoolChange{}, "")
	out, _ = run(t, stale, goopstest.State{Config: withDefaults(t, map[string]any{"pools": "10.0.0.0/24", "peering-mode": "calico"}), Containers: []goopstest.Container{ctr}})
	if out.UnitStatus.Name != "waiting" || !strings.Contains(out.UnitStatus.Message, "take in the new config") {
		t.Fatalf("status with a stale workload %+v", out.UnitStatus)
	}

	// A workload that read the pushed file and rejected it: the status says
	// why, rather than waiting for a file that will never be in force.
	ctr, src := container(t, true)
	rejecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		snap := api.Snapshot{Mode: config.ModeCalico, ConfigDigest: "an-older-file"}
		if data, err := os.ReadFile(filepath.Join(src, config.DefaultPath)); err == nil && r.URL.Path == "/v1/reload" {
			snap.RejectedConfigDigest, snap.ConfigError = api.ConfigDigest(data), "pools: this workload knows no such field"
		}
		_ = json.NewEncoder(w).Encode(snap)
	}))
	defer rejecting.Close()
	out, _ = run(t, rejecting.URL, goopstest.State{Config: withDefaults(t, map[string]any{"pools": "10.0.0.0/24", "peering-mode": "calico"}), Containers: []goopstest.Container{ctr}})
	if out.UnitStatus.Name != "blocked" || !strings.Contains(out.UnitStatus.Message, "rejected its config: pools: this workload knows no such field") {
		t.Fatalf("status with a workload that rejected the pushed file %+v", out.UnitStatus)
	}

	held := api.PoolChange{Pending: true, Services: []api.ServiceView{{Namespace: "web", Name: "shop"}}}
	ctr, src = container(t, true)
	base = workloadAPI(t, api.Snapshot{Mode: config.ModeL2, PendingChange: true}, held, src)
	out, _ = run(t, base, goopstest.State{Config: withDefaults(t, map[string]any{"pools": "10.0.0.0/24", "peering-mode": "calico"}), Containers: []goopstest.Container{ctr}})
	if out.UnitStatus.Name != "blocked" || !strings.Contains(out.UnitStatus.Message, "web/shop") || !strings.Contains(out.UnitStatus.Message, "apply-pool-change") {
		t.Fatalf("status %+v", out.UnitStatus)
	}
}

func TestPodName(t *testing.T) {
	if got := podName("calico-lb/12"); got != "calico-lb-12" {
		t.Fatal(got)
	}
}

// The controller runs as its own ServiceAccount, which the charm has the
// workload create with the pod's credentials; without trust that is
// refused, and the unit says how to grant it rather than starting the
// controller with credentials that cannot do its job.
func TestControllerAccess(t *testing.T) {
	ctr, src := container(t, true)
	base := workloadAPI(t, api.Snapshot{Mode: config.ModeCalico, Pools: []api.PoolView{{Name: "default", Capacity: "254"}}}, api.PoolChange{}, src)
	st := goopstest.State{Leader: true, Config: withDefaults(t, map[string]any{"pools": "10.0.0.0/24", "peering-mode": "calico"}), Containers: []goopstest.Container{ctr}}
	var ran [][]string
	out, ctx := runWith(t, base, "update-status", st, fakeExec(&ran, ""))
	if ctx.CharmErr != nil || out.UnitStatus.Name != "active" {
		t.Fatalf("status %+v, %v", out.UnitStatus, ctx.CharmErr)
	}
	want := "/usr/bin/calico-lb access --namespace " + goops.ReadEnv().ModelName + " --token-file " + plan.TokenFile + " --failover-test auto --receipt-file " + plan.AccessReceiptFile + " --owner 584792"
	if len(ran) != 1 || strings.Join(ran[0], " ") != want {
		t.Fatalf("ran %q, want %q", ran, want)
	}

	ctr, src = container(t, true)
	st.Containers = []goopstest.Container{ctr}
	denied := `calico-lb: ServiceAccount calico-lb-controller in lb: serviceaccounts "calico-lb-controller" is forbidden: User "system:serviceaccount:lb:calico-lb" cannot get resource "serviceaccounts"`
	out, _ = runWith(t, base, "config-changed", st, fakeExec(nil, denied+"\n", errors.New("exit status 1")))
	if out.UnitStatus.Name != "blocked" || !strings.Contains(out.UnitStatus.Message, "juju trust calico-lb --scope=cluster") || !strings.Contains(out.UnitStatus.Message, "cannot get resource") {
		t.Fatalf("status %+v", out.UnitStatus)
	}
	if len(out.Containers[0].Layers) != 0 {
		t.Fatal("the controller was started without its own ServiceAccount")
	}
	if _, err := os.Stat(filepath.Join(src, config.DefaultPath)); err == nil {
		t.Fatal("the config was pushed without access")
	}
}

// `calico-lb access` runs only when it may have something to do: its
// last run's receipt says when that is. A hook that finds a current
// receipt skips it; an old one, none, an unreadable one, powers of the
// failover test still bound, or a hook of a new unit, charm or container
// runs it.
func TestAccessRunsWhenDue(t *testing.T) {
	base := workloadAPI(t, api.Snapshot{Mode: config.ModeCalico, Pools: []api.PoolView{{Name: "default", Capacity: "254"}}}, api.PoolChange{}, "")
	now := time.Now()
	for _, c := range []struct {
		name, hook string
		receipt    string // the file's content; "" for none
		runs       bool
	}{
		{"current", "update-status", receiptJSON(t, api.AccessReceipt{At: now, Next: now.Add(5 * time.Minute)}), false},
		{"current, config-changed", "config-changed", receiptJSON(t, api.AccessReceipt{At: now, Next: now.Add(5 * time.Minute)}), false},
		{"due", "update-status", receiptJSON(t, api.AccessReceipt{At: now.Add(-11 * time.Minute), Next: now.Add(-time.Minute)}), true},
		{"none", "update-status", "", true},
		{"unreadable", "update-status", "{", true},
		{"failover powers bound", "update-status", receiptJSON(t, api.AccessReceipt{At: now, Next: now.Add(5 * time.Minute), FailoverBound: true}), true},
		{"a new container", Container + "-pebble-ready", receiptJSON(t, api.AccessReceipt{At: now, Next: now.Add(5 * time.Minute)}), true},
		{"a new charm", "upgrade-charm", receiptJSON(t, api.AccessReceipt{At: now, Next: now.Add(5 * time.Minute)}), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctr, _ := container(t, true)
			if c.receipt != "" {
				dir := t.TempDir()
				path := filepath.Join(dir, plan.AccessReceiptFile)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(c.receipt), 0o644); err != nil {
					t.Fatal(err)
				}
				ctr.Mounts["receipt"] = goopstest.Mount{Location: plan.AccessReceiptFile, Source: dir}
			}
			st := goopstest.State{Leader: true, Config: withDefaults(t, map[string]any{"pools": "10.0.0.0/24", "peering-mode": "calico"}), Containers: []goopstest.Container{ctr}}
			var ran [][]string
			_, ctx := runWith(t, base, c.hook, st, fakeExec(&ran, ""))
			if ctx.CharmErr != nil {
				t.Fatal(ctx.CharmErr)
			}
			if got := len(ran) == 1 && slices.Contains(ran[0], "access"); got != c.runs || len(ran) > 1 {
				t.Fatalf("ran %q, want access run: %v", ran, c.runs)
			}
		})
	}
}

func receiptJSON(t *testing.T, r api.AccessReceipt) string {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func runAction(t *testing.T, apiBase, name string, params map[string]any) *goopstest.Context {
	t.Helper()
	return runActionWith(t, apiBase, name, params, fakeExec(nil, ""))
}

// runActionWith runs an action with exec standing in for the commands
// the charm runs in the workload container.
func runActionWith(t *testing.T, apiBase, name string, params map[string]any, exec func(pebble.Client, *client.ExecOptions) error) *goopstest.Context {
	t.Helper()
	c := New(Layout{})
	c.APIBase, c.Exec = apiBase, exec
	ctx := goopstest.NewContext(func() error { return c.Action(name) }, goopstest.WithUnitID("calico-lb/0"))
	if _, err := ctx.RunAction(name, goopstest.State{Leader: true}, params); err != nil {
		t.Fatal(err)
	}
	return ctx
}

func TestListAllocations(t *testing.T) {
	base := workloadAPI(t, api.Snapshot{Mode: config.ModeCalico, Source: "allocator",
		Pools:    []api.PoolView{{Name: "default", Addresses: []string{"10.0.0.0/24"}, Capacity: "254", InUse: 1}},
		Services: []api.ServiceView{{Namespace: "web", Name: "shop", IPs: []string{"10.0.0.1"}, Pools: []string{"default"}}, {Namespace: "web", Name: "db", Issues: "no free IP"}}},
		api.PoolChange{}, "")
	ctx := runAction(t, base, "list-allocations", nil)
	r := ctx.ActionResults
	if ctx.ActionError != nil || r["pools.0.name"] != "default" || r["pools.0.capacity"] != "254" || r["services.0.name"] != "web/shop" ||
		r["services.0.ips"] != "10.0.0.1" || r["services.1.issues"] != "no free IP" || !strings.Contains(r["table"], "web/shop") {
		t.Fatalf("results %v, error %v", r, ctx.ActionError)
	}
}

func TestApplyPoolChange(t *testing.T) {
	var posted int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/pool-change" {
			http.NotFound(w, r)
			return
		}
		posted++
		if posted > 1 {
			http.Error(w, "nothing held back", http.StatusConflict)
			return
		}
		_ = json.NewEncoder(w).Encode(api.PoolChange{Applied: true, Services: []api.ServiceView{{Namespace: "web", Name: "shop"}}})
	}))
	defer srv.Close()
	ctx := runAction(t, srv.URL, "apply-pool-change", nil)
	if ctx.ActionError != nil || ctx.ActionResults["services.0"] != "web/shop" || ctx.ActionResults["applied"] != "true" {
		t.Fatalf("results %v, error %v", ctx.ActionResults, ctx.ActionError)
	}
	ctx = runAction(t, srv.URL, "apply-pool-change", nil)
	if ctx.ActionError == nil || !strings.Contains(ctx.ActionError.Error(), "no pool change is held back") {
		t.Fatalf("second apply: %v", ctx.ActionError)
	}
}

func TestFailoverTestAction(t *testing.T) {
	failoverPoll = time.Millisecond
	var got api.FailoverRequest
	polls := 0
	outage := int64(412)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep := api.FailoverReport{Result: "planned", Mode: got.Mode, Service: got.Service, VIP: "10.0.0.5", Announcement: "spine",
			AttractingBefore: []string{"n1", "n2"}, AttractedBy: "announced by BGP from", Target: "n1", Steps: []string{"kill the speaker on n1", "probe"}}
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/v1/failover-test":
			got, polls = api.FailoverRequest{}, 0
			if json.NewDecoder(r.Body).Decode(&got) != nil {
				http.Error(w, "unexpected", http.StatusBadRequest)
				return
			}
			rep.Mode, rep.Service = got.Mode, got.Service
			if !got.DryRun {
				rep.ID, rep.Result, rep.Progress = "r1", "running", []string{"probe started"}
				w.WriteHeader(http.StatusAccepted)
			}
		case r.Method == http.MethodGet && r.URL.Path == "/v1/failover-test":
			polls++
			rep.ID, rep.Result, rep.Progress = "r1", "running", []string{"probe started", "killed the speaker"}
			if polls == 3 {
				rep.Result = "passed"
				rep.OutageMs = &outage
				rep.AttractingAfter = []string{"n2"}
				rep.Timeline = []api.TimelineEntry{{TMs: 0, Event: "fault injected", Node: "n1", Source: "controller"}, {TMs: 412, Event: "the VIP answered again", Source: "probe"}}
				rep.Restored = []string{"the speaker on n1 resumed"}
				if got.Service == "shop/slow" {
					rep.Result, rep.Reason = "failed", "timed out after 5s: the VIP does not answer the probe"
					rep.OutageMs = nil
				}
			}
		default:
			http.Error(w, "unexpected", http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(rep)
	}))
	t.Cleanup(srv.Close)
	ctx := runAction(t, srv.URL, "failover-test", map[string]any{"service": "shop/web", "mode": "speaker", "dry-run": true})
	r := ctx.ActionResults
	if ctx.ActionError != nil || got.Service != "shop/web" || got.Mode != "speaker" || !got.DryRun || r["result"] != "planned" || r["target"] != "n1" ||
		r["attracting-nodes-before"] != "n1,n2" || r["steps.0"] != "kill the speaker on n1" || !strings.Contains(r["plan"], "announced by BGP from n1, n2") {
		t.Fatalf("results %v, error %v, request %+v", r, ctx.ActionError, got)
	}

	// A run: the action follows it to its end and reports the figures. It
	// grants the controller the test's powers before, and takes them back
	// after (auto: unless a node still carries a mark).
	var ran [][]string
	ctx = runActionWith(t, srv.URL, "failover-test", map[string]any{"service": "shop/web", "mode": "speaker", "probe": "http://10.9.0.1:9477/", "probe-token": "s3cret-probe-token", "timeout": 30}, fakeExec(&ran, ""))
	if len(ran) != 2 || !slices.Contains(ran[0], "access") || ran[0][slices.Index(ran[0], "--failover-test")+1] != "on" || ran[1][slices.Index(ran[1], "--failover-test")+1] != "auto" {
		t.Fatalf("the action ran %q: want access --failover-test on, then auto", ran)
	}
	r = ctx.ActionResults
	if ctx.ActionError != nil || polls != 3 || got.Probe != "http://10.9.0.1:9477" || got.ProbeToken != "s3cret-probe-token" || got.TimeoutSeconds != 30 || r["result"] != "passed" || r["outage-ms"] != "412" ||
		r["attracting-nodes-after"] != "n2" || r["timeline.1.t-ms"] != "412" || r["timeline.1.source"] != "probe" || r["timeline.0.node"] != "n1" ||
		r["restored.0"] != "the speaker on n1 resumed" || !strings.Contains(r["timeline"], "the VIP answered again") || slices.ContainsFunc(slices.Collect(maps.Values(r)), func(v string) bool { return strings.Contains(v, "s3cret") }) {
		t.Fatalf("results %v, error %v, polls %d, request %+v", r, ctx.ActionError, polls, got)
	}

	// A failed run fails the action with the reason, and keeps the results.
	ctx = runAction(t, srv.URL, "failover-test", map[string]any{"service": "shop/slow", "mode": "node", "timeout": 5})
	if ctx.ActionError == nil || !strings.Contains(ctx.ActionError.Error(), "timed out after 5s") || ctx.ActionResults["result"] != "failed" || ctx.ActionResults["outage-ms"] != "" {
		t.Fatalf("failed run: %v %v", ctx.ActionError, ctx.ActionResults)
	}
}

func TestReallocate(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/reallocate" {
			http.NotFound(w, r)
			return
		}
		switch svc := r.URL.Query().Get("service"); svc {
		case "web/shop":
			_ = json.NewEncoder(w).Encode(api.Reallocation{Service: svc, OldIPs: []string{"10.0.0.0"}, NewIPs: []string{"10.0.0.7"}, Pools: []string{"default"}, Written: true})
		default:
			http.Error(w, "service "+svc+": no such Service", http.StatusNotFound)
		}
	}))
	defer srv.Close()
	ctx := runAction(t, srv.URL, "reallocate", map[string]any{"service": "web/shop"})
	r := ctx.ActionResults
	if ctx.ActionError != nil || r["old-ips"] != "10.0.0.0" || r["new-ips"] != "10.0.0.7" || r["status-written"] != "true" ||
		r["summary"] != "web/shop moved from 10.0.0.0 to 10.0.0.7" {
		t.Fatalf("results %v, error %v", r, ctx.ActionError)
	}
	// The workload's refusal reaches the operator word for word.
	ctx = runAction(t, srv.URL, "reallocate", map[string]any{"service": "web/gone"})
	if ctx.ActionError == nil || !strings.Contains(ctx.ActionError.Error(), "web/gone: no such Service") {
		t.Fatalf("missing Service: %v", ctx.ActionError)
	}
	ctx = runAction(t, srv.URL, "reallocate", nil)
	if ctx.ActionError == nil || !strings.Contains(ctx.ActionError.Error(), "service=namespace/name") {
		t.Fatalf("no parameter: %v", ctx.ActionError)
	}
}

func TestSpeakersResult(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	st := api.Speakers{Mode: config.ModeSpine, Speakers: []api.SpeakerView{
		{Node: "n1", Pod: "s-1", Address: "10.0.0.1", BGP: &api.BGPStatus{Routes: []string{"10.9.0.1/32"}, Peers: []api.PeerStatus{
			{Address: "10.0.255.1", ASN: 64500, State: "established", Since: now.Add(-90 * time.Second), BFD: true, Routes: 1},
			{Address: "10.0.255.2", ASN: 64500, State: "active"},
		}}},
		{Node: "n2", Pod: "s-2", Address: "10.0.0.2", Error: "speaker API unreachable: connection refused"},
	}}
	r := speakersResult(st, now)
	for k, want := range map[string]string{
		"speakers.0.peers.0.state": "established", "speakers.0.peers.0.uptime": "1m30s", "speakers.0.peers.0.bfd": "true",
		"speakers.0.peers.1.uptime": "-", "speakers.0.routes": "1", "speakers.1.error": "speaker API unreachable: connection refused",
		"summary": "spine mode: 2 speakers, 1/2 sessions established, 1 with errors",
	} {
		if r[k] != want {
			t.Errorf("%s = %q, want %q", k, r[k], want)
		}
	}
	if !strings.Contains(r["table"], "10.0.255.1") || !strings.Contains(r["table"], "connection refused") {
		t.Errorf("table:\n%s", r["table"])
	}
	if r := speakersResult(api.Speakers{Mode: config.ModeCalico}, now); !strings.Contains(r["summary"], "calicoctl node status") {
		t.Errorf("calico mode: %v", r)
	}
	l2 := speakersResult(api.Speakers{Mode: config.ModeL2, Speakers: []api.SpeakerView{{Node: "n1", BGP: &api.BGPStatus{},
		L2: &api.L2Status{Owned: []string{"10.9.0.1", "10.9.0.2"}, Alive: []string{"n1", "n2"}}}}}, now)
	if l2["speakers.0.owned"] != "2" || l2["speakers.0.speakers-alive"] != "n1,n2" || !strings.Contains(l2["table"], "OWNS") {
		t.Errorf("l2 mode: %v", l2)
	}
}

// TestMetricsEndpoint: the leader publishes the controller's and every
// speaker's scrape target. It lists the speakers' pods without having the
// controller ask each speaker (reports=none): every ask sends a token to
// every node, which no hook may do for nothing.
func TestMetricsEndpoint(t *testing.T) {
	var asked atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/speakers" {
			http.NotFound(w, r)
			return
		}
		if r.URL.Query().Get("reports") != "none" {
			asked.Add(1)
		}
		_ = json.NewEncoder(w).Encode(api.Speakers{Mode: config.ModeSpine, Speakers: []api.SpeakerView{
			{Node: "n2", Address: "fd00::2"}, {Node: "n1", Address: "10.0.0.1"}, {Node: "n3", Error: "pod is Pending"}}})
	}))
	defer srv.Close()
	rel := goopstest.Relation{Endpoint: MetricsEndpoint, Interface: "prometheus_scrape", ID: "metrics-endpoint:3", RemoteAppName: "prometheus"}
	cfg := withDefaults(t, map[string]any{"pools": "10.0.0.0/24", "peering-mode": "calico"})
	out, ctx := run(t, srv.URL, goopstest.State{Leader: true, Config: cfg, Relations: []goopstest.Relation{rel}})
	if ctx.CharmErr != nil {
		t.Fatal(ctx.CharmErr)
	}
	got := out.Relations[0]
	if got.LocalUnitData["prometheus_scrape_unit_address"] != "10.1.0.7" || got.LocalUnitData["prometheus_scrape_unit_name"] != "calico-lb/0" {
		t.Fatalf("unit data %v", got.LocalUnitData)
	}
	want := `[{"job_name":"calico-lb-controller","metrics_path":"/metrics","static_configs":[{"targets":["*:9401"]}]},` +
		`{"job_name":"calico-lb-speakers","metrics_path":"/metrics","static_configs":[{"targets":["10.0.0.1:9403"],"labels":{"node":"n1"}},{"targets":["[fd00::2]:9403"],"labels":{"node":"n2"}}]}]`
	if got.LocalAppData["scrape_jobs"] != want {
		t.Fatalf("scrape_jobs\n%s\nwant\n%s", got.LocalAppData["scrape_jobs"], want)
	}
	if n := asked.Load(); n != 0 {
		t.Fatalf("the hook had the controller ask every speaker for its report %d times (a token to each node)", n)
	}
	var meta map[string]string
	if err := json.Unmarshal([]byte(got.LocalAppData["scrape_metadata"]), &meta); err != nil || meta["application"] != "calico-lb" || meta["unit"] != "calico-lb/0" || meta["charm_name"] != "calico-lb" {
		t.Fatalf("scrape_metadata %q: %v", got.LocalAppData["scrape_metadata"], err)
	}
	if rules, _ := cos.AlertRules(cos.Topology{Model: meta["model"], ModelUUID: meta["model_uuid"], Application: "calico-lb", Unit: "calico-lb/0"}); got.LocalAppData[cos.AlertRulesKey] != rules {
		t.Fatalf("alert_rules %q", got.LocalAppData[cos.AlertRulesKey])
	}

	// The workload does not answer: published jobs stay; with none yet,
	// the controller's job alone goes out.
	srv.Close()
	out, ctx = run(t, srv.URL, goopstest.State{Leader: true, Config: cfg, Relations: []goopstest.Relation{got}})
	if ctx.CharmErr != nil || out.Relations[0].LocalAppData["scrape_jobs"] != want {
		t.Fatalf("jobs after the workload went away: %q (%v)", out.Relations[0].LocalAppData["scrape_jobs"], ctx.CharmErr)
	}
	out, _ = run(t, srv.URL, goopstest.State{Leader: true, Config: cfg, Relations: []goopstest.Relation{rel}})
	if j := out.Relations[0].LocalAppData["scrape_jobs"]; !strings.Contains(j, controllerJob) || strings.Contains(j, speakersJob) {
		t.Fatalf("first jobs without the workload: %s", j)
	}
	// A unit that does not lead publishes only its address.
	out, _ = run(t, srv.URL, goopstest.State{Leader: false, Config: cfg, Relations: []goopstest.Relation{rel}})
	if out.Relations[0].LocalAppData["scrape_jobs"] != "" || out.Relations[0].LocalUnitData["prometheus_scrape_unit_address"] != "10.1.0.7" {
		t.Fatalf("non-leader: app %v unit %v", out.Relations[0].LocalAppData, out.Relations[0].LocalUnitData)
	}
}

func TestBGPStatusAction(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/speakers" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(api.Speakers{Mode: config.ModeSpine, Speakers: []api.SpeakerView{{Node: "n1", Address: "10.0.0.1",
			BGP: &api.BGPStatus{Routes: []string{"10.9.0.1/32"}, Peers: []api.PeerStatus{{Address: "10.0.255.1", ASN: 64500, State: "established", Routes: 1}}}}}})
	}))
	ctx := runAction(t, srv.URL, "bgp-status", nil)
	if r := ctx.ActionResults; ctx.ActionError != nil || r["speakers.0.peers.0.state"] != "established" || r["summary"] != "spine mode: 1 speaker, 1/1 sessions established, 0 with errors" {
		t.Fatalf("results %v, error %v", r, ctx.ActionError)
	}
	srv.Close()
	ctx = runAction(t, srv.URL, "bgp-status", nil)
	if ctx.ActionError == nil || !strings.Contains(ctx.ActionError.Error(), "workload API") {
		t.Fatalf("workload down: %v", ctx.ActionError)
	}
}

// The leader publishes the dashboard on grafana-dashboard; another unit
// does not.
func TestGrafanaDashboard(t *testing.T) {
	rel := goopstest.Relation{Endpoint: DashboardEndpoint, Interface: "grafana_dashboard", ID: "grafana-dashboard:4", RemoteAppName: "grafana"}
	cfg := withDefaults(t, map[string]any{"pools": "10.0.0.0/24", "peering-mode": "calico"})
	out, ctx := run(t, "http://127.0.0.1:1", goopstest.State{Leader: true, Config: cfg, Relations: []goopstest.Relation{rel}})
	if ctx.CharmErr != nil {
		t.Fatal(ctx.CharmErr)
	}
	boards, err := cos.DecodeDashboards(out.Relations[0].LocalAppData[cos.DashboardKey])
	if err != nil || len(boards) != 1 {
		t.Fatalf("dashboards %q: %v", out.Relations[0].LocalAppData, err)
	}
	out, ctx = run(t, "http://127.0.0.1:1", goopstest.State{Leader: false, Config: cfg, Relations: []goopstest.Relation{rel}})
	if ctx.CharmErr != nil || len(out.Relations[0].LocalAppData) != 0 {
		t.Fatalf("a unit that does not lead: %v, wrote %v", ctx.CharmErr, out.Relations[0].LocalAppData)
	}
}

// The charm presents the local API's key, which it reads through Pebble
// from the file the controller keeps it in: the API refuses callers
// without it (kubectl port-forward reaches its loopback address).
func TestCharmPresentsLocalKey(t *testing.T) {
	ctr, src := container(t, true)
	keys := t.TempDir()
	const key = "0123456789abcdef0123456789abcdef0123456789abcdef"
	p := filepath.Join(keys, plan.APIKeyFile)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctr.Mounts["keys"] = goopstest.Mount{Location: plan.APIKeyFile, Source: keys}
	inner := workloadAPI(t, api.Snapshot{Mode: config.ModeCalico, Pools: []api.PoolView{{Name: "default", Capacity: "254"}}}, api.PoolChange{}, src)
	var calls, without atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer "+key {
			without.Add(1)
			http.Error(w, "no key", http.StatusUnauthorized)
			return
		}
		resp, err := http.Get(inner + r.URL.RequestURI())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	defer srv.Close()
	_, ctx := run(t, srv.URL, goopstest.State{Leader: true, Config: withDefaults(t, map[string]any{"pools": "10.0.0.0/24", "peering-mode": "calico"}), Containers: []goopstest.Container{ctr}})
	if ctx.CharmErr != nil {
		t.Fatal(ctx.CharmErr)
	}
	if calls.Load() == 0 || without.Load() != 0 {
		t.Fatalf("%d calls to the local API, %d without its key", calls.Load(), without.Load())
	}
}
