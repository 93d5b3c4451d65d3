package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Parse reads and validates the workload config file. Keys left out take
// their defaults, so a hand-written file can be short:
//
//	mode: calico
//	pools:
//	  default: {addresses: [10.208.1.0/24]}
func Parse(data []byte) (*Config, error) {
	src := string(data)
	d := newDecoder(src)
	c := Default()
	if n := d.parseYAML("config", src); n != nil {
		d.file(n, c)
	}
	d.validate(c)
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	return c, nil
}

// Default is the configuration of an empty file.
func Default() *Config {
	return &Config{
		Mode:            ModeCalico,
		ServiceIPOption: ServiceIPLoadBalancer,
		LogLevel:        DefaultLogLevel,
		APIAddress:      DefaultAPIAddress,
		BGP:             BGP{ASNumber: DefaultASNumber, PasswordFile: DefaultPasswordFile},
	}
}

func (d *decoder) file(n *yaml.Node, c *Config) {
	str := func(dst *string) func(*yaml.Node, string) {
		return func(v *yaml.Node, f string) {
			if s, ok := d.str(v, f); ok {
				*dst = s
			}
		}
	}
	d.mapping(n, "",
		field{"mode", func(v *yaml.Node, f string) {
			if s, ok := d.str(v, f); ok {
				c.Mode = Mode(s)
			}
		}},
		field{"calico-service-ip-option", str(&c.ServiceIPOption)},
		field{"load-balancer-class", str(&c.LoadBalancerClass)},
		field{"log-level", str(&c.LogLevel)},
		field{"api-address", str(&c.APIAddress)},
		field{"pools", func(v *yaml.Node, f string) {
			if isNull(v) {
				return
			}
			if v.Kind != yaml.MappingNode {
				d.errorf(f, v, "must be a mapping of pool name to pool, e.g. {default: {addresses: [10.0.0.0/24]}}, not %s", describe(v))
				return
			}
			c.Pools = d.namedPools(v, f, true)
		}},
		field{"bgp", func(v *yaml.Node, f string) {
			d.mapping(v, f,
				field{"as-number", func(v *yaml.Node, f string) { c.BGP.ASNumber, _ = d.asNumber(v, f) }},
				field{"subnet-as-numbers", func(v *yaml.Node, f string) { c.BGP.SubnetASNumbers = d.subnetAS(v, f) }},
				field{"peers", func(v *yaml.Node, f string) { c.BGP.Peers = d.peers(v, f) }},
				field{"subnet-peers", func(v *yaml.Node, f string) { c.BGP.SubnetPeers = d.subnetPeers(v, f) }},
				field{"password-file", str(&c.BGP.PasswordFile)},
			)
		}},
		field{"speakers", func(v *yaml.Node, f string) {
			d.mapping(v, f, field{"node-selector", str(&c.Speakers.NodeSelector)})
		}},
		field{"l2", func(v *yaml.Node, f string) {
			d.mapping(v, f, field{"interfaces", func(v *yaml.Node, f string) { c.L2.Interfaces, _ = d.strList(v, f) }})
		}},
	)
}

var logLevels = []string{"debug", "info", "warn", "error"}

// validate checks what concerns more than one field, and the enumerations,
// for a file and for charm options alike.
func (d *decoder) validate(c *Config) {
	switch c.Mode {
	case ModeCalico, ModeL2:
	case ModeSpine:
		if len(c.BGP.Peers) == 0 && len(c.BGP.SubnetPeers) == 0 {
			d.errorf(d.name("mode", "peering-mode"), nil, "is spine but no spine peers are set; set spine-peers='[{address: <spine IP>, as-number: <spine AS>}]' or use another mode")
		}
	default:
		d.errorf(d.name("mode", "peering-mode"), nil, "%q is not a mode; use calico, spine or l2", c.Mode)
	}
	switch c.ServiceIPOption {
	case ServiceIPLoadBalancer, ServiceIPExternal:
	default:
		d.errorf("calico-service-ip-option", nil, "%q is not an option; use loadbalancer, external or auto", c.ServiceIPOption)
	}
	if c.LoadBalancerClass != "" {
		if errs := validation.IsQualifiedName(c.LoadBalancerClass); len(errs) > 0 {
			d.errorf("load-balancer-class", nil, "%q is not a valid loadBalancerClass: %s (for example example.com/bare-metal)", c.LoadBalancerClass, errs[0])
		}
	}
	if !contains(logLevels, c.LogLevel) {
		d.errorf("log-level", nil, "%q is not a log level; use %s", c.LogLevel, strings.Join(logLevels, ", "))
	}
	if ap, err := netip.ParseAddrPort(c.APIAddress); err != nil || ap.Port() == 0 {
		d.errorf("api-address", nil, "%q is not an address and port such as 127.0.0.1:9402", c.APIAddress)
	}
	d.checkPools(d.name("pools", "pools"), c.Pools)
	if c.Speakers.NodeSelector != "" {
		d.selector(nil, d.name("speakers.node-selector", "speaker-node-selector"), c.Speakers.NodeSelector)
	}
	c.L2.Interfaces = d.checkInterfaces(d.name("l2.interfaces", "l2-interfaces"), c.L2.Interfaces)
	if c.BGP.PasswordFile == "" {
		d.errorf("bgp.password-file", nil, "must be a path")
	}
}

