package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/calico-lb/calico-lb/tests/netns"
)

// MissingForNodes lists what real nodes need that this machine lacks,
// besides what any network bed needs (netns.Missing).
func MissingForNodes() []string {
	var out []string
	for _, bin := range []string{"runc", "nsenter", "unshare", "iptables", "conntrack", "/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/loopback", "/usr/lib/cni/portmap"} {
		if _, err := exec.LookPath(bin); err != nil {
			out = append(out, bin)
		}
	}
	if _, err := os.Stat(cgroupFS + "/pids"); err != nil {
		out = append(out, "cgroup v1 hierarchies")
	}
	return out
}

// RequireNodes skips the test when the machine cannot run real nodes, or
// fails it when CALICO_LB_E2E=1.
func RequireNodes(t testing.TB) {
	t.Helper()
	netns.Require(t)
	if m := MissingForNodes(); len(m) > 0 {
		msg := "real nodes need: " + strings.Join(m, ", ") + " (run `make deps` as root)"
		if E2E() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// RouteNodes prepares the nodes' network namespaces for Kubernetes: IP
// forwarding, bridged traffic through iptables (kube-proxy's rules must see
// pod-to-pod traffic on cni0), NodePorts on loopback, and a route from each
// node and from the root namespace (where kube-apiserver runs) to every
// other node's pods via that node's RouteVia (or IP). A node whose IP is
// not on a link the root namespace has is reached there via RouteVia too,
// so that kube-apiserver reaches its kubelet (logs, exec). Each node also
// routes the service CIDR to apiserver (an address on a link it has): a
// hostNetwork pod's connection to the kubernetes Service needs a route
// before kube-proxy's DNAT rewrites it, as a real node's default route
// gives it.
func RouteNodes(nodes []NodeOptions, apiserver string) error {
	via := func(n NodeOptions) string {
		if n.RouteVia != "" {
			return n.RouteVia
		}
		return n.IP
	}
	for _, n := range nodes {
		if out, err := exec.Command("ip", "netns", "exec", n.NetNS, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
			"net.bridge.bridge-nf-call-iptables=1", "net.bridge.bridge-nf-call-ip6tables=1", "net.ipv4.conf.all.route_localnet=1").CombinedOutput(); err != nil {
			return fmt.Errorf("%s: sysctl: %v: %s", n.Name, err, out)
		}
		if out, err := exec.Command("ip", "-n", n.NetNS, "route", "add", "10.96.0.0/16", "via", apiserver).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: route to the service CIDR: %v: %s", n.Name, err, out)
		}
		for _, other := range nodes {
			if other.Name == n.Name {
				continue
			}
			if out, err := exec.Command("ip", "-n", n.NetNS, "route", "add", other.PodCIDR, "via", via(other)).CombinedOutput(); err != nil {
				return fmt.Errorf("%s: route to %s: %v: %s", n.Name, other.PodCIDR, err, out)
			}
			if other.PodCIDR6 != "" {
				if out, err := exec.Command("ip", "-n", n.NetNS, "-6", "route", "add", other.PodCIDR6, "via", other.IP6).CombinedOutput(); err != nil {
					return fmt.Errorf("%s: route to %s: %v: %s", n.Name, other.PodCIDR6, err, out)
				}
			}
		}
	}
	for _, n := range nodes {
		// Through the bed's own veth, so the route goes with the bed.
		if out, err := exec.Command("ip", "route", "add", n.PodCIDR, "via", via(n)).CombinedOutput(); err != nil {
			return fmt.Errorf("root namespace: route to %s: %v: %s", n.PodCIDR, err, out)
		}
		if via(n) != n.IP {
			if out, err := exec.Command("ip", "route", "add", n.IP+"/32", "via", via(n)).CombinedOutput(); err != nil {
				return fmt.Errorf("root namespace: route to %s: %v: %s", n.IP, err, out)
			}
		}
	}
	return nil
}
