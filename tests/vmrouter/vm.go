// Package vmrouter runs a router whose kernel is not this machine's: a
// small virtual machine (QEMU, software emulation) booting Debian's kernel,
// which has what this machine's kernel lacks (VRF devices), and running
// the host's own FRR from the host's root, shared read-only. Its network
// cards are tap devices in a namespace of the bed, joined to the bed's
// bridges; the test talks to the guest over a virtio port, never over the
// network.
package vmrouter

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/calico-lb/calico-lb/tests/netns"
)

//go:embed init.sh
var initScript []byte

//go:embed guest.sh
var guestScript []byte

// NIC is one of the guest's network cards: eth<i> in the guest, a tap
// device in the bed's namespace, joined to Bridge there.
type NIC struct {
	Tap, Bridge string
}

// Options shape the router.
type Options struct {
	NICs []NIC
	// Setup is shell run in the guest before FRR starts: VRF devices,
	// addresses, sysctls.
	Setup string
	// FRR is the router's configuration, applied through vtysh.
	FRR string
	// Daemons besides zebra and bgpd (staticd, bfdd).
	Daemons []string
	// Boot bounds the guest's boot (software emulation: seconds on an
	// idle machine, more on a loaded one); default 3 minutes.
	Boot time.Duration
}

// Router is a running guest.
type Router struct {
	NS  string
	dir string

	mu   sync.Mutex
	conn net.Conn
	rd   *bufio.Reader
	seq  int
}

// Missing returns what a router needs that this machine lacks (the
// kernel is downloaded on first use).
func Missing() []string {
	var out []string
	for _, bin := range []string{"qemu-system-x86_64", "busybox", "apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(bin); err != nil {
			out = append(out, bin)
		}
	}
	return out
}

