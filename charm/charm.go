// Package charm is the calico-lb charm, over goops' hook tools and the
// workload container's Pebble: a hook gathers what it needs to know once
// (gather), then runs plain steps in order (steps), in one place.
package charm

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/canonical/pebble/client"
	"github.com/gruyaume/goops"

	"github.com/calico-lb/calico-lb/charm/calicolink"
	"github.com/calico-lb/calico-lb/charm/pebble"
	"github.com/calico-lb/calico-lb/charm/plan"
	"github.com/calico-lb/calico-lb/charm/status"
	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/rock"
)

// Container is the workload container's name in metadata.yaml.
const Container = "calico-lb"

// Layout is where the charm finds what it drives. The zero value is what
// Juju lays out in a unit's pod; the charm reads nothing of it from its
// environment. Tests that run the charm on a host (a real Pebble of their
// own, the workload's files under a directory, several workloads on one
// host) build a dispatch of their own with theirs.
type Layout struct {
	// PebbleSocket is the workload container's Pebble ("": the socket Juju
	// mounts at /charm/containers/calico-lb/pebble.socket).
	PebbleSocket string
	// ContainerRoot is where the workload container's file system starts
	// ("": it is the container's); Kubeconfig is then passed on to the
	// workload, which in a pod uses its ServiceAccount.
	ContainerRoot, Kubeconfig string
	// APIAddress is the workload's local API (host:port; "":
	// config.DefaultAPIAddress).
	APIAddress string
}

// Dispatch runs the hook or action Juju's environment names, and returns
// the process's exit code.
func Dispatch(l Layout) int {
	env := goops.ReadEnv()
	if env.ActionName != "" {
		if err := New(l).Action(env.ActionName); err != nil {
			goops.LogErrorf("action %s: %v", env.ActionName, err)
			return 1
		}
		return 0
	}
	if err := New(l).Hook(); err != nil {
		goops.LogErrorf("hook %s: %v", env.HookName, err)
		return 1
	}
	return 0
}

// Charm is one hook's run.
type Charm struct {
	// APIBase is the workload's local API, reached over the pod's shared
	// network namespace.
	APIBase string
	// Wait bounds how long a replan may take.
	Wait time.Duration
	// Network is network-get (goopstest does not fake it).
	Network func(binding string) (*goops.Network, error)
	// Dial reaches calico's model on the Juju controller.
	Dial func(ctx context.Context, c calicolink.Credentials, model string, t calicolink.Timeouts) (calicolink.Client, error)
	// Exec runs a command in the workload container to its end.
	Exec func(pebble.Client, *client.ExecOptions) error

	opts      config.Options // the options as Juju passes them, read once a hook
	optsErr   error          // an option of the wrong type
	cfg       *config.Config
	cfgErr    error
	passwords map[string]string
	pwErr     error
	accessErr error // why the controller has no ServiceAccount of its own

	facts       hookFacts // what the hook found when it started; never changed after
	link        link      // the Calico link's outcome
	linkBlocked bool      // spine peers that are Calico's (or auto undecided): push nothing
	planned     bool      // the workload got this hook's plan
	peer        *peerBag  // the peer relation's application data, read once a hook
	modeReason  string    // why auto picked the mode
	cfgDigest   string    // of the config file the workload should have
	localKey    string    // the local API's key, read once a hook (apiKey)

	layout Layout
}

// New returns the charm with its defaults, in layout l.
func New(l Layout) *Charm {
	api := cmp.Or(l.APIAddress, config.DefaultAPIAddress)
	return &Charm{APIBase: "http://" + api, Wait: 30 * time.Second, Network: goops.GetNetwork, Dial: calicolink.Dial, Exec: pebble.Run, layout: l}
}

// hookFacts are what a hook finds when it starts, read once, before any
// step runs, so that no step depends on another having looked first.
type hookFacts struct {
	pebbleReady   bool
	leader        bool
	linkDue       bool     // the leader, in a hook where it talks to the controller (linkHooks)
	metricsRels   []string // the metrics-endpoint relations
	dashboardRels []string // the grafana-dashboard relations
}

// gather reads the hook's facts.
func (c *Charm) gather() (hookFacts, error) {
	var f hookFacts
	_, err := c.pebbleClient().SysInfo()
	f.pebbleReady = err == nil
	if f.leader, err = goops.IsLeader(); err != nil {
		return f, fmt.Errorf("is-leader: %w", err)
	}
	f.linkDue = f.leader && slices.Contains(linkHooks, goops.ReadEnv().HookName)
	if f.metricsRels, err = relationIDs(MetricsEndpoint); err != nil {
		return f, err
	}
	if f.dashboardRels, err = relationIDs(DashboardEndpoint); err != nil {
		return f, err
	}
	return f, nil
}

