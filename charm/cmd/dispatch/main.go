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
		if err := charm.New().Action(env.ActionName); err != nil {
			goops.LogErrorf("action %s: %v", env.ActionName, err)
			os.Exit(1)
		}
		return
	}
	if err := charm.New().Hook(); err != nil {
		goops.LogErrorf("hook %s: %v", env.HookName, err)
		os.Exit(1)
	}
}
