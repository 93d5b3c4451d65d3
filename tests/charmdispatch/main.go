// Command charmdispatch is the charm's dispatch for tests that run the
// charm on a host: the same charm.Dispatch as production's, in the layout
// the environment names (fakejuju.LayoutEnv: a real Pebble's socket, the
// workload's files under a directory, an API address of its own), where
// production's dispatch uses Juju's and reads nothing from its environment.
package main

import (
	"os"

	"github.com/calico-lb/calico-lb/charm"
	"github.com/calico-lb/calico-lb/tests/fakejuju"
)

func main() { os.Exit(charm.Dispatch(fakejuju.LayoutFromEnv())) }
