// Package stats is the benchmarks' arithmetic on measured durations.
package stats

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"
)

// MS prints d in whole milliseconds, as the summary lines do.
func MS(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d.Microseconds())/1000) }

// Median sorts d and returns its middle element (the upper one of two).
// Every benchmark summary takes its medians here.
func Median[T cmp.Ordered](d []T) T {
	slices.Sort(d)
	return d[len(d)/2]
}

// Percentile is the nearest-rank p-th percentile of sorted d.
func Percentile[T cmp.Ordered](sorted []T, p float64) T {
	return sorted[max(0, int(math.Ceil(p/100*float64(len(sorted))))-1)]
}
