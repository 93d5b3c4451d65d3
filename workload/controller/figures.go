package controller

import (
	"time"

	"github.com/calico-lb/calico-lb/workload/allocator"
)

// figuresEvery is how often the allocation loop publishes its figures.
const figuresEvery = 250 * time.Millisecond

// figures is what the allocation loop publishes for /metrics and /healthz,
// which read it without calling into the loop: a scrape flood must never
// delay an allocation, and a health check must not queue behind one.
type figures struct {
	at      time.Time // when the loop published them: it is alive
	usage   []allocator.PoolUsage
	waiting map[string]int // Services waiting for addresses, by reason
}

// publish hands the loop's figures to readers. Usage costs one pass over
// the pools, and the waiting Services are few; every figuresEvery keeps it
// off the path of a burst.
func (t *term) publish() {
	f := &figures{at: time.Now(), usage: t.alloc.Usage(), waiting: map[string]int{}}
	for _, why := range t.waiting {
		f.waiting[why]++
	}
	t.c.figures.Store(f)
}

// loopStalled says why the leader's allocation loop looks wedged, or "":
// it has not published for several periods.
func (c *Controller) loopStalled(now time.Time) string {
	if c.term.Load() == nil {
		return ""
	}
	f := c.figures.Load()
	if f == nil {
		return "" // the term is still adopting the Services
	}
	if d := now.Sub(f.at); d > 40*figuresEvery {
		return "the allocation loop has not run for " + d.Round(time.Second).String()
	}
	return ""
}
