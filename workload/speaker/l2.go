package speaker

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"

	"github.com/calico-lb/calico-lb/workload/api"
)

// Responder answers ARP (IPv4) and NDP (IPv6) for the VIPs this node owns,
// on its interfaces. Answers are decided per request from the current
// ownership, so it stops answering the moment an IP moves away. On
// takeover it sends gratuitous ARP / unsolicited NA a few times, so that
// clients and switches learn the new owner at once instead of after their
// neighbour entries age out (22-35 s measured without).
//
// Each interface is opened on its own (l2ifaces.go): one that is missing
// or fails is reported and tried again on the next scan while the others
// answer, as MetalLB's per-interface responders do.
type Responder struct {
	log *slog.Logger
	ctx context.Context // the responder's life: its sockets close when it ends

	mu         sync.Mutex
	ifaces     map[string]*l2iface // open, by name
	want       []string            // the interfaces asked for
	missing    map[string]string   // asked for but not open: why
	owned      map[netip.Addr]bool
	groups     map[netip.Addr]int // solicited-node groups: how many owned IPs need each
	changes    int
	garps      int
	lastChange time.Time
	observer   Observer
	// problem is told when an interface goes missing or comes back ("" ),
	// e.g. to post a Node Event; nil: nobody is told.
	problem func(iface, why string)
	// open opens an interface and present tells whether an open one is
	// still the same device (openL2Iface and sameDevice; tests replace
	// them).
	open    func(ctx context.Context, name string) (*l2iface, error)
	present func(*net.Interface) bool
}

// groupConn is the part of an NDP socket that joins multicast groups.
type groupConn interface {
	JoinGroup(netip.Addr) error
	LeaveGroup(netip.Addr) error
}

type l2iface struct {
	ifi    *net.Interface
	arp    *arp.Client // nil without an IPv4 address on the interface
	ndp    *ndp.Conn   // nil without IPv6
	groups groupConn   // ndp, or nil without IPv6
	// partial is why one family could not be opened though the
	// interface has addresses of it; scans try again.
	partial error
	done    chan struct{} // closed by close
	once    sync.Once
}

// garpSchedule is when announcements go out after a takeover. Linux
// ignores a change to a neighbour entry within locktime (1 s) of the last
// one, so when two nodes announced in quick succession (a partition
// healing) only an announcement more than 1 s after the other's last is
// sure to stick: hence the one at 2 s. The early ones make the usual
// failover fast.
var garpSchedule = []time.Duration{0, 250 * time.Millisecond, time.Second, 2 * time.Second}

// L2Rescan is how often the responder looks again for interfaces that are
// missing or gone.
const L2Rescan = 5 * time.Second

// StartResponder answers on the named interfaces (it needs CAP_NET_RAW)
// until ctx ends. An interface that cannot be opened does not stop the
// others: it is reported in the status and tried again every L2Rescan.
func StartResponder(ctx context.Context, names []string, log *slog.Logger) *Responder {
	r := newResponder(ctx, log, openL2Iface)
	r.SetInterfaces(names)
	go r.rescanEvery(L2Rescan)
	return r
}

func newResponder(ctx context.Context, log *slog.Logger, open func(context.Context, string) (*l2iface, error)) *Responder {
	r := &Responder{observer: noTest{}, log: log, ctx: ctx, open: open, present: sameDevice, ifaces: map[string]*l2iface{}, missing: map[string]string{},
		owned: map[netip.Addr]bool{}, groups: map[netip.Addr]int{}}
	go func() {
		<-ctx.Done()
		r.mu.Lock()
		defer r.mu.Unlock()
		for name, li := range r.ifaces {
			li.close()
			delete(r.ifaces, name)
		}
	}()
	return r
}

func (r *Responder) isOwned(ip netip.Addr) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.owned[ip]
}

// SetObserver has o hear the responder's ownership changes and the
// announcements it sends.
func (r *Responder) SetObserver(o Observer) {
	r.mu.Lock()
	r.observer = observer(o)
	r.mu.Unlock()
}

// OnInterfaceProblem has the responder tell fn when an interface cannot be
// opened (why) or is open again (why "").
func (r *Responder) OnInterfaceProblem(fn func(iface, why string)) {
	r.mu.Lock()
	r.problem = fn
	r.mu.Unlock()
}

// SetOwned makes ips the owned set: newly owned IPs are announced,
// released ones are no longer answered.
func (r *Responder) SetOwned(ctx context.Context, ips []netip.Addr) {
	r.mu.Lock()
	want := map[netip.Addr]bool{}
	for _, ip := range ips {
		want[ip] = true
	}
	var gained, lost []netip.Addr
	for ip := range want {
		if !r.owned[ip] {
			gained = append(gained, ip)
		}
	}
	for ip := range r.owned {
		if !want[ip] {
			lost = append(lost, ip)
		}
	}
	r.owned = want
	if len(gained)+len(lost) > 0 {
		r.changes += len(gained) + len(lost)
		r.lastChange = time.Now()
	}
	for _, ip := range lost {
		r.observer.Event("owner", ip.String(), "released")
		r.log.Info("L2: released", "ip", ip)
		r.unref(ip)
	}
	for _, ip := range gained {
		r.observer.Event("owner", ip.String(), "taken")
		r.log.Info("L2: took over", "ip", ip)
		r.ref(ip)
	}
	r.mu.Unlock()
	if len(gained) > 0 {
		go r.announce(ctx, gained)
	}
}

