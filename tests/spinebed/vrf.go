package spinebed

import (
	"context"
	"fmt"

	"github.com/calico-lb/calico-lb/tests/vmrouter"
)

// The VRF bed (StartVRF), the workaround that puts Calico and the
// speakers on two halves of one router: a rack of nodes and a client on a
// router split in two VRFs. Calico's BGP (BIRD, as on the racks bed)
// peers the default VRF on the nodes' own subnet; the speakers peer the
// lb VRF on a second subnet of the same link (a VLAN in a real rack); the
// router leaks the pool's /32s, and nothing else, from lb into default.
// The speakers' next hop (the node's own address, on Calico's subnet) is
// rewritten to the speaker's address on the lb subnet as the route comes
// in: a next hop the lb VRF reaches only through a route leaked from
// default leaves the /32 leaked back into default inactive (FRR resolves
// a leaked route's next hop in its source VRF, and not through another
// leaked route). This machine's kernel has no
// VRF devices, so the router runs in a small VM (tests/vmrouter) with
// Debian's kernel and the host's FRR.
//
//	node1 10.217.1.11 + 10.217.2.11 \            eth0 10.217.1.1 (default) \
//	node2 10.217.1.12 + 10.217.2.12  > segment -- eth1 10.217.2.1 (vrf lb)   > router (AS 65001)
//	                                /   client -- eth2 10.217.3.1 (default) /
//	client 10.217.3.2
const (
	VRFRouterAS = 65001
	// VRFSubnetPeers and VRFSubnetAS are calico's options for the VRF bed.
	VRFSubnetPeers = "{10.217.1.0/24: [{address: 10.217.1.1, as-number: 65001}]}"
	VRFSubnetAS    = "{10.217.1.0/24: 64601}"
	// VRFPeer is the router's address in the lb VRF, the speakers' peer.
	VRFPeer  = "10.217.2.1"
	VRFPools = "10.217.100.0/24"
	// VRFKept is a prefix the lb VRF originates that must not cross.
	VRFKept = "10.217.250.0/24"
)

// VRFNodeIP is node i's (1-based) address (its InternalIP, Calico's
// subnet), and VRFSpeakerIP its address on the speakers' subnet.
func VRFNodeIP(i int) string    { return fmt.Sprintf("10.217.1.%d", 10+i) }
func VRFSpeakerIP(i int) string { return fmt.Sprintf("10.217.2.%d", 10+i) }

// VRFRouterSetup is the router's interfaces: eth1 enslaved to the lb VRF
// (kernel table 10).
const VRFRouterSetup = `set -e
ip link add lb type vrf table 10
ip link set lb up
ip link set eth1 master lb
ip addr add 10.217.1.1/24 dev eth0
ip addr add 10.217.2.1/24 dev eth1
ip addr add 10.217.3.1/24 dev eth2
for i in eth0 eth1 eth2; do ip link set $i up; done
sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1 net.ipv4.conf.all.arp_ignore=1
`

// VRFRouterFRR is the router's FRR configuration, the recipe
// docs/topologies.md gives.
const VRFRouterFRR = `frr defaults traditional
ip prefix-list POOLS seq 10 permit 10.217.100.0/24 le 32
route-map LB-TO-DEFAULT permit 10
 match ip address prefix-list POOLS
exit
route-map SPEAKERS-IN permit 10
 set ip next-hop peer-address
exit
route-map TO-CALICO deny 10
 match ip address prefix-list POOLS
exit
route-map TO-CALICO permit 20
exit
router bgp 65001
 bgp router-id 10.217.1.1
 bgp log-neighbor-changes
 no bgp ebgp-requires-policy
 neighbor CALICO peer-group
 neighbor CALICO remote-as external
 neighbor CALICO passive
 bgp listen range 10.217.1.0/24 peer-group CALICO
 address-family ipv4 unicast
  redistribute connected
  maximum-paths 8
  neighbor CALICO route-map TO-CALICO out
  import vrf lb
  import vrf route-map LB-TO-DEFAULT
 exit-address-family
exit
router bgp 65001 vrf lb
 bgp router-id 10.217.2.1
 bgp log-neighbor-changes
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor SPEAKERS peer-group
 neighbor SPEAKERS remote-as external
 neighbor SPEAKERS ebgp-multihop 2
 neighbor SPEAKERS passive
 bgp listen range 10.217.2.0/24 peer-group SPEAKERS
 address-family ipv4 unicast
  network 10.217.250.0/24
  maximum-paths 8
  neighbor SPEAKERS route-map SPEAKERS-IN in
 exit-address-family
exit
`

// StartVRF builds the VRF topology, the control plane and Calico's
// stand-in with calico's options (VRFSubnetPeers and VRFSubnetAS, no mesh,
// and what calicoOpts adds).
func StartVRF(ctx context.Context, opts Options, calicoOpts map[string]any) (b *Bed, err error) {
	if b, err = newBed(&opts, 2); err != nil {
		return nil, err
	}
	nb, bed := b.Net, b
	defer func() {
		if err != nil {
			bed.Close()
		}
	}()
	host, err := nb.NS("router")
	if err != nil {
		return nil, err
	}
	b.Spine = host
	for _, br := range []string{"br0", "br1"} {
		if err := nb.Bridge(host, br); err != nil {
			return nil, err
		}
	}
	if b.Client, err = nb.NS("client"); err != nil {
		return nil, err
	}
	if err := nb.Link(host, "p-client", nil, b.Client, "eth0", []string{"10.217.3.2/24"}); err != nil {
		return nil, err
	}
	if _, err := nb.Exec(host, "ip", "link", "set", "p-client", "master", "br1"); err != nil {
		return nil, err
	}
	if _, err := nb.Exec(b.Client, "ip", "route", "add", "default", "via", "10.217.3.1"); err != nil {
		return nil, err
	}
	for i := 1; i <= opts.Nodes; i++ {
		ns, err := nb.NS(fmt.Sprint("node", i))
		if err != nil {
			return nil, err
		}
		b.Nodes = append(b.Nodes, ns)
		b.NodeIPs = append(b.NodeIPs, VRFNodeIP(i))
		port := fmt.Sprint("p-node", i)
		if err := nb.Link(host, port, nil, ns, "eth0", []string{VRFNodeIP(i) + "/24", VRFSpeakerIP(i) + "/24"}); err != nil {
			return nil, err
		}
		if _, err := nb.Exec(host, "ip", "link", "set", port, "master", "br0"); err != nil {
			return nil, err
		}
		if _, err := nb.Exec(ns, "ip", "route", "add", "10.217.0.0/16", "via", "10.217.1.1"); err != nil {
			return nil, err
		}
	}
	opts.Log("network: a router split in two VRFs (a VM: this kernel has no VRF devices), a rack of nodes, a client")
	if b.VRF, err = vmrouter.Start(ctx, nb, host, vmrouter.Options{
		NICs:  []vmrouter.NIC{{Tap: "tap0", Bridge: "br0"}, {Tap: "tap1", Bridge: "br0"}, {Tap: "tap2", Bridge: "br1"}},
		Setup: VRFRouterSetup,
		FRR:   VRFRouterFRR,
	}); err != nil {
		return nil, err
	}
	b.Racks = newRacks(VRFSubnetPeers, VRFSubnetAS, calicoOpts)
	mgmt, err := b.management(217)
	if err != nil {
		return nil, err
	}
	if err := b.startControlPlane(ctx, mgmt); err != nil {
		return nil, err
	}
	return b, b.startCalico(ctx)
}
