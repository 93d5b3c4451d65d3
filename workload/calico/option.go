package calico

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/calico-lb/calico-lb/workload/config"
)

// PoolCIDRs is the minimal set of CIDRs that covers the pools exactly: each
// range split into the fewest aligned blocks, none wider than the range
// (Calico must not advertise addresses that are not ours).
func PoolCIDRs(pools []config.Pool) []string {
	var out []string
	for _, p := range pools {
		for _, r := range p.Addresses {
			for _, c := range r.CIDRs() {
				if s := c.String(); !slices.Contains(out, s) {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

// Change is what Merge decided for calico's service-IP option.
type Change struct {
	Before  string   // the option's value before
	Value   string   // the option's new value (space-separated CIDRs)
	Added   []string // our CIDRs not there before
	Removed []string // CIDRs we had added and no longer need
	// Ours is what calico-lb now has in the option: remember it, so that
	// the next Merge removes only those.
	Ours []string
}

// Changed reports whether the option must be written.
func (c Change) Changed() bool { return len(c.Added) > 0 || len(c.Removed) > 0 }

// Merge computes calico's option value: what is there now, minus the CIDRs
// calico-lb added before and no longer wants, plus the ones it wants. CIDRs
// the operator put there stay, in their order, even where they equal ours
// (then they were the operator's first and stay theirs). Comparison is by
// prefix, so "10.0.0.0/24" and "10.0.0.0/024" are one.
func Merge(current []string, want []string, addedBefore []string) Change {
	norm := func(s string) string {
		if p, err := netip.ParsePrefix(s); err == nil {
			return p.Masked().String()
		}
		return s
	}
	has := func(list []string, s string) bool {
		return slices.ContainsFunc(list, func(x string) bool { return norm(x) == norm(s) })
	}
	ch := Change{Before: strings.Join(current, " ")}
	var value []string
	for _, c := range current {
		if has(addedBefore, c) && !has(want, c) {
			ch.Removed = append(ch.Removed, c)
			continue
		}
		if !has(value, c) {
			value = append(value, c)
		}
	}
	for _, w := range want {
		switch {
		case !has(value, w):
			value = append(value, w)
			ch.Added = append(ch.Added, w)
			ch.Ours = append(ch.Ours, w)
		case has(addedBefore, w):
			ch.Ours = append(ch.Ours, w) // ours from before, still wanted
		}
	}
	ch.Value = strings.Join(value, " ")
	return ch
}
