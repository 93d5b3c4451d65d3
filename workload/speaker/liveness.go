package speaker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Liveness tells which speakers are alive, for L2 ownership.
//
// It is a small protocol of its own rather than memberlist: every speaker
// sends a UDP heartbeat to every other eligible speaker each Interval, and
// a speaker not heard from for Timeout is dead. That bounds detection at
// Timeout (350 ms by default) plus one check, with no suspicion phase
// whose length depends on cluster size, and costs nothing on the API
// server. The cost is n*(n-1) small packets per interval, which is fine for
// the speakers of one L2 segment (tens of nodes; use speaker-node-selector
// beyond that).
//
// Partitions: each side sees the other as dead and takes over its IPs, so
// during a partition both sides answer for some IPs (on a single L2
// segment there is no quorum to do better, and the alternative is nobody
// answering). When the partition heals, heartbeats resume within one
// Interval and both sides compute the same owners again: two owners never
// persist beyond Timeout after the heal.
//
// Heartbeats are authenticated (an HMAC with a key only the speakers hold),
// numbered, accepted only from the address the node's heartbeats are sent
// to, and fresh only when they echo a challenge the receiver sent within
// the last two rotations (a second each), so that nobody else on the
// segment can keep a dead node alive, make a live one look restarted, or
// replay or delay what it captured, and no node's clock has a say: a node
// whose clock is wrong neither drops out nor owns everything.
type Liveness struct {
	self     string
	started  time.Time
	conn     packetConn
	interval time.Duration
	timeout  time.Duration
	seq      uint64 // the last heartbeat's number; beat's goroutine only

	mu    sync.Mutex
	keys  L2Keys                    // a rotation changes them in place (SetKeys)
	peers map[string]netip.AddrPort // node -> where heartbeats go
	seen  map[string]peerSeen
	kick  chan struct{}

	peersSet chan struct{}
	given    bool // a peer gave us up and saw us back since the last TakeGivenUp

	// nonce is the challenge this speaker's heartbeats carry now, and
	// prevNonce the one before; a version 3 heartbeat counts only if it
	// echoes one of them. They rotate every nonceRotation.
	nonce, prevNonce string
	nonceAt          time.Time
	latest           map[string]peerOrder // the newest authentic heartbeat of each node, fresh or not
	hurry            chan struct{}        // beat now: a peer's first challenge waits for its echo

	rejected map[string]uint64 // by reason, for /v1/l2 and the metric
	skewed   map[string]skew   // nodes whose heartbeats had a send time out of the window
}

// nonceRotation is how often a speaker changes its challenge: a heartbeat
// held back and delivered later counts for at most two of them.
const nonceRotation = time.Second

// skew is how far a node's last heartbeat was sent from our clock, and
// whether it was refused for it (version 2 only).
type skew struct {
	by      time.Duration
	at      time.Time
	refused bool
}

// peerOrder is where a node's heartbeats stand, whether they were fresh or
// not: what a later one must be newer than, and the challenge to echo.
type peerOrder struct {
	started time.Time
	seq     uint64
	v       int       // the version of the heartbeat that carried seq
	at      time.Time // when it came, on our clock
	nonce   string    // the node's latest challenge ("" until it sent one)
}

type peerSeen struct {
	last    time.Time // last heartbeat
	started time.Time // the peer's own start time: which life of the peer this is
	seq     uint64    // the number of its last heartbeat since started
	// aliveSince is when the peer started, on this speaker's clock: when
	// its first heartbeat of this life arrived, less the uptime it
	// carried (measured on the peer's monotonic clock). Clock skew between
	// nodes therefore cannot shift hold-down; every speaker still sees the
	// same instant, give or take a packet's transit.
	aliveSince time.Time
	// revived counts how often this speaker saw the peer come back from
	// the dead; it travels to the peer in our heartbeats.
	revived int64
	// revivedUs is the peer's count of our revivals, from its heartbeats:
	// when it grows, the peer had given us up, may have taken our IPs over
	// and had its MAC learned for them, and we must announce them again.
	// A short link flap can be one-sided (we never saw the peer die), so
	// this is the only way to know.
	revivedUs int64
}

