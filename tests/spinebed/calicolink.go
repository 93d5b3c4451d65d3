package spinebed

import (
	"github.com/calico-lb/calico-lb/charm"
	"github.com/calico-lb/calico-lb/tests/fakecontroller"
	"github.com/calico-lb/calico-lb/tests/fakejuju"
	"github.com/calico-lb/calico-lb/workload/calico"
)

// CalicoController starts a fake Juju controller on the bed's root
// address, which pods reach, with calico's application in model holding
// the bed's calico options (and an empty service-IP option unless the bed
// set one), and user lb, with password, allowed to change them. Close it
// when done.
func (b *Bed) CalicoController(model, password string) (*fakecontroller.Controller, error) {
	fc, err := fakecontroller.Listen(b.RootAddr())
	if err != nil {
		return nil, err
	}
	fc.Users["lb"] = fakecontroller.User{Password: password, Models: map[string]fakecontroller.Access{model: fakecontroller.Write}}
	opts := map[string]fakecontroller.Option{calico.OptLoadBalancerIPs: {Type: "string", Value: ""}}
	for k, v := range b.Racks.Options() {
		typ := "string"
		if _, ok := v.(bool); ok {
			typ = "boolean"
		}
		opts[k] = fakecontroller.Option{Type: typ, Value: v}
	}
	fc.Apps[model] = map[string]map[string]fakecontroller.Option{"calico": opts}
	return fc, nil
}

// FollowController makes Calico's stand-in apply calico's options as fc
// holds them in model: what the Calico link writes there reaches BIRD.
func (b *Bed) FollowController(fc *fakecontroller.Controller, model string) {
	b.Racks.CalicoFrom(func() map[string]any {
		fc.Lock()
		defer fc.Unlock()
		out := map[string]any{}
		for k, o := range fc.Apps[model]["calico"] {
			out[k] = o.Value
		}
		return out
	})
}

// CalicoOption is calico's option name as fc holds it in model.
func CalicoOption(fc *fakecontroller.Controller, model, name string) string {
	fc.Lock()
	defer fc.Unlock()
	v, _ := fc.Apps[model]["calico"][name].Value.(string)
	return v
}

// LinkState gives a unit the Calico link's secret for fc (user lb) and
// its peer relation.
func LinkState(fc *fakecontroller.Controller, password string) func(*fakejuju.State) {
	return func(st *fakejuju.State) {
		st.Secrets = map[string]map[string]string{"secret:creds": {"controller-addresses": fc.Address(), "ca-cert": fc.CACert, "username": "lb", "password": password}}
		st.Relations = map[string][]*fakejuju.Relation{charm.PeerEndpoint: {{ID: "calico-lb-peers:0", RemoteApp: "calico-lb", Peer: true}}}
	}
}

// SetCalicoOption sets calico's option name in model, as `juju config
// calico name=value` would.
func SetCalicoOption(fc *fakecontroller.Controller, model, name, value string) {
	fc.Lock()
	defer fc.Unlock()
	o := fc.Apps[model]["calico"][name]
	o.Value = value
	fc.Apps[model]["calico"][name] = o
}
