// Command controller is `make bench-controller`: a burst of Services created
// by concurrent clients against the real control plane, with the real
// calico-lb controller running, timing each Service from its create to its
// IP in status. The last line is the summary:
//
//	controller-burst services=5000 create_s=… lag_ms=… p50_ms=… p99_ms=… rss_mib=…
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/calico-lb/calico-lb/tests/bench/stats"
	"github.com/calico-lb/calico-lb/tests/cluster"
)

func main() {
	binary := flag.String("binary", filepath.Join(cluster.Root(), "bin", "calico-lb"), "the calico-lb binary")
	n := flag.Int("services", 5000, "Services to create")
	clients := flag.Int("clients", 8, "concurrent creating clients")
	noController := flag.Bool("no-controller", false, "only time the creates (the apiserver's own rate)")
	takeoverToo := flag.Bool("takeover", false, "then kill -9 the leader beside two warm standbys, twice, timing each kill to a new Service's IP")
	flag.Parse()
	if err := run(*binary, *n, *clients, *noController, *takeoverToo); err != nil {
		fmt.Fprintln(os.Stderr, "bench-controller:", err)
		os.Exit(1)
	}
}

func run(binary string, n, clients int, noController, takeoverToo bool) error {
	ctx := context.Background()
	cl, err := cluster.Start(ctx, cluster.Options{Log: func(s string) { fmt.Println(s) }})
	if err != nil {
		return err
	}
	defer cl.Stop()
	dir, err := os.MkdirTemp("", "calico-lb-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	api := l.Addr().String()
	l.Close()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("api-address: %q\npools:\n  bench: {addresses: [10.10.0.0/16]}\n", api)), 0o644); err != nil {
		return err
	}
	kc, err := cl.WriteKubeconfig(cluster.UserAdmin)
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "controller.log"))
	if err != nil {
		return err
	}
	ctrl := exec.Command(binary, "controller", "--config", cfg, "--kubeconfig", kc, "--identity", "bench", "--lease-namespace", "default",
		"--metrics-address", "127.0.0.1:0", "--api-key-file", filepath.Join(dir, "api-key"))
	if noController {
		ctrl = exec.Command("sleep", "3600") // holds the place of the controller process
	}
	ctrl.Stdout, ctrl.Stderr = logf, logf
	ctrl.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := ctrl.Start(); err != nil {
		return fmt.Errorf("start controller (run `make build`): %w", err)
	}
	defer func() { _ = ctrl.Process.Signal(syscall.SIGTERM); _, _ = ctrl.Process.Wait() }()
	if !noController {
		if err := waitReady("http://" + api); err != nil {
			return err
		}
	}

	client := cl.Client(cluster.UserAdmin)
	const ns = "burst"
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	// The watch that times each Service: when it first shows an IP.
	var mu sync.Mutex
	gotIP := make(map[string]time.Time, n)
	ipOf := make(map[string]string, n)
	changed := 0
	record := func(obj any) {
		svc, ok := obj.(*corev1.Service)
		if !ok || len(svc.Status.LoadBalancer.Ingress) == 0 {
			return
		}
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if _, seen := gotIP[svc.Name]; !seen {
			gotIP[svc.Name] = now
			ipOf[svc.Name] = svc.Status.LoadBalancer.Ingress[0].IP
		} else if ipOf[svc.Name] != svc.Status.LoadBalancer.Ingress[0].IP {
			changed++
		}
	}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns))
	_, _ = factory.Core().V1().Services().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: record, UpdateFunc: func(_, o any) { record(o) },
	})
	stop := make(chan struct{})
	defer close(stop)
	factory.Start(stop)
	factory.WaitForCacheSync(stop)

	fmt.Printf("creating %d LoadBalancer Services with %d clients\n", n, clients)
	created := make([]time.Time, n)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for w := range clients {
		wg.Add(1)
		go func(c kubernetes.Interface) {
			defer wg.Done()
			for i := w; i < n; i += clients {
				no := false
				svc := &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc-%05d", i), Namespace: ns},
					Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, AllocateLoadBalancerNodePorts: &no,
						Ports: []corev1.ServicePort{{Port: 80}}},
				}
				if _, err := c.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
				created[i] = time.Now()
			}
		}(cl.Client(cluster.UserAdmin))
	}
	go func() {
		for t := range time.Tick(2 * time.Second) {
			mu.Lock()
			fmt.Printf("  %5.1fs  IPs assigned: %d\n", t.Sub(start).Seconds(), len(gotIP))
			mu.Unlock()
		}
	}()
	wg.Wait()
	lastCreate := time.Now()
	close(errs)
	for err := range errs {
		return fmt.Errorf("create: %w", err)
	}
	if noController {
		fmt.Printf("creates-only services=%d create_s=%.1f rate=%.0f/s\n", n, lastCreate.Sub(start).Seconds(), float64(n)/lastCreate.Sub(start).Seconds())
		return nil
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		mu.Lock()
		done := len(gotIP)
		mu.Unlock()
		if done == n {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d Services got IPs within 5 minutes", done, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	rss := cluster.RSSMiB(ctrl.Process.Pid)
	cpu := cpuSeconds(ctrl.Process.Pid)

	mu.Lock()
	defer mu.Unlock()
	var lat []float64
	var lastIP time.Time
	owners := map[string]bool{}
	for i := range n {
		name := fmt.Sprintf("svc-%05d", i)
		at := gotIP[name]
		lat = append(lat, float64(at.Sub(created[i]).Microseconds())/1000)
		if at.After(lastIP) {
			lastIP = at
		}
		owners[ipOf[name]] = true
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return stats.Percentile(lat, p*100) }
	if len(owners) != n || changed != 0 {
		return fmt.Errorf("%d distinct IPs for %d Services, %d changed", len(owners), n, changed)
	}
	lag := lastIP.Sub(lastCreate)
	if lag < 0 {
		lag = 0
	}
	fmt.Printf("all %d Services have distinct IPs, none changed; first create -> last IP %.1fs\n", n, lastIP.Sub(start).Seconds())
	fmt.Printf("controller CPU %.1fs in all, %.2f ms per Service\n", cpu, cpu*1000/float64(n))
	fmt.Printf("controller-burst services=%d create_s=%.1f lag_ms=%d p50_ms=%.0f p99_ms=%.0f rss_mib=%.0f\n",
		n, lastCreate.Sub(start).Seconds(), lag.Milliseconds(), pct(0.50), pct(0.99), rss)
	if !takeoverToo {
		return nil
	}
	mu.Unlock()
	err = takeover(ctx, client, ipWatch{mu: &mu, gotIP: gotIP}, &controllerProc{cmd: ctrl, api: api}, binary, cfg, kc, dir, ns, n)
	mu.Lock()
	if err != nil {
		return err
	}
	owners = map[string]bool{}
	for _, ip := range ipOf {
		owners[ip] = true
	}
	if len(owners) != len(ipOf) || changed != 0 {
		return fmt.Errorf("after the takeovers: %d distinct IPs for %d Services, %d changed", len(owners), len(ipOf), changed)
	}
	fmt.Printf("after the takeovers all %d Services have distinct IPs, none changed\n", len(ipOf))
	return nil
}

func waitReady(base string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		// /readyz is open: the local API's /v1/ paths want its key.
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("controller not ready at %s", base)
}

// cpuSeconds reads a process's user+system CPU time.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) < 13 {
		return -1
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // clock ticks; USER_HZ is 100 on Linux
}

// rssMiB reads a process's resident set size.
