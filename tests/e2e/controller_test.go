// Package e2e runs the real calico-lb binary against the real control
// plane, for what only a separate process can show (kill -9, restarts).
package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/calico-lb/calico-lb/tests/cluster"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "calico-lb-e2e-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "calico-lb")
	cmd := exec.Command("go", "build", "-o", binary, "./workload/cmd/calico-lb")
	cmd.Dir = cluster.Root()
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build calico-lb: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// controllerProc is one calico-lb controller process.
type controllerProc struct {
	cmd     *exec.Cmd
	done    chan struct{}
	metrics string // its metrics listener, host:port
}

func startController(t *testing.T, cl *cluster.Cluster, cfgPath, ns, id string) *controllerProc {
	t.Helper()
	kc, err := cl.WriteKubeconfig(cluster.UserAdmin)
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), id+".log"))
	if err != nil {
		t.Fatal(err)
	}
	metrics := freeAddress(t)
	cmd := exec.Command(binary, "controller", "--config", cfgPath, "--kubeconfig", kc,
		"--identity", id, "--lease-namespace", ns, "--api-address", "127.0.0.1:0", "--metrics-address", metrics)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &controllerProc{cmd: cmd, done: make(chan struct{}), metrics: metrics}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("%s log (tail):\n%s", id, b)
		}
	})
	return p
}

// metric is the value of an unlabelled metric p exports ("" when absent).
func (p *controllerProc) metric(name string) string {
	resp, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			return v
		}
	}
	return ""
}

func (p *controllerProc) kill9() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// ipWatch records, from a watch, the first IP each Service showed and
// every change after that.
type ipWatch struct {
	mu      sync.Mutex
	first   map[string]string
	changed []string
}

func watchIPs(t *testing.T, client kubernetes.Interface, ns string) *ipWatch {
	w := &ipWatch{first: map[string]string{}}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns))
	record := func(obj any) {
		svc, ok := obj.(*corev1.Service)
		if !ok || len(svc.Status.LoadBalancer.Ingress) == 0 {
			return
		}
		ip := svc.Status.LoadBalancer.Ingress[0].IP
		w.mu.Lock()
		defer w.mu.Unlock()
		if old, seen := w.first[svc.Name]; !seen {
			w.first[svc.Name] = ip
		} else if old != ip {
			w.changed = append(w.changed, fmt.Sprintf("%s: %s -> %s", svc.Name, old, ip))
		}
	}
	_, _ = factory.Core().V1().Services().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: record, UpdateFunc: func(_, o any) { record(o) },
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	return w
}

func (w *ipWatch) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.first)
}

func leaseHolder(client kubernetes.Interface, ns string) string {
	l, err := client.CoordinationV1().Leases(ns).Get(context.Background(), "calico-lb-controller", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func TestKillDuringBurst(t *testing.T) {
	cl := cluster.StartT(t)
	client := cl.Client(cluster.UserAdmin)
	ctx := context.Background()
	const ns, n = "burst", 500
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte("pools:\n  burst: {addresses: [10.100.0.0/22]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	watch := watchIPs(t, client, ns)
	leader := startController(t, cl, cfg, ns, "a")
	waitFor(t, 30*time.Second, "a leads", func() bool { return leaseHolder(client, ns) == "a" })
	standby := startController(t, cl, cfg, ns, "b")
	// b has reached a's published address: it will see a's death at once.
	waitFor(t, 30*time.Second, "b reaches a", func() bool { return standby.metric("calico_lb_leader_probe_reached") == "1" })

	// 8 clients create the Services; the leader is killed with SIGKILL part
	// way through.
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				no := false
				svc := &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc-%03d", i), Namespace: ns},
					Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, AllocateLoadBalancerNodePorts: &no,
						Ports: []corev1.ServicePort{{Port: 80}}},
				}
				if _, err := client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
					errs <- err
				}
			}
		}()
	}
	waitFor(t, 60*time.Second, "150 Services have IPs", func() bool { return watch.count() >= 150 })
	killedAt := time.Now()
	leader.kill9()
	t.Logf("killed the leader with %d Services assigned", watch.count())
	waitFor(t, 30*time.Second, "b takes over", func() bool { return leaseHolder(client, ns) == "b" })
	took := time.Since(killedAt)
	t.Logf("standby took over %s after SIGKILL of the leader", took.Round(time.Millisecond))
	// Waiting out the Lease (5 s from a's last renewal, at most 1.1 s
	// before the kill) would take at least 3.9 s: under 3 s, b saw a's
	// process gone.
	if took > 3*time.Second {
		t.Fatalf("b took over %s after the kill: it waited out the Lease instead of seeing a's address refuse", took.Round(time.Millisecond))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("create: %v", err)
	}
	// A restarted first controller joins as standby.
	startController(t, cl, cfg, ns, "a2")
	waitFor(t, 60*time.Second, "all Services have IPs", func() bool { return watch.count() == n })

	// Final state: every Service has one IP, no IP twice, none changed.
	// (The namespace also holds the controllers' own fence Service.)
	list, err := client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	owner := map[string]string{}
	for _, svc := range list.Items {
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		if len(svc.Status.LoadBalancer.Ingress) != 1 {
			t.Fatalf("%s has ingress %v", svc.Name, svc.Status.LoadBalancer.Ingress)
		}
		ip := svc.Status.LoadBalancer.Ingress[0].IP
		if other, dup := owner[ip]; dup {
			t.Fatalf("%s given to both %s and %s", ip, other, svc.Name)
		}
		owner[ip] = svc.Name
	}
	watch.mu.Lock()
	defer watch.mu.Unlock()
	if len(watch.changed) > 0 {
		t.Fatalf("assigned IPs changed: %v", watch.changed)
	}
	if len(owner) != n {
		t.Fatalf("%d distinct IPs for %d Services", len(owner), n)
	}
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting until %s", limit, what)
}
