package speakerhook

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Hold keeps a speaker down while the failover test measures what happens
// without it: a file holding the time the hold ends. It lives in the pod's
// own volume, so it outlasts the process the test kills (Pebble starts the
// speaker again at once, and the new process must stay down too) but not
// the pod. The time bounds the hold: if the controller that set it is
// gone, the speaker comes back by itself when it passes.
type Hold struct{ Path string }

// Set holds the speaker down until until.
func (h Hold) Set(until time.Time) error {
	if h.Path == "" {
		return errors.New("this speaker was started without --hold-file, so it cannot be held down")
	}
	tmp := h.Path + ".tmp"
	if err := os.WriteFile(tmp, []byte(until.UTC().Format(time.RFC3339Nano)+"\n"), 0o600); err != nil {
		return fmt.Errorf("hold file: %w", err)
	}
	if err := os.Rename(tmp, h.Path); err != nil {
		return fmt.Errorf("hold file: %w", err)
	}
	return nil
}

// Clear ends the hold.
func (h Hold) Clear() error {
	if h.Path == "" {
		return nil
	}
	if err := os.Remove(h.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("hold file: %w", err)
	}
	return nil
}

// Until is when the hold ends, or the zero time when the speaker is not
// held (no file, a time passed, or a file it cannot read: a speaker is
// never kept down by a file nobody can make sense of).
func (h Hold) Until(now time.Time) time.Time {
	if h.Path == "" {
		return time.Time{}
	}
	data, err := os.ReadFile(filepath.Clean(h.Path))
	if err != nil {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(data)))
	if err != nil || !t.After(now) {
		return time.Time{}
	}
	return t
}

// Wait returns when the hold ends (cleared, or its time passed) or ctx
// does, polling often enough that a resumed speaker starts within a
// tenth of a second.
func (h Hold) Wait(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !h.Until(time.Now()).IsZero() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}
