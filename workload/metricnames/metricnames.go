// Package metricnames lists what metrics collectors describe, so that the
// charm's dashboard and alert rules can be checked against the metrics the
// workload really exports.
package metricnames

import (
	"regexp"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// Of returns the names of the metrics the collectors describe, sorted.
func Of(cs ...prometheus.Collector) []string {
	ch := make(chan *prometheus.Desc)
	go func() {
		for _, c := range cs {
			c.Describe(ch)
		}
		close(ch)
	}()
	var names []string
	for d := range ch {
		// A Desc keeps its name private; its String is the documented
		// way to see it.
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			names = append(names, m[1])
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}
