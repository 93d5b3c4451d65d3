package config

import (
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/calico-lb/calico-lb/workload/iprange"
)

// ParsePools reads the charm's pools option in either form:
//
//   - a list of CIDRs and first-last ranges separated by spaces or commas,
//     which makes one pool named "default";
//   - a YAML mapping of named pools, each with addresses, auto-assign,
//     avoid-buggy-ips, namespaces, service-selector, priority, communities
//     and local-pref.
//
// avoidBuggy is the default of avoid-buggy-ips for pools that do not set it.
func ParsePools(s string, avoidBuggy bool) ([]Pool, error) {
	d := newDecoder(s)
	pools := d.pools("pools", s, avoidBuggy)
	d.checkPools("pools", pools)
	return pools, d.errs.err()
}

func (d *decoder) pools(path, s string, avoidBuggy bool) []Pool {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	n, err := parseDoc(s)
	if err != nil || n == nil {
		if looksLikeMapping(s) || (err != nil && strings.Contains(err.Error(), "aliases")) {
			d.errorf(path, nil, "%v", err)
			return nil
		}
		return d.plainPools(path, splitList(s), avoidBuggy)
	}
	switch n.Kind {
	case yaml.MappingNode:
		return d.namedPools(n, path, avoidBuggy)
	case yaml.SequenceNode:
		list, _ := d.strList(n, path)
		return d.plainPools(path, list, avoidBuggy)
	}
	return d.plainPools(path, splitList(s), avoidBuggy)
}

func looksLikeMapping(s string) bool {
	t := strings.TrimSpace(s)
	return strings.HasPrefix(t, "{") || strings.Contains(t, ": ") || strings.HasSuffix(t, ":") || strings.Contains(t, ":\n")
}

// plainPools makes the "default" pool of a plain address list.
func (d *decoder) plainPools(path string, list []string, avoidBuggy bool) []Pool {
	p := Pool{Name: DefaultPoolName, AutoAssign: true, AvoidBuggyIPs: avoidBuggy}
	for i, a := range list {
		r, err := iprange.Parse(a)
		if err != nil {
			d.errorf(fmt.Sprintf("%s[%d]", path, i), nil, "%v", err)
			continue
		}
		p.Addresses = append(p.Addresses, r)
	}
	if len(p.Addresses) == 0 {
		return nil
	}
	return []Pool{p}
}

// namedPools reads the mapping form: name -> pool.
func (d *decoder) namedPools(n *yaml.Node, path string, avoidBuggy bool) []Pool {
	var out []Pool
	seen := map[string]bool{}
	for _, kv := range pairs(n) {
		name := kv[0].Value
		sub := join(path, name)
		if seen[name] {
			d.errorf(sub, kv[0], "pool %q is defined twice; pool names must be unique", name)
			continue
		}
		seen[name] = true
		if msg := badName(name); msg != "" {
			d.errorf(sub, kv[0], "%q is not a valid pool name: %s", name, msg)
		}
		if p, ok := d.pool(kv[1], sub, name, avoidBuggy); ok {
			out = append(out, p)
		}
	}
	return out
}

// badName checks a pool name: a DNS label, as Kubernetes names are, so it
// can appear in annotations, metrics labels and events unchanged.
func badName(name string) string {
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		fix := strings.Trim(regexp.MustCompile(`[^a-z0-9-]+`).ReplaceAllString(strings.ToLower(name), "-"), "-")
		if len(fix) > 63 {
			fix = fix[:63]
		}
		if fix != "" && fix != name {
			return fmt.Sprintf("use lowercase letters, digits and '-', at most 63 characters, starting and ending with a letter or digit (for example %q)", fix)
		}
		return "use lowercase letters, digits and '-', at most 63 characters, starting and ending with a letter or digit"
	}
	return ""
}

func (d *decoder) pool(n *yaml.Node, path, name string, avoidBuggy bool) (Pool, bool) {
	p := Pool{Name: name, AutoAssign: true, AvoidBuggyIPs: avoidBuggy}
	if n.Kind == yaml.ScalarNode || n.Kind == yaml.SequenceNode {
		// Shorthand: name: 10.0.0.0/24 or name: [10.0.0.0/24, ...]
		list, _ := d.strList(n, path)
		p.Addresses = d.ranges(path, n, list)
		if len(p.Addresses) == 0 {
			d.errorf(path, n, "pool %q has no addresses; give it at least one CIDR or range", name)
			return p, false
		}
		return p, true
	}
	errsBefore := len(d.errs)
	present := d.mapping(n, path,
		field{"addresses", func(v *yaml.Node, f string) {
			list, _ := d.strList(v, f)
			p.Addresses = d.ranges(f, v, list)
		}},
		field{"auto-assign", func(v *yaml.Node, f string) { p.AutoAssign, _ = d.boolean(v, f) }},
		field{"avoid-buggy-ips", func(v *yaml.Node, f string) { p.AvoidBuggyIPs, _ = d.boolean(v, f) }},
		field{"namespaces", func(v *yaml.Node, f string) {
			list, _ := d.strList(v, f)
			for i, ns := range list {
				if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
					d.errorf(fmt.Sprintf("%s[%d]", f, i), v, "%q is not a namespace name: %s", ns, errs[0])
					continue
				}
				if slices.Contains(p.Namespaces, ns) {
					d.errorf(fmt.Sprintf("%s[%d]", f, i), v, "namespace %q is listed twice", ns)
					continue
				}
				p.Namespaces = append(p.Namespaces, ns)
			}
		}},
		field{"service-selector", func(v *yaml.Node, f string) {
			if s, ok := d.str(v, f); ok {
				d.selector(v, f, s)
				p.ServiceSelector = strings.TrimSpace(s)
			}
		}},
		field{"priority", func(v *yaml.Node, f string) {
			if x, ok := d.integer(v, f, 0, math.MaxInt32, " (lower numbers are used first; 0 or unset comes last)"); ok {
				p.Priority = int(x)
			}
		}},
		field{"communities", func(v *yaml.Node, f string) {
			list, _ := d.strList(v, f)
			for i, c := range list {
				if msg := badCommunity(c); msg != "" {
					d.errorf(fmt.Sprintf("%s[%d]", f, i), v, "%s", msg)
					continue
				}
				p.Communities = append(p.Communities, c)
			}
		}},
		field{"local-pref", func(v *yaml.Node, f string) {
			if x, ok := d.integer(v, f, 1, math.MaxUint32, " (omit it to keep the router's default)"); ok {
				p.LocalPref = uint32(x)
			}
		}},
	)
	if !present["addresses"] && len(d.errs) == errsBefore {
		d.errorf(path, n, "pool %q has no addresses; add addresses: [CIDR or first-last range, ...]", name)
		return p, false
	}
	if present["addresses"] && len(p.Addresses) == 0 && len(d.errs) == errsBefore {
		d.errorf(join(path, "addresses"), n, "is empty; give pool %q at least one CIDR or range", name)
		return p, false
	}
	return p, true
}

