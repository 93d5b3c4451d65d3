package controller

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"reflect"
	"time"

	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/config"
)

// fileState ties the digest of the file whose config is in force to that
// config, so that the local API can say whether a file the charm pushed is
// in force yet; a file read since and rejected is kept apart, under its
// own digest, so it is never taken for the one in force.
type fileState struct {
	digest   string // of the file that gave cfg
	cfg      *config.Config
	rejected string // of the last file read, when it was rejected
}

// loadConfig reads the config file. A file that does not parse leaves the
// last good config in force and records why it was rejected. Only the
// watcher calls it (and Run, before the watcher starts): two loads at once
// could store an older file's config after a newer one's.
func (c *Controller) loadConfig() (changed bool) {
	data, err := c.readFile(c.opts.ConfigPath)
	if err == nil {
		digest := api.ConfigDigest(data)
		var cfg *config.Config
		if cfg, err = config.Parse(data); err != nil {
			st := fileState{rejected: digest}
			if prev := c.file.Load(); prev != nil {
				st.digest, st.cfg = prev.digest, prev.cfg
			}
			c.file.Store(&st)
		} else {
			// Stored after the config it gave: whoever sees this digest
			// sees that config too.
			defer func() { c.file.Store(&fileState{digest: digest, cfg: c.cfg.Load()}) }()
			c.cfgErr.Store(nil)
			c.metrics.configOK.Set(1)
			if old := c.cfg.Load(); old != nil && reflect.DeepEqual(old, cfg) {
				return false
			}
			c.cfg.Store(cfg)
			if c.opts.LogLevel != nil {
				var l slog.Level
				if l.UnmarshalText([]byte(cfg.LogLevel)) == nil {
					c.opts.LogLevel.Set(l)
				}
			}
			c.metrics.reloads.WithLabelValues("ok").Inc()
			c.log.Info("config loaded", "path", c.opts.ConfigPath, "mode", cfg.Mode, "pools", len(cfg.Pools))
			return true
		}
	}
	msg := err.Error()
	if old := c.cfgErr.Load(); old == nil || *old != msg {
		c.metrics.reloads.WithLabelValues("error").Inc()
		c.log.Error("config rejected; keeping the last good one", "path", c.opts.ConfigPath, "error", msg)
	}
	c.cfgErr.Store(&msg)
	c.metrics.configOK.Set(0)
	return false
}

// reload has the watcher load the config file now (POST /v1/reload: the
// charm pushed a file) and reports whether the config changed.
func (c *Controller) reload(ctx context.Context) (bool, error) {
	reply := make(chan bool, 1)
	select {
	case c.reloads <- reply:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	select {
	case changed := <-reply:
		return changed, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// watchConfig polls the file, and loads it when reload asks. Polling is
// simple and robust against how the file is replaced (Pebble pushes it
// whole; editors rename), and a second of delay is nothing next to a
// config change. It is the one goroutine that loads the file.
func (c *Controller) watchConfig(ctx context.Context) {
	var last, lastPw []byte
	var lastMod time.Time
	tick := time.NewTicker(c.opts.ConfigPoll)
	defer tick.Stop()
	for first := true; ; first = false {
		select {
		case <-ctx.Done():
			return
		case reply := <-c.reloads:
			changed := c.loadConfig()
			if changed {
				c.notifyConfigChanged()
			}
			reply <- changed
			continue
		case <-tick.C:
		}
		// A new password reaches the speakers at once, not on their
		// keeper's next round.
		if cfg := c.cfg.Load(); cfg != nil {
			if pw, err := os.ReadFile(cfg.BGP.PasswordFile); err == nil && !bytes.Equal(pw, lastPw) {
				if !first && lastPw != nil {
					select {
					case c.passwordsChanged <- struct{}{}:
					default:
					}
				}
				lastPw = pw
			}
		}
		fi, err := os.Stat(c.opts.ConfigPath)
		if err == nil && fi.ModTime().Equal(lastMod) {
			continue
		}
		data, _ := os.ReadFile(c.opts.ConfigPath)
		if err == nil && bytes.Equal(data, last) {
			lastMod = fi.ModTime()
			continue
		}
		if err == nil {
			lastMod, last = fi.ModTime(), data
		}
		if c.loadConfig() {
			c.notifyConfigChanged()
		}
	}
}

func (c *Controller) notifyConfigChanged() {
	select {
	case c.configChanged <- struct{}{}:
	default:
	}
}
