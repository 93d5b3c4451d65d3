package failover

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/probe"
)

// Sources of timeline entries.
const (
	SourceController = "controller"
	SourceEndpoints  = "endpointslices"
	SourceSpeaker    = "speaker journal (node clock)"
	SourceProbe      = "probe"
)

// Event is one thing that happened, at a time on some clock.
type Event struct {
	At     time.Time
	Event  string
	Node   string
	Source string
}

// Timeline lays events out relative to the fault at t0, in order.
func Timeline(t0 time.Time, evs []Event) []api.TimelineEntry {
	evs = slices.Clone(evs)
	slices.SortStableFunc(evs, func(a, b Event) int { return a.At.Compare(b.At) })
	out := make([]api.TimelineEntry, 0, len(evs))
	for _, e := range evs {
		out = append(out, api.TimelineEntry{TMs: e.At.Sub(t0).Milliseconds(), Event: e.Event, Node: e.Node, Source: e.Source})
	}
	return out
}

// JournalEvents turns a speaker's journal into timeline events: its
// starts and holds, its sessions and BFD, and what it did about vip (the
// /32 or /128 announced or withdrawn, the ARP/NDP ownership, the
// gratuitous ARPs), leaving out its other IPs.
func JournalEvents(j api.SpeakerJournal, vip netip.Addr) []Event {
	route := netip.PrefixFrom(vip, vip.BitLen()).String()
	var out []Event
	for _, e := range j.Events {
		var what string
		switch e.Kind {
		case "started":
			what = "speaker started"
		case "held":
			what = "speaker held down by the test"
		case "resumed":
			what = "speaker resumed"
		case "session":
			what = "BGP session to " + e.Subject + " " + e.Detail
		case "bfd":
			what = "BFD to " + e.Subject + " " + e.Detail
		case "announce", "withdraw":
			if e.Subject != route {
				continue
			}
			what = e.Kind + " " + route
		case "owner":
			if e.Subject != vip.String() {
				continue
			}
			what = "ARP/NDP owner of " + e.Subject + ": " + e.Detail
		case "garp":
			if e.Subject != vip.String() {
				continue
			}
			what = "gratuitous ARP/NA for " + e.Subject + " " + e.Detail
		default:
			continue
		}
		out = append(out, Event{At: e.At, Event: what, Node: j.Node, Source: SourceSpeaker})
	}
	return out
}

// Converged is when, after t0, the speakers last changed what they do
// about vip (an announce, a withdraw, an ownership change), relative to
// t0; zero when none did (the survivors announced it already).
func Converged(t0 time.Time, evs []Event, vip netip.Addr) time.Duration {
	route := netip.PrefixFrom(vip, vip.BitLen()).String()
	var last time.Duration
	for _, e := range evs {
		if e.Source != SourceSpeaker || e.At.Before(t0) {
			continue
		}
		if strings.HasSuffix(e.Event, " "+route) || strings.HasPrefix(e.Event, "ARP/NDP owner of "+vip.String()+":") {
			last = max(last, e.At.Sub(t0))
		}
	}
	return last
}

// Outage is what the probe saw after the fault at t0: the windows with
// no answer that end after it (less the probe's clock error), merged into
// one span from the first one's start to the last one's end, since that
// is how long clients were without the VIP, give or take the lucky ones
// (with ECMP some connections reach a healthy node throughout). Open is
// true when the VIP was not answering at the end; zero and no events
// when it never stopped answering.
func Outage(t0 time.Time, run probe.Started, s probe.Summary) (outage time.Duration, open bool, evs []Event) {
	var first, last time.Time
	for _, w := range s.Windows {
		from, to := run.At(w.From), run.At(w.To)
		if w.To != 0 && to.Before(t0.Add(-run.Skew)) {
			continue // over before the fault
		}
		evs = append(evs, Event{At: from, Event: "the VIP stopped answering (" + w.Reason + ")", Source: SourceProbe})
		if first.IsZero() {
			first = from
		}
		if w.To == 0 {
			return 0, true, evs
		}
		evs = append(evs, Event{At: to, Event: "the VIP answered again", Source: SourceProbe})
		last = to
	}
	if first.IsZero() {
		return 0, false, nil
	}
	return last.Sub(first), false, evs
}
