package speaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
)

// SetInterfaces makes names the interfaces the responder answers on. When
// they changed it scans at once: those not open yet are opened, those no
// longer wanted are closed. The driver passes them on every pass (every
// cluster event); an unchanged list leaves retries to the periodic scan,
// so that a busy cluster does not reopen a half-open interface's sockets
// on every event.
func (r *Responder) SetInterfaces(names []string) {
	r.mu.Lock()
	same := r.want != nil && slices.Equal(r.want, names)
	r.want = slices.Clone(names)
	r.mu.Unlock()
	if !same {
		r.scan()
	}
}

func (r *Responder) rescanEvery(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
			r.scan()
		}
	}
}

// scan opens each wanted interface that is not open, and closes the open
// ones that are no longer wanted or whose device went away (or came back
// as another device under the same name). An interface open for one
// family only while it has addresses of the other (IPv6 whose link-local
// address was still tentative when it opened) is opened again, and the
// new sockets replace the old once they answer for more. Opening happens
// outside the lock: a status read must not wait on it.
func (r *Responder) scan() {
	if r.ctx.Err() != nil {
		return
	}
	r.mu.Lock()
	want := slices.Clone(r.want)
	var stale []*l2iface
	for name, li := range r.ifaces {
		if !slices.Contains(want, name) || !r.present(li.ifi) {
			stale = append(stale, li)
			delete(r.ifaces, name)
		}
	}
	for name := range r.missing {
		if !slices.Contains(want, name) {
			delete(r.missing, name)
		}
	}
	var toOpen []string
	for _, name := range want {
		if li := r.ifaces[name]; li == nil || li.partial != nil {
			toOpen = append(toOpen, name)
		}
	}
	r.mu.Unlock()
	for _, li := range stale {
		li.close()
		if slices.Contains(want, li.ifi.Name) {
			r.log.Warn("L2: interface went away; answering on the others", "interface", li.ifi.Name)
		}
	}
	for _, name := range toOpen {
		r.openOne(name)
	}
}

// openOne opens the interface name and puts it in place of the one open
// under that name, if it answers for more.
func (r *Responder) openOne(name string) {
	li, err := r.open(r.ctx, name)
	if err == nil && li.partial != nil {
		err = li.partial
	}
	r.mu.Lock()
	was, wasMissing := r.missing[name]
	old := r.ifaces[name]
	switch {
	case li == nil:
		r.missing[name] = err.Error()
	case r.ctx.Err() != nil || !slices.Contains(r.want, name) || (old != nil && li.families() <= old.families()):
		li.close() // ended or changed while it opened, or no better than what answers
		li = nil
		if old != nil && old.partial != nil {
			r.missing[name] = old.partial.Error()
		}
	default:
		if err != nil {
			r.missing[name] = err.Error()
		} else {
			delete(r.missing, name)
		}
		r.ifaces[name] = li
		for snm := range r.groups {
			li.join(snm, r.log)
		}
		r.serve(li)
	}
	now, nowMissing := r.missing[name]
	problem := r.problem
	r.mu.Unlock()
	if li != nil && old != nil {
		old.close()
	}
	switch {
	case nowMissing && (!wasMissing || was != now):
		r.log.Warn("L2: cannot answer on an interface; answering on the others and trying again", "interface", name, "every", L2Rescan, "error", now)
		if problem != nil {
			problem(name, now)
		}
	case li != nil:
		r.log.Info("L2: answering on interface", "interface", name, "arp", li.arp != nil, "ndp", li.ndp != nil)
		if wasMissing && !nowMissing && problem != nil {
			problem(name, "")
		}
	}
}

// sameDevice reports whether the interface ifi names still exists as the
// same device.
func sameDevice(ifi *net.Interface) bool {
	now, err := net.InterfaceByName(ifi.Name)
	return err == nil && now.Index == ifi.Index
}

// openL2Iface opens ARP and NDP sockets on the interface name, whichever
// its addresses allow, and starts answering on them. On an error nothing
// stays open.
func openL2Iface(ctx context.Context, name string) (*l2iface, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("l2 interface %q: %w (set l2-interfaces to the node's interfaces, or leave it empty for those holding the node's addresses)", name, err)
	}
	li := &l2iface{ifi: ifi, done: make(chan struct{})}
	var errs []error
	if c, err := arp.Dial(ifi); err == nil {
		li.arp = c
	} else {
		errs = append(errs, fmt.Errorf("ARP: %w", err))
	}
	if c, _, err := ndp.Listen(ifi, ndp.LinkLocal); err == nil {
		li.ndp, li.groups = c, c
	} else {
		errs = append(errs, fmt.Errorf("NDP: %w", err))
	}
	if li.arp == nil && li.ndp == nil {
		return nil, fmt.Errorf("l2 interface %q has neither an IPv4 address for ARP nor IPv6 for NDP: %w", name, errors.Join(errs...))
	}
	// One family failed while the interface has addresses of it: worth
	// another try (a link-local address still in duplicate address
	// detection, say). Without any, there is nothing to answer for.
	v4, v6 := addressFamilies(ifi)
	switch {
	case li.arp == nil && v4:
		li.partial = fmt.Errorf("l2 interface %q: %w", name, errs[0])
	case li.ndp == nil && v6:
		li.partial = fmt.Errorf("l2 interface %q: %w", name, errs[len(errs)-1])
	}
	return li, nil
}

// addressFamilies reports whether ifi has IPv4 and IPv6 addresses.
func addressFamilies(ifi *net.Interface) (v4, v6 bool) {
	addrs, _ := ifi.Addrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			v4 = v4 || p.Addr().Is4()
			v6 = v6 || (p.Addr().Is6() && !p.Addr().Is4In6())
		}
	}
	return v4, v6
}

// families is how many of ARP and NDP li answers.
func (li *l2iface) families() int {
	n := 0
	if li.arp != nil {
		n++
	}
	if li.ndp != nil {
		n++
	}
	return n
}

// serve answers on li's sockets until it is closed.
func (r *Responder) serve(li *l2iface) {
	if li.arp != nil {
		go r.serveARP(li)
	}
	if li.ndp != nil {
		go r.serveNDP(li)
	}
}

func (li *l2iface) closed() bool {
	select {
	case <-li.done:
		return true
	default:
		return false
	}
}

// close closes li's sockets, which ends its readers. Safe to call twice.
func (li *l2iface) close() {
	li.once.Do(func() {
		close(li.done)
		if li.arp != nil {
			li.arp.Close()
		}
		if li.ndp != nil {
			li.ndp.Close()
		}
	})
}

func (li *l2iface) join(snm netip.Addr, log *slog.Logger) {
	if li.groups == nil {
		return
	}
	if err := li.groups.JoinGroup(snm); err != nil {
		log.Warn("L2: join solicited-node group", "interface", li.ifi.Name, "group", snm, "error", err)
	}
}

func (li *l2iface) leave(snm netip.Addr, log *slog.Logger) {
	if li.groups == nil {
		return
	}
	if err := li.groups.LeaveGroup(snm); err != nil {
		log.Warn("L2: leave solicited-node group", "interface", li.ifi.Name, "group", snm, "error", err)
	}
}

// openIfaces is a snapshot of the open interfaces, in name order.
func (r *Responder) openIfaces() []*l2iface {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*l2iface, 0, len(r.ifaces))
	for _, li := range r.ifaces {
		out = append(out, li)
	}
	slices.SortFunc(out, func(a, b *l2iface) int { return a.ifi.Index - b.ifi.Index })
	return out
}

var _ groupConn = (*ndp.Conn)(nil)
