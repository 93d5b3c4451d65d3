// Command unitagent stands in for Juju's unit agent in the charm container
// of a Juju-shaped pod: it keeps the container running, and tests reach it
// through the kubelet's exec, as Juju's agent runs hooks and actions in the
// charm container:
//
//	unitagent wait                 # the container's entrypoint
//	unitagent hook NAME            # run dispatch for hook NAME
//	unitagent action NAME JSON ID  # run action NAME with parameters as JUJU_ACTION_UUID ID
//	unitagent state                # print the hook tools' state (JSON)
//	unitagent set-state            # replace it with standard input
//
// The charm's dispatch, the fake hook tools and their state are where the
// environment says (UNITAGENT_DISPATCH, UNITAGENT_TOOLS, FAKEJUJU_STATE,
// JUJU_UNIT_NAME, JUJU_MODEL_NAME), as the test image sets them.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/calico-lb/calico-lb/tests/fakejuju"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "unitagent:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: unitagent wait|hook NAME|action NAME [JSON]|state|set-state")
	}
	statePath := os.Getenv("FAKEJUJU_STATE")
	switch args[0] {
	case "wait":
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		return nil
	case "state":
		data, err := os.ReadFile(statePath)
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(data)
		return err
	case "set-state":
		var st fakejuju.State
		if err := json.NewDecoder(os.Stdin).Decode(&st); err != nil {
			return fmt.Errorf("state on standard input: %w", err)
		}
		return fakejuju.Replace(statePath, &st)
	case "hook", "action":
		if len(args) < 2 {
			return fmt.Errorf("%s: which one?", args[0])
		}
		name, path, env := args[1], "hooks/"+args[1], fakejuju.HookEnv(args[1])
		id := ""
		if args[0] == "action" {
			if len(args) != 4 {
				return fmt.Errorf("usage: unitagent action NAME JSON ID")
			}
			params := map[string]any{}
			if err := json.Unmarshal([]byte(args[2]), &params); err != nil {
				return fmt.Errorf("action parameters: %w", err)
			}
			id = args[3]
			if err := fakejuju.Update(statePath, func(st *fakejuju.State) error { st.StartAction(id, params); return nil }); err != nil {
				return err
			}
			path, env = "actions/"+name, fakejuju.ActionEnv(name, id)
		}
		cmd := fakejuju.Command(os.Getenv("UNITAGENT_DISPATCH"), os.Getenv("UNITAGENT_TOOLS"), statePath,
			os.Getenv("JUJU_UNIT_NAME"), os.Getenv("JUJU_MODEL_NAME"), path, env...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		err := cmd.Run()
		if id != "" {
			if e := fakejuju.Update(statePath, func(st *fakejuju.State) error { st.Actions[id].Done = true; return nil }); e != nil && err == nil {
				err = e
			}
		}
		return err
	}
	return fmt.Errorf("unknown command %q", args[0])
}
