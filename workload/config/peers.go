package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ParsePeers reads a list of BGP peers in the calico charm's style, as the
// spine-peers option holds: [{address: 10.0.255.1, as-number: 65100, ...}].
func ParsePeers(field, s string) ([]Peer, error) {
	d := newDecoder(s)
	peers := d.peers(d.parseYAML(field, s), field)
	return peers, d.errs.err()
}

func (d *decoder) peers(n *yaml.Node, path string) []Peer {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(path, n, "must be a list of peers such as [{address: 10.0.255.1, as-number: 65100}], not %s", describe(n))
		return nil
	}
	var out []Peer
	seen := map[netip.Addr]int{}
	for i, c := range n.Content {
		sub := fmt.Sprintf("%s[%d]", path, i)
		p, ok := d.peer(resolveAlias(c), sub)
		if !ok {
			continue
		}
		if j, dup := seen[p.Address]; dup {
			d.errorf(sub, c, "peer %s is listed twice (also at %s[%d]); keep one", p.Address, path, j)
			continue
		}
		seen[p.Address] = i
		out = append(out, p)
	}
	return out
}

var secretKey = regexp.MustCompile(`^[a-z](?:-?[a-z0-9]){2,}$`)

// checkPeer checks what only the whole peer shows (fields missing, or
// at odds with each other), and derives the keepalive when none is given.
func (d *decoder) checkPeer(p *Peer, present map[string]bool, path string, n *yaml.Node) {
	if !present["address"] {
		d.errorf(path, n, "peer has no address; add address: <router IP>")
	}
	if !present["as-number"] {
		d.errorf(path, n, "peer has no as-number; add as-number: <the router's AS>")
	}
	if !present["keepalive"] {
		p.Keepalive = p.HoldTime / 3
	}
	switch {
	case p.HoldTime == 0 && p.Keepalive != 0:
		d.errorf(join(path, "keepalive"), n, "must be 0 when hold-time is 0 (no keepalives at all)")
	case p.HoldTime > 0 && p.Keepalive == 0:
		d.errorf(join(path, "keepalive"), n, "must be at least 1 s with a hold time of %d s (usually a third of it: %d)", p.HoldTime, max(1, p.HoldTime/3))
	case p.HoldTime > 0 && p.Keepalive >= p.HoldTime:
		d.errorf(join(path, "keepalive"), n, "%d s must be below hold-time %d s (usually a third of it: %d)", p.Keepalive, p.HoldTime, max(1, p.HoldTime/3))
	}
	if !p.BFD && (present["bfd-interval"] || present["bfd-multiplier"]) {
		d.errorf(path, n, "bfd-interval and bfd-multiplier need bfd: true")
	}
	if p.SourceAddress.IsValid() && p.Address.IsValid() && p.SourceAddress.Is4() != p.Address.Is4() {
		d.errorf(join(path, "source-address"), n, "%s and peer address %s are of different IP families", p.SourceAddress, p.Address)
	}
	if d.options && p.SourceAddress.IsValid() {
		// spine-peers and subnet-spine-peers apply to every speaker (in
		// the subnet): each would bind this one address, and all but the
		// node that has it would fail to dial.
		d.errorf(join(path, "source-address"), n, "%s would be the source of every speaker's session, and only the node that has it could dial; leave source-address out: each speaker dials from its own node's address on the route to the peer", p.SourceAddress)
	}
}

