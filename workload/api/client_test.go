package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A hostile server (a speaker or probe agent someone controls) answers
// with a redirect to the caller's own unauthenticated local API: the client
// must not go there.
func TestHTTPClientFollowsNoRedirect(t *testing.T) {
	var hit atomic.Int32
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hit.Add(1) // e.g. POST /v1/reallocate?service=shop/web
	}))
	defer local.Close()
	hostile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, local.URL+"/v1/reallocate?service=shop/web", http.StatusTemporaryRedirect)
	}))
	defer hostile.Close()
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		req, _ := http.NewRequest(method, hostile.URL+"/v1/bgp", strings.NewReader("{}"))
		resp, err := HTTPClient(time.Second).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTemporaryRedirect {
			t.Fatalf("%s: got %s, want the 307 itself", method, resp.Status)
		}
	}
	if n := hit.Load(); n != 0 {
		t.Fatalf("the redirect reached the local API %d times", n)
	}
}

// An endless answer is cut at MaxAnswer: a hostile server cannot fill the
// caller's memory.
func TestDecodeIsBounded(t *testing.T) {
	var served atomic.Int64
	endless := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`["`))
		chunk := []byte(strings.Repeat("a", 1<<20))
		for range 64 {
			n, err := w.Write(chunk)
			served.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	defer endless.Close()
	resp, err := HTTPClient(10 * time.Second).Get(endless.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v []string
	err = Decode(resp.Body, &v)
	if err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("a 64 MiB answer decoded: %v", err)
	}
}