// steps are the hook's work, in order. Each step runs only when what it
// needs holds; what one step finds, the next reads from the charm's fields.
func (c *Charm) steps() error {
	if err := c.readConfig(); err != nil {
		return err
	}
	if c.cfgErr == nil {
		c.readPasswords()
		c.applyLink()
		if c.facts.linkDue {
			c.calicoLink()
		}
		if c.facts.pebbleReady {
			c.grantAccess()
			if c.pwErr == nil && !c.linkBlocked && c.accessErr == nil {
				if err := c.push(); err != nil {
					return fmt.Errorf("push the workload: %w", err)
				}
				if c.facts.linkDue {
					c.handOver()
				}
			}
		}
	}
	if len(c.facts.metricsRels) > 0 {
		if err := c.publishScrape(); err != nil {
			return err
		}
	}
	if c.facts.leader && len(c.facts.dashboardRels) > 0 {
		if err := c.publishDashboard(); err != nil {
			return err
		}
	}
	return nil
}

func (c *Charm) readConfig() error {
	o, err := c.readOptions()
	if err != nil {
		return err
	}
	err = c.optsErr
	if err == nil {
		var res config.Resolved
		c.cfg, res, err = config.FromOptions(o)
		c.modeReason = res.ModeReason
	}
	c.cfgErr = err
	return nil
}

// readOptions reads the options (each hook tool call is a process: once a
// hook). Options of the wrong type leave their defaults, and optsErr says
// which; the strings the charm itself uses are trimmed.
func (c *Charm) readOptions() (config.Options, error) {
	var raw map[string]any
	if err := goops.GetConfig(&raw); err != nil {
		return config.Options{}, fmt.Errorf("read config: %w", err)
	}
	o, err := config.OptionsFromMap(raw)
	for _, p := range []*string{&o.JujuCredentials, &o.BGPPasswords, &o.PeeringMode, &o.CalicoServiceIPOption, &o.CalicoApplication, &o.CalicoModel} {
		*p = strings.TrimSpace(*p)
	}
	c.opts, c.optsErr = o, err
	return o, nil
}

func (c *Charm) readPasswords() {
	c.passwords, c.pwErr = nil, nil
	if id := c.opts.BGPPasswords; id != "" {
		c.passwords, c.pwErr = goops.GetSecretByID(id, false, true)
		if c.pwErr != nil {
			c.pwErr = fmt.Errorf("bgp-passwords: cannot read secret %s (grant it with `juju grant-secret <secret> calico-lb`): %w", id, c.pwErr)
		}
	}
}

func (c *Charm) push() error {
	env := goops.ReadEnv()
	cfg := c.cfg
	if a := c.layout.APIAddress; a != "" && a != cfg.APIAddress {
		moved := *cfg
		moved.APIAddress = a
		cfg = &moved
	}
	uid := rock.UID
	in := plan.Inputs{Passwords: c.passwords, Namespace: env.ModelName,
		PodName: podName(env.UnitName), UID: &uid, TokenFile: plan.TokenFile}
	if root, bin, extra := c.containerLayout(); root != "" {
		in.TokenFile, in.APIKeyFile = root+plan.TokenFile, root+plan.APIKeyFile
		moved := *cfg
		moved.BGP.PasswordFile = root + cfg.BGP.PasswordFile
		cfg = &moved
		// On the host, the workload runs as the tests' user and reads
		// their root-only kubeconfig.
		in.Binary, in.ConfigPath, in.Env, in.UID = bin, root+config.DefaultPath, extra, nil
	}
	var err error
	if in.LogTargets, err = c.logTargets(); err != nil {
		return err
	}
	p, err := plan.Make(cfg, in)
	if err != nil {
		return err
	}
	if _, err = pebble.Apply(c.pebbleClient(), p, c.Wait); err != nil {
		return err
	}
	cfgPath := in.ConfigPath
	if cfgPath == "" {
		cfgPath = config.DefaultPath
	}
	for _, f := range p.Files {
		if f.Path == cfgPath {
			c.cfgDigest = api.ConfigDigest(f.Content)
		}
	}
	c.planned = true
	return nil
}

// containerLayout is where things are in the workload container: the
// root of its file system ("" in production), the calico-lb binary, and
// environment the workload needs besides its pod's (KUBECONFIG when it
// runs on a host under Layout.ContainerRoot).
func (c *Charm) containerLayout() (root, binary string, env map[string]string) {
	root = c.layout.ContainerRoot
	if root == "" {
		return "", plan.DefaultBinary, nil
	}
	return root, root + plan.DefaultBinary, map[string]string{"KUBECONFIG": c.layout.Kubeconfig}
}

