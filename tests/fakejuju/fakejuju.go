package fakejuju

import (
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/calico-lb/calico-lb/charm"
	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/workload/config"
)

// ModelUUID is the model's UUID in the hooks' environment.
const ModelUUID = "12345678-1234-5678-1234-567812345678"

// Tools are the hook tools faked.
var Tools = []string{"config-get", "is-leader", "goal-state", "status-set", "status-get", "juju-log", "secret-get",
	"action-get", "action-set", "action-fail", "action-log", "application-version-set",
	"relation-ids", "relation-get", "relation-set", "relation-list", "network-get"}

// Juju is one unit's faked hook environment.
type Juju struct {
	Dir       string // the tools directory, first on PATH
	StatePath string
	Unit      string
	Model     string
	Env       []string // extra environment for dispatch
}

// New builds the fake tools and writes the initial state.
func New(t testing.TB, st *State) *Juju {
	t.Helper()
	j := &Juju{Dir: t.TempDir(), Unit: "calico-lb/0", Model: "lb"}
	j.StatePath = filepath.Join(j.Dir, "state.json")
	bin := filepath.Join(j.Dir, "fakejuju")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./tests/fakejuju/cmd/fakejuju")
	cmd.Dir = cluster.Root()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build fakejuju: %v\n%s", err, out)
	}
	for _, tool := range Tools {
		if err := os.Symlink(bin, filepath.Join(j.Dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	if err := Replace(j.StatePath, st); err != nil {
		t.Fatal(err)
	}
	return j
}

// State reads the state back.
func (j *Juju) State(t testing.TB) *State {
	t.Helper()
	s, err := Load(j.StatePath)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Update changes the state between hooks.
func (j *Juju) Update(t testing.TB, f func(*State)) {
	t.Helper()
	if err := Update(j.StatePath, func(s *State) error { f(s); return nil }); err != nil {
		t.Fatal(err)
	}
}

// Hook runs dispatch for hook as Juju would, and returns its output.
func (j *Juju) Hook(dispatch, hook string) (string, error) {
	return j.run(dispatch, "hooks/"+hook, HookEnv(hook)...)
}

// Action runs dispatch for action name with params, and returns what the
// action set (results, failure, log) and dispatch's output.
func (j *Juju) Action(t testing.TB, dispatch, name string, params map[string]any) (*Action, string, error) {
	t.Helper()
	id := NewActionID()
	j.Update(t, func(s *State) { s.StartAction(id, params) })
	out, err := j.run(dispatch, "actions/"+name, ActionEnv(name, id)...)
	var a *Action
	j.Update(t, func(s *State) { a = s.Actions[id]; a.Done = true })
	return a, out, err
}

// NewActionID is a fresh JUJU_ACTION_UUID.
func NewActionID() string { return rand.Text() }

// HookEnv and ActionEnv are what Juju adds to dispatch's environment for a
// hook and for an action.
func HookEnv(name string) []string { return []string{"JUJU_HOOK_NAME=" + name} }
func ActionEnv(name, id string) []string {
	return []string{"JUJU_HOOK_NAME=", "JUJU_ACTION_NAME=" + name, "JUJU_ACTION_UUID=" + id}
}

func (j *Juju) run(dispatch, path string, extra ...string) (string, error) {
	cmd := Command(dispatch, j.Dir, j.StatePath, j.Unit, j.Model, path, append(j.Env, extra...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Command is dispatch run as Juju's unit agent runs it for path
// (hooks/NAME or actions/NAME), with the tools in toolsDir first on PATH
// and their state at statePath; extra is added to the environment. The
// tests on the host and the unit agent in a Juju-shaped pod both use it.
func Command(dispatch, toolsDir, statePath, unit, model, path string, extra ...string) *exec.Cmd {
	cmd := exec.Command(dispatch)
	charmDir := filepath.Dir(dispatch)
	cmd.Dir = charmDir
	cmd.Env = append(os.Environ(),
		"PATH="+toolsDir+":"+os.Getenv("PATH"),
		"FAKEJUJU_STATE="+statePath,
		"JUJU_DISPATCH_PATH="+path,
		"JUJU_UNIT_NAME="+unit,
		"JUJU_MODEL_NAME="+model,
		"JUJU_MODEL_UUID="+ModelUUID,
		"JUJU_CHARM_DIR="+charmDir, "CHARM_DIR="+charmDir,
		"JUJU_CONTEXT_ID="+unit+"-"+strings.ReplaceAll(path, "/", "-"),
		"JUJU_VERSION=3.6.4",
	)
	cmd.Env = append(cmd.Env, extra...)
	return cmd
}

// The environment tests/charmdispatch reads its charm.Layout from.
const (
	PebbleSocketEnv  = "CALICO_LB_PEBBLE_SOCKET"
	ContainerRootEnv = "CALICO_LB_CONTAINER_ROOT"
	APIAddressEnv    = "CALICO_LB_API_ADDRESS"
)

// LayoutEnv is l as the environment of a hook of tests/charmdispatch.
func LayoutEnv(l charm.Layout) []string {
	return []string{PebbleSocketEnv + "=" + l.PebbleSocket, ContainerRootEnv + "=" + l.ContainerRoot, "KUBECONFIG=" + l.Kubeconfig, APIAddressEnv + "=" + l.APIAddress}
}

// LayoutFromEnv is what LayoutEnv put in the environment.
func LayoutFromEnv() charm.Layout {
	return charm.Layout{PebbleSocket: os.Getenv(PebbleSocketEnv), ContainerRoot: os.Getenv(ContainerRootEnv), Kubeconfig: os.Getenv("KUBECONFIG"), APIAddress: os.Getenv(APIAddressEnv)}
}

// BuildDispatch builds the charm's dispatch as `make charm` does, with
// tests/charmdispatch's main: the same charm.Dispatch in the layout of
// LayoutEnv.
func BuildDispatch(t testing.TB) string {
	t.Helper()
	dispatch := filepath.Join(t.TempDir(), "dispatch")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s", "-o", dispatch, "./tests/charmdispatch")
	build.Dir = cluster.Root()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build dispatch: %v\n%s", err, out)
	}
	return dispatch
}

// Defaults is the charm's config as Juju passes it before the operator
// sets anything: config.yaml's defaults.
func Defaults(t testing.TB) map[string]any {
	t.Helper()
	d, err := DefaultConfig()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// DefaultConfig is Defaults for callers that are not tests.
func DefaultConfig() (map[string]any, error) {
	data, err := os.ReadFile(filepath.Join(cluster.Root(), "config.yaml"))
	if err != nil {
		return nil, err
	}
	return config.CharmDefaults(data)
}
