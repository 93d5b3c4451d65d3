package config

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/calico-lb/calico-lb/workload/iprange"
)

func rangesOf(ss ...string) []iprange.Range {
	out := make([]iprange.Range, len(ss))
	for i, s := range ss {
		out[i] = iprange.MustParse(s)
	}
	return out
}

// expectErrors checks that err holds one error per want entry, in order,
// each naming the field and containing every fragment.
func expectErrors(t *testing.T, err error, want ...[]string) {
	t.Helper()
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error = %v (%T), want config.Errors", err, err)
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), errs)
	}
	for i, w := range want {
		got := errs[i].Error()
		for _, frag := range w {
			if !strings.Contains(got, frag) {
				t.Errorf("error %d = %q, want it to contain %q", i, got, frag)
			}
		}
	}
}

func TestParsePoolsPlain(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"10.208.1.0/24", []string{"10.208.1.0/24"}},
		{"10.0.0.0/24, 10.0.1.10-10.0.1.20 fd00::/120", []string{"10.0.0.0/24", "10.0.1.10-10.0.1.20", "fd00::/120"}},
		{"10.0.1.10 - 10.0.1.20,10.0.2.1 -10.0.2.9", []string{"10.0.1.10-10.0.1.20", "10.0.2.1-10.0.2.9"}},
		{"[10.0.0.0/24, fd00::1-fd00::9]", []string{"10.0.0.0/24", "fd00::1-fd00::9"}},
		{"- 10.0.0.0/24\n- 10.0.1.0/24\n", []string{"10.0.0.0/24", "10.0.1.0/24"}},
		{"fd00::/64", []string{"fd00::/64"}},
	}
	for _, tc := range tests {
		pools, err := ParsePools(tc.in, true)
		if err != nil {
			t.Errorf("ParsePools(%q): %v", tc.in, err)
			continue
		}
		want := []Pool{{Name: "default", Addresses: rangesOf(tc.want...), AutoAssign: true, AvoidBuggyIPs: true}}
		if !reflect.DeepEqual(pools, want) {
			t.Errorf("ParsePools(%q) = %+v, want %+v", tc.in, pools, want)
		}
	}
	if pools, err := ParsePools("  ", true); err != nil || pools != nil {
		t.Errorf("empty pools = %v, %v", pools, err)
	}
	if pools, _ := ParsePools("10.0.0.0/24", false); pools[0].AvoidBuggyIPs {
		t.Error("avoid-buggy-ips default not applied")
	}
}

