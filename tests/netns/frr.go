package netns

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// FRR is an FRR router (zebra, bgpd, optionally bfdd) in a namespace,
// without systemd.
type FRR struct {
	NS      string
	Dir     string // state: pid files, vty sockets, logs
	daemons []string
}

// StartFRR starts the daemons in ns and applies conf. The daemons boot with
// an empty file and the config is pushed through vtysh, which routes each
// line to its daemon: feeding the whole file to every daemon makes bgpd
// drop its router block at the first bfd section.
func (b *Bed) StartFRR(ns string, bfd bool, conf string) (*FRR, error) {
	dir, err := b.TempDir()
	if err != nil {
		return nil, err
	}
	f := &FRR{NS: ns, Dir: dir, daemons: []string{"zebra", "bgpd"}}
	if bfd {
		f.daemons = append(f.daemons, "bfdd")
	}
	b.mu.Lock()
	b.frrs = append(b.frrs, f)
	b.mu.Unlock()
	empty := filepath.Join(dir, "empty.conf")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		return nil, err
	}
	conf = "log file " + filepath.Join(dir, "frr.log") + " informational\nlog timestamp precision 3\n" + conf
	if err := os.WriteFile(filepath.Join(dir, "frr.conf"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	if err := run("chown", "-R", "frr:frr", dir); err != nil {
		return nil, err
	}
	for _, d := range f.daemons {
		args := []string{"netns", "exec", ns, "/usr/lib/frr/" + d, "-d", "-f", empty,
			"-i", filepath.Join(dir, d+".pid"), "--vty_socket", dir, "-z", filepath.Join(dir, "zserv.api"), "-A", "127.0.0.1"}
		switch d {
		case "zebra":
			args = append(args, "-s", "90000000")
		case "bfdd":
			args = append(args, "--bfdctl", filepath.Join(dir, "bfdd.sock"))
		}
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("start %s: %w: %s", d, err, out)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, d := range f.daemons {
		for {
			if _, err := os.Stat(filepath.Join(dir, d+".vty")); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("%s did not open its vty socket in %s", d, dir)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if out, err := f.Vtysh("-f", filepath.Join(dir, "frr.conf")); err != nil {
		return nil, fmt.Errorf("apply FRR config: %w: %s", err, out)
	}
	return f, nil
}

// Vtysh runs vtysh against this router.
func (f *FRR) Vtysh(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", f.NS, "vtysh", "--vty_socket", f.Dir}, args...)...).CombinedOutput()
	return string(out), err
}

// Routes returns the next hops the router's kernel table has for prefix
// (empty when it has no route).
func (f *FRR) Routes(prefix string) []string { return Routes(f.NS, prefix) }

// kill stops the daemons at once (SIGKILL: the namespace goes anyway, and
// FRR takes about two seconds to exit on SIGTERM).
func (f *FRR) kill() {
	for _, d := range f.daemons {
		b, err := os.ReadFile(filepath.Join(f.Dir, d+".pid"))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Log returns the router's log, for failed tests.
func (f *FRR) Log() string {
	b, _ := os.ReadFile(filepath.Join(f.Dir, "frr.log"))
	return string(b)
}
