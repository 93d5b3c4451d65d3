package controller

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"k8s.io/client-go/tools/leaderelection"

	"github.com/calico-lb/calico-lb/workload/leadership"
)

// elect contends for the Lease until ctx ends, leading (lead) whenever it
// holds it. While another instance leads, a prober watches it, so that
// its death ends its leadership at once rather than when its Lease runs
// out.
func (c *Controller) elect(ctx context.Context) error {
	lock := leadership.NewLock(c.opts.Client.CoordinationV1(), c.opts.LeaseNamespace, c.opts.LeaseName, c.opts.Identity, c.opts.ProbeAddress)
	prober := &leadership.Prober{Lock: lock, LeaseDuration: c.opts.LeaseDuration, Log: c.log, Every: c.opts.ProbeEvery,
		Reached: func(on bool) { c.metrics.probeArmed.Set(b2f(on)) }}
	for ctx.Err() == nil {
		// One elector per round. A round ends when leadership is lost or
		// given up, or when the prober has taken the Lease from a dead
		// leader: the next elector, finding this instance the holder,
		// leads at once instead of at its next retry.
		leCtx, cancelLE := context.WithCancel(ctx)
		// A leader that reads another holder in the Lease stops now, not
		// when its renew deadline passes.
		lock.OnLost(func() {
			c.log.Warn("the Lease has another holder: stopping leading now", "identity", c.opts.Identity)
			cancelLE()
		})
		go func() {
			if prober.Watch(leCtx) {
				cancelLE()
			}
		}()
		failed, err := c.electOnce(leCtx, cancelLE, lock)
		cancelLE()
		if err != nil {
			return err
		}
		// A term that could not start gave the Lease up, so that a standby
		// leads instead of a leader that does nothing; this one waits a
		// Lease's length before it contends again.
		if failed {
			select {
			case <-ctx.Done():
			case <-time.After(c.opts.LeaseDuration):
			}
		}
	}
	return nil
}

// electOnce runs one elector until its round ends, and says whether a
// term failed to start.
func (c *Controller) electOnce(ctx context.Context, cancel context.CancelFunc, lock *leadership.Lock) (bool, error) {
	var failed atomic.Bool
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   c.opts.LeaseDuration,
		RenewDeadline:   c.opts.RenewDeadline,
		RetryPeriod:     c.opts.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            c.opts.LeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				if err := c.lead(lctx); err != nil {
					c.log.Error("cannot lead: giving the Lease up so that a standby leads", "error", err)
					failed.Store(true)
					cancel()
				}
			},
			OnStoppedLeading: func() {
				// Run calls this when its round ends, led or not.
				if c.leading.Swap(false) {
					c.metrics.leader.Set(0)
					c.log.Info("stopped leading", "identity", c.opts.Identity)
				}
			},
			OnNewLeader: func(id string) {
				c.leader.Store(&id)
				c.log.Info("leader", "identity", id)
			},
		},
	})
	if err != nil {
		return false, fmt.Errorf("leader election (--lease-duration, --renew-deadline, --retry-period): %w", err)
	}
	le.Run(ctx)
	return failed.Load(), nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
