// Package spinebed is the spine-mode test bed shared by the end-to-end
// tests, `make bench-bgp` and the demo: a spine router (FRR, AS 64500),
// nodes on their own links to it, a client behind it, a real control plane
// reachable from the nodes over a management bridge, and the real
// calico-lb controller and speakers.
//
//	client 10.212.3.2 -- 10.212.3.1 \
//	node1  10.212.1.2 -- 10.212.1.1  > spine (FRR, ECMP)
//	node2  10.212.2.2 -- 10.212.2.1 /
package spinebed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/kubebed"
	"github.com/calico-lb/calico-lb/tests/netns"
)

// Options shape the bed.
type Options struct {
	Nodes  int    // default 2
	BFD    bool   // FRR runs bfdd, peers use BFD 100 ms x 3
	Binary string // the calico-lb binary
	// APIAddress is the controller's local API (default: a free loopback
	// port).
	APIAddress string
	Dir        string // logs and config
	Log        func(string)
	// RealNodes runs each node as a real Kubernetes node (containerd,
	// kubelet, kube-proxy; tests/kubebed) with the control plane's
	// controller-manager and scheduler; calico-lb then runs as pods.
	RealNodes bool
}

// Bed is a running spine topology.
type Bed struct {
	Net     *netns.Bed
	Spine   string
	Nodes   []string // namespaces node1, node2, ...
	Client  string
	FRR     *netns.FRR
	Cluster *cluster.Cluster
	// Kubebed is the real cluster, with RealNodes.
	Kubebed    *kubebed.Bed
	Kube       kubernetes.Interface
	Kubeconfig string
	ConfigPath string
	// NodeIPs are the nodes' addresses (InternalIPs), in node order, and
	// NodeIP6s their IPv6 ones where the bed has them (L2).
	NodeIPs, NodeIP6s []string
	// MgmtIPs are the nodes' addresses on the management bridge, which
	// the root namespace (the controller's) reaches.
	MgmtIPs []string
	// ControllerAPI is the controller's local API, once it runs.
	ControllerAPI string
	opts          Options
	controller    *exec.Cmd
	speakers      []*exec.Cmd
}

// NodeIP is node i's (1-based) address on its spine link.
func NodeIP(i int) string { return fmt.Sprintf("10.212.%d.2", i) }

// newBed fills in opts' defaults (nodes when opts.Nodes is 0) and creates
// the bed's namespace set.
func newBed(opts *Options, nodes int) (*Bed, error) {
	if opts.Nodes == 0 {
		opts.Nodes = nodes
	}
	if opts.Log == nil {
		opts.Log = func(string) {}
	}
	nb, err := netns.New()
	if err != nil {
		return nil, err
	}
	return &Bed{Net: nb, opts: *opts, ConfigPath: filepath.Join(opts.Dir, "config.yaml")}, nil
}

