// Package jujustate is the unit's state the fake hook tools act on: a JSON
// file that tests set up and read back, each read-modify-write under a
// lock beside it, each save atomic. The tools' binary links only this.
package jujustate

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// State is what the tools read and write.
type State struct {
	Config     map[string]any               `json:"config"`
	Leader     bool                         `json:"leader"`
	Secrets    map[string]map[string]string `json:"secrets"` // URI -> content (granted ones only)
	UnitStatus Status                       `json:"unitStatus"`
	AppStatus  Status                       `json:"appStatus"`
	AppVersion string                       `json:"appVersion,omitempty"`
	// Actions are the unit's actions by JUJU_ACTION_UUID, running or done:
	// Juju runs an action with `parallel: true` beside others, so each has
	// its own parameters, results and log.
	Actions map[string]*Action `json:"actions,omitempty"`
	Logs    []string           `json:"logs,omitempty"`
	Calls   [][]string         `json:"calls,omitempty"` // every tool call, argv
	// Relations are this unit's relations by endpoint.
	Relations map[string][]*Relation `json:"relations,omitempty"`
	// Address is the unit's bind address, for network-get.
	Address string `json:"address,omitempty"`
	// GoalUnits are the application's units as goal-state gives them,
	// unit -> status (active, waiting, dying); nil: this unit, active.
	GoalUnits map[string]string `json:"goalUnits,omitempty"`
}

// Relation is one relation of this unit, with our side's data bags.
type Relation struct {
	ID        string            `json:"id"` // endpoint:N
	RemoteApp string            `json:"remoteApp"`
	Peer      bool              `json:"peer,omitempty"` // every unit reads its application's data
	AppData   map[string]string `json:"appData,omitempty"`
	UnitData  map[string]string `json:"unitData,omitempty"`
	// Remote are the remote application's units and their data bags, as
	// relation-list and relation-get read them.
	Remote map[string]map[string]string `json:"remote,omitempty"`
}

// Relation finds a relation by ID.
func (s *State) Relation(id string) *Relation {
	for _, rs := range s.Relations {
		for _, r := range rs {
			if r.ID == id {
				return r
			}
		}
	}
	return nil
}

// Status is a workload status.
type Status struct {
	Name    string `json:"status"`
	Message string `json:"message"`
}

// Action is one run of an action: what action-get reads, action-set,
// action-fail and action-log write.
type Action struct {
	Params  map[string]any    `json:"params"`
	Results map[string]string `json:"results,omitempty"`
	Failed  *string           `json:"failed,omitempty"`
	Logs    []string          `json:"logs,omitempty"` // action-log lines
	Done    bool              `json:"done,omitempty"`
}

// StartAction records action id as running with params.
func (s *State) StartAction(id string, params map[string]any) {
	if params == nil {
		params = map[string]any{}
	}
	if s.Actions == nil {
		s.Actions = map[string]*Action{}
	}
	s.Actions[id] = &Action{Params: params}
}

// Load reads the state file.
func Load(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("fakejuju state %s: %w", path, err)
	}
	return &s, nil
}

// Save writes the state file whole or not at all: a reader never sees
// half of it.
func (s *State) Save(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Update loads the state, lets f change it and saves it, holding a lock
// beside the file throughout: hook tools of actions running side by side
// (and the tests between them) change one file, and without the lock one
// writer's change is lost to another's.
func Update(path string, f func(*State) error) error {
	return locked(path, func() error {
		st, err := Load(path)
		if err != nil {
			return err
		}
		if err := f(st); err != nil {
			return err
		}
		return st.Save(path)
	})
}

// Replace writes st as the whole state, under Update's lock.
func Replace(path string, st *State) error {
	return locked(path, func() error { return st.Save(path) })
}

func locked(path string, f func() error) error {
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	return f()
}
