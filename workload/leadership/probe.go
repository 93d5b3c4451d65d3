package leadership

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"syscall"
	"time"
)

// Defaults of a Prober.
const (
	DefaultProbeEvery   = 100 * time.Millisecond
	DefaultProbeTimeout = 200 * time.Millisecond
	// Confirmations is how many refusals in a row mean the process is gone.
	Confirmations = 2
)

// Prober watches the leader from a standby and takes the Lease when the
// leader's process is gone.
type Prober struct {
	Lock *Lock
	// LeaseDuration is written into a seized Lease.
	LeaseDuration time.Duration
	// Every is how often the leader is probed (DefaultProbeEvery).
	Every time.Duration
	// Dial connects to address (default: TCP with DefaultProbeTimeout).
	Dial func(ctx context.Context, address string) error
	// Reached is told whether a dead leader would be seen at once: whether
	// the leader publishes an address this standby has reached.
	Reached func(bool)
	Log     *slog.Logger
}

// Watch probes the Lease's holder until ctx ends (false) or it has taken
// the Lease from a dead one (true). It never probes this instance itself.
func (p *Prober) Watch(ctx context.Context) bool {
	every := p.Every
	if every <= 0 {
		every = DefaultProbeEvery
	}
	dial, reached := p.Dial, p.Reached
	if dial == nil {
		dial = dialTCP
	}
	if reached == nil {
		reached = func(bool) {}
	}
	defer reached(false)
	tick := time.NewTicker(every)
	defer tick.Stop()
	var s suspicion
	for {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
		holder, address := p.Lock.Observed()
		if holder == "" || holder == p.Lock.Identity() || address == "" {
			s = suspicion{}
			reached(false)
			continue
		}
		var gone bool
		s, gone = s.next(holder, address, outcomeOf(dial(ctx, address)))
		reached(s.reached)
		if !gone {
			continue
		}
		if err := p.Lock.Seize(ctx, holder, address, p.LeaseDuration); err != nil {
			if ctx.Err() == nil && p.Log != nil {
				p.Log.Info("the leader's address refuses connections, but the Lease was not taken", "leader", holder, "address", address, "error", err)
			}
			s = suspicion{}
			continue
		}
		if p.Log != nil {
			p.Log.Warn("took the Lease from a leader whose process is gone (its address refused connections)", "leader", holder, "address", address)
		}
		return true
	}
}

func dialTCP(ctx context.Context, address string) error {
	d := net.Dialer{Timeout: DefaultProbeTimeout}
	conn, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return err
	}
	return conn.Close()
}

type outcome int

const (
	accepted outcome = iota
	refused          // the kernel refused: no process holds the port
	unknown          // a timeout or any other failure: proves nothing
)

func outcomeOf(err error) outcome {
	switch {
	case err == nil:
		return accepted
	case errors.Is(err, syscall.ECONNREFUSED):
		return refused
	default:
		return unknown
	}
}

// suspicion is what a standby has seen of one holder at one address.
type suspicion struct {
	holder, address string
	// reached: a connection was accepted there, so a refusal means the
	// process went, not that a firewall rejects this standby.
	reached bool
	refused int // refusals in a row
}

// next adds one probe's outcome, and says whether the holder is gone.
func (s suspicion) next(holder, address string, o outcome) (suspicion, bool) {
	if s.holder != holder || s.address != address {
		s = suspicion{holder: holder, address: address}
	}
	switch o {
	case accepted:
		s.reached, s.refused = true, 0
	case refused:
		s.refused++
	default:
		s.refused = 0
	}
	return s, s.reached && s.refused >= Confirmations
}
