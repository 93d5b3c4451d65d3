package speaker

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calico-lb/calico-lb/tests/netns"
)

// l2Child serves the L2 ops of the speaker child (bgp_test.go's runChild).
func l2Child(ctx context.Context, log *slog.Logger, r *Responder, c command, reply *command) *Responder {
	switch c.Op {
	case "l2start":
		r = StartResponder(ctx, c.Ifaces, log)
	case "l2ifaces":
		r.SetInterfaces(c.Ifaces)
	case "l2owned":
		r.SetOwned(ctx, c.IPs)
	case "l2status":
		st := r.status()
		reply.L2 = &st
		fds, _ := os.ReadDir("/proc/self/fd")
		reply.FDs = len(fds)
	}
	return r
}

// fakeGroups records the multicast groups an interface is in.
type fakeGroups struct {
	mu     sync.Mutex
	in     map[netip.Addr]int
	joins  int
	leaves int
}

func (f *fakeGroups) JoinGroup(a netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.in[a]++
	f.joins++
	return nil
}

func (f *fakeGroups) LeaveGroup(a netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.in[a]--
	if f.in[a] <= 0 {
		delete(f.in, a) // the kernel keeps no count either: one leave drops the membership
	}
	f.leaves++
	return nil
}

func (f *fakeGroups) member(a netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.in[a] > 0
}

// fakeOpener opens fake interfaces: those in fail fail with their error.
type fakeOpener struct {
	mu     sync.Mutex
	fail   map[string]error
	opened map[string]int
	groups map[string]*fakeGroups
	open   []*l2iface
}

func newFakeOpener() *fakeOpener {
	return &fakeOpener{fail: map[string]error{}, opened: map[string]int{}, groups: map[string]*fakeGroups{}}
}

func (o *fakeOpener) openIface(_ context.Context, name string) (*l2iface, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.fail[name]; err != nil {
		return nil, err
	}
	o.opened[name]++
	g := &fakeGroups{in: map[netip.Addr]int{}}
	o.groups[name] = g
	li := &l2iface{ifi: &net.Interface{Name: name, Index: len(o.open) + 1}, groups: g, done: make(chan struct{})}
	o.open = append(o.open, li)
	return li, nil
}

func (o *fakeOpener) stillOpen() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, li := range o.open {
		if !li.closed() {
			n++
		}
	}
	return n
}

// Two VIPs whose low 24 bits agree share a solicited-node group: releasing
// one must leave the group joined for the other.
func TestNDPGroupsAreCounted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := newFakeOpener()
	r := newResponder(ctx, slog.New(slog.DiscardHandler), o.openIface)
	r.present = func(*net.Interface) bool { return true }
	r.SetInterfaces([]string{"eth0"})
	a, b := netip.MustParseAddr("2001:db8:1::1"), netip.MustParseAddr("2001:db8:2::1")
	snm := netip.MustParseAddr("ff02::1:ff00:1")
	g := o.groups["eth0"]
	r.SetOwned(ctx, []netip.Addr{a, b})
	if !g.member(snm) {
		t.Fatalf("owning %s and %s: not in %s", a, b, snm)
	}
	r.SetOwned(ctx, []netip.Addr{b})
	if !g.member(snm) {
		t.Fatalf("after releasing %s, the group %s that %s needs was left: its neighbour solicitations go unheard", a, snm, b)
	}
	r.SetOwned(ctx, nil)
	if g.member(snm) {
		t.Fatalf("nothing owned, still in %s", snm)
	}
	// An interface opened later joins the groups already needed.
	r.SetOwned(ctx, []netip.Addr{a, netip.MustParseAddr("10.0.0.1")})
	r.SetInterfaces([]string{"eth0", "eth1"})
	if !o.groups["eth1"].member(snm) {
		t.Fatalf("eth1, opened after %s was owned, did not join %s", a, snm)
	}
	if g.joins != 2 || g.leaves != 1 {
		t.Fatalf("eth0 joined %d times and left %d times, want 2 and 1 (one join per group, not per IP)", g.joins, g.leaves)
	}
}

// An interface that cannot be opened does not keep the others from
// answering, is reported once (not on every pass), is tried again, and
// nothing the responder opened stays open after it ends.
func TestL2MissingInterface(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	o := newFakeOpener()
	o.fail["bond0"] = errors.New(`l2 interface "bond0": route ip+net: no such network interface`)
	r := newResponder(ctx, slog.New(slog.DiscardHandler), o.openIface)
	r.present = func(*net.Interface) bool { return true }
	var told []string
	var mu sync.Mutex
	r.OnInterfaceProblem(func(iface, why string) {
		mu.Lock()
		defer mu.Unlock()
		told = append(told, iface+": "+why)
	})
	for range 50 { // the driver passes the interfaces on every cluster event
		r.SetInterfaces([]string{"eth0", "bond0"})
	}
	st := r.status()
	if len(st.Missing) != 1 || st.Missing[0].Interface != "bond0" || !strings.Contains(st.Missing[0].Problem, "no such network interface") {
		t.Fatalf("status missing = %+v, want bond0 and why", st.Missing)
	}
	if o.opened["eth0"] != 1 {
		t.Fatalf("eth0 opened %d times, want once", o.opened["eth0"])
	}
	if len(r.openIfaces()) != 1 {
		t.Fatalf("open interfaces: %d, want eth0 alone", len(r.openIfaces()))
	}
	mu.Lock()
	if len(told) != 1 || !strings.HasPrefix(told[0], "bond0: ") {
		t.Fatalf("told %q, want bond0 once", told)
	}
	mu.Unlock()
	// bond0 appears.
	o.mu.Lock()
	delete(o.fail, "bond0")
	o.mu.Unlock()
	r.scan()
	if st := r.status(); len(st.Missing) != 0 {
		t.Fatalf("bond0 appeared, still missing: %+v", st.Missing)
	}
	mu.Lock()
	if len(told) != 2 || told[1] != "bond0: " {
		t.Fatalf("told %q, want bond0 back", told)
	}
	mu.Unlock()
	// l2-interfaces changed: eth0 is closed.
	r.SetInterfaces([]string{"bond0"})
	if n := o.stillOpen(); n != 1 {
		t.Fatalf("%d interfaces open after l2-interfaces=bond0, want 1", n)
	}
	cancel()
	if _, err := netns.WaitFor(context.Background(), 2*time.Second, func() bool { return o.stillOpen() == 0 }); err != nil {
		t.Fatalf("%d interfaces still open after the responder ended", o.stillOpen())
	}
}

