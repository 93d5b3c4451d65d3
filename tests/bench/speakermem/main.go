// Command speakermem is `make bench-speaker-memory`: a speaker process (the
// real binary) against the real control plane while a tenant creates
// Services carrying large annotations, which every speaker caches. It
// prints the speaker's resident memory before and after, and the last
// line is the summary:
//
//	speaker-memory services=1000 annotation_kib=200 rss_before_mib=… rss_mib=… limit_mib=384
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/workload/speakerset"
)

func main() {
	binary := flag.String("binary", filepath.Join(cluster.Root(), "bin", "calico-lb"), "the calico-lb binary")
	n := flag.Int("services", 1000, "Services to create")
	kib := flag.Int("annotation-kib", 200, "KiB of annotations on each Service")
	flag.Parse()
	if err := run(*binary, *n, *kib); err != nil {
		fmt.Fprintln(os.Stderr, "bench-speaker-memory:", err)
		os.Exit(1)
	}
}

func run(binary string, n, kib int) error {
	ctx := context.Background()
	cl, err := cluster.Start(ctx, cluster.Options{Log: func(s string) { fmt.Println(s) }})
	if err != nil {
		return err
	}
	defer cl.Stop()
	client := cl.Client(cluster.UserAdmin)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "mem-node"}}
	if node, err = client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return err
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "calico-lb-speakermem-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// Spine mode with a peer on loopback nobody answers for: nothing
	// leaves the host.
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("mode: spine\npools:\n  p: {addresses: [10.123.0.0/16]}\nbgp:\n  as-number: 64512\n  peers: [{address: 127.0.0.9, as-number: 65000}]\n"), 0o644); err != nil {
		return err
	}
	kc, err := cl.WriteKubeconfig(cluster.UserAdmin)
	if err != nil {
		return err
	}
	ports, err := cluster.FreePorts(1)
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "speaker.log"))
	if err != nil {
		return err
	}
	sp := exec.Command(binary, "speaker", "--config", cfg, "--kubeconfig", kc, "--node-name", "mem-node",
		"--api-address", fmt.Sprintf("127.0.0.1:%d", ports[0]))
	sp.Stdout, sp.Stderr = logf, logf
	sp.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// The limit the DaemonSet gives it, as GOMEMLIMIT, as in its pod.
	limit := speakerset.SpeakerResources.Limits.Memory().Value()
	sp.Env = append(os.Environ(), "GOMEMLIMIT="+strconv.FormatInt(limit, 10))
	if err := sp.Start(); err != nil {
		return fmt.Errorf("start the speaker (run `make build`): %w", err)
	}
	defer func() { _ = sp.Process.Signal(syscall.SIGTERM); _, _ = sp.Process.Wait() }()
	ready := fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[0])
	if err := waitFor(30*time.Second, func() bool {
		resp, err := http.Get(ready)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}); err != nil {
		return fmt.Errorf("the speaker never got ready (see %s)", logf.Name())
	}
	time.Sleep(2 * time.Second)
	before := cluster.RSSMiB(sp.Process.Pid)

	const ns = "tenant"
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	blob := strings.Repeat("x", kib<<10)
	fmt.Printf("creating %d Services with %d KiB of annotations each\n", n, kib)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := cl.Client(cluster.UserAdmin)
			for i := w; i < n; i += 8 {
				no := false
				svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("fat-%05d", i), Namespace: ns,
					Annotations: map[string]string{"tenant.example/blob": blob}},
					Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, AllocateLoadBalancerNodePorts: &no, Ports: []corev1.ServicePort{{Port: 80}}}}
				if _, err := c.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return fmt.Errorf("create: %w", err)
	}
	// The speaker's watch has them all once it has processed the last
	// one; its RSS then settles (the collector runs as it grows).
	var peak float64
	for range 20 {
		time.Sleep(500 * time.Millisecond)
		if r := cluster.RSSMiB(sp.Process.Pid); r > peak {
			peak = r
		}
	}
	if sp.ProcessState != nil {
		return fmt.Errorf("the speaker exited (see %s)", logf.Name())
	}
	fmt.Printf("speaker-memory services=%d annotation_kib=%d rss_before_mib=%.1f rss_mib=%.1f limit_mib=%d\n", n, kib, before, peak, limit>>20)
	return nil
}

func waitFor(limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}
