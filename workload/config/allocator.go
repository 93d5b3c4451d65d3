package config

import (
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/calico-lb/calico-lb/workload/allocator"
)

// selector adapts a Kubernetes label selector to allocator.Selector, which
// keeps the allocator free of Kubernetes packages.
type selector struct{ s labels.Selector }

func (s selector) Matches(l map[string]string) bool { return s.s.Matches(labels.Set(l)) }
func (s selector) String() string                   { return s.s.String() }

// AllocatorPools converts the pools for the allocator.
func (c *Config) AllocatorPools() ([]allocator.Pool, error) {
	out := make([]allocator.Pool, 0, len(c.Pools))
	for _, p := range c.Pools {
		ap := allocator.Pool{
			Name:                   p.Name,
			Ranges:                 slices.Clone(p.Addresses),
			AutoAssign:             p.AutoAssign,
			AvoidBuggyIPs:          p.AvoidBuggyIPs,
			SharedAcrossNamespaces: p.SharedAcrossNamespaces,
			Namespaces:             slices.Clone(p.Namespaces),
			Priority:               p.Priority,
		}
		if p.ServiceSelector != "" {
			sel, err := labels.Parse(p.ServiceSelector)
			if err != nil {
				return nil, fmt.Errorf("pool %q: service-selector: %w", p.Name, err)
			}
			ap.Selector = selector{sel}
		}
		out = append(out, ap)
	}
	return out, nil
}

// NewAllocator returns an allocator serving the config's pools.
func (c *Config) NewAllocator() (*allocator.Allocator, error) {
	pools, err := c.AllocatorPools()
	if err != nil {
		return nil, err
	}
	return allocator.New(pools)
}
