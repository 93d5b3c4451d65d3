package speakerset

import (
	"testing"
	"time"

	"github.com/calico-lb/calico-lb/workload/config"
)

// A switch from spine (or l2) to calico mode keeps the speakers' last
// config for DefaultSpeakerHandOver, so that they announce until Calico has taken
// over; then the calico config (no speakers) applies. A switch back ends
// the hold at once; calico from the start holds nothing.
func TestDefaultSpeakerHandOver(t *testing.T) {
	spine, cal, l2 := &config.Config{Mode: config.ModeSpine}, &config.Config{Mode: config.ModeCalico}, &config.Config{Mode: config.ModeL2}
	now := time.Unix(1_800_000_000, 0)
	h := handOver{hold: DefaultSpeakerHandOver}
	if got := h.config(cal, nil, now); got != cal || h.done() != nil {
		t.Fatal("calico from the start held something")
	}
	if got := h.config(spine, cal, now); got != spine {
		t.Fatal("calico -> spine did not apply spine")
	}
	if got := h.config(cal, spine, now); got != spine || !h.started || h.done() == nil {
		t.Fatalf("spine -> calico: got %v, started %v; want the speakers kept", got.Mode, h.started)
	}
	if got := h.config(cal, spine, now.Add(DefaultSpeakerHandOver-time.Second)); got != spine || h.started {
		t.Fatalf("during the hand-over: %v (started again: %v)", got.Mode, h.started)
	}
	if got := h.config(cal, spine, now.Add(DefaultSpeakerHandOver)); got != cal {
		t.Fatalf("after the hand-over: %v, want calico", got.Mode)
	}
	if got := h.config(l2, cal, now.Add(DefaultSpeakerHandOver+time.Second)); got != l2 || h.done() != nil {
		t.Fatal("calico -> l2 left a hold running")
	}
	h.config(cal, l2, now)
	if got := h.config(spine, l2, now.Add(time.Second)); got != spine || h.done() != nil {
		t.Fatal("a switch away from calico during a hand-over did not end it")
	}
}
