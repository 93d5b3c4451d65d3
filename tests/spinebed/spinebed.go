// Package spinebed is the network test beds shared by the end-to-end
// tests, the benchmarks and the demo, with a real Kubernetes cluster on
// them (tests/kubebed: real nodes, calico-lb deployed as Juju deploys it).
// The spine bed: a spine router (FRR, AS 64500), nodes on their own links
// to it, a client behind it, and a management bridge through which the
// nodes reach the control plane. The L2 bed (StartL2): one segment with a
// client and the nodes.
//
//	client 10.212.3.2 -- 10.212.3.1 \
//	node1  10.212.1.2 -- 10.212.1.1  > spine (FRR, ECMP)
//	node2  10.212.2.2 -- 10.212.2.1 /
package spinebed

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/kubebed"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/vmrouter"
)

// Options shape the bed.
type Options struct {
	Nodes int  // default 2 (spine), 3 (L2)
	BFD   bool // FRR runs bfdd, peers use BFD at BFDInterval x 3
	// BFDInterval is FRR's BFD transmit and receive interval (default
	// 100 ms).
	BFDInterval time.Duration
	Log         func(string)
}

// Bed is a running spine topology.
type Bed struct {
	Net     *netns.Bed
	Spine   string
	Nodes   []string // namespaces node1, node2, ...
	Client  string
	FRR     *netns.FRR
	Cluster *cluster.Cluster
	// Kubebed is the real cluster, with RealNodes.
	Kubebed    *kubebed.Bed
	Kube       kubernetes.Interface
	Kubeconfig string
	ConfigPath string
	// NodeIPs are the nodes' addresses (InternalIPs), in node order, and
	// NodeIP6s their IPv6 ones where the bed has them (L2).
	NodeIPs, NodeIP6s []string
	// MgmtIPs are the nodes' addresses on the management bridge, which
	// the root namespace (the controller's) reaches.
	MgmtIPs []string
	opts    Options
	mgmtNet int // the management network's third octet
	// Racks is the racks bed's (StartRacks): the ToRs and Calico's
	// stand-in; nil on the others.
	Racks      *Racks
	stopCalico context.CancelFunc
	// VRF is the VRF bed's router (StartVRF); nil on the others.
	VRF *vmrouter.Router
}

// NodeIP is node i's (1-based) address on its spine link.
func NodeIP(i int) string { return fmt.Sprintf("10.212.%d.2", i) }