// DefaultHeartbeat is the heartbeat period and DefaultTimeout the silence
// after which a speaker is dead.
const (
	DefaultHeartbeat = 100 * time.Millisecond
	DefaultTimeout   = 350 * time.Millisecond
	DefaultL2Port    = 7947
)

// packetConn is the heartbeats' socket (a *net.UDPConn).
type packetConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	LocalAddr() net.Addr
	Close() error
}

// StartLiveness listens on bind (the node's own address, not every
// address) and runs until ctx ends.
func StartLiveness(ctx context.Context, self string, bind netip.AddrPort, keys L2Keys, interval, timeout time.Duration) (*Liveness, error) {
	if len(keys.Accept) == 0 {
		return nil, errors.New("liveness: no key to authenticate heartbeats with")
	}
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(bind))
	if err != nil {
		return nil, fmt.Errorf("liveness: listen on UDP %s: %w", bind, err)
	}
	return startLiveness(ctx, self, conn, keys, interval, timeout), nil
}

// startLiveness runs the protocol on conn until ctx ends, and closes it.
func startLiveness(ctx context.Context, self string, conn packetConn, keys L2Keys, interval, timeout time.Duration) *Liveness {
	l := newLiveness(self, time.Now(), keys, interval, timeout)
	l.conn = conn
	go l.receive()
	go l.beat(ctx)
	go func() { <-ctx.Done(); conn.Close() }()
	return l
}

// newLiveness is a Liveness without its socket, started at started.
func newLiveness(self string, started time.Time, keys L2Keys, interval, timeout time.Duration) *Liveness {
	return &Liveness{self: self, started: started, interval: interval, timeout: timeout, keys: keys,
		peers: map[string]netip.AddrPort{}, seen: map[string]peerSeen{}, kick: make(chan struct{}, 1), peersSet: make(chan struct{}, 1),
		latest: map[string]peerOrder{}, hurry: make(chan struct{}, 1), nonce: newNonce(), nonceAt: started,
		rejected: map[string]uint64{}, skewed: map[string]skew{}}
}

// Port is the UDP port it listens on.
func (l *Liveness) Port() int { return l.conn.LocalAddr().(*net.UDPAddr).Port }

// Changed signals when the set of live speakers may have changed.
func (l *Liveness) Changed() <-chan struct{} { return l.kick }

func (l *Liveness) signal() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// SetKeys replaces the heartbeat keys (a rotation: see ParseL2Keys) without
// a restart, which would move the IPs this speaker owns.
func (l *Liveness) SetKeys(keys L2Keys) error {
	if len(keys.Accept) == 0 {
		return errors.New("liveness: no key to authenticate heartbeats with")
	}
	l.mu.Lock()
	l.keys = keys
	l.mu.Unlock()
	return nil
}

// SetPeers sets the other speakers to send heartbeats to.
func (l *Liveness) SetPeers(peers map[string]netip.AddrPort) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.peers) == 0 && len(peers) > 0 {
		select {
		case l.peersSet <- struct{}{}:
		default:
		}
	}
	l.peers = peers
	for n := range l.seen {
		if _, ok := peers[n]; !ok {
			delete(l.seen, n)
		}
	}
	for n := range l.latest {
		if _, ok := peers[n]; !ok {
			delete(l.latest, n)
		}
	}
}

