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
// the IP does not answer, so the interval holds. Run returns when every
// attempt it started has finished.
func Run(ctx context.Context, target string, interval, timeout time.Duration, dial Dialer, rec *Record) {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	start := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		at := time.Since(start)
		rec.Begin(at)
		wg.Add(1)
		go func() {
			defer wg.Done()
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
		}()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
