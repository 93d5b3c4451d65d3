// Package netns builds network test beds: network namespaces joined by veth
// links, real routers (FRR) in them, and processes run inside them. Traffic
// stays inside the namespaces it creates. Every namespace is named
// clb<pid>x<n>-<role>, so leftovers of a crashed run are found and removed
// by the next one (only those whose process is gone).
package netns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var beds atomic.Int32

// Bed is a set of namespaces and the processes in them.
type Bed struct {
	id     string
	mu     sync.Mutex
	spaces []string
	procs  []*exec.Cmd
	frrs   []*FRR
	dirs   []string
}

// Missing returns what the test bed needs that this machine lacks.
func Missing() []string {
	var out []string
	if os.Geteuid() != 0 {
		out = append(out, "root")
	}
	for _, bin := range []string{"ip", "vtysh", "/usr/lib/frr/zebra", "/usr/lib/frr/bgpd", "nft", "ping"} {
		if _, err := exec.LookPath(bin); err != nil {
			out = append(out, bin)
		}
	}
	return out
}

// Require skips the test when the machine cannot run a test bed (not root,
// packages missing), or fails it when CALICO_LB_E2E=1.
func Require(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short (make unit): needs a network test bed")
	}
	if m := Missing(); len(m) > 0 {
		msg := "network test bed needs: " + strings.Join(m, ", ") + " (run as root after `make deps`)"
		if os.Getenv("CALICO_LB_E2E") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// New creates an empty test bed, removing leftovers of dead runs first.
func New() (*Bed, error) {
	sweep()
	return &Bed{id: fmt.Sprintf("clb%dx%d", os.Getpid(), beds.Add(1))}, nil
}

// NewT is New for a test: the bed is closed when the test ends.
func NewT(t testing.TB) *Bed {
	t.Helper()
	Require(t)
	b, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close test bed: %v", err)
		}
	})
	return b
}

var leftover = regexp.MustCompile(`^clb(\d+)x\d+-`)

// Leftover reports whether name belongs to a test bed (clb<pid>x<n>-...)
// whose process has exited: what a crashed run left behind, and no
// running test's.
func Leftover(name string) bool {
	m := leftover.FindStringSubmatch(name)
	if m == nil {
		return false
	}
	pid, _ := strconv.Atoi(m[1])
	return syscall.Kill(pid, 0) != nil
}

// sweep removes what test beds whose process has exited left behind: the
// processes still running in their namespaces or on their files, then the
// namespaces and the temporary directories. FRR daemonizes, so its
// daemons outlive a crashed run; once their namespace is deleted they keep
// it alive out of `ip netns list`'s sight, found only by the bed's
// directory on their command lines.
func sweep() {
	killLeftoverProcesses()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || !Leftover(f[0]) {
				continue
			}
			if pids, err := exec.Command("ip", "netns", "pids", f[0]).Output(); err == nil {
				for _, p := range strings.Fields(string(pids)) {
					if pid, err := strconv.Atoi(p); err == nil {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
			_ = exec.Command("ip", "netns", "del", f[0]).Run()
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "clb*"))
	for _, d := range dirs {
		if Leftover(filepath.Base(d)) {
			_ = os.RemoveAll(d)
		}
	}
}

// killLeftoverProcesses kills the processes whose command line names a
// file of a test bed whose process has exited.
func killLeftoverProcesses() {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		for _, arg := range strings.Split(string(cmd), "\x00") {
			if slices.ContainsFunc(strings.Split(arg, "/"), Leftover) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				break
			}
		}
	}
}

// NS creates a namespace for role (spine, node1, client...) and returns its
// name. Loopback is up, and reverse-path filtering is pinned off (a new
// namespace copies the host's settings otherwise).
func (b *Bed) NS(role string) (string, error) {
	name := b.id + "-" + role
	if err := run("ip", "netns", "add", name); err != nil {
		return "", err
	}
	b.mu.Lock()
	b.spaces = append(b.spaces, name)
	b.mu.Unlock()
	for _, cmd := range [][]string{
		{"ip", "-n", name, "link", "set", "lo", "up"},
		{"ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"},
	} {
		if err := run(cmd...); err != nil {
			return "", err
		}
	}
	return name, nil
}

