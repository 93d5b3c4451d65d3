package probe

import (
	"context"
	"net"
	"sync"
	"time"
)

// Dialer opens a connection.
type Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

// Run probes target (host:port) every interval until ctx ends, each
// attempt given up after timeout, and records the attempts. An attempt
// is a TCP connection: the answer (SYN-ACK) comes from the pod behind
// the router's or the ARP owner's choice of node. Attempts overlap while
// the IP does not answer, so the interval holds, up to MaxInFlight at once
// (the defaults, 10 ms and 500 ms, need 50): beyond that a tick begins no
// attempt. Run returns when every attempt it started has finished.
func Run(ctx context.Context, target string, interval, timeout time.Duration, dial Dialer, rec *Record) {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	start := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, MaxInFlight)
	for {
		select {
		case slots <- struct{}{}:
			at := time.Since(start)
			rec.Begin(at)
			wg.Add(1)
			go attempt(ctx, target, timeout, dial, rec, at, func() { <-slots; wg.Done() })
		default:
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// attempt is one connection of Run's, begun at at; done frees its slot.
func attempt(ctx context.Context, target string, timeout time.Duration, dial Dialer, rec *Record, at time.Duration, done func()) {
	defer done()
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	t0 := time.Now()
	c, err := dial(actx, "tcp", target)
	a := Attempt{At: at, Took: time.Since(t0), OK: err == nil}
	if err != nil {
		a.Err = err.Error()
	} else {
		_ = c.Close()
	}
	rec.Done(a)
}
