package leadership

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
)

func TestSuspicion(t *testing.T) {
	timeout := fmt.Errorf("dial: %w", os.ErrDeadlineExceeded)
	refusedErr := fmt.Errorf("dial tcp: %w", syscall.ECONNREFUSED)
	for _, tc := range []struct {
		name  string
		steps []step
		gone  bool
	}{
		{name: "reached, then refused twice: gone", gone: true, steps: seq("a", "x", nil, refusedErr, refusedErr)},
		{name: "refused once: not yet", steps: seq("a", "x", nil, refusedErr)},
		{name: "never reached: a firewall may be rejecting this standby", steps: seq("a", "x", refusedErr, refusedErr, refusedErr, refusedErr)},
		{name: "a timeout between refusals proves nothing", steps: seq("a", "x", nil, refusedErr, timeout, refusedErr)},
		{name: "timeouts alone never", steps: seq("a", "x", nil, timeout, timeout, timeout)},
		{name: "accepted again in between", steps: seq("a", "x", nil, refusedErr, nil, refusedErr)},
		{name: "a new holder must be reached itself", steps: append(seq("a", "x", nil), seq("b", "x", refusedErr, refusedErr)...)},
		{name: "a new address must be reached itself", steps: append(seq("a", "x", nil), seq("a", "y", refusedErr, refusedErr)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s suspicion
			var gone bool
			for _, st := range tc.steps {
				s, gone = s.next(st.holder, st.address, outcomeOf(st.err))
			}
			if gone != tc.gone {
				t.Fatalf("gone = %v, want %v (state %+v)", gone, tc.gone, s)
			}
		})
	}
	if outcomeOf(errors.New("no route to host")) != unknown {
		t.Fatal("an unknown failure counted as a refusal")
	}
}

// step is one probe of holder at address, and how it ended.
type step struct {
	holder, address string
	err             error
}

func seq(holder, address string, errs ...error) []step {
	var out []step
	for _, err := range errs {
		out = append(out, step{holder, address, err})
	}
	return out
}
