package speaker

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/workload/config"
)

func spineConfig(t *testing.T) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(`mode: spine
pools:
  public: {addresses: [10.1.0.0/24, "fd00:1::/120"], communities: ["65000:200", no-export], local-pref: 150}
  other: {addresses: [10.2.0.0/24]}
bgp:
  peers: [{address: 10.0.0.1, as-number: 65100}]
`))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func svcWith(name string, local bool, ips ...string) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}
	if local {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return s
}

func slice(svc string, endpoints ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: svc + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		Endpoints:  endpoints,
	}
}

func ep(node string, ready *bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{NodeName: &node, Conditions: discoveryv1.EndpointConditions{Ready: ready}}
}

func TestAnnouncements(t *testing.T) {
	yes, no := true, false
	node := Node{Name: "n1", Labels: map[string]string{"rack": "a"}, Addresses: []netip.Addr{netip.MustParseAddr("10.0.1.2"), netip.MustParseAddr("fd00::2")}}
	eps := map[string][]*discoveryv1.EndpointSlice{
		"local-here":    {slice("local-here", ep("n2", &yes), ep("n1", nil))},
		"local-away":    {slice("local-away", ep("n2", &yes))},
		"local-unready": {slice("local-unready", ep("n1", &no))},
	}
	class := "other.example/lb"
	services := []*corev1.Service{
		svcWith("web", false, "10.1.0.5"),
		svcWith("dns-tcp", false, "10.1.0.6"),
		svcWith("dns-udp", false, "10.1.0.6"), // shares 10.1.0.6: one route
		svcWith("dual", false, "10.1.0.7", "fd00:1::7"),
		svcWith("plain-pool", false, "10.2.0.9"), // a pool without communities
		svcWith("local-here", true, "10.1.0.8"),
		svcWith("local-away", true, "10.1.0.9"),
		svcWith("local-unready", true, "10.1.0.10"),
		svcWith("not-ours", false, "192.0.2.1"), // outside every pool
		svcWith("pending", false),
		func() *corev1.Service {
			s := svcWith("classed", false, "10.1.0.11")
			s.Spec.LoadBalancerClass = &class
			return s
		}(),
		func() *corev1.Service {
			s := svcWith("clusterip", false, "10.1.0.12")
			s.Spec.Type = corev1.ServiceTypeClusterIP
			return s
		}(),
	}
	got := Announcements(spineConfig(t), node, services, func(ns, name string) []*discoveryv1.EndpointSlice { return eps[name] })
	comm := []config.Community{config.MustCommunity("65000:200"), config.MustCommunity("no-export")}
	nh4, nh6 := netip.MustParseAddr("10.0.1.2"), netip.MustParseAddr("fd00::2")
	want := []Route{
		{Prefix: netip.MustParsePrefix("10.1.0.5/32"), NextHop: nh4, Communities: comm, LocalPref: 150, Services: []string{"ns/web"}},
		{Prefix: netip.MustParsePrefix("10.1.0.6/32"), NextHop: nh4, Communities: comm, LocalPref: 150, Services: []string{"ns/dns-tcp", "ns/dns-udp"}},
		{Prefix: netip.MustParsePrefix("10.1.0.7/32"), NextHop: nh4, Communities: comm, LocalPref: 150, Services: []string{"ns/dual"}},
		{Prefix: netip.MustParsePrefix("10.1.0.8/32"), NextHop: nh4, Communities: comm, LocalPref: 150, Services: []string{"ns/local-here"}},
		{Prefix: netip.MustParsePrefix("10.2.0.9/32"), NextHop: nh4, Services: []string{"ns/plain-pool"}},
		{Prefix: netip.MustParsePrefix("fd00:1::7/128"), NextHop: nh6, Communities: comm, LocalPref: 150, Services: []string{"ns/dual"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n%v\nwant\n%v", got, want)
	}
	// What the speakers' caches keep (slim.go) gives the same routes, and
	// none of a tenant's annotations.
	slimmed := make([]*corev1.Service, len(services))
	for i, svc := range services {
		fat := svc.DeepCopy()
		fat.Annotations = map[string]string{"tenant.example/blob": strings.Repeat("x", 200<<10)}
		o, _ := slimService(fat)
		slimmed[i] = o.(*corev1.Service)
		if len(slimmed[i].Annotations) != 0 {
			t.Fatalf("a slimmed Service keeps its annotations")
		}
	}
	slimEps := map[string][]*discoveryv1.EndpointSlice{}
	for name, list := range eps {
		for _, es := range list {
			o, _ := slimEndpointSlice(es)
			slimEps[name] = append(slimEps[name], o.(*discoveryv1.EndpointSlice))
		}
	}
	if got := Announcements(spineConfig(t), node, slimmed, func(ns, name string) []*discoveryv1.EndpointSlice { return slimEps[name] }); !reflect.DeepEqual(got, want) {
		t.Fatalf("from the slimmed caches\n%v\nwant\n%v", got, want)
	}

	// Only spine mode announces by BGP, and only from selected nodes, and
	// only families the node has an address of.
	cfg := spineConfig(t)
	cfg.Mode = config.ModeCalico
	if r := Announcements(cfg, node, services, nil); r != nil {
		t.Fatalf("calico mode announced %v", r)
	}
	cfg = spineConfig(t)
	cfg.Speakers.NodeSelector = "rack=b"
	if r := Announcements(cfg, node, services, nil); r != nil {
		t.Fatalf("unselected node announced %v", r)
	}
	v4only := Node{Name: "n1", Addresses: []netip.Addr{netip.MustParseAddr("10.0.1.2")}}
	r := Announcements(spineConfig(t), v4only, []*corev1.Service{svcWith("dual", false, "10.1.0.7", "fd00:1::7")}, nil)
	if len(r) != 1 || !r[0].Prefix.Addr().Is4() {
		t.Fatalf("IPv4-only node: %v", r)
	}
}

func TestNodeFrom(t *testing.T) {
	full := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"a": "b"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeHostName, Address: "n1"},
			{Type: corev1.NodeInternalIP, Address: "10.0.1.2"},
			{Type: corev1.NodeExternalIP, Address: "198.51.100.2"},
			{Type: corev1.NodeInternalIP, Address: "fd00::2"},
		}, Images: []corev1.ContainerImage{{Names: []string{strings.Repeat("i", 1<<10)}}}},
	}
	n := NodeFrom(full)
	o, _ := slimNode(full)
	if slim := o.(*corev1.Node); !reflect.DeepEqual(NodeFrom(slim), n) || len(slim.Status.Images) != 0 {
		t.Fatalf("the speakers' slim Node reads %+v, the full one %+v", NodeFrom(slim), n)
	}
	if n.Name != "n1" || len(n.Addresses) != 2 || n.Addresses[1] != netip.MustParseAddr("fd00::2") {
		t.Fatalf("%+v", n)
	}
}
