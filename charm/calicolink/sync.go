package calicolink

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/calico-lb/calico-lb/workload/calico"
	"github.com/calico-lb/calico-lb/workload/config"
)

// The one flow of the link, for the charm's hooks, its sync-calico action
// and calico-lb-juju alike: read calico, assess conflicts and the mode,
// work out the option's new value with what the workload still has in
// force, write it, and remember what calico-lb added. The rule it keeps is
// that nothing ever takes out of calico a CIDR that covers an address a
// Service still holds.

// Request is one run of the link.
type Request struct {
	Config        *config.Config // calico-lb's config: pools, spine peers, mode
	PeeringMode   string         // the peering-mode option ("auto", ...)
	OptionSetting string         // the calico-service-ip-option option
	Topology      calico.Topology
	// InForce is what the workload has in force, as far as the caller can
	// tell: a held-back pool change keeps the old pools in force, and
	// their Services must keep their routes.
	InForce InForce
	// Memory keeps the CIDRs calico-lb added to calico's option before.
	Memory Memory
	DryRun bool
}

// InForce is the pools the workload has in force, and whether its
// speakers announce them.
type InForce struct {
	Known bool
	CIDRs []string // the pools' CIDRs, when Known
	Why   string   // why it is not known, for the operator
	// Announcing: the speakers announce every Service's IP in the mode the
	// link assessed (spine or l2). Until they do, a switch away from calico
	// mode keeps calico-lb's CIDRs in calico's option, so that Calico
	// announces them until the new announcer has taken over
	// (make-before-break); NotAnnouncing says why, for the operator.
	Announcing    bool
	NotAnnouncing string
}

// Memory keeps the CIDRs calico-lb put into calico's option, so that it
// removes only those: the charm keeps them in its peer relation,
// calico-lb-juju in a file of the operator's.
type Memory interface {
	Added() []string
	Remember(cidrs []string) error
	// Ready says why it cannot remember now (nil: it can). Calico's
	// option is not written while it cannot: CIDRs added and then
	// forgotten would be taken for the operator's and never removed.
	Ready() error
}

// Outcome is what a run found and did.
type Outcome struct {
	Read       *calico.Config
	Assessment Assessment
	// Change is what the option went (or, dry, would go) through; nil when
	// nothing of calico-lb's goes into calico.
	Change *calico.Change
	// Kept lists CIDRs calico-lb added before and no longer asks for, left
	// in calico because the workload may still have them in force (KeptWhy).
	Kept    []string
	KeptWhy string
	// HandOver: Kept waits for the speakers to announce (a switch away
	// from calico mode); run the link again once they do.
	HandOver bool
}

// Sync runs the link. On an error the Outcome holds what was found.
func (l *Link) Sync(ctx context.Context, req Request) (Outcome, error) {
	read, _, err := l.Read(ctx)
	if err != nil {
		return Outcome{}, err
	}
	a := Assess(req.Config, req.PeeringMode, req.OptionSetting, read, req.Topology)
	out := Outcome{Read: read, Assessment: a}
	if a.Mode == "" {
		return out, nil // auto cannot decide: calico-lb is blocked, calico stays as it is
	}
	if a.OptionErr != nil {
		if a.Mode == config.ModeCalico {
			return out, a.OptionErr
		}
		return out, nil // nothing of calico-lb's to put into calico
	}
	before := req.Memory.Added()
	want := slices.Clone(a.Want)
	if a.Mode != config.ModeCalico && !req.InForce.Announcing && len(before) > 0 {
		out.Kept, out.KeptWhy = slices.Clone(before), fmt.Sprintf("Calico keeps announcing them until the %s speakers do: %s", a.Mode, req.InForce.NotAnnouncing)
		out.HandOver = true
		want = union(want, out.Kept)
	}
	if a.Mode == config.ModeCalico {
		if req.InForce.Known {
			want = union(want, req.InForce.CIDRs)
		} else {
			for _, c := range before {
				if !slices.Contains(want, c) {
					out.Kept = append(out.Kept, c)
				}
			}
			out.KeptWhy = req.InForce.Why
			want = union(want, out.Kept)
		}
	}
	// What would change, first: nothing is written that cannot be
	// remembered, since CIDRs added and then forgotten would be taken for
	// the operator's and never removed.
	ch, err := l.SetOption(ctx, a.Option, want, before, true)
	out.Change = &ch
	if err != nil || req.DryRun || (!ch.Changed() && slices.Equal(ch.Ours, before)) {
		return out, err
	}
	if err := req.Memory.Ready(); err != nil {
		return out, fmt.Errorf("calico's %s is not written yet: %w", a.Option, err)
	}
	// Remembered before the write, with what it may remove still in: a
	// write that fails then leaves nothing unaccounted for.
	during := union(slices.Clone(before), ch.Ours)
	if !slices.Equal(during, before) {
		if err := req.Memory.Remember(during); err != nil {
			return out, fmt.Errorf("calico's %s is not written: what calico-lb adds cannot be remembered: %w", a.Option, err)
		}
	}
	ch, err = l.SetOption(ctx, a.Option, want, before, false)
	out.Change = &ch
	if err != nil {
		return out, err
	}
	if !slices.Equal(ch.Ours, during) {
		if err := req.Memory.Remember(ch.Ours); err != nil {
			return out, fmt.Errorf("remember the CIDRs calico-lb added: %w", err)
		}
	}
	return out, nil
}

func union(a, b []string) []string {
	for _, x := range b {
		if !slices.Contains(a, x) {
			a = append(a, x)
		}
	}
	return a
}

// Summary says in one line what the run did to calico's option.
func (o Outcome) Summary(dry bool) string {
	ch := o.Change
	if ch == nil {
		return fmt.Sprintf("%s mode: nothing of calico-lb's goes into calico", o.Assessment.Mode)
	}
	opt := o.Assessment.Option
	var s string
	switch {
	case !ch.Changed():
		s = fmt.Sprintf("calico %s is already in line: %q", opt, ch.Value)
	case dry:
		s = fmt.Sprintf("would set calico %s from %q to %q (dry run: nothing changed)", opt, ch.Before, ch.Value)
	default:
		s = fmt.Sprintf("set calico %s from %q to %q", opt, ch.Before, ch.Value)
	}
	if len(o.Kept) > 0 {
		s += fmt.Sprintf("; kept %s, which calico-lb added before, because %s", strings.Join(o.Kept, " "), o.KeptWhy)
	}
	return s
}