// Members returns the speakers alive now, this one included.
func (l *Liveness) Members(now time.Time) []Member {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []Member{{Node: l.self, AliveSince: l.started}}
	for n, s := range l.seen {
		if now.Sub(s.last) <= l.timeout {
			out = append(out, Member{Node: n, AliveSince: s.aliveSince})
		}
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// Settled reports whether this speaker knows who is alive: it has heard
// from every peer, or has listened for a whole Timeout. Until then it must
// claim nothing, or a restarted speaker would answer alongside the owners
// it has not heard from yet. If not settled, until is when it will be.
func (l *Liveness) Settled(now time.Time) (ok bool, until time.Time) {
	until = l.started.Add(l.timeout)
	if !now.Before(until) {
		return true, time.Time{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for n := range l.peers {
		if _, heard := l.seen[n]; !heard && n != l.self {
			return false, until
		}
	}
	return true, time.Time{}
}

func (l *Liveness) beat(ctx context.Context) {
	tick := time.NewTicker(l.interval)
	defer tick.Stop()
	// The start time travels with every heartbeat, so that every speaker
	// sees the same "alive since" for a peer and so decides the same owners.
	type dest struct {
		addr netip.AddrPort
		msg  []byte
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-l.peersSet:
			// First beat as soon as there is someone to tell, not one
			// Interval later: peers settle sooner.
		case <-l.hurry:
			// A peer sent its first challenge: it counts us alive only
			// once we echo it.
		}
		now := time.Now()
		l.seq++
		l.mu.Lock()
		if now.Sub(l.nonceAt) >= nonceRotation {
			l.prevNonce, l.nonce, l.nonceAt = l.nonce, newNonce(), now
		}
		dests := make([]dest, 0, len(l.peers))
		for n, a := range l.peers {
			if n != l.self {
				lt := l.latest[n]
				hb := heartbeat{v: 3, node: l.self, started: l.started.UnixNano(), uptime: int64(now.Sub(l.started)), revived: l.seen[n].revived, seq: l.seq, sent: now.UnixNano(),
					nonce: l.nonce, echo: cmp.Or(lt.nonce, noEcho)}
				dests = append(dests, dest{a, hb.seal(l.keys.Sign)})
				if lt.nonce == "" {
					// Not heard speaking version 3 yet: it may be a
					// speaker from before it (a rolling upgrade).
					hb.v = 2
					dests = append(dests, dest{a, hb.seal(l.keys.Sign)})
				}
			}
		}
		// A speaker that just fell silent changes the members.
		for _, s := range l.seen {
			if d := now.Sub(s.last); d > l.timeout && d <= l.timeout+l.interval {
				l.signal()
			}
		}
		l.mu.Unlock()
		for _, d := range dests {
			_, _ = l.conn.WriteToUDPAddrPort(d.msg, d.addr)
		}
	}
}

// TakeGivenUp reports whether a peer gave this speaker up for dead and has
// heard it again since the last call.
func (l *Liveness) TakeGivenUp() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	g := l.given
	l.given = false
	return g
}

func (l *Liveness) receive() {
	buf := make([]byte, 512)
	for {
		n, from, err := l.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		l.mu.Lock()
		accept, known := l.keys.Accept, l.fromPeer(from)
		if !known {
			// Before the HMAC, which is what a flood would make us pay
			// for: a pod or host that is not a peer costs a lookup.
			l.reject("source")
		}
		l.mu.Unlock()
		if !known {
			continue
		}
		hb, ok := openHeartbeat(buf[:n], accept)
		if !ok {
			l.mu.Lock()
			l.reject("unauthentic")
			l.mu.Unlock()
			continue
		}
		if hb.node == l.self {
			continue
		}
		l.heard(hb, from, time.Now())
	}
}

// replayWindow is how far a heartbeat's send time may be from the
// receiver's clock before the clocks are shown to disagree; a version 2
// heartbeat (from a speaker before version 3) outside it is refused.
const replayWindow = 30 * time.Second

// fromPeer reports whether from is where a peer's heartbeats come from
// (l.mu held).
func (l *Liveness) fromPeer(from netip.AddrPort) bool {
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	for _, a := range l.peers {
		if a == from {
			return true
		}
	}
	return false
}

// heard takes in an authentic heartbeat that came from from at now.
func (l *Liveness) heard(hb heartbeat, from netip.AddrPort, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	want, known := l.peers[hb.node]
	if !known || from.Addr().Unmap() != want.Addr() || from.Port() != want.Port() {
		l.reject("source")
		return // not from where that node's heartbeats come from
	}
	d := now.Sub(time.Unix(0, hb.sent))
	off := d > replayWindow || d < -replayWindow
	if off {
		// Never silent: logs, certificates and version 2 peers care.
		l.skewed[hb.node] = skew{by: d, at: now, refused: hb.v == 2}
		if hb.v == 2 {
			l.reject("clock")
			return
		}
	}
	if !l.inOrder(hb, now) {
		return
	}
	if hb.v == 3 && hb.echo != l.nonce && (l.prevNonce == "" || hb.echo != l.prevNonce) {
		// Not an answer to a recent challenge of ours: sent before the
		// peer heard us (noEcho, not counted), or held back, or replayed
		// to a speaker that restarted since.
		if hb.echo != noEcho {
			l.reject("stale")
		}
		return
	}
	if !off {
		delete(l.skewed, hb.node) // its clock agrees with ours again
	}
	s, seen := l.seen[hb.node]
	started := time.Unix(0, hb.started)
	if !seen || now.Sub(s.last) > l.timeout || !s.started.Equal(started) {
		l.signal() // new, back from the dead, or restarted
	}
	if seen && now.Sub(s.last) > l.timeout && s.started.Equal(started) {
		s.revived++
	}
	if seen && s.started.Equal(started) && hb.revived > s.revivedUs {
		l.given = true
		l.signal()
	}
	if !seen || !s.started.Equal(started) {
		s.revivedUs = 0
		s.aliveSince = now.Add(-time.Duration(hb.uptime))
	}
	s.last, s.started, s.seq, s.revivedUs = now, started, hb.seq, max(s.revivedUs, hb.revived)
	l.seen[hb.node] = s
}

// inOrder reports whether hb is newer than every authentic heartbeat from
// its node so far, and records it and the challenge it carries (l.mu held).
// A speaker sends the version 2 copy of a heartbeat after the version 3
// one until it hears version 3 back, so a copy is dropped without a count.
func (l *Liveness) inOrder(hb heartbeat, now time.Time) bool {
	lt, known := l.latest[hb.node]
	started := time.Unix(0, hb.started)
	switch {
	case !known || started.After(lt.started):
		lt = peerOrder{started: started} // first heard, or a new life
	case started.Before(lt.started):
		if now.Sub(lt.at) <= replayWindow {
			l.reject("replay")
			return false // an earlier life of a node heard from since
		}
		lt = peerOrder{started: started}
	case hb.v == 2 && lt.nonce != "":
		return false // the copy for speakers before version 3
	case hb.seq < lt.seq || hb.seq == lt.seq && !(hb.v == 3 && lt.v == 2):
		l.reject("replay")
		return false // a replay, or out of order
	}
	first := hb.v == 3 && lt.nonce == ""
	lt.seq, lt.v, lt.at = hb.seq, hb.v, now
	if hb.v == 3 {
		lt.nonce = hb.nonce
	}
	l.latest[hb.node] = lt
	if first {
		select {
		case l.hurry <- struct{}{}:
		default:
		}
	}
	return true
}

// reject counts a refused heartbeat (l.mu held).
func (l *Liveness) reject(reason string) {
	if l.rejected == nil {
		l.rejected = map[string]uint64{}
	}
	l.rejected[reason]++
}

// Rejected returns how many heartbeats were refused, by reason; the nodes
// whose heartbeats were sent more than replayWindow from our clock in the
// last minute, with how far off; and those of them refused for it
// (speakers before version 3 only).
func (l *Liveness) Rejected(now time.Time) (counts map[string]uint64, skewed, refused []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	counts = make(map[string]uint64, len(l.rejected))
	for k, v := range l.rejected {
		counts[k] = v
	}
	for node, s := range l.skewed {
		if now.Sub(s.at) <= time.Minute {
			e := fmt.Sprintf("%s (%s)", node, s.by.Round(time.Second))
			skewed = append(skewed, e)
			if s.refused {
				refused = append(refused, e)
			}
		}
	}
	slices.Sort(skewed)
	slices.Sort(refused)
	return counts, skewed, refused
}

// String describes the live members, for logs and /v1/l2.
func (l *Liveness) String() string {
	ms := l.Members(time.Now())
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = m.Node + " (alive " + strconv.FormatInt(int64(time.Since(m.AliveSince)/time.Millisecond), 10) + " ms)"
	}
	return strings.Join(s, ", ")
}
