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

// statField reads one field of a "name value" file (memory.stat, cpu.stat).
func statField(dir, file, field string) uint64 {
	data, _ := os.ReadFile(filepath.Join(dir, file))
	for l := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field+" "); ok {
			n, _ := strconv.ParseUint(v, 10, 64)
			return n
		}
	}
	return 0
}

// cgroup is where a process's container keeps its accounting: the memory
// and cpuacct hierarchies' directories under cgroup v1, one directory
// for both under v2.
type cgroup struct {
	memory, cpu string
	v2          bool
}

func cgroupOf(pid int) (cgroup, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return cgroup{}, err
	}
	var cg cgroup
	unified := ""
	for line := range strings.SplitSeq(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			unified = filepath.Join("/sys/fs/cgroup", parts[2])
		}
		for c := range strings.SplitSeq(parts[1], ",") {
			switch c {
			case "memory":
				cg.memory = filepath.Join("/sys/fs/cgroup/memory", parts[2])
			case "cpuacct":
				cg.cpu = filepath.Join("/sys/fs/cgroup/cpuacct", parts[2])
			}
		}
	}
	switch {
	case cg.memory != "":
		return cg, nil
	case unified != "":
		return cgroup{memory: unified, cpu: unified, v2: true}, nil
	}
	return cg, fmt.Errorf("no memory cgroup for process %d", pid)
}

// ContainerUsage reads the usage of the container process pid runs in,
// from cgroup v1 (memory and cpuacct hierarchies) or v2.
func ContainerUsage(pid int) (Usage, error) {
	cg, err := cgroupOf(pid)
	if err != nil {
		return Usage{}, err
	}
	var u Usage
	if !cg.v2 {
		if u.Memory, err = readUint(cg.memory, "memory.usage_in_bytes"); err != nil {
			return u, err
		}
		if u.MemoryPeak, err = readUint(cg.memory, "memory.max_usage_in_bytes"); err != nil {
			return u, err
		}
		u.Anon = statField(cg.memory, "memory.stat", "total_rss")
		if cg.cpu != "" {
			ns, err := readUint(cg.cpu, "cpuacct.usage")
			u.CPU = time.Duration(ns)
			return u, err
		}
		return u, nil
	}
	if u.Memory, err = readUint(cg.memory, "memory.current"); err != nil {
		return u, err
	}
	u.MemoryPeak, _ = readUint(cg.memory, "memory.peak") // kernels before 5.19 lack it
	u.Anon = statField(cg.memory, "memory.stat", "anon")
	if _, err := os.Stat(filepath.Join(cg.cpu, "cpu.stat")); err != nil {
		return u, err
	}
	u.CPU = time.Duration(statField(cg.cpu, "cpu.stat", "usage_usec")) * time.Microsecond
	return u, nil
}

// MemoryLimit is the memory limit of the container process pid runs in.
func MemoryLimit(pid int) (uint64, error) {
	cg, err := cgroupOf(pid)
	if err != nil {
		return 0, err
	}
	if cg.v2 {
		return readUint(cg.memory, "memory.max")
	}
	return readUint(cg.memory, "memory.limit_in_bytes")
}

func readUint(dir, file string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}
