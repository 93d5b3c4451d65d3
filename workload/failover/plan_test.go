package failover

import (
	"slices"
	"strings"
	"testing"

	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/config"
)

var up = []api.PeerStatus{{Address: "10.0.255.1", State: "established"}}

func spineWorld(policy string, endpoints ...string) World {
	route := func(node string) *api.BGPStatus {
		return &api.BGPStatus{Peers: up, Routes: []string{"10.208.1.5/32 via " + node + " (shop/web)", "10.208.1.9/32 via " + node + " (shop/db)"}}
	}
	w := World{Mode: config.ModeSpine,
		Service: api.ServiceFacts{Namespace: "shop", Name: "web", IPs: []string{"10.208.1.5"}, TrafficPolicy: policy, EndpointNodes: endpoints},
		Speakers: &api.Speakers{Mode: config.ModeSpine, Speakers: []api.SpeakerView{
			{Node: "n1", Ready: true, BGP: route("n1")}, {Node: "n2", Ready: true, BGP: route("n2")}}},
		Nodes: []api.NodeView{{Name: "n1", Ready: true, Speaker: true}, {Name: "n2", Ready: true, Speaker: true}},
	}
	w.Others = []api.ServiceFacts{w.Service, {Namespace: "shop", Name: "db", IPs: []string{"10.208.1.9"}, TrafficPolicy: "Cluster"}}
	return w
}

func TestPlan(t *testing.T) {
	req := func(mode string) api.FailoverRequest { return api.FailoverRequest{Service: "shop/web", Mode: mode} }
	r := Plan(req(ModeSpeaker), spineWorld("Cluster", "n2"))
	if r.Result != Planned || r.VIP != "10.208.1.5" || !slices.Equal(r.AttractingBefore, []string{"n1", "n2"}) || r.Target != "n1" ||
		!strings.Contains(r.Steps[0], "SIGKILL") || !strings.Contains(r.Steps[0], "BFD") || !strings.Contains(r.Disrupts, "shop/db") ||
		!strings.Contains(r.Steps[len(r.Steps)-1], "start the speaker on n1 again") {
		t.Fatalf("speaker: %+v", r)
	}
	// Cluster: mode=pod fails the attracting node that has a pod.
	if r := Plan(req(ModePod), spineWorld("Cluster", "n2")); r.Result != Planned || r.Target != "n2" || !strings.Contains(r.Steps[0], "cordon n2") {
		t.Fatalf("pod: %+v", r)
	}
	// l2: the ARP owner (n1) has no pod; relocating n2's still tests the
	// Service, which n1's kube-proxy forwards to n2.
	l2 := spineWorld("Cluster", "n2")
	l2.Mode, l2.Speakers.Mode = config.ModeL2, config.ModeL2
	l2.Speakers.Speakers[0].L2 = &api.L2Status{Owned: []string{"10.208.1.5"}}
	l2.Speakers.Speakers[1].L2 = &api.L2Status{}
	if r := Plan(req(ModePod), l2); r.Result != Planned || !slices.Equal(r.AttractingBefore, []string{"n1"}) || r.Target != "n2" {
		t.Fatalf("l2 pod: %+v", r)
	}
	if r := Plan(req(ModePod), spineWorld("Cluster")); r.Result != Refused || !strings.Contains(r.Reason, "has no ready pod") {
		t.Fatalf("pod without pods: %+v", r)
	}
	if r := Plan(api.FailoverRequest{Service: "shop/web", Mode: ModeSpeaker, Graceful: true}, spineWorld("Cluster")); !strings.Contains(r.Steps[0], "gracefully") {
		t.Fatalf("graceful: %+v", r)
	}
	if r := Plan(req(ModeNode), spineWorld("Cluster", "n1")); r.Result != Planned || !strings.Contains(r.Steps[0], "drain n1") || !strings.Contains(r.Disrupts, "every pod on n1") {
		t.Fatalf("node: %+v", r)
	}
}

func TestPlanRefuses(t *testing.T) {
	req := func(mode string) api.FailoverRequest { return api.FailoverRequest{Service: "shop/web", Mode: mode} }
	// Local with its only pod on n1: n2's speaker does not announce it, and
	// a speaker failure on n1 leaves it nowhere to go.
	local := spineWorld("Local", "n1")
	local.Speakers.Speakers[1].BGP.Routes = nil
	if r := Plan(req(ModeSpeaker), local); r.Result != Refused || !strings.Contains(r.Reason, "no other node with one of its pods") || r.Target != "n1" {
		t.Fatalf("local, one endpoint: %+v", r)
	}
	// force runs it anyway, saying so.
	forced := req(ModeSpeaker)
	forced.Force = true
	if r := Plan(forced, local); r.Result != Planned || !strings.HasPrefix(r.Reason, "forced: ") {
		t.Fatalf("forced: %+v", r)
	}
	// One node: a pod has nowhere to go.
	one := spineWorld("Cluster", "n1")
	one.Nodes[1].Unschedulable = true
	if r := Plan(req(ModePod), one); r.Result != Refused || !strings.Contains(r.Reason, "no other Ready, schedulable node") {
		t.Fatalf("pod, one schedulable node: %+v", r)
	}
	// The other speaker has no session: nothing takes over.
	down := spineWorld("Cluster", "n1")
	down.Speakers.Speakers[1].BGP.Peers = []api.PeerStatus{{Address: "10.0.255.1", State: "active"}}
	if r := Plan(req(ModeNode), down); r.Result != Refused || !slices.Equal(r.AttractingBefore, []string{"n1"}) {
		t.Fatalf("node, other speaker down: %+v", r)
	}
	calico := spineWorld("Cluster", "n1")
	calico.Mode = config.ModeCalico
	if r := Plan(req(ModeSpeaker), calico); r.Result != Refused || !strings.Contains(r.Reason, "use mode=pod") {
		t.Fatalf("calico speaker: %+v", r)
	}
	if r := Plan(req(ModePod), calico); r.Result != Planned || !slices.Equal(r.AttractingBefore, []string{"n1", "n2"}) {
		t.Fatalf("calico pod: %+v", r)
	}
	none := spineWorld("Cluster", "n1")
	none.Service.IPs = nil
	if r := Plan(req(ModePod), none); r.Result != Refused || !strings.Contains(r.Reason, "no load-balancer IP") {
		t.Fatalf("no IP: %+v", r)
	}
	if r := Plan(req("reboot"), none); r.Result != Refused || !strings.Contains(r.Reason, "want pod, speaker or node") {
		t.Fatalf("bad mode: %+v", r)
	}
	dark := spineWorld("Cluster", "n1")
	dark.Speakers = nil
	if r := Plan(req(ModeSpeaker), dark); r.Result != Refused || !strings.Contains(r.Reason, "nothing attracts") {
		t.Fatalf("no speakers: %+v", r)
	}
}