// Start builds the topology and the control plane; the controller and the
// speakers start with StartController and StartSpeaker.
func Start(ctx context.Context, opts Options) (b *Bed, err error) {
	if b, err = newBed(&opts, 2); err != nil {
		return nil, err
	}
	nb := b.Net
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	if b.Spine, err = nb.NS("spine"); err != nil {
		return nil, err
	}
	if b.Client, err = nb.NS("client"); err != nil {
		return nil, err
	}
	var neighbors strings.Builder
	for i := 1; i <= opts.Nodes; i++ {
		ns, err := nb.NS(fmt.Sprint("node", i))
		if err != nil {
			return nil, err
		}
		b.Nodes = append(b.Nodes, ns)
		if err := nb.Link(b.Spine, fmt.Sprint("to-node", i), []string{fmt.Sprintf("10.212.%d.1/24", i)}, ns, "eth0", []string{NodeIP(i) + "/24"}); err != nil {
			return nil, err
		}
		if _, err := nb.Exec(ns, "ip", "route", "add", "10.212.0.0/16", "via", fmt.Sprintf("10.212.%d.1", i)); err != nil {
			return nil, err
		}
		fmt.Fprintf(&neighbors, " neighbor %s peer-group NODES\n", NodeIP(i))
		if opts.BFD {
			fmt.Fprintf(&neighbors, " neighbor %s bfd\n neighbor %s bfd profile fast\n", NodeIP(i), NodeIP(i))
		}
	}
	if err := nb.Link(b.Spine, "to-client", []string{"10.212.3.1/24"}, b.Client, "eth0", []string{"10.212.3.2/24"}); err != nil {
		return nil, err
	}
	for _, cmd := range [][]string{
		{b.Client, "ip", "route", "add", "default", "via", "10.212.3.1"},
		// ECMP spreads one client's connections only with an L4 hash.
		{b.Spine, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1"},
	} {
		if _, err := nb.Exec(cmd[0], cmd[1:]...); err != nil {
			return nil, err
		}
	}
	bfd := ""
	if opts.BFD {
		bfd = "bfd\n profile fast\n  receive-interval 100\n  transmit-interval 100\n  detect-multiplier 3\n exit\nexit\n"
	}
	if b.FRR, err = nb.StartFRR(b.Spine, opts.BFD, "frr defaults traditional\n"+bfd+`router bgp 64500
 bgp router-id 10.212.0.1
 bgp log-neighbor-changes
 no bgp ebgp-requires-policy
 neighbor NODES peer-group
 neighbor NODES remote-as 64512
 neighbor NODES passive
`+neighbors.String()+` address-family ipv4 unicast
  maximum-paths 8
 exit-address-family
exit
`); err != nil {
		return nil, err
	}
	mgmt, err := b.management(212)
	if err != nil {
		return nil, err
	}
	opts.Log("network: spine (FRR), " + fmt.Sprint(opts.Nodes) + " nodes, client, management bridge")
	for i := 1; i <= opts.Nodes; i++ {
		b.NodeIPs = append(b.NodeIPs, NodeIP(i))
	}
	return b, b.startControlPlane(ctx, mgmt)
}

// management joins the nodes and the root namespace on bridge net.
func (b *Bed) management(net int) (string, error) {
	mgmt, err := b.Net.Management(net, b.Nodes...)
	if err != nil {
		return "", err
	}
	for i := range b.Nodes {
		b.MgmtIPs = append(b.MgmtIPs, netns.ManagementAddr(net, i))
	}
	return mgmt, nil
}

// startControlPlane starts etcd and kube-apiserver on the management
// address and creates a Node object per node, or with RealNodes the real
// cluster whose nodes register themselves.
func (b *Bed) startControlPlane(ctx context.Context, mgmt string) error {
	var err error
	if b.opts.RealNodes {
		var nodes []cluster.NodeOptions
		for i, ns := range b.Nodes {
			o := cluster.NodeOptions{Name: fmt.Sprint("node", i+1), NetNS: ns, IP: b.NodeIPs[i],
				PodCIDR: fmt.Sprintf("10.244.%d.0/24", i+1), RouteVia: b.MgmtIPs[i]}
			if len(b.NodeIP6s) > i {
				o.IP6, o.PodCIDR6 = b.NodeIP6s[i], fmt.Sprintf("fd44:0:0:%d::/64", i+1)
			}
			nodes = append(nodes, o)
		}
		if b.Kubebed, err = kubebed.Start(ctx, kubebed.Options{Address: mgmt, Nodes: nodes, Log: b.opts.Log}); err != nil {
			return err
		}
		b.Cluster, b.Kube = b.Kubebed.Cluster, b.Kubebed.Kube
		b.Kubeconfig, err = b.Cluster.WriteKubeconfig(cluster.UserAdmin)
		return err
	}
	if b.Cluster, err = cluster.Start(ctx, cluster.Options{BindAddress: mgmt, Log: b.opts.Log}); err != nil {
		return err
	}
	b.Kube = b.Cluster.Client(cluster.UserAdmin)
	if b.Kubeconfig, err = b.Cluster.WriteKubeconfig(cluster.UserAdmin); err != nil {
		return err
	}
	for i, ip := range b.NodeIPs {
		if err := createNode(ctx, b.Kube, fmt.Sprint("node", i+1), ip); err != nil {
			return err
		}
	}
	return nil
}

// L2NodeIP is node i's (1-based) address on the L2 segment, and
// L2NodeIP6 its IPv6 one.
func L2NodeIP(i int) string  { return fmt.Sprintf("10.214.0.%d", 10+i) }
func L2NodeIP6(i int) string { return fmt.Sprintf("fd14::%d", 10+i) }

// StartL2 builds the L2 topology: one segment (a bridge in a switch
// namespace) joining a client (10.214.0.2, fd14::2) and the nodes, and the
// control plane. The nodes accept traffic for VIPs put on their loopback,
// but their kernels never answer ARP for them: that is the speakers' job.
func StartL2(ctx context.Context, opts Options) (b *Bed, err error) {
	if b, err = newBed(&opts, 3); err != nil {
		return nil, err
	}
	nb := b.Net
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	sw, err := nb.NS("switch")
	if err != nil {
		return nil, err
	}
	b.Spine = sw
	if _, err := nb.Exec(sw, "ip", "link", "add", "br0", "type", "bridge", "stp_state", "0"); err != nil {
		return nil, err
	}
	if _, err := nb.Exec(sw, "ip", "link", "set", "br0", "up"); err != nil {
		return nil, err
	}
	attach := func(ns, port string, addrs ...string) error {
		if err := nb.Link(sw, port, nil, ns, "eth0", addrs); err != nil {
			return err
		}
		_, err := nb.Exec(sw, "ip", "link", "set", port, "master", "br0")
		return err
	}
	if b.Client, err = nb.NS("client"); err != nil {
		return nil, err
	}
	if err := attach(b.Client, "p-client", "10.214.0.2/24", "fd14::2/64"); err != nil {
		return nil, err
	}
	for i := 1; i <= opts.Nodes; i++ {
		ns, err := nb.NS(fmt.Sprint("node", i))
		if err != nil {
			return nil, err
		}
		b.Nodes = append(b.Nodes, ns)
		b.NodeIPs = append(b.NodeIPs, L2NodeIP(i))
		b.NodeIP6s = append(b.NodeIP6s, L2NodeIP6(i))
		if err := attach(ns, fmt.Sprint("p-node", i), L2NodeIP(i)+"/24", L2NodeIP6(i)+"/64"); err != nil {
			return nil, err
		}
		if _, err := nb.Exec(ns, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.eth0.arp_ignore=1",
			"net.ipv4.conf.all.arp_announce=2", "net.ipv4.conf.eth0.arp_announce=2"); err != nil {
			return nil, err
		}
	}
	mgmt, err := b.management(214)
	if err != nil {
		return nil, err
	}
	opts.Log(fmt.Sprintf("network: one L2 segment with a client and %d nodes, management bridge", opts.Nodes))
	return b, b.startControlPlane(ctx, mgmt)
}

// MAC returns the MAC address of eth0 in ns.
func (b *Bed) MAC(ns string) string {
	out, err := b.Net.Exec(ns, "cat", "/sys/class/net/eth0/address")
	if err != nil {
		return ""
	}
	return strings.ToUpper(strings.TrimSpace(out))
}

func createNode(ctx context.Context, client kubernetes.Interface, name, ip string) error {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
	n, err := client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
	_, err = client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	return err
}

// Config is a spine-mode config for this bed: pools as given, and each node
// peering with its own side of the spine.
func (b *Bed) Config(pools string, peerExtra string) string {
	var peers strings.Builder
	for i := 1; i <= len(b.Nodes); i++ {
		fmt.Fprintf(&peers, "    10.212.%d.0/24: [{address: 10.212.%d.1, as-number: 64500, hold-time: 9%s}]\n", i, i, peerExtra)
	}
	return "mode: spine\npools:\n" + pools + "bgp:\n  as-number: 64512\n  subnet-peers:\n" + peers.String()
}

// WriteConfig writes the config file the controller and the speakers read.
func (b *Bed) WriteConfig(cfg string) error {
	tmp := b.ConfigPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(cfg), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, b.ConfigPath)
}

