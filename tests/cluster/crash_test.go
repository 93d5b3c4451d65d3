package cluster_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/kubebed"
	"github.com/calico-lb/calico-lb/tests/netns"
)

// TestSweepAfterCrash runs a real node with a pod in a child process, kills
// the child with SIGKILL as a crashed test run would die, and checks that
// the next run's sweep leaves nothing of it: no process (the container and
// its shim outlive the run, as no children of it), no cgroup, no network
// namespace, no work directory.
func TestSweepAfterCrash(t *testing.T) {
	if os.Getenv("CALICO_LB_CRASH_CHILD") == "1" {
		crashChild(t)
		return
	}
	cluster.RequireNodes(t)
	if _, _, err := cluster.Binaries(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	child := exec.Command(os.Args[0], "-test.run=^TestSweepAfterCrash$", "-test.v")
	child.Env = append(os.Environ(), "CALICO_LB_CRASH_CHILD=1")
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = child.Stdout
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "CRASH-CHILD-READY") {
				ready <- true
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			_ = child.Wait()
			t.Fatalf("the child ended before its node ran a pod:\n%s", log.String())
		}
	case <-time.After(5 * time.Minute):
		_ = child.Process.Kill()
		t.Fatalf("the child's node never ran a pod:\n%s", log.String())
	}
	pid := child.Process.Pid
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	mark := fmt.Sprintf("clb%dx", pid)
	time.Sleep(500 * time.Millisecond) // the kernel delivers the children's death signals
	if procs := leftoverProcs(mark); len(procs) == 0 {
		t.Fatalf("the crash left no process of its node behind; the test shows nothing (child log:\n%s)", log.String())
	} else {
		t.Logf("the crash left %d processes running: %s", len(procs), strings.Join(procs, ", "))
	}

	// The next run: its bed and its cluster sweep first.
	if _, err := netns.New(); err != nil {
		t.Fatal(err)
	}
	cluster.Sweep()
	if procs := leftoverProcs(mark); len(procs) > 0 {
		t.Errorf("still running after the sweep: %s", strings.Join(procs, ", "))
	}
	if cgs, _ := filepath.Glob("/sys/fs/cgroup/*/" + mark + "*"); len(cgs) > 0 {
		t.Errorf("cgroups left: %v", cgs)
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), mark) {
		t.Errorf("namespaces left:\n%s", out)
	}
	if dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("calico-lb-cluster-%d-*", pid))); len(dirs) > 0 {
		t.Errorf("work directories left: %v", dirs)
	}
}

// crashChild starts one real node with the test application's pod on it,
// says so, and waits to be killed.
func crashChild(t *testing.T) {
	nb, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := nb.NS("node1")
	if err != nil {
		t.Fatal(err)
	}
	mgmt, err := nb.Management(218, ns)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kb, err := kubebed.Start(ctx, kubebed.Options{Address: mgmt, Nodes: []cluster.NodeOptions{{Name: "node1", NetNS: ns,
		IP: netns.ManagementAddr(218, 0), PodCIDR: podRange(218, 1)}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kb.Echo(ctx, kubebed.App{NS: "crash", Name: "echo", Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	fmt.Println("CRASH-CHILD-READY")
	select {}
}

// leftoverProcs lists the live processes whose cgroup names mark (a
// killed one may linger as a zombie until the machine's init reaps it).
func leftoverProcs(mark string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cg, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err != nil || !strings.Contains(string(cg), "/"+mark) {
			continue
		}
		if stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); zombie(string(stat)) {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		out = append(out, e.Name()+" "+strings.TrimSpace(string(comm)))
	}
	return out
}

// zombie reports whether a /proc/<pid>/stat line is a zombie's (its state,
// after the command in parentheses, is Z).
func zombie(stat string) bool {
	i := strings.LastIndexByte(stat, ')')
	return i >= 0 && strings.HasPrefix(strings.TrimSpace(stat[i+1:]), "Z")
}

func podRange(net, i int) string {
	v4, _ := cluster.PodRanges(net, i)
	return v4
}
