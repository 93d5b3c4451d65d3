package charm

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/calico"
	"github.com/calico-lb/calico-lb/workload/config"
)

func TestSpeakersAnnounce(t *testing.T) {
	up := api.PeerStatus{Address: "10.0.9.1", State: "established", Routes: 2}
	spine := func(ready bool, peers ...api.PeerStatus) api.SpeakerView {
		return api.SpeakerView{Node: "n", Ready: ready, BGP: &api.BGPStatus{Mode: config.ModeSpine, Announces: true, Peers: peers, Routes: []string{"a", "b"}}}
	}
	l2 := func(alive ...string) api.SpeakerView {
		return api.SpeakerView{Node: "n", Ready: true, BGP: &api.BGPStatus{Mode: config.ModeL2}, L2: &api.L2Status{Alive: alive}}
	}
	for _, c := range []struct {
		name string
		s    api.Speakers
		mode config.Mode
		ok   bool
		why  string
	}{
		{"still calico", api.Speakers{Mode: config.ModeCalico}, config.ModeSpine, false, "still in calico mode"},
		{"none scheduled", api.Speakers{Mode: config.ModeSpine}, config.ModeSpine, false, "no speaker is scheduled"},
		{"one of two", api.Speakers{Mode: config.ModeSpine, Desired: 2, Speakers: []api.SpeakerView{spine(true, up)}}, config.ModeSpine, false, "1 of 2 speakers announce"},
		{"not ready", api.Speakers{Mode: config.ModeSpine, Desired: 2, Speakers: []api.SpeakerView{spine(true, up), spine(false, up)}}, config.ModeSpine, false, "1 of 2"},
		{"session not up", api.Speakers{Mode: config.ModeSpine, Desired: 2, Speakers: []api.SpeakerView{spine(true, up), spine(true, api.PeerStatus{State: "active"})}}, config.ModeSpine, false, "1 of 2"},
		{"routes not all sent", api.Speakers{Mode: config.ModeSpine, Desired: 1, Speakers: []api.SpeakerView{spine(true, api.PeerStatus{State: "established", Routes: 1})}}, config.ModeSpine, false, "0 of 1"},
		{"a speaker still in the old mode", api.Speakers{Mode: config.ModeSpine, Desired: 1, Speakers: []api.SpeakerView{{Ready: true, BGP: &api.BGPStatus{Mode: config.ModeCalico}}}}, config.ModeSpine, false, "0 of 1"},
		{"spine: all", api.Speakers{Mode: config.ModeSpine, Desired: 2, Speakers: []api.SpeakerView{spine(true, up), spine(true, up)}}, config.ModeSpine, true, ""},
		{"l2: not settled", api.Speakers{Mode: config.ModeL2, Desired: 2, Speakers: []api.SpeakerView{l2("a", "b"), l2("b")}}, config.ModeL2, false, "1 of 2"},
		{"l2: all", api.Speakers{Mode: config.ModeL2, Desired: 2, Speakers: []api.SpeakerView{l2("a", "b"), l2("a", "b")}}, config.ModeL2, true, ""},
	} {
		ok, why := speakersAnnounce(c.s, c.mode)
		if ok != c.ok || !strings.Contains(why, c.why) {
			t.Errorf("%s: %v %q, want %v %q", c.name, ok, why, c.ok, c.why)
		}
	}
}

// Switching from calico to spine mode is make-before-break: calico's
// option keeps calico-lb's CIDR (Calico keeps announcing the pool) while
// the speakers do not announce yet, and the same hook takes it out once
// they do. (Before, the link took it out first thing in the hook, before
// the workload had even heard of spine mode.)
func TestSwitchFromCalicoIsMakeBeforeBreak(t *testing.T) {
	fc, st := linked(t, nil)
	src := st.Containers[0].Mounts["etc"].Source
	var mu sync.Mutex
	mode, asked := config.ModeCalico, 0
	var calicoWhenNotAnnouncing []string
	calicoAtTakeOver := "(the speakers were never seen announcing)"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		snap := api.Snapshot{Mode: mode, Pools: []api.PoolView{{Name: "default", Addresses: []string{"10.208.1.0/28"}, Capacity: "14"}}}
		switch r.URL.Path {
		case "/v1/reload":
			if data, err := os.ReadFile(filepath.Join(src, config.DefaultPath)); err == nil {
				snap.ConfigDigest = api.ConfigDigest(data)
				if cfg, err := config.Parse(data); err == nil {
					mode = cfg.Mode
				}
			}
			_ = json.NewEncoder(w).Encode(snap)
		case "/v1/allocations":
			_ = json.NewEncoder(w).Encode(snap)
		case "/v1/pool-change":
			_ = json.NewEncoder(w).Encode(api.PoolChange{})
		case "/v1/speakers":
			asked++
			sp := api.Speakers{Mode: mode, Desired: 1}
			if mode == config.ModeSpine && asked > 2 { // up on the second question after the push
				sp.Speakers = []api.SpeakerView{{Node: "n1", Ready: true, BGP: &api.BGPStatus{Mode: config.ModeSpine, Announces: true,
					Peers: []api.PeerStatus{{State: "established"}}}}}
				if asked == 3 {
					calicoAtTakeOver, _ = calicoValue(fc, calico.OptLoadBalancerIPs).(string)
				}
			} else {
				v, _ := calicoValue(fc, calico.OptLoadBalancerIPs).(string)
				calicoWhenNotAnnouncing = append(calicoWhenNotAnnouncing, v)
			}
			_ = json.NewEncoder(w).Encode(sp)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	out, ctx := run(t, srv.URL, st)
	if ctx.CharmErr != nil || calicoValue(fc, calico.OptLoadBalancerIPs) != "198.51.100.0/24 10.208.1.0/28" {
		t.Fatalf("calico mode: %v, calico has %v", ctx.CharmErr, calicoValue(fc, calico.OptLoadBalancerIPs))
	}
	st.PeerRelations = out.PeerRelations
	st.Config["peering-mode"] = "spine"
	st.Config["spine-peers"] = "[{address: 10.0.9.1, as-number: 65000}]"
	out, ctx = run(t, srv.URL, st)
	if ctx.CharmErr != nil {
		t.Fatal(ctx.CharmErr)
	}
	if got := calicoValue(fc, calico.OptLoadBalancerIPs); got != "198.51.100.0/24" {
		t.Fatalf("after the speakers announce, calico has %q: calico-lb's CIDR must go, the operator's stay", got)
	}
	if !strings.Contains(calicoAtTakeOver, "10.208.1.0/28") {
		t.Fatalf("when the speakers first announced, calico had %q: calico-lb's CIDR left it before they took over", calicoAtTakeOver)
	}
	if len(calicoWhenNotAnnouncing) == 0 {
		t.Fatal("the speakers were never asked before calico-lb's CIDR left calico")
	}
	for i, v := range calicoWhenNotAnnouncing {
		if !strings.Contains(v, "10.208.1.0/28") {
			t.Fatalf("question %d: calico had %q while the speakers did not announce yet", i+1, v)
		}
	}
	// The hand-over done, a hook asks the speakers nothing: each question
	// sends a token to every node.
	st.PeerRelations = out.PeerRelations
	mu.Lock()
	before := asked
	mu.Unlock()
	if _, ctx = run(t, srv.URL, st); ctx.CharmErr != nil {
		t.Fatal(ctx.CharmErr)
	}
	mu.Lock()
	defer mu.Unlock()
	if asked != before {
		t.Fatalf("a hook after the hand-over asked the speakers %d times", asked-before)
	}
}