// StartController runs the controller in the root namespace.
func (b *Bed) StartController() error {
	logf, err := os.Create(filepath.Join(b.opts.Dir, "controller.log"))
	if err != nil {
		return err
	}
	addr := b.opts.APIAddress
	if addr == "" {
		if addr, err = cluster.FreeAddress(); err != nil {
			return err
		}
	}
	cmd := exec.Command(b.opts.Binary, "controller", "--config", b.ConfigPath, "--kubeconfig", b.Kubeconfig,
		"--identity", "controller", "--lease-namespace", "default", "--api-address", addr, "--metrics-address", "127.0.0.1:0")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	b.controller = cmd
	b.ControllerAPI = "http://" + addr
	return nil
}

// StartWorkload writes cfg and starts the controller and every node's speaker.
func (b *Bed) StartWorkload(cfg string) error {
	if err := b.WriteConfig(cfg); err != nil {
		return err
	}
	if err := b.StartController(); err != nil {
		return err
	}
	for i := 1; i <= len(b.Nodes); i++ {
		if err := b.StartSpeaker(i); err != nil {
			return err
		}
	}
	return nil
}

// ReportSpeakerPods creates the speaker pods as the DaemonSet controller
// and the kubelets would (there are none here): one per node, running,
// ready, with the node's management address as its host-network IP.
func (b *Bed) ReportSpeakerPods(ctx context.Context) error {
	// The apiserver admits a pod only with an existing ServiceAccount; the
	// controller creates this one when it has a speaker image to deploy.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "calico-lb-speaker", Namespace: "default"}}
	if _, err := b.Kube.CoreV1().ServiceAccounts("default").Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	no := false
	for i, node := range b.Nodes {
		name := fmt.Sprint("node", i+1)
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "calico-lb-speaker-" + name, Namespace: "default",
				Labels: map[string]string{"app.kubernetes.io/name": "calico-lb-speaker"}},
			Spec: corev1.PodSpec{NodeName: name, HostNetwork: true, ServiceAccountName: sa.Name, AutomountServiceAccountToken: &no, Containers: []corev1.Container{{Name: "speaker", Image: "calico-lb"}}},
		}
		p, err := b.Kube.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("speaker pod on %s: %w", node, err)
		}
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: b.MgmtIPs[i], HostIP: b.MgmtIPs[i],
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
		if _, err := b.Kube.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("speaker pod on %s: %w", node, err)
		}
	}
	return nil
}

