package speaker

import (
	"fmt"
	"net/netip"
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
// from the password file. When the file cannot be read, the peers that
// need a password are returned in unreadable (to be kept as they are:
// dropping an established session for a file the kubelet is rewriting
// would withdraw every route) and the others as usual.
func peersFor(cfg *config.Config, node Node, asn uint32, files Files) (peers []Peer, unreadable []netip.Addr, err error) {
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
	var readErr error
	var missing []string
	out := make([]Peer, 0, len(byAddr))
	for _, p := range byAddr {
		peer := Peer{Peer: p, LocalAS: asn}
		if p.PasswordKey != "" {
			if passwords == nil && readErr == nil {
				passwords, readErr = readPasswords(files, cfg.BGP.PasswordFile)
			}
			if readErr != nil {
				unreadable = append(unreadable, p.Address)
				continue
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
	slices.SortFunc(unreadable, netip.Addr.Compare)
	switch {
	case readErr != nil:
		return out, unreadable, fmt.Errorf("%w; the sessions of %v keep the settings they had, the other peers are unaffected", readErr, unreadable)
	case len(missing) > 0:
		return out, nil, fmt.Errorf("no password in %s for peers %v; they are not dialled", cfg.BGP.PasswordFile, missing)
	}
	return out, nil, nil
}

// readPasswords reads the YAML mapping password-key -> password that the
// charm renders from the bgp-passwords secret.
func readPasswords(files Files, path string) (map[string]string, error) {
	data, err := files.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("password file: %w", err)
	}
	var m map[string]string
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("password file %s is not a YAML mapping of key to password", path)
	}
	return m, nil
}
