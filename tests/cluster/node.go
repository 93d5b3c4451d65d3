package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/tests/netns"
)

// NodeOptions place a node in a network namespace of a test bed.
type NodeOptions struct {
	Name    string // the Node's name and the hostname hostNetwork pods see
	NetNS   string // the node's network namespace (made by a tests/netns bed)
	IP      string // the Node's InternalIP: an address of the node in NetNS
	PodCIDR string // this node's pod addresses (PodRanges)
	// RouteVia is the address through which the other nodes and the root
	// namespace reach this node's pods (default IP); RouteNodes routes them.
	RouteVia string
	// Registry is the test registry's host:port; the node pulls from it
	// over plain HTTP, and its sandbox image is Registry/pause:test.
	Registry string
	// ProxyMode is kube-proxy's mode: iptables (the default, as Charmed
	// Kubernetes runs it) or nftables.
	ProxyMode string
	// ClusterCIDR covers every node's pod ranges (default: the /16 around
	// PodCIDR, and the /32 around PodCIDR6; see PodRanges).
	ClusterCIDR string
	// IP6 and PodCIDR6 make the node dual-stack: its IPv6 InternalIP (on a
	// link the other nodes share, through which they reach its IPv6 pods)
	// and its pods' IPv6 range (e.g. fd44:0:0:1::/64).
	IP6, PodCIDR6 string
	// Labels are added to the Node once it has registered.
	Labels map[string]string
}

// Node is a running node: its own containerd, kubelet and kube-proxy in
// its network namespace and in a mount and UTS namespace of its own, held
// by a holder process, all in a cgroup named after the network namespace.
type Node struct {
	Name string
	Dir  string // its /var/lib, /var/log, configs, sockets and logs
	opts NodeOptions
	cg   string // the cgroup, in every v1 hierarchy
	// processes, in start order: holder, containerd, kubelet, kube-proxy
	holder, containerd, kubelet, proxy *proc
	stopped                            bool
}

// cgroupHierarchies are the cgroup v1 hierarchies a kubelet uses; a node's
// cgroup is made in each.
var cgroupHierarchies = []string{"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd"}

const cgroupFS = "/sys/fs/cgroup"

