package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/canonical/pebble/client"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/pebbled"
	"github.com/calico-lb/calico-lb/workload/access"
	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/speaker"
	"github.com/calico-lb/calico-lb/workload/speakerset"
)

// TestSpeakerUnderPebble runs the speaker pods' Pebble layer, exactly as
// the controller writes it into the ConfigMap, under a real Pebble started
// the way the DaemonSet starts it (`pebble enter --create-dirs`, PEBBLE
// pointing at a directory whose layers/ holds the layer): Pebble starts the
// speaker, its readiness check passes, and when the speaker is killed
// Pebble starts it again. Only the image's paths are mapped to this host's
// (the binary); the speaker reads its config and token from a ConfigMap
// and a Secret through the API, as in its pod.
func TestSpeakerUnderPebble(t *testing.T) {
	c := cluster.StartT(t)
	kc, err := c.WriteKubeconfig(cluster.UserAdmin)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kube := c.Client(cluster.UserAdmin)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "pebble-node"}}
	if node, err = kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	if _, err := kube.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Spine mode with a peer on loopback that nobody answers for: the
	// speaker runs, dials and retries; nothing leaves the host. It reads
	// its config and keys from the ConfigMap and Secret, as in its pod.
	const ns = "pebble-speaker"
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: access.SpeakerConfigName},
		Data: map[string]string{"config.yaml": "mode: spine\npools:\n  p: {addresses: [10.123.0.0/28]}\nbgp:\n  as-number: 64512\n  peers: [{address: 127.0.0.9, as-number: 65000}]\n"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: access.SpeakerSecretName},
		Data: map[string][]byte{"l2-keys": []byte(speaker.NewKey() + "\n")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ports, err := cluster.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	layer, err := speakerset.SpeakerLayer(ports[0], ns).Render()
	if err != nil {
		t.Fatal(err)
	}
	mapped := strings.ReplaceAll(string(layer), config.DefaultBinary, binary)
	pb := pebbled.StartT(t, pebbled.Options{Args: []string{"enter", "--create-dirs"}, Layers: map[string]string{"001-speaker.yaml": mapped},
		// NODE_IP as the DaemonSet sets it (the node's address, which is not
		// 127.0.0.1): the API listens there, and Pebble's check still
		// reaches /readyz.
		Env: []string{"NODE_NAME=pebble-node", "NODE_IP=127.0.0.2", "KUBECONFIG=" + kc}})

	ready := func(what string) {
		t.Helper()
		if _, err := netns.WaitFor(ctx, 60*time.Second, func() bool {
			svc, err := pb.Service(speakerset.SpeakerService)
			if err != nil || svc.Current != client.StatusActive {
				return false
			}
			// Up is where a check starts: it must have passed, and be passing.
			checks, err := pb.Client.Checks(&client.ChecksOptions{Names: []string{speakerset.SpeakerCheck}})
			return err == nil && len(checks) == 1 && checks[0].Status == client.CheckStatusUp &&
				checks[0].Successes != nil && *checks[0].Successes > 0 && checks[0].Failures == 0
		}); err != nil {
			svc, _ := pb.Service(speakerset.SpeakerService)
			checks, _ := pb.Client.Checks(&client.ChecksOptions{})
			t.Fatalf("%s: speaker %+v, checks %+v", what, svc, checks)
		}
	}
	ready("started by Pebble")
	// Pebble's check talks to the speaker's own /readyz on the layer's port.
	resp := httpBody(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[0]))
	if strings.TrimSpace(resp) != "ok" {
		t.Fatalf("/readyz: %q", resp)
	}

	// The speaker dies: Pebble starts it again.
	pid := pidOf("speaker --config " + config.DefaultPath)
	if pid == 0 {
		t.Fatal("no speaker process")
	}
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool {
		now := pidOf("speaker --config " + config.DefaultPath)
		return now != 0 && now != pid
	}); err != nil {
		t.Fatal("Pebble did not start the speaker again")
	}
	ready("restarted by Pebble")
	t.Logf("SIGKILL -> speaker running and ready again under Pebble in %s", time.Since(killed).Round(time.Millisecond))
}

// pidOf is the process whose command line contains s (0 for none).
func pidOf(s string) int {
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscan(d.Name(), &pid); err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err == nil && strings.Contains(strings.ReplaceAll(string(cmd), "\x00", " "), s) {
			return pid
		}
	}
	return 0
}