// name picks the field name the reader knows: the file's key or the charm
// option's.
func (d *decoder) name(fileKey, optionKey string) string {
	if d.options {
		return optionKey
	}
	return fileKey
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Render writes c as the config file. Parse(Render(c)) gives c back.
func (c *Config) Render() ([]byte, error) {
	root := mapNode(
		"mode", strNode(string(c.Mode)),
		"calico-service-ip-option", strNode(c.ServiceIPOption),
		"load-balancer-class", quoted(c.LoadBalancerClass),
		"log-level", strNode(c.LogLevel),
		"api-address", quoted(c.APIAddress),
		"pools", renderPools(c.Pools),
		"bgp", mapNode(
			"as-number", scalar(strconv.FormatUint(uint64(c.BGP.ASNumber), 10)),
			"subnet-as-numbers", renderSubnetAS(c.BGP.SubnetASNumbers),
			"peers", renderPeers(c.BGP.Peers),
			"subnet-peers", renderSubnetPeers(c.BGP.SubnetPeers),
			"password-file", quoted(c.BGP.PasswordFile),
		),
		"speakers", mapNode("node-selector", quoted(c.Speakers.NodeSelector)),
		"l2", mapNode("interfaces", flowList(c.L2.Interfaces)),
	)
	var b strings.Builder
	b.WriteString("# calico-lb workload config, written by the charm. Edits are overwritten.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("render config: %w", err)
	}
	return []byte(b.String()), enc.Close()
}

func renderPools(pools []Pool) *yaml.Node {
	n := mapNode()
	for _, p := range pools {
		addrs := make([]string, len(p.Addresses))
		for i, r := range p.Addresses {
			addrs[i] = r.String()
		}
		communities := make([]string, len(p.Communities))
		for i, c := range p.Communities {
			communities[i] = c.String()
		}
		pool := mapNode(
			"addresses", flowList(addrs),
			"auto-assign", boolNode(p.AutoAssign),
			"avoid-buggy-ips", boolNode(p.AvoidBuggyIPs),
			"share-across-namespaces", boolNode(p.SharedAcrossNamespaces),
			"namespaces", flowList(p.Namespaces),
			"service-selector", quoted(p.ServiceSelector),
			"priority", scalar(strconv.Itoa(p.Priority)),
			"communities", flowList(communities),
		)
		if p.LocalPref != 0 {
			addPair(pool, "local-pref", scalar(strconv.FormatUint(uint64(p.LocalPref), 10)))
		}
		addPair(n, p.Name, pool)
	}
	return n
}

func renderPeers(peers []Peer) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	for _, p := range peers {
		m := mapNode(
			"address", strNode(p.Address.String()),
			"as-number", scalar(strconv.FormatUint(uint64(p.ASNumber), 10)),
			"hold-time", scalar(strconv.Itoa(p.HoldTime)),
			"keepalive", scalar(strconv.Itoa(p.Keepalive)),
		)
		if p.Multihop != 0 {
			addPair(m, "multihop", scalar(strconv.Itoa(p.Multihop)))
		}
		if p.BFD {
			addPair(m, "bfd", boolNode(true))
			addPair(m, "bfd-interval", scalar(strconv.Itoa(p.BFDInterval)))
			addPair(m, "bfd-multiplier", scalar(strconv.Itoa(p.BFDMultiplier)))
		}
		if p.PasswordKey != "" {
			addPair(m, "password-key", quoted(p.PasswordKey))
		}
		if p.SourceAddress.IsValid() {
			addPair(m, "source-address", strNode(p.SourceAddress.String()))
		}
		if p.MaxPrefixes != DefaultMaxPrefixes && p.MaxPrefixes != 0 { // 0: unset, the default
			addPair(m, "max-prefixes", scalar(strconv.Itoa(p.MaxPrefixes)))
		}
		m.Style = yaml.FlowStyle
		n.Content = append(n.Content, m)
	}
	if len(peers) == 0 {
		n.Style = yaml.FlowStyle
	}
	return n
}

func renderSubnetPeers(sps []SubnetPeers) *yaml.Node {
	return renderSubnets(sps, func(sp SubnetPeers) (netip.Prefix, *yaml.Node) { return sp.Subnet, renderPeers(sp.Peers) })
}

func renderSubnetAS(sas []SubnetAS) *yaml.Node {
	return renderSubnets(sas, func(sa SubnetAS) (netip.Prefix, *yaml.Node) {
		return sa.Subnet, scalar(strconv.FormatUint(uint64(sa.ASNumber), 10))
	})
}

// renderSubnets writes a mapping keyed by subnet ({} when empty).
func renderSubnets[T any](items []T, entry func(T) (netip.Prefix, *yaml.Node)) *yaml.Node {
	n := mapNode()
	for _, it := range items {
		pfx, v := entry(it)
		addPair(n, pfx.String(), v)
	}
	if len(items) == 0 {
		n.Style = yaml.FlowStyle
	}
	return n
}

func mapNode(kv ...any) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for i := 0; i+1 < len(kv); i += 2 {
		addPair(n, kv[i].(string), kv[i+1].(*yaml.Node))
	}
	return n
}

func addPair(m *yaml.Node, key string, v *yaml.Node) {
	m.Content = append(m.Content, strNode(key), v)
}

// scalar is a plain scalar; the encoder quotes it if it must.
func scalar(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: s} }

// quoted is always a string, even when it looks like a number or is empty.
func quoted(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s, Style: yaml.DoubleQuotedStyle}
}

// strNode is a string that the encoder quotes only when it must.
func strNode(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

func boolNode(b bool) *yaml.Node { return scalar(strconv.FormatBool(b)) }

func flowList(items []string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
	for _, s := range items {
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s})
	}
	return n
}
