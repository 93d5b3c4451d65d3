// Package fakejuju fakes Juju's hook tools out of process, for tests that
// run the real dispatch binary: one executable (cmd/fakejuju) linked under
// each tool's name on PATH, following the real tools' arguments, output
// formats and exit codes (as Juju 3.6's hook tools print them), with
// the unit's state in a JSON file that tests set up and read back.
package fakejuju

import (
	"encoding/json"
	"os"
)

// State is what the tools read and write.
type State struct {
	Config        map[string]any               `json:"config"`
	Leader        bool                         `json:"leader"`
	Secrets       map[string]map[string]string `json:"secrets"`      // URI -> content (granted ones only)
	ActionParams  map[string]any               `json:"actionParams"` // nil outside an action
	UnitStatus    Status                       `json:"unitStatus"`
	AppStatus     Status                       `json:"appStatus"`
	AppVersion    string                       `json:"appVersion,omitempty"`
	ActionResults map[string]string            `json:"actionResults,omitempty"`
	ActionFailed  *string                      `json:"actionFailed,omitempty"`
	Logs          []string                     `json:"logs,omitempty"`
	Calls         [][]string                   `json:"calls,omitempty"` // every tool call, argv
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

// StartAction sets an action's parameters and clears the last results.
func (s *State) StartAction(params map[string]any) {
	if params == nil {
		params = map[string]any{}
	}
	s.ActionParams, s.ActionResults, s.ActionFailed = params, nil, nil
}

// Load reads the state file.
func Load(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s State
	return &s, json.Unmarshal(b, &s)
}

// Save writes the state file.
func (s *State) Save(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}
