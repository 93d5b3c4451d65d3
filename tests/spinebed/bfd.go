package spinebed

import (
	"encoding/json"
	"errors"
	"fmt"
)

// BFDDowns sums the spine FRR's BFD session-down counters. It fails when
// FRR reports no such counter, so that a field FRR does not have can never
// read as "no flap".
func (b *Bed) BFDDowns() (int, error) {
	out, err := b.FRR.Vtysh("-c", "show bfd peers counters json")
	if err != nil {
		return 0, fmt.Errorf("show bfd peers counters json: %w: %s", err, out)
	}
	var peers []map[string]any
	if err := json.Unmarshal([]byte(out), &peers); err != nil {
		return 0, fmt.Errorf("show bfd peers counters json: %w: %s", err, out)
	}
	n, seen := 0, false
	for _, p := range peers {
		if v, ok := p["session-down"].(float64); ok {
			n, seen = n+int(v), true
		}
	}
	if !seen {
		return 0, errors.New("FRR's show bfd peers counters json has no session-down counter")
	}
	return n, nil
}
