package iprange

import (
	"math/big"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in, want string // want: String() of the result
		err      string // substring of the error
	}{
		{in: "10.0.0.0/24", want: "10.0.0.0/24"},
		{in: " 10.0.0.10-10.0.0.20 ", want: "10.0.0.10-10.0.0.20"},
		{in: "10.0.0.10 - 10.0.0.20", want: "10.0.0.10-10.0.0.20"},
		{in: "10.0.0.0-10.0.0.255", want: "10.0.0.0/24"},
		{in: "10.0.0.7", want: "10.0.0.7/32"},
		{in: "fd00::/64", want: "fd00::/64"},
		{in: "fd00::1-fd00::ff", want: "fd00::1-fd00::ff"},
		{in: "::/0", want: "::/0"},
		{in: "10.0.0.5/24", err: "host bits set; the network is 10.0.0.0/24"},
		{in: "10.0.0.20-10.0.0.10", err: "reversed; write the lower address first: 10.0.0.10-10.0.0.20"},
		{in: "10.0.0.1-fd00::1", err: "mixes IPv4 and IPv6"},
		{in: "10.0.0.0/33", err: "not a valid CIDR"},
		{in: "10.0.0", err: "not an IP address"},
		{in: "", err: "empty address"},
		{in: "fe80::1%eth0", err: "zone"},
		{in: "::ffff:10.0.0.1", err: "IPv4-mapped"},
		{in: "::ffff:10.0.0.0/120", err: "IPv4-mapped"},
		{in: "10.0.0.1-", err: "end"},
	}
	for _, tc := range tests {
		r, err := Parse(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Parse(%q) error = %v, want it to contain %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if got := r.String(); got != tc.want {
			t.Errorf("Parse(%q).String() = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSizeAndBuggyCount(t *testing.T) {
	tests := []struct {
		r          string
		size       string
		buggy      uint64
		bruteBuggy bool
	}{
		{"10.0.0.0/24", "256", 2, true},
		{"10.0.0.0/22", "1024", 8, true},
		{"10.0.0.1-10.0.0.254", "254", 0, true},
		{"10.0.0.255-10.0.1.0", "2", 2, true},
		{"0.0.0.0/0", "4294967296", 2 * 16777216, false},
		{"fd00::/64", "18446744073709551616", 0, false},
		{"::/0", "340282366920938463463374607431768211456", 0, false},
	}
	for _, tc := range tests {
		r := MustParse(tc.r)
		if got := r.Size().String(); got != tc.size {
			t.Errorf("%s Size = %s, want %s", tc.r, got, tc.size)
		}
		if got := r.BuggyCount(); got != tc.buggy {
			t.Errorf("%s BuggyCount = %d, want %d", tc.r, got, tc.buggy)
		}
	}
	// Brute force on random small IPv4 ranges.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		a := rng.Uint32()
		n := rng.Uint32N(2000)
		if uint64(a)+uint64(n) > 0xffffffff {
			continue
		}
		r := Range{First: U128{Lo: uint64(a)}.ToAddr(true), Last: U128{Lo: uint64(a + n)}.ToAddr(true)}
		var want uint64
		for x := uint64(a); x <= uint64(a+n); x++ {
			if IsBuggy(U128{Lo: x}.ToAddr(true)) {
				want++
			}
		}
		if got := r.BuggyCount(); got != want {
			t.Fatalf("%s BuggyCount = %d, brute force %d", r, got, want)
		}
	}
}

func TestSubnetRouterAnycast(t *testing.T) {
	tests := []struct {
		r       string
		anycast string // "" for none
		avoided uint64
	}{
		{"fd00:208::/120", "fd00:208::", 1},
		{"fd00::-fd00::ff", "fd00::", 1}, // the same prefix, written as a range
		{"fd00::/64", "fd00::", 1},
		{"fd00::/126", "fd00::", 1},
		{"fd00::/127", "", 0}, // RFC 6164 point-to-point: both usable
		{"fd00::5", "", 0},    // a single address
		{"fd00::1-fd00::ff", "", 0},
		{"fd00::-fd00::1ff", "fd00::", 1},
		{"fd00::100-fd00::1ff", "fd00::100", 1}, // fd00::100/120
		{"fd00::-fd00::2ff", "", 0},             // two prefixes
		{"10.0.0.0/24", "", 2},                  // IPv4: .0 and .255 instead
	}
	for _, tc := range tests {
		r := MustParse(tc.r)
		a, ok := r.SubnetRouterAnycast()
		if got := map[bool]string{true: a.String(), false: ""}[ok]; got != tc.anycast {
			t.Errorf("%s SubnetRouterAnycast = %q, want %q", tc.r, got, tc.anycast)
		}
		if got := r.AvoidedCount(); got != tc.avoided {
			t.Errorf("%s AvoidedCount = %d, want %d", tc.r, got, tc.avoided)
		}
	}
}

// checkCover verifies that the prefixes tile r exactly, in order, and that
// no two neighbours could merge into one larger prefix (minimality).
func checkCover(t testing.TB, r Range) {
	t.Helper()
	cidrs := r.CIDRs()
	if len(cidrs) == 0 {
		t.Fatalf("%s: empty cover", r)
	}
	next := FromAddr(r.First)
	total := new(big.Int)
	for i, p := range cidrs {
		if p.Masked() != p {
			t.Fatalf("%s: cover entry %s is not a network address", r, p)
		}
		if p.Addr().Is4() != r.Is4() {
			t.Fatalf("%s: cover entry %s has the wrong family", r, p)
		}
		if FromAddr(p.Addr()) != next {
			t.Fatalf("%s: cover entry %d (%s) does not start where the previous ended", r, i, p)
		}
		pr := FromPrefix(p)
		total.Add(total, pr.Size())
		next = FromAddr(pr.Last).AddSmall(1)
		if i > 0 {
			prev := cidrs[i-1]
			if prev.Bits() == p.Bits() {
				if merged := netip.PrefixFrom(prev.Addr(), prev.Bits()-1).Masked(); merged.Addr() == prev.Addr() && prev.Bits() > 0 {
					t.Fatalf("%s: %s and %s could be one prefix %s", r, prev, p, merged)
				}
			}
		}
	}
	if FromPrefix(cidrs[len(cidrs)-1]).Last != r.Last {
		t.Fatalf("%s: cover ends at %s", r, FromPrefix(cidrs[len(cidrs)-1]).Last)
	}
	if total.Cmp(r.Size()) != 0 {
		t.Fatalf("%s: cover holds %s addresses, range %s", r, total, r.Size())
	}
}

func TestCIDRs(t *testing.T) {
	tests := map[string]string{
		"10.0.0.0/24":                                "10.0.0.0/24",
		"10.0.0.1-10.0.0.254":                        "10.0.0.1/32 10.0.0.2/31 10.0.0.4/30 10.0.0.8/29 10.0.0.16/28 10.0.0.32/27 10.0.0.64/26 10.0.0.128/26 10.0.0.192/27 10.0.0.224/28 10.0.0.240/29 10.0.0.248/30 10.0.0.252/31 10.0.0.254/32",
		"10.0.0.10-10.0.0.20":                        "10.0.0.10/31 10.0.0.12/30 10.0.0.16/30 10.0.0.20/32",
		"0.0.0.0-255.255.255.255":                    "0.0.0.0/0",
		"::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff": "::/0",
		"fd00::-fd00::1:0":                           "fd00::/112 fd00::1:0/128",
		"10.0.0.5":                                   "10.0.0.5/32",
	}
	for in, want := range tests {
		r := MustParse(in)
		var got []string
		for _, p := range r.CIDRs() {
			got = append(got, p.String())
		}
		if strings.Join(got, " ") != want {
			t.Errorf("CIDRs(%s) = %v, want %s", in, got, want)
		}
		checkCover(t, r)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"10.0.0.0/24", "10.0.0.1-10.0.0.9", "fd00::/64", "::", "1.2.3.4", "a-b", "-", "/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			return
		}
		if r.Last.Less(r.First) || r.First.Is4() != r.Last.Is4() {
			t.Fatalf("Parse(%q) = %v: invalid range", s, r)
		}
		back, err := Parse(r.String())
		if err != nil || back != r {
			t.Fatalf("Parse(%q) = %v; round trip of %q gave %v, %v", s, r, r.String(), back, err)
		}
	})
}

func FuzzCIDRs(f *testing.F) {
	f.Add(uint64(0), uint64(10), uint64(0), uint64(1000), false)
	f.Add(uint64(0), uint64(0), ^uint64(0), ^uint64(0), false)
	f.Add(uint64(0), uint64(167772160), uint64(0), uint64(167772415), true)
	f.Fuzz(func(t *testing.T, ah, al, bh, bl uint64, v4 bool) {
		a, b := U128{ah, al}, U128{bh, bl}
		if v4 {
			a, b = U128{Lo: al & 0xffffffff}, U128{Lo: bl & 0xffffffff}
		}
		if b.Cmp(a) < 0 {
			a, b = b, a
		}
		checkCover(t, Range{First: a.ToAddr(v4), Last: b.ToAddr(v4)})
	})
}