// Start boots the router in namespace ns of bed, joins its cards to their
// bridges (which must exist in ns), runs opts.Setup and starts FRR with
// opts.FRR. bed.Close stops it.
func Start(ctx context.Context, bed *netns.Bed, ns string, opts Options) (*Router, error) {
	if m := Missing(); len(m) > 0 {
		return nil, fmt.Errorf("router VM needs: %s (make deps)", strings.Join(m, ", "))
	}
	k, err := EnsureKernel()
	if err != nil {
		return nil, fmt.Errorf("guest kernel: %w", err)
	}
	dir, err := bed.TempDir()
	if err != nil {
		return nil, err
	}
	r := &Router{NS: ns, dir: dir}
	initrd, err := buildInitrd(dir, k)
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "guest.sh"), guestScript, 0o644); err != nil {
		return nil, err
	}
	ctl := filepath.Join(dir, "ctl.sock")
	args := []string{"qemu-system-x86_64", "-accel", "tcg", "-m", "384", "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none", "-no-reboot",
		"-serial", "file:" + filepath.Join(dir, "console.log"),
		"-kernel", k.Image, "-initrd", initrd, "-append", "console=ttyS0 panic=-1 quiet",
		"-virtfs", "local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap",
		"-virtfs", "local,path=" + dir + ",mount_tag=bed,security_model=none,multidevs=remap",
		"-device", "virtio-serial-pci",
		"-chardev", "socket,id=ctl,path=" + ctl + ",server=on,wait=off",
		"-device", "virtserialport,chardev=ctl,name=ctl"}
	for i, nic := range opts.NICs {
		// Fixed PCI slots, in order: the guest names its cards eth0, eth1...
		// in slot order.
		args = append(args,
			"-netdev", fmt.Sprintf("tap,id=n%d,ifname=%s,script=no,downscript=no", i, nic.Tap),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=n%d,mac=52:54:00:00:00:%02x,addr=0x%x", i, i+1, 0x10+i))
	}
	if _, err := bed.Start(ns, filepath.Join(dir, "qemu.log"), args...); err != nil {
		return nil, err
	}
	boot := opts.Boot
	if boot == 0 {
		boot = 3 * time.Minute
	}
	if err := r.connect(ctx, ctl, boot); err != nil {
		return nil, fmt.Errorf("%w\nqemu: %s\nconsole: %s", err, r.file("qemu.log"), r.Console())
	}
	for _, nic := range opts.NICs {
		if _, err := bed.Exec(ns, "ip", "link", "set", nic.Tap, "master", nic.Bridge, "up"); err != nil {
			return nil, err
		}
	}
	if out, err := r.Exec(opts.Setup); err != nil {
		return nil, fmt.Errorf("guest setup: %w: %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "frr.conf"), []byte("log file /run/frr/frr.log informational\nlog timestamp precision 3\n"+opts.FRR), 0o644); err != nil {
		return nil, err
	}
	var start strings.Builder
	start.WriteString("set -e\nmkdir -p /run/frr\n: >/run/frr/empty.conf\n: >/run/frr/frr.log\nchown -R frr:frr /run/frr\n")
	for _, d := range append([]string{"zebra", "bgpd"}, opts.Daemons...) {
		fmt.Fprintf(&start, "/usr/lib/frr/%[1]s -d -f /run/frr/empty.conf -i /run/frr/%[1]s.pid --vty_socket /run/frr -z /run/frr/zserv.api -A 127.0.0.1\n", d)
		fmt.Fprintf(&start, "i=0; while [ ! -S /run/frr/%[1]s.vty ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n", d)
	}
	start.WriteString("vtysh --vty_socket /run/frr -f /mnt/frr.conf\n")
	if out, err := r.Exec(start.String()); err != nil {
		return nil, fmt.Errorf("start FRR in the guest: %w: %s\nFRR log: %s", err, out, r.Log())
	}
	return r, nil
}

// connect waits for the guest's command loop to say it is ready.
func (r *Router) connect(ctx context.Context, ctl string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.Dial("unix", ctl)
		if err == nil {
			r.conn, r.rd = c, bufio.NewReader(c)
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("QEMU did not open %s: %w", ctl, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	_ = r.conn.SetReadDeadline(deadline)
	defer r.conn.SetReadDeadline(time.Time{})
	for {
		line, err := r.rd.ReadString('\n')
		if err != nil {
			return fmt.Errorf("the guest did not start its command loop within %s: %w", limit, err)
		}
		if strings.TrimSpace(line) == "@@ready" {
			return nil
		}
	}
}

// Exec runs a shell script in the guest (as root, in the host's root
// shared read-only, with /run, /tmp and /var writable) and returns its
// combined output, and an error when it exits non-zero.
func (r *Router) Exec(script string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conn == nil {
		return "", errors.New("router VM not running")
	}
	r.seq++
	id := strconv.Itoa(r.seq)
	_ = r.conn.SetDeadline(time.Now().Add(2 * time.Minute))
	defer r.conn.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(r.conn, "%s %s\n", id, base64.StdEncoding.EncodeToString([]byte(script))); err != nil {
		return "", err
	}
	var out strings.Builder
	for {
		line, err := r.rd.ReadString('\n')
		if err != nil {
			return out.String(), fmt.Errorf("guest: %w", err)
		}
		if f := strings.Fields(line); len(f) == 3 && f[0] == "@@end" && f[1] == id {
			text := strings.TrimSuffix(out.String(), "\n")
			if f[2] != "0" {
				return text, fmt.Errorf("exit status %s", f[2])
			}
			return text, nil
		}
		out.WriteString(line)
	}
}

// Vtysh runs one vtysh command.
func (r *Router) Vtysh(command string) (string, error) {
	return r.Exec("vtysh --vty_socket /run/frr -c " + shellQuote(command))
}

// Log returns FRR's log in the guest, for failed tests.
func (r *Router) Log() string {
	out, _ := r.Exec("cat /run/frr/frr.log")
	return out
}

// Console returns what the guest's kernel and init printed.
func (r *Router) Console() string { return r.file("console.log") }

func (r *Router) file(name string) string {
	b, _ := os.ReadFile(filepath.Join(r.dir, name))
	return string(b)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
