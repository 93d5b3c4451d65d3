package allocator

import (
	"fmt"
	"strings"
	"testing"
)

// allocN allocates n Services named prefix0.. and returns their addresses.
func allocN(t *testing.T, a *Allocator, prefix string, n int) []string {
	t.Helper()
	var out []string
	for i := range n {
		out = append(out, mustAlloc(t, a, v4req("ns", fmt.Sprint(prefix, i))).IPs[0].String())
	}
	return out
}

func wantOrder(t *testing.T, what string, got []string, want string) {
	t.Helper()
	if strings.Join(got, " ") != want {
		t.Fatalf("%s: got %s, want %s", what, strings.Join(got, " "), want)
	}
}

// A pool of several ranges is gone through as one: an address released in
// the first range waits while the second has room.
func TestNextFitAcrossRanges(t *testing.T) {
	a := mustNew(t, Pool{Name: "p", Ranges: rngs("10.0.0.1-10.0.0.3", "10.0.1.1-10.0.1.3"), AutoAssign: true})
	wantOrder(t, "first pass", allocN(t, a, "s", 3), "10.0.0.1 10.0.0.2 10.0.0.3")
	a.Release(svc("ns", "s1"))
	wantOrder(t, "after a release", allocN(t, a, "t", 3), "10.0.1.1 10.0.1.2 10.0.1.3")
	// Everything else full: the pool wraps to the released address.
	wantOrder(t, "wrapped", allocN(t, a, "u", 1), "10.0.0.2")
	// Round again: the second range is entered from its start.
	a.Release(svc("ns", "t0"))
	a.Release(svc("ns", "s0"))
	wantOrder(t, "second round", allocN(t, a, "v", 2), "10.0.1.1 10.0.0.1")
}

// A reload that leaves a range in place keeps its position, even when it
// renames the pool or grows the range around it, and the pool keeps the
// range it was filling.
func TestNextFitKeptAcrossReloads(t *testing.T) {
	pools := []Pool{{Name: "p", Ranges: rngs("10.0.0.0/24"), AutoAssign: true, AvoidBuggyIPs: true}}
	a := mustNew(t, pools...)
	allocN(t, a, "s", 10) // .1-.10
	a.Release(svc("ns", "s0"))
	// An unrelated pool added.
	pools = append(pools, Pool{Name: "q", Ranges: rngs("10.9.0.0/24"), AutoAssign: false})
	if _, err := a.SetPools(pools, false); err != nil {
		t.Fatal(err)
	}
	wantOrder(t, "after adding a pool", allocN(t, a, "t", 1), "10.0.0.11")
	// Renamed and grown: the position stays where it was.
	pools[0] = Pool{Name: "renamed", Ranges: rngs("10.0.0.0/23"), AutoAssign: true, AvoidBuggyIPs: true}
	if _, err := a.SetPools(pools, false); err != nil {
		t.Fatal(err)
	}
	wantOrder(t, "after renaming and growing", allocN(t, a, "u", 1), "10.0.0.12")

	// Two ranges, the second being filled: a reload stays in the second.
	b := mustNew(t, Pool{Name: "p", Ranges: rngs("10.0.0.1-10.0.0.2", "10.0.1.1-10.0.1.4"), AutoAssign: true})
	allocN(t, b, "s", 3) // fills the first range, then 10.0.1.1
	b.Release(svc("ns", "s0"))
	if _, err := b.SetPools([]Pool{
		{Name: "p", Ranges: rngs("10.0.0.1-10.0.0.2", "10.0.1.1-10.0.1.4"), AutoAssign: true},
		{Name: "other", Ranges: rngs("10.5.0.0/30")},
	}, false); err != nil {
		t.Fatal(err)
	}
	wantOrder(t, "two ranges after a reload", allocN(t, b, "t", 1), "10.0.1.2")
}

// After a restart the allocator knows only the addresses in use: it
// resumes past the highest one in each range, in the last range of the
// pool that holds any.
func TestResumeAfterHighest(t *testing.T) {
	pools := []Pool{{Name: "p", Ranges: rngs("10.0.0.1-10.0.0.5", "10.0.1.1-10.0.1.5"), AutoAssign: true}}
	a := mustNew(t, pools...)
	for i, ip := range []string{"10.0.0.2", "10.0.0.5", "10.0.1.1", "10.0.1.3"} {
		r := v4req("ns", fmt.Sprint("old", i))
		if _, err := a.Adopt(r, addrs(ip)); err != nil {
			t.Fatal(err)
		}
	}
	a.ResumeAfterHighest()
	wantOrder(t, "resumed", allocN(t, a, "s", 4), "10.0.1.4 10.0.1.5 10.0.0.1 10.0.0.3")

	// The highest address in use is the last of its range: the next range.
	b := mustNew(t, pools...)
	if _, err := b.Adopt(v4req("ns", "old"), addrs("10.0.0.5")); err != nil {
		t.Fatal(err)
	}
	b.ResumeAfterHighest()
	wantOrder(t, "after the last of a range", allocN(t, b, "s", 1), "10.0.1.1")
}
