package speakerhook

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestHold(t *testing.T) {
	h := Hold{Path: filepath.Join(t.TempDir(), "hold")}
	now := time.Now()
	if !h.Until(now).IsZero() {
		t.Fatal("held with no file")
	}
	until := now.Add(time.Minute).Round(time.Millisecond)
	if err := h.Set(until); err != nil {
		t.Fatal(err)
	}
	if got := h.Until(now); !got.Equal(until) {
		t.Fatalf("Until %v, want %v", got, until)
	}
	if !h.Until(until.Add(time.Second)).IsZero() {
		t.Fatal("still held after its time")
	}
	if err := os.WriteFile(h.Path, []byte("tomorrow\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !h.Until(now).IsZero() {
		t.Fatal("held by a file that does not parse")
	}
	if err := h.Clear(); err != nil || !h.Until(now).IsZero() {
		t.Fatalf("Clear: %v", err)
	}
	if err := h.Clear(); err != nil {
		t.Fatalf("Clear without a file: %v", err)
	}
	if err := (Hold{}).Set(until); err == nil {
		t.Fatal("a speaker without --hold-file can be held")
	}
}
