package charm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/gruyaume/goops"

	"github.com/calico-lb/calico-lb/charm/calicolink"
	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/calico"
	"github.com/calico-lb/calico-lb/workload/config"
)

const (
	keyLink = "calico-link" // linkState, JSON
	// keyOurs lists the CIDRs calico-lb put into calico's option, so that
	// it removes only those.
	keyOurs = "calico-cidrs"
)

// linkHooks are the hooks in which the leader talks to the controller.
var linkHooks = []string{"install", "config-changed", "secret-changed", "leader-elected", "update-status", "upgrade-charm"}

// linkState is what the leader decided, kept in the peer relation.
type linkState struct {
	Mode      config.Mode `json:"mode,omitempty"`   // auto's choice
	Reason    string      `json:"reason,omitempty"` // why
	Option    string      `json:"option,omitempty"` // the calico option with our pools
	Conflicts []string    `json:"conflicts,omitempty"`
	// Peers fingerprints the spine peers the conflicts were found for:
	// other peers must be checked again.
	Peers string `json:"peers,omitempty"`
}

// link is this hook's Calico link outcome, for the status.
type link struct {
	state   linkState
	err     error               // reaching or reading calico
	outcome *calicolink.Outcome // what the sync found and did
	hint    string              // the command to run by hand, without credentials
}

// applyLink applies the stored decision: auto's mode and calico's option,
// or the block on conflicting spine peers. Every unit does this every
// hook, so a hook without the controller renders what the last one
// decided rather than flipping modes.
func (c *Charm) applyLink() {
	c.link = link{}
	if c.opts.JujuCredentials == "" {
		return // no link: the options alone decide
	}
	st, ok := c.peerData(keyLink)
	if !ok {
		return
	}
	if err := json.Unmarshal([]byte(st), &c.link.state); err != nil {
		return // an older or foreign value: the leader rewrites it
	}
	c.applyDecision()
}

// autoUndecided: auto, and the link found it cannot decide without
// guessing; the link's Reason names the choices.
func (c *Charm) autoUndecided() bool {
	st := c.link.state
	return c.opts.PeeringMode == "auto" && st.Mode == "" && st.Reason != ""
}

// applyDecision applies the link's decision to the config the hook
// renders: a new config, so that no one holding the one the options gave
// sees it change under them.
func (c *Charm) applyDecision() {
	st := c.link.state
	current := st.Peers == peersFingerprint(c.cfg.BGP)
	c.linkBlocked = current && (len(st.Conflicts) > 0 && c.opts.PeeringMode == string(config.ModeSpine) || c.autoUndecided())
	decided := *c.cfg
	if c.opts.PeeringMode == "auto" && st.Mode != "" {
		decided.Mode, c.modeReason = st.Mode, st.Reason
	}
	switch st.Option {
	case calico.OptExternalIPs:
		decided.ServiceIPOption = config.ServiceIPExternal
	case calico.OptLoadBalancerIPs:
		decided.ServiceIPOption = config.ServiceIPLoadBalancer
	}
	c.cfg = &decided
}

// calicoLink is the leader's work with the controller: read calico, check
// for conflicting sessions, let auto decide, and keep calico's service-IP
// option in line with the pools.
func (c *Charm) calicoLink() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := c.runLink(ctx, false)
	c.link.err = err
	if err != nil {
		return // status reports it; the workload keeps going
	}
	if c.opts.JujuCredentials == "" {
		return // no link, nothing decided to keep
	}
	c.link.state = st
	c.applyDecision()
	c.keepDecision(st)
}

