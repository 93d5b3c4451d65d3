package speaker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/calico-lb/calico-lb/workload/config"
)

// l2Driver answers ARP/NDP for the IPs this node owns, in l2 mode: it
// runs the liveness heartbeats with the other speakers, decides ownership
// (L2Owners) and keeps the responder's owned set.
type l2Driver struct {
	log      *slog.Logger
	port     int
	holdDown time.Duration
	keyFile  string
	keys     string // the key file as the heartbeats use it; the runner's goroutine only
	observer Observer
	// ifaceProblem is told when an interface cannot be answered on (or
	// can again, why ""); nil: nobody is.
	ifaceProblem func(iface, why string)

	mu   sync.Mutex // guards live, resp and err for readers
	live *Liveness
	resp *Responder
	err  string

	members map[string]bool // live speakers at the last decision; the runner's goroutine only
}

func (d *l2Driver) sync(ctx context.Context, w world) {
	if !w.announces(config.ModeL2) {
		if resp := d.responder(); resp != nil {
			resp.SetOwned(ctx, nil)
		}
		return
	}
	live, resp, err := d.start(ctx, w)
	if err != nil {
		d.setErr(err)
		return
	}
	nodes := map[string]Node{}
	peers := map[string]netip.AddrPort{}
	for _, n := range w.nodes {
		nd := NodeFrom(n)
		nodes[nd.Name] = nd
		if Selected(w.cfg, nd) {
			if a := routerID(nd); a.IsValid() {
				peers[nd.Name] = netip.AddrPortFrom(a, uint16(d.port))
			}
		}
	}
	live.SetPeers(peers)
	now := time.Now()
	if ok, _ := live.Settled(now); !ok {
		resp.SetOwned(ctx, nil)
		d.members = nil
		return
	}
	members := live.Members(now)
	owned := L2Owners(w.cfg, w.node.Name, members, nodes, w.services, w.endpoints, now, d.holdDown)
	d.setErr(nil)
	resp.SetOwned(ctx, owned)
	// After a partition neighbours may have learned our stand-ins' MACs:
	// say again which IPs are ours when a speaker (re)appears, or when a
	// peer tells us it had given us up (after a short flap only one side
	// may have noticed).
	joined := false
	seen := make(map[string]bool, len(members))
	for _, m := range members {
		seen[m.Node] = true
		if d.members != nil && !d.members[m.Node] {
			joined = true
		}
	}
	if given := live.TakeGivenUp(); joined || given {
		resp.Reannounce(ctx)
	}
	d.members = seen
}

// start starts the heartbeats and the responder, whichever does not run
// yet, and returns both.
func (d *l2Driver) start(ctx context.Context, w world) (*Liveness, *Responder, error) {
	live, resp := d.liveness(), d.responder()
	// Read on every pass: a rotation (a second key added, then moved
	// first) reaches running heartbeats without a restart.
	data, err := w.files.ReadFile(d.keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("the L2 heartbeat keys: %w (the controller writes them into the speakers' Secret)", err)
	}
	var keys L2Keys
	if live == nil || string(data) != d.keys {
		// Parsed only when they change: a pass runs on every cluster event.
		if keys, err = ParseL2Keys(data); err != nil {
			return nil, nil, err
		}
	}
	if live == nil {
		self := routerID(w.node)
		if !self.IsValid() {
			return nil, nil, fmt.Errorf("node %s has no IPv4 InternalIP to send heartbeats from", w.node.Name)
		}
		if live, err = StartLiveness(ctx, w.node.Name, netip.AddrPortFrom(self, uint16(d.port)), keys, DefaultHeartbeat, DefaultTimeout); err != nil {
			return nil, nil, err
		}
		d.mu.Lock()
		d.live = live
		d.mu.Unlock()
	} else if string(data) != d.keys {
		if err := live.SetKeys(keys); err != nil {
			return nil, nil, err
		}
		d.log.Info("L2 heartbeat keys changed", "keys", len(keys.Accept))
	}
	d.keys = string(data)
	ifaces := w.cfg.L2.Interfaces
	if len(ifaces) == 0 {
		ifaces = interfacesOf(w.node)
	}
	if resp == nil {
		resp = StartResponder(ctx, ifaces, d.log)
		resp.SetObserver(d.observer)
		if d.ifaceProblem != nil {
			resp.OnInterfaceProblem(d.ifaceProblem)
		}
		d.mu.Lock()
		d.resp = resp
		d.mu.Unlock()
		d.log.Info("L2 responder started", "interfaces", ifaces)
	} else {
		resp.SetInterfaces(ifaces) // l2-interfaces may have changed
	}
	return live, resp, nil
}

// stop needs nothing: the responder and heartbeats end with the context,
// and neighbours then move the IPs.
func (d *l2Driver) stop(context.Context) {}

// wake is when the runner must decide again, or zero: the instant a waiting
// speaker becomes eligible (every speaker switches at the same instant), or
// the heartbeats settle.
func (d *l2Driver) wake(now time.Time) time.Time {
	live := d.liveness()
	if live == nil {
		return time.Time{}
	}
	at := NextEligible(live.Members(now), now, d.holdDown)
	if ok, until := live.Settled(now); !ok {
		at = until
	}
	return at
}

// changed fires when the set of live speakers changes (nil before l2 mode).
func (d *l2Driver) changed() <-chan struct{} {
	if live := d.liveness(); live != nil {
		return live.Changed()
	}
	return nil
}

func (d *l2Driver) liveness() *Liveness {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.live
}

func (d *l2Driver) responder() *Responder {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.resp
}

func (d *l2Driver) setErr(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		d.err = ""
		return
	}
	if d.err != err.Error() {
		d.log.Error("L2", "error", err)
	}
	d.err = err.Error()
}

// status is what /v1/l2 and the metrics show.
func (d *l2Driver) status() L2Status {
	resp, live := d.responder(), d.liveness()
	st, problem := L2Status{Owned: []string{}, Alive: []string{}}, ""
	if resp != nil {
		st = resp.status()
		st.Alive = []string{}
	}
	if live != nil {
		now := time.Now()
		for _, m := range live.Members(now) {
			st.Alive = append(st.Alive, m.Node)
		}
		var refused []string
		st.Rejected, st.Skewed, refused = live.Rejected(now)
		if len(refused) > 0 {
			problem = fmt.Sprintf("heartbeats from %s were refused: a speaker from before calico-lb's heartbeat version 3 sent them more than %s from this node's clock, so those nodes count as dead here and their IPs are answered here too; finish the upgrade, or check NTP on both sides",
				strings.Join(refused, ", "), replayWindow)
		}
	}
	d.mu.Lock()
	st.Error = d.err
	d.mu.Unlock()
	if st.Error == "" {
		st.Error = problem
	}
	return st
}

// interfacesOf returns the interfaces that hold one of the node's addresses.
func interfacesOf(node Node) []string {
	ifs, _ := net.Interfaces()
	var out []string
	for _, ifi := range ifs {
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && slices.Contains(node.Addresses, p.Addr()) {
				out = append(out, ifi.Name)
				break
			}
		}
	}
	return out
}
