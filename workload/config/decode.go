package config

import (
	"fmt"
	"math"
	"strings"

	"go.yaml.in/yaml/v3"
)

// decoder walks parsed YAML by hand instead of unmarshalling into structs,
// so that it can report every problem (not the first), name each field by
// its path, and suggest the right key for a typo.
type decoder struct {
	errs    Errors
	lines   bool // report line numbers (the input has more than one line)
	options bool // name fields as the charm's options rather than file keys
}

func newDecoder(src string) *decoder {
	return &decoder{lines: strings.Contains(strings.TrimSpace(src), "\n")}
}

func (d *decoder) errorf(field string, n *yaml.Node, format string, args ...any) {
	e := FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
	if d.lines && n != nil {
		e.Line = n.Line
	}
	d.errs = append(d.errs, e)
}

// parseYAML parses src into its top node. Empty input gives nil.
func (d *decoder) parseYAML(field, src string) *yaml.Node {
	n, err := parseDoc(src)
	if err != nil {
		d.errorf(field, nil, "%v", err)
		return nil
	}
	return n
}

// maxNodes bounds a document's size once its aliases are expanded, so that
// a few lines of anchors and aliases cannot make validation walk millions
// of nodes.
const maxNodes = 1 << 20

// parseDoc parses src and returns its top node (nil when empty).
func parseDoc(src string) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		return nil, fmt.Errorf("not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil
	}
	sizes := map[*yaml.Node]int{}
	if expanded(doc.Content[0], sizes) > maxNodes {
		return nil, fmt.Errorf("uses YAML aliases that expand to more than %d values, or refer to themselves; write the values out", maxNodes)
	}
	return resolveAlias(doc.Content[0]), nil
}

// expanded counts the nodes of n with aliases expanded, memoized per node so
// that it is linear in the document; a node that contains itself counts as
// too large.
func expanded(n *yaml.Node, sizes map[*yaml.Node]int) int {
	if s, ok := sizes[n]; ok {
		if s < 0 {
			return maxNodes + 1 // a cycle
		}
		return s
	}
	sizes[n] = -1
	total := 1
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		total += expanded(n.Alias, sizes)
	}
	for _, c := range n.Content {
		if total += expanded(c, sizes); total > maxNodes {
			break
		}
	}
	total = min(total, maxNodes+1)
	sizes[n] = total
	return total
}

// resolveAlias follows a YAML alias (*x) to the node it names.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 16; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// field is one known key of a mapping and what to do with its value.
type field struct {
	key string
	fn  func(n *yaml.Node, path string)
}