// Link joins two namespaces with a veth pair and gives each end its
// addresses (CIDR notation, any number, either family).
func (b *Bed) Link(nsA, ifA string, addrsA []string, nsB, ifB string, addrsB []string) error {
	if err := run("ip", "link", "add", ifA, "netns", nsA, "type", "veth", "peer", "name", ifB, "netns", nsB); err != nil {
		return err
	}
	for _, side := range []struct {
		ns, ifc string
		addrs   []string
	}{{nsA, ifA, addrsA}, {nsB, ifB, addrsB}} {
		for _, a := range side.addrs {
			args := []string{"ip", "-n", side.ns, "addr", "add", a, "dev", side.ifc}
			if strings.Contains(a, ":") {
				args = append(args, "nodad") // usable at once, no duplicate address detection wait
			}
			if err := run(args...); err != nil {
				return err
			}
		}
		if err := run("ip", "-n", side.ns, "link", "set", side.ifc, "up"); err != nil {
			return err
		}
	}
	return nil
}

// Bridge adds bridge name in ns, up, without spanning tree (a test
// segment has no loops, and STP would hold new ports back for seconds).
func (b *Bed) Bridge(ns, name string) error {
	if err := run("ip", "-n", ns, "link", "add", name, "type", "bridge", "stp_state", "0"); err != nil {
		return err
	}
	return run("ip", "-n", ns, "link", "set", name, "up")
}

// Exec runs a command in a namespace and returns its combined output.
func (b *Bed) Exec(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", strings.Join(args, " "), ns, err, out)
	}
	return string(out), nil
}

// Start runs a long-lived process in a namespace, its output going to
// logPath; Close stops it if it is still running.
func (b *Bed) Start(ns, logPath string, args ...string) (*exec.Cmd, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() { _ = cmd.Wait(); logf.Close() }()
	b.mu.Lock()
	b.procs = append(b.procs, cmd)
	b.mu.Unlock()
	return cmd, nil
}

