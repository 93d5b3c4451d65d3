// Package reactive runs a charm's handlers by flags, in the spirit of
// charms.reactive but small enough to read in one sitting.
//
// Each handler declares the flags it needs (When) and the flags that must
// be clear (WhenNot), and sets or clears flags as it works. Flags that
// describe the world (config valid, Pebble ready, leader, ...) are computed
// by Facts at the start of every hook, so they are never stale. Run then
// runs the ready handlers in the order they are declared, starting again
// from the top whenever a handler changes a flag, until a whole pass runs
// nothing. A handler runs once per hook while its conditions hold, and
// again only if one of its own flags (When or WhenNot) changed after it
// ran; a cycle between handlers is an error that names them, not a hang.
package reactive

import (
	"fmt"
	"slices"
	"strings"
)

// Flag names a fact or a step done.
type Flag string

// Handler is one unit of charm logic.
type Handler struct {
	Name    string
	When    []Flag // all must be set
	WhenNot []Flag // none may be set
	Run     func(*State) error
}

// Fact computes a flag that describes the world, every hook.
type Fact struct {
	Flag Flag
	Eval func() (bool, error)
}

// State is the set of flags.
type State struct {
	flags   map[Flag]bool
	gen     int          // bumped on every change
	changed map[Flag]int // gen of each flag's last change
}

// NewState starts with flags set (those kept from earlier hooks).
func NewState(flags ...Flag) *State {
	s := &State{flags: map[Flag]bool{}, changed: map[Flag]int{}}
	for _, f := range flags {
		s.flags[f] = true
	}
	return s
}

// Has reports whether f is set.
func (s *State) Has(f Flag) bool { return s.flags[f] }

// Set sets f.
func (s *State) Set(f Flag) {
	if !s.flags[f] {
		s.flags[f] = true
		s.gen++
		s.changed[f] = s.gen
	}
}

// Clear clears f.
func (s *State) Clear(f Flag) {
	if s.flags[f] {
		delete(s.flags, f)
		s.gen++
		s.changed[f] = s.gen
	}
}

// Toggle sets f when on, else clears it.
func (s *State) Toggle(f Flag, on bool) {
	if on {
		s.Set(f)
	} else {
		s.Clear(f)
	}
}

// Flags lists the set flags, sorted.
func (s *State) Flags() []Flag {
	out := make([]Flag, 0, len(s.flags))
	for f := range s.flags {
		out = append(out, f)
	}
	slices.Sort(out)
	return out
}

// retriggered reports whether one of h's flags changed after gen.
func (h *Handler) retriggered(s *State, gen int) bool {
	for _, fs := range [][]Flag{h.When, h.WhenNot} {
		for _, f := range fs {
			if s.changed[f] > gen {
				return true
			}
		}
	}
	return false
}

func (h *Handler) ready(s *State) bool {
	for _, f := range h.When {
		if !s.Has(f) {
			return false
		}
	}
	for _, f := range h.WhenNot {
		if s.Has(f) {
			return false
		}
	}
	return true
}

// Step is one handler run, for the hook's log.
type Step struct {
	Handler string
	Flags   []Flag // the flags it ran with
	Err     error
}

func (st Step) String() string {
	fs := make([]string, len(st.Flags))
	for i, f := range st.Flags {
		fs[i] = string(f)
	}
	s := fmt.Sprintf("%s [%s]", st.Handler, strings.Join(fs, " "))
	if st.Err != nil {
		s += ": " + st.Err.Error()
	}
	return s
}

// maxRunsPerHandler bounds how often one handler may run in one hook;
// beyond it the handlers are cycling.
const maxRunsPerHandler = 8

// Run computes the facts, then runs the handlers until none is ready and
// due (see the package comment). A handler's error stops the run (the
// hook then reports it); the steps so far are returned either way.
func Run(s *State, facts []Fact, handlers []Handler) ([]Step, error) {
	for _, f := range facts {
		on, err := f.Eval()
		if err != nil {
			return nil, fmt.Errorf("fact %s: %w", f.Flag, err)
		}
		s.Toggle(f.Flag, on)
	}
	lastGen := make([]int, len(handlers))
	for i := range lastGen {
		lastGen[i] = -1
	}
	runs := make([]int, len(handlers))
	var steps []Step
	for {
		ran := false
		for i := range handlers {
			h := &handlers[i]
			if !h.ready(s) || (lastGen[i] >= 0 && !h.retriggered(s, lastGen[i])) {
				continue
			}
			if runs[i] == maxRunsPerHandler {
				return steps, fmt.Errorf("handler %s ran %d times in one hook: handlers keep changing each other's flags (last steps: %v)", h.Name, runs[i], lastSteps(steps, 4))
			}
			runs[i]++
			before := s.gen
			st := Step{Handler: h.Name, Flags: s.Flags()}
			st.Err = h.Run(s)
			steps = append(steps, st)
			if st.Err != nil {
				return steps, fmt.Errorf("handler %s: %w", h.Name, st.Err)
			}
			lastGen[i] = s.gen
			ran = true
			if s.gen != before {
				break // flags changed: start again from the top
			}
		}
		if !ran {
			return steps, nil
		}
	}
}

func lastSteps(steps []Step, n int) []string {
	out := []string{}
	for _, st := range steps[max(0, len(steps)-n):] {
		out = append(out, st.Handler)
	}
	return out
}
