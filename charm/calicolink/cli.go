package calicolink

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	cookiejar "github.com/juju/persistent-cookiejar"

	"github.com/calico-lb/calico-lb/workload/calico"
	"github.com/calico-lb/calico-lb/workload/config"
)

const usage = `calico-lb-juju: the Calico link for operators who do not give credentials to the charm.

Usage:
  calico-lb-juju [flags] check          conflicts between calico-lb's spine peers and Calico's
                                        BGP sessions, and the mode auto would pick
  calico-lb-juju [flags] sync [--dry-run] [--yes]
                                        put calico-lb's pools into calico's service-IP option
                                        (bgp-service-loadbalancer-ips, or -external-ips), keeping
                                        the CIDRs others put there, removing only those this tool
                                        added before

It uses your own Juju login (the client store in $JUJU_DATA, else ~/.local/share/juju):
run it where ` + "`juju status`" + ` works. It is a program of its own, not a juju plugin: the
strictly confined juju snap cannot start plugins.

Flags:
`

// CLI runs calico-lb-juju with args, reading answers from in and writing
// to out. It returns the process exit code: 0 fine, 1 a problem found or
// an error, 2 bad usage.
func CLI(ctx context.Context, args []string, in io.Reader, out io.Writer) int {
	fs := flag.NewFlagSet("calico-lb-juju", flag.ContinueOnError)
	fs.SetOutput(out)
	controller := fs.String("controller", "", "controller (default: the current one)")
	model := fs.String("model", "", "calico-lb's model (default: the current one)")
	app := fs.String("app", "calico-lb", "calico-lb's application name")
	calicoApp := fs.String("calico-app", "", "calico's application name (default: calico-lb's calico-application option)")
	calicoModel := fs.String("calico-model", "", "calico's model, name or UUID (default: calico-lb's calico-model option, else --model)")
	fs.Usage = func() {
		fmt.Fprint(out, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	rest := fs.Args()
	if len(rest) == 0 || (rest[0] != "check" && rest[0] != "sync") {
		fs.Usage()
		return 2
	}
	cmd := rest[0]
	sub := flag.NewFlagSet(cmd, flag.ContinueOnError)
	sub.SetOutput(out)
	dry := sub.Bool("dry-run", false, "show what sync would change, change nothing")
	yes := sub.Bool("yes", false, "write to the calico application that calico-lb's config names without asking")
	if err := sub.Parse(rest[1:]); err != nil {
		return 2
	}
	r := &run{store: DefaultStore(), in: in, out: out, yes: *yes, controller: *controller, model: *model, app: *app, calicoApp: *calicoApp, calicoModel: *calicoModel}
	code, err := r.do(ctx, cmd, *dry)
	if err != nil {
		fmt.Fprintln(out, "error:", err)
		return 1
	}
	return code
}

type run struct {
	store                                          Store
	in                                             io.Reader
	out                                            io.Writer
	yes                                            bool
	controller, model, app, calicoApp, calicoModel string
}

// credentials are the client store's for the controller: its password, or
// the macaroons `juju login` left.
func (r *run) credentials() (StoreController, Credentials, error) {
	ctrl, err := r.store.Controller(r.controller)
	if err != nil {
		return ctrl, Credentials{}, err
	}
	user, password, err := r.store.Account(ctrl.Name)
	if err != nil {
		return ctrl, Credentials{}, err
	}
	creds := Credentials{Addresses: ctrl.Addresses, CACert: ctrl.CACert, Username: user, Password: password}
	if password == "" {
		// Logged in with `juju login`: the controller's macaroons.
		jar, err := loginCookies(r.store.CookieFile(ctrl.Name))
		if err != nil {
			return ctrl, Credentials{}, err
		}
		creds.Jar = jar
	}
	return ctrl, creds, nil
}

func (r *run) do(ctx context.Context, cmd string, dry bool) (int, error) {
	ctrl, creds, err := r.credentials()
	if err != nil {
		return 0, err
	}
	lbModel, lbName, err := r.store.Model(ctrl.Name, r.model)
	if err != nil {
		return 0, err
	}
	lbClient, err := Dial(ctx, creds, lbModel, DefaultTimeouts)
	if err != nil {
		return 0, err
	}
	defer lbClient.Close()
	values, err := lbClient.Config(ctx, r.app)
	if err != nil {
		return 0, err
	}
	opts, err := config.OptionsFromMap(values)
	if err != nil {
		return 0, fmt.Errorf("%s's config: %w", r.app, err)
	}
	cfg, _, err := config.FromOptions(opts)
	if err != nil {
		return 0, fmt.Errorf("%s's config is invalid (its unit says so too): %w", r.app, err)
	}
	calApp := r.calicoApp
	// redirected: calico-lb's config, which others may edit, points the
	// sync somewhere other than calico in calico-lb's own model.
	redirected := false
	if calApp == "" {
		calApp = opts.CalicoApplication
		redirected = calApp != config.DefaultOptions().CalicoApplication
	}
	calModel, calName := lbModel, lbName
	switch {
	case r.calicoModel != "":
		if calModel, calName, err = r.store.Model(ctrl.Name, r.calicoModel); err != nil {
			return 0, err
		}
	case opts.CalicoModel != "":
		calModel, calName = opts.CalicoModel, opts.CalicoModel
		if _, q, err := r.store.Model(ctrl.Name, calModel); err == nil {
			calName = q
		}
		redirected = redirected || calModel != lbModel
	}
	calClient := lbClient
	if calModel != lbModel {
		if calClient, err = Dial(ctx, creds, calModel, DefaultTimeouts); err != nil {
			return 0, err
		}
		defer calClient.Close()
	}
	link := &Link{Client: calClient, App: calApp}
	fmt.Fprintf(r.out, "controller %s: %s in %s, %s in %s\n", ctrl.Name, r.app, lbName, calApp, calName)
	if cmd == "check" {
		read, _, err := link.Read(ctx)
		if err != nil {
			return 0, err
		}
		a := Assess(cfg, opts.PeeringMode, opts.CalicoServiceIPOption, read, calico.Topology{})
		return r.report(cfg, opts.PeeringMode, read, a), nil
	}
	if redirected && !dry && !r.confirm(calApp, calName) {
		fmt.Fprintln(r.out, "nothing written")
		return 1, nil
	}
	mem := fileMemory(filepath.Join(r.store.Dir, "calico-lb", calModel+"-"+calApp+".json"))
	o, err := link.Sync(ctx, Request{Config: cfg, PeeringMode: opts.PeeringMode, OptionSetting: opts.CalicoServiceIPOption,
		InForce: r.inForce(ctx, lbClient, cfg), Memory: mem, DryRun: dry})
	if err != nil {
		return 0, err
	}
	fmt.Fprintln(r.out, o.Summary(dry))
	return 0, nil
}

// confirm asks the operator before writing to a calico application that
// calico-lb's config named: whoever may `juju config calico-lb` could
// otherwise point an administrator's sync at another model's calico.
func (r *run) confirm(app, model string) bool {
	fmt.Fprintf(r.out, "%s's config names the calico application %q in model %s as the one to write to.\n", r.app, app, model)
	if r.yes {
		return true
	}
	fmt.Fprint(r.out, "Write there? [y/N] ")
	var answer string
	if _, err := fmt.Fscanln(r.in, &answer); err != nil {
		fmt.Fprintln(r.out, "\nno answer: pass --yes, or name the target with --calico-app and --calico-model")
		return false
	}
	return strings.EqualFold(strings.TrimSpace(answer), "y") || strings.EqualFold(strings.TrimSpace(answer), "yes")
}

// loginCookies loads the login cookies `juju login` saved for the
// controller. The jar is never saved: the file is the juju client's. (With
// the jar's NoPersist option the file would not even be read.)
func loginCookies(path string) (http.CookieJar, error) {
	jar, err := cookiejar.New(&cookiejar.Options{Filename: path})
	if err != nil {
		return nil, fmt.Errorf("login cookies in %s: %w", path, err)
	}
	return jar, nil
}

// inForce tells what calico-lb's workload has in force from the status
// its leader shows: only an active calico-lb has its config's pools in
// force. Otherwise (a held-back pool change, a config the workload
// rejected, a unit not up) it is not known, and Sync removes nothing.
func (r *run) inForce(ctx context.Context, lb Client, cfg *config.Config) InForce {
	status, msg, err := lb.AppStatus(ctx, r.app)
	switch {
	case err != nil:
		return InForce{Why: fmt.Sprintf("%s's status cannot be read (%v)", r.app, err)}
	case status != "active":
		return InForce{Why: fmt.Sprintf("%s is %s (%q): the pools it has in force may not be its config's; sync again once it is active", r.app, status, msg)}
	}
	// Active is as much as the operator's client can see of the speakers:
	// run it once they announce (bgp-status) when switching away from
	// calico mode.
	return InForce{Known: true, CIDRs: calico.PoolCIDRs(cfg.Pools), Announcing: true}
}

// fileMemory keeps the CIDRs calico-lb-juju added in a file of the
// operator's Juju data directory.
type fileMemory string

func (f fileMemory) Added() []string {
	var out []string
	if data, err := os.ReadFile(string(f)); err == nil {
		_ = json.Unmarshal(data, &out)
	}
	return out
}

func (f fileMemory) Ready() error { return nil }

func (f fileMemory) Remember(cidrs []string) error {
	data, _ := json.Marshal(cidrs)
	if err := os.MkdirAll(filepath.Dir(string(f)), 0o700); err != nil {
		return err
	}
	return os.WriteFile(string(f), data, 0o600)
}

// report prints check's findings; 1 when there are conflicts.
func (r *run) report(cfg *config.Config, peeringMode string, read *calico.Config, a Assessment) int {
	w := r.out
	rr := "none"
	if len(read.RouteReflectors) > 0 {
		rr = fmt.Sprintf("%d units", len(read.RouteReflectors))
	}
	fmt.Fprintf(w, "calico: %d global peers, %d subnets with peers, %d units with peers, node-to-node mesh %v, route reflectors %s\n",
		len(read.GlobalPeers), len(read.SubnetPeers), len(read.UnitPeers), onOff(read.Mesh), rr)
	var spine []string
	for _, p := range cfg.BGP.Peers {
		spine = append(spine, p.Address.String())
	}
	for _, sp := range cfg.BGP.SubnetPeers {
		for _, p := range sp.Peers {
			spine = append(spine, p.Address.String()+" ("+sp.Subnet.String()+")")
		}
	}
	if len(spine) == 0 {
		spine = []string{"none"}
	}
	fmt.Fprintf(w, "%s spine peers: %s\n", r.app, strings.Join(spine, ", "))
	if len(a.Conflicts) == 0 {
		fmt.Fprintln(w, "conflicts: none")
	} else {
		fmt.Fprintf(w, "conflicts: %d\n", len(a.Conflicts))
		for _, c := range a.Conflicts {
			fmt.Fprintf(w, "  - %s\n", c)
		}
		fmt.Fprintln(w, "  (node addresses are not known here: a subnet peer counts for every subnet a speaker could be in, and the mesh is not checked)")
	}
	if a.Decision.Mode == "" {
		fmt.Fprintf(w, "auto cannot decide: %s\n", a.Decision.Reason)
	} else {
		fmt.Fprintf(w, "auto would pick: %s (%s)\n", a.Decision.Mode, a.Decision.Reason)
	}
	if a.Mode == "" {
		fmt.Fprintf(w, "peering-mode %s: undecided, calico-lb stays blocked\n", peeringMode)
	} else {
		fmt.Fprintf(w, "peering-mode %s: %s mode\n", peeringMode, a.Mode)
	}
	if a.OptionErr != nil {
		fmt.Fprintf(w, "calico option for the pools: %v\n", a.OptionErr)
	} else if a.Mode == config.ModeCalico {
		fmt.Fprintf(w, "calico option for the pools: %s = %q; it needs %s (`calico-lb-juju sync`)\n", a.Option, strings.Join(read.ServiceIPs[a.Option], " "), strings.Join(a.Want, " "))
	}
	if len(a.Conflicts) > 0 && a.Mode == config.ModeSpine || a.Mode == "" {
		return 1
	}
	return 0
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
