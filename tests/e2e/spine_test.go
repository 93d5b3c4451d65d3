package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/netns"
)

// listenEnv makes the test binary a stand-in for kube-proxy: it listens on
// an address inside a node namespace and answers every connection with the
// node's name.
const listenEnv = "CALICO_LB_E2E_LISTEN"

func init() {
	if v := os.Getenv(listenEnv); v != "" {
		addr, name, _ := strings.Cut(v, " ")
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(1)
			}
			_, _ = c.Write([]byte(name + "\n"))
			c.Close()
		}
	}
}

// spineTopology: a spine running FRR (AS 64500), two nodes on their own
// links to it (10.212.1.0/24, 10.212.2.0/24), a client (10.212.3.0/24), and
// a management bridge that lets the nodes reach the control plane.
type spineTopology struct {
	bed    *netns.Bed
	spine  string
	nodes  []string
	client string
	frr    *netns.FRR
	cl     *cluster.Cluster
	mgmtIP string
}

func newSpineTopology(t *testing.T) *spineTopology {
	t.Helper()
	bed := netns.NewT(t)
	if _, _, err := cluster.Binaries(context.Background(), nil); err != nil && cluster.E2E() {
		t.Fatal(err)
	}
	st := &spineTopology{bed: bed}
	must := func(s string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	st.spine = must(bed.NS("spine"))
	st.client = must(bed.NS("client"))
	for i := 1; i <= 2; i++ {
		n := must(bed.NS(fmt.Sprint("node", i)))
		st.nodes = append(st.nodes, n)
		if err := bed.Link(st.spine, fmt.Sprint("to-node", i), []string{fmt.Sprintf("10.212.%d.1/24", i)}, n, "eth0", []string{fmt.Sprintf("10.212.%d.2/24", i)}); err != nil {
			t.Fatal(err)
		}
		must(bed.Exec(n, "ip", "route", "add", "10.212.0.0/16", "via", fmt.Sprintf("10.212.%d.1", i)))
	}
	if err := bed.Link(st.spine, "to-client", []string{"10.212.3.1/24"}, st.client, "eth0", []string{"10.212.3.2/24"}); err != nil {
		t.Fatal(err)
	}
	must(bed.Exec(st.client, "ip", "route", "add", "default", "via", "10.212.3.1"))
	must(bed.Exec(st.spine, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1"))
	var err error
	if st.frr, err = bed.StartFRR(st.spine, false, `frr defaults traditional
router bgp 64500
 bgp router-id 10.212.0.1
 bgp log-neighbor-changes
 no bgp ebgp-requires-policy
 neighbor NODES peer-group
 neighbor NODES remote-as 64512
 neighbor NODES passive
 neighbor 10.212.1.2 peer-group NODES
 neighbor 10.212.2.2 peer-group NODES
 address-family ipv4 unicast
  maximum-paths 8
 exit-address-family
exit
`); err != nil {
		t.Fatal(err)
	}
	st.mgmtIP = must(bed.Management(212, st.nodes...))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	if st.cl, err = cluster.Start(ctx, cluster.Options{BindAddress: st.mgmtIP}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FRR log:\n%s", st.frr.Log())
		}
		st.cl.Stop()
	})
	return st
}

func (st *spineTopology) routes(prefix string) []string {
	hops := st.frr.Routes(prefix)
	slices.Sort(hops)
	return hops
}

func (st *spineTopology) waitRoutes(t *testing.T, prefix string, want ...string) time.Duration {
	t.Helper()
	took, err := netns.WaitFor(context.Background(), 30*time.Second, func() bool { return slices.Equal(st.routes(prefix), want) })
	if err != nil {
		t.Fatalf("spine next hops for %s: %v, want %v", prefix, st.routes(prefix), want)
	}
	return took
}

func createNode(t *testing.T, client kubernetes.Interface, name, ip string) {
	t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
	n, err := client.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
	if _, err := client.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestSpineEndToEnd(t *testing.T) {
	st := newSpineTopology(t)
	client := st.cl.Client(cluster.UserAdmin)
	ctx := context.Background()
	createNode(t, client, "node1", "10.212.1.2")
	createNode(t, client, "node2", "10.212.2.2")
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(`mode: spine
pools:
  public: {addresses: [10.212.100.0/28]}
bgp:
  as-number: 64512
  subnet-peers:
    10.212.1.0/24: [{address: 10.212.1.1, as-number: 64500, hold-time: 9}]
    10.212.2.0/24: [{address: 10.212.2.1, as-number: 64500, hold-time: 9}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	kc, err := st.cl.WriteKubeconfig(cluster.UserAdmin)
	if err != nil {
		t.Fatal(err)
	}
	startController(t, st.cl, cfg, "default", "ctrl")
	var speakers []*os.Process
	for i, ns := range st.nodes {
		name := fmt.Sprint("node", i+1)
		p, err := st.bed.Start(ns, filepath.Join(dir, name+".log"), binary, "speaker", "--node-name", name, "--config", cfg, "--kubeconfig", kc)
		if err != nil {
			t.Fatal(err)
		}
		speakers = append(speakers, p.Process)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i := range st.nodes {
				b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("node%d.log", i+1)))
				t.Logf("node%d speaker log:\n%s", i+1, b)
			}
		}
	})

	// A Cluster Service: both nodes announce its IP; the spine has ECMP.
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 8080}}}}
	created := time.Now()
	if _, err := client.CoreV1().Services("web").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	vip := waitIP(t, client, "web", "web")
	t.Logf("web got %s", vip)
	st.waitRoutes(t, vip, "10.212.1.2", "10.212.2.2")
	t.Logf("create -> route at the spine from both nodes: %s", time.Since(created).Round(time.Millisecond))

	// Traffic: the client reaches a node through the spine.
	for i, ns := range st.nodes {
		if _, err := st.bed.Exec(ns, "ip", "addr", "add", vip+"/32", "dev", "lo"); err != nil {
			t.Fatal(err)
		}
		exe, _ := os.Executable()
		cmd, err := st.bed.Start(ns, filepath.Join(dir, fmt.Sprintf("listen%d.log", i)), "env", listenEnv+"="+vip+":8080 node"+fmt.Sprint(i+1), exe)
		if err != nil {
			t.Fatal(err)
		}
		_ = cmd
	}
	seen := map[string]bool{}
	if _, err := netns.WaitFor(ctx, 10*time.Second, func() bool {
		for range 8 {
			out, err := st.bed.Exec(st.client, "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/8080 && head -n1 <&3", vip))
			if err == nil {
				seen[strings.TrimSpace(out)] = true
			}
		}
		return len(seen) == 2
	}); err != nil {
		t.Fatalf("client reached %v through the spine, want both nodes", seen)
	}

	// Local: only the node with a ready endpoint announces; moving the
	// endpoint moves the route.
	local := svc.DeepCopy()
	local.Name = "local"
	local.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	if _, err := client.CoreV1().Services("web").Create(ctx, local, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lvip := waitIP(t, client, "web", "local")
	node := "node2"
	ready := true
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "local-1", Namespace: "web", Labels: map[string]string{discoveryv1.LabelServiceName: "local"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.168.0.9"}, NodeName: &node, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
	}
	if es, err = client.DiscoveryV1().EndpointSlices("web").Create(ctx, es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	st.waitRoutes(t, lvip, "10.212.2.2")
	node = "node1"
	es.Endpoints[0].NodeName = &node
	moved := time.Now()
	if _, err := client.DiscoveryV1().EndpointSlices("web").Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	st.waitRoutes(t, lvip, "10.212.1.2")
	t.Logf("Local endpoint moved: route moved at the spine in %s", time.Since(moved).Round(time.Millisecond))

	// SIGTERM of node1's speaker withdraws its routes at once.
	stopped := time.Now()
	_ = speakers[0].Signal(syscall.SIGTERM)
	st.waitRoutes(t, vip, "10.212.2.2")
	t.Logf("speaker SIGTERM: node1's route gone at the spine in %s", time.Since(stopped).Round(time.Millisecond))
	st.waitRoutes(t, lvip)
}

func waitIP(t *testing.T, client kubernetes.Interface, ns, name string) string {
	t.Helper()
	var ip string
	if _, err := netns.WaitFor(context.Background(), 30*time.Second, func() bool {
		s, err := client.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && len(s.Status.LoadBalancer.Ingress) > 0 {
			ip = s.Status.LoadBalancer.Ingress[0].IP
		}
		return ip != ""
	}); err != nil {
		t.Fatalf("%s/%s got no IP", ns, name)
	}
	return ip
}
