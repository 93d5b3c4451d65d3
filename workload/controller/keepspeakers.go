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
	var cfg *config.Config
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
		}
		if cfg == nil {
			continue
		}
		err := t.reconcileSpeakers(ctx, cfg)
		if ctx.Err() != nil {
			return
		}
		t.c.setSpeakersErr(err)
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
