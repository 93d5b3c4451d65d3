package speaker

import (
	"fmt"
	"net/netip"
	"os"
	"slices"

	"gopkg.in/yaml.v2"

	"github.com/calico-lb/calico-lb/workload/config"
)

// asFor is the node's AS: subnet-as-numbers (longest match) or as-number.
func asFor(cfg *config.Config, node Node) uint32 {
	best, bits := cfg.BGP.ASNumber, -1
	for _, sa := range cfg.BGP.SubnetASNumbers {
		for _, a := range node.Addresses {
			if sa.Subnet.Contains(a) && sa.Subnet.Bits() > bits {
				best, bits = sa.ASNumber, sa.Subnet.Bits()
			}
		}
	}
	return best
}

func routerID(node Node) netip.Addr {
	for _, a := range node.Addresses {
		if a.Is4() {
			return a
		}
	}
	return netip.Addr{}
}

// peersFor is the global spine peers plus those of the node's subnets (a
// subnet peer replaces a global one with the same address), with passwords
// from the password file.
func peersFor(cfg *config.Config, node Node, asn uint32) ([]Peer, error) {
	byAddr := map[netip.Addr]config.Peer{}
	for _, p := range cfg.BGP.Peers {
		byAddr[p.Address] = p
	}
	for _, sp := range cfg.BGP.SubnetPeers {
		for _, a := range node.Addresses {
			if sp.Subnet.Contains(a) {
				for _, p := range sp.Peers {
					byAddr[p.Address] = p
				}
			}
		}
	}
	var passwords map[string]string
	var missing []string
	out := make([]Peer, 0, len(byAddr))
	for _, p := range byAddr {
		peer := Peer{Peer: p, LocalAS: asn}
		if p.PasswordKey != "" {
			if passwords == nil {
				var err error
				if passwords, err = readPasswords(cfg.BGP.PasswordFile); err != nil {
					return nil, err
				}
			}
			pw, ok := passwords[p.PasswordKey]
			if !ok {
				missing = append(missing, fmt.Sprintf("%s (key %q)", p.Address, p.PasswordKey))
				continue
			}
			peer.Password = pw
		}
		out = append(out, peer)
	}
	slices.SortFunc(out, func(a, b Peer) int { return a.Address.Compare(b.Address) })
	if len(missing) > 0 {
		return out, fmt.Errorf("no password in %s for peers %v; they are not dialled", cfg.BGP.PasswordFile, missing)
	}
	return out, nil
}

// readPasswords reads the YAML mapping password-key -> password that the
// charm renders from the bgp-passwords secret.
func readPasswords(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("password file: %w", err)
	}
	var m map[string]string
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("password file %s is not a YAML mapping of key to password", path)
	}
	return m, nil
}
