package controller

import (
	"context"
	"errors"
	"time"
)

// inLoop runs fn on the leader's allocation loop, which owns the allocator
// and the term's state, and returns what fn returns: the one way another
// goroutine (an API handler, the metrics collector) reads or changes them.
// On a standby it returns errNotLeader.
func inLoop[T any](ctx context.Context, c *Controller, fn func(*term) (T, error)) (T, error) {
	var zero T
	t := c.term.Load()
	if t == nil {
		return zero, errNotLeader
	}
	type result struct {
		v   T
		err error
	}
	c.loopCalls.Add(1)
	done := make(chan result, 1)
	call := apiCall{fn: func(t *term) {
		v, err := fn(t)
		done <- result{v, err}
	}}
	select {
	case t.api <- call:
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-time.After(5 * time.Second):
		return zero, errors.New("the allocation loop did not answer within 5 s")
	}
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}
