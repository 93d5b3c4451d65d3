// Package api holds the types of the controller's local HTTP API, shared
// by the controller (which serves them) and the charm (which reads them)
// without the charm depending on the controller.
package api

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/calico-lb/calico-lb/workload/config"
)

// Snapshot is what GET /v1/allocations returns.
type Snapshot struct {
	Leader         bool          `json:"leader"`
	LeaderIdentity string        `json:"leaderIdentity"`
	Source         string        `json:"source"` // "allocator" (the leader's) or "cache" (a standby's view)
	Mode           config.Mode   `json:"mode"`
	Pools          []PoolView    `json:"pools"`
	Services       []ServiceView `json:"services"`
	PendingChange  bool          `json:"poolChangeHeldBack"`
	ConfigError    string        `json:"configError,omitempty"`
	// SpeakersError says why the speakers the mode needs are not deployed
	// or not up to date (the leader's view; empty on a standby).
	SpeakersError string `json:"speakersError,omitempty"`
	// ConfigDigest is the SHA-256 of the config file whose content this
	// answer reflects: the config in force; empty while a newer file is
	// being taken in.
	ConfigDigest string `json:"configDigest,omitempty"`
	// RejectedConfigDigest is the SHA-256 of the last file read when it was
	// rejected (ConfigError says why); the config in force is still
	// ConfigDigest's.
	RejectedConfigDigest string `json:"rejectedConfigDigest,omitempty"`
}

// PoolView is one pool's capacity and use. Capacities are decimal strings
// because an IPv6 pool can hold more than 2^64 addresses.
type PoolView struct {
	Name       string   `json:"name"`
	Addresses  []string `json:"addresses"`
	AutoAssign bool     `json:"autoAssign"`
	Capacity   string   `json:"capacity"`
	CapacityV4 string   `json:"capacityIPv4"`
	CapacityV6 string   `json:"capacityIPv6"`
	InUse      int      `json:"inUse"`
	InUseV4    int      `json:"inUseIPv4"`
	InUseV6    int      `json:"inUseIPv6"`
}

// ServiceView is one Service's addresses.
type ServiceView struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	IPs       []string `json:"ips"`
	Pools     []string `json:"pools"`
	Issues    string   `json:"issues,omitempty"`
}

// PoolChange is what GET and POST /v1/pool-change return.
type PoolChange struct {
	Pending  bool          `json:"pending"`
	Since    *time.Time    `json:"since,omitempty"`
	Services []ServiceView `json:"services"` // the Services that lose their addresses
	NewPools []string      `json:"newPools,omitempty"`
	Applied  bool          `json:"applied,omitempty"`
}

// Reallocation is what POST /v1/reallocate?service=ns/name returns.
type Reallocation struct {
	Service string   `json:"service"`
	OldIPs  []string `json:"oldIPs"`
	NewIPs  []string `json:"newIPs"`
	Pools   []string `json:"pools"`
	// Written says whether the Service's status showed the new IPs
	// before the call returned; if not, the write is still on its way.
	Written bool `json:"statusWritten"`
}

// BGPStatus is what a speaker's GET /v1/bgp returns.
type BGPStatus struct {
	Node      string       `json:"node"`
	Mode      config.Mode  `json:"mode"`
	Announces bool         `json:"announces"`
	ASN       string       `json:"bgp"`
	Peers     []PeerStatus `json:"peers"`
	Routes    []string     `json:"routes"`
	Error     string       `json:"error,omitempty"`
}

// PeerStatus is one BGP session of a speaker.
type PeerStatus struct {
	Address string    `json:"address"`
	ASN     uint32    `json:"asNumber"`
	State   string    `json:"state"`
	Since   time.Time `json:"since"`
	BFD     bool      `json:"bfd"`
	Routes  int       `json:"routesAdvertised"`
	// Problem says why a session is held down and what to do, if it is.
	Problem string `json:"problem,omitempty"`
}

// L2Status is what a speaker's GET /v1/l2 returns.
type L2Status struct {
	Owned      []string  `json:"owned"`
	Alive      []string  `json:"speakersAlive"`
	LastChange time.Time `json:"lastOwnershipChange"`
	Changes    int       `json:"ownershipChanges"`
	GARPs      int       `json:"announcementsSent"`
	Error      string    `json:"error,omitempty"` // why this speaker cannot take part in l2 mode
	// Missing are the interfaces asked for (l2-interfaces, or those with
	// the node's addresses) that the speaker cannot answer on, and why; it
	// answers on the others and tries these again every few seconds.
	Missing []L2Missing `json:"missingInterfaces,omitempty"`
	// Rejected counts the heartbeats this speaker refused, by reason:
	// unauthentic (no key of ours signed it), source (not from where that
	// node's heartbeats come from), replay (not newer than the last one
	// from that life), stale (not an answer to a recent challenge of
	// ours: held back, or replayed after a restart), clock (from a speaker
	// before heartbeat version 3, sent more than 30 s from our clock).
	Rejected map[string]uint64 `json:"heartbeatsRejected,omitempty"`
	// Skewed are the nodes whose heartbeats were sent more than 30 s from
	// this node's clock lately, with how far off they were. Ownership does
	// not depend on clocks, unless a peer runs a speaker from before
	// heartbeat version 3 (then Error says so).
	Skewed []string `json:"clockSkewed,omitempty"`
}