// StartNode starts a node and waits until it is Ready. The cluster must
// have been started with the node's name in Options.Nodes; Stop stops it
// (the cluster's Stop does too, before the control plane).
func (c *Cluster) StartNode(ctx context.Context, o NodeOptions) (n *Node, err error) {
	if _, ok := c.tokens[NodeUser(o.Name)]; !ok {
		return nil, fmt.Errorf("node %s: not in the cluster's Options.Nodes", o.Name)
	}
	if o.ProxyMode == "" {
		o.ProxyMode = "iptables"
	}
	if o.ClusterCIDR == "" {
		var err error
		if o.ClusterCIDR, err = around(o.PodCIDR, 16); err != nil {
			return nil, fmt.Errorf("node %s: PodCIDR: %w", o.Name, err)
		}
		if o.PodCIDR6 != "" {
			v6, err := around(o.PodCIDR6, 32)
			if err != nil {
				return nil, fmt.Errorf("node %s: PodCIDR6: %w", o.Name, err)
			}
			o.ClusterCIDR += "," + v6
		}
	}
	n = &Node{Name: o.Name, Dir: filepath.Join(c.Dir, "nodes", o.Name), opts: o, cg: o.NetNS}
	c.nodesMu.Lock()
	c.nodes = append(c.nodes, n)
	c.nodesMu.Unlock()
	defer func() {
		if err != nil {
			n.Stop()
			err = fmt.Errorf("node %s: %w (logs in %s)", o.Name, err, n.Dir)
		}
	}()
	start := time.Now()
	for _, d := range []string{"var-lib", "var-log", "cni", "certs.d/" + o.Registry} {
		if err := os.MkdirAll(filepath.Join(n.Dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := n.makeCgroups(); err != nil {
		return nil, err
	}
	if err := n.writeConfigs(c); err != nil {
		return nil, err
	}
	if err := n.startHolder(); err != nil {
		return nil, err
	}
	path := BinDir() + ":" + os.Getenv("PATH")
	if n.containerd, err = n.run("containerd", "env", "PATH="+path, filepath.Join(BinDir(), "containerd"), "--config", n.file("containerd.toml")); err != nil {
		return nil, err
	}
	if err := waitFile(ctx, n.file("containerd.sock"), 30*time.Second, n.containerd); err != nil {
		return nil, fmt.Errorf("containerd: %w", err)
	}
	kubeconfig, err := c.WriteKubeconfig(NodeUser(o.Name))
	if err != nil {
		return nil, err
	}
	if n.kubelet, err = n.run("kubelet", filepath.Join(BinDir(), "kubelet"), "--config="+n.file("kubelet.yaml"),
		"--kubeconfig="+kubeconfig, "--hostname-override="+o.Name, "--node-ip="+strings.Trim(o.IP+","+o.IP6, ","), "--v=1"); err != nil {
		return nil, err
	}
	proxyKC, err := c.WriteKubeconfig(UserProxy)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(n.file("kube-proxy.yaml"), []byte(kubeProxyConfig(proxyKC, o)), 0o644); err != nil {
		return nil, err
	}
	if n.proxy, err = n.run("kube-proxy", filepath.Join(BinDir(), "kube-proxy"), "--config="+n.file("kube-proxy.yaml"), "--v=1"); err != nil {
		return nil, err
	}
	if err := c.waitNodeReady(ctx, n, 2*time.Minute); err != nil {
		return nil, err
	}
	if len(o.Labels) > 0 {
		if err := c.labelNode(ctx, o.Name, o.Labels); err != nil {
			return nil, err
		}
	}
	c.logf(fmt.Sprintf("node %s Ready in %s (%s, kube-proxy %s)", o.Name, time.Since(start).Round(time.Millisecond), o.IP, o.ProxyMode))
	return n, nil
}

func (n *Node) file(name string) string { return filepath.Join(n.Dir, name) }

// PodRanges are the pod ranges of node i (1-based) of the bed whose
// management network is net (the third octet of its management
// addresses): distinct per bed, because every bed routes its pods from the
// one root namespace and beds run side by side (go test runs packages in
// parallel). Within a bed's /16 (v4) and /32 (v6).
func PodRanges(net, i int) (v4, v6 string) {
	return fmt.Sprintf("10.%d.%d.0/24", net+20, i), fmt.Sprintf("fd44:%d:0:%d::/64", net, i)
}

// around is the prefix of bits around cidr.
func around(cidr string, bits int) (string, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return "", err
	}
	wide, err := p.Addr().Prefix(bits)
	return wide.String(), err
}

// makeCgroups makes the node's cgroup in every hierarchy, with system/ for
// its daemons and pods/ as the kubelet's cgroupRoot.
func (n *Node) makeCgroups() error {
	cpus, err := os.ReadFile(filepath.Join(cgroupFS, "cpuset", "cpuset.cpus"))
	if err != nil {
		return fmt.Errorf("cgroup v1 cpuset (the test nodes need cgroup v1 hierarchies): %w", err)
	}
	mems, err := os.ReadFile(filepath.Join(cgroupFS, "cpuset", "cpuset.mems"))
	if err != nil {
		return err
	}
	for _, h := range cgroupHierarchies {
		for _, sub := range []string{"", "system", "pods"} {
			d := filepath.Join(cgroupFS, h, n.cg, sub)
			if err := os.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("cgroup %s: %w", d, err)
			}
			if h == "cpuset" {
				// A cpuset cgroup takes no process until it has CPUs and memory nodes.
				_ = os.WriteFile(filepath.Join(d, "cpuset.cpus"), cpus, 0o644)
				_ = os.WriteFile(filepath.Join(d, "cpuset.mems"), mems, 0o644)
			}
		}
	}
	return nil
}

// writeConfigs writes containerd's, the CNI's and the kubelet's configs.
func (n *Node) writeConfigs(c *Cluster) error {
	o := n.opts
	files := map[string]string{
		"containerd.toml":                       containerdConfig(n.Dir, o.Registry),
		"certs.d/" + o.Registry + "/hosts.toml": fmt.Sprintf("server = \"http://%[1]s\"\n\n[host.\"http://%[1]s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", o.Registry),
		"cni/10-bed.conflist":                   cniConfig(o.PodCIDR, o.PodCIDR6),
		"kubelet.yaml":                          kubeletConfig(n.Dir, n.cg, o),
		// Nothing resolves in the bed; pods' lookups stay in their own namespace.
		"resolv.conf": "nameserver 127.0.0.1\n",
	}
	for name, data := range files {
		if err := os.WriteFile(n.file(name), []byte(data), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// startHolder starts the process that owns the node's mount and UTS
// namespaces: /run a tmpfs of its own, /var/lib and /var/log bound from the
// node's directory, the node's hostname. containerd and the kubelet must
// share one mount namespace (volume mounts), and the paths they and the CNI
// plugins hard-code must be the node's own.
func (n *Node) startHolder() error {
	script := fmt.Sprintf("hostname %s && mount -n -t tmpfs -o mode=755 tmpfs /run && mount -n --bind %s /var/lib && mount -n --bind %s /var/log && exec sleep infinity",
		n.Name, n.file("var-lib"), n.file("var-log"))
	var err error
	n.holder, err = n.spawn("holder", "nsenter", "--net=/run/netns/"+n.opts.NetNS, "unshare", "--mount", "--uts", "--propagation", "slave", "sh", "-c", script)
	if err != nil {
		return err
	}
	_, err = netns.WaitFor(context.Background(), 10*time.Second, func() bool {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", n.holder.cmd.Process.Pid))
		return strings.TrimSpace(string(comm)) == "sleep"
	})
	if err != nil {
		log, _ := os.ReadFile(n.file("holder.log"))
		return fmt.Errorf("namespace holder did not start: %s", log)
	}
	return nil
}

// run starts a daemon inside the holder's namespaces.
func (n *Node) run(name string, args ...string) (*proc, error) {
	return n.spawn(name, append([]string{"nsenter", "-t", strconv.Itoa(n.holder.cmd.Process.Pid), "-m", "-n", "-u", "--"}, args...)...)
}

// spawn starts args, logging to <name>.log, in the node's system cgroup
// before it runs anything (a shell joins the cgroup, then execs), so that
// nothing it starts escapes the cleanup.
func (n *Node) spawn(name string, args ...string) (*proc, error) {
	return n.spawnIn("system", name, args...)
}

// Load starts a busy loop in the node's pods cgroup, beside its pods (the
// speaker among them), as a CPU-hungry workload on the node would run;
// stop ends it, and so does the node's Stop.
func (n *Node) Load(name string) (stop func(), err error) {
	p, err := n.spawnIn("pods", name, "sh", "-c", "while :; do :; done")
	if err != nil {
		return nil, err
	}
	return func() { _ = p.cmd.Process.Kill(); <-p.done }, nil
}

// spawnIn is spawn into the node's cgroup sub (system or pods).
func (n *Node) spawnIn(sub, name string, args ...string) (*proc, error) {
	logf, err := os.Create(n.file(name + ".log"))
	if err != nil {
		return nil, err
	}
	var join strings.Builder
	for _, h := range cgroupHierarchies {
		fmt.Fprintf(&join, "echo $$ > %s && ", filepath.Join(cgroupFS, h, n.cg, sub, "cgroup.procs"))
	}
	cmd := exec.Command("sh", append([]string{"-c", join.String() + `exec "$@"`, "sh"}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func waitFile(ctx context.Context, path string, limit time.Duration, p *proc) error {
	_, err := netns.WaitFor(ctx, limit, func() bool {
		_, err := os.Stat(path)
		return err == nil || p.exited()
	})
	if p.exited() {
		return fmt.Errorf("exited: %v", p.cmd.ProcessState)
	}
	return err
}

func (c *Cluster) waitNodeReady(ctx context.Context, n *Node, limit time.Duration) error {
	kube := c.Client(UserAdmin)
	var last string
	_, err := netns.WaitFor(ctx, limit, func() bool {
		for name, p := range map[string]*proc{"containerd": n.containerd, "kubelet": n.kubelet, "kube-proxy": n.proxy} {
			if p.exited() {
				last = fmt.Sprintf("%s exited: %v", name, p.cmd.ProcessState)
				return true
			}
		}
		node, err := kube.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				last = fmt.Sprintf("Ready=%s: %s", cond.Status, cond.Message)
				return cond.Status == corev1.ConditionTrue
			}
		}
		return false
	})
	if err != nil || !strings.HasPrefix(last, "Ready=True") {
		return fmt.Errorf("not Ready: %s", last)
	}
	return nil
}

func (c *Cluster) labelNode(ctx context.Context, name string, labels map[string]string) error {
	kube := c.Client(UserAdmin)
	node, err := kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if node.Labels == nil {
		node.Labels = map[string]string{}
	}
	for k, v := range labels {
		node.Labels[k] = v
	}
	_, err = kube.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{})
	return err
}

// Stop stops the node as a machine that is switched off: kube-proxy, the
// kubelet, every container, containerd and its shims, the holder (whose
// end takes the mounts with it); then it removes the cgroups. The Node
// object stays, as it would. Safe to call twice.
func (n *Node) Stop() {
	if n.stopped {
		return
	}
	n.stopped = true
	for _, p := range []*proc{n.proxy, n.kubelet} {
		if p != nil {
			stopProcess(p, 10*time.Second)
		}
	}
	killCgroup(filepath.Join(cgroupFS, "pids", n.cg, "pods"))
	if n.containerd != nil {
		stopProcess(n.containerd, 10*time.Second)
	}
	killCgroup(filepath.Join(cgroupFS, "pids", n.cg))
	if n.holder != nil {
		stopProcess(n.holder, 2*time.Second)
	}
	removeCgroups(n.cg)
}

// killCgroup SIGKILLs every process in the cgroup directory dir and below
// until none is left (a dying shim can still fork for a moment).
func killCgroup(dir string) {
	for range 50 {
		found := false
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			data, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil {
					found = true
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			return nil
		})
		if !found {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// removeCgroups removes a node's cgroup tree from every hierarchy (and
// the cgroup v2 one, where runc also puts containers), deepest first.
func removeCgroups(cg string) {
	for _, h := range append(cgroupHierarchies, "unified") {
		root := filepath.Join(cgroupFS, h, cg)
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			for range 20 {
				if err := syscall.Rmdir(dirs[i]); err == nil || os.IsNotExist(err) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
}

// dirPrefix starts the name of a cluster's work directory, followed by the
// process ID of the run that made it.
const dirPrefix = "calico-lb-cluster-"

// Sweep removes what crashed runs left: it kills what their nodes left
// running (shims and containers are no children of the run, so they
// outlive it; they are found by their cgroups, named after the network
// namespaces of test beds whose process is gone), removes those cgroups,
// and removes the work directories of clusters whose process is gone.
// Leftovers of runs still going are not touched.
func Sweep() {
	seen := map[string]bool{}
	for _, h := range append(cgroupHierarchies, "unified") {
		entries, _ := os.ReadDir(filepath.Join(cgroupFS, h))
		for _, e := range entries {
			if e.IsDir() && !seen[e.Name()] && netns.Leftover(e.Name()) {
				seen[e.Name()] = true
				killCgroup(filepath.Join(cgroupFS, "pids", e.Name()))
				removeCgroups(e.Name())
			}
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, d := range dirs {
		pidPart, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), dirPrefix), "-")
		if pid, err := strconv.Atoi(pidPart); err == nil && pid > 0 && syscall.Kill(pid, 0) != nil {
			_ = os.RemoveAll(d)
		}
	}
}
