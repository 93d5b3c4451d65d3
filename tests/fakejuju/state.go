// Package fakejuju fakes Juju's hook tools out of process, for tests that
// run the real dispatch binary: one executable (cmd/fakejuju) linked under
// each tool's name on PATH, following the real tools' arguments, output
// formats and exit codes (as Juju 3.6's hook tools print them), with
// the unit's state in a JSON file that tests set up and read back.
package fakejuju

import "github.com/calico-lb/calico-lb/tests/fakejuju/jujustate"

// The state the fake hook tools act on lives in jujustate, which the
// tools' binary links alone: a hook tool is a process per call, and one
// that linked this package (client-go, the charm) took about 12 ms to
// start where a small one takes 2, which made the hooks look slower than
// Juju's own tools make them.
type (
	State    = jujustate.State
	Relation = jujustate.Relation
	Status   = jujustate.Status
	Action   = jujustate.Action
)

// Load, Update and Replace read and write the state file (jujustate).
func Load(path string) (*State, error) { return jujustate.Load(path) }

// Update changes the state file under its lock (jujustate.Update).
func Update(path string, f func(*State) error) error { return jujustate.Update(path, f) }

// Replace writes st as the whole state file (jujustate.Replace).
func Replace(path string, st *State) error { return jujustate.Replace(path, st) }