// TempDir makes a directory that Close removes; it is world-traversable so
// that daemons that drop privileges (FRR runs as frr) can use it.
func (b *Bed) TempDir() (string, error) {
	dir, err := os.MkdirTemp("", b.id+"-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	b.mu.Lock()
	b.dirs = append(b.dirs, dir)
	b.mu.Unlock()
	return dir, nil
}

// Close stops every process and router and deletes every namespace.
func (b *Bed) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, cmd := range b.procs {
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	for _, f := range b.frrs {
		f.kill()
	}
	var errs []error
	for _, ns := range b.spaces {
		if err := run("ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range b.dirs {
		_ = os.RemoveAll(d)
	}
	b.procs, b.frrs, b.spaces, b.dirs = nil, nil, nil, nil
	return errors.Join(errs...)
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// WaitFor polls cond every 10 ms until it holds or limit passes, and
// returns how long it took.
func WaitFor(ctx context.Context, limit time.Duration, cond func() bool) (time.Duration, error) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), nil
		}
		if time.Since(start) > limit {
			return time.Since(start), fmt.Errorf("not within %s", limit)
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Blackhole drops all traffic between ns and peer, inside ns only (nft;
// this kernel has no netem). Undo it with Unblackhole.
func (b *Bed) Blackhole(ns, peer string) error {
	family := "ip"
	if strings.Contains(peer, ":") {
		family = "ip6"
	}
	rules := fmt.Sprintf(`table inet clb_blackhole {
  chain in  { type filter hook input  priority 0; %[1]s saddr %[2]s drop; }
  chain out { type filter hook output priority 0; %[1]s daddr %[2]s drop; }
}
`, family, peer)
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %w: %s", err, out)
	}
	return nil
}

// Unblackhole removes what Blackhole added.
func (b *Bed) Unblackhole(ns string) error {
	return run("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "clb_blackhole")
}

// Management joins the root namespace and the given namespaces on a
// bridge in a namespace of its own, so that processes in them reach the
// test control plane. The root namespace gets 10.250.<net>.1 on a veth that
// disappears with the bed; each namespace gets 10.250.<net>.<10+i> on mgmt0.
func (b *Bed) Management(net int, spaces ...string) (rootAddr string, err error) {
	mgmt, err := b.NS("mgmt")
	if err != nil {
		return "", err
	}
	if err := b.Bridge(mgmt, "br0"); err != nil {
		return "", err
	}
	attach := func(ifc, ns string, addr string) error {
		port := "p-" + ifc // unique within the mgmt namespace
		if len(port) > 15 {
			port = port[:15]
		}
		args := []string{"link", "add", ifc}
		if ns != "" {
			args = append(args, "netns", ns)
		}
		args = append(args, "type", "veth", "peer", "name", port, "netns", mgmt)
		if err := run(append([]string{"ip"}, args...)...); err != nil {
			return err
		}
		if err := run("ip", "-n", mgmt, "link", "set", port, "master", "br0", "up"); err != nil {
			return err
		}
		in := []string{"ip"}
		if ns != "" {
			in = append(in, "-n", ns)
		}
		if err := run(append(in, "addr", "add", addr, "dev", ifc)...); err != nil {
			return err
		}
		return run(append(in, "link", "set", ifc, "up")...)
	}
	rootIf := strings.TrimPrefix(b.id, "clb")
	rootIf = "clbm" + strings.ReplaceAll(rootIf, "x", "")
	if len(rootIf) > 15 {
		rootIf = rootIf[:15]
	}
	rootAddr = fmt.Sprintf("10.250.%d.1", net)
	if err := attach(rootIf, "", rootAddr+"/24"); err != nil {
		return "", err
	}
	for i, ns := range spaces {
		if err := attach(fmt.Sprintf("mgmt%d", i), ns, ManagementAddr(net, i)+"/24"); err != nil {
			return "", err
		}
	}
	return rootAddr, nil
}

// ManagementAddr is the address of the i-th (0-based) namespace given to
// Management(net, ...).
func ManagementAddr(net, i int) string { return fmt.Sprintf("10.250.%d.%d", net, 10+i) }

// Routes returns the next hops of ns's kernel route to prefix, whoever put
// it there (FRR's zebra, BIRD), or nothing when there is none.
func Routes(ns, prefix string) []string {
	family := "-4"
	if strings.Contains(prefix, ":") {
		family = "-6"
	}
	out, err := exec.Command("ip", family, "-n", ns, "-j", "route", "show", prefix).Output()
	if err != nil {
		return nil
	}
	var routes []struct {
		Gateway  string `json:"gateway"`
		Nexthops []struct {
			Gateway string `json:"gateway"`
		} `json:"nexthops"`
	}
	if json.Unmarshal(out, &routes) != nil {
		return nil
	}
	var hops []string
	for _, r := range routes {
		if r.Gateway != "" {
			hops = append(hops, r.Gateway)
		}
		for _, n := range r.Nexthops {
			hops = append(hops, n.Gateway)
		}
	}
	return hops
}

// StartBIRD runs BIRD 2 in ns with conf, until Close.
func (b *Bed) StartBIRD(ns, conf string) (dir string, err error) {
	if dir, err = b.TempDir(); err != nil {
		return "", err
	}
	path := dir + "/bird.conf"
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return "", err
	}
	if _, err := b.Start(ns, dir+"/bird.log", "bird", "-f", "-c", path, "-s", dir+"/bird.ctl", "-P", dir+"/bird.pid"); err != nil {
		return "", err
	}
	return dir, nil
}
