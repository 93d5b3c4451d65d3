package controller

import (
	"context"
	"time"

	"github.com/calico-lb/calico-lb/workload/config"
)

// speakersChanged passes the config in force to keepSpeakers (the latest
// replaces one not yet taken).
func (t *term) speakersChanged() {
	select {
	case <-t.speakerCfg:
	default:
	}
	t.speakerCfg <- t.active
}

// keepSpeakers keeps the speaker DaemonSet and its objects in line with the
// config, and repairs drift every 30 s; after a failure it tries again in
// 5 s. Why the speakers are not deployed is logged once and kept for the
// local API, so the unit's status says it rather than staying active.
func (t *term) keepSpeakers(ctx context.Context) {
	var cfg, applied *config.Config
	h := handOver{hold: t.c.opts.SpeakerHandOver}
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	lastErr := ""
	for {
		select {
		case <-ctx.Done():
			return
		case cfg = <-t.speakerCfg:
		case <-tick.C:
		case <-retry.C:
		case <-h.done():
		}
		if cfg == nil {
			continue
		}
		want := h.config(cfg, applied, time.Now())
		if want != cfg && h.started {
			t.c.log.Info("calico mode: the speakers keep announcing while Calico takes over", "for", h.hold)
		}
		err := t.reconcileSpeakers(ctx, want)
		if ctx.Err() != nil {
			return
		}
		t.c.setSpeakersErr(err)
		if err == nil {
			applied = want
		}
		if err != nil {
			retry.Reset(5 * time.Second)
			if err.Error() != lastErr {
				t.c.log.Error("speakers", "error", err)
			}
			lastErr = err.Error()
			continue
		}
		if lastErr != "" {
			t.c.log.Info("speakers reconciled", "mode", cfg.Mode)
		}
		lastErr = ""
	}
}

// DefaultSpeakerHandOver is how long the speakers keep announcing after a
// switch to calico mode: the charm has written calico's service-IP option before
// the workload learns the new mode, and Calico needs a hook of its own and
// its BIRD a reload before it announces the pools. Removing the speakers
// at once would drop every VIP until then (make-before-break).
const DefaultSpeakerHandOver = 60 * time.Second

// handOver holds the last config with speakers in force for hold after
// a switch to calico mode.
type handOver struct {
	hold    time.Duration
	started bool // set on the pass that starts a hold, for its log line
	until   time.Time
	timer   *time.Timer
}

// config is what the speakers should have now: the last config applied
// while a hand-over lasts, cfg otherwise.
func (h *handOver) config(cfg, applied *config.Config, now time.Time) *config.Config {
	h.started = false
	switch {
	case cfg.Mode != config.ModeCalico:
		h.stop()
		return cfg
	case applied != nil && applied.Mode != config.ModeCalico && h.until.IsZero():
		h.until, h.started = now.Add(h.hold), true
		h.timer = time.NewTimer(h.hold)
	}
	if !h.until.IsZero() && now.Before(h.until) {
		return applied
	}
	return cfg
}

func (h *handOver) stop() {
	if h.timer != nil {
		h.timer.Stop()
	}
	h.until, h.timer = time.Time{}, nil
}

// done fires when the hand-over ends (never when none runs).
func (h *handOver) done() <-chan time.Time {
	if h.timer == nil {
		return nil
	}
	return h.timer.C
}

func (t *term) reconcileSpeakers(ctx context.Context, cfg *config.Config) error {
	raw, err := cfg.Render()
	if err != nil {
		return err
	}
	so := speakerObjects{client: t.c.opts.Client, ns: t.c.opts.LeaseNamespace, configRaw: raw, port: t.c.opts.SpeakerPort, keys: &t.c.l2Keys, log: t.c.log}
	if cfg.Mode != config.ModeCalico {
		if so.image, err = t.c.images.find(ctx); err != nil {
			return err
		}
	}
	return so.reconcile(ctx, cfg)
}
