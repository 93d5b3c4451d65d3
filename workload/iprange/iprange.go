// Package iprange handles the address ranges that LoadBalancer pools are made
// of: CIDRs, "first-last" ranges and single addresses, IPv4 and IPv6. It is
// shared by the config parser, the allocator and the Calico link (which needs
// the exact CIDR cover of a range).
package iprange

import (
	"fmt"
	"math/big"
	"net/netip"
	"strings"
)

// Range is an inclusive range of addresses of one family.
type Range struct {
	First, Last netip.Addr
}

// Parse reads a CIDR ("10.0.0.0/24"), a range ("10.0.0.10-10.0.0.20") or a
// single address. The error explains what is wrong and how to write it.
func Parse(s string) (Range, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Range{}, fmt.Errorf("empty address; write a CIDR such as 10.0.0.0/24 or a range such as 10.0.0.10-10.0.0.20")
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return Range{}, fmt.Errorf("%q is not a valid CIDR; write it as ADDRESS/LENGTH, for example 10.0.0.0/24 or fd00::/120", s)
		}
		if p.Addr().Is4In6() {
			return Range{}, fmt.Errorf("%q is an IPv4-mapped IPv6 prefix; write the IPv4 CIDR itself", s)
		}
		if m := p.Masked(); m != p {
			return Range{}, fmt.Errorf("%q has host bits set; the network is %s (or write a range such as %s-%s)", s, m, p.Addr(), lastOf(p))
		}
		return FromPrefix(p), nil
	}
	if first, last, ok := strings.Cut(s, "-"); ok {
		a, errA := parseAddr(strings.TrimSpace(first))
		if errA != nil {
			return Range{}, fmt.Errorf("range %q: start %w", s, errA)
		}
		b, errB := parseAddr(strings.TrimSpace(last))
		if errB != nil {
			return Range{}, fmt.Errorf("range %q: end %w", s, errB)
		}
		if a.Is4() != b.Is4() {
			return Range{}, fmt.Errorf("range %q mixes IPv4 and IPv6; a range must stay within one family, so split it into two entries", s)
		}
		if b.Less(a) {
			return Range{}, fmt.Errorf("range %q is reversed; write the lower address first: %s-%s", s, b, a)
		}
		return Range{First: a, Last: b}, nil
	}
	a, err := parseAddr(s)
	if err != nil {
		return Range{}, fmt.Errorf("%w; write a CIDR such as 10.0.0.0/24, a range such as 10.0.0.10-10.0.0.20, or a single address", err)
	}
	return Range{First: a, Last: a}, nil
}

func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q has a zone; pool addresses cannot be link-scoped", s)
	}
	if a.Is4In6() {
		return netip.Addr{}, fmt.Errorf("%q is an IPv4-mapped IPv6 address; write the IPv4 address itself", s)
	}
	return a, nil
}

// MustParse is Parse for constants in tests and examples; it panics on error.
func MustParse(s string) Range {
	r, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return r
}

// FromPrefix returns the range a (masked) prefix covers.
func FromPrefix(p netip.Prefix) Range {
	p = p.Masked()
	return Range{First: p.Addr(), Last: lastOf(p)}
}

func lastOf(p netip.Prefix) netip.Addr {
	v4 := p.Addr().Is4()
	host := uint(p.Addr().BitLen() - p.Bits())
	ones := U128{^uint64(0), ^uint64(0)}
	mask := ones
	if host < 128 {
		mask = U128{}.AddSmall(1).Shl(host).Sub(U128{Lo: 1})
	}
	base := FromAddr(p.Masked().Addr())
	return U128{base.Hi | mask.Hi, base.Lo | mask.Lo}.ToAddr(v4)
}

// Is4 reports whether the range is IPv4.
func (r Range) Is4() bool { return r.First.Is4() }

// Contains reports whether a lies in r (same family).
func (r Range) Contains(a netip.Addr) bool {
	return a.Is4() == r.Is4() && !a.Less(r.First) && !r.Last.Less(a)
}

// Overlaps reports whether r and o share an address.
func (r Range) Overlaps(o Range) bool {
	return r.Is4() == o.Is4() && !r.Last.Less(o.First) && !o.Last.Less(r.First)
}

// Span is Last-First: the number of addresses minus one, which always fits
// in 128 bits (the count of ::/0 does not).
func (r Range) Span() U128 { return FromAddr(r.Last).Sub(FromAddr(r.First)) }

