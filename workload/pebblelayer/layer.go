// Package pebblelayer is the part of Pebble's layer format calico-lb
// writes: the charm's layer for the controller and the controller's layer
// for the speakers (the image's entrypoint is Pebble, so the speaker pods
// are Pebble-managed too).
package pebblelayer

import "go.yaml.in/yaml/v3"

// Layer is a Pebble layer.
type Layer struct {
	Summary  string             `yaml:"summary"`
	Services map[string]Service `yaml:"services"`
	Checks   map[string]Check   `yaml:"checks"`
	// LogTargets forward services' logs (Pebble's log-targets).
	LogTargets map[string]LogTarget `yaml:"log-targets,omitempty"`
}

// LogTarget is a layer's log target: where Pebble sends which services'
// logs, with which labels.
type LogTarget struct {
	Override string            `yaml:"override"`
	Type     string            `yaml:"type"`
	Location string            `yaml:"location"`
	Services []string          `yaml:"services"`
	Labels   map[string]string `yaml:"labels,omitempty"`
}

// Service is a layer's service.
type Service struct {
	Override       string            `yaml:"override"`
	Summary        string            `yaml:"summary"`
	Command        string            `yaml:"command"`
	Startup        string            `yaml:"startup"`
	Environment    map[string]string `yaml:"environment,omitempty"`
	UserID         *int              `yaml:"user-id,omitempty"`
	GroupID        *int              `yaml:"group-id,omitempty"`
	OnCheckFailure map[string]string `yaml:"on-check-failure"`
	BackoffLimit   string            `yaml:"backoff-limit"`
}

// Check is a layer's health check.
type Check struct {
	Override  string    `yaml:"override"`
	Level     string    `yaml:"level"`
	Period    string    `yaml:"period"`
	Timeout   string    `yaml:"timeout"`
	Threshold int       `yaml:"threshold"`
	HTTP      HTTPCheck `yaml:"http"`
}

// HTTPCheck passes while the URL answers 2xx.
type HTTPCheck struct {
	URL string `yaml:"url"`
}

// Render is the layer's YAML (keys sorted, so it is stable).
func (l Layer) Render() ([]byte, error) { return yaml.Marshal(l) }
