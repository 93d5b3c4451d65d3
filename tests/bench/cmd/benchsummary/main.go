// Command benchsummary prints the median of each case of `go test -bench`
// output (`make bench-summary`), with tests/bench/stats' median, the one
// every benchmark summary uses.
package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/calico-lb/calico-lb/tests/bench/stats"
)

// procs is the -N suffix go test adds to a benchmark's name.
var procs = regexp.MustCompile(`-\d+$`)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: benchsummary FILE (go test -bench output)")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	var order []string
	ns := map[string][]float64{}
	allocs := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 || !strings.HasPrefix(fs[0], "Benchmark") || fs[3] != "ns/op" {
			continue
		}
		v, err := strconv.ParseFloat(fs[2], 64)
		if err != nil {
			continue
		}
		name := procs.ReplaceAllString(fs[0], "")
		if _, seen := ns[name]; !seen {
			order = append(order, name)
		}
		ns[name] = append(ns[name], v)
		for i := 4; i+1 < len(fs); i++ {
			if fs[i+1] == "allocs/op" {
				allocs[name] = fs[i]
			}
		}
	}
	for _, name := range order {
		med := stats.Median(ns[name])
		if med >= 1e6 {
			fmt.Printf("  %-40s %8.1f ms/op  %s allocs/op\n", name, med/1e6, allocs[name])
		} else {
			fmt.Printf("  %-40s %8.1f ns/op  %s allocs/op\n", name, med, allocs[name])
		}
	}
}