func TestParsePoolsNamed(t *testing.T) {
	in := `{public: {addresses: [203.0.113.0/28], auto-assign: false},
 default: {addresses: [10.208.1.0/24], namespaces: [prod], service-selector: "tier=web", priority: 10, avoid-buggy-ips: true},
 v6: fd00:1::/120,
 edge: {addresses: "10.9.0.1-10.9.0.9 10.9.1.0/30", communities: ["65000:100", no-export, "4200000000:1:2"], local-pref: 200}}`
	pools, err := ParsePools(in, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []Pool{
		{Name: "public", Addresses: rangesOf("203.0.113.0/28"), AutoAssign: false, AvoidBuggyIPs: false},
		{Name: "default", Addresses: rangesOf("10.208.1.0/24"), AutoAssign: true, AvoidBuggyIPs: true, Namespaces: []string{"prod"}, ServiceSelector: "tier=web", Priority: 10},
		{Name: "v6", Addresses: rangesOf("fd00:1::/120"), AutoAssign: true},
		{Name: "edge", Addresses: rangesOf("10.9.0.1-10.9.0.9", "10.9.1.0/30"), AutoAssign: true, Communities: []Community{MustCommunity("65000:100"), MustCommunity("no-export"), MustCommunity("4200000000:1:2")}, LocalPref: 200},
	}
	if !reflect.DeepEqual(pools, want) {
		t.Fatalf("got\n%+v\nwant\n%+v", pools, want)
	}
}

func TestParsePoolsErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want [][]string
	}{
		{"invalid CIDR", "10.0.0.0/33", [][]string{{"pools[0]", `"10.0.0.0/33" is not a valid CIDR`}}},
		{"host bits", "{a: {addresses: [10.0.0.5/24]}}", [][]string{{"pools.a.addresses[0]", "host bits set", "10.0.0.0/24"}}},
		{"reversed range", "10.0.0.20-10.0.0.10", [][]string{{"pools[0]", "reversed", "10.0.0.10-10.0.0.20"}}},
		{"range across families", "10.0.0.1-fd00::1", [][]string{{"mixes IPv4 and IPv6", "split it"}}},
		{"overlap across pools", "{a: {addresses: [10.0.0.0/24]}, b: {addresses: [10.0.0.128-10.0.1.5]}}",
			[][]string{{"pools.b.addresses[0]", "10.0.0.128-10.0.1.5 overlaps pool \"a\" (10.0.0.0/24)", "one pool only"}}},
		{"overlap in one pool", "10.0.0.0/24 10.0.0.7", [][]string{{"pools.default.addresses[1]", "another range of the same pool"}}},
		{"one range overlapping two", "{a: 10.0.0.0/16, b: 10.0.1.0/24, c: 10.0.2.0/24}", [][]string{{"pools.b"}, {"pools.c", `pool "a"`}}},
		{"duplicate names", "a: {addresses: [10.0.0.0/24]}\na: {addresses: [10.0.1.0/24]}\n", [][]string{{"pools.a (line 2)", "defined twice"}}},
		{"invalid name", "{Public_IPs: 10.0.0.0/24}", [][]string{{"Public_IPs", "not a valid pool name", `"public-ips"`}}},
		{"no addresses key", "{a: {auto-assign: false}}", [][]string{{"pools.a", "has no addresses"}}},
		{"empty addresses", "{a: {addresses: []}}", [][]string{{"pools.a.addresses", "is empty"}}},
		{"unknown key", "{a: {addresses: [10.0.0.0/24], auto_assign: false}}", [][]string{{"pools.a.auto_assign", "unknown key", `did you mean "auto-assign"`}}},
		{"typo", "{a: {adresses: [10.0.0.0/24]}}", [][]string{{"pools.a.adresses", `did you mean "addresses"`}}},
		{"invalid selector", "{a: {addresses: [10.0.0.0/24], service-selector: 'tier in ('}}", [][]string{{"pools.a.service-selector", "not a valid label selector"}}},
		{"invalid namespace", "{a: {addresses: [10.0.0.0/24], namespaces: [Prod]}}", [][]string{{"pools.a.namespaces[0]", `"Prod" is not a namespace name`}}},
		{"bad bool", "{a: {addresses: [10.0.0.0/24], auto-assign: maybe}}", [][]string{{"pools.a.auto-assign", "must be true or false"}}},
		{"negative priority", "{a: {addresses: [10.0.0.0/24], priority: -1}}", [][]string{{"pools.a.priority", "out of range"}}},
		{"bad community", "{a: {addresses: [10.0.0.0/24], communities: ['65536:1']}}", [][]string{{"pools.a.communities[0]", "0 to 65535"}}},
		{"zero local-pref", "{a: {addresses: [10.0.0.0/24], local-pref: 0}}", [][]string{{"pools.a.local-pref", "omit it"}}},
		{"broken YAML", "{a: {addresses: [10.0.0.0/24]}", [][]string{{"pools", "not valid YAML"}}},
		{"pool is a number", "{a: {addresses: [10.0.0.0/24]}, b: {addresses: 7}}", [][]string{{"pools.b.addresses[0]", `"7" is not an IP address`}}},
		{"every error is reported", "{a: {addresses: [10.0.0.0/33, 10.0.0.9-10.0.0.1]}, B: {bogus: 1, addresses: [fd00::/64]}}",
			[][]string{{"pools.a.addresses[0]"}, {"pools.a.addresses[1]"}, {"pools.B", "valid pool name"}, {"pools.B.bogus", "unknown key"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePools(tc.in, true)
			expectErrors(t, err, tc.want...)
		})
	}
}

