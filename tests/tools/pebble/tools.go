//go:build tools

// Package tools pins the Pebble daemon that the charm's integration tests
// run (the same version as the client in the main module).
package tools

import _ "github.com/canonical/pebble/cmd/pebble"
