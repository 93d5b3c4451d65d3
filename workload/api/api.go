// Package api holds the types of the controller's local HTTP API, shared
// by the controller (which serves them) and the charm (which reads them)
// without the charm depending on the controller.
package api

import (
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