func TestParsePeers(t *testing.T) {
	peers, err := ParsePeers("spine-peers", `[{address: 10.0.255.1, as-number: 65100, hold-time: 9, keepalive: 3, multihop: 2, bfd: true, password-key: spine1},
 {address: "fd00::1", as-number: 4200000001, bfd: true, bfd-interval: 100, bfd-multiplier: 5, source-address: "fd00::2"},
 {address: 10.0.255.2, as-number: 65100, hold-time: 0, keepalive: 0, max-prefixes: 50}]`)
	if err != nil {
		t.Fatal(err)
	}
	want := []Peer{
		{Address: netip.MustParseAddr("10.0.255.1"), ASNumber: 65100, HoldTime: 9, Keepalive: 3, Multihop: 2, BFD: true, BFDInterval: 300, BFDMultiplier: 3, PasswordKey: "spine1", MaxPrefixes: DefaultMaxPrefixes},
		{Address: netip.MustParseAddr("fd00::1"), ASNumber: 4200000001, HoldTime: 90, Keepalive: 30, BFD: true, BFDInterval: 100, BFDMultiplier: 5, SourceAddress: netip.MustParseAddr("fd00::2"), MaxPrefixes: DefaultMaxPrefixes},
		{Address: netip.MustParseAddr("10.0.255.2"), ASNumber: 65100, BFDInterval: 300, BFDMultiplier: 3, MaxPrefixes: 50},
	}
	if !reflect.DeepEqual(peers, want) {
		t.Fatalf("got\n%+v\nwant\n%+v", peers, want)
	}
	// The calico charm's own minimal style.
	if p, err := ParsePeers("spine-peers", "- address: 10.0.0.1\n  as-number: 64512\n"); err != nil || p[0].HoldTime != 90 || p[0].Keepalive != 30 {
		t.Fatalf("calico style: %+v %v", p, err)
	}
	if p, err := ParsePeers("spine-peers", "[]"); err != nil || p != nil {
		t.Fatalf("empty: %v %v", p, err)
	}
}

func TestParsePeersErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want [][]string
	}{
		{"no address", "[{as-number: 65100}]", [][]string{{"spine-peers[0]", "no address"}}},
		{"no AS", "[{address: 10.0.0.1}]", [][]string{{"spine-peers[0]", "no as-number"}}},
		{"AS zero", "[{address: 10.0.0.1, as-number: 0}]", [][]string{{"spine-peers[0].as-number", "out of range", "1 to 4294967295"}}},
		{"AS too big", "[{address: 10.0.0.1, as-number: 4294967296}]", [][]string{{"as-number", "out of range"}}},
		{"AS_TRANS", "[{address: 10.0.0.1, as-number: 23456}]", [][]string{{"as-number", "AS_TRANS"}}},
		{"bad address", "[{address: 10.0.0.300, as-number: 1}]", [][]string{{"spine-peers[0].address", `"10.0.0.300" is not an IP address`}}},
		{"hold time below 3", "[{address: 10.0.0.1, as-number: 1, hold-time: 2}]", [][]string{{"hold-time", "at least 3 s", "bfd: true"}}},
		{"keepalive not below hold", "[{address: 10.0.0.1, as-number: 1, hold-time: 9, keepalive: 9}]", [][]string{{"keepalive", "must be below hold-time 9", "3"}}},
		{"keepalive zero", "[{address: 10.0.0.1, as-number: 1, hold-time: 9, keepalive: 0}]", [][]string{{"keepalive", "at least 1 s"}}},
		{"keepalive without hold", "[{address: 10.0.0.1, as-number: 1, hold-time: 0, keepalive: 3}]", [][]string{{"keepalive", "must be 0 when hold-time is 0"}}},
		{"bfd fields without bfd", "[{address: 10.0.0.1, as-number: 1, bfd-interval: 100}]", [][]string{{"spine-peers[0]", "need bfd: true"}}},
		{"bfd interval range", "[{address: 10.0.0.1, as-number: 1, bfd: true, bfd-interval: 5}]", [][]string{{"bfd-interval", "10 to 60000"}}},
		{"duplicate", "[{address: 10.0.0.1, as-number: 1}, {address: 10.0.0.1, as-number: 2}]", [][]string{{"spine-peers[1]", "listed twice"}}},
		{"password key", "[{address: 10.0.0.1, as-number: 1, password-key: Spine_1}]", [][]string{{"password-key", "not a Juju secret key"}}},
		{"unknown key", "[{address: 10.0.0.1, as-number: 1, holdtime: 9}]", [][]string{{"spine-peers[0].holdtime", `did you mean "hold-time"`}}},
		{"source family", "[{address: 10.0.0.1, as-number: 1, source-address: 'fd00::1'}]", [][]string{{"source-address", "different IP families"}}},
		{"not a list", "{address: 10.0.0.1}", [][]string{{"spine-peers", "must be a list of peers"}}},
		{"multihop range", "[{address: 10.0.0.1, as-number: 1, multihop: 0}]", [][]string{{"multihop", "1 to 255"}}},
		{"max-prefixes zero", "[{address: 10.0.0.1, as-number: 1, max-prefixes: 0}]", [][]string{{"spine-peers[0].max-prefixes", "1 to 2000000", "filter them on the router"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePeers("spine-peers", tc.in)
			expectErrors(t, err, tc.want...)
		})
	}
}