// On a real link: NDP answers for 2001:db8:2::1 continue after
// 2001:db8:1::1 (the same solicited-node group) is released, and naming an
// interface the node lacks neither stops the others nor leaks sockets.
func TestL2RealLink(t *testing.T) {
	if testing.Short() {
		t.Skip("network namespaces")
	}
	netns.Require(t)
	bed := netns.NewT(t)
	client, err := bed.NS("client")
	if err != nil {
		t.Fatal(err)
	}
	node, err := bed.NS("node")
	if err != nil {
		t.Fatal(err)
	}
	if err := bed.Link(client, "eth0", []string{"10.218.1.1/24", "fd18::1/64"}, node, "eth0", []string{"10.218.1.2/24", "fd18::2/64"}); err != nil {
		t.Fatal(err)
	}
	// The VIPs are on the client's link, as a pool on the node segment is.
	for _, args := range [][]string{{"ip", "-6", "route", "add", "2001:db8::/32", "dev", "eth0"}, {"ip", "route", "add", "10.218.100.0/24", "dev", "eth0"}} {
		if out, err := bed.Exec(client, args...); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	c := startChild(t, bed, node)
	c.do(command{Op: "l2start", Ifaces: []string{"eth0", "bond0"}})
	// eth0's link-local address may still be in duplicate address
	// detection: NDP opens once it is usable (the responder tries again).
	if _, err := netns.WaitFor(context.Background(), 20*time.Second, func() bool {
		st := c.do(command{Op: "l2status"}).L2
		return len(st.Missing) == 1 && st.Missing[0].Interface == "bond0"
	}); err != nil {
		t.Fatalf("eth0 not open, or bond0 not reported: %+v", c.do(command{Op: "l2status"}).L2)
	}
	a, b, v4 := netip.MustParseAddr("2001:db8:1::1"), netip.MustParseAddr("2001:db8:2::1"), netip.MustParseAddr("10.218.100.1")
	c.do(command{Op: "l2owned", IPs: []netip.Addr{a, b, v4}})
	nodeMAC := macOf(t, bed, node, "eth0")
	for _, ip := range []netip.Addr{a, b, v4} {
		if got := resolve(t, bed, client, ip); got != nodeMAC {
			maddr, _ := bed.Exec(node, "ip", "-6", "maddr", "show", "dev", "eth0")
			neigh, _ := bed.Exec(client, "ip", "-6", "neigh")
			t.Fatalf("%s resolves to %q, want the node's %s\nnode's groups:\n%s\nclient's neighbours:\n%s", ip, got, nodeMAC, maddr, neigh)
		}
	}
	c.do(command{Op: "l2owned", IPs: []netip.Addr{b, v4}})
	// The announcements after a takeover go on for 2 s and would teach
	// the client the MAC on their own: let them end, so that only an answer
	// to the client's own solicitation can.
	time.Sleep(garpSchedule[len(garpSchedule)-1] + 500*time.Millisecond)
	if got := resolve(t, bed, client, b); got != nodeMAC {
		t.Fatalf("after releasing %s, %s resolves to %q, want the node's %s (the shared solicited-node group was left)", a, b, got, nodeMAC)
	}
	if got := resolve(t, bed, client, a); got != "" {
		t.Fatalf("released %s still resolves to %s", a, got)
	}
	// The driver hands the interfaces over on every pass: nothing leaks.
	before := c.do(command{Op: "l2status"}).FDs
	for range 200 {
		c.do(command{Op: "l2ifaces", Ifaces: []string{"eth0", "bond0"}})
	}
	if after := c.do(command{Op: "l2status"}).FDs; after > before+2 {
		t.Fatalf("open files grew from %d to %d over 200 passes with a missing interface", before, after)
	}
	if got := resolve(t, bed, client, v4); got != nodeMAC {
		t.Fatalf("%s resolves to %q after the passes, want %s", v4, got, nodeMAC)
	}
}

func macOf(t *testing.T, bed *netns.Bed, ns, dev string) string {
	t.Helper()
	out, err := bed.Exec(ns, "cat", "/sys/class/net/"+dev+"/address")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// resolve has the client's kernel resolve ip (ping sends the ARP request or
// neighbour solicitation) and returns the link-layer address it learnt, or
// "" when nobody answered.
func resolve(t *testing.T, bed *netns.Bed, ns string, ip netip.Addr) string {
	t.Helper()
	fam := "-4"
	if ip.Is6() {
		fam = "-6"
	}
	_, _ = bed.Exec(ns, "ip", fam, "neigh", "flush", "dev", "eth0")
	_, _ = bed.Exec(ns, "ping", fam, "-c", "1", "-W", "1", ip.String()) // no echo reply: the node does not route the VIP here
	out, _ := bed.Exec(ns, "ip", fam, "neigh", "show", ip.String(), "dev", "eth0")
	f := strings.Fields(out)
	if i := slices.Index(f, "lladdr"); i >= 0 && i+1 < len(f) {
		return f[i+1]
	}
	return ""
}
