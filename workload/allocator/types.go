// Package allocator hands out LoadBalancer IPs from pools. It is pure Go with
// no Kubernetes dependency: the controller turns Services into Requests and
// writes the resulting Assignments back.
//
// Every operation is independent of how many addresses are in use: free
// addresses live in a bitmap trie per range (trie.go), owners in maps keyed
// by address and by Service, and shared IPs in an index keyed by sharing key.
package allocator

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/calico-lb/calico-lb/workload/iprange"
)

// Family is an IP family.
type Family uint8

// The two IP families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// FamilyOf returns the family of a.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// FamilyPolicy mirrors a Service's spec.ipFamilyPolicy.
type FamilyPolicy uint8

// The Kubernetes IP family policies.
const (
	SingleStack FamilyPolicy = iota
	PreferDualStack
	RequireDualStack
)

func (p FamilyPolicy) String() string {
	switch p {
	case PreferDualStack:
		return "PreferDualStack"
	case RequireDualStack:
		return "RequireDualStack"
	}
	return "SingleStack"
}

// ServiceKey names a Service.
type ServiceKey struct{ Namespace, Name string }

func (k ServiceKey) String() string { return k.Namespace + "/" + k.Name }

// Port is a (protocol, port) pair a Service exposes; two Services may share
// an IP only if their pairs are disjoint.
type Port struct {
	Protocol string // TCP, UDP or SCTP
	Port     int32
}

// Selector matches a Service's labels. The config package adapts Kubernetes
// label selectors to it, which keeps this package free of Kubernetes.
type Selector interface {
	Matches(labels map[string]string) bool
	String() string
}

// Pool is one named set of ranges and the rules for using it.
type Pool struct {
	Name          string
	Ranges        []iprange.Range
	AutoAssign    bool     // false: only explicit requests (by pool or IP)
	AvoidBuggyIPs bool     // never hand out IPv4 .0 / .255, nor an IPv6 prefix's all-zeros address
	Namespaces    []string // non-empty: only Services in these namespaces
	Selector      Selector // non-nil: only Services whose labels match
	// Priority orders pools for automatic allocation: lower values first,
	// 0 (unset) after all others; see sortPools for ties.
	Priority int
	// SharedAcrossNamespaces lets Services of different namespaces share
	// an address of this pool under one allow-shared-ip key. Off, a key is
	// the namespace's own: another tenant cannot join, nor learn it.
	SharedAcrossNamespaces bool
}

// restricted reports whether the pool limits which Services may use it.
func (p *Pool) restricted() bool { return len(p.Namespaces) > 0 || p.Selector != nil }

// admits reports whether a Service may use the pool, and if not, why.
func (p *Pool) admits(namespace string, labels map[string]string) (bool, string) {
	if len(p.Namespaces) > 0 {
		ok := false
		for _, ns := range p.Namespaces {
			if ns == namespace {
				ok = true
				break
			}
		}
		if !ok {
			return false, fmt.Sprintf("pool %q serves only namespaces %s, not %q", p.Name, strings.Join(p.Namespaces, ", "), namespace)
		}
	}
	if p.Selector != nil && !p.Selector.Matches(labels) {
		return false, fmt.Sprintf("pool %q serves only Services matching %q", p.Name, p.Selector.String())
	}
	return true, ""
}

// Request is what a Service asks for.
type Request struct {
	Service ServiceKey
	Labels  map[string]string
	// Families are the Service's spec.ipFamilies, primary first.
	Families []Family
	Policy   FamilyPolicy
	// IPs are explicitly requested addresses, at most one per family.
	IPs []netip.Addr
	// Pool is an explicitly requested pool name.
	Pool string
	// SharingKey allows sharing an IP with Services of the same key.
	SharingKey string
	// BackendKey must match too: for externalTrafficPolicy Local it is the
	// Service's selector, so traffic reaches the same pods through any
	// node; for Cluster it is empty.
	BackendKey string
	Ports      []Port
}