// podName is the sidecar pod of a unit: app/0 runs in pod app-0.
func podName(unit string) string {
	if i := strings.LastIndexByte(unit, '/'); i >= 0 {
		return unit[:i] + "-" + unit[i+1:]
	}
	return unit
}

// Remove deletes what the workload created in the cluster (speakers,
// their RBAC and config, the Lease, the controller's account), by running
// `calico-lb cleanup` in the workload container, which has the client and
// the credentials. Only the leader does it, and only when the application
// goes: a leader removed by a scale-down leaves it all to the others.
func (c *Charm) Remove() error {
	leader, err := goops.IsLeader()
	if err != nil || !leader {
		return err
	}
	env := goops.ReadEnv()
	if stays, why := applicationStays(env.UnitName); stays {
		// Scaled down, not removed: the other units' controllers still
		// use the speakers, the Lease and the controller's account.
		goops.LogInfof("leaving the speakers, the Lease and the controller's ServiceAccount in place: %s", why)
		return nil
	}
	c.unlinkCalico()
	_, bin, cmdEnv := c.containerLayout()
	// Stop the controller first, or as leader it would recreate its Lease.
	pc := c.pebbleClient()
	if id, err := pc.Stop(&client.ServiceOptions{Names: []string{plan.Service}}); err == nil {
		if _, err := pc.WaitChange(id, &client.WaitChangeOptions{Timeout: 30 * time.Second}); err != nil {
			return fmt.Errorf("stop the workload: %w", err)
		}
	}
	opts := &client.ExecOptions{Command: []string{bin, "cleanup", "--namespace", env.ModelName}, Environment: cmdEnv, Timeout: time.Minute}
	if err := c.Exec(pc, opts); err != nil {
		return fmt.Errorf("cleanup in the workload container: %w", err)
	}
	goops.LogInfof("removed the speakers, their RBAC and config, the Lease, and the controller's ServiceAccount and RBAC in %s", env.ModelName)
	return nil
}

// Hook runs the current hook's steps and sets the unit status.
func (c *Charm) Hook() error {
	if goops.ReadEnv().HookName == "remove" {
		return c.Remove()
	}
	f, err := c.gather()
	if err == nil {
		c.facts = f
		err = c.steps()
	}
	if err != nil {
		st := status.Failed(err)
		_ = goops.SetUnitStatus(goops.StatusName(st.Name), st.Message)
		return err
	}
	st := c.Status()
	if err := goops.SetUnitStatus(goops.StatusName(st.Name), st.Message); err != nil {
		return err
	}
	if c.facts.leader {
		// One message argument: status-set takes at most one.
		return goops.SetAppStatus(goops.StatusName(st.Name), st.Message)
	}
	return nil
}

// applicationStays says whether units of the application other than this
// one remain (goal-state lists them, and as dying when the application is
// removed), and why. When goal-state cannot be read it says yes: objects
// left behind can be removed by hand, speakers deleted under running
// units are an outage.
func applicationStays(self string) (bool, string) {
	gs, err := goops.GetGoalState()
	if err != nil {
		return true, "goal-state cannot tell whether the application is being removed (" + err.Error() + "); if it is, run `calico-lb cleanup` in a workload container, or delete the calico-lb-speaker DaemonSet and the calico-lb-controller ServiceAccount by hand"
	}
	var others []string
	for u, st := range gs.Units {
		if u != self && st.Status != "dying" && st.Status != "dead" {
			others = append(others, u)
		}
	}
	if len(others) == 0 {
		return false, ""
	}
	slices.Sort(others)
	return true, "the application keeps " + strings.Join(others, ", ")
}

// pebbleClient is the container's Pebble: goops' (Juju's socket, or the
// test fake), or Layout.PebbleSocket.
func (c *Charm) pebbleClient() pebble.Client {
	if sock := c.layout.PebbleSocket; sock != "" {
		cl, err := client.New(&client.Config{Socket: sock})
		if err != nil {
			return failing{err}
		}
		return cl
	}
	return goops.Pebble(Container)
}

// failing is a Pebble client that could not be made.
type failing struct{ err error }

func (f failing) SysInfo() (*client.SysInfo, error)             { return nil, f.err }
func (f failing) Push(*client.PushOptions) error                { return f.err }
func (f failing) Pull(*client.PullOptions) error                { return f.err }
func (f failing) AddLayer(*client.AddLayerOptions) error        { return f.err }
func (f failing) PlanBytes(*client.PlanOptions) ([]byte, error) { return nil, f.err }
func (f failing) Replan(*client.ServiceOptions) (string, error) { return "", f.err }
func (f failing) Stop(*client.ServiceOptions) (string, error)   { return "", f.err }
func (f failing) WaitChange(string, *client.WaitChangeOptions) (*client.Change, error) {
	return nil, f.err
}
