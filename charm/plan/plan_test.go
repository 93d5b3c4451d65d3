package plan

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/pebblelayer"
)

func testConfig(t *testing.T, api string) *config.Config {
	t.Helper()
	o := config.DefaultOptions()
	o.Pools = "10.0.0.0/24"
	o.PeeringMode = "spine"
	o.SpinePeers = "[{address: 10.0.255.1, as-number: 65100, password-key: spine1}]"
	o.BGPPasswords = "secret:abc"
	cfg, _, err := config.FromOptions(o)
	if err != nil {
		t.Fatal(err)
	}
	if api != "" {
		cfg.APIAddress = api
	}
	return cfg
}

func TestMake(t *testing.T) {
	cfg := testConfig(t, "")
	in := Inputs{Passwords: map[string]string{"spine1": "s3cret"}, Namespace: "lb", PodName: "calico-lb-0"}
	p, err := Make(cfg, in)
	if err != nil {
		t.Fatal(err)
	}
	// The password file goes first: a config naming a new password key
	// must find it there when the workload reloads.
	if len(p.Files) != 2 || p.Files[1].Path != config.DefaultPath || p.Files[1].Mode != 0o644 || p.Files[0].Mode != 0o600 {
		t.Fatalf("files %+v", p.Files)
	}
	back, err := config.Parse(p.Files[1].Content)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, cfg) {
		t.Fatalf("the pushed config parses to\n%+v\nnot\n%+v", back, cfg)
	}
	var pw map[string]string
	if err := yaml.Unmarshal(p.Files[0].Content, &pw); err != nil || pw["spine1"] != "s3cret" {
		t.Fatalf("password file %q: %v", p.Files[0].Content, err)
	}
	if bytes.Contains(p.Layer, []byte("s3cret")) || bytes.Contains(p.Files[1].Content, []byte("s3cret")) {
		t.Fatal("a password leaked out of the password file")
	}
	var l pebblelayer.Layer
	if err := yaml.Unmarshal(p.Layer, &l); err != nil {
		t.Fatal(err)
	}
	svc, chk := l.Services[Service], l.Checks[Check]
	if svc.Startup != "enabled" || svc.OnCheckFailure[Check] != "restart" || svc.Environment["POD_NAMESPACE"] != "lb" || svc.Environment["POD_NAME"] != "calico-lb-0" {
		t.Fatalf("service %+v", svc)
	}
	if chk.HTTP.URL != "http://"+config.DefaultAPIAddress+"/readyz" || chk.Level != "ready" {
		t.Fatalf("check %+v", chk)
	}
	// A wedged allocation loop fails /healthz: the alive check restarts it.
	if alive := l.Checks[AliveCheck]; alive.HTTP.URL != "http://"+config.DefaultAPIAddress+"/healthz" || alive.Level != "alive" || svc.OnCheckFailure[AliveCheck] != "restart" {
		t.Fatalf("alive check %+v, on failure %v", alive, svc.OnCheckFailure)
	}
	// No passwords: still a mapping.
	p2, err := Make(cfg, Inputs{})
	if err != nil {
		t.Fatal(err)
	}
	if string(p2.Files[0].Content) != "{}\n" {
		t.Fatalf("empty password file %q", p2.Files[0].Content)
	}
}

// The plan is a function of its inputs (map order aside), and a password
// change touches the files, not the layer (no replan).
func TestPlansFollowTheirInputs(t *testing.T) {
	in := Inputs{Passwords: map[string]string{"spine1": "a", "spine2": "b"}}
	a, _ := Make(testConfig(t, ""), in)
	b, _ := Make(testConfig(t, ""), Inputs{Passwords: map[string]string{"spine2": "b", "spine1": "a"}})
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same inputs give different plans")
	}
	c, _ := Make(testConfig(t, ""), Inputs{Passwords: map[string]string{"spine1": "changed", "spine2": "b"}})
	if reflect.DeepEqual(c.Files, a.Files) || !bytes.Equal(c.Layer, a.Layer) {
		t.Fatal("a password change must change the files but not the layer (no replan)")
	}
	d, _ := Make(testConfig(t, "127.0.0.1:9500"), in)
	if bytes.Equal(d.Layer, a.Layer) {
		t.Fatal("a new API address must change the layer (the check's URL)")
	}
}

// With the workload's user the controller runs as it, and owns the files
// it reads (the password file is 0600).
func TestWorkloadUser(t *testing.T) {
	o := config.DefaultOptions()
	o.PeeringMode = "l2"
	cfg, _, err := config.FromOptions(o)
	if err != nil {
		t.Fatal(err)
	}
	root, err := Make(cfg, Inputs{})
	if err != nil {
		t.Fatal(err)
	}
	uid := 584792
	p, err := Make(cfg, Inputs{UID: &uid})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(p.Layer), "user-id: 584792") || !strings.Contains(string(p.Layer), "group-id: 584792") || strings.Contains(string(root.Layer), "user-id") {
		t.Fatalf("layer:\n%s", p.Layer)
	}
	for _, f := range p.Files {
		if f.UID == nil || *f.UID != uid || f.GID == nil || *f.GID != uid {
			t.Fatalf("%s is not the workload user's", f.Path)
		}
	}
}