// Size is the number of addresses in r.
func (r Range) Size() *big.Int {
	s := r.Span().Big()
	return s.Add(s, big.NewInt(1))
}

// Offset returns the position of a inside r (a must be in r).
func (r Range) Offset(a netip.Addr) U128 { return FromAddr(a).Sub(FromAddr(r.First)) }

// At returns the address at offset off from First.
func (r Range) At(off U128) netip.Addr { return FromAddr(r.First).Add(off).ToAddr(r.Is4()) }

// String writes the range as a CIDR when it is exactly one, else first-last.
func (r Range) String() string {
	if cidrs := r.CIDRs(); len(cidrs) == 1 {
		return cidrs[0].String()
	}
	return r.First.String() + "-" + r.Last.String()
}

// MarshalText writes String(), so ranges render naturally in YAML and JSON.
func (r Range) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText parses with Parse.
func (r *Range) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// CIDRs returns the smallest list of prefixes that covers exactly r: no
// address outside r, every address inside it. Calico's service-IP options
// take CIDRs only, so this is how ranges reach it.
func (r Range) CIDRs() []netip.Prefix {
	v4 := r.Is4()
	width := 128
	if v4 {
		width = 32
	}
	cur := FromAddr(r.First)
	last := FromAddr(r.Last)
	var out []netip.Prefix
	for {
		// remaining = last-cur+1, represented as span to avoid overflow.
		span := last.Sub(cur)
		k := cur.TrailingZeros()
		if k > width {
			k = width
		}
		// Largest block 2^k with 2^k-1 <= span.
		for k > 0 && blockTooBig(k, span) {
			k--
		}
		out = append(out, netip.PrefixFrom(cur.ToAddr(v4), width-k))
		blockEnd := cur.Add(U128{}.AddSmall(1).Shl(uint(k)).Sub(U128{Lo: 1}))
		if k == 128 || blockEnd.Cmp(last) >= 0 {
			return out
		}
		cur = blockEnd.AddSmall(1)
	}
}

// blockTooBig reports whether 2^k-1 > span.
func blockTooBig(k int, span U128) bool {
	if k >= 128 {
		return !(span.Hi == ^uint64(0) && span.Lo == ^uint64(0))
	}
	return U128{}.AddSmall(1).Shl(uint(k)).Sub(U128{Lo: 1}).Cmp(span) > 0
}

// BuggyCount returns how many IPv4 addresses in r end in .0 or .255, the
// addresses avoid-buggy-ips skips. It is 0 for IPv6.
func (r Range) BuggyCount() uint64 {
	if !r.Is4() {
		return 0
	}
	a, b := FromAddr(r.First).Lo, FromAddr(r.Last).Lo
	return congruent(a, b, 0) + congruent(a, b, 255)
}

// congruent counts x in [a, b] with x%256 == rem.
func congruent(a, b, rem uint64) uint64 {
	upTo := func(n uint64) uint64 { // count in [0, n]
		if n < rem {
			return 0
		}
		return (n-rem)/256 + 1
	}
	if a == 0 {
		return upTo(b)
	}
	return upTo(b) - upTo(a-1)
}

// SubnetRouterAnycast returns the all-zeros address of an IPv6 range that is
// exactly one prefix of length 126 or shorter: RFC 4291 §2.6.1 reserves it
// as the Subnet-Router anycast address of that prefix, and a router with the
// prefix on an interface answers for it itself. A /127 (RFC 6164) or /128
// has none, and neither has a range that is not a single prefix, whose
// first address is not a prefix's all-zeros address in any sense the
// operator wrote.
func (r Range) SubnetRouterAnycast() (netip.Addr, bool) {
	if r.Is4() {
		return netip.Addr{}, false
	}
	cidrs := r.CIDRs()
	if len(cidrs) != 1 || cidrs[0].Bits() > 126 {
		return netip.Addr{}, false
	}
	return r.First, true
}

// AvoidedCount returns how many addresses of r avoid-buggy-ips keeps back:
// the IPv4 .0 and .255 addresses, or an IPv6 prefix's Subnet-Router anycast
// address.
func (r Range) AvoidedCount() uint64 {
	if _, ok := r.SubnetRouterAnycast(); ok {
		return 1
	}
	return r.BuggyCount()
}

// IsBuggy reports whether a is an IPv4 address ending in .0 or .255, which
// some routers and clients drop as network or broadcast addresses.
func IsBuggy(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	last := a.As4()[3]
	return last == 0 || last == 255
}