// StartSpeaker runs node i's (1-based) speaker in its namespace, replacing
// one that was stopped.
func (b *Bed) StartSpeaker(i int) error {
	for len(b.speakers) < i {
		b.speakers = append(b.speakers, nil)
	}
	name := fmt.Sprint("node", i)
	cmd, err := b.Net.Start(b.Nodes[i-1], filepath.Join(b.opts.Dir, name+".log"), b.opts.Binary, "speaker",
		"--node-name", name, "--config", b.ConfigPath, "--kubeconfig", b.Kubeconfig)
	if err != nil {
		return err
	}
	b.speakers[i-1] = cmd
	return nil
}

// Signal sends sig to node i's speaker and, for SIGTERM or SIGKILL, waits
// for it to exit.
func (b *Bed) Signal(i int, sig syscall.Signal) {
	cmd := b.speakers[i-1]
	if cmd == nil || cmd.Process == nil {
		return
	}
	// ip netns exec execs the speaker, so the pid is the speaker's.
	_ = cmd.Process.Signal(sig)
	if sig == syscall.SIGTERM || sig == syscall.SIGKILL {
		deadline := time.Now().Add(10 * time.Second)
		for syscall.Kill(cmd.Process.Pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// NextHops is the spine's kernel next hops for ip, sorted.
func (b *Bed) NextHops(ip string) []string {
	hops := b.FRR.Routes(ip)
	slices.Sort(hops)
	return hops
}

// WaitNextHops waits until the spine's next hops for ip are exactly want.
func (b *Bed) WaitNextHops(ip string, limit time.Duration, want ...string) (time.Duration, error) {
	slices.Sort(want)
	took, err := netns.WaitFor(context.Background(), limit, func() bool { return slices.Equal(b.NextHops(ip), want) })
	if err != nil {
		return took, fmt.Errorf("spine next hops for %s: %v, want %v", ip, b.NextHops(ip), want)
	}
	return took, nil
}

// WaitIP waits until the Service has an IP and returns it.
func (b *Bed) WaitIP(ns, name string, limit time.Duration) (string, error) {
	var ip string
	_, err := netns.WaitFor(context.Background(), limit, func() bool {
		s, err := b.Kube.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && len(s.Status.LoadBalancer.Ingress) > 0 {
			ip = s.Status.LoadBalancer.Ingress[0].IP
		}
		return ip != ""
	})
	if err != nil {
		return "", errors.New("service " + ns + "/" + name + " got no IP")
	}
	return ip, nil
}

// Logs returns the tail of every process log, for failures.
func (b *Bed) Logs() string {
	var out strings.Builder
	entries, _ := os.ReadDir(b.opts.Dir)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".log") {
			continue
		}
		data, _ := os.ReadFile(filepath.Join(b.opts.Dir, e.Name()))
		if len(data) > 3000 {
			data = data[len(data)-3000:]
		}
		fmt.Fprintf(&out, "--- %s\n%s\n", e.Name(), data)
	}
	if b.FRR != nil {
		fmt.Fprintf(&out, "--- FRR\n%s\n", b.FRR.Log())
	}
	return out.String()
}

// Close stops everything and removes the namespaces.
func (b *Bed) Close() {
	for _, cmd := range b.speakers {
		if cmd != nil && cmd.Process != nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	if b.controller != nil && b.controller.Process != nil {
		_ = b.controller.Process.Signal(syscall.SIGTERM)
		_, _ = b.controller.Process.Wait()
	}
	if b.Kubebed != nil {
		b.Kubebed.Close()
	} else if b.Cluster != nil {
		b.Cluster.Stop()
	}
	_ = b.Net.Close()
}

// ServeVIP puts vip on every node's loopback and answers TCP on port with
// the node's name ("node1", ...), standing in for kube-proxy and a pod.
// Stop the listeners with the returned function.
func (b *Bed) ServeVIP(vip string, port uint16) (stop func(), err error) {
	addr := netip.MustParseAddr(vip)
	var lns []net.Listener
	stop = func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	for i, ns := range b.Nodes {
		if _, err := b.Net.Exec(ns, "ip", "addr", "add", netip.PrefixFrom(addr, addr.BitLen()).String(), "dev", "lo"); err != nil {
			stop()
			return nil, err
		}
		ln, err := netns.Serve(ns, netip.AddrPortFrom(addr, port).String(), fmt.Sprint("node", i+1))
		if err != nil {
			stop()
			return nil, err
		}
		lns = append(lns, ln)
	}
	return stop, nil
}

// WaitOtherAnswer probes target from the client every 10 ms (each attempt
// limited to 100 ms, through the client's own ARP cache) until a node
// other than not answers, and returns who answered and how long after
// since. It gives up after limit.
func (b *Bed) WaitOtherAnswer(target, not string, since time.Time, limit time.Duration) (string, time.Duration, error) {
	for time.Since(since) <= limit {
		attempt := time.Now()
		if who, err := netns.AskWithin(b.Client, target, 100*time.Millisecond); err == nil && who != not {
			return who, time.Since(since), nil
		}
		time.Sleep(time.Until(attempt.Add(10 * time.Millisecond)))
	}
	return "", 0, fmt.Errorf("no node other than %s answered %s within %s", not, target, limit)
}
