package speaker

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"time"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// run is the one goroutine that calls GoBGP: it brings GoBGP in line with
// what is wanted whenever that changes, a session's state calls for a BFD
// switch, or a retry is due, until Stop.
func (b *BGP) run() {
	defer close(b.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := b.reconcile()
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if next > 0 {
			timer.Reset(next)
		}
		select {
		case <-b.stopped.Done():
			return
		case <-b.kick:
		case <-timer.C:
		}
	}
}

// reconcile makes the calls that are due, one at a time, and returns how
// long until the next retry is due (0: none is waiting). The lock is never
// held across a call: GoBGP's loop may be calling onPeer, which takes it.
func (b *BGP) reconcile() time.Duration {
	for b.stopped.Err() == nil {
		op, ok := b.nextOp(time.Now())
		if !ok {
			break
		}
		err := op.call()
		b.mu.Lock()
		op.done(err)
		b.mu.Unlock()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.nextRetry(time.Now())
}

// op is one call into GoBGP and what its outcome changes (done runs with
// b.mu held).
type op struct {
	call func() error
	done func(err error)
}

// nextOp picks the next call: deletions first (a peer re-added with new
// settings must be gone before it comes back), then additions, BFD
// switches, prefix-limit retries, and the routes. Each peer's call waits
// out its backoff after a failure.
func (b *BGP) nextOp(now time.Time) (op, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	addrs := make([]netip.Addr, 0, len(b.peers))
	for a := range b.peers {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, func(x, y netip.Addr) int { return x.Compare(y) })
	for _, a := range addrs {
		if o, ok := b.peerDelete(a, b.peers[a], now); ok {
			return o, true
		}
	}
	for _, a := range addrs {
		if o, ok := b.peerUpdate(a, b.peers[a], now); ok {
			return o, true
		}
	}
	return b.routesOp(now)
}

// peerDelete is the DeletePeer for a peer no longer wanted, or wanted with
// other settings (GoBGP re-adds rather than edits a session's basics).
func (b *BGP) peerDelete(addr netip.Addr, p *peerState, now time.Time) (op, bool) {
	switch {
	case p.applied == nil && p.gone:
		delete(b.peers, addr) // never added, or already deleted
		return op{}, false
	case p.applied == nil || (!p.gone && (reflect.DeepEqual(*p.applied, p.want) || timersOnly(*p.applied, p.want))) || !p.retry.due(now):
		return op{}, false
	}
	return op{
		call: func() error { return b.srv.DeletePeer(b.stopped, addr) },
		done: func(err error) {
			if err != nil {
				b.failed(p, fmt.Sprintf("delete peer %s", addr), err, now)
				return
			}
			p.retry.ok()
			p.problem, p.applied, p.bfdOn, p.bfdWant, p.limited = "", nil, false, false, false
			p.state, p.since = bgp.BGP_FSM_IDLE, time.Now()
			if p.gone {
				delete(b.peers, addr)
			}
		},
	}, true
}

// peerUpdate is the AddPeer of a wanted peer GoBGP does not have, or the
// UpdatePeer that switches its BFD, or the EnablePeer after its prefix
// limit closed it.
func (b *BGP) peerUpdate(addr netip.Addr, p *peerState, now time.Time) (op, bool) {
	if p.gone || !p.retry.due(now) {
		return op{}, false
	}
	switch {
	case p.applied == nil:
		cfg := p.want
		b.log.Info("BGP peer", "peer", addr, "as", cfg.ASNumber, "hold", cfg.HoldTime, "bfd", cfg.BFD, "md5", cfg.Password != "", "multihop", cfg.Multihop)
		return op{
			call: func() error { return b.srv.AddPeer(b.stopped, apiPeer(cfg, false)) },
			done: func(err error) {
				if err != nil {
					b.failed(p, fmt.Sprintf("add peer %s", addr), err, now)
					return
				}
				p.retry.ok()
				p.problem, p.applied = "", &cfg
				p.state, p.since = bgp.BGP_FSM_IDLE, time.Now()
			},
		}, true
	case timersOnly(*p.applied, p.want):
		// GoBGP takes new timers without a reset (they are offered at
		// the session's next OPEN, as FRR does), so the session and its
		// routes stay up.
		cfg, on := p.want, p.bfdOn
		b.log.Info("BGP peer timers changed; the session stays up and offers them at its next OPEN", "peer", addr, "hold", cfg.HoldTime, "keepalive", cfg.Keepalive)
		return op{
			call: func() error { return b.srv.UpdatePeer(b.stopped, apiPeer(cfg, on)) },
			done: func(err error) {
				if err != nil {
					b.failed(p, fmt.Sprintf("update the timers of peer %s", addr), err, now)
					return
				}
				p.retry.ok()
				p.problem = ""
				if p.applied != nil {
					p.applied = &cfg
				}
			},
		}, true
	case p.bfdWant != p.bfdOn && reflect.DeepEqual(*p.applied, p.want):
		cfg, on := *p.applied, p.bfdWant
		onOff := map[bool]string{true: "on", false: "off"}[on]
		return op{
			call: func() error { return b.srv.UpdatePeer(b.stopped, apiPeer(cfg, on)) },
			done: func(err error) {
				if err != nil {
					b.failed(p, fmt.Sprintf("switch BFD %s for peer %s", onOff, addr), err, now)
					return
				}
				p.retry.ok()
				p.problem = ""
				if p.applied != nil && reflect.DeepEqual(*p.applied, cfg) {
					p.bfdOn = on
					b.observer.Event("bfd", addr.String(), onOff)
				}
			},
		}, true
	case p.limited && !now.Before(p.enableAt):
		return op{
			call: func() error { return b.srv.EnablePeer(b.stopped, addr) },
			done: func(err error) {
				if err != nil {
					b.failed(p, fmt.Sprintf("re-enable peer %s after its prefix limit", addr), err, now)
					return
				}
				p.retry.ok()
				p.problem, p.limited = "", false
			},
		}, true
	}
	return op{}, false
}

// timersOnly reports whether a and b differ in their hold time and
// keepalive only.
func timersOnly(a, b Peer) bool {
	if a.HoldTime == b.HoldTime && a.Keepalive == b.Keepalive {
		return false
	}
	a.HoldTime, a.Keepalive = b.HoldTime, b.Keepalive
	return reflect.DeepEqual(a, b)
}

// routesOp withdraws and announces what differs between the wanted and
// the announced routes, in one call each.
func (b *BGP) routesOp(now time.Time) (op, bool) {
	if !b.routeRetry.due(now) {
		return op{}, false
	}
	var add, del []*apiutil.Path
	var added, withdrawn []netip.Prefix
	for pfx, r := range b.applied {
		if _, keep := b.routes[pfx]; !keep {
			p, err := path(r)
			if err != nil {
				continue // it was announced, so it converts
			}
			del, withdrawn = append(del, p), append(withdrawn, pfx)
		}
	}
	for pfx, r := range b.routes {
		if old, had := b.applied[pfx]; !had || !sameRoute(old, r) {
			add, added = append(add, b.paths[pfx]), append(added, pfx) // a changed route replaces the old one
		}
	}
	if len(add)+len(del) == 0 {
		return op{}, false
	}
	want := b.routes
	return op{
		call: func() error {
			if len(del) > 0 {
				if err := b.srv.DeletePaths(del); err != nil {
					return fmt.Errorf("withdraw: %w", err)
				}
			}
			if len(add) > 0 {
				if err := b.srv.AddPaths(add); err != nil {
					return fmt.Errorf("announce: %w", err)
				}
			}
			return nil
		},
		done: func(err error) {
			if err != nil {
				d := b.routeRetry.failed(now)
				b.routeProblem = fmt.Sprintf("routes not announced: %v; trying again in %s", err, d)
				b.log.Warn("BGP routes", "error", err, "retry-in", d)
				return
			}
			b.routeRetry.ok()
			b.routeProblem = ""
			b.applied = want
			b.observer.Routes(added, withdrawn)
		},
	}, true
}

// failed records a failed call for p and when to try again.
func (b *BGP) failed(p *peerState, what string, err error, now time.Time) {
	d := p.retry.failed(now)
	p.problem = fmt.Sprintf("%s: %v; trying again in %s", what, err, d)
	b.log.Warn("BGP: "+what, "error", err, "retry-in", d)
}

// nextRetry is how long until the earliest waiting retry, 0 for none.
func (b *BGP) nextRetry(now time.Time) time.Duration {
	var next time.Duration
	consider := func(d time.Duration) {
		d = max(d, time.Millisecond)
		if next == 0 || d < next {
			next = d
		}
	}
	for _, p := range b.peers {
		if p.retry.failures > 0 {
			consider(p.retry.wait(now))
		}
		if p.limited {
			consider(p.enableAt.Sub(now))
		}
	}
	if b.routeRetry.failures > 0 {
		consider(b.routeRetry.wait(now))
	}
	return next
}
