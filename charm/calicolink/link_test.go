package calicolink

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/calico-lb/calico-lb/tests/fakecontroller"
	"github.com/calico-lb/calico-lb/workload/calico"
)

const (
	model    = "3f1c0a9e-7d2b-4c55-9a1e-2b7c4d6e8f01"
	password = "s3cret-Pa55"
)

// controller is a fake controller with a calico application as the calico
// charm has it, a writer "lb" and a reader "ro".
func controller(t *testing.T) *fakecontroller.Controller {
	c := fakecontroller.Start(t)
	c.Users["lb"] = fakecontroller.User{Password: password, Models: map[string]fakecontroller.Access{model: fakecontroller.Write}}
	c.Users["ro"] = fakecontroller.User{Password: password, Models: map[string]fakecontroller.Access{model: fakecontroller.Read}}
	c.Apps[model] = map[string]map[string]fakecontroller.Option{"calico": {
		calico.OptGlobalPeers:     {Type: "string", Value: "[{address: 10.0.0.1, as-number: 64512}]", Default: "[]"},
		calico.OptSubnetPeers:     {Type: "string", Value: "{}", Default: "{}"},
		calico.OptUnitPeers:       {Type: "string", Value: "{}", Default: "{}"},
		calico.OptGlobalAS:        {Type: "int", Value: float64(64512), Default: float64(64512)},
		calico.OptMesh:            {Type: "boolean", Value: true, Default: true},
		calico.OptLoadBalancerIPs: {Type: "string", Value: "198.51.100.0/24", Default: ""},
		calico.OptExternalIPs:     {Type: "string", Value: "", Default: ""},
		calico.OptRouteReflectors: {Type: "string", Value: "{}", Default: "{}"},
		"cidr":                    {Type: "string", Value: "192.168.0.0/16", Default: "192.168.0.0/16"},
		"bgp-service-cluster-ips": {Type: "string", Value: "", Default: ""},
	}}
	return c
}

func creds(c *fakecontroller.Controller, user, pw string) Credentials {
	return Credentials{Addresses: []string{c.Address()}, CACert: c.CACert, Username: user, Password: pw}
}

var fast = Timeouts{Dial: 2 * time.Second, Call: 2 * time.Second}

func TestReadAndSyncOnTheWire(t *testing.T) {
	c := controller(t)
	ctx := context.Background()
	cl, err := Dial(ctx, creds(c, "lb", password), model, fast)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	link := &Link{Client: cl, App: "calico"}
	cfg, _, err := link.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.GlobalPeers) != 1 || cfg.GlobalPeers[0].Address.String() != "10.0.0.1" || !cfg.Mesh {
		t.Fatalf("calico config %+v", cfg)
	}
	// The login and the read, as a controller sees them.
	login := c.CallsTo("Admin", "Login")
	var lp struct {
		AuthTag     string `json:"auth-tag"`
		Credentials string `json:"credentials"`
		Client      string `json:"client-version"`
	}
	if len(login) != 1 || login[0].Version != 3 || json.Unmarshal(login[0].Params, &lp) != nil || lp.AuthTag != "user-lb" || lp.Credentials != password || login[0].Model != model {
		t.Fatalf("login on the wire: %+v %+v", login, lp)
	}
	get := c.CallsTo("Application", "Get")
	if len(get) != 1 || get[0].Version != 20 || !strings.Contains(string(get[0].Params), `"application":"calico"`) {
		t.Fatalf("Application.Get on the wire: %+v", get)
	}

	opt, err := Option("auto", cfg)
	if err != nil || opt != calico.OptLoadBalancerIPs {
		t.Fatalf("option %q %v", opt, err)
	}
	ch, err := link.SetOption(ctx, opt, []string{"10.208.1.0/28"}, nil, false)
	if err != nil || !ch.Changed() || ch.Value != "198.51.100.0/24 10.208.1.0/28" {
		t.Fatalf("sync: %+v %v", ch, err)
	}
	set := c.CallsTo("Application", "SetConfigs")
	var sp struct {
		Args []struct {
			App    string            `json:"application"`
			Config map[string]string `json:"config"`
			YAML   string            `json:"config-yaml"`
		} `json:"Args"`
	}
	if len(set) != 1 || json.Unmarshal(set[0].Params, &sp) != nil || len(sp.Args) != 1 || sp.Args[0].App != "calico" || sp.Args[0].YAML != "" ||
		len(sp.Args[0].Config) != 1 || sp.Args[0].Config[calico.OptLoadBalancerIPs] != "198.51.100.0/24 10.208.1.0/28" {
		t.Fatalf("SetConfigs on the wire: %s", set[0].Params)
	}
	c.Lock()
	got := c.Apps[model]["calico"][calico.OptLoadBalancerIPs].Value
	c.Unlock()
	if got != "198.51.100.0/24 10.208.1.0/28" {
		t.Fatalf("the controller has %v", got)
	}
	// Idempotent: a second sync reads and writes nothing.
	ch, err = link.SetOption(ctx, opt, []string{"10.208.1.0/28"}, ch.Ours, false)
	if err != nil || ch.Changed() || len(c.CallsTo("Application", "SetConfigs")) != 1 {
		t.Fatalf("second sync wrote: %+v %v", ch, err)
	}
	// Dry run: reports, writes nothing.
	ch, err = link.SetOption(ctx, opt, []string{"10.208.2.0/28"}, []string{"10.208.1.0/28"}, true)
	if err != nil || ch.Value != "198.51.100.0/24 10.208.2.0/28" || len(c.CallsTo("Application", "SetConfigs")) != 1 {
		t.Fatalf("dry run: %+v %v", ch, err)
	}
}

