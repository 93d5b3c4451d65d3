package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Options are the charm's config options (config.yaml), as Juju passes them.
type Options struct {
	Pools                 string
	AvoidBuggyIPs         bool
	PeeringMode           string
	SpinePeers            string
	SubnetSpinePeers      string
	ASNumber              int
	SubnetASNumbers       string
	SpeakerNodeSelector   string
	L2Interfaces          string
	CalicoApplication     string
	CalicoModel           string
	JujuCredentials       string // secret URI
	BGPPasswords          string // secret URI
	CalicoServiceIPOption string
	LoadBalancerClass     string
	LogLevel              string
}

// DefaultOptions are the defaults of config.yaml.
func DefaultOptions() Options {
	return Options{
		AvoidBuggyIPs:         true,
		PeeringMode:           "auto",
		SpinePeers:            "[]",
		SubnetSpinePeers:      "{}",
		ASNumber:              DefaultASNumber,
		SubnetASNumbers:       "{}",
		CalicoApplication:     "calico",
		CalicoServiceIPOption: "auto",
		LogLevel:              DefaultLogLevel,
	}
}

// Resolved is what FromOptions decided beyond the file itself.
type Resolved struct {
	// ModeReason says why auto picked the mode ("" when it was not auto),
	// for the unit's status line.
	ModeReason string
}

var (
	appName   = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]*[a-z][a-z0-9]*)*$`)
	modelUUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// FromOptions validates the charm's options and builds the workload config
// from them. It reports every problem, each naming the option, the value and
// the fix.
func FromOptions(o Options) (*Config, Resolved, error) {
	d := &decoder{options: true}
	c := Default()
	var res Resolved

	c.Pools = d.pools("pools", o.Pools, o.AvoidBuggyIPs)
	c.BGP.Peers = d.peers(d.parseYAML("spine-peers", o.SpinePeers), "spine-peers")
	c.BGP.SubnetPeers = d.subnetPeers(d.parseYAML("subnet-spine-peers", o.SubnetSpinePeers), "subnet-spine-peers")
	c.BGP.SubnetASNumbers = d.subnetAS(d.parseYAML("subnet-as-numbers", o.SubnetASNumbers), "subnet-as-numbers")
	if msg := badAS(int64(o.ASNumber)); msg != "" {
		d.errorf("as-number", nil, "%s", msg)
	} else {
		c.BGP.ASNumber = uint32(o.ASNumber)
	}
	c.Speakers.NodeSelector = strings.TrimSpace(o.SpeakerNodeSelector)
	c.L2.Interfaces = splitList(o.L2Interfaces)
	c.LoadBalancerClass = strings.TrimSpace(o.LoadBalancerClass)
	c.LogLevel = strings.TrimSpace(o.LogLevel)

	switch m := strings.TrimSpace(o.PeeringMode); m {
	case "auto":
		switch {
		case len(c.BGP.Peers) > 0 || len(c.BGP.SubnetPeers) > 0:
			c.Mode, res.ModeReason = ModeSpine, "spine peers are set"
		case o.JujuCredentials != "":
			// Provisional: the link reads calico and decides (calico only
			// when Calico peers with routers outside the cluster).
			c.Mode, res.ModeReason = ModeCalico, "the Calico link is configured"
		default:
			// Nothing here says how the VIPs can reach a client; l2 on a
			// routed fabric would answer ARP nobody asks. No guess.
			d.errorf("peering-mode", nil, "auto cannot tell how the pools reach your clients without spine peers or the Calico link: "+
				"set peering-mode=calico and put the pools into calico's bgp-service-loadbalancer-ips (or set juju-credentials for the Calico link to do it), "+
				"peering-mode=spine with spine-peers, or peering-mode=l2 if the nodes and their clients share one L2 segment")
			c.Mode = ModeL2 // checked; keep validate from repeating it
		}
	default:
		c.Mode = Mode(m)
		if c.Mode != ModeCalico && c.Mode != ModeSpine && c.Mode != ModeL2 {
			d.errorf("peering-mode", nil, "%q is not a mode; use auto, calico, spine or l2", m)
			c.Mode = ModeL2 // checked; keep validate from repeating it
		}
	}
	switch opt := strings.TrimSpace(o.CalicoServiceIPOption); opt {
	case "auto":
		// The Calico link refines this when it can read calico's options.
		c.ServiceIPOption = ServiceIPLoadBalancer
	default:
		c.ServiceIPOption = opt
	}

	if !appName.MatchString(o.CalicoApplication) {
		d.errorf("calico-application", nil, "%q is not a Juju application name (lowercase letters, digits and '-', e.g. calico)", o.CalicoApplication)
	}
	if o.CalicoModel != "" && !modelUUID.MatchString(o.CalicoModel) {
		d.errorf("calico-model", nil, "%q is not a model UUID; find it with `juju show-model <model> --format yaml` (model-uuid), or leave it empty", o.CalicoModel)
	}
	for _, s := range []struct{ name, v string }{{"juju-credentials", o.JujuCredentials}, {"bgp-passwords", o.BGPPasswords}} {
		if s.v != "" && !strings.HasPrefix(s.v, "secret:") {
			d.errorf(s.name, nil, "%q is not a secret URI; create one with `juju add-secret` and pass its secret:... URI", s.v)
		}
	}
	d.validate(c)
	for _, p := range c.BGP.AllPeers() {
		if p.PasswordKey != "" && o.BGPPasswords == "" {
			d.errorf("bgp-passwords", nil, "peer %s has password-key %q but bgp-passwords is not set; set it to a Juju secret holding that key", p.Address, p.PasswordKey)
			break
		}
	}
	if len(d.errs) > 0 {
		return nil, res, d.errs
	}
	return c, res, nil
}

// AllPeers lists every peer: the global ones, then each subnet's.
func (b BGP) AllPeers() []Peer {
	out := slices.Clone(b.Peers)
	for _, sp := range b.SubnetPeers {
		out = append(out, sp.Peers...)
	}
	return out
}

// String names the mode and, for auto, why it was picked.
func (r Resolved) String() string {
	if r.ModeReason == "" {
		return ""
	}
	return fmt.Sprintf("auto: %s", r.ModeReason)
}