// mapping walks a mapping node, calling each known key's handler; unknown
// and repeated keys are errors. It returns the keys that were present.
func (d *decoder) mapping(n *yaml.Node, path string, fields ...field) map[string]bool {
	seen := map[string]bool{}
	if isNull(n) {
		return seen
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(path, n, "must be a mapping of %s, not %s", keyList(fields), describe(n))
		return seen
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		name := k.Value
		sub := join(path, name)
		if seen[name] {
			d.errorf(sub, k, "is set twice; keep one")
			continue
		}
		seen[name] = true
		found := false
		for _, f := range fields {
			if f.key == name {
				f.fn(v, sub)
				found = true
				break
			}
		}
		if !found {
			d.errorf(sub, k, "unknown key%s; the keys are %s", suggest(name, fields), keyList(fields))
		}
	}
	return seen
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func keyList(fields []field) string {
	s := make([]string, len(fields))
	for i, f := range fields {
		s[i] = f.key
	}
	return strings.Join(s, ", ")
}

// suggest returns `; did you mean "x"` for a near miss.
func suggest(name string, fields []field) string {
	norm := strings.ReplaceAll(strings.ToLower(name), "_", "-")
	best, bestDist := "", 3
	for _, f := range fields {
		if f.key == norm {
			return fmt.Sprintf(" (did you mean %q?)", f.key)
		}
		if d := editDistance(norm, f.key); d < bestDist {
			best, bestDist = f.key, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// str reads a scalar as a string.
func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	if isNull(n) {
		return "", true
	}
	if n.Kind != yaml.ScalarNode {
		d.errorf(path, n, "must be a single value, not %s", describe(n))
		return "", false
	}
	return n.Value, true
}

// boolean reads true or false.
func (d *decoder) boolean(n *yaml.Node, path string) (bool, bool) {
	var b bool
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
		d.errorf(path, n, "must be true or false, not %s", describe(n))
		return false, false
	}
	return b, true
}

// integer reads a whole number in [lo, hi]; unit names it in messages.
func (d *decoder) integer(n *yaml.Node, path string, lo, hi int64, hint string) (int64, bool) {
	var v int64
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&v) != nil {
		d.errorf(path, n, "must be a whole number, not %s%s", describe(n), hint)
		return 0, false
	}
	if v < lo || v > hi {
		d.errorf(path, n, "%d is out of range: it must be from %d to %d%s", v, lo, hi, hint)
		return 0, false
	}
	return v, true
}

// asNumber reads a BGP AS number.
func (d *decoder) asNumber(n *yaml.Node, path string) (uint32, bool) {
	v, ok := d.integer(n, path, 1, math.MaxUint32, " (AS numbers are 1 to 4294967295; private ranges are 64512-65534 and 4200000000-4294967294)")
	if !ok {
		return 0, false
	}
	if msg := badAS(v); msg != "" {
		d.errorf(path, n, "%s", msg)
		return 0, false
	}
	return uint32(v), true
}

// badAS explains why an AS number cannot be used, or returns "".
func badAS(v int64) string {
	switch {
	case v < 1 || v > math.MaxUint32:
		return fmt.Sprintf("%d is not an AS number: AS numbers are 1 to 4294967295", v)
	case v == 23456:
		return "23456 is AS_TRANS, reserved for 4-byte AS transition; use your own AS number"
	}
	return ""
}

// strList reads a list of strings; a single string is split on spaces and
// commas, so both [a, b] and "a b" work.
func (d *decoder) strList(n *yaml.Node, path string) ([]string, bool) {
	if isNull(n) {
		return nil, true
	}
	switch n.Kind {
	case yaml.ScalarNode:
		return splitList(n.Value), true
	case yaml.SequenceNode:
		out := make([]string, 0, len(n.Content))
		ok := true
		for i, c := range n.Content {
			c = resolveAlias(c)
			if c.Kind != yaml.ScalarNode {
				d.errorf(fmt.Sprintf("%s[%d]", path, i), c, "must be a single value, not %s", describe(c))
				ok = false
				continue
			}
			out = append(out, c.Value)
		}
		return out, ok
	}
	d.errorf(path, n, "must be a list, not %s", describe(n))
	return nil, false
}

// splitList splits on spaces and commas, keeping "a - b" together as "a-b".
func splitList(s string) []string {
	f := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' })
	var out []string
	for i := 0; i < len(f); i++ {
		switch {
		case f[i] == "-" && len(out) > 0 && i+1 < len(f):
			out[len(out)-1] += "-" + f[i+1]
			i++
		case strings.HasSuffix(f[i], "-") && i+1 < len(f):
			out = append(out, f[i]+f[i+1])
			i++
		case strings.HasPrefix(f[i], "-") && len(out) > 0:
			out[len(out)-1] += f[i]
		default:
			out = append(out, f[i])
		}
	}
	return out
}

// pairs returns the keys of a mapping node with their values, in document
// order.
func pairs(n *yaml.Node) [][2]*yaml.Node {
	var out [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		out = append(out, [2]*yaml.Node{n.Content[i], resolveAlias(n.Content[i+1])})
	}
	return out
}

// DecodeYAML decodes src into v with the same guard against alias bombs
// as the config's own options; other packages (the calico options) parse
// operator YAML through it.
func DecodeYAML(src string, v any) error {
	n, err := parseDoc(src)
	if err != nil || n == nil {
		return err
	}
	if err := n.Decode(v); err != nil {
		return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return nil
}