// Assignment is the set of addresses a Service holds: at most one per family,
// primary family first.
//
// It does not name the Service: callers know which Service they asked about,
// and listings pair it with the Service (Held). Keeping it small keeps
// returning it cheap.
type Assignment struct {
	IPs    [2]netip.Addr // zero Addr: no address
	Issues Issue         // why the assignment would not be made today
	pools  [2]*pool      // the pool of each address (see Pools)
}

// Held is a Service and its assignment, as listings return them.
type Held struct {
	Service ServiceKey
	Assignment
}

func (h Held) String() string { return h.Service.String() + ": " + h.Assignment.String() }

// Pools returns the name of the pool of each address, in the order of IPs.
func (a Assignment) Pools() [2]string {
	var names [2]string
	for i, p := range a.pools {
		if p != nil {
			names[i] = p.Name
		}
	}
	return names
}

// List returns the addresses, primary first.
func (a Assignment) List() []netip.Addr {
	var out []netip.Addr
	for _, ip := range a.IPs {
		if ip.IsValid() {
			out = append(out, ip)
		}
	}
	return out
}

// Len returns the number of addresses.
func (a Assignment) Len() int {
	n := 0
	for _, ip := range a.IPs {
		if ip.IsValid() {
			n++
		}
	}
	return n
}

// Of returns the address of family f, if any.
func (a Assignment) Of(f Family) (netip.Addr, bool) {
	for _, ip := range a.IPs {
		if ip.IsValid() && FamilyOf(ip) == f {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// Pool returns the pool of the first address.
func (a Assignment) Pool() string { return a.Pools()[0] }

func (a Assignment) String() string {
	var parts []string
	pools := a.Pools()
	for i, ip := range a.IPs {
		if ip.IsValid() {
			parts = append(parts, ip.String()+" ("+pools[i]+")")
		}
	}
	return strings.Join(parts, ", ")
}

// Issue flags an adopted assignment that is kept but would not be made under
// the current pools; verify reports it and reallocate fixes it.
type Issue uint8

// Issues.
const (
	// IssueBuggyIP: an address avoid-buggy-ips keeps back (IPv4 .0/.255, an
	// IPv6 prefix's Subnet-Router anycast address) in a pool that now
	// avoids them.
	IssueBuggyIP Issue = 1 << iota
	// IssueNotAdmitted: the pool no longer admits the Service (namespaces or selector).
	IssueNotAdmitted
	// IssueSharedAcrossNamespaces: the Service shares an address with a
	// Service of another namespace in a pool that does not allow it (a
	// share made before sharing was held to one namespace, restored
	// as it was).
	IssueSharedAcrossNamespaces
)

func (i Issue) String() string {
	var s []string
	if i&IssueBuggyIP != 0 {
		s = append(s, "buggy IP (.0 or .255, or IPv6 subnet-router anycast) in a pool that avoids them")
	}
	if i&IssueNotAdmitted != 0 {
		s = append(s, "pool no longer admits the Service")
	}
	if i&IssueSharedAcrossNamespaces != 0 {
		s = append(s, "shares its address with a Service of another namespace, which the pool does not allow: reallocate it")
	}
	return strings.Join(s, "; ")
}

// Reason classifies an allocation failure; the controller puts it in the
// Warning event.
type Reason string

// Reasons.
const (
	ReasonInvalidRequest Reason = "InvalidRequest"
	ReasonUnknownPool    Reason = "UnknownPool"
	ReasonNotAdmitted    Reason = "PoolNotAdmitted"
	ReasonNoPool         Reason = "NoUsablePool"
	ReasonExhausted      Reason = "PoolExhausted"
	ReasonIPInUse        Reason = "IPInUse"
	ReasonOutsidePools   Reason = "IPOutsidePools"
	ReasonFamilyMismatch Reason = "FamilyMismatch"
	ReasonBuggyIP        Reason = "BuggyIP"
	ReasonExplicit       Reason = "ExplicitRequest"
	ReasonUnknownService Reason = "UnknownService"
)

// Error is an allocation failure with a reason and a message that says what
// to change.
type Error struct {
	Reason Reason
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

func errorf(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Msg: fmt.Sprintf(format, args...)}
}
