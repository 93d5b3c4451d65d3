package netns

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// What a crashed run leaves is removed by the next bed: a daemon in its
// namespace, a daemon outside it that runs on the bed's files (as FRR's
// do, which daemonize and so outlive the run), the namespace and the
// directory. Before, only the namespace went, and FRR kept running.
func TestSweepRemovesWhatACrashedRunLeft(t *testing.T) {
	Require(t)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	dead := gone.Process.Pid
	if syscall.Kill(dead, 0) == nil {
		t.Skipf("process %d is alive again", dead)
	}
	id := fmt.Sprintf("clb%dx1", dead)
	ns, dir := id+"-spine", filepath.Join(os.TempDir(), id+"-4242")
	if err := run("ip", "netns", "add", ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	conf := filepath.Join(dir, "bgpd.conf")
	if err := os.WriteFile(conf, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	inNS := exec.Command("ip", "netns", "exec", ns, "sleep", "300")
	onFiles := exec.Command("tail", "-f", conf)
	for _, c := range []*exec.Cmd{inNS, onFiles} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Process.Kill() })
	}
	// Another run's bed, still going (ours), is left alone.
	mine := NewT(t)
	keep, err := mine.NS("keep")
	if err != nil {
		t.Fatal(err)
	}

	sweep()
	for name, c := range map[string]*exec.Cmd{"in the namespace": inNS, "on the bed's files": onFiles} {
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("the process %s is still running", name)
		}
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), ns) || !strings.Contains(string(out), keep) {
		t.Errorf("namespaces after the sweep:\n%s", out)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the crashed run's directory: %v", err)
	}
}
