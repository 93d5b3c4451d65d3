package speaker

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// heartbeat is one liveness message, then an HMAC-SHA256 of its text in
// hex. Version 3, "CLB3 node started uptime revived seq sent nonce echo",
// is fresh when it echoes a challenge (nonce) the receiver sent within the
// last two rotations: no clock is compared across nodes. Version 2,
// "CLB2 node started uptime revived seq sent", is what speakers before it
// send; it is judged by its send time against the receiver's clock, and a
// speaker sends it beside version 3 only to peers not yet heard speaking
// version 3, so that a rolling upgrade never splits the speakers.
type heartbeat struct {
	v       int // 2 or 3
	node    string
	started int64  // the sender's start, Unix ns: which life of the sender
	uptime  int64  // ns since it started, on its monotonic clock: its "alive since"
	revived int64  // how often the sender saw the receiver come back
	seq     uint64 // numbers the sender's heartbeats since it started
	sent    int64  // Unix ns: only shown (clocks apart), and judged in version 2
	nonce   string // v3: the sender's current challenge
	echo    string // v3: the receiver's latest challenge the sender heard, or noEcho
}

const (
	heartbeatMagicV2 = "CLB2"
	heartbeatMagic   = "CLB3"
	noEcho           = "-"
	nonceLen         = 16 // hex characters: 64 random bits
)

func (h heartbeat) text() string {
	if h.v == 2 {
		return fmt.Sprintf("%s %s %d %d %d %d %d", heartbeatMagicV2, h.node, h.started, h.uptime, h.revived, h.seq, h.sent)
	}
	return fmt.Sprintf("%s %s %d %d %d %d %d %s %s", heartbeatMagic, h.node, h.started, h.uptime, h.revived, h.seq, h.sent, h.nonce, h.echo)
}

func mac(key []byte, text string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(text))
	return m.Sum(nil)
}

// seal is the heartbeat as sent, signed with key.
func (h heartbeat) seal(key []byte) []byte {
	t := h.text()
	return []byte(t + " " + hex.EncodeToString(mac(key, t)))
}

// newNonce is a fresh challenge.
func newNonce() string {
	b := make([]byte, nonceLen/2)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24)
	return hex.EncodeToString(b)
}

func isNonce(s string) bool {
	_, err := hex.DecodeString(s)
	return len(s) == nonceLen && err == nil && strings.ToLower(s) == s
}

// openHeartbeat reads a heartbeat signed with one of keys; anything else,
// and anything malformed, is refused.
func openHeartbeat(b []byte, keys [][]byte) (heartbeat, bool) {
	i := bytes.LastIndexByte(b, ' ')
	if i < 0 {
		return heartbeat{}, false
	}
	text, sum := string(b[:i]), b[i+1:]
	got := make([]byte, hex.DecodedLen(len(sum)))
	if _, err := hex.Decode(got, sum); err != nil || len(got) != sha256.Size {
		return heartbeat{}, false
	}
	authentic := false
	for _, k := range keys {
		// Every key is tried, so the time taken tells nothing.
		authentic = hmac.Equal(got, mac(k, text)) || authentic
	}
	if !authentic {
		return heartbeat{}, false
	}
	f := strings.Fields(text)
	var h heartbeat
	switch {
	case len(f) == 7 && f[0] == heartbeatMagicV2:
		h.v = 2
	case len(f) == 9 && f[0] == heartbeatMagic && isNonce(f[7]) && (f[8] == noEcho || isNonce(f[8])):
		h.v, h.nonce, h.echo = 3, f[7], f[8]
	default:
		return heartbeat{}, false
	}
	if len(f[1]) > 253 {
		return heartbeat{}, false
	}
	var errs [5]error
	h.node = f[1]
	h.started, errs[0] = strconv.ParseInt(f[2], 10, 64)
	h.uptime, errs[1] = strconv.ParseInt(f[3], 10, 64)
	h.revived, errs[2] = strconv.ParseInt(f[4], 10, 64)
	h.seq, errs[3] = strconv.ParseUint(f[5], 10, 64)
	h.sent, errs[4] = strconv.ParseInt(f[6], 10, 64)
	if errors.Join(errs[:]...) != nil || h.revived < 0 || h.uptime < 0 {
		return heartbeat{}, false
	}
	return h, true
}

// L2Keys authenticate the heartbeats: Sign signs what this speaker sends,
// and a heartbeat signed with any of Accept (Sign among them) is taken.
// Two accepted keys let a new key roll out without a flap: first every
// speaker accepts it, then every speaker signs with it, then the old one
// goes.
type L2Keys struct {
	Sign   []byte
	Accept [][]byte
}

// minKeyLen is the shortest key taken: 128 bits.
const minKeyLen = 16

// ParseL2Keys reads the key file the controller writes into the speakers'
// Secret: one key per line in hex, the first signs, all are accepted.
func ParseL2Keys(data []byte) (L2Keys, error) {
	var k L2Keys
	for i, line := range strings.Fields(string(data)) {
		key, err := hex.DecodeString(line)
		if err != nil || len(key) < minKeyLen {
			return L2Keys{}, fmt.Errorf("L2 key file: line %d is not a key of at least %d hex-encoded bytes", i+1, minKeyLen)
		}
		if i == 0 {
			k.Sign = key
		}
		k.Accept = append(k.Accept, key)
	}
	if len(k.Accept) == 0 {
		return L2Keys{}, errors.New("L2 key file is empty")
	}
	return k, nil
}

// NewKey makes a random 256-bit key, hex-encoded as the key files (the
// heartbeat keys, the controller's local API key) have it.
func NewKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24)
	return hex.EncodeToString(b)
}
