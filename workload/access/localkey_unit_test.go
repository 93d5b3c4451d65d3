package access

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// The key is made once, kept private and reused; the local API refuses a
// caller without it (as through kubectl port-forward) and serves health
// and metrics to anyone.
func TestLocalKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dir", "api-key")
	key, err := LoadOrCreateKey(path)
	if err != nil || len(key) < 32 {
		t.Fatalf("key %q: %v", key, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v, want 0600", fi, err)
	}
	if again, err := LoadOrCreateKey(path); err != nil || string(again) != string(key) {
		t.Fatalf("a second load made a new key (%v)", err)
	}
	srv := httptest.NewServer(RequireKey(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }), key, "/healthz"))
	defer srv.Close()
	do := func(path, auth string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, auth := range []string{"", "Bearer nope", string(key), "Basic " + string(key)} {
		if c := do("/v1/reallocate", auth); c != http.StatusUnauthorized {
			t.Errorf("with %q: %d, want 401", auth, c)
		}
	}
	if c := do("/v1/reallocate", "Bearer "+string(key)); c != http.StatusOK {
		t.Errorf("with the key: %d", c)
	}
	if c := do("/healthz", ""); c != http.StatusOK {
		t.Errorf("/healthz without the key: %d", c)
	}
}
