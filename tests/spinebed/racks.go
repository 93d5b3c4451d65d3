package spinebed

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/calico-lb/calico-lb/tests/calicobird"
	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/netns"
)

// The racks bed (StartRacks), the topology calico-lb is for: two racks of
// two nodes, an FRR ToR per rack in its own AS, an FRR spine above both, a
// client behind the spine, and Calico's BGP on every node, stood in for by
// BIRD 2 (tests/calicobird) peering its rack's ToR from port 179.
//
//	client 10.215.3.2 -- 10.215.3.1  spine (AS 65000)
//	               10.215.101.1 /          \ 10.215.102.1
//	tor1 (AS 65001) 10.215.101.2            10.215.102.2 tor2 (AS 65002)
//	   10.215.1.1 |  rack 1 segment            rack 2 segment | 10.215.2.1
//	   node1 10.215.1.11, node2 10.215.1.12    node3 10.215.2.11, node4 10.215.2.12
const (
	SpineAS = 65000
	// RackCalico are the calico charm's options for the racks (the
	// Charmed Kubernetes AS-per-rack example): no mesh, each node peering
	// its ToR, an AS per rack.
	RackSubnetPeers = "{10.215.1.0/24: [{address: 10.215.1.1, as-number: 65001}], 10.215.2.0/24: [{address: 10.215.2.1, as-number: 65002}]}"
	RackSubnetAS    = "{10.215.1.0/24: 64601, 10.215.2.0/24: 64602}"
	// RackPools is where the racks bed's tests put their pools.
	RackPools = "10.215.100.0/24"
	// RackL2Pool is a pool on rack 1's segment, for l2 mode there (the
	// speakers on rack 1 answer ARP on it; its ToR reaches it as a
	// connected subnet) and for switching between l2 and the BGP modes.
	RackL2Pool = "10.215.1.192/28"
)

// RackNodeIP is node i's (1-based) address: nodes 1-2 in rack 1, 3-4 in
// rack 2.
func RackNodeIP(i int) string { return fmt.Sprintf("10.215.%d.%d", (i+1)/2, 10+(i-1)%2+1) }

// RackToR is rack r's ToR address on its segment.
func RackToR(r int) string { return fmt.Sprintf("10.215.%d.1", r) }

// Racks is the racks bed's own part: the ToRs and Calico's stand-in.
type Racks struct {
	ToRs []*netns.FRR

	mu     sync.Mutex
	calico map[string]any
	source func() map[string]any
	birds  map[string]string // node -> BIRD's directory
}

// newRacks is the stand-in's state for calico's options: no mesh, the
// subnets' peers and AS numbers, and what extra adds.
func newRacks(peers, as string, extra map[string]any) *Racks {
	r := &Racks{calico: map[string]any{"node-to-node-mesh": false, "subnet-bgp-peers": peers, "subnet-as-numbers": as}, birds: map[string]string{}}
	maps.Copy(r.calico, extra)
	return r
}

// Calico returns calico's options as the stand-in applies them: from the
// source when one is set (calico's charm in a fake Juju controller, which
// the Calico link writes), else the bed's own.
func (r *Racks) Calico() map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.source != nil {
		return r.source()
	}
	return maps.Clone(r.calico)
}

// SetCalico changes calico's options (as `juju config calico` would).
func (r *Racks) SetCalico(values map[string]any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	maps.Copy(r.calico, values)
}

// CalicoFrom makes source (calico's options where the Calico link writes
// them) what the stand-in applies.
func (r *Racks) CalicoFrom(source func() map[string]any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.source = source
}

// Options are the bed's own calico options (the racks' peers and AS
// numbers, and what StartRacks was given), to seed a fake controller.
func (r *Racks) Options() map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.calico)
}

// RootAddr is the root namespace's address on the management bridge,
// which pods reach (a fake Juju controller listens there).
func (b *Bed) RootAddr() string { return fmt.Sprintf("10.250.%d.1", b.mgmtNet) }

