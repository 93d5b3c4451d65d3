package config

import (
	"fmt"
	"math"
	"strings"

	"go.yaml.in/yaml/v3"
)

// optionFields names each charm option (config.yaml) and where its value
// goes in Options; the order is config.yaml's.
func (o *Options) optionFields() []struct {
	name string
	ptr  any // *string, *bool or *int
} {
	return []struct {
		name string
		ptr  any
	}{
		{"pools", &o.Pools},
		{"avoid-buggy-ips", &o.AvoidBuggyIPs},
		{"peering-mode", &o.PeeringMode},
		{"spine-peers", &o.SpinePeers},
		{"subnet-spine-peers", &o.SubnetSpinePeers},
		{"as-number", &o.ASNumber},
		{"subnet-as-numbers", &o.SubnetASNumbers},
		{"speaker-node-selector", &o.SpeakerNodeSelector},
		{"l2-interfaces", &o.L2Interfaces},
		{"calico-application", &o.CalicoApplication},
		{"calico-model", &o.CalicoModel},
		{"juju-credentials", &o.JujuCredentials},
		{"bgp-passwords", &o.BGPPasswords},
		{"calico-service-ip-option", &o.CalicoServiceIPOption},
		{"load-balancer-class", &o.LoadBalancerClass},
		{"log-level", &o.LogLevel},
	}
}

// OptionNames lists the charm's options in config.yaml's order.
func OptionNames() []string {
	var o Options
	fs := o.optionFields()
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.name
	}
	return out
}

// OptionsFromMap builds Options from the values Juju passes (as
// `config-get --format=json` prints them: strings, booleans, and numbers
// that may arrive as float64). Options missing from m keep their defaults;
// unknown keys are ignored. A value of the wrong type is an error naming
// the option.
func OptionsFromMap(m map[string]any) (Options, error) {
	o := DefaultOptions()
	var errs []string
	for _, f := range o.optionFields() {
		v, ok := m[f.name]
		if !ok || v == nil {
			continue
		}
		switch p := f.ptr.(type) {
		case *string:
			s, ok := v.(string)
			if !ok {
				errs = append(errs, fmt.Sprintf("%s: %v is a %T, want a string", f.name, v, v))
				continue
			}
			*p = s
		case *bool:
			b, ok := v.(bool)
			if !ok {
				errs = append(errs, fmt.Sprintf("%s: %v is a %T, want true or false", f.name, v, v))
				continue
			}
			*p = b
		case *int:
			n, ok := toInt(v)
			if !ok {
				errs = append(errs, fmt.Sprintf("%s: %v is not a whole number", f.name, v))
				continue
			}
			*p = n
		}
	}
	if len(errs) > 0 {
		return o, fmt.Errorf("charm config: %s", strings.Join(errs, "; "))
	}
	return o, nil
}

func toInt(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		if n < math.MinInt32 || n > math.MaxUint32 {
			return 0, false
		}
		return int(n), true
	case float64:
		if n != math.Trunc(n) || n < math.MinInt32 || n > math.MaxUint32 {
			return 0, false
		}
		return int(n), true
	}
	return 0, false
}

// CharmDefaults reads the defaults from the charm's config.yaml, as Juju
// would pass them to config-get (tests use it: fakes apply no defaults).
func CharmDefaults(configYAML []byte) (map[string]any, error) {
	var cy struct {
		Options map[string]struct {
			Default any `yaml:"default"`
		} `yaml:"options"`
	}
	if err := yaml.Unmarshal(configYAML, &cy); err != nil {
		return nil, fmt.Errorf("config.yaml: %w", err)
	}
	out := make(map[string]any, len(cy.Options))
	for k, o := range cy.Options {
		out[k] = o.Default
	}
	return out, nil
}
