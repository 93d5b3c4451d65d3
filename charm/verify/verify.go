// Package verify is the verify action's judgement: the checks of the
// MetalLB-with-Calico validation procedure (allocation, announcement at the
// router, reachability, source IP, failover readiness), as a
// pure function of what the workload, the speakers and calico report, each
// failed check naming its fix.
package verify

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/attract"
	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/iprange"
)

// Results.
const (
	Pass = "pass"
	Fail = "fail"
	Warn = "warn"
	Info = "info"
)

// Check is one finding.
type Check struct {
	Service string // ns/name, or "" for the whole setup
	Name    string
	Result  string
	Detail  string
	Fix     string
}

// Calico is what calico's service-IP option holds, read over the link.
type Calico struct {
	Option string
	CIDRs  []string
	// Missing are the pools' CIDRs the option lacks; Command the juju
	// config command that adds them and keeps what is there.
	Missing []string
	Command string
	// Peers are calico's BGP peers outside the cluster (ExternalPeers):
	// the routers that learn what Calico advertises.
	Peers []string
}

// fix is what puts the pools into calico's option: the charm itself over
// the link, or the operator by hand.
func (c *Calico) fix() string {
	return "`juju run calico-lb/leader sync-calico dry-run=false`, or by hand: `" + c.Command + "`"
}

// Input is everything verify looks at.
type Input struct {
	Facts api.ServicesFacts
	// Speakers is the speakers' own reports (spine and l2 mode).
	Speakers    *api.Speakers
	SpeakersErr error
	// Calico is calico's option (calico mode with the link); CalicoErr why
	// it could not be read; Command what to run without the link.
	Calico    *Calico
	CalicoErr error
	Command   string
	// Peers are the spine peers in force, for the timer advice.
	Peers []config.Peer
}

// calicoPeers checks that Calico has someone to advertise the pools to:
// the calico charm's default is a node mesh with no router at all, and
// then the option holding the pools makes no VIP reachable.
func calicoPeers(in Input) Check {
	c := Check{Name: "calico-peers"}
	switch {
	case in.Calico == nil:
		c.Result = Info
		c.Detail = "without the Calico link calico-lb cannot see whether Calico peers with any router (global-bgp-peers, subnet-bgp-peers, unit-bgp-peers)"
		c.Fix = "check `juju config calico global-bgp-peers subnet-bgp-peers unit-bgp-peers`, or configure juju-credentials"
	case len(in.Calico.Peers) == 0:
		c.Result = Fail
		c.Detail = "calico has no BGP peer outside the cluster (global-bgp-peers, subnet-bgp-peers and unit-bgp-peers are empty; the node mesh and route reflectors reach only nodes): no router learns the pools"
		c.Fix = "give calico its routers, e.g. `juju config calico global-bgp-peers='[{address: <router>, as-number: <AS>}]'` (or subnet-bgp-peers per rack), or use peering-mode=spine"
	default:
		c.Result = Pass
		c.Detail = "calico peers with " + strings.Join(in.Calico.Peers, ", ")
	}
	return c
}

// calicoIPAM checks that Calico's own LoadBalancer IPAM (Calico 3.30 and
// later: IPPools whose allowedUses include LoadBalancer) does not compete
// with calico-lb for the same Services: it serves those without a class.
func calicoIPAM(f api.ServicesFacts) Check {
	c := Check{Name: "calico-ipam"}
	switch {
	case f.CalicoPoolsErr != "":
		c.Result, c.Detail = Warn, "cannot read Calico's IPPools: "+f.CalicoPoolsErr
		c.Fix = "check that calico-lb's controller may list ippools (crd.projectcalico.org)"
	case len(f.CalicoLoadBalancerPools) == 0:
		c.Result = Pass
		c.Detail = "no Calico IPPool allows LoadBalancer use (none visible: Calico's IPPools are Kubernetes objects only with its Kubernetes datastore)"
	case f.LoadBalancerClass == "":
		c.Result = Fail
		c.Detail = fmt.Sprintf("Calico's IPPools %s allow LoadBalancer use: Calico (3.30 and later) gives their addresses to the same Services without a class that calico-lb serves, and the two race", strings.Join(f.CalicoLoadBalancerPools, ", "))
		c.Fix = "remove LoadBalancer from those pools' allowedUses, or set calico-lb's load-balancer-class (`juju config calico-lb load-balancer-class=<class>`) and that class on the Services calico-lb should serve"
	default:
		c.Result = Pass
		c.Detail = fmt.Sprintf("Calico's IPPools %s serve Services without a class; calico-lb serves class %s only", strings.Join(f.CalicoLoadBalancerPools, ", "), f.LoadBalancerClass)
	}
	return c
}

