package api

import (
	"encoding/json"
	"errors"
	"net/http"
)

// WriteJSON answers with status and v as indented JSON, which is what
// every calico-lb API serves (people read it through `juju run`).
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Refused is a request about a Service that the Service's state does not
// allow; the message says why and what to do instead.
type Refused struct{ Msg string }

func (e Refused) Error() string { return e.Msg }

// ErrNoService is a request that names no Service there is.
var ErrNoService = errors.New("no such Service")

// Refusal is the HTTP status for a request about a Service that cannot be
// met (409) or names none (404); false for any other error.
func Refusal(err error) (int, bool) {
	var refused Refused
	switch {
	case errors.As(err, &refused):
		return http.StatusConflict, true
	case errors.Is(err, ErrNoService):
		return http.StatusNotFound, true
	}
	return 0, false
}