// BIRD runs birdc show ... on node i's stand-in.
func (b *Bed) BIRD(i int, args ...string) (string, error) {
	dir := b.Racks.birds[fmt.Sprint("node", i)]
	return b.Net.Exec(b.Nodes[i-1], append([]string{"birdc", "-s", filepath.Join(dir, "bird.ctl")}, args...)...)
}

// StartRacks builds the racks topology, the control plane, and Calico's
// stand-in with calico's options (RackSubnetPeers and RackSubnetAS, no
// mesh, and what opts.Calico adds).
func StartRacks(ctx context.Context, opts Options, calicoOpts map[string]any) (b *Bed, err error) {
	if b, err = newBed(&opts, 4); err != nil {
		return nil, err
	}
	nb, bed := b.Net, b
	defer func() {
		if err != nil {
			bed.Close()
		}
	}()
	if err := b.spineAndClient("10.215.3"); err != nil {
		return nil, err
	}
	b.Racks = newRacks(RackSubnetPeers, RackSubnetAS, calicoOpts)
	tors := make([]string, 2)
	for r := 1; r <= 2; r++ {
		if tors[r-1], err = nb.NS(fmt.Sprint("tor", r)); err != nil {
			return nil, err
		}
		tor := tors[r-1]
		if err := nb.Link(b.Spine, fmt.Sprint("to-tor", r), []string{fmt.Sprintf("10.215.10%d.1/30", r)}, tor, "uplink", []string{fmt.Sprintf("10.215.10%d.2/30", r)}); err != nil {
			return nil, err
		}
		if err := nb.Bridge(tor, "br0"); err != nil {
			return nil, err
		}
		for _, cmd := range [][]string{
			{"ip", "addr", "add", RackToR(r) + "/24", "dev", "br0"},
			{"sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1"},
		} {
			if _, err := nb.Exec(tor, cmd...); err != nil {
				return nil, err
			}
		}
	}
	for i := 1; i <= opts.Nodes; i++ {
		r := (i + 1) / 2
		ns, err := nb.NS(fmt.Sprint("node", i))
		if err != nil {
			return nil, err
		}
		b.Nodes = append(b.Nodes, ns)
		b.NodeIPs = append(b.NodeIPs, RackNodeIP(i))
		port := fmt.Sprint("p-node", i)
		if err := nb.Link(tors[r-1], port, nil, ns, "eth0", []string{RackNodeIP(i) + "/24"}); err != nil {
			return nil, err
		}
		if _, err := nb.Exec(tors[r-1], "ip", "link", "set", port, "master", "br0"); err != nil {
			return nil, err
		}
		if _, err := nb.Exec(ns, "ip", "route", "add", "10.215.0.0/16", "via", RackToR(r)); err != nil {
			return nil, err
		}
	}
	// The spine: the ToRs below, and (for spine peering) speakers from
	// anywhere in the racks, multihop. It gives each ToR the speakers'
	// paths through that ToR's own nodes (all of them: add-path), with the
	// node as next hop, and no other path for a pool address: a ToR that
	// learnt a VIP with the spine, or a node of the other rack, as next hop
	// would send the spine's traffic for it straight back up, a loop.
	var perRack strings.Builder
	for r := 1; r <= 2; r++ {
		fmt.Fprintf(&perRack, `ip prefix-list RACK%[1]d seq 10 permit 10.215.%[1]d.0/24 le 32
route-map TOR%[1]d-OUT permit 10
 match ip address prefix-list POOLS
 match ip next-hop prefix-list RACK%[1]d
 set ip next-hop unchanged
exit
route-map TOR%[1]d-OUT deny 20
 match ip address prefix-list POOLS
exit
route-map TOR%[1]d-OUT permit 30
exit
`, r)
	}
	if b.FRR, err = nb.StartFRR(b.Spine, opts.BFD, fmt.Sprintf(`frr defaults traditional
ip prefix-list POOLS seq 10 permit %s le 32
ip prefix-list POOLS seq 20 permit %s le 32
%srouter bgp %d
 bgp router-id 10.215.0.1
 bgp log-neighbor-changes
 no bgp ebgp-requires-policy
 neighbor 10.215.101.2 remote-as 65001
 neighbor 10.215.101.2 advertisement-interval 0
 neighbor 10.215.102.2 remote-as 65002
 neighbor 10.215.102.2 advertisement-interval 0
 neighbor SPEAKERS peer-group
 neighbor SPEAKERS remote-as external
 neighbor SPEAKERS ebgp-multihop 2
 neighbor SPEAKERS passive
 bgp listen range 10.215.1.0/24 peer-group SPEAKERS
 bgp listen range 10.215.2.0/24 peer-group SPEAKERS
 address-family ipv4 unicast
  redistribute connected
  maximum-paths 8
  neighbor 10.215.101.2 addpath-tx-all-paths
  neighbor 10.215.101.2 route-map TOR1-OUT out
  neighbor 10.215.102.2 addpath-tx-all-paths
  neighbor 10.215.102.2 route-map TOR2-OUT out
 exit-address-family
exit
`, RackPools, RackL2Pool, perRack.String(), SpineAS)); err != nil {
		return nil, err
	}
	for r := 1; r <= 2; r++ {
		f, err := nb.StartFRR(tors[r-1], false, fmt.Sprintf(`frr defaults traditional
router bgp 6500%d
 bgp router-id %s
 bgp log-neighbor-changes
 no bgp ebgp-requires-policy
 neighbor 10.215.10%d.1 remote-as %d
 neighbor 10.215.10%d.1 advertisement-interval 0
 neighbor NODES peer-group
 neighbor NODES remote-as external
 neighbor NODES passive
 bgp listen range 10.215.%d.0/24 peer-group NODES
 address-family ipv4 unicast
  redistribute connected
  maximum-paths 8
 exit-address-family
exit
`, r, RackToR(r), r, SpineAS, r, r))
		if err != nil {
			return nil, err
		}
		b.Racks.ToRs = append(b.Racks.ToRs, f)
	}
	mgmt, err := b.management(215)
	if err != nil {
		return nil, err
	}
	opts.Log("network: two racks of two nodes, a ToR each (FRR), a spine (FRR), a client, management bridge")
	if err := b.startControlPlane(ctx, mgmt); err != nil {
		return nil, err
	}
	return b, b.startCalico(ctx)
}

