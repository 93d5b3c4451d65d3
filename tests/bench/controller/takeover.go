package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// controllerProc is one controller process of the bench.
type controllerProc struct {
	cmd *exec.Cmd
	api string // its local API's address
}

// startController starts a controller with identity id on cfg, its local
// API on a free loopback port (--api-address overrides the config's).
func startController(binary, cfg, kc, dir, id string) (*controllerProc, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	api := l.Addr().String()
	l.Close()
	logf, err := os.Create(filepath.Join(dir, id+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, "controller", "--config", cfg, "--kubeconfig", kc, "--identity", id, "--lease-namespace", "default",
		"--api-address", api, "--metrics-address", "127.0.0.1:0", "--api-key-file", filepath.Join(dir, id+"-api-key"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start controller %s (run `make build`): %w", id, err)
	}
	return &controllerProc{cmd: cmd, api: api}, nil
}

func (p *controllerProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	_, _ = p.cmd.Process.Wait()
}

// ipWatch says when a Service first showed an IP (the bench's watch).
type ipWatch struct {
	mu    *sync.Mutex
	gotIP map[string]time.Time
}

func (w ipWatch) at(name string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.gotIP[name]
	return t, ok
}

// takeover kills the leading controller with SIGKILL, with warm standbys
// (started, caches synced) beside it, creates one Service at once and
// times the kill to that Service's IP in its status: what a user waits
// for after a leader dies. Then it kills the new leader 2 s into its
// term and times the remaining standby's takeover the same way.
func takeover(ctx context.Context, client kubernetes.Interface, w ipWatch, leader *controllerProc, binary, cfg, kc, dir, ns string, services int) error {
	procs := map[string]*controllerProc{"bench": leader}
	for _, id := range []string{"standby-1", "standby-2"} {
		p, err := startController(binary, cfg, kc, dir, id)
		if err != nil {
			return err
		}
		defer p.stop()
		if err := waitReady("http://" + p.api); err != nil {
			return err
		}
		procs[id] = p
	}
	killed := "bench"
	var leadSince time.Time
	for round := 1; round <= 2; round++ {
		p := procs[killed]
		kill := time.Now()
		age := "since-start"
		if !leadSince.IsZero() {
			age = fmt.Sprintf("%.1f", kill.Sub(leadSince).Seconds())
		}
		if err := p.cmd.Process.Kill(); err != nil {
			return err
		}
		_, _ = p.cmd.Process.Wait()
		name := fmt.Sprintf("takeover-%d", round)
		no := false
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, AllocateLoadBalancerNodePorts: &no, Ports: []corev1.ServicePort{{Port: 80}}}}
		if _, err := client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return err
		}
		at, err := waitIP(w, name, kill.Add(time.Minute))
		if err != nil {
			return fmt.Errorf("round %d: %w", round, err)
		}
		l, err := client.CoordinationV1().Leases("default").Get(ctx, "calico-lb-controller", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return fmt.Errorf("round %d: the Lease: %v", round, err)
		}
		fmt.Printf("controller-takeover round=%d services=%d killed=%s killed_leader_age_s=%s new=%s ms=%d\n",
			round, services+round-1, killed, age, *l.Spec.HolderIdentity, at.Sub(kill).Milliseconds())
		killed, leadSince = *l.Spec.HolderIdentity, at
		if procs[killed] == nil {
			return fmt.Errorf("round %d: the Lease names %s, which this bench did not start", round, killed)
		}
		// The next leader killed is 2 s into its term.
		time.Sleep(time.Until(at.Add(2 * time.Second)))
	}
	return nil
}

func waitIP(w ipWatch, name string, deadline time.Time) (time.Time, error) {
	for {
		if at, ok := w.at(name); ok {
			return at, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%s got no IP within a minute of the leader's kill", name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
