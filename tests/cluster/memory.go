package cluster

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Memory is the resident memory of the cluster's processes, in bytes: the
// control plane's by component, and each node's (its daemons, shims and
// containers: everything in its cgroup) by node name.
func (c *Cluster) Memory() (controlPlane, nodes map[string]uint64) {
	controlPlane, nodes = map[string]uint64{}, map[string]uint64{}
	for _, p := range c.procs {
		controlPlane[filepath.Base(p.cmd.Path)] += rss(p.cmd.Process.Pid)
	}
	c.nodesMu.Lock()
	defer c.nodesMu.Unlock()
	for _, n := range c.nodes {
		_ = filepath.WalkDir(filepath.Join(cgroupFS, "pids", n.cg), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			data, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil {
					nodes[n.Name] += rss(pid)
				}
			}
			return nil
		})
	}
	return controlPlane, nodes
}

// rss is a process's resident set size (VmRSS), 0 when it is gone.
func rss(pid int) uint64 {
	v, ok := ProcStatus(pid, "VmRSS")
	if !ok {
		return 0
	}
	kb, _ := strconv.ParseUint(v, 10, 64)
	return kb * 1024
}

// ProcStatus is the first word of field's value in /proc/<pid>/status
// (VmRSS in kB, Uid the real user), false when the process or the field
// is not there.
func ProcStatus(pid int, field string) (string, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return "", false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field+":" {
			return f[1], true
		}
	}
	return "", false
}

// RSSMiB is a process's resident memory in MiB, -1 when it cannot be read.
func RSSMiB(pid int) float64 {
	v, ok := ProcStatus(pid, "VmRSS")
	if !ok {
		return -1
	}
	kb, _ := strconv.ParseFloat(v, 64)
	return kb / 1024
}