// externalIPs checks that no Service names an address of the pools in
// spec.externalIPs that calico-lb did not put there: kube-proxy (and
// Calico, in external mode) would send that address's traffic to it.
func externalIPs(f api.ServicesFacts) Check {
	c := Check{Name: "external-ips"}
	if len(f.ForeignExternalIPs) == 0 {
		c.Result, c.Detail = Pass, "no Service names a pool address in spec.externalIPs but those calico-lb mirrored"
		return c
	}
	c.Result = Fail
	c.Detail = "spec.externalIPs inside the pools that calico-lb did not write, which pull the traffic of the address away from the Service calico-lb gave it: " + strings.Join(f.ForeignExternalIPs, ", ")
	c.Fix = "remove them from those Services, and install the admission policy of docs/security.md so that only calico-lb sets externalIPs inside the pools"
	return c
}

// Run applies every check.
func Run(in Input) []Check {
	var out []Check
	add := func(c Check) { out = append(out, c) }
	pools := poolRanges(in.Facts.Pools)

	// The setup as a whole.
	switch in.Facts.Mode {
	case config.ModeCalico:
		switch {
		case in.Calico != nil && len(in.Calico.Missing) > 0:
			add(Check{Name: "calico-option", Result: Fail, Detail: fmt.Sprintf("calico %s = %q lacks the pools' %s", in.Calico.Option, strings.Join(in.Calico.CIDRs, " "), strings.Join(in.Calico.Missing, " ")),
				Fix: in.Calico.fix()})
		case in.Calico != nil:
			add(Check{Name: "calico-option", Result: Pass, Detail: fmt.Sprintf("calico %s = %q", in.Calico.Option, strings.Join(in.Calico.CIDRs, " "))})
		case in.CalicoErr != nil:
			add(Check{Name: "calico-option", Result: Fail, Detail: "cannot read calico's config: " + in.CalicoErr.Error(), Fix: "see the unit's status for the Calico link"})
		default:
			add(Check{Name: "calico-option", Result: Warn, Detail: "no Calico link (juju-credentials unset): calico-lb cannot see whether Calico advertises the pools",
				Fix: "run: " + in.Command})
		}
		add(calicoPeers(in))
	case config.ModeSpine, config.ModeL2:
		out = append(out, speakerChecks(in)...)
	}
	add(calicoIPAM(in.Facts))
	add(externalIPs(in.Facts))

	for _, s := range in.Facts.Services {
		key := s.Namespace + "/" + s.Name
		if len(s.IPs) == 0 {
			why := s.Waiting
			if why == "" {
				why = "not allocated yet"
			}
			add(Check{Service: key, Name: "allocated", Result: Fail, Detail: "no IP: " + why, Fix: "see `kubectl describe service " + s.Name + " -n " + s.Namespace + "`; widen or add pools if they are full"})
			continue
		}
		add(Check{Service: key, Name: "allocated", Result: Pass, Detail: strings.Join(s.IPs, ",")})
		for _, ipStr := range s.IPs {
			ip, err := netip.ParseAddr(ipStr)
			if err != nil {
				continue
			}
			if !inAny(pools, ip) {
				add(Check{Service: key, Name: "in-pool", Result: Fail, Detail: ipStr + " is in no pool in force",
					Fix: "a pool change is held back: `juju run calico-lb/leader apply-pool-change`, or revert pools"})
			} else {
				add(Check{Service: key, Name: "in-pool", Result: Pass, Detail: ipStr + " in " + strings.Join(s.Pools, ",")})
			}
			if iprange.IsBuggy(ip) {
				add(Check{Service: key, Name: "not-0-or-255", Result: Fail, Detail: ipStr + " ends in .0 or .255, which many routers drop (smurf protection)",
					Fix: "`juju run calico-lb/leader reallocate service=" + key + "`, and set avoid-buggy-ips"})
			}
			out = append(out, advertised(in, key, s, ip)...)
		}
		if s.TrafficPolicy == "Local" && len(s.EndpointNodes) == 0 {
			add(Check{Service: key, Name: "endpoints", Result: Fail, Detail: "externalTrafficPolicy Local and no ready endpoint: every packet is dropped",
				Fix: "scale the workload up or fix its readiness"})
		}
		ports := make([]string, len(s.NodePorts))
		for i, p := range s.NodePorts {
			ports[i] = fmt.Sprint(p)
		}
		hint := "traffic reaches the nodes on NodePort " + strings.Join(ports, ",")
		if s.HealthCheckNodePort != 0 {
			hint += fmt.Sprintf(" (health check %d)", s.HealthCheckNodePort)
		}
		add(Check{Service: key, Name: "node-ports", Result: Info, Detail: hint, Fix: "host firewalls must allow the NodePort range (30000-32767 by default) from the routers' side"})
	}
	return out
}