// ref and unref count the owned IPv6 VIPs that need each solicited-node
// multicast group (the low 24 bits of the address): 2001:db8:1::1 and
// 2001:db8:2::1 share one, so releasing one must not leave the group
// while the other is owned, or its neighbour solicitations go unheard.
// The group is joined on every open interface when its count leaves 0 and
// left when it returns there. Called with r.mu held; joining is a
// setsockopt, which does not block.
func (r *Responder) ref(ip netip.Addr) {
	snm, ok := solicitedNode(ip)
	if !ok {
		return
	}
	r.groups[snm]++
	if r.groups[snm] == 1 {
		for _, li := range r.ifaces {
			li.join(snm, r.log)
		}
	}
}

func (r *Responder) unref(ip netip.Addr) {
	snm, ok := solicitedNode(ip)
	if !ok || r.groups[snm] == 0 {
		return
	}
	r.groups[snm]--
	if r.groups[snm] == 0 {
		delete(r.groups, snm)
		for _, li := range r.ifaces {
			li.leave(snm, r.log)
		}
	}
}

func solicitedNode(ip netip.Addr) (netip.Addr, bool) {
	if !ip.Is6() || ip.Is4In6() {
		return netip.Addr{}, false
	}
	snm, err := ndp.SolicitedNodeMulticast(ip)
	return snm, err == nil
}

// announce sends gratuitous ARP or unsolicited NA for ips on the garp
// schedule, for those still ours.
func (r *Responder) announce(ctx context.Context, ips []netip.Addr) {
	start := time.Now()
	for _, at := range garpSchedule {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(at))):
		}
		for _, ip := range ips {
			if !r.isOwned(ip) {
				continue
			}
			for _, li := range r.openIfaces() {
				if err := li.advertise(ip); err == nil {
					r.mu.Lock()
					r.garps++
					r.observer.Event("garp", ip.String(), "on "+li.ifi.Name)
					r.mu.Unlock()
				}
			}
		}
	}
}

// Reannounce announces every owned IP again. A speaker cut off from the
// others (its link down) keeps its IPs while the others take them over;
// when it comes back it is the owner again, but the neighbours learned
// another node's MAC meanwhile and only an announcement corrects them.
func (r *Responder) Reannounce(ctx context.Context) {
	r.mu.Lock()
	ips := make([]netip.Addr, 0, len(r.owned))
	for ip := range r.owned {
		ips = append(ips, ip)
	}
	r.mu.Unlock()
	if len(ips) > 0 {
		go r.announce(ctx, ips)
	}
}

func (li *l2iface) advertise(ip netip.Addr) error {
	if ip.Is4() {
		if li.arp == nil {
			return errors.New("no ARP")
		}
		// Both a gratuitous request and a reply: hosts differ in which they heed.
		for _, op := range []arp.Operation{arp.OperationRequest, arp.OperationReply} {
			p, err := arp.NewPacket(op, li.ifi.HardwareAddr, ip, ethernet.Broadcast, ip)
			if err != nil {
				return err
			}
			if err := li.arp.WriteTo(p, ethernet.Broadcast); err != nil {
				return err
			}
		}
		return nil
	}
	if li.ndp == nil {
		return errors.New("no NDP")
	}
	na := &ndp.NeighborAdvertisement{Override: true, TargetAddress: ip,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: li.ifi.HardwareAddr}}}
	return li.ndp.WriteTo(na, nil, netip.IPv6LinkLocalAllNodes())
}

func (r *Responder) serveARP(li *l2iface) {
	for !li.closed() {
		p, _, err := li.arp.Read()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // frames that are not ARP give errors
		}
		if p.Operation != arp.OperationRequest || !r.isOwned(p.TargetIP) {
			continue
		}
		if err := li.arp.Reply(p, li.ifi.HardwareAddr, p.TargetIP); err != nil {
			r.log.Warn("ARP reply", "ip", p.TargetIP, "error", err)
		}
	}
}

func (r *Responder) serveNDP(li *l2iface) {
	for !li.closed() {
		msg, _, from, err := li.ndp.ReadFrom()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		ns, ok := msg.(*ndp.NeighborSolicitation)
		if !ok || !r.isOwned(ns.TargetAddress) {
			continue
		}
		// Solicited answers do not override an existing entry; the
		// unsolicited ones sent on takeover do.
		na := &ndp.NeighborAdvertisement{Solicited: true, TargetAddress: ns.TargetAddress,
			Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: li.ifi.HardwareAddr}}}
		dst := from
		if !from.IsValid() || from.IsUnspecified() {
			na.Solicited, dst = false, netip.IPv6LinkLocalAllNodes() // an answer to duplicate address detection
		}
		if err := li.ndp.WriteTo(na, nil, dst); err != nil {
			r.log.Warn("NDP advertisement", "ip", ns.TargetAddress, "error", err)
		}
	}
}

// L2Status is what GET /v1/l2 returns.
type L2Status = api.L2Status

func (r *Responder) status() L2Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := L2Status{Owned: []string{}, LastChange: r.lastChange, Changes: r.changes, GARPs: r.garps}
	for ip := range r.owned {
		st.Owned = append(st.Owned, ip.String())
	}
	slices.Sort(st.Owned)
	for name, why := range r.missing {
		st.Missing = append(st.Missing, api.L2Missing{Interface: name, Problem: why})
	}
	slices.SortFunc(st.Missing, func(a, b api.L2Missing) int { return strings.Compare(a.Interface, b.Interface) })
	return st
}
