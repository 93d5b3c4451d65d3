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
// other node's pods via that node's IP.
func RouteNodes(nodes []NodeOptions) error {
	for _, n := range nodes {
		if out, err := exec.Command("ip", "netns", "exec", n.NetNS, "sysctl", "-qw", "net.ipv4.ip_forward=1",
			"net.bridge.bridge-nf-call-iptables=1", "net.ipv4.conf.all.route_localnet=1").CombinedOutput(); err != nil {
			return fmt.Errorf("%s: sysctl: %v: %s", n.Name, err, out)
		}
		for _, other := range nodes {
			if other.Name == n.Name {
				continue
			}
			if out, err := exec.Command("ip", "-n", n.NetNS, "route", "add", other.PodCIDR, "via", other.IP).CombinedOutput(); err != nil {
				return fmt.Errorf("%s: route to %s: %v: %s", n.Name, other.PodCIDR, err, out)
			}
		}
	}
	for _, n := range nodes {
		// Through the bed's own veth, so the route goes with the bed.
		if out, err := exec.Command("ip", "route", "add", n.PodCIDR, "via", n.IP).CombinedOutput(); err != nil {
			return fmt.Errorf("root namespace: route to %s: %v: %s", n.PodCIDR, err, out)
		}
	}
	return nil
}
