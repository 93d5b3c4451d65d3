package fakejuju

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// TestToolsSideBySide: hook tools of actions that run side by side (the
// failover test's "one at a time" check runs a second action while the
// first runs) each keep what they wrote, and no tool reads a state file
// another is writing. Before the lock and the atomic write, juju-log
// failed with "invalid character after top-level value" and calls were lost.
func TestToolsSideBySide(t *testing.T) {
	j := New(t, &State{Config: map[string]any{}})
	ids := []string{NewActionID(), NewActionID()}
	j.Update(t, func(s *State) {
		for i, id := range ids {
			s.StartAction(id, map[string]any{"n": i})
		}
	})
	tool := func(id, name string, args ...string) error {
		cmd := exec.Command(filepath.Join(j.Dir, name), args...)
		cmd.Env = append(os.Environ(), "FAKEJUJU_STATE="+j.StatePath, "JUJU_ACTION_UUID="+id)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s %v: %v: %s", name, args, err, out)
		}
		return nil
	}
	const each = 25
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for w, id := range ids {
		for k := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					err := tool(id, "juju-log", fmt.Sprintf("w%d-%d-%d", w, k, i))
					if err == nil {
						err = tool(id, "action-set", fmt.Sprintf("k%d-%d=%d", k, i, w))
					}
					if err == nil && i%5 == 0 {
						err = tool(id, "action-log", fmt.Sprintf("step %d", i))
					}
					if err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	st := j.State(t)
	if want := len(ids) * 4 * each; len(st.Logs) != want {
		t.Errorf("%d juju-log lines kept, want %d", len(st.Logs), want)
	}
	for w, id := range ids {
		a := st.Actions[id]
		if len(a.Results) != 4*each || len(a.Logs) != 4*each/5 {
			t.Errorf("action %d kept %d results and %d log lines, want %d and %d", w, len(a.Results), len(a.Logs), 4*each, 4*each/5)
		}
		for k, v := range a.Results {
			if v != fmt.Sprint(w) {
				t.Errorf("action %d has %s=%s from the other action", w, k, v)
			}
		}
	}
}

// TestActionToolsOutsideTheirAction: an action tool run by a hook, or by
// an action that has finished, fails as Juju's does.
func TestActionToolsOutsideTheirAction(t *testing.T) {
	j := New(t, &State{Config: map[string]any{}})
	id := NewActionID()
	j.Update(t, func(s *State) { s.StartAction(id, nil); s.Actions[id].Done = true })
	for _, env := range []string{"", id} {
		cmd := exec.Command(filepath.Join(j.Dir, "action-set"), "a=b")
		cmd.Env = append(os.Environ(), "FAKEJUJU_STATE="+j.StatePath, "JUJU_ACTION_UUID="+env)
		out, err := cmd.CombinedOutput()
		if err == nil || string(out) != "ERROR not running an action\n" {
			t.Errorf("action-set with JUJU_ACTION_UUID=%q: %v %q", env, err, out)
		}
	}
}
