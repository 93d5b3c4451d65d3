// Package status turns what the workload reports into the unit's Juju
// status: one line an operator can act on.
package status

import (
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/config"
)

// Status is a Juju workload status.
type Status struct {
	Name    string // active, blocked, waiting, maintenance
	Message string
}

func (s Status) String() string { return s.Name + ": " + s.Message }

// InvalidConfig is the status for charm options that do not validate: the
// first problem and how many more there are, because Juju shows one line.
// The workload keeps its last good config meanwhile.
func InvalidConfig(err error) Status {
	var errs config.Errors
	msg := err.Error()
	if errors.As(err, &errs) {
		msg = errs.Summary()
	}
	return Status{"blocked", "invalid config: " + oneLine(msg)}
}

// Failed is the status for a hook whose handler failed: its error, on one
// line (Juju shows one); the hook itself fails, so Juju retries it.
func Failed(err error) Status { return Status{"blocked", oneLine(err.Error())} }

// shownServices is how many Services a held-back pool change names before
// it says "and N more".
const shownServices = 3

// FromWorkload is the status for a running workload, from its local API:
// blocked when it reports a config error, speakers it cannot deploy (no
// announcements at all, so before a held-back pool change) or a held-back
// pool change (naming the Services that would lose their IPs and the
// action that applies it), else active with the mode, pools and usage.
func FromWorkload(snap api.Snapshot, change api.PoolChange) Status {
	if snap.ConfigError != "" {
		return Status{"blocked", "workload rejected its config: " + oneLine(snap.ConfigError)}
	}
	if snap.SpeakersError != "" {
		return Status{"blocked", oneLine(snap.SpeakersError)}
	}
	if snap.PendingChange || change.Pending {
		var names []string
		for i, s := range change.Services {
			if i == shownServices {
				names = append(names, fmt.Sprintf("and %d more", len(change.Services)-shownServices))
				break
			}
			names = append(names, s.Namespace+"/"+s.Name)
		}
		who := "some Services"
		if len(names) > 0 {
			who = strings.Join(names, ", ")
		}
		return Status{"blocked", fmt.Sprintf("pool change held back: it would take the IPs of %s; run the apply-pool-change action to apply it, or revert pools", who)}
	}
	capacity := new(big.Int)
	inUse := 0
	for _, p := range snap.Pools {
		if c, ok := new(big.Int).SetString(p.Capacity, 10); ok {
			capacity.Add(capacity, c)
		}
		inUse += p.InUse
	}
	msg := fmt.Sprintf("%s mode; %s, %d/%s in use", snap.Mode, Count(len(snap.Pools), "pool"), inUse, count(capacity))
	pending := 0
	for _, s := range snap.Services {
		if len(s.IPs) == 0 {
			pending++
		}
	}
	if pending > 0 {
		msg += fmt.Sprintf(", %d Service(s) waiting for an IP (list-allocations says why)", pending)
	}
	return Status{"active", msg}
}

// count prints a capacity exactly while it is readable, and as a power of
// two beyond (an IPv6 /64 has 2^64 addresses).
func count(n *big.Int) string {
	if n.BitLen() <= 40 {
		return n.String()
	}
	if n.BitLen() > 0 && new(big.Int).Lsh(big.NewInt(1), uint(n.BitLen()-1)).Cmp(n) == 0 {
		return fmt.Sprintf("2^%d", n.BitLen()-1)
	}
	return fmt.Sprintf("~2^%d", n.BitLen()-1)
}

func oneLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

// Count is "1 pool", "2 pools": n and the noun, plural unless n is 1.
func Count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
