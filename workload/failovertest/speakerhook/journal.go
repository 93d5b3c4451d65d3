package speakerhook

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/calico-lb/calico-lb/workload/api"
)

// journalSize is how many session, BFD and L2 events a speaker keeps.
const journalSize = 1024

// Journal is what a speaker did and saw, with times on its node's clock,
// for the failover test's timeline. Session, BFD and L2 events are kept in
// a ring of the last journalSize; routes as the last announce and the last
// withdraw of each prefix, which a burst of ten thousand announcements at
// a start cannot push out. Its methods are safe on a nil Journal (no
// journal kept) and never block on anything but its own short lock.
type Journal struct {
	mu      sync.Mutex
	started time.Time
	ring    []api.SpeakerEvent
	next    int // where the next event goes once the ring is full
	routes  map[netip.Prefix]routeTimes
}

type routeTimes struct{ announced, withdrawn time.Time }

// NewJournal starts a journal, its first event the speaker's start.
func NewJournal() *Journal {
	j := &Journal{started: time.Now(), routes: map[netip.Prefix]routeTimes{}}
	j.Event("started", "", "")
	return j
}

// Event adds an event at the current time.
func (j *Journal) Event(kind, subject, detail string) {
	if j == nil {
		return
	}
	ev := api.SpeakerEvent{At: time.Now(), Kind: kind, Subject: subject, Detail: detail}
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.ring) < journalSize {
		j.ring = append(j.ring, ev)
		return
	}
	j.ring[j.next] = ev
	j.next = (j.next + 1) % journalSize
}

// Routes records announcements and withdrawals that just went out. A
// prefix withdrawn an hour ago is forgotten, so that churn does not grow
// the map without end.
func (j *Journal) Routes(announced, withdrawn []netip.Prefix) {
	if j == nil {
		return
	}
	now := time.Now()
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, p := range announced {
		t := j.routes[p]
		t.announced = now
		j.routes[p] = t
	}
	for _, p := range withdrawn {
		t := j.routes[p]
		t.withdrawn = now
		j.routes[p] = t
	}
	if len(withdrawn) > 0 {
		for p, t := range j.routes {
			if t.withdrawn.After(t.announced) && now.Sub(t.withdrawn) > time.Hour {
				delete(j.routes, p)
			}
		}
	}
}

// Since returns the events after t, oldest first: the ring's, and the
// last announce and withdraw of ip's /32 (/128) when ip is valid.
func (j *Journal) Since(t time.Time, ip netip.Addr) api.SpeakerJournal {
	out := api.SpeakerJournal{Events: []api.SpeakerEvent{}}
	if j == nil {
		return out
	}
	j.mu.Lock()
	out.Started = j.started
	for _, ev := range j.ring {
		if ev.At.After(t) {
			out.Events = append(out.Events, ev)
		}
	}
	if ip.IsValid() {
		p := netip.PrefixFrom(ip, ip.BitLen())
		rt := j.routes[p]
		if rt.announced.After(t) {
			out.Events = append(out.Events, api.SpeakerEvent{At: rt.announced, Kind: "announce", Subject: p.String()})
		}
		if rt.withdrawn.After(t) {
			out.Events = append(out.Events, api.SpeakerEvent{At: rt.withdrawn, Kind: "withdraw", Subject: p.String()})
		}
	}
	j.mu.Unlock()
	slices.SortStableFunc(out.Events, func(a, b api.SpeakerEvent) int { return a.At.Compare(b.At) })
	return out
}