// speakerChecks: sessions up (spine), speakers reporting, and the timer
// and multipath advice.
func speakerChecks(in Input) []Check {
	var out []Check
	if in.SpeakersErr != nil {
		return []Check{{Name: "speakers", Result: Fail, Detail: "cannot gather the speakers' reports: " + in.SpeakersErr.Error(), Fix: "check the controller's log"}}
	}
	if in.Speakers == nil || len(in.Speakers.Speakers) == 0 {
		return []Check{{Name: "speakers", Result: Fail, Detail: "no speaker pods", Fix: "check the calico-lb-speaker DaemonSet and speaker-node-selector"}}
	}
	for _, sp := range in.Speakers.Speakers {
		switch {
		case sp.Error != "":
			out = append(out, Check{Name: "speaker " + sp.Node, Result: Fail, Detail: sp.Error, Fix: "check the speaker pod on " + sp.Node})
		case sp.BGP != nil && sp.BGP.Error != "":
			out = append(out, Check{Name: "speaker " + sp.Node, Result: Fail, Detail: sp.BGP.Error, Fix: "fix the config the speaker reports"})
		case in.Facts.Mode == config.ModeSpine && sp.BGP != nil:
			for _, p := range sp.BGP.Peers {
				c := Check{Name: "bgp " + sp.Node + " -> " + p.Address, Result: Pass, Detail: p.State}
				switch {
				case p.Problem != "":
					c.Result, c.Detail = Fail, p.State+": "+p.Problem
					c.Fix = "have the router send the speakers no routes (a prefix-list that denies all, outbound towards them), or raise the peer's max-prefixes in spine-peers"
				case p.State != "established":
					c.Result = Fail
					c.Fix = "the speaker dials TCP 179 to the peer (it never listens: Calico's BIRD holds 179 on the node): check the router's neighbor config (AS, passive, MD5) and firewalls on the path"
				}
				out = append(out, c)
			}
		}
	}
	if in.Facts.Mode == config.ModeSpine {
		for _, p := range in.Peers {
			hold := p.HoldTime
			if hold == 0 {
				hold = config.DefaultHoldTime
			}
			if !p.BFD && hold > 30 {
				out = append(out, Check{Name: "timers " + p.Address.String(), Result: Warn,
					Detail: fmt.Sprintf("hold time %d s without BFD: a dead node keeps attracting traffic for up to %d s", hold, hold),
					Fix:    "set hold-time: 9 and keepalive: 3, or bfd: true, on the peer in spine-peers"})
			}
		}
		out = append(out, Check{Name: "multipath", Result: Info, Detail: "each node announces the IPs it serves; without BGP multipath a router uses only one of them",
			Fix: "enable multipath on the routers (FRR: maximum-paths 8; Cisco: maximum-paths)"})
	}
	return out
}

