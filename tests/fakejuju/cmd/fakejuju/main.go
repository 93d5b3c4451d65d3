// Command fakejuju is every faked hook tool: it acts as the tool it is
// invoked as (argv[0]), on the state file FAKEJUJU_STATE.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/calico-lb/calico-lb/tests/fakejuju/jujustate"
)

// usage errors exit 2, run errors 1, as Juju's cmd package does.
type exitErr struct {
	code int
	msg  string
}

func main() {
	tool := filepath.Base(os.Args[0])
	path := os.Getenv("FAKEJUJU_STATE")
	var (
		out []byte
		e   *exitErr
	)
	err := jujustate.Update(path, func(st *jujustate.State) error {
		st.Calls = append(st.Calls, append([]string{tool}, os.Args[1:]...))
		out, e = run(st, tool, os.Args[1:])
		return nil
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "ERROR %v\n", err)
		os.Exit(1)
	}
	if e != nil {
		fmt.Fprintf(os.Stderr, "ERROR %s\n", e.msg)
		os.Exit(e.code)
	}
	os.Stdout.Write(out)
}

// running is the action this tool runs in (JUJU_ACTION_UUID), as the
// action tools need one.
func running(st *jujustate.State) (*jujustate.Action, *exitErr) {
	a := st.Actions[os.Getenv("JUJU_ACTION_UUID")]
	if a == nil || a.Done {
		return nil, &exitErr{1, "not running an action"}
	}
	return a, nil
}

// flags splits args into flags (--x, --x=v, -x) and positionals.
func flags(args []string) (map[string]string, []string) {
	fl := map[string]string{}
	var pos []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			k, v, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			fl[k] = v
			continue
		}
		pos = append(pos, a)
	}
	return fl, pos
}

func format(fl map[string]string, v any, def string) []byte {
	f := fl["format"]
	if f == "" {
		f = def
	}
	switch f {
	case "json":
		b, _ := json.Marshal(v)
		return append(b, '\n')
	case "yaml":
		b, _ := yaml.Marshal(v)
		return append([]byte(strings.TrimRight(string(b), "\n")), '\n')
	}
	switch x := v.(type) { // smart
	case nil:
		return nil
	case string:
		if x == "" {
			return nil
		}
		return []byte(x + "\n")
	case bool:
		if x {
			return []byte("True\n")
		}
		return []byte("False\n")
	}
	b, _ := yaml.Marshal(v)
	return append([]byte(strings.TrimRight(string(b), "\n")), '\n')
}