// runLink does the link's work (with dryRun, changes nothing) and returns
// the decision to keep.
func (c *Charm) runLink(ctx context.Context, dryRun bool) (linkState, error) {
	uri := c.opts.JujuCredentials
	if uri == "" {
		if c.cfg.Mode == config.ModeCalico {
			c.link.hint = c.noLinkCommand()
		}
		return linkState{}, nil
	}
	l, err := c.openLink(ctx)
	if err != nil {
		return linkState{}, err
	}
	defer l.Client.Close()
	o, err := l.Sync(ctx, calicolink.Request{Config: c.cfg, PeeringMode: c.opts.PeeringMode,
		OptionSetting: c.opts.CalicoServiceIPOption, Topology: c.topology(),
		InForce: c.inForce(), Memory: peerMemory{c}, DryRun: dryRun})
	c.link.outcome = &o
	if o.Read == nil {
		return linkState{}, err // calico could not be read: nothing decided
	}
	a := o.Assessment
	st := linkState{Peers: peersFingerprint(c.cfg.BGP), Option: a.Option}
	for _, cf := range a.Conflicts {
		st.Conflicts = append(st.Conflicts, cf.String())
	}
	if c.opts.PeeringMode == "auto" {
		st.Mode, st.Reason = a.Decision.Mode, a.Decision.Reason
	}
	return st, err
}

// unlinkCalico takes the CIDRs calico-lb added out of calico's option when
// the application goes away, leaving the operator's. It never fails the
// removal: an unreachable controller is logged, and the operator told what
// to remove.
func (c *Charm) unlinkCalico() {
	if _, err := c.readOptions(); err != nil || c.opts.JujuCredentials == "" {
		return
	}
	ours := c.ours()
	if len(ours) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := func() error {
		l, _, opt, err := c.openCalico(ctx)
		if err != nil {
			return err
		}
		defer l.Client.Close()
		ch, err := l.SetOption(ctx, opt, nil, ours, false)
		if err == nil {
			goops.LogInfof("removed calico-lb's CIDRs from calico %s: %s", opt, strings.Join(ch.Removed, " "))
		}
		return err
	}()
	if err != nil {
		goops.LogWarningf("could not remove calico-lb's CIDRs (%s) from calico's service-IP option: %v; remove them by hand with juju config %s", strings.Join(ours, " "), err, c.opts.CalicoApplication)
	}
}

// noLinkCommand is what the operator runs without the link.
func (c *Charm) noLinkCommand() string {
	opt := calico.OptLoadBalancerIPs
	if c.opts.CalicoServiceIPOption == config.ServiceIPExternal {
		opt = calico.OptExternalIPs
	}
	return calicolink.Command(c.opts.CalicoApplication, opt, calico.PoolCIDRs(c.cfg.Pools))
}

// openLink reaches calico's model with the juju-credentials secret.
func (c *Charm) openLink(ctx context.Context) (*calicolink.Link, error) {
	uri := c.opts.JujuCredentials
	content, err := goops.GetSecretByID(uri, false, true)
	if err != nil {
		return nil, &calicolink.Error{Kind: calicolink.Other, Msg: fmt.Sprintf("juju-credentials: cannot read secret %s (grant it with `juju grant-secret <secret> calico-lb`): %v", uri, err)}
	}
	creds, err := calicolink.CredentialsFromSecret(content)
	if err != nil {
		return nil, err
	}
	model := c.opts.CalicoModel
	if model == "" {
		return nil, &calicolink.Error{Kind: calicolink.NoModel, Msg: "calico-model is not set: set it to the UUID of calico's model (`juju show-model <model>`, model-uuid)"}
	}
	if err := creds.Pinned(model, c.opts.CalicoApplication); err != nil {
		return nil, err
	}
	cl, err := c.Dial(ctx, creds, model, calicolink.DefaultTimeouts)
	if err != nil {
		return nil, err
	}
	return &calicolink.Link{Client: cl, App: c.opts.CalicoApplication}, nil
}

