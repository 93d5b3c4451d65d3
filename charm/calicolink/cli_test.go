package calicolink

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cookiejar "github.com/juju/persistent-cookiejar"

	"github.com/calico-lb/calico-lb/tests/fakecontroller"
	"github.com/calico-lb/calico-lb/workload/calico"
)

const k8sModel = "9a7d3c21-5b4e-4f60-8d2a-1c3b5e7f9a0b"

// clientStore writes a Juju client store for the fake controller, logged
// in as lb, current model admin/k8s; calico lives in admin/machines.
func clientStore(t *testing.T, c *fakecontroller.Controller) {
	dir := t.TempDir()
	t.Setenv("JUJU_DATA", dir)
	if err := c.WriteClientStore(dir, "lb", password, map[string]string{"admin/k8s": k8sModel, "admin/machines": model}, "admin/k8s"); err != nil {
		t.Fatal(err)
	}
}

// withLB adds calico-lb to the k8s model with options set.
func withLB(c *fakecontroller.Controller, set map[string]string) {
	opts := map[string]fakecontroller.Option{
		"pools":                    {Type: "string", Value: "10.208.1.0/28", Default: ""},
		"peering-mode":             {Type: "string", Value: "calico", Default: "auto"},
		"spine-peers":              {Type: "string", Value: "[]", Default: "[]"},
		"calico-application":       {Type: "string", Value: "calico", Default: "calico"},
		"calico-model":             {Type: "string", Value: model, Default: ""},
		"calico-service-ip-option": {Type: "string", Value: "auto", Default: "auto"},
		"as-number":                {Type: "int", Value: float64(64512), Default: float64(64512)},
		"juju-credentials":         {Type: "secret"}, // unset: no value
	}
	for k, v := range set {
		o := opts[k]
		o.Value = v
		opts[k] = o
	}
	c.Lock()
	c.Users["lb"].Models[k8sModel] = fakecontroller.Write
	c.Apps[k8sModel] = map[string]map[string]fakecontroller.Option{"calico-lb": opts}
	c.Statuses[k8sModel] = map[string]fakecontroller.AppStatus{"calico-lb": {Status: "active", Info: "calico mode"}}
	c.Unlock()
}

func cli(t *testing.T, args ...string) (int, string) { return cliIn(t, "", args...) }

// cliIn runs the CLI with in as what the operator types.
func cliIn(t *testing.T, in string, args ...string) (int, string) {
	var out bytes.Buffer
	code := CLI(context.Background(), args, strings.NewReader(in), &out)
	return code, out.String()
}

