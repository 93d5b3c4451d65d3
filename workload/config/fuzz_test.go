package config

import (
	"reflect"
	"strings"
	"testing"
)

// The fuzzers check that no input panics, and that whatever is accepted
// survives a render and a parse unchanged, which is how the charm hands it
// to the workload.

func FuzzParsePools(f *testing.F) {
	for _, s := range []string{
		"10.208.1.0/24",
		"10.0.0.0/24, 10.0.1.10-10.0.1.20 fd00::/120",
		"{public: {addresses: [203.0.113.0/28], auto-assign: false}, default: {addresses: [10.208.1.0/24], namespaces: [prod], service-selector: \"tier=web\", priority: 10, avoid-buggy-ips: true}}",
		"a: &x [10.0.0.0/24]\nb: *x\n",
		"{a: {addresses: [10.0.0.5/24]}}",
		"- 10.0.0.1 - 10.0.0.9",
		"{a: {communities: [\"1:2:3\"], local-pref: 7, addresses: fd00::1-fd00::9}}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pools, err := ParsePools(s, true)
		if err != nil {
			if _, ok := err.(Errors); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatal("empty error message")
			}
			return
		}
		c := Default()
		c.Pools = pools
		data, err := c.Render()
		if err != nil {
			t.Fatalf("Render: %v", err)
		}
		back, err := Parse(data)
		if err != nil {
			t.Fatalf("accepted pools do not parse back: %v\n%s", err, data)
		}
		if !reflect.DeepEqual(back.Pools, pools) {
			t.Fatalf("round trip changed the pools:\n%+v\n%+v", pools, back.Pools)
		}
		if _, err := c.AllocatorPools(); err != nil {
			t.Fatalf("accepted pools rejected by AllocatorPools: %v", err)
		}
	})
}

func FuzzParsePeers(f *testing.F) {
	for _, s := range []string{
		"[{address: 10.0.255.1, as-number: 65100, hold-time: 9, keepalive: 3, multihop: 2, bfd: true, password-key: spine1}]",
		"- address: fd00::1\n  as-number: 4200000000\n  hold-time: 0\n  keepalive: 0\n",
		"[{address: 10.0.0.1, as-number: 1, bfd: true, bfd-interval: 50, bfd-multiplier: 9, source-address: 10.0.0.2}]",
		"[]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		peers, err := ParsePeers("spine-peers", s)
		if err != nil || len(peers) == 0 {
			return
		}
		c := Default()
		c.Mode = ModeSpine
		c.BGP.Peers = peers
		data, err := c.Render()
		if err != nil {
			t.Fatalf("Render: %v", err)
		}
		back, err := Parse(data)
		if err != nil {
			t.Fatalf("accepted peers do not parse back: %v\n%s", err, data)
		}
		if !reflect.DeepEqual(back.BGP.Peers, peers) {
			t.Fatalf("round trip changed the peers:\n%+v\n%+v", peers, back.BGP.Peers)
		}
	})
}

func FuzzParseFile(f *testing.F) {
	full, _ := fullConfig().Render()
	f.Add(string(full))
	f.Add("mode: l2\npools:\n  default: {addresses: [10.208.1.0/24]}\n")
	f.Add("mode: spine\nbgp:\n  subnet-peers: {10.0.0.0/24: [{address: 10.0.0.1, as-number: 65000}]}\n  subnet-as-numbers: {10.0.0.0/24: 64600}\n")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse([]byte(s))
		if err != nil {
			return
		}
		data, err := c.Render()
		if err != nil {
			t.Fatalf("Render: %v", err)
		}
		back, err := Parse(data)
		if err != nil {
			t.Fatalf("accepted config does not parse back: %v\n%s", err, data)
		}
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", c, back)
		}
	})
}