func (d *decoder) peer(n *yaml.Node, path string) (Peer, bool) {
	p := Peer{HoldTime: DefaultHoldTime, BFDInterval: DefaultBFDInterval, BFDMultiplier: DefaultBFDMultiplier, MaxPrefixes: DefaultMaxPrefixes}
	before := len(d.errs)
	addr := func(v *yaml.Node, f string) netip.Addr {
		s, ok := d.str(v, f)
		if !ok {
			return netip.Addr{}
		}
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil || a.Zone() != "" {
			d.errorf(f, v, "%q is not an IP address", s)
			return netip.Addr{}
		}
		return a.Unmap()
	}
	present := d.mapping(n, path,
		field{"address", func(v *yaml.Node, f string) { p.Address = addr(v, f) }},
		field{"as-number", func(v *yaml.Node, f string) { p.ASNumber, _ = d.asNumber(v, f) }},
		field{"hold-time", func(v *yaml.Node, f string) {
			if x, ok := d.integer(v, f, 0, 65535, " seconds"); ok {
				if x > 0 && x < 3 {
					d.errorf(f, v, "%d s is too short: BGP needs a hold time of 0 (no keepalives) or at least 3 s; for sub-second failover set bfd: true instead", x)
					return
				}
				p.HoldTime = int(x)
			}
		}},
		field{"keepalive", func(v *yaml.Node, f string) {
			if x, ok := d.integer(v, f, 0, 21845, " seconds"); ok {
				p.Keepalive = int(x)
			}
		}},
		field{"multihop", func(v *yaml.Node, f string) {
			if x, ok := d.integer(v, f, 1, 255, " (the TTL: 2 when the spine is one router away)"); ok {
				p.Multihop = int(x)
			}
		}},
		field{"bfd", func(v *yaml.Node, f string) { p.BFD, _ = d.boolean(v, f) }},
		field{"bfd-interval", func(v *yaml.Node, f string) {
			if x, ok := d.integer(v, f, 10, 60000, " milliseconds"); ok {
				p.BFDInterval = int(x)
			}
		}},
		field{"bfd-multiplier", func(v *yaml.Node, f string) {
			if x, ok := d.integer(v, f, 2, 255, ""); ok {
				p.BFDMultiplier = int(x)
			}
		}},
		field{"password-key", func(v *yaml.Node, f string) {
			if s, ok := d.str(v, f); ok {
				if !secretKey.MatchString(s) {
					d.errorf(f, v, "%q is not a Juju secret key: use at least 3 lowercase letters, digits and single '-', starting with a letter (e.g. spine1)", s)
					return
				}
				p.PasswordKey = s
			}
		}},
		field{"source-address", func(v *yaml.Node, f string) { p.SourceAddress = addr(v, f) }},
		field{"max-prefixes", func(v *yaml.Node, f string) {
			if x, ok := d.integer(v, f, 1, 2000000, " (routes the peer may send; the speakers need none, so filter them on the router rather than raising this)"); ok {
				p.MaxPrefixes = int(x)
			}
		}},
	)
	if n.Kind != yaml.MappingNode {
		return p, false
	}
	d.checkPeer(&p, present, path, n)
	return p, len(d.errs) == before
}

// subnet reads a CIDR used as a key of subnet-spine-peers or subnet-as-numbers.
func (d *decoder) subnet(k *yaml.Node, path string) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(strings.TrimSpace(k.Value))
	if err != nil {
		d.errorf(path, k, "%q is not a CIDR; write the subnet as ADDRESS/LENGTH, e.g. 10.0.0.0/24", k.Value)
		return p, false
	}
	if p.Masked() != p {
		d.errorf(path, k, "%q has host bits set; the subnet is %s", k.Value, p.Masked())
		return p, false
	}
	return p, true
}

// ParseSubnetPeers reads the subnet-spine-peers option: {CIDR: [peers]}.
func ParseSubnetPeers(field, s string) ([]SubnetPeers, error) {
	d := newDecoder(s)
	out := d.subnetPeers(d.parseYAML(field, s), field)
	return out, d.errs.err()
}

func (d *decoder) subnetPeers(n *yaml.Node, path string) []SubnetPeers {
	var out []SubnetPeers
	d.subnetMap(n, path, "subnet to peers, e.g. {10.0.0.0/24: [{address: 10.0.0.1, as-number: 65100}]}", func(pfx netip.Prefix, v *yaml.Node, sub string) {
		out = append(out, SubnetPeers{Subnet: pfx, Peers: d.peers(v, sub)})
	})
	return out
}

// ParseSubnetAS reads the subnet-as-numbers option: {CIDR: AS}.
func ParseSubnetAS(field, s string) ([]SubnetAS, error) {
	d := newDecoder(s)
	out := d.subnetAS(d.parseYAML(field, s), field)
	return out, d.errs.err()
}

func (d *decoder) subnetAS(n *yaml.Node, path string) []SubnetAS {
	var out []SubnetAS
	d.subnetMap(n, path, "subnet to AS number, e.g. {10.0.0.0/24: 64512}", func(pfx netip.Prefix, v *yaml.Node, sub string) {
		if as, ok := d.asNumber(v, sub); ok {
			out = append(out, SubnetAS{Subnet: pfx, ASNumber: as})
		}
	})
	return out
}

// subnetMap walks a mapping keyed by subnets (CIDRs), reporting bad and
// repeated subnets, and calls each for every good one in document order.
func (d *decoder) subnetMap(n *yaml.Node, path, shape string, each func(pfx netip.Prefix, v *yaml.Node, sub string)) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(path, n, "must be a mapping of %s, not %s", shape, describe(n))
		return
	}
	seen := map[netip.Prefix]bool{}
	for _, kv := range pairs(n) {
		sub := fmt.Sprintf("%s[%q]", path, kv[0].Value)
		pfx, ok := d.subnet(kv[0], sub)
		if !ok {
			continue
		}
		if seen[pfx] {
			d.errorf(sub, kv[0], "subnet %s is listed twice", pfx)
			continue
		}
		seen[pfx] = true
		each(pfx, kv[1], sub)
	}
}