var (
	statuses = []string{"maintenance", "blocked", "waiting", "active"}
	keyRe    = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$`)
)

func run(st *jujustate.State, tool string, args []string) ([]byte, *exitErr) {
	fl, pos := flags(args)
	switch tool {
	case "config-get":
		if _, all := fl["all"]; all && len(pos) > 0 {
			return nil, &exitErr{2, "cannot use argument --all together with key " + pos[0]}
		}
		if len(pos) == 1 {
			return format(fl, st.Config[pos[0]], "smart"), nil
		}
		return format(fl, st.Config, "smart"), nil
	case "is-leader":
		return format(fl, st.Leader, "smart"), nil
	case "goal-state":
		units := map[string]any{}
		for u, status := range st.GoalUnits {
			units[u] = map[string]any{"status": status, "since": "2026-12-04 00:00:00Z"}
		}
		if st.GoalUnits == nil {
			units[os.Getenv("JUJU_UNIT_NAME")] = map[string]any{"status": "active", "since": "2026-12-04 00:00:00Z"}
		}
		return format(fl, map[string]any{"units": units, "relations": map[string]any{}}, "yaml"), nil
	case "status-set":
		if len(pos) == 0 || len(pos) > 2 {
			return nil, &exitErr{2, "invalid args, require <status> [message]"}
		}
		if !slices.Contains(statuses, pos[0]) {
			return nil, &exitErr{2, fmt.Sprintf("invalid status %q, expected one of %v", pos[0], statuses)}
		}
		s := jujustate.Status{Name: pos[0]}
		if len(pos) == 2 {
			s.Message = pos[1]
		}
		if _, app := fl["application"]; app {
			if !st.Leader {
				return nil, &exitErr{1, "this unit is not the leader"}
			}
			st.AppStatus = s
		} else {
			st.UnitStatus = s
		}
		return nil, nil
	case "status-get":
		return format(fl, map[string]any{"status": st.UnitStatus.Name, "message": st.UnitStatus.Message, "status-data": map[string]any{}}, "smart"), nil
	case "juju-log":
		st.Logs = append(st.Logs, fl["log-level"]+" "+strings.Join(pos, " "))
		return nil, nil
	case "secret-get":
		if len(pos) == 0 {
			return nil, &exitErr{2, "require either a secret URI or label"}
		}
		_, peek := fl["peek"]
		_, refresh := fl["refresh"]
		if peek && refresh {
			return nil, &exitErr{2, "specify one of --peek or --refresh but not both"}
		}
		content, ok := st.Secrets[pos[0]]
		if !ok {
			return nil, &exitErr{1, fmt.Sprintf("secret %q not found", strings.TrimPrefix(pos[0], "secret:"))}
		}
		if len(pos) == 2 {
			return format(fl, content[pos[1]], "yaml"), nil
		}
		return format(fl, content, "yaml"), nil
	case "action-get":
		a, e := running(st)
		if e != nil {
			return nil, e
		}
		return format(fl, a.Params, "smart"), nil
	case "action-set":
		a, e := running(st)
		if e != nil {
			return nil, e
		}
		if a.Results == nil {
			a.Results = map[string]string{}
		}
		for _, kv := range pos {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, &exitErr{2, fmt.Sprintf("argument %q must be of the form key...=value", kv)}
			}
			for _, part := range strings.Split(k, ".") {
				if !keyRe.MatchString(part) {
					return nil, &exitErr{2, fmt.Sprintf("key %q must start and end with lowercase alphanumeric, and contain only lowercase alphanumeric, hyphens and periods", k)}
				}
			}
			if slices.Contains([]string{"stdout", "stdout-encoding", "stderr", "stderr-encoding"}, k) {
				return nil, &exitErr{2, fmt.Sprintf("cannot set reserved action key %q", k)}
			}
			a.Results[k] = v
		}
		return nil, nil
	case "action-fail":
		a, e := running(st)
		if e != nil {
			return nil, e
		}
		if len(pos) > 1 {
			return nil, &exitErr{2, "unrecognized args"}
		}
		msg := "action failed without reason given, check action for errors"
		if len(pos) == 1 {
			msg = pos[0]
		}
		a.Failed = &msg
		return nil, nil
	case "action-log":
		a, e := running(st)
		if e != nil {
			return nil, e
		}
		a.Logs = append(a.Logs, strings.Join(pos, " "))
		return nil, nil
	case "application-version-set":
		if len(pos) != 1 {
			return nil, &exitErr{2, "no version specified"}
		}
		st.AppVersion = pos[0]
		return nil, nil
	}
	if strings.HasPrefix(tool, "relation-") || tool == "network-get" {
		return relationTool(st, tool, fl, pos)
	}
	return nil, &exitErr{1, "fakejuju does not fake " + tool}
}

// relationTool fakes relation-ids, relation-get and relation-set for our
// own side of a relation, relation-list and relation-get for the remote
// units, and network-get.
func relationTool(st *jujustate.State, tool string, fl map[string]string, pos []string) ([]byte, *exitErr) {
	if tool == "relation-ids" {
		if len(pos) != 1 {
			return nil, &exitErr{2, "no endpoint name specified"}
		}
		ids := []string{}
		for _, r := range st.Relations[pos[0]] {
			ids = append(ids, r.ID)
		}
		slices.Sort(ids)
		return format(fl, ids, "smart"), nil
	}
	if tool == "network-get" {
		if len(pos) != 1 {
			return nil, &exitErr{2, "no endpoint specified"}
		}
		if _, ok := st.Relations[pos[0]]; !ok && st.Address == "" {
			return nil, &exitErr{1, fmt.Sprintf("no network config found for binding %q", pos[0])}
		}
		return format(fl, map[string]any{
			"bind-addresses":    []any{map[string]any{"interface-name": "eth0", "addresses": []any{map[string]string{"value": st.Address, "cidr": st.Address + "/32"}}}},
			"ingress-addresses": []string{st.Address}, "egress-subnets": []string{st.Address + "/32"},
		}, "smart"), nil
	}
	id, ok := fl["r"]
	if !ok {
		id = fl["relation"]
	}
	if id == "" {
		return nil, &exitErr{2, "no relation id specified"}
	}
	rel := st.Relation(id)
	if rel == nil {
		return nil, &exitErr{2, fmt.Sprintf("invalid value %q for option -r: relation not found", id)}
	}
	_, app := fl["app"]
	bag := &rel.UnitData
	if app {
		bag = &rel.AppData
	}
	switch tool {
	case "relation-list":
		units := []string{}
		for u := range rel.Remote {
			units = append(units, u)
		}
		slices.Sort(units)
		return format(fl, units, "smart"), nil
	case "relation-get":
		// "-" (all keys) is taken as a flag; the unit is the positional.
		if len(pos) > 0 {
			if data, ok := rel.Remote[pos[len(pos)-1]]; ok {
				out := map[string]string{}
				for k, v := range data {
					out[k] = v
				}
				return format(fl, out, "smart"), nil
			}
		}
		// Otherwise our own side: "-" and our unit or application.
		if app && !st.Leader && !rel.Peer {
			return nil, &exitErr{1, "permission denied"}
		}
		out := map[string]string{}
		for k, v := range *bag {
			out[k] = v
		}
		return format(fl, out, "smart"), nil
	case "relation-set":
		if app && !st.Leader {
			return nil, &exitErr{1, "cannot write relation settings"}
		}
		if *bag == nil {
			*bag = map[string]string{}
		}
		for _, kv := range pos {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, &exitErr{2, fmt.Sprintf("expected \"key=value\", got %q", kv)}
			}
			if v == "" {
				delete(*bag, k)
			} else {
				(*bag)[k] = v
			}
		}
		return nil, nil
	}
	return nil, &exitErr{1, "fakejuju does not fake " + tool}
}
