package access

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/calico-lb/calico-lb/workload/api"
)

// Recheck is how long after a successful `calico-lb access` the charm
// runs it again though nothing asks for it: RBAC that someone edited or
// deleted is put back by then (at the first hook after).
const Recheck = 10 * time.Minute

// Receipt is what a successful run at now leaves for the charm: run
// again at the token's half-life or the recheck, whichever comes first,
// and at every hook while the failover test's powers are bound.
func Receipt(now time.Time, f TokenFile, failoverBound bool) api.AccessReceipt {
	next := now.Add(Recheck)
	if half, err := f.RenewAt(); err == nil && half.Before(next) {
		next = half
	}
	return api.AccessReceipt{At: now, Next: next, FailoverBound: failoverBound}
}

// ClearReceipt removes the receipt at path: a run that fails must leave
// none, so that the next hook runs the command again.
func ClearReceipt(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("access receipt %s: %w", path, err)
	}
	return nil
}

// WriteReceipt writes r to path atomically (the charm may read it at any
// moment), readable by all: it holds no secret.
func WriteReceipt(path string, r api.AccessReceipt) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := writeAtomic(path, append(b, '\n'), 0o755, 0o644, nil); err != nil {
		return fmt.Errorf("access receipt: %w", err)
	}
	return nil
}
