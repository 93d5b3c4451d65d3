package speakerhook

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/calico-lb/calico-lb/workload/api"
)

// A node without a mark, or whose mark ended, refuses (checkMark).
func TestCheckMark(t *testing.T) {
	now := time.Now()
	m, _ := json.Marshal(api.FailoverMark{ID: "t1", Until: now.Add(time.Minute)})
	ok := api.SpeakerFail{Test: "t1", Until: now.Add(time.Minute)}
	if err := checkMark(string(m), ok, now); err != nil {
		t.Fatalf("the marked node refused its test: %v", err)
	}
	for name, c := range map[string]struct {
		value string
		at    time.Time
	}{"no mark": {"", now}, "unreadable": {"{", now}, "ended": {string(m), now.Add(2 * time.Minute)}} {
		if err := checkMark(c.value, ok, c.at); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