func (d *decoder) ranges(path string, n *yaml.Node, list []string) []iprange.Range {
	var out []iprange.Range
	for i, a := range list {
		r, err := iprange.Parse(a)
		if err != nil {
			d.errorf(fmt.Sprintf("%s[%d]", path, i), n, "%v", err)
			continue
		}
		out = append(out, r)
	}
	return out
}

// selector checks a Kubernetes label selector.
func (d *decoder) selector(n *yaml.Node, path, s string) {
	if _, err := labels.Parse(s); err != nil {
		d.errorf(path, n, "%q is not a valid label selector: %v; write it as kubectl does, e.g. tier=web,env in (prod,staging)", s, err)
	}
}

var wellKnownCommunities = map[string]bool{
	"no-export": true, "no-advertise": true, "no-export-subconfed": true,
	"no-peer": true, "blackhole": true, "graceful-shutdown": true,
}

// badCommunity checks a BGP community: AA:NN (standard), A:B:C (large) or a
// well-known name.
func badCommunity(c string) string {
	if wellKnownCommunities[c] {
		return ""
	}
	parts := strings.Split(c, ":")
	bitsFor := map[int]int{2: 16, 3: 32}[len(parts)]
	if bitsFor == 0 {
		return fmt.Sprintf("%q is not a BGP community: write AA:NN (e.g. 65000:100), a large community A:B:C (e.g. 4200000000:1:2), or no-export, no-advertise, no-export-subconfed, no-peer, blackhole, graceful-shutdown", c)
	}
	for _, p := range parts {
		if _, err := strconv.ParseUint(p, 10, bitsFor); err != nil {
			return fmt.Sprintf("%q is not a BGP community: each part of a %d-part community is a number from 0 to %d", c, len(parts), uint64(1)<<bitsFor-1)
		}
	}
	return ""
}

// checkPools validates across pools: no address may be in two pools.
// Ranges are sorted once and compared with their neighbour, so this stays
// O(n log n) however many ranges there are.
func (d *decoder) checkPools(path string, pools []Pool) {
	type owned struct {
		r    iprange.Range
		pool string
		idx  int
	}
	var all []owned
	for _, p := range pools {
		for i, r := range p.Addresses {
			all = append(all, owned{r, p.Name, i})
		}
	}
	slices.SortFunc(all, func(a, b owned) int {
		if a.r.Is4() != b.r.Is4() {
			if a.r.Is4() {
				return -1
			}
			return 1
		}
		return a.r.First.Compare(b.r.First)
	})
	// Compare each range with the earlier range of its family that reaches
	// furthest: a long range overlapping several later ones is reported
	// against each of them.
	var far *owned
	for i := range all {
		cur := &all[i]
		if far != nil && far.r.Is4() == cur.r.Is4() && !far.r.Last.Less(cur.r.First) {
			where := fmt.Sprintf("pool %q", far.pool)
			if far.pool == cur.pool {
				where = "another range of the same pool"
			}
			d.errorf(fmt.Sprintf("%s.%s.addresses[%d]", path, cur.pool, cur.idx), nil,
				"%s overlaps %s (%s); an address may belong to one pool only, so remove or narrow one of them", cur.r, where, far.r)
		}
		if far == nil || far.r.Is4() != cur.r.Is4() || far.r.Last.Less(cur.r.Last) {
			far = cur
		}
	}
}

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

func (d *decoder) peer(n *yaml.Node, path string) (Peer, bool) {
	p := Peer{HoldTime: DefaultHoldTime, BFDInterval: DefaultBFDInterval, BFDMultiplier: DefaultBFDMultiplier}
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
	)
	if n.Kind != yaml.MappingNode {
		return p, false
	}
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

var ifaceName = regexp.MustCompile(`^[^/\s:]{1,15}$`)

// checkInterfaces validates Linux interface names.
func (d *decoder) checkInterfaces(path string, names []string) []string {
	var out []string
	for i, name := range names {
		if !ifaceName.MatchString(name) || name == "." || name == ".." {
			d.errorf(fmt.Sprintf("%s[%d]", path, i), nil, "%q is not an interface name: at most 15 characters, without spaces, '/' or ':'", name)
			continue
		}
		if slices.Contains(out, name) {
			d.errorf(fmt.Sprintf("%s[%d]", path, i), nil, "interface %q is listed twice", name)
			continue
		}
		out = append(out, name)
	}
	return out
}
