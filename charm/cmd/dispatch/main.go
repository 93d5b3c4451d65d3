// Command dispatch is the charm: Juju runs it for every hook and action.
package main

import (
	"os"

	"github.com/gruyaume/goops"

	"github.com/calico-lb/calico-lb/charm"
)

func main() {
	env := goops.ReadEnv()
	if env.ActionName != "" {
		// The actions land with their handlers; until then they say so
		// rather than pretend.
		goops.FailActionf("action %s is not available yet in this charm revision", env.ActionName)
		return
	}
	if err := charm.New().Hook(); err != nil {
		goops.LogErrorf("hook %s: %v", env.HookName, err)
		os.Exit(1)
	}
}