func TestLinkErrors(t *testing.T) {
	c := controller(t)
	ctx := context.Background()
	kind := func(err error) Kind {
		var le *Error
		if errors.As(err, &le) {
			return le.Kind
		}
		return "not a link error: " + Kind(err.Error())
	}
	noPassword := func(err error) {
		t.Helper()
		if err != nil && strings.Contains(err.Error(), password) {
			t.Fatalf("the password leaked: %v", err)
		}
	}

	_, err := Dial(ctx, creds(c, "lb", "wrong-"+password), model, fast)
	noPassword(err)
	if kind(err) != BadCredentials || !strings.Contains(err.Error(), "user lb's password") {
		t.Fatalf("bad password: %v", err)
	}
	_, err = Dial(ctx, creds(c, "lb", password), "0f1c0a9e-7d2b-4c55-9a1e-2b7c4d6e8f01", fast)
	if kind(err) != NoModel {
		t.Fatalf("unknown model: %v", err)
	}

	cl, err := Dial(ctx, creds(c, "lb", password), model, fast)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = (&Link{Client: cl, App: "calico-typo"}).Read(ctx)
	if kind(err) != NoApplication || !strings.Contains(err.Error(), `"calico-typo"`) {
		t.Fatalf("no application: %v", err)
	}
	cl.Close()

	ro, err := Dial(ctx, creds(c, "ro", password), model, fast)
	if err != nil {
		t.Fatal(err)
	}
	_, err = (&Link{Client: ro, App: "calico"}).SetOption(ctx, calico.OptLoadBalancerIPs, []string{"10.0.0.0/28"}, nil, false)
	noPassword(err)
	if kind(err) != Denied || !strings.Contains(err.Error(), "juju grant ro write") {
		t.Fatalf("read-only user: %v", err)
	}
	ro.Close()

	// Nothing listens: unreachable, quickly.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	start := time.Now()
	bad := creds(c, "lb", password)
	bad.Addresses = []string{dead}
	_, err = Dial(ctx, bad, model, fast)
	noPassword(err)
	if k := kind(err); k != Unreachable && k != TimedOut {
		t.Fatalf("unreachable: %v", err)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("an unreachable controller held the hook for %s", took)
	}

	// A controller that stops answering after login: the call timeout holds.
	slow, err := Dial(ctx, creds(c, "lb", password), model, Timeouts{Dial: time.Second, Call: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c.Lock()
	c.Delay = 5 * time.Second
	c.Unlock()
	start = time.Now()
	_, err = slow.Config(ctx, "calico")
	if kind(err) != TimedOut {
		t.Fatalf("silent controller, call: %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("the call timeout did not hold: %s", took)
	}

	// A controller that does not answer: the dial timeout holds.
	c.Lock()
	c.Delay = 5 * time.Second
	c.Unlock()
	start = time.Now()
	_, err = Dial(ctx, creds(c, "lb", password), model, Timeouts{Dial: time.Second, Call: time.Second})
	if kind(err) != TimedOut {
		t.Fatalf("silent controller: %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("the dial timeout did not hold: %s", took)
	}
}

func TestCalicoLacksOption(t *testing.T) {
	c := controller(t)
	c.Lock()
	delete(c.Apps[model]["calico"], calico.OptLoadBalancerIPs) // an older calico
	c.Unlock()
	cl, err := Dial(context.Background(), creds(c, "lb", password), model, fast)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cfg, _, err := (&Link{Client: cl, App: "calico"}).Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if opt, err := Option("auto", cfg); err != nil || opt != calico.OptExternalIPs {
		t.Fatalf("auto on an older calico: %q %v", opt, err)
	}
	if _, err := Option("loadbalancer", cfg); err == nil || !strings.Contains(err.Error(), "calico-service-ip-option=external") {
		t.Fatalf("loadbalancer on an older calico: %v", err)
	}
}

func TestCredentialsFromSecret(t *testing.T) {
	ok := map[string]string{KeyAddresses: "10.0.0.10:17070, 10.0.0.11:17070", KeyCACert: "-----BEGIN CERTIFICATE-----\nx\n", KeyUsername: "lb-charm", KeyPassword: "p"}
	c, err := CredentialsFromSecret(ok)
	if err != nil || len(c.Addresses) != 2 || c.Username != "lb-charm" {
		t.Fatalf("%+v %v", c, err)
	}
	for _, tc := range []struct {
		key, value, want string
	}{
		{KeyPassword, "", "lacks password"},
		{KeyAddresses, "10.0.0.10", "not host:port"},
		{KeyCACert, "abc", "not a PEM certificate"},
		{KeyUsername, "not a user!", "not a Juju user name"},
	} {
		m := map[string]string{}
		for k, v := range ok {
			m[k] = v
		}
		m[tc.key] = tc.value
		if _, err := CredentialsFromSecret(m); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%q: %v", tc.key, tc.value, err)
		}
	}
}
