// Command demo is `make demo`: a real control plane on loopback, the real
// calico-lb controller binary, a handful of LoadBalancer Services, and a
// pool change that is held back and then applied.
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/workload/controller"
)

//go:embed demo-config.yaml
var demoConfig string

func main() {
	binary := flag.String("binary", filepath.Join(cluster.Root(), "bin", "calico-lb"), "the calico-lb binary")
	mode := flag.String("mode", "", "empty for the default demo (calico mode, then spine mode), l2, racks (two racks with Calico's BGP on the nodes, the speakers peering the spine), racks-calico (the racks in calico mode, no speakers) vrf (one router split in two VRFs) or juju (a real Juju controller on the spine bed, calico-lb deployed with README's commands)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch *mode {
	case "", "calico", "spine":
		err = run(ctx, *binary)
	case "l2":
		err = runL2(ctx)
	case "racks":
		err = runRacks(ctx)
	case "racks-calico":
		err = runRacksCalico(ctx)
	case "vrf":
		err = runVRF(ctx)
	case "juju":
		err = runJuju(ctx)
	default:
		err = fmt.Errorf("MODE=%q: want l2, racks, racks-calico, vrf or juju, or nothing for the default demo", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type demo struct {
	client  kubernetes.Interface
	api     string
	cfgPath string
	created map[string]time.Time
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

func run(ctx context.Context, binary string) error {
	step("Starting a real control plane (etcd + kube-apiserver v1.34.4) on loopback")
	cl, err := cluster.Start(ctx, cluster.Options{Log: func(s string) { fmt.Println("    " + s) }})
	if err != nil {
		return err
	}
	defer func() {
		step("Cleaning up: control plane stopped, work directory removed")
		cl.Stop()
	}()
	dir, err := os.MkdirTemp("", "calico-lb-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ports, err := cluster.FreePorts(1)
	if err != nil {
		return err
	}
	port := ports[0]
	d := &demo{client: cl.Client(cluster.UserAdmin), api: fmt.Sprintf("http://127.0.0.1:%d", port),
		cfgPath: filepath.Join(dir, "config.yaml"), created: map[string]time.Time{}}
	cfg := fmt.Sprintf("api-address: \"127.0.0.1:%d\"\n%s", port, demoConfig)
	if err := os.WriteFile(d.cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	fmt.Printf("    config (%s):\n%s", d.cfgPath, indent(demoConfig))

	step("Starting `calico-lb controller` (%s)", binary)
	kc, err := cl.WriteKubeconfig(cluster.UserAdmin)
	if err != nil {
		return err
	}
	logPath := filepath.Join(dir, "controller.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	ctrl := exec.Command(binary, "controller", "--config", d.cfgPath, "--kubeconfig", kc, "--identity", "demo", "--lease-namespace", "default",
		"--metrics-address", "127.0.0.1:0", "--api-key-file", d.keyPath())
	ctrl.Stdout, ctrl.Stderr = logf, logf
	ctrl.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := ctrl.Start(); err != nil {
		return fmt.Errorf("start controller (run `make build` first?): %w", err)
	}
	defer func() {
		_ = ctrl.Process.Signal(syscall.SIGTERM)
		_, _ = ctrl.Process.Wait()
	}()
	if err := d.waitReady(ctx); err != nil {
		b, _ := os.ReadFile(logPath)
		return fmt.Errorf("%w\ncontroller log:\n%s", err, b)
	}
	fmt.Println("    ready: leader elected, existing assignments adopted")

	step("Creating LoadBalancer Services in namespace demo")
	if _, err := d.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	dual := corev1.IPFamilyPolicyRequireDualStack
	services := []struct {
		name, asks string
		mod        func(*corev1.Service)
	}{
		{"web", "any address", nil},
		{"db", "10.208.9.15 (annotation)", func(s *corev1.Service) { s.Annotations = map[string]string{controller.AnnotationIPs: "10.208.9.15"} }},
		{"dns-tcp", "share key dns, 53/TCP", func(s *corev1.Service) {
			s.Annotations = map[string]string{controller.AnnotationSharing: "dns"}
			s.Spec.Ports = []corev1.ServicePort{{Port: 53, Protocol: corev1.ProtocolTCP}}
		}},
		{"dns-udp", "share key dns, 53/UDP", func(s *corev1.Service) {
			s.Annotations = map[string]string{controller.AnnotationSharing: "dns"}
			s.Spec.Ports = []corev1.ServicePort{{Port: 53, Protocol: corev1.ProtocolUDP}}
		}},
		{"dual", "RequireDualStack", func(s *corev1.Service) { s.Spec.IPFamilyPolicy = &dual }},
		{"legacy", "pool reserved (MetalLB annotation)", func(s *corev1.Service) {
			s.Annotations = map[string]string{"metallb.universe.tf/address-pool": "reserved"}
		}},
		{"stray", "192.0.2.50 (outside every pool)", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "192.0.2.50" }},
	}
	for _, s := range services {
		if err := d.create(ctx, s.name, s.mod); err != nil {
			return err
		}
	}
	results := map[string]string{}
	took := map[string]time.Duration{}
	for _, s := range services[:len(services)-1] {
		ips, at, err := d.waitIPs(ctx, s.name, func(ips []string) bool {
			return len(ips) > 0 && (s.name != "dual" || len(ips) == 2)
		})
		if err != nil {
			return err
		}
		results[s.name], took[s.name] = strings.Join(ips, ", "), at.Sub(d.created[s.name])
	}
	stray, err := d.waitEvent(ctx, "stray", "AllocationFailed")
	if err != nil {
		return err
	}
	legacyWarn, _ := d.waitEvent(ctx, "legacy", "DeprecatedAnnotation")
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "    SERVICE\tASKED FOR\tGOT\tCREATE -> IP\tNOTE")
	for _, s := range services {
		note := ""
		switch s.name {
		case "stray":
			note = "pending: " + stray
		case "legacy":
			note = "Warning: " + legacyWarn
		case "dns-udp":
			note = "shares dns-tcp's IP"
		}
		got, t := results[s.name], ""
		if got == "" {
			got = "<pending>"
		} else {
			t = took[s.name].Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%s\n", s.name, s.asks, got, t, note)
	}
	tw.Flush()
	if err := d.showPools(); err != nil {
		return err
	}

	step("Changing the pools: 10.208.1.0/28 goes, 10.208.2.0/28 comes")
	changed := strings.Replace(cfg, "10.208.1.0/28", "10.208.2.0/28", 1)
	if err := os.WriteFile(d.cfgPath, []byte(changed), 0o644); err != nil {
		return err
	}
	var pc controller.PoolChange
	if err := d.poll(ctx, "the change to be held back", func() (bool, error) {
		err := d.getJSON("/v1/pool-change", &pc)
		return pc.Pending, err
	}); err != nil {
		return err
	}
	fmt.Println("    held back: it would take these addresses out of every pool:")
	for _, s := range pc.Services {
		fmt.Printf("      %s/%s  %s\n", s.Namespace, s.Name, strings.Join(s.IPs, ", "))
	}
	web, _ := d.client.CoreV1().Services("demo").Get(ctx, "web", metav1.GetOptions{})
	fmt.Printf("    web still answers on %s; Event: %s\n", strings.Join(ingress(web), ", "), mustEvent(d, ctx, "web", "PoolChangeHeldBack"))

	step("Applying the held-back change (POST /v1/pool-change, the apply-pool-change action)")
	resp, err := d.call(http.MethodPost, "/v1/pool-change")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("apply: %s", resp.Status)
	}
	for _, s := range pc.Services {
		before := results[s.Name]
		ips, _, err := d.waitIPs(ctx, s.Name, func(ips []string) bool {
			return len(ips) > 0 && strings.HasPrefix(ips[0], "10.208.2.")
		})
		if err != nil {
			return err
		}
		fmt.Printf("    %-8s %s  ->  %s\n", s.Name, before, strings.Join(ips, ", "))
	}
	if err := d.showPools(); err != nil {
		return err
	}
	if err := runSpine(ctx); err != nil {
		return err
	}
	fmt.Println("\n    demo complete")
	return nil
}

func (d *demo) create(ctx context.Context, name string, mod func(*corev1.Service)) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "demo"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	if mod != nil {
		mod(svc)
	}
	d.created[name] = time.Now()
	_, err := d.client.CoreV1().Services("demo").Create(ctx, svc, metav1.CreateOptions{})
	return err
}

func ingress(svc *corev1.Service) []string {
	var out []string
	for _, in := range svc.Status.LoadBalancer.Ingress {
		out = append(out, in.IP)
	}
	return out
}

func (d *demo) waitIPs(ctx context.Context, name string, ok func([]string) bool) ([]string, time.Time, error) {
	var ips []string
	err := d.poll(ctx, name+" to get its IPs", func() (bool, error) {
		svc, err := d.client.CoreV1().Services("demo").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		ips = ingress(svc)
		return ok(ips), nil
	})
	return ips, time.Now(), err
}

func (d *demo) waitEvent(ctx context.Context, name, reason string) (string, error) {
	var msg string
	err := d.poll(ctx, "a "+reason+" event on "+name, func() (bool, error) {
		evs, err := d.client.CoreV1().Events("demo").List(ctx, metav1.ListOptions{
			FieldSelector: fields.Set{"involvedObject.name": name, "reason": reason}.String()})
		if err != nil || len(evs.Items) == 0 {
			return false, err
		}
		msg = evs.Items[0].Message
		return true, nil
	})
	return msg, err
}

func mustEvent(d *demo, ctx context.Context, name, reason string) string {
	msg, err := d.waitEvent(ctx, name, reason)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return msg
}

func (d *demo) poll(ctx context.Context, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("timed out waiting for %s (last error: %v)", what, last)
}

func (d *demo) waitReady(ctx context.Context) error {
	return d.poll(ctx, "the controller's /readyz", func() (bool, error) {
		resp, err := http.Get(d.api + "/readyz")
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			return false, errors.New(strings.TrimSpace(string(b)))
		}
		var snap controller.Snapshot
		return d.getJSON("/v1/allocations", &snap) == nil && snap.Leader, nil
	})
}

// keyPath is where the controller keeps its local API's key.
func (d *demo) keyPath() string { return filepath.Join(filepath.Dir(d.cfgPath), "api-key") }

// call calls the local API with its key, as the charm does.
func (d *demo) call(method, path string) (*http.Response, error) {
	key, err := os.ReadFile(d.keyPath())
	if err != nil {
		return nil, fmt.Errorf("the local API's key: %w", err)
	}
	req, err := http.NewRequest(method, d.api+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(key)))
	return http.DefaultClient.Do(req)
}

func (d *demo) getJSON(path string, v any) error {
	resp, err := d.call(http.MethodGet, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func (d *demo) showPools() error {
	var snap controller.Snapshot
	if err := d.getJSON("/v1/allocations", &snap); err != nil {
		return err
	}
	fmt.Println("\n    pools (GET /v1/allocations):")
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "    POOL\tADDRESSES\tAUTO-ASSIGN\tIN USE")
	for _, p := range snap.Pools {
		fmt.Fprintf(tw, "    %s\t%s\t%v\t%d of %s\n", p.Name, strings.Join(p.Addresses, " "), p.AutoAssign, p.InUse, p.Capacity)
	}
	return tw.Flush()
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("      " + line + "\n")
	}
	return b.String()
}
