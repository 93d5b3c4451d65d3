// Package probe is the failover test's client: it opens TCP connections
// to a load-balancer IP at a fixed interval, from a host outside the
// cluster, and says when the IP stopped and started answering. It runs
// where the operator puts it (`calico-lb probe`), because a probe from a
// node would be answered by that node's own kube-proxy rules and never
// see what the router or the ARP owner decided.
package probe

import (
	"slices"
	"sync"
	"time"
)

// Attempt is one connection attempt: when it started, as an offset from
// the run's start on the probe host's clock, and whether it connected.
type Attempt struct {
	At   time.Duration
	OK   bool
	Took time.Duration
	Err  string
}

// Window is a time the IP did not answer: From is the start of the last
// attempt that connected before it (or of the first that failed, when
// none had), To the start of the first that connected after it (zero
// while it has not answered again). Its length is what an outside client
// lost: with attempts every 10 ms, one lost attempt is a 20 ms window.
type Window struct {
	From     time.Duration `json:"fromNs"`
	To       time.Duration `json:"toNs,omitempty"`
	Failures int           `json:"failures"`
	// Reason is the first failed attempt's error.
	Reason string `json:"reason"`
}

// Duration is the window's length, or zero while it is open.
func (w Window) Duration() time.Duration {
	if w.To == 0 {
		return 0
	}
	return w.To - w.From
}

// Summary is what a run saw so far.
type Summary struct {
	Attempts int `json:"attempts"`
	// Settled is how far the summary is final: every attempt that
	// started before it has finished.
	Settled time.Duration `json:"settledNs"`
	// Answered is whether any attempt connected; Answering whether the
	// last settled one did.
	Answered  bool     `json:"answered"`
	Answering bool     `json:"answering"`
	Windows   []Window `json:"windows"`
}

// Record gathers a run's attempts as they finish, in any order.
type Record struct {
	mu       sync.Mutex
	attempts []Attempt
	inflight map[time.Duration]bool
}

// NewRecord returns an empty record.
func NewRecord() *Record { return &Record{inflight: map[time.Duration]bool{}} }

// Begin notes an attempt started at at.
func (r *Record) Begin(at time.Duration) {
	r.mu.Lock()
	r.inflight[at] = true
	r.mu.Unlock()
}

// Done records the attempt that started at a.At.
func (r *Record) Done(a Attempt) {
	r.mu.Lock()
	delete(r.inflight, a.At)
	r.attempts = append(r.attempts, a)
	r.mu.Unlock()
}

// Summary sums up the attempts that started before the oldest one still
// in flight (now, when none is), so that a window is never closed by a
// success while an earlier attempt may yet fail.
func (r *Record) Summary(now time.Duration) Summary {
	r.mu.Lock()
	settled := now
	for at := range r.inflight {
		settled = min(settled, at)
	}
	var done []Attempt
	for _, a := range r.attempts {
		if a.At < settled {
			done = append(done, a)
		}
	}
	r.mu.Unlock()
	slices.SortFunc(done, func(a, b Attempt) int { return int(a.At - b.At) })
	s := Windows(done)
	s.Settled = settled
	return s
}

// Windows sums up attempts sorted by start.
func Windows(attempts []Attempt) Summary {
	s := Summary{Attempts: len(attempts), Windows: []Window{}}
	var open *Window
	lastOK, seenOK := time.Duration(0), false
	for _, a := range attempts {
		if a.OK {
			if open != nil {
				open.To = a.At
				s.Windows = append(s.Windows, *open)
				open = nil
			}
			lastOK, seenOK = a.At, true
			s.Answered = true
			continue
		}
		if open == nil {
			from := a.At
			if seenOK {
				from = lastOK
			}
			open = &Window{From: from, Reason: a.Err}
		}
		open.Failures++
	}
	if open != nil {
		s.Windows = append(s.Windows, *open)
	}
	s.Answering = len(attempts) > 0 && attempts[len(attempts)-1].OK
	return s
}
