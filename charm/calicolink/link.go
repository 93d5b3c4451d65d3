package calicolink

import (
	"context"
	"fmt"
	"strings"

	"github.com/calico-lb/calico-lb/workload/calico"
	"github.com/calico-lb/calico-lb/workload/config"
)

// Link is calico-lb's view of the calico application over one connection.
type Link struct {
	Client Client
	App    string // the calico application's name
}

// Read returns calico's BGP options.
func (l *Link) Read(ctx context.Context) (*calico.Config, map[string]any, error) {
	values, err := l.Client.Config(ctx, l.App)
	if err != nil {
		return nil, nil, err
	}
	c, err := calico.Parse(values)
	if err != nil {
		return nil, values, fmt.Errorf("%s's config: %w", l.App, err)
	}
	return c, values, nil
}

// Option is the calico option that receives the pools, from the
// calico-service-ip-option setting ("auto", "loadbalancer", "external")
// and what this calico has.
func Option(setting string, c *calico.Config) (string, error) {
	switch setting {
	case "", "auto":
		if c.Has(calico.OptLoadBalancerIPs) {
			return calico.OptLoadBalancerIPs, nil
		}
		if c.Has(calico.OptExternalIPs) {
			return calico.OptExternalIPs, nil
		}
		return "", &Error{LacksOption, "calico has neither bgp-service-loadbalancer-ips nor bgp-service-external-ips; upgrade the calico charm"}
	case config.ServiceIPLoadBalancer:
		if !c.Has(calico.OptLoadBalancerIPs) {
			return "", &Error{LacksOption, "this calico charm has no bgp-service-loadbalancer-ips option (older revision): upgrade it, or set calico-service-ip-option=external"}
		}
		return calico.OptLoadBalancerIPs, nil
	case config.ServiceIPExternal:
		if !c.Has(calico.OptExternalIPs) {
			return "", &Error{LacksOption, "this calico charm has no bgp-service-external-ips option"}
		}
		return calico.OptExternalIPs, nil
	}
	return "", fmt.Errorf("calico-service-ip-option %q: use auto, loadbalancer or external", setting)
}

// SetOption makes option hold our CIDRs (want) and the operator's,
// removing only the ones in addedBefore that are no longer wanted. It
// reads the option right before writing (SetConfigs is last-writer-wins)
// and writes only when something changes, so a second call writes
// nothing. With dryRun it only reports. Sync decides want; the one other
// caller is the charm's removal, which takes every CIDR of its own out.
func (l *Link) SetOption(ctx context.Context, option string, want, addedBefore []string, dryRun bool) (calico.Change, error) {
	values, err := l.Client.Config(ctx, l.App)
	if err != nil {
		return calico.Change{}, err
	}
	cur, ok := values[option]
	if !ok {
		return calico.Change{}, &Error{LacksOption, fmt.Sprintf("%s has no option %s", l.App, option)}
	}
	s, _ := cur.(string)
	ch := calico.Merge(strings.Fields(s), want, addedBefore)
	if ch.Changed() && !dryRun {
		if err := l.Client.SetConfig(ctx, l.App, map[string]string{option: ch.Value}); err != nil {
			return ch, err
		}
	}
	return ch, nil
}

// Command is what an operator runs to do the sync by hand (no credentials
// given to calico-lb): without them calico-lb cannot read the option, so
// the command reads it itself and sets it to what it holds plus our CIDRs,
// each once; CIDRs the operator put there stay.
func Command(app, option string, want []string) string {
	return fmt.Sprintf(`juju config %s %s="$(printf '%%s\n' $(juju config %s %s) %s | sort -u | xargs)"`, app, option, app, option, strings.Join(want, " "))
}

// Assessment is what the link concludes from calico-lb's config and
// calico's: the conflicting sessions, the mode, the calico option for the
// pools and the CIDRs that belong there.
type Assessment struct {
	Conflicts []calico.Conflict
	// Decision is auto's choice (whatever peering-mode says).
	Decision calico.Decision
	// Mode is the mode in force: peering-mode, or auto's choice.
	Mode config.Mode
	// Option is the calico option for the pools ("" when calico has none
	// that fits: OptionErr says why).
	Option    string
	OptionErr error
	// Want is what calico-lb needs in Option: the pools' CIDRs in calico
	// mode, nothing otherwise (so that a switch away removes ours).
	Want []string
}

// Assess applies the conflict rule, auto's decision and the option choice.
// peeringMode and optionSetting are calico-lb's options; cfg its config
// (pools, spine peers); topo what is known of the nodes.
func Assess(cfg *config.Config, peeringMode, optionSetting string, read *calico.Config, topo calico.Topology) Assessment {
	a := Assessment{Conflicts: calico.Conflicts(cfg.BGP, read, topo), Mode: cfg.Mode}
	a.Decision = calico.Decide(cfg.BGP, a.Conflicts, read)
	if peeringMode == "auto" {
		a.Mode = a.Decision.Mode
	}
	a.Option, a.OptionErr = Option(optionSetting, read)
	if a.Mode == config.ModeCalico {
		a.Want = calico.PoolCIDRs(cfg.Pools)
	}
	return a
}
