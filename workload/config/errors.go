package config

import (
	"fmt"
	"strings"
)

// FieldError is one problem with one field: where it is, and a message
// that quotes the value and says how to fix it.
type FieldError struct {
	Field string // e.g. pools.public.addresses[1], spine-peers[0].hold-time
	Line  int    // line in the YAML value, when it has more than one line
	Msg   string
}

func (e FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s (line %d): %s", e.Field, e.Line, e.Msg)
	}
	return e.Field + ": " + e.Msg
}

// Errors is every problem found; validation does not stop at the first.
type Errors []FieldError

func (e Errors) Error() string {
	s := make([]string, len(e))
	for i, fe := range e {
		s[i] = fe.Error()
	}
	return strings.Join(s, "\n")
}

// Summary is the first error and how many more there are, for a one-line
// status such as Juju's.
func (e Errors) Summary() string {
	switch len(e) {
	case 0:
		return ""
	case 1:
		return e[0].Error()
	}
	return fmt.Sprintf("%s (and %d more)", e[0].Error(), len(e)-1)
}

// err returns e as an error, or nil when there is nothing in it.
func (e Errors) err() error {
	if len(e) == 0 {
		return nil
	}
	return e
}