func TestSubnetOptions(t *testing.T) {
	// The AS-per-rack example of the calico charm's documentation.
	sas, err := ParseSubnetAS("subnet-as-numbers", "10.0.0.0/24: 64512\n10.0.1.0/24: 64512\n10.0.2.0/24: 64513\n10.0.3.0/24: 64513\n")
	if err != nil || len(sas) != 4 || sas[2].ASNumber != 64513 || sas[2].Subnet != netip.MustParsePrefix("10.0.2.0/24") {
		t.Fatalf("subnet-as-numbers: %+v %v", sas, err)
	}
	sps, err := ParseSubnetPeers("subnet-spine-peers", "10.0.0.0/24:\n- address: 10.0.0.1\n  as-number: 64512\n10.0.1.0/24:\n- address: 10.0.1.1\n  as-number: 64512\n")
	if err != nil || len(sps) != 2 || sps[1].Peers[0].Address != netip.MustParseAddr("10.0.1.1") {
		t.Fatalf("subnet-spine-peers: %+v %v", sps, err)
	}
	_, err = ParseSubnetAS("subnet-as-numbers", "{10.0.0.1/24: 64512, bogus: 1, 10.0.2.0/24: 0}")
	expectErrors(t, err, []string{`subnet-as-numbers["10.0.0.1/24"]`, "host bits", "10.0.0.0/24"}, []string{`["bogus"]`, "not a CIDR"}, []string{`["10.0.2.0/24"]`, "out of range"})
	_, err = ParseSubnetPeers("subnet-spine-peers", "{10.0.0.0/24: [{as-number: 1}]}")
	expectErrors(t, err, []string{`subnet-spine-peers["10.0.0.0/24"][0]`, "no address"})
}

