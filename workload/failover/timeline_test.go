package failover

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/probe"
)

var vip = netip.MustParseAddr("10.0.0.5")

func TestJournalEventsAndConverged(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	j := api.SpeakerJournal{Node: "node2", Events: []api.SpeakerEvent{
		{At: at(-500), Kind: "announce", Subject: "10.0.0.5/32"}, // before the fault
		{At: at(20), Kind: "session", Subject: "10.1.0.1", Detail: "idle"},
		{At: at(30), Kind: "announce", Subject: "10.0.0.9/32"}, // another Service's
		{At: at(350), Kind: "owner", Subject: "10.0.0.5", Detail: "taken"},
		{At: at(351), Kind: "garp", Subject: "10.0.0.5", Detail: "on eth0"},
		{At: at(352), Kind: "garp", Subject: "10.0.0.9", Detail: "on eth0"},
		{At: at(400), Kind: "announce", Subject: "10.0.0.5/32"},
		{At: at(900), Kind: "mystery"},
	}}
	evs := JournalEvents(j, vip)
	var got []string
	for _, e := range evs {
		if e.Node != "node2" || e.Source != SourceSpeaker {
			t.Fatalf("event %+v", e)
		}
		got = append(got, e.Event)
	}
	want := "announce 10.0.0.5/32|BGP session to 10.1.0.1 idle|ARP/NDP owner of 10.0.0.5: taken|gratuitous ARP/NA for 10.0.0.5 on eth0|announce 10.0.0.5/32"
	if strings.Join(got, "|") != want {
		t.Fatalf("events\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}
	if c := Converged(t0, evs, vip); c != 400*time.Millisecond {
		t.Fatalf("converged %s, want 400ms (the last change after the fault)", c)
	}
	if c := Converged(t0, JournalEvents(api.SpeakerJournal{Events: j.Events[:3]}, vip), vip); c != 0 {
		t.Fatalf("nothing changed for the VIP after the fault, converged %s", c)
	}
	tl := Timeline(t0, []Event{{At: at(400), Event: "b"}, {At: at(-5), Event: "a"}})
	if len(tl) != 2 || tl[0].TMs != -5 || tl[1].TMs != 400 {
		t.Fatalf("timeline %+v", tl)
	}
}

func TestOutage(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	run := probe.Started{Zero: t0.Add(-2 * time.Second), Skew: time.Millisecond} // probing since 2 s before the fault
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	win := func(from, to int) probe.Window {
		w := probe.Window{From: ms(2000 + from), Failures: 1, Reason: "refused"}
		if to != -1 {
			w.To = ms(2000 + to)
		}
		return w
	}
	for _, tc := range []struct {
		name    string
		windows []probe.Window
		want    time.Duration
		open    bool
		events  int
	}{
		{"never stopped", nil, 0, false, 0},
		{"one window", []probe.Window{win(10, 330)}, ms(320), false, 2},
		{"a blip long before the fault is not this outage", []probe.Window{win(-1500, -1480), win(10, 330)}, ms(320), false, 2},
		{"flapping is one outage", []probe.Window{win(10, 100), win(150, 400)}, ms(390), false, 4},
		{"still out", []probe.Window{win(10, -1)}, 0, true, 1},
	} {
		got, open, evs := Outage(t0, run, probe.Summary{Windows: tc.windows})
		if got != tc.want || open != tc.open || len(evs) != tc.events {
			t.Fatalf("%s: outage %s open %v events %d, want %s %v %d", tc.name, got, open, len(evs), tc.want, tc.open, tc.events)
		}
	}
}

func TestWaiting(t *testing.T) {
	base := Now{Mode: ModeSpeaker, Target: "n1", Policy: "Cluster", Attracting: []string{"n2"}, Ready: map[string]string{"web-a": "n1", "web-b": "n2"}, ReadyBefore: 2}
	if w := Waiting(base); len(w) != 0 {
		t.Fatalf("recovered: %v", w)
	}
	for _, tc := range []struct {
		name   string
		change func(*Now)
		want   string
	}{
		{"target still attracts", func(n *Now) { n.Attracting = []string{"n1", "n2"} }, "n1 still attracts"},
		{"nobody attracts", func(n *Now) { n.Attracting = nil }, "no node attracts"},
		{"no endpoint", func(n *Now) { n.Ready = map[string]string{} }, "no ready endpoint"},
		{"pod: replacement not ready", func(n *Now) { n.Mode = ModePod; n.Ready = map[string]string{"web-b": "n2"} }, "1 of the 2 ready endpoints"},
		{"pod: deleted pod still ready", func(n *Now) { n.Mode = ModePod; n.Removed = []string{"web-a"} }, "removed pod web-a"},
		{"node: all endpoints on the target", func(n *Now) { n.Mode = ModeNode; n.Ready = map[string]string{"web-a": "n1"} }, "no ready endpoint off n1"},
		{"local: attracting node has no endpoint", func(n *Now) { n.Policy = "Local"; n.Ready = map[string]string{"web-a": "n1"} }, "externalTrafficPolicy Local"},
		{"probe still out", func(n *Now) {
			n.Probe = &probe.Summary{Settled: 5 * time.Second, Windows: []probe.Window{{From: time.Second}}}
		}, "does not answer the probe"},
		{"probe answering too briefly", func(n *Now) {
			n.Probe = &probe.Summary{Settled: 5 * time.Second, Answering: true, Windows: []probe.Window{{From: time.Second, To: 4500 * time.Millisecond}}}
		}, "less than 1s"},
	} {
		n := base
		n.Ready = map[string]string{"web-a": "n1", "web-b": "n2"}
		tc.change(&n)
		if got := Summary(Waiting(n)); !strings.Contains(got, tc.want) {
			t.Fatalf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	n := base
	n.Probe = &probe.Summary{Settled: 5 * time.Second, Answering: true, Windows: []probe.Window{{From: time.Second, To: 2 * time.Second}}}
	if w := Waiting(n); len(w) != 0 {
		t.Fatalf("answering for 3 s: %v", w)
	}
}
