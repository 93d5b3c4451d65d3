package api

import (
	"crypto/subtle"
	"net/http"
	"slices"
	"strings"
)

// RequireBearer serves next to callers that present key as a bearer
// token, and the open paths (health checks, metrics) to anyone. Others get
// 401 with why, which says where the key comes from. An empty key admits
// nobody: an empty bearer token would otherwise match it.
func RequireBearer(next http.Handler, key []byte, why string, open ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slices.Contains(open, r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || len(key) == 0 || subtle.ConstantTimeCompare([]byte(got), key) != 1 {
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, why, http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
