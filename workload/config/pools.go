package config

import (
	"fmt"
	"math"
	"regexp"
	"slices"
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
		field{"share-across-namespaces", func(v *yaml.Node, f string) { p.SharedAcrossNamespaces, _ = d.boolean(v, f) }},
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
			for i, s := range list {
				c, err := ParseCommunity(s)
				if err != nil {
					d.errorf(fmt.Sprintf("%s[%d]", f, i), v, "%s", err)
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

// selector checks a Kubernetes label selector and returns it parsed (nil
// when it is not valid).
func (d *decoder) selector(n *yaml.Node, path, s string) labels.Selector {
	sel, err := labels.Parse(s)
	if err != nil {
		d.errorf(path, n, "%q is not a valid label selector: %v; write it as kubectl does, e.g. tier=web,env in (prod,staging)", s, err)
		return nil
	}
	return sel
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
