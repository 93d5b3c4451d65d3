package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Community is a BGP community for a pool's routes, parsed once when the
// config is read: a standard one (AA:NN, or a well-known name) or a large
// one (A:B:C, RFC 8092). It is written and compared as the operator wrote
// it.
type Community struct {
	text     string
	large    bool
	standard uint32    // when !large
	parts    [3]uint32 // when large: global administrator, local data 1 and 2
}

// wellKnownCommunities are the names RFC 1997, 7999, 8326 and 7611 give.
var wellKnownCommunities = map[string]uint32{
	"graceful-shutdown":   0xFFFF0000,
	"blackhole":           0xFFFF029A,
	"no-export":           0xFFFFFF01,
	"no-advertise":        0xFFFFFF02,
	"no-export-subconfed": 0xFFFFFF03,
	"no-peer":             0xFFFFFF04,
}

// ParseCommunity reads AA:NN, A:B:C or a well-known name. The error says
// how to write one.
func ParseCommunity(s string) (Community, error) {
	if v, ok := wellKnownCommunities[s]; ok {
		return Community{text: s, standard: v}, nil
	}
	parts := strings.Split(s, ":")
	bits := map[int]int{2: 16, 3: 32}[len(parts)]
	if bits == 0 {
		return Community{}, fmt.Errorf("%q is not a BGP community: write AA:NN (e.g. 65000:100), a large community A:B:C (e.g. 4200000000:1:2), or no-export, no-advertise, no-export-subconfed, no-peer, blackhole, graceful-shutdown", s)
	}
	c := Community{text: s, large: len(parts) == 3}
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 10, bits)
		if err != nil {
			return Community{}, fmt.Errorf("%q is not a BGP community: each part of a %d-part community is a number from 0 to %d", s, len(parts), uint64(1)<<bits-1)
		}
		if c.large {
			c.parts[i] = uint32(v)
		} else {
			c.standard = c.standard<<16 | uint32(v)
		}
	}
	return c, nil
}

// MustCommunity is ParseCommunity for constants in tests; it panics on error.
func MustCommunity(s string) Community {
	c, err := ParseCommunity(s)
	if err != nil {
		panic(err)
	}
	return c
}

// String is the community as written.
func (c Community) String() string { return c.text }

// Standard returns the 32-bit value of a standard community.
func (c Community) Standard() (uint32, bool) { return c.standard, !c.large && c.text != "" }

// Large returns the three parts of a large community.
func (c Community) Large() ([3]uint32, bool) { return c.parts, c.large }

// MarshalText writes the community as written, for JSON and YAML.
func (c Community) MarshalText() ([]byte, error) { return []byte(c.text), nil }

// UnmarshalText parses with ParseCommunity.
func (c *Community) UnmarshalText(b []byte) error {
	v, err := ParseCommunity(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}