// spineAndClient makes the spine and the client namespaces, the client
// on net.0/24 behind the spine (net.1, its default route; the client
// net.2), and the spine a router that spreads ECMP by L4 hash, so that one
// client's connections use every path.
func (b *Bed) spineAndClient(net string) (err error) {
	if b.Spine, err = b.Net.NS("spine"); err != nil {
		return err
	}
	if b.Client, err = b.Net.NS("client"); err != nil {
		return err
	}
	if err := b.Net.Link(b.Spine, "to-client", []string{net + ".1/24"}, b.Client, "eth0", []string{net + ".2/24"}); err != nil {
		return err
	}
	for _, cmd := range [][]string{
		{b.Client, "ip", "route", "add", "default", "via", net + ".1"},
		{b.Spine, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1"},
	} {
		if _, err := b.Net.Exec(cmd[0], cmd[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// newBed fills in opts' defaults (nodes when opts.Nodes is 0) and creates
// the bed's namespace set.
func newBed(opts *Options, nodes int) (*Bed, error) {
	if opts.Nodes == 0 {
		opts.Nodes = nodes
	}
	if opts.Log == nil {
		opts.Log = func(string) {}
	}
	nb, err := netns.New()
	if err != nil {
		return nil, err
	}
	return &Bed{Net: nb, opts: *opts}, nil
}

// Start builds the topology and the control plane; the controller and the
// speakers start with StartController and StartSpeaker.
func Start(ctx context.Context, opts Options) (b *Bed, err error) {
	if b, err = newBed(&opts, 2); err != nil {
		return nil, err
	}
	nb, bed := b.Net, b // b is nil after a failed return; bed is what to close
	defer func() {
		if err != nil {
			bed.Close()
		}
	}()
	if err := b.spineAndClient("10.212.3"); err != nil {
		return nil, err
	}
	var neighbors strings.Builder
	for i := 1; i <= opts.Nodes; i++ {
		ns, err := nb.NS(fmt.Sprint("node", i))
		if err != nil {
			return nil, err
		}
		b.Nodes = append(b.Nodes, ns)
		if err := nb.Link(b.Spine, fmt.Sprint("to-node", i), []string{fmt.Sprintf("10.212.%d.1/24", i)}, ns, "eth0", []string{NodeIP(i) + "/24"}); err != nil {
			return nil, err
		}
		if _, err := nb.Exec(ns, "ip", "route", "add", "10.212.0.0/16", "via", fmt.Sprintf("10.212.%d.1", i)); err != nil {
			return nil, err
		}
		fmt.Fprintf(&neighbors, " neighbor %s peer-group NODES\n", NodeIP(i))
		if opts.BFD {
			fmt.Fprintf(&neighbors, " neighbor %s bfd\n neighbor %s bfd profile fast\n", NodeIP(i), NodeIP(i))
		}
	}
	bfd := ""
	if opts.BFD {
		ms := cmp.Or(opts.BFDInterval, 100*time.Millisecond).Milliseconds()
		bfd = fmt.Sprintf("bfd\n profile fast\n  receive-interval %d\n  transmit-interval %d\n  detect-multiplier 3\n exit\nexit\n", ms, ms)
	}
	if b.FRR, err = nb.StartFRR(b.Spine, opts.BFD, "frr defaults traditional\n"+bfd+`router bgp 64500
 bgp router-id 10.212.0.1
 bgp log-neighbor-changes
 no bgp ebgp-requires-policy
 neighbor NODES peer-group
 neighbor NODES remote-as 64512
 neighbor NODES passive
`+neighbors.String()+` address-family ipv4 unicast
  maximum-paths 8
 exit-address-family
exit
`); err != nil {
		return nil, err
	}
	mgmt, err := b.management(212)
	if err != nil {
		return nil, err
	}
	opts.Log("network: spine (FRR), " + fmt.Sprint(opts.Nodes) + " nodes, client, management bridge")
	for i := 1; i <= opts.Nodes; i++ {
		b.NodeIPs = append(b.NodeIPs, NodeIP(i))
	}
	// The spine routes the pods' addresses to their nodes, as Calico's
	// BGP to the ToR does: pods (the controller's, asking the probe
	// agent on the client) reach hosts outside the cluster unmasqueraded.
	if err := b.routePods(b.Spine); err != nil {
		return nil, err
	}
	return b, b.startControlPlane(ctx, mgmt)
}

// routePods routes each node's pod range via the node in ns.
func (b *Bed) routePods(ns string) error {
	for i := range b.Nodes {
		v4, _ := cluster.PodRanges(b.mgmtNet, i+1)
		if _, err := b.Net.Exec(ns, "ip", "route", "add", v4, "via", b.NodeIPs[i]); err != nil {
			return err
		}
	}
	return nil
}

// management joins the nodes and the root namespace on bridge net.
func (b *Bed) management(net int) (string, error) {
	b.mgmtNet = net
	mgmt, err := b.Net.Management(net, b.Nodes...)
	if err != nil {
		return "", err
	}
	for i := range b.Nodes {
		b.MgmtIPs = append(b.MgmtIPs, netns.ManagementAddr(net, i))
	}
	return mgmt, nil
}

// startControlPlane starts the real cluster on the management address,
// each node of the bed a real node.
func (b *Bed) startControlPlane(ctx context.Context, mgmt string) error {
	var nodes []cluster.NodeOptions
	for i, ns := range b.Nodes {
		v4, v6 := cluster.PodRanges(b.mgmtNet, i+1)
		o := cluster.NodeOptions{Name: fmt.Sprint("node", i+1), NetNS: ns, IP: b.NodeIPs[i], PodCIDR: v4, RouteVia: b.MgmtIPs[i]}
		if len(b.NodeIP6s) > i {
			o.IP6, o.PodCIDR6 = b.NodeIP6s[i], v6
		}
		nodes = append(nodes, o)
	}
	var err error
	if b.Kubebed, err = kubebed.Start(ctx, kubebed.Options{Address: mgmt, Nodes: nodes, Log: b.opts.Log}); err != nil {
		return err
	}
	b.Cluster, b.Kube = b.Kubebed.Cluster, b.Kubebed.Kube
	b.Kubeconfig, err = b.Cluster.WriteKubeconfig(cluster.UserAdmin)
	return err
}

// L2NodeIP is node i's (1-based) address on the L2 segment, and
// L2NodeIP6 its IPv6 one.
func L2NodeIP(i int) string  { return fmt.Sprintf("10.214.0.%d", 10+i) }
func L2NodeIP6(i int) string { return fmt.Sprintf("fd14::%d", 10+i) }

// StartL2 builds the L2 topology: one segment (a bridge in a switch
// namespace) joining a client (10.214.0.2, fd14::2) and the nodes, and the
// control plane. kube-proxy accepts traffic for the VIPs on the nodes, but
// their kernels never answer ARP for them: that is the speakers' job.
func StartL2(ctx context.Context, opts Options) (b *Bed, err error) {
	if b, err = newBed(&opts, 3); err != nil {
		return nil, err
	}
	nb, bed := b.Net, b // b is nil after a failed return; bed is what to close
	defer func() {
		if err != nil {
			bed.Close()
		}
	}()
	sw, err := nb.NS("switch")
	if err != nil {
		return nil, err
	}
	b.Spine = sw
	if err := nb.Bridge(sw, "br0"); err != nil {
		return nil, err
	}
	attach := func(ns, port string, addrs ...string) error {
		if err := nb.Link(sw, port, nil, ns, "eth0", addrs); err != nil {
			return err
		}
		_, err := nb.Exec(sw, "ip", "link", "set", port, "master", "br0")
		return err
	}
	if b.Client, err = nb.NS("client"); err != nil {
		return nil, err
	}
	if err := attach(b.Client, "p-client", "10.214.0.2/24", "fd14::2/64"); err != nil {
		return nil, err
	}
	for i := 1; i <= opts.Nodes; i++ {
		ns, err := nb.NS(fmt.Sprint("node", i))
		if err != nil {
			return nil, err
		}
		b.Nodes = append(b.Nodes, ns)
		b.NodeIPs = append(b.NodeIPs, L2NodeIP(i))
		b.NodeIP6s = append(b.NodeIP6s, L2NodeIP6(i))
		if err := attach(ns, fmt.Sprint("p-node", i), L2NodeIP(i)+"/24", L2NodeIP6(i)+"/64"); err != nil {
			return nil, err
		}
		if _, err := nb.Exec(ns, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.eth0.arp_ignore=1",
			"net.ipv4.conf.all.arp_announce=2", "net.ipv4.conf.eth0.arp_announce=2"); err != nil {
			return nil, err
		}
	}
	mgmt, err := b.management(214)
	if err != nil {
		return nil, err
	}
	opts.Log(fmt.Sprintf("network: one L2 segment with a client and %d nodes, management bridge", opts.Nodes))
	// The client, a host on the segment, reaches the pods through their
	// nodes, as with Calico's routes.
	if err := b.routePods(b.Client); err != nil {
		return nil, err
	}
	return b, b.startControlPlane(ctx, mgmt)
}

// MAC returns the MAC address of eth0 in ns.
func (b *Bed) MAC(ns string) string {
	out, err := b.Net.Exec(ns, "cat", "/sys/class/net/eth0/address")
	if err != nil {
		return ""
	}
	return strings.ToUpper(strings.TrimSpace(out))
}

// NextHops is the spine's kernel next hops for ip, sorted.
func (b *Bed) NextHops(ip string) []string {
	hops := b.FRR.Routes(ip)
	slices.Sort(hops)
	return hops
}

// WaitNextHops waits until the spine's next hops for ip are exactly want.
func (b *Bed) WaitNextHops(ip string, limit time.Duration, want ...string) (time.Duration, error) {
	slices.Sort(want)
	took, err := netns.WaitFor(context.Background(), limit, func() bool { return slices.Equal(b.NextHops(ip), want) })
	if err != nil {
		return took, fmt.Errorf("spine next hops for %s: %v, want %v", ip, b.NextHops(ip), want)
	}
	return took, nil
}

// WaitIP waits until the Service has an IP and returns it.
func (b *Bed) WaitIP(ns, name string, limit time.Duration) (string, error) {
	var ip string
	_, err := netns.WaitFor(context.Background(), limit, func() bool {
		s, err := b.Kube.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && len(s.Status.LoadBalancer.Ingress) > 0 {
			ip = s.Status.LoadBalancer.Ingress[0].IP
		}
		return ip != ""
	})
	if err != nil {
		return "", errors.New("service " + ns + "/" + name + " got no IP")
	}
	return ip, nil
}

// Close stops the cluster and removes the namespaces.
func (b *Bed) Close() {
	if b == nil {
		return
	}
	if b.stopCalico != nil {
		b.stopCalico()
	}
	if b.Kubebed != nil {
		b.Kubebed.Close()
	}
	_ = b.Net.Close()
}

// Logs says what the cluster's calico-lb namespace holds and what FRR
// logged, for failures.
func (b *Bed) Logs() string {
	var out strings.Builder
	if b.Kubebed != nil {
		out.WriteString(b.Kubebed.Describe(context.Background(), "lb"))
	}
	if b.FRR != nil {
		fmt.Fprintf(&out, "--- FRR\n%s\n", b.FRR.Log())
	}
	if b.VRF != nil {
		fmt.Fprintf(&out, "--- FRR (VRF router)\n%s\n", b.VRF.Log())
	}
	return out.String()
}

// WaitEstablished waits until the spine's BGP sessions with the nodes at
// addrs are Established, for at most limit.
func (b *Bed) WaitEstablished(limit time.Duration, addrs ...string) error {
	var out string
	_, err := netns.WaitFor(context.Background(), limit, func() bool {
		var err error
		if out, err = b.FRR.Vtysh("-c", "show bgp ipv4 unicast summary json"); err != nil {
			return false
		}
		var sum struct {
			Peers map[string]struct {
				State string `json:"state"`
			} `json:"peers"`
		}
		if json.Unmarshal([]byte(out), &sum) != nil {
			return false
		}
		for _, a := range addrs {
			if sum.Peers[a].State != "Established" {
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("the spine's sessions with %v are not Established after %s:\n%s", addrs, limit, out)
	}
	return nil
}
