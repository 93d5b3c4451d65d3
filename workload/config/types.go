// Package config is the contract between the charm and the workload: the
// workload config file (/etc/calico-lb/config.yaml) and the parsers of the
// charm's options. The charm validates with this package before it writes
// the file, and the workload validates the file with it again, so an
// invalid config never replaces a good one.
package config

import (
	"net/netip"
	"sync"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/calico-lb/calico-lb/workload/iprange"
	"github.com/calico-lb/calico-lb/workload/rock"
)

// Mode is how LoadBalancer IPs are announced.
type Mode string

// Modes. The charm's peering-mode option also takes "auto", which it
// resolves to one of these before writing the file.
const (
	ModeCalico Mode = "calico" // allocate only; Calico advertises the pools
	ModeSpine  Mode = "spine"  // speakers peer by BGP with spine routers
	ModeL2     Mode = "l2"     // speakers answer ARP/NDP
)

// Calico service-IP options that can receive the pool CIDRs.
const (
	ServiceIPLoadBalancer = "loadbalancer" // bgp-service-loadbalancer-ips
	ServiceIPExternal     = "external"     // bgp-service-external-ips
)

// Defaults.
const (
	DefaultAPIAddress = "127.0.0.1:9402"
	// DefaultAPIKeyFile is where the controller keeps the local API's key
	// (access.LoadOrCreateKey), beside its ServiceAccount token.
	DefaultAPIKeyFile = "/var/lib/calico-lb/api-key"
	// DefaultBinary is where the workload image has calico-lb.
	DefaultBinary = rock.Binary
	// DefaultMetricsAddress is the controller's read-only listener on the
	// pod network (metrics and health), which Prometheus scrapes; the local
	// API, which can change assignments, stays on loopback.
	DefaultMetricsAddress = ":9401"
	// DefaultSpeakerPort is the speakers' read-only status and metrics
	// port on every address of their node: the controller gathers
	// bgp-status from it and Prometheus scrapes it.
	DefaultSpeakerPort = 9403
	// DefaultPath is where the charm puts the workload config file.
	DefaultPath          = "/etc/calico-lb/config.yaml"
	DefaultPasswordFile  = "/etc/calico-lb/bgp-passwords.yaml"
	DefaultASNumber      = 64512
	DefaultHoldTime      = 90 // seconds, as GoBGP and most routers
	DefaultBFDInterval   = 300
	DefaultBFDMultiplier = 3
	// DefaultMaxPrefixes is how many routes a peer may send before the
	// speaker closes the session. The speakers need none and reject them
	// all, but GoBGP keeps what arrives before its policy: a spine that
	// sends a full table (a million IPv4 routes, 200,000 IPv6) would fill
	// every speaker's memory. Many routers also send the speakers their
	// own announcements back (FRR does unless told not to), which GoBGP
	// counts too: one per load-balancer IP in the cluster. So the limit is
	// far above any pool and far below a full table.
	DefaultMaxPrefixes = 100000
	DefaultPoolName    = "default"
	DefaultLogLevel    = "info"
)

// Config is the workload config file.
type Config struct {
	Mode Mode
	// ServiceIPOption says which calico option holds the pools; with
	// "external" the controller also mirrors IPs into spec.externalIPs.
	ServiceIPOption   string
	LoadBalancerClass string
	LogLevel          string
	APIAddress        string // the local HTTP API, host:port
	Pools             []Pool
	BGP               BGP
	Speakers          Speakers
	L2                L2
}

// Pool is a named set of addresses and the rules for handing them out.
type Pool struct {
	Name          string
	Addresses     []iprange.Range
	AutoAssign    bool
	AvoidBuggyIPs bool
	// SharedAcrossNamespaces: see allocator.Pool.
	SharedAcrossNamespaces bool
	Namespaces             []string
	ServiceSelector        string // a Kubernetes label selector; "" matches all
	// Priority orders pools for automatic allocation: lower first, 0 (unset) last.
	Priority int
	// Communities and LocalPref are attached to the routes of this pool's
	// IPs in spine mode. LocalPref 0 leaves the router's default.
	Communities []Community
	LocalPref   uint32
}

// BGP is what the speakers need in spine mode.
type BGP struct {
	ASNumber        uint32
	SubnetASNumbers []SubnetAS // AS per rack: overrides ASNumber for nodes in the subnet
	Peers           []Peer
	SubnetPeers     []SubnetPeers // peers for nodes in a subnet (per-rack spines)
	PasswordFile    string        // YAML mapping password-key -> password, rendered by the charm
}

// SubnetAS maps nodes in Subnet to an AS number.
type SubnetAS struct {
	Subnet   netip.Prefix
	ASNumber uint32
}

// SubnetPeers are the peers of nodes in Subnet.
type SubnetPeers struct {
	Subnet netip.Prefix
	Peers  []Peer
}

// Peer is one BGP neighbour, in the calico charm's style plus timers, BFD
// and MD5.
type Peer struct {
	Address  netip.Addr
	ASNumber uint32
	// HoldTime and Keepalive are in seconds. HoldTime 0 turns keepalives off.
	HoldTime  int
	Keepalive int
	// Multihop is the eBGP TTL; 0 means directly connected.
	Multihop int
	BFD      bool
	// BFDInterval (ms) and BFDMultiplier: detection takes interval x multiplier.
	BFDInterval   int
	BFDMultiplier int
	// PasswordKey names the key in the bgp-passwords secret that holds the
	// TCP MD5 password; "" for none.
	PasswordKey   string
	SourceAddress netip.Addr // optional: the local address to connect from
	// MaxPrefixes is how many routes the peer may send; one more closes
	// the session, which the speaker tries again a minute later. 0 (a
	// Peer not read from a file) means DefaultMaxPrefixes.
	MaxPrefixes int
}

// Speakers selects where speakers run.
type Speakers struct {
	NodeSelector string // Kubernetes label selector; "" for every node
}

// parsedSelectors holds each node selector parsed once: speakers ask for
// every node on every pass, and a Config stays a plain value that two
// reads of one file give equal.
var parsedSelectors sync.Map // string -> labels.Selector

// Selects reports whether a node with these labels runs a speaker. A
// selector that does not parse (validation rejects it; only a Config built
// by hand can have one) selects no node.
func (s Speakers) Selects(nodeLabels map[string]string) bool {
	if s.NodeSelector == "" {
		return true
	}
	v, ok := parsedSelectors.Load(s.NodeSelector)
	if !ok {
		sel, err := labels.Parse(s.NodeSelector)
		if err != nil {
			return false
		}
		v, _ = parsedSelectors.LoadOrStore(s.NodeSelector, sel)
	}
	return v.(labels.Selector).Matches(labels.Set(nodeLabels))
}

// L2 is what the speakers need in l2 mode.
type L2 struct {
	Interfaces []string // empty: the interface that holds the node IP
}
