// Package load saturates the machine's cores for a benchmark's soak: busy
// loops inside the test nodes' pods cgroups, beside the speakers, and
// outside the nodes, as other workloads on a busy machine would run.
package load

import (
	"fmt"
	"os/exec"
	"syscall"

	"github.com/calico-lb/calico-lb/tests/cluster"
)

// Load is the running busy loops.
type Load struct {
	Inside, Outside int
	stops           []func()
}

// Start runs one busy loop in each node's pods cgroup and outside more
// outside the nodes. Stop ends them; they die with the benchmark too.
func Start(nodes map[string]*cluster.Node, outside int) (*Load, error) {
	l := &Load{}
	for name, n := range nodes {
		stop, err := n.Load("soak-load")
		if err != nil {
			l.Stop()
			return nil, fmt.Errorf("load on %s: %w", name, err)
		}
		l.stops = append(l.stops, stop)
		l.Inside++
	}
	for range outside {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			l.Stop()
			return nil, err
		}
		l.stops = append(l.stops, func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		l.Outside++
	}
	return l, nil
}

// Stop ends every loop; safe to call twice.
func (l *Load) Stop() {
	for _, stop := range l.stops {
		stop()
	}
	l.stops = nil
}

func (l *Load) String() string {
	return fmt.Sprintf("%d busy loops (%d in the nodes' pods cgroups, %d outside)", l.Inside+l.Outside, l.Inside, l.Outside)
}
