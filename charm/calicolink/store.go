package calicolink

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Store reads the operator's Juju client store (controllers.yaml,
// accounts.yaml, models.yaml), read-only. Juju's own reader
// (api/jujuclient) drags in Kubernetes' client libraries and minutes of
// build, and writes the store back after login; these three files are all
// calico-lb-juju needs.
type Store struct{ Dir string }

// DefaultStore is $JUJU_DATA, else $XDG_DATA_HOME/juju, else
// ~/.local/share/juju, as the juju client looks for it.
func DefaultStore() Store {
	if d := os.Getenv("JUJU_DATA"); d != "" {
		return Store{d}
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return Store{filepath.Join(d, "juju")}
	}
	home, _ := os.UserHomeDir()
	return Store{filepath.Join(home, ".local", "share", "juju")}
}

// StoreController is one controller of the store.
type StoreController struct {
	Name      string
	Addresses []string
	CACert    string
}

func (s Store) read(name string, v any) error {
	data, err := os.ReadFile(filepath.Join(s.Dir, name))
	if err != nil {
		return fmt.Errorf("juju client store: %w (log in with `juju login`, or set JUJU_DATA)", err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		return fmt.Errorf("juju client store %s: %w", filepath.Join(s.Dir, name), err)
	}
	return nil
}

// Controller is the named controller, or the current one for "".
func (s Store) Controller(name string) (StoreController, error) {
	var f struct {
		Controllers map[string]struct {
			Endpoints []string `yaml:"api-endpoints"`
			CACert    string   `yaml:"ca-cert"`
		} `yaml:"controllers"`
		Current string `yaml:"current-controller"`
	}
	if err := s.read("controllers.yaml", &f); err != nil {
		return StoreController{}, err
	}
	if name == "" {
		name = f.Current
	}
	if name == "" {
		return StoreController{}, fmt.Errorf("no current controller: pass --controller or `juju switch <controller>`")
	}
	c, ok := f.Controllers[name]
	if !ok {
		return StoreController{}, fmt.Errorf("no controller %q in %s (known: %s)", name, s.Dir, strings.Join(keys(f.Controllers), ", "))
	}
	return StoreController{Name: name, Addresses: c.Endpoints, CACert: c.CACert}, nil
}

// Account is the user logged in to the controller, and the password if
// the store keeps one (otherwise the login cookies are used).
func (s Store) Account(controller string) (user, password string, err error) {
	var f struct {
		Controllers map[string]struct {
			User     string `yaml:"user"`
			Password string `yaml:"password"`
		} `yaml:"controllers"`
	}
	if err := s.read("accounts.yaml", &f); err != nil {
		return "", "", err
	}
	a, ok := f.Controllers[controller]
	if !ok || a.User == "" {
		return "", "", fmt.Errorf("not logged in to controller %q: `juju login -c %s`", controller, controller)
	}
	return a.User, a.Password, nil
}

// Model resolves a model name ("k8s", "admin/k8s", or "" for the current
// model) or UUID on the controller to its UUID and qualified name.
func (s Store) Model(controller, name string) (uuid, qualified string, err error) {
	var f struct {
		Controllers map[string]struct {
			Models map[string]struct {
				UUID string `yaml:"uuid"`
			} `yaml:"models"`
			Current string `yaml:"current-model"`
		} `yaml:"controllers"`
	}
	if err := s.read("models.yaml", &f); err != nil {
		return "", "", err
	}
	c := f.Controllers[controller]
	if name == "" {
		name = c.Current
	}
	if name == "" {
		return "", "", fmt.Errorf("no current model on %s: pass --model or `juju switch <model>`", controller)
	}
	var found []string
	for q, m := range c.Models {
		if q == name || m.UUID == name || strings.HasSuffix(q, "/"+name) {
			uuid, qualified = m.UUID, q
			found = append(found, q)
		}
	}
	switch len(found) {
	case 0:
		return "", "", fmt.Errorf("no model %q on %s in the client store (known: %s); `juju models` refreshes it", name, controller, strings.Join(keys(c.Models), ", "))
	case 1:
		return uuid, qualified, nil
	}
	return "", "", fmt.Errorf("model %q is ambiguous on %s: %s; qualify it", name, controller, strings.Join(found, ", "))
}

// CookieFile is where the juju client keeps the controller's login
// macaroons.
func (s Store) CookieFile(controller string) string {
	return filepath.Join(s.Dir, "cookies", controller+".json")
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