// L2Missing is an interface a speaker cannot answer ARP/NDP on.
type L2Missing struct {
	Interface string `json:"interface"`
	Problem   string `json:"problem"`
}

// Speakers is what the controller's GET /v1/speakers returns: each speaker
// pod's own report, gathered over the node network.
type Speakers struct {
	Mode config.Mode `json:"mode"`
	// Desired is how many speakers the DaemonSet wants (the nodes that
	// should run one), 0 when there is none.
	Desired  int           `json:"desired"`
	Speakers []SpeakerView `json:"speakers"`
}

// SpeakerView is one speaker pod. Error says why its report is missing
// (pod not running, not reachable); the pod's own problems are in BGP.Error.
type SpeakerView struct {
	Node    string     `json:"node"`
	Pod     string     `json:"pod"`
	Address string     `json:"address"`
	Ready   bool       `json:"ready"`
	Error   string     `json:"error,omitempty"`
	BGP     *BGPStatus `json:"bgp,omitempty"`
	L2      *L2Status  `json:"l2,omitempty"`
}

// ConfigDigest names a config file's content, as Snapshot.ConfigDigest
// does: the charm compares it with what it pushed.
func ConfigDigest(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// Nodes is what GET /v1/nodes returns: the cluster's nodes, and which of
// them run speakers (speaker-node-selector), for the Calico link's
// session-conflict check.
type Nodes struct {
	Nodes []NodeView `json:"nodes"`
}

// NodeView is one node's addresses (InternalIPs).
type NodeView struct {
	Name      string   `json:"name"`
	Addresses []string `json:"addresses"`
	Speaker   bool     `json:"speaker"`
	// Ready is the node's Ready condition; Unschedulable is set when it is
	// cordoned.
	Ready         bool `json:"ready"`
	Unschedulable bool `json:"unschedulable,omitempty"`
}

// ServiceFacts is what GET /v1/services returns for each Service
// calico-lb serves: what the verify action checks.
type ServiceFacts struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	IPs       []string `json:"ips"`   // in the Service's status
	Pools     []string `json:"pools"` // the pools of its addresses
	Issues    string   `json:"issues,omitempty"`
	// Waiting is why it has no address (the last Warning calico-lb gave).
	Waiting             string   `json:"waiting,omitempty"`
	TrafficPolicy       string   `json:"externalTrafficPolicy"`
	NodePorts           []int32  `json:"nodePorts"`
	HealthCheckNodePort int32    `json:"healthCheckNodePort,omitempty"`
	EndpointNodes       []string `json:"endpointNodes"` // nodes with a ready endpoint
}

// ServicesFacts is what GET /v1/services returns.
type ServicesFacts struct {
	Mode     config.Mode    `json:"mode"`
	Pools    []PoolView     `json:"pools"`
	Services []ServiceFacts `json:"services"`
	// LoadBalancerClass is the class calico-lb serves ("" for Services
	// without one).
	LoadBalancerClass string `json:"loadBalancerClass,omitempty"`
	// CalicoLoadBalancerPools are Calico's IPPools that allow LoadBalancer
	// use ("name (cidr)"), where calico-lb can see them; CalicoPoolsErr
	// says why they could not be read.
	CalicoLoadBalancerPools []string `json:"calicoLoadBalancerPools,omitempty"`
	CalicoPoolsErr          string   `json:"calicoPoolsError,omitempty"`
	// ForeignExternalIPs are spec.externalIPs inside the pools that
	// calico-lb did not write, as "ns/name: ip".
	ForeignExternalIPs []string `json:"foreignExternalIPs,omitempty"`
}

// FailoverRequest is the body of POST /v1/failover-test.
type FailoverRequest struct {
	Service string `json:"service"` // namespace/name
	// Mode is what fails: "pod" (its pods on the node leave), "speaker"
	// (the node's speaker dies), "node" (cordoned and drained, its speaker
	// stopped).
	Mode     string `json:"mode"`
	Graceful bool   `json:"graceful,omitempty"` // the speaker withdraws before it stops
	Force    bool   `json:"force,omitempty"`    // run even where the Service would have nowhere to go
	DryRun   bool   `json:"dryRun,omitempty"`   // say what would be done, do nothing
	Port     int32  `json:"port,omitempty"`     // the Service port to probe (default its first)
	// Probe is the probe agent (`calico-lb probe`) on a host outside the
	// cluster that times the outage, as http://host:port; empty: none.
	Probe string `json:"probe,omitempty"`
	// ProbeToken is what the probe agent wants as its bearer token.
	ProbeToken string `json:"probeToken,omitempty"`
	// TimeoutSeconds bounds the wait for the Service to answer again
	// (default 120); everything is restored after it too.
	TimeoutSeconds int `json:"timeoutSeconds,omitempty"`
}

