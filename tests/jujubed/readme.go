package jujubed

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// DeployMarker precedes, in README.md, the block of commands an operator
// runs to deploy calico-lb; TestJujuDeploy runs its juju commands.
const DeployMarker = "<!-- TestJujuDeploy runs the juju commands of this block, in order -->"

// ReadmeCommands returns the lines of the shell block after marker in the
// Markdown file at path (comments and blank lines dropped), so that a test
// runs what the README tells users to run.
func ReadmeCommands(path, marker string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	_, after, ok := strings.Cut(string(data), marker)
	if !ok {
		return nil, fmt.Errorf("%s has no %q", path, marker)
	}
	_, block, ok := strings.Cut(after, "```sh\n")
	if !ok {
		return nil, fmt.Errorf("%s: no ```sh block after %q", path, marker)
	}
	block, _, ok = strings.Cut(block, "```")
	if !ok {
		return nil, fmt.Errorf("%s: the block after %q does not end", path, marker)
	}
	var out []string
	for _, line := range strings.Split(block, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	return out, nil
}

// MakeCharm builds the charms of the tree at root as users do (`make
// charm`: calico-lb_<arch>.charm for every architecture).
func MakeCharm(ctx context.Context, root string) error {
	if out, err := exec.CommandContext(ctx, "make", "-C", root, "charm").CombinedOutput(); err != nil {
		return fmt.Errorf("make charm: %w\n%s", err, out)
	}
	return nil
}

// Shell runs line with sh in dir, with the controller's environment and
// vars (NAME=value) added, as an operator's shell runs it.
func (c *Controller) Shell(ctx context.Context, dir string, vars []string, line string) (string, error) {
	cmd := exec.CommandContext(ctx, "sh", "-ec", line)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), c.Env()...), vars...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w\n%s", line, err, out)
	}
	return string(out), nil
}

// Status is what `juju status --format=json` says of one application.
type Status struct {
	App, AppMessage string
	Units           map[string]UnitStatus
}

// UnitStatus is a unit's workload status.
type UnitStatus struct {
	Workload, Message, Agent string
	Leader                   bool
}

// AppStatus reads model's application app from juju status.
func (c *Controller) AppStatus(ctx context.Context, model, app string) (Status, error) {
	out, err := c.Juju(ctx, "status", "-m", model, "--format=json", app)
	if err != nil {
		return Status{}, err
	}
	var st struct {
		Applications map[string]struct {
			Status struct {
				Current string `json:"current"`
				Message string `json:"message"`
			} `json:"application-status"`
			Units map[string]struct {
				Workload struct {
					Current string `json:"current"`
					Message string `json:"message"`
				} `json:"workload-status"`
				Agent struct {
					Current string `json:"current"`
				} `json:"juju-status"`
				Leader bool `json:"leader"`
			} `json:"units"`
		} `json:"applications"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return Status{}, fmt.Errorf("juju status: %w\n%s", err, out)
	}
	a, ok := st.Applications[app]
	if !ok {
		return Status{}, fmt.Errorf("juju status has no application %s", app)
	}
	s := Status{App: a.Status.Current, AppMessage: a.Status.Message, Units: map[string]UnitStatus{}}
	for name, u := range a.Units {
		s.Units[name] = UnitStatus{Workload: u.Workload.Current, Message: u.Workload.Message, Agent: u.Agent.Current, Leader: u.Leader}
	}
	return s, nil
}

// Deployed is what DeployFromReadme did.
type Deployed struct {
	Ran []string // the juju commands run, as README has them
	Out []string // what each printed
}

// DeployFromReadme runs the deploy block of README.md (at root) as an
// operator would, with vars (NAME=value) for the variables README asks
// the operator to set: `make` lines as written (from root), juju lines
// through sh in root. skopeo lines are left to the caller, which has put
// the image in its registry; any other line is an error, so the block
// cannot grow a step this does not know. Before each `juju run`, ready is
// called to wait as an operator waits for juju status to settle. Each
// command and its output go to log.
func (c *Controller) DeployFromReadme(ctx context.Context, root string, vars []string, ready func() error, log func(string)) (Deployed, error) {
	var d Deployed
	lines, err := ReadmeCommands(filepath.Join(root, "README.md"), DeployMarker)
	if err != nil {
		return d, err
	}
	for _, line := range lines {
		switch {
		case strings.HasPrefix(line, "make "):
			if err := MakeCharm(ctx, root); err != nil {
				return d, fmt.Errorf("%w (for %q)", err, line)
			}
			log("$ " + line + " (the charm; the image is in the bed's registry already)")
			continue
		case strings.HasPrefix(line, "skopeo "):
			continue
		case !strings.HasPrefix(line, "juju "):
			return d, fmt.Errorf("README's deploy block has %q, which the beds do not know how to run", line)
		case strings.HasPrefix(line, "juju run ") && ready != nil:
			if err := ready(); err != nil {
				return d, err
			}
		}
		out, err := c.Shell(ctx, root, vars, line)
		if err != nil {
			return d, err
		}
		log("$ " + line + "\n" + out)
		d.Ran, d.Out = append(d.Ran, line), append(d.Out, out)
	}
	return d, nil
}

// WaitUnit waits until the leader unit of app in model satisfies ok, and
// returns its status (the last seen, with the error, when it does not).
func (c *Controller) WaitUnit(ctx context.Context, model, app string, limit time.Duration, ok func(UnitStatus) bool) (UnitStatus, error) {
	var last UnitStatus
	var lastErr error
	deadline := time.Now().Add(limit)
	for {
		st, err := c.AppStatus(ctx, model, app)
		lastErr = err
		for _, u := range st.Units {
			if u.Leader {
				last = u
				if ok(u) {
					return u, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return last, fmt.Errorf("%s's leader unit in %s after %s: %+v (%v)", app, model, limit, last, lastErr)
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// Active is a WaitUnit condition: active, idle, the message starting with
// prefix.
func Active(prefix string) func(UnitStatus) bool {
	return func(u UnitStatus) bool {
		return u.Workload == "active" && u.Agent == "idle" && strings.HasPrefix(u.Message, prefix)
	}
}
