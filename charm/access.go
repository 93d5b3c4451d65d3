package charm

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/calico-lb/calico-lb/charm/plan"
	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/rock"
	"github.com/canonical/pebble/client"
	"github.com/gruyaume/goops"
)

// grantAccess has the workload create the controller's own ServiceAccount
// and RBAC and keep its token (`calico-lb access`), with the pod's
// credentials, which are cluster-admin under --trust; the controller then
// runs with only what it uses. It runs when it may have something to do
// (accessDue): a hook that skips it costs a Pebble pull, not a process
// and a score of apiserver round trips.
func (c *Charm) grantAccess() {
	if !c.accessDue(time.Now()) {
		return
	}
	c.accessErr = c.access("auto")
}

// accessHooks always run `calico-lb access`: a new unit, a new charm, or
// a new workload container, which a refresh brings with a new binary and
// perhaps new rules.
var accessHooks = []string{"install", "upgrade-charm", Container + "-pebble-ready"}

// accessDue says whether `calico-lb access` may have something to do at
// now: in accessHooks; when its last run left no receipt (it failed, or
// never ran in this container) or one that cannot be read; when the
// receipt's time has come (the token's half-life, or the recheck that
// repairs edited RBAC); and while the failover test's powers are bound.
func (c *Charm) accessDue(now time.Time) bool {
	if slices.Contains(accessHooks, goops.ReadEnv().HookName) {
		return true
	}
	b, err := c.pull(plan.AccessReceiptFile)
	if err != nil {
		return true
	}
	var r api.AccessReceipt
	if err := json.Unmarshal(b, &r); err != nil {
		return true
	}
	return r.Due(now)
}

// access runs `calico-lb access` in the workload container with the
// pod's credentials (Juju's trust): the controller's ServiceAccount, its
// token and RBAC, the speakers', and the failover test's powers as
// failover says (on, off, or auto: while a node carries a test's mark).
func (c *Charm) access(failover string) error {
	root, bin, env := c.containerLayout()
	cmd := []string{bin, "access", "--namespace", goops.ReadEnv().ModelName, "--token-file", root + plan.TokenFile, "--failover-test", failover,
		"--receipt-file", root + plan.AccessReceiptFile}
	if root == "" {
		cmd = append(cmd, "--owner", strconv.Itoa(rock.UID))
	}
	var stderr strings.Builder
	err := c.Exec(c.pebbleClient(), &client.ExecOptions{Command: cmd, Environment: env, Timeout: time.Minute, Stderr: &stderr})
	if err == nil {
		return nil
	}
	why := strings.TrimSpace(stderr.String())
	if why == "" {
		why = err.Error()
	}
	if strings.Contains(why, "forbidden") {
		return fmt.Errorf("calico-lb needs trust to give its controller a ServiceAccount: run `juju trust calico-lb --scope=cluster` (%s)", why)
	}
	return fmt.Errorf("cannot give the controller its own ServiceAccount: %s", why)
}
