package allocator

import (
	"fmt"
	"net/netip"
)

// An excluded address lies inside a range but is never handed out by
// itself. Asked for by name it is refused with the exclusion's reason and
// fix; held already (adopted, or the rule came in later) it is kept and
// flagged with the exclusion's issue, for verify to report and reallocate
// to fix. The trie of the range forbids exactly the excluded addresses
// (besides those past the range's end), so automatic allocation skips them.
//
// The one rule today is avoid-buggy-ips. A new kind of excluded address
// gets its own Reason and Issue here, and its own bit in the trie's
// forbidden mask.
type exclusion struct {
	reason Reason
	issue  Issue
	why    string // what the address is, as the end of "<ip> ..."
	fix    string
}

// exclusion returns the rule that keeps ip, an address of r, from being
// handed out, if one does.
func (r *prange) exclusion(ip netip.Addr) (exclusion, bool) {
	if !r.pool.AvoidBuggyIPs {
		return exclusion{}, false
	}
	avoided := exclusion{reason: ReasonBuggyIP, issue: IssueBuggyIP,
		fix: fmt.Sprintf("pool %q avoids such addresses; request another address or set avoid-buggy-ips: false on the pool", r.pool.Name)}
	if ip.Is4() {
		if last := ip.As4()[3]; last == 0 || last == 255 {
			avoided.why = "ends in .0 or .255"
			return avoided, true
		}
		return exclusion{}, false
	}
	if a, ok := r.r.SubnetRouterAnycast(); ok && a == ip {
		avoided.why = "is the Subnet-Router anycast address of the pool's prefix (RFC 4291), which routers may answer for themselves"
		return avoided, true
	}
	return exclusion{}, false
}

// refuse is the error for a request that names ip.
func (x exclusion) refuse(ip netip.Addr) error {
	return errorf(x.reason, "%s %s and %s", ip, x.why, x.fix)
}
