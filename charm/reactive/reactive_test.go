package reactive

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func names(steps []Step) string {
	var out []string
	for _, s := range steps {
		out = append(out, s.Handler)
	}
	return strings.Join(out, " ")
}

func TestOrderAndFixpoint(t *testing.T) {
	leader := true
	facts := []Fact{{"leader", func() (bool, error) { return leader, nil }}}
	hs := []Handler{
		// Declared before the handler that enables it: runs after, once
		// the flag is set, because a change restarts the pass.
		{Name: "start", When: []Flag{"configured"}, WhenNot: []Flag{"started"}, Run: func(s *State) error { s.Set("started"); return nil }},
		{Name: "configure", Run: func(s *State) error { s.Set("configured"); return nil }},
		{Name: "status", When: []Flag{"started"}, Run: func(*State) error { return nil }},
		{Name: "leader-only", When: []Flag{"leader"}, Run: func(*State) error { return nil }},
	}
	s := NewState()
	steps, err := Run(s, facts, hs)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(steps); got != "configure start status leader-only" {
		t.Fatalf("ran %q", got)
	}
	if !slices.Equal(s.Flags(), []Flag{"configured", "leader", "started"}) {
		t.Fatalf("flags %v", s.Flags())
	}
	// Next hook, kept flags, not leader any more: configure runs (it has
	// no conditions), start does not (started is set), leader-only does not.
	leader = false
	steps, err = Run(NewState("configured", "started", "leader"), facts, hs)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(steps); got != "configure status" {
		t.Fatalf("second hook ran %q", got)
	}
}

func TestRetriggerOnOwnFlagOnly(t *testing.T) {
	var renders int
	hs := []Handler{
		{Name: "render", When: []Flag{"config-valid"}, Run: func(*State) error { renders++; return nil }},
		// Flips config-valid off and on: render must run again.
		{Name: "fix", When: []Flag{"config-valid"}, WhenNot: []Flag{"fixed"}, Run: func(s *State) error {
			s.Clear("config-valid")
			s.Set("config-valid")
			s.Set("fixed")
			return nil
		}},
		// Changes an unrelated flag: render must not run again for it.
		{Name: "other", Run: func(s *State) error { s.Set("unrelated"); return nil }},
	}
	if _, err := Run(NewState("config-valid"), nil, hs); err != nil {
		t.Fatal(err)
	}
	if renders != 2 {
		t.Fatalf("render ran %d times, want 2 (once, and again after its flag changed)", renders)
	}
}

func TestCycleIsAnError(t *testing.T) {
	hs := []Handler{
		{Name: "on", WhenNot: []Flag{"x"}, Run: func(s *State) error { s.Set("x"); return nil }},
		{Name: "off", When: []Flag{"x"}, Run: func(s *State) error { s.Clear("x"); return nil }},
	}
	_, err := Run(NewState(), nil, hs)
	if err == nil || !strings.Contains(err.Error(), "keep changing") {
		t.Fatalf("got %v, want a cycle error", err)
	}
}

func TestErrorsStopAndNameTheSource(t *testing.T) {
	boom := errors.New("boom")
	hs := []Handler{
		{Name: "a", Run: func(*State) error { return boom }},
		{Name: "b", Run: func(*State) error { t.Fatal("b ran after a failed"); return nil }},
	}
	steps, err := Run(NewState(), nil, hs)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "handler a") || len(steps) != 1 || steps[0].Err == nil {
		t.Fatalf("err %v steps %v", err, steps)
	}
	_, err = Run(NewState(), []Fact{{"f", func() (bool, error) { return false, boom }}}, hs)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "fact f") {
		t.Fatalf("fact error %v", err)
	}
	if s := (Step{Handler: "h", Flags: []Flag{"a", "b"}, Err: boom}).String(); s != "h [a b]: boom" {
		t.Fatalf("step %q", s)
	}
}