// advertised checks that ip is announced, the way the mode announces it,
// and (for Local) only from nodes with endpoints.
func advertised(in Input, key string, s api.ServiceFacts, ip netip.Addr) []Check {
	switch in.Facts.Mode {
	case config.ModeCalico:
		if in.Calico == nil {
			return nil // the setup-wide check said why
		}
		for _, c := range in.Calico.CIDRs {
			if p, err := netip.ParsePrefix(c); err == nil && p.Contains(ip) {
				return []Check{{Service: key, Name: "advertised", Result: Pass, Detail: fmt.Sprintf("calico %s has %s", in.Calico.Option, c)}}
			}
		}
		return []Check{{Service: key, Name: "advertised", Result: Fail, Detail: fmt.Sprintf("no CIDR in calico %s covers %s", in.Calico.Option, ip),
			Fix: in.Calico.fix()}}
	case config.ModeSpine:
		if in.Speakers == nil {
			return nil
		}
		announcing, how := attract.Nodes(in.Facts.Mode, s, ip, in.Speakers, nil)
		return announcers(key, s, ip, announcing, how, speakerNodes(in.Speakers))
	case config.ModeL2:
		if in.Speakers == nil {
			return nil
		}
		owners, how := attract.Nodes(in.Facts.Mode, s, ip, in.Speakers, nil)
		if len(owners) > 1 {
			return []Check{{Service: key, Name: "advertised", Result: Fail, Detail: fmt.Sprintf("%s is answered for by %s at once", ip, strings.Join(owners, ", ")),
				Fix: "the speakers do not see each other's heartbeats: check UDP between the nodes on the l2 liveness port"}}
		}
		return announcers(key, s, ip, owners, how, speakerNodes(in.Speakers))
	}
	return nil
}

func speakerNodes(s *api.Speakers) []string {
	var out []string
	for _, sp := range s.Speakers {
		out = append(out, sp.Node)
	}
	return out
}

// announcers judges who announces ip; speakers are the nodes that run a
// speaker at all.
func announcers(key string, s api.ServiceFacts, ip netip.Addr, nodes []string, how string, speakers []string) []Check {
	if len(nodes) == 0 && s.TrafficPolicy == "Local" && len(s.EndpointNodes) > 0 && !slices.ContainsFunc(s.EndpointNodes, func(n string) bool { return slices.Contains(speakers, n) }) {
		return []Check{{Service: key, Name: "advertised", Result: Fail,
			Detail: fmt.Sprintf("%s is unreachable: externalTrafficPolicy Local, and its pods run only on %s, where no speaker runs (speaker-node-selector), so no node announces it",
				ip, strings.Join(s.EndpointNodes, ", ")),
			Fix: "constrain its pods to the speakers' nodes (a nodeSelector or node affinity matching speaker-node-selector), or use externalTrafficPolicy: Cluster"}}
	}
	if len(nodes) == 0 {
		return []Check{{Service: key, Name: "advertised", Result: Fail, Detail: ip.String() + " is announced by no node",
			Fix: "see `juju run calico-lb/leader bgp-status`; for Local Services a node announces only with a ready endpoint"}}
	}
	out := []Check{{Service: key, Name: "advertised", Result: Pass, Detail: how + " " + strings.Join(nodes, ", ")}}
	if s.TrafficPolicy == "Local" {
		var stray []string
		for _, n := range nodes {
			if !slices.Contains(s.EndpointNodes, n) {
				stray = append(stray, n)
			}
		}
		if len(stray) > 0 {
			out = append(out, Check{Service: key, Name: "local-endpoints", Result: Fail,
				Detail: fmt.Sprintf("%s announced from %s, which has no ready endpoint: traffic sent there is dropped (blackholing)", ip, strings.Join(stray, ", ")),
				Fix:    "this should heal within seconds; if it stays, check the speaker's EndpointSlice watch"})
		} else {
			out = append(out, Check{Service: key, Name: "local-endpoints", Result: Pass, Detail: "announced only from nodes with endpoints: " + strings.Join(s.EndpointNodes, ", ")})
		}
	}
	return out
}

func poolRanges(pools []api.PoolView) []iprange.Range {
	var out []iprange.Range
	for _, p := range pools {
		for _, a := range p.Addresses {
			if r, err := iprange.Parse(a); err == nil {
				out = append(out, r)
			}
		}
	}
	return out
}

func inAny(rs []iprange.Range, ip netip.Addr) bool {
	for _, r := range rs {
		if r.Contains(ip) {
			return true
		}
	}
	return false
}

// Summary counts the results.
func Summary(cs []Check) string {
	n := map[string]int{}
	for _, c := range cs {
		n[c.Result]++
	}
	return fmt.Sprintf("%d checks: %d pass, %d fail, %d warn, %d info", len(cs), n[Pass], n[Fail], n[Warn], n[Info])
}
