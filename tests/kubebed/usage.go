package kubebed

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Usage is what a container has used, from its cgroup: the figures its
// resource requests and limits are set by.
type Usage struct {
	Memory     uint64        // bytes now (the page cache included, as the limit counts it)
	MemoryPeak uint64        // bytes at most since the container started
	Anon       uint64        // bytes of it that are not page cache (the processes' own)
	CPU        time.Duration // CPU time since the container started
}

func (u Usage) String() string {
	return fmt.Sprintf("memory %.1f MiB (peak %.1f MiB, not cache %.1f MiB), CPU %.2f s", mib(u.Memory), mib(u.MemoryPeak), mib(u.Anon), u.CPU.Seconds())
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// statField reads one field of a memory.stat file.
func statField(dir, field string) uint64 {
	data, _ := os.ReadFile(filepath.Join(dir, "memory.stat"))
	for l := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field+" "); ok {
			n, _ := strconv.ParseUint(v, 10, 64)
			return n
		}
	}
	return 0
}

// ContainerUsage reads the usage of the container process pid runs in,
// from cgroup v1 (memory and cpuacct hierarchies) or v2.
func ContainerUsage(pid int) (Usage, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return Usage{}, err
	}
	var u Usage
	v1 := false
	for line := range strings.SplitSeq(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for c := range strings.SplitSeq(parts[1], ",") {
			switch c {
			case "memory":
				v1 = true
				dir := filepath.Join("/sys/fs/cgroup/memory", parts[2])
				if u.Memory, err = readUint(dir, "memory.usage_in_bytes"); err != nil {
					return u, err
				}
				if u.MemoryPeak, err = readUint(dir, "memory.max_usage_in_bytes"); err != nil {
					return u, err
				}
				u.Anon = statField(dir, "total_rss")
			case "cpuacct":
				ns, err := readUint(filepath.Join("/sys/fs/cgroup/cpuacct", parts[2]), "cpuacct.usage")
				if err != nil {
					return u, err
				}
				u.CPU = time.Duration(ns)
			}
		}
		if parts[0] == "0" && parts[1] == "" && !v1 {
			dir := filepath.Join("/sys/fs/cgroup", parts[2])
			if u.Memory, err = readUint(dir, "memory.current"); err != nil {
				return u, err
			}
			u.MemoryPeak, _ = readUint(dir, "memory.peak") // kernels before 5.19 lack it
			u.Anon = statField(dir, "anon")
			stat, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
			if err != nil {
				return u, err
			}
			for l := range strings.SplitSeq(string(stat), "\n") {
				if v, ok := strings.CutPrefix(l, "usage_usec "); ok {
					us, _ := strconv.ParseUint(v, 10, 64)
					u.CPU = time.Duration(us) * time.Microsecond
				}
			}
		}
	}
	return u, nil
}

// MemoryLimit is the memory limit of the container process pid runs in.
func MemoryLimit(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		switch {
		case len(parts) != 3:
		case parts[1] == "memory":
			return readUint(filepath.Join("/sys/fs/cgroup/memory", parts[2]), "memory.limit_in_bytes")
		case parts[0] == "0" && parts[1] == "":
			if v, err := readUint(filepath.Join("/sys/fs/cgroup", parts[2]), "memory.max"); err == nil {
				return v, nil
			}
		}
	}
	return 0, fmt.Errorf("no memory cgroup for process %d", pid)
}

func readUint(dir, file string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}