func TestFromOptions(t *testing.T) {
	o := DefaultOptions()
	o.Pools = "10.208.1.0/24"
	// auto with nothing to go on does not guess l2 (ARP speakers on a
	// routed fabric): it names the three choices.
	_, _, err := FromOptions(o)
	expectErrors(t, err, []string{"peering-mode", "auto cannot tell", "peering-mode=calico", "peering-mode=spine", "peering-mode=l2 if the nodes and their clients share one L2 segment"})
	o.PeeringMode = "l2"
	c, res, err := FromOptions(o)
	if err != nil || c.Mode != ModeL2 || res.String() != "" {
		t.Fatalf("l2: %v %s (%s)", err, c.Mode, res)
	}
	o.PeeringMode = "auto"
	if c.ServiceIPOption != ServiceIPLoadBalancer || c.BGP.ASNumber != 64512 || c.LogLevel != "info" || len(c.Pools) != 1 {
		t.Fatalf("defaults: %+v", c)
	}
	o.JujuCredentials = "secret:cs0b6dlmp25c7bhcq8ag"
	if c, res, _ = FromOptions(o); c.Mode != ModeCalico || !strings.Contains(res.String(), "Calico link") {
		t.Fatalf("with credentials: %s (%s)", c.Mode, res)
	}
	o.SpinePeers = "[{address: 10.0.255.1, as-number: 65100}]"
	if c, res, _ = FromOptions(o); c.Mode != ModeSpine || !strings.Contains(res.String(), "spine peers") {
		t.Fatalf("with spine peers: %s (%s)", c.Mode, res)
	}
	o.PeeringMode = "calico"
	if c, res, _ = FromOptions(o); c.Mode != ModeCalico || res.String() != "" {
		t.Fatalf("explicit mode: %s (%s)", c.Mode, res)
	}
	o.CalicoServiceIPOption = "external"
	if c, _, _ = FromOptions(o); c.ServiceIPOption != ServiceIPExternal {
		t.Fatalf("service IP option: %s", c.ServiceIPOption)
	}
	// Every bad option is reported at once.
	bad := DefaultOptions()
	bad.Pools = "10.0.0.0/33"
	bad.PeeringMode = "bgp"
	bad.ASNumber = 0
	bad.LogLevel = "loud"
	bad.LoadBalancerClass = "not a class"
	bad.CalicoModel = "my-model"
	bad.CalicoApplication = "Calico"
	bad.SpeakerNodeSelector = "rack in ("
	bad.L2Interfaces = "eth0 eth0 a/b"
	bad.CalicoServiceIPOption = "both"
	bad.JujuCredentials = "creds"
	_, _, err = FromOptions(bad)
	expectErrors(t, err,
		[]string{"pools[0]", "not a valid CIDR"},
		[]string{"as-number", "1 to 4294967295"},
		[]string{"peering-mode", `"bgp" is not a mode`, "auto, calico, spine or l2"},
		[]string{"calico-application", `"Calico"`},
		[]string{"calico-model", "model-uuid"},
		[]string{"juju-credentials", "juju add-secret"},
		[]string{"calico-service-ip-option", `"both"`},
		[]string{"load-balancer-class", `"not a class"`},
		[]string{"log-level", `"loud"`, "debug, info, warn, error"},
		[]string{"speaker-node-selector", "not a valid label selector"},
		[]string{"l2-interfaces[1]", "listed twice"},
		[]string{"l2-interfaces[2]", `"a/b" is not an interface name`},
	)
	var errs Errors
	errors.As(err, &errs)
	if s := errs.Summary(); !strings.HasPrefix(s, "pools[0]:") || !strings.HasSuffix(s, "(and 11 more)") {
		t.Fatalf("Summary = %q", s)
	}
	// Spine mode needs peers; password keys need the secret.
	sp := DefaultOptions()
	sp.PeeringMode = "spine"
	_, _, err = FromOptions(sp)
	expectErrors(t, err, []string{"peering-mode", "no spine peers are set", "spine-peers="})
	sp.SpinePeers = "[{address: 10.0.255.1, as-number: 65100, password-key: spine1}]"
	_, _, err = FromOptions(sp)
	expectErrors(t, err, []string{"bgp-passwords", "password-key \"spine1\""})
	sp.BGPPasswords = "secret:cs0b6dlmp25c7bhcq8ag"
	if _, _, err = FromOptions(sp); err != nil {
		t.Fatal(err)
	}
}

func fullConfig() *Config {
	c := Default()
	c.Mode = ModeSpine
	c.ServiceIPOption = ServiceIPExternal
	c.LoadBalancerClass = "example.com/bare-metal"
	c.LogLevel = "debug"
	c.APIAddress = "127.0.0.1:9500"
	c.Pools = []Pool{
		{Name: "public", Addresses: rangesOf("203.0.113.0/28", "2001:db8::/120"), AvoidBuggyIPs: true, Priority: 1, Communities: []Community{MustCommunity("65000:1")}, LocalPref: 150},
		{Name: "default", Addresses: rangesOf("10.208.1.1-10.208.1.9"), AutoAssign: true, Namespaces: []string{"prod", "staging"}, ServiceSelector: "tier in (web,api)"},
	}
	c.BGP = BGP{
		ASNumber:        4200000000,
		SubnetASNumbers: []SubnetAS{{netip.MustParsePrefix("10.0.0.0/24"), 64513}},
		Peers:           []Peer{{Address: netip.MustParseAddr("10.0.255.1"), ASNumber: 65100, HoldTime: 9, Keepalive: 3, Multihop: 2, BFD: true, BFDInterval: 100, BFDMultiplier: 3, PasswordKey: "spine1", SourceAddress: netip.MustParseAddr("10.0.0.5"), MaxPrefixes: 500}},
		SubnetPeers: []SubnetPeers{{Subnet: netip.MustParsePrefix("fd00::/64"), Peers: []Peer{
			{Address: netip.MustParseAddr("fd00::1"), ASNumber: 65101, HoldTime: 0, Keepalive: 0, BFDInterval: 300, BFDMultiplier: 3, MaxPrefixes: DefaultMaxPrefixes},
		}}},
		PasswordFile: "/etc/calico-lb/bgp-passwords.yaml",
	}
	c.Speakers.NodeSelector = "rack=r1"
	c.L2.Interfaces = []string{"eth0", "bond0.100"}
	return c
}

