package speaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
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
type Responder struct {
	log    *slog.Logger
	ifaces []*l2iface

	mu         sync.Mutex
	owned      map[netip.Addr]bool
	changes    int
	garps      int
	lastChange time.Time
	journal    *Journal // nil: none kept
}

type l2iface struct {
	ifi *net.Interface
	arp *arp.Client // nil without an IPv4 address on the interface
	ndp *ndp.Conn   // nil without IPv6
}

// garpSchedule is when announcements go out after a takeover. Linux
// ignores a change to a neighbour entry within locktime (1 s) of the last
// one, so when two nodes announced in quick succession (a partition
// healing) only an announcement more than 1 s after the other's last is
// sure to stick: hence the one at 2 s. The early ones make the usual
// failover fast.
var garpSchedule = []time.Duration{0, 250 * time.Millisecond, time.Second, 2 * time.Second}

// StartResponder opens ARP and NDP sockets on the named interfaces (it
// needs CAP_NET_RAW) and answers until ctx ends.
func StartResponder(ctx context.Context, names []string, log *slog.Logger) (*Responder, error) {
	r := &Responder{log: log, owned: map[netip.Addr]bool{}}
	for _, name := range names {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("l2 interface %q: %w", name, err)
		}
		li := &l2iface{ifi: ifi}
		if c, err := arp.Dial(ifi); err == nil {
			li.arp = c
			go r.serveARP(ctx, li)
		} else {
			log.Warn("no ARP on interface", "interface", name, "error", err)
		}
		if c, _, err := ndp.Listen(ifi, ndp.LinkLocal); err == nil {
			li.ndp = c
			go r.serveNDP(ctx, li)
		} else {
			log.Info("no NDP on interface", "interface", name, "error", err)
		}
		if li.arp == nil && li.ndp == nil {
			return nil, fmt.Errorf("l2 interface %q has neither an IPv4 address for ARP nor IPv6 for NDP", name)
		}
		r.ifaces = append(r.ifaces, li)
	}
	go func() {
		<-ctx.Done()
		for _, li := range r.ifaces {
			if li.arp != nil {
				li.arp.Close()
			}
			if li.ndp != nil {
				li.ndp.Close()
			}
		}
	}()
	return r, nil
}

func (r *Responder) isOwned(ip netip.Addr) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.owned[ip]
}

// SetJournal has the responder record ownership changes and the
// announcements it sends in j.
func (r *Responder) SetJournal(j *Journal) {
	r.mu.Lock()
	r.journal = j
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
		r.journal.Record("owner", ip.String(), "released")
	}
	for _, ip := range gained {
		r.journal.Record("owner", ip.String(), "taken")
	}
	r.mu.Unlock()
	for _, ip := range lost {
		r.log.Info("L2: released", "ip", ip)
		r.group(ip, false)
	}
	for _, ip := range gained {
		r.log.Info("L2: took over", "ip", ip)
		r.group(ip, true)
	}
	if len(gained) > 0 {
		go r.announce(ctx, gained)
	}
}

// group joins or leaves the solicited-node multicast group of an IPv6 VIP.
func (r *Responder) group(ip netip.Addr, join bool) {
	if !ip.Is6() {
		return
	}
	snm, err := ndp.SolicitedNodeMulticast(ip)
	if err != nil {
		return
	}
	for _, li := range r.ifaces {
		if li.ndp == nil {
			continue
		}
		if join {
			_ = li.ndp.JoinGroup(snm)
		} else {
			_ = li.ndp.LeaveGroup(snm)
		}
	}
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
			for _, li := range r.ifaces {
				if err := li.advertise(ip); err == nil {
					r.mu.Lock()
					r.garps++
					r.journal.Record("garp", ip.String(), "on "+li.ifi.Name)
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

func (r *Responder) serveARP(ctx context.Context, li *l2iface) {
	for ctx.Err() == nil {
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

func (r *Responder) serveNDP(ctx context.Context, li *l2iface) {
	for ctx.Err() == nil {
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
	return st
}
