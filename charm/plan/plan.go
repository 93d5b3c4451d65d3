// Package plan is what the charm puts into the workload container: the
// config file, the BGP password file and the Pebble layer. It is pure:
// charm/pebble compares it with what the container has and touches only
// what differs (the workload reloads its config file itself; a config
// change never restarts it).
package plan

import (
	"fmt"
	"maps"
	"net/url"

	"go.yaml.in/yaml/v3"

	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/pebblelayer"
)

// Service is the Pebble service that runs the controller.
const Service = "calico-lb"

// DefaultBinary is where the workload image has calico-lb.
const DefaultBinary = config.DefaultBinary

// TokenFile is where the workload container keeps the token of the
// controller's own ServiceAccount (`calico-lb access` writes and renews
// it; the controller renews it too).
const TokenFile = "/var/lib/calico-lb/token"

// AccessReceiptFile is where `calico-lb access` leaves, after it
// succeeded, when it may next have something to do (api.AccessReceipt):
// root's, beside the config, out of the controller's reach.
const AccessReceiptFile = "/etc/calico-lb/access-receipt.json"

// APIKeyFile is where the controller keeps the local API's key, which the
// charm reads through Pebble and presents on every call.
const APIKeyFile = config.DefaultAPIKeyFile

// Check is the Pebble check on the controller's /readyz.
const Check = "calico-lb-ready"

// AliveCheck is the Pebble check on the controller's /healthz, which fails
// when the leader's allocation loop has not run for 10 s: a wedged loop
// is restarted. A slow apiserver does not stop the loop (it never waits
// on its writers), so it does not trip this.
const AliveCheck = "calico-lb-alive"

// File is one file to push.
type File struct {
	Path    string
	Content []byte
	Mode    uint32 // permission bits
	// UID and GID own the file when set (the workload's user, so that it
	// can read a 0600 file); nil leaves it to Pebble (root).
	UID, GID *int
}

// Plan is everything the container needs.
type Plan struct {
	Files []File
	Layer []byte // Pebble layer YAML
}

// Inputs are what the plan depends on besides the config.
type Inputs struct {
	Passwords map[string]string // bgp-passwords secret content; never logged
	Namespace string            // the model's namespace, for the Lease
	// PodName is the unit's Pod: the leader-election identity, and where
	// the controller finds the image the speakers run (Juju gives the
	// charm no other way to learn its workload image).
	PodName string

	// Where things are in the container; empty means the defaults
	// (/usr/bin/calico-lb, config.DefaultPath). Tests that run a real
	// Pebble on the host point them at a temporary directory.
	Binary     string
	ConfigPath string
	// Env is added to the service's environment.
	Env map[string]string
	// UID, when set, runs the controller as that user (and group) and
	// gives it the files: it needs no privilege, only the apiserver.
	UID *int
	// TokenFile, when set, is the controller's own token: it acts as its
	// ServiceAccount rather than with the pod's credentials.
	TokenFile string
	// APIKeyFile, when set, is where the controller keeps its local API's
	// key (default config.DefaultAPIKeyFile).
	APIKeyFile string
	// LogTargets are the layer's log targets (Loki, from the logging
	// relation), as given.
	LogTargets map[string]pebblelayer.LogTarget
}

// Make builds the plan for a validated config.
func Make(cfg *config.Config, in Inputs) (*Plan, error) {
	data, err := cfg.Render()
	if err != nil {
		return nil, fmt.Errorf("render workload config: %w", err)
	}
	pw, err := yaml.Marshal(passwordMap(in.Passwords))
	if err != nil {
		return nil, fmt.Errorf("render BGP passwords: %w", err)
	}
	if in.Binary == "" {
		in.Binary = DefaultBinary
	}
	if in.ConfigPath == "" {
		in.ConfigPath = config.DefaultPath
	}
	layer, err := layerFor(cfg, in).Render()
	if err != nil {
		return nil, fmt.Errorf("render Pebble layer: %w", err)
	}
	return &Plan{
		// The password file first: a config that names a new password
		// key must find its password there when the workload reloads.
		Files: []File{
			{Path: cfg.BGP.PasswordFile, Content: pw, Mode: 0o600, UID: in.UID, GID: in.UID},
			{Path: in.ConfigPath, Content: data, Mode: 0o644, UID: in.UID, GID: in.UID},
		},
		Layer: layer,
	}, nil
}

func layerFor(cfg *config.Config, in Inputs) pebblelayer.Layer {
	env := map[string]string{}
	if in.Namespace != "" {
		env["POD_NAMESPACE"] = in.Namespace
	}
	if in.PodName != "" {
		env["POD_NAME"] = in.PodName
	}
	maps.Copy(env, in.Env)
	cmd := in.Binary + " controller --config " + in.ConfigPath
	if in.TokenFile != "" {
		cmd += " --token-file " + in.TokenFile
	}
	if in.APIKeyFile != "" {
		cmd += " --api-key-file " + in.APIKeyFile
	}
	return pebblelayer.Layer{
		Summary: "calico-lb workload",
		Services: map[string]pebblelayer.Service{Service: {
			Override: "replace",
			Summary:  "calico-lb controller: allocates LoadBalancer IPs and keeps the speakers",
			Command:  cmd,
			Startup:  "enabled",
			// In-cluster config comes from the pod's ServiceAccount; the
			// rest from the environment so the command line stays stable.
			Environment:    env,
			UserID:         in.UID,
			GroupID:        in.UID,
			OnCheckFailure: map[string]string{Check: "restart", AliveCheck: "restart"},
			BackoffLimit:   "10s",
		}},
		Checks: map[string]pebblelayer.Check{Check: {
			Override: "replace", Level: "ready", Period: "5s", Timeout: "3s", Threshold: 3,
			HTTP: pebblelayer.HTTPCheck{URL: (&url.URL{Scheme: "http", Host: cfg.APIAddress, Path: "/readyz"}).String()},
		}, AliveCheck: {
			Override: "replace", Level: "alive", Period: "10s", Timeout: "3s", Threshold: 3,
			HTTP: pebblelayer.HTTPCheck{URL: (&url.URL{Scheme: "http", Host: cfg.APIAddress, Path: "/healthz"}).String()},
		}},
		LogTargets: in.LogTargets,
	}
}

// passwordMap renders as a YAML mapping even when there are no passwords
// (yaml.v3 sorts the keys, so the file is stable).
func passwordMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