// openCalico opens the link, reads calico's options and picks the option
// for the pools. The caller closes the link.
func (c *Charm) openCalico(ctx context.Context) (*calicolink.Link, *calico.Config, string, error) {
	l, err := c.openLink(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	read, _, err := l.Read(ctx)
	if err == nil {
		var opt string
		if opt, err = calicolink.Option(c.opts.CalicoServiceIPOption, read); err == nil {
			return l, read, opt, nil
		}
	}
	l.Client.Close()
	return nil, nil, "", err
}

// keepDecision records the leader's decision in the peer relation.
func (c *Charm) keepDecision(st linkState) {
	b, err := json.Marshal(st)
	if err != nil {
		return
	}
	if err := c.setPeerData(map[string]string{keyLink: string(b)}); err != nil {
		// Other units follow the leader's decision from there; they
		// decide for themselves until it is written (the next hook).
		goops.LogWarningf("the Calico link's decision is not kept for the other units: %v", err)
	}
}

// inForce asks the workload which pools it has in force (a held-back
// pool change keeps the old ones) and, outside calico mode, whether its
// speakers announce them. A workload that does not answer leaves it
// unknown, and the link then takes nothing out of calico.
func (c *Charm) inForce() calicolink.InForce {
	var snap api.Snapshot
	if err := c.get("/v1/allocations", &snap); err != nil {
		return calicolink.InForce{Why: "the workload does not answer, so the pools it has in force are not known"}
	}
	in := calicolink.InForce{Known: true}
	// The speakers are asked only while a hand-over is pending (calico
	// still has CIDRs calico-lb put there, outside calico mode): each ask
	// sends a token over the node network to every speaker, which a hook
	// must not do for nothing.
	if c.cfg.Mode != config.ModeCalico && len(c.ours()) > 0 {
		var sp api.Speakers
		if err := c.get("/v1/speakers", &sp); err != nil {
			in.NotAnnouncing = fmt.Sprintf("the speakers' state cannot be read (%v)", err)
		} else {
			in.Announcing, in.NotAnnouncing = speakersAnnounce(sp, c.cfg.Mode)
		}
	}
	for _, p := range snap.Pools {
		for _, a := range p.Addresses {
			for _, cidr := range cidrsOf(a) {
				if !slices.Contains(in.CIDRs, cidr) {
					in.CIDRs = append(in.CIDRs, cidr)
				}
			}
		}
	}
	return in
}

// cidrsOf is the exact CIDR cover of a pool's address string (a CIDR or
// a range), through the pool parser.
func cidrsOf(addr string) []string {
	o := config.DefaultOptions()
	o.Pools, o.PeeringMode = addr, string(config.ModeCalico) // a mode of its own: auto alone decides nothing
	o.AvoidBuggyIPs = false
	cfg, _, err := config.FromOptions(o)
	if err != nil {
		return nil
	}
	return calico.PoolCIDRs(cfg.Pools)
}

// topology asks the workload which nodes exist and run speakers; unknown
// (the workload is not up yet) makes the conflict check conservative. So
// does a selector that matches no node yet: the first node that joins
// would open the second session, and the check runs again only in a hook.
func (c *Charm) topology() calico.Topology {
	var nodes api.Nodes
	if err := c.get("/v1/nodes", &nodes); err != nil {
		return calico.Topology{}
	}
	var t calico.Topology
	for _, n := range nodes.Nodes {
		for _, a := range n.Addresses {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				continue
			}
			t.Cluster = append(t.Cluster, ip)
			if n.Speaker {
				t.Speakers = append(t.Speakers, ip)
			}
		}
	}
	return t
}

func peersFingerprint(b config.BGP) string {
	data, _ := json.Marshal(struct {
		P []config.Peer
		S []config.SubnetPeers
	}{b.Peers, b.SubnetPeers})
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:8])
}

// linkStatus is the status the link imposes, if any: blocked for
// conflicting spine peers and for link failures an operator must fix,
// waiting for a controller that does not answer.
func (c *Charm) linkStatus() (name, msg string, ok bool) {
	if c.linkBlocked && c.autoUndecided() {
		return "blocked", "peering-mode=auto cannot decide: " + c.link.state.Reason, true
	}
	if c.linkBlocked {
		st := c.link.state
		msg := st.Conflicts[0]
		if len(st.Conflicts) > 1 {
			msg += fmt.Sprintf(" (and %d more)", len(st.Conflicts)-1)
		}
		return "blocked", msg, true
	}
	if c.link.err != nil {
		var le *calicolink.Error
		if errors.As(c.link.err, &le) && (le.Kind == calicolink.Unreachable || le.Kind == calicolink.TimedOut) {
			return "waiting", "calico link: " + le.Msg, true
		}
		return "blocked", "calico link: " + c.link.err.Error(), true
	}
	if o := c.link.outcome; o != nil && o.HandOver {
		return "maintenance", fmt.Sprintf("%s mode: calico still announces %s; %s", c.cfg.Mode, strings.Join(o.Kept, " "), o.KeptWhy), true
	}
	return "", "", false
}