// FailoverReport is what POST /v1/failover-test answers.
type FailoverReport struct {
	// Result is "planned" (a dry run), "refused", "passed" or "failed".
	Result  string `json:"result"`
	Reason  string `json:"reason,omitempty"`
	Mode    string `json:"mode"`
	Service string `json:"service"`
	VIP     string `json:"vip,omitempty"`
	// Announcement is how the VIP is announced: spine, l2 or calico.
	Announcement string `json:"announcement"`
	// AttractingBefore are the nodes attracting the VIP's traffic before
	// the fault, and how; Target the node the fault is injected on.
	AttractingBefore []string `json:"attractingBefore"`
	AttractedBy      string   `json:"attractedBy,omitempty"`
	Target           string   `json:"target,omitempty"`
	// Steps say what the test does (or would do), in order.
	Steps []string `json:"steps"`
	// Disrupts says what else the fault touches.
	Disrupts string `json:"disrupts,omitempty"`

	// What a run (not a dry run) did: its ID, when the fault was injected
	// (t = 0, on the controller's clock), each step as it happened
	// (Progress, for the action's log), and the timeline.
	ID       string          `json:"id,omitempty"`
	Injected time.Time       `json:"injected,omitzero"`
	Progress []string        `json:"progress,omitempty"`
	Timeline []TimelineEntry `json:"timeline,omitempty"`
	// AttractingAfter are the nodes attracting the traffic when the test
	// ended.
	AttractingAfter []string `json:"attractingAfter,omitempty"`
	// OutageMs is how long the probe got no answer from the VIP after the
	// fault (nil: no probe was named, or it saw nothing yet);
	// ConvergedMs when the speakers' last change for the VIP happened
	// (0: none was needed, the survivors announced it already).
	OutageMs    *int64 `json:"outageMs,omitempty"`
	ConvergedMs *int64 `json:"convergedMs,omitempty"`
	// RecoveredMs is when the test saw the Service recovered (or gave up)
	// and began to restore: the figures cover the time before it.
	RecoveredMs *int64 `json:"recoveredMs,omitempty"`
	// Probe says what the outage figure measures and its limits, or why
	// there is none.
	Probe string `json:"probe,omitempty"`
	// Restored says what was put back; Ends where the Service ended up.
	Restored []string `json:"restored,omitempty"`
	Ends     string   `json:"ends,omitempty"`
}

// TimelineEntry is one thing that happened during a failover test, TMs
// milliseconds after the fault (negative: before it), with its source.
type TimelineEntry struct {
	TMs    int64  `json:"tMs"`
	Event  string `json:"event"`
	Node   string `json:"node,omitempty"`
	Source string `json:"source"`
}

// SpeakerEvent is one thing a speaker did or saw, at a time on its node's
// clock (not the controller's: the nodes' clocks may differ).
type SpeakerEvent struct {
	At time.Time `json:"at"`
	// Kind is started, session (Subject the peer, Detail its new state),
	// bfd (the peer, on or off), announce or withdraw (Subject the
	// prefix), owner (Subject the IP, Detail taken or released) or garp
	// (the IP, a gratuitous ARP or unsolicited NA sent).
	Kind    string `json:"kind"`
	Subject string `json:"subject"`
	Detail  string `json:"detail,omitempty"`
}

// SpeakerJournal is what a speaker's GET /v1/journal returns: its events
// since a time, oldest first.
type SpeakerJournal struct {
	Node    string         `json:"node"`
	Started time.Time      `json:"started"`
	Events  []SpeakerEvent `json:"events"`
}

// SpeakerFail is the body of a speaker's POST /v1/fail: the failover test
// stops it (as a crash, or withdrawing first when Graceful) and holds it
// down until Until, when it comes back by itself if nobody resumed it.
type SpeakerFail struct {
	Graceful bool      `json:"graceful,omitempty"`
	Until    time.Time `json:"until"`
	// Test is the failover test's id: the speaker stops only while its
	// node carries that test's FailoverMark, until no later than the mark.
	Test string `json:"test"`
}

// FailoverMarkAnnotation is the annotation a failover test keeps on the
// node it fails while it runs (its value a FailoverMark): what it changed
// there, so that a controller that dies mid-test, or the next one, puts it
// back; so that a second test anywhere in the cluster is refused while one
// runs; and so that a speaker stops only on the node under test.
const FailoverMarkAnnotation = "calico-lb.io/failover-test"

// FailoverMark is FailoverMarkAnnotation's value.
type FailoverMark struct {
	ID       string    `json:"id"`
	Service  string    `json:"service"`
	Until    time.Time `json:"until"`
	Cordoned bool      `json:"cordoned"` // the test cordoned the node: uncordon it
}

// SpeakerAudience is the audience of the tokens the controller presents to
// node's speaker: a token taken on the wire to one node (or on it) is
// good for no other node, and not for the apiserver.
func SpeakerAudience(node string) string { return "calico-lb-speaker/" + node }

// SpeakerFailed is what POST /v1/fail answers just before the speaker
// stops: when, on its node's clock.
type SpeakerFailed struct {
	At   time.Time `json:"at"`
	Node string    `json:"node"`
}
