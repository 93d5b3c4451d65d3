// Package pebbled runs a real Pebble daemon (v1.26.0, built into
// .cache/bin) for tests: its socket stands in for the workload container's
// /charm/containers/calico-lb/pebble.socket.
package pebbled

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/canonical/pebble/client"

	"github.com/calico-lb/calico-lb/tests/cluster"
)

// Daemon is a running Pebble.
type Daemon struct {
	Dir    string // PEBBLE directory
	Socket string
	Client *client.Client
	cmd    *exec.Cmd
}

// Options shape the daemon.
type Options struct {
	// Layers are put in $PEBBLE/layers before Pebble starts (file name ->
	// YAML), as an image or a mounted ConfigMap would.
	Layers map[string]string
	// Args replace "run --create-dirs" (e.g. "enter", as a rock's entrypoint).
	Args []string
	Env  []string // extra environment for Pebble and its services
}

// StartT starts Pebble for one test and stops it (and its services) when
// the test ends.
func StartT(t testing.TB, opts ...Options) *Daemon {
	t.Helper()
	cluster.SkipShort(t, "a real Pebble daemon")
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Args == nil {
		o.Args = []string{"run", "--create-dirs"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := cluster.PebbleBinary(ctx, func(s string) { t.Log(s) })
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{Dir: t.TempDir()}
	d.Socket = filepath.Join(d.Dir, ".pebble.socket")
	if len(o.Layers) > 0 {
		if err := os.MkdirAll(filepath.Join(d.Dir, "layers"), 0o755); err != nil {
			t.Fatal(err)
		}
		for name, body := range o.Layers {
			if err := os.WriteFile(filepath.Join(d.Dir, "layers", name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	d.cmd = exec.Command(bin, o.Args...)
	d.cmd.Env = append(append(os.Environ(), "PEBBLE="+d.Dir, "PEBBLE_PERSIST=never"), o.Env...)
	log, err := os.Create(filepath.Join(t.TempDir(), "pebble.log"))
	if err != nil {
		t.Fatal(err)
	}
	d.cmd.Stdout, d.cmd.Stderr = log, log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = d.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("pebble log:\n%s", b)
		}
		log.Close()
	})
	if d.Client, err = client.New(&client.Config{Socket: d.Socket}); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if _, err := d.Client.SysInfo(); err == nil {
			break
		} else if time.Since(start) > 10*time.Second {
			t.Fatalf("pebble did not answer on %s: %v", d.Socket, err)
		}
	}
	return d
}

// Service returns the state of service name.
func (d *Daemon) Service(name string) (*client.ServiceInfo, error) {
	svcs, err := d.Client.Services(&client.ServicesOptions{Names: []string{name}})
	if err != nil {
		return nil, err
	}
	if len(svcs) == 0 {
		return nil, fmt.Errorf("no service %q", name)
	}
	return svcs[0], nil
}