func TestFileRoundTrip(t *testing.T) {
	for _, c := range []*Config{Default(), fullConfig()} {
		data, err := c.Render()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(data)
		if err != nil {
			t.Fatalf("Parse(Render()): %v\n%s", err, data)
		}
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("round trip changed the config:\n%s\ngot  %+v\nwant %+v", data, back, c)
		}
	}
}

func TestParseFile(t *testing.T) {
	c, err := Parse([]byte("mode: l2\npools:\n  default: {addresses: [10.208.1.0/24]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != ModeL2 || c.APIAddress != DefaultAPIAddress || !c.Pools[0].AvoidBuggyIPs || !c.Pools[0].AutoAssign {
		t.Fatalf("defaults not applied: %+v", c)
	}
	if c, err := Parse(nil); err != nil || c.Mode != ModeCalico {
		t.Fatalf("empty file: %+v %v", c, err)
	}
	_, err = Parse([]byte("mode: auto\npool:\n  default: {addresses: [10.0.0.0/24]}\nbgp:\n  peers: [{address: 10.0.0.1}]\napi-address: localhost\n"))
	expectErrors(t, err,
		[]string{"pool (line 2)", `unknown key (did you mean "pools"?)`},
		[]string{"bgp.peers[0] (line 5)", "no as-number"},
		[]string{"mode", `"auto" is not a mode`},
		[]string{"api-address", "127.0.0.1:9402"},
	)
	_, err = Parse([]byte("mode: spine\n"))
	expectErrors(t, err, []string{"mode", "no spine peers"})
	_, err = Parse([]byte("[1, 2]"))
	expectErrors(t, err, []string{"must be a mapping"})
	_, err = Parse([]byte("pools: [10.0.0.0/24]"))
	expectErrors(t, err, []string{"pools", "must be a mapping of pool name to pool"})
}

func TestAllocatorPools(t *testing.T) {
	c := fullConfig()
	ap, err := c.AllocatorPools()
	if err != nil {
		t.Fatal(err)
	}
	if len(ap) != 2 || ap[1].Selector == nil || ap[0].Selector != nil {
		t.Fatalf("%+v", ap)
	}
	if !ap[1].Selector.Matches(map[string]string{"tier": "api"}) || ap[1].Selector.Matches(map[string]string{"tier": "db"}) {
		t.Fatal("selector does not match as kubectl would")
	}
	if ap[0].Priority != 1 || ap[0].AutoAssign || !ap[0].AvoidBuggyIPs || len(ap[0].Ranges) != 2 {
		t.Fatalf("pool fields: %+v", ap[0])
	}
}

// source-address in an option that every speaker applies would bind one
// node's address on all of them: refused, naming the fix.
func TestSourceAddressInSharedPeersRefused(t *testing.T) {
	for _, tc := range []struct{ name, spine, subnet, field string }{
		{"spine-peers", "[{address: 10.0.255.1, as-number: 65100, source-address: 10.0.0.5}]", "", "spine-peers[0].source-address"},
		{"subnet-spine-peers", "", "{10.0.0.0/24: [{address: 10.0.0.1, as-number: 64512, source-address: 10.0.0.5}]}", "subnet-spine-peers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOptions()
			o.PeeringMode, o.SpinePeers, o.SubnetSpinePeers = "spine", tc.spine, tc.subnet
			_, _, err := FromOptions(o)
			if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), "leave source-address out") {
				t.Fatalf("FromOptions = %v, want %s refused with the fix", err, tc.field)
			}
		})
	}
}
