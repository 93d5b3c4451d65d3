package allocator

import (
	"strings"
	"testing"
)

// A keyed Service that took an address of its own hears why it joined
// none: the port and its holder (named only in the same namespace), or
// pods that differ; one that joined hears nothing.
func TestSharingMisses(t *testing.T) {
	a := mustNew(t, Pool{Name: "p", AutoAssign: true, Ranges: rngs("10.0.0.1-10.0.0.10")})
	keyed := func(ns, name, backend string, port int32) *Request {
		r := v4req(ns, name)
		r.SharingKey, r.BackendKey, r.Ports = "k", backend, []Port{{"TCP", port}}
		return r
	}
	first := mustAlloc(t, a, keyed("web", "a", "", 80))
	joined := keyed("web", "b", "", 443)
	if asg := mustAlloc(t, a, joined); asg.IPs != first.IPs || len(a.SharingMisses(joined, asg)) != 0 {
		t.Fatalf("b should have joined %v silently: %v, %v", first, asg, a.SharingMisses(joined, asg))
	}
	clash := keyed("web", "c", "", 80)
	asg := mustAlloc(t, a, clash)
	if m := a.SharingMisses(clash, asg); len(m) != 1 || m[0] != "10.0.0.1: port TCP/80 is taken there by web/a" {
		t.Fatalf("same namespace: %q", m)
	}
	// Port 80 is taken on both shared addresses, by Services of another
	// namespace: they are not named.
	other := keyed("shop", "d", "", 80)
	asg = mustAlloc(t, a, other)
	m := a.SharingMisses(other, asg)
	if len(m) != 2 || strings.Contains(strings.Join(m, " "), "web/") || !strings.Contains(m[0], "taken there by a Service in another namespace") {
		t.Fatalf("another namespace: %q", m)
	}
	local := keyed("web", "e", "app=web", 8080)
	asg = mustAlloc(t, a, local)
	if m := a.SharingMisses(local, asg); len(m) == 0 || !strings.Contains(m[0], "select other pods") {
		t.Fatalf("different backend: %q", m)
	}
	if m := a.SharingMisses(v4req("web", "plain"), asg); m != nil {
		t.Fatalf("no key: %q", m)
	}
}