// startCalico starts BIRD on every node as Calico's stand-in and keeps it
// configured from calico's options and the cluster.
func (b *Bed) startCalico(ctx context.Context) error {
	var nodes []calicobird.Node
	for i := range b.Nodes {
		v4, _ := cluster.PodRanges(b.mgmtNet, i+1)
		nodes = append(nodes, calicobird.Node{Name: fmt.Sprint("node", i+1), Unit: i, Address: netip.MustParseAddr(b.NodeIPs[i]), PodCIDR: netip.MustParsePrefix(v4)})
	}
	run := &calicobird.Runner{Kube: b.Kube, Nodes: nodes, Options: b.Racks.Calico, Errorf: func(f string, a ...any) { b.opts.Log(fmt.Sprintf(f, a...)) }}
	confs, err := run.Configs(ctx)
	if err != nil {
		return err
	}
	for i, n := range nodes {
		dir, err := b.Net.StartBIRD(b.Nodes[i], confs[n.Name])
		if err != nil {
			return err
		}
		b.Racks.birds[n.Name] = dir
	}
	run.Apply = func(n calicobird.Node, conf string) error {
		dir := b.Racks.birds[n.Name]
		if err := os.WriteFile(filepath.Join(dir, "bird.conf"), []byte(conf), 0o644); err != nil {
			return err
		}
		out, err := b.Net.Exec(b.Nodes[n.Unit], "birdc", "-s", filepath.Join(dir, "bird.ctl"), "configure")
		if err == nil && !strings.Contains(out, "onfigur") {
			return fmt.Errorf("birdc configure: %s", out)
		}
		return err
	}
	cctx, cancel := context.WithCancel(context.Background())
	b.stopCalico = cancel
	go run.Run(cctx)
	b.opts.Log("Calico's BGP stood in for by BIRD 2 on every node, peering its rack's ToR")
	return nil
}