func TestCLICheck(t *testing.T) {
	c := controller(t)
	clientStore(t, c)
	withLB(c, map[string]string{"spine-peers": "[{address: 10.0.0.1, as-number: 64512}]", "peering-mode": "auto"})
	code, out := cli(t, "check")
	for _, want := range []string{
		"controller prod: calico-lb in admin/k8s, calico in admin/machines",
		"calico: 1 global peers",
		"conflicts: 1",
		"spine peer 10.0.0.1 (spine-peers) is also Calico's BGP peer (calico global-bgp-peers)",
		// auto does not switch to calico behind the operator's back.
		"auto cannot decide: spine peer 10.0.0.1 is also Calico's peer",
		"set peering-mode=calico to have Calico announce the pools to its peers",
		"peering-mode auto: undecided, calico-lb stays blocked",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if code != 1 {
		t.Fatalf("exit %d with auto undecided", code)
	}
	// Explicit calico: what the pools need in calico's option.
	withLB(c, map[string]string{"spine-peers": "[{address: 10.0.0.1, as-number: 64512}]", "peering-mode": "calico"})
	if code, out := cli(t, "check"); code != 0 || !strings.Contains(out, `bgp-service-loadbalancer-ips = "198.51.100.0/24"; it needs 10.208.1.0/28`) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	// Explicit spine with a conflict is a problem: exit 1.
	withLB(c, map[string]string{"spine-peers": "[{address: 10.0.0.1, as-number: 64512}]", "peering-mode": "spine"})
	if code, out := cli(t, "check"); code != 1 || !strings.Contains(out, "peering-mode spine: spine mode") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	// The model by flag, and a model that is not there.
	if code, out := cli(t, "--model", "nope", "check"); code != 1 || !strings.Contains(out, `no model "nope"`) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if code, _ := cli(t, "frobnicate"); code != 2 {
		t.Fatalf("unknown command: exit %d", code)
	}
}

func TestCLISync(t *testing.T) {
	c := controller(t)
	clientStore(t, c)
	withLB(c, nil)
	code, out := cli(t, "sync", "--dry-run")
	if code != 0 || !strings.Contains(out, `to "198.51.100.0/24 10.208.1.0/28"`) || !strings.Contains(out, "dry run") || len(c.CallsTo("Application", "SetConfigs")) != 0 {
		t.Fatalf("dry run: exit %d\n%s", code, out)
	}
	// calico-lb's config names the target (another model): the operator is
	// asked, and nothing is written without a yes.
	if code, out := cli(t, "sync"); code != 1 || !strings.Contains(out, `names the calico application "calico" in model admin/machines`) || len(c.CallsTo("Application", "SetConfigs")) != 0 {
		t.Fatalf("sync without an answer: exit %d\n%s", code, out)
	}
	if code, out := cliIn(t, "n\n", "sync"); code != 1 || len(c.CallsTo("Application", "SetConfigs")) != 0 {
		t.Fatalf("sync answered no: exit %d\n%s", code, out)
	}
	if code, out := cliIn(t, "y\n", "sync"); code != 0 || !strings.Contains(out, "set calico bgp-service-loadbalancer-ips") {
		t.Fatalf("sync: exit %d\n%s", code, out)
	}
	c.Lock()
	got := c.Apps[model]["calico"][calico.OptLoadBalancerIPs].Value
	c.Unlock()
	if got != "198.51.100.0/24 10.208.1.0/28" {
		t.Fatalf("calico has %v", got)
	}
	if code, out := cli(t, "sync", "--yes"); code != 0 || !strings.Contains(out, "already in line") || len(c.CallsTo("Application", "SetConfigs")) != 1 {
		t.Fatalf("second sync: exit %d\n%s", code, out)
	}
	// The pool moves while calico-lb holds the change back: the old
	// CIDR stays in calico (its Services still hold addresses there) and
	// the output says why.
	withLB(c, map[string]string{"pools": "10.208.2.0/28"})
	c.Lock()
	c.Statuses[k8sModel]["calico-lb"] = fakecontroller.AppStatus{Status: "blocked", Info: "pool change held back: it would take the IPs of web/shop; run the apply-pool-change action to apply it, or revert pools"}
	c.Unlock()
	if code, out := cli(t, "sync", "--yes"); code != 0 || !strings.Contains(out, `to "198.51.100.0/24 10.208.1.0/28 10.208.2.0/28"`) ||
		!strings.Contains(out, "kept 10.208.1.0/28, which calico-lb added before, because calico-lb is blocked (\"pool change held back") {
		t.Fatalf("sync during a held-back change: exit %d\n%s", code, out)
	}
	// Applied: only what the tool added goes, the operator's stays.
	c.Lock()
	c.Statuses[k8sModel]["calico-lb"] = fakecontroller.AppStatus{Status: "active", Info: "calico mode"}
	c.Unlock()
	if code, out := cli(t, "sync", "--yes"); code != 0 || !strings.Contains(out, `to "198.51.100.0/24 10.208.2.0/28"`) {
		t.Fatalf("sync after the change was applied: exit %d\n%s", code, out)
	}
	// Bad password in the store: a clear error, no password shown.
	data, _ := os.ReadFile(filepath.Join(os.Getenv("JUJU_DATA"), "accounts.yaml"))
	_ = os.WriteFile(filepath.Join(os.Getenv("JUJU_DATA"), "accounts.yaml"), []byte(strings.Replace(string(data), password, "stale-"+password, 1)), 0o600)
	if code, out := cli(t, "check"); code != 1 || !strings.Contains(out, "refused user lb's password") || strings.Contains(out, password) {
		t.Fatalf("bad password: exit %d\n%s", code, out)
	}
}

// The login cookies `juju login` saved are what calico-lb-juju presents
// for a user without a stored password; reading them never rewrites the
// file.
func TestLoginCookies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cookies", "prod.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("https://10.0.0.10:17070/api")
	saved, err := cookiejar.New(&cookiejar.Options{Filename: path})
	if err != nil {
		t.Fatal(err)
	}
	saved.SetCookies(u, []*http.Cookie{{Name: "macaroon-login", Value: "abc", Path: "/", Expires: time.Now().Add(time.Hour)}})
	if err := saved.Save(); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	jar, err := loginCookies(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := jar.Cookies(u); len(got) != 1 || got[0].Value != "abc" {
		t.Fatalf("cookies for the controller: %v, want the saved one", got)
	}
	jar.SetCookies(u, []*http.Cookie{{Name: "other", Value: "x", Path: "/"}})
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatal("the juju client's cookie file was rewritten")
	}
}
