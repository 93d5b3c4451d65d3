package api

import "time"

// AccessReceipt is what `calico-lb access` leaves behind when it has
// succeeded: when it may next have something to do. The charm reads it
// through Pebble and skips the command (a process start and a score of
// apiserver round trips) in the hooks before then. A failed run leaves
// none, so the next hook runs it again.
type AccessReceipt struct {
	At time.Time `json:"at"`
	// Next is the earlier of the token's half-life, when it must be
	// renewed, and the recheck that repairs RBAC someone changed.
	Next time.Time `json:"next"`
	// FailoverBound says the failover test's powers are bound: every
	// hook runs the command until it takes them back.
	FailoverBound bool `json:"failover-bound"`
}

// Due says whether the command may have something to do at now.
func (r AccessReceipt) Due(now time.Time) bool {
	return r.FailoverBound || r.Next.IsZero() || !now.Before(r.Next)
}
