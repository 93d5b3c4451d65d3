package access

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"strings"

	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/speaker"
)

// The controller's local API listens on loopback, which `kubectl
// port-forward` to the unit's pod also reaches: anyone who may create
// pods/portforward in the model's namespace could otherwise renumber
// Services or apply pool changes. Its /v1/ paths want the local key: 32
// random bytes the controller writes once into a 0600 file of its own
// (LoadOrCreateKey), which the charm reads through Pebble and presents
// as a bearer token. Port-forwarding gives a connection, not the file.

// LoadOrCreateKey returns the key in path, first writing a new random one
// there (speaker.NewKey; 0600, in a 0700 directory, as TokenFile writes
// the token beside it) when there is none.
func LoadOrCreateKey(path string) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil {
		if key := []byte(strings.TrimSpace(string(b))); len(key) >= 32 {
			return key, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("local API key %s: %w", path, err)
	}
	key := []byte(speaker.NewKey())
	if err := (TokenFile{Path: path}).write(append(key, '\n')); err != nil {
		return nil, fmt.Errorf("local API key %s: %w", path, err)
	}
	return key, nil
}

// RequireKey serves next to callers that present key as a bearer token,
// and the open paths (health and metrics, for Pebble's checks and
// Prometheus) to anyone.
func RequireKey(next http.Handler, key []byte, open ...string) http.Handler {
	return api.RequireBearer(next, key, "the local API wants the key in the controller's --api-key-file as a bearer token (the charm reads it through Pebble)", open...)
}
