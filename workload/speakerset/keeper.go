// Package speakerset deploys the speakers: it renders their DaemonSet,
// ConfigMap and Secret from the config (pure, render.go) and applies
// them (apply.go), for the leading controller, whose allocation loop
// hands it each config in force and nothing else.
package speakerset

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/calico-lb/calico-lb/workload/config"
)

// Options configure a Keeper.
type Options struct {
	Client    kubernetes.Interface
	Namespace string // the speakers', which is the controller's
	// Image overrides the speakers' image; empty: the image of container
	// Container of Pod PodName in Namespace, the controller's own (how
	// Juju runs it), with that Pod's pull policy and pull secrets.
	Image     string
	PodName   string
	Container string // default DefaultContainer
	Port      int    // the speakers' status port
	// HandOver is how long the speakers keep announcing after a switch
	// to calico mode (default DefaultSpeakerHandOver).
	HandOver time.Duration
	Log      *slog.Logger
}

// Keeper keeps the speakers' objects in line with the config in force.
// It outlives leadership terms: the heartbeat keys it last wrote and why
// the speakers are not deployed, if they are not, carry over.
type Keeper struct {
	opts   Options
	images *imageFinder
	// keys is the heartbeat keys last written to the speakers' Secret.
	keys lastKeys
	err  atomic.Pointer[string] // why the speakers are not as the config wants
}

// New returns a Keeper; Run keeps the speakers while the caller leads.
func New(opts Options) *Keeper {
	if opts.Container == "" {
		opts.Container = DefaultContainer
	}
	if opts.HandOver == 0 {
		opts.HandOver = DefaultSpeakerHandOver
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Keeper{opts: opts, images: &imageFinder{client: opts.Client, override: opts.Image, namespace: opts.Namespace,
		pod: opts.PodName, container: opts.Container}}
}

// Err says why the speakers could not be reconciled; "" when they are as
// the config wants.
func (k *Keeper) Err() string {
	if e := k.err.Load(); e != nil {
		return *e
	}
	return ""
}

// Image is the image the speakers run (see Options.Image).
func (k *Keeper) Image(ctx context.Context) (Image, error) { return k.images.find(ctx) }

func (k *Keeper) setErr(err error) {
	if err == nil {
		k.err.Store(nil)
		return
	}
	msg := err.Error()
	k.err.Store(&msg)
}

// Run keeps the speaker DaemonSet and its objects in line with the last
// config received on want, and repairs drift every 30 s; after a failure
// it tries again in 5 s, until ctx ends (the leadership term). Why the
// speakers are not deployed is logged once and kept for Err, so the
// unit's status says it rather than staying active.
func (k *Keeper) Run(ctx context.Context, want <-chan *config.Config) {
	var cfg, applied *config.Config
	h := handOver{hold: k.opts.HandOver}
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
		case cfg = <-want:
		case <-tick.C:
		case <-retry.C:
		case <-h.done():
		}
		if cfg == nil {
			continue
		}
		give := h.config(cfg, applied, time.Now())
		if give != cfg && h.started {
			k.opts.Log.Info("calico mode: the speakers keep announcing while Calico takes over", "for", h.hold)
		}
		err := k.reconcile(ctx, give)
		if ctx.Err() != nil {
			return
		}
		k.setErr(err)
		if err == nil {
			applied = give
		}
		if err != nil {
			retry.Reset(5 * time.Second)
			if err.Error() != lastErr {
				k.opts.Log.Error("speakers", "error", err)
			}
			lastErr = err.Error()
			continue
		}
		if lastErr != "" {
			k.opts.Log.Info("speakers reconciled", "mode", cfg.Mode)
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

func (k *Keeper) reconcile(ctx context.Context, cfg *config.Config) error {
	raw, err := cfg.Render()
	if err != nil {
		return err
	}
	so := speakerObjects{spec: spec{ns: k.opts.Namespace, port: k.opts.Port}, client: k.opts.Client, configRaw: raw, keys: &k.keys, log: k.opts.Log}
	if cfg.Mode != config.ModeCalico {
		if so.image, err = k.images.find(ctx); err != nil {
			return err
		}
	}
	return so.reconcile(ctx, cfg)
}
