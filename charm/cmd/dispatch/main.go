// Command dispatch is the charm: Juju runs it for every hook and action.
package main

import (
	"os"

	"github.com/calico-lb/calico-lb/charm"
)

func main() { os.Exit(charm.Dispatch(charm.Layout{})) }
