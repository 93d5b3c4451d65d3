package iprange

import (
	"encoding/binary"
	"math/big"
	"math/bits"
	"net/netip"
)

// U128 is an unsigned 128-bit integer. Address arithmetic uses it so that an
// IPv6 /64 or larger range never overflows, without paying for math/big on
// the allocation path.
type U128 struct{ Hi, Lo uint64 }

// FromAddr returns the address as an integer (IPv4 as its 32-bit value).
func FromAddr(a netip.Addr) U128 {
	if a.Is4() {
		b := a.As4()
		return U128{Lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return U128{Hi: binary.BigEndian.Uint64(b[:8]), Lo: binary.BigEndian.Uint64(b[8:])}
}

// ToAddr converts back; v4 selects the IPv4 family.
func (u U128) ToAddr(v4 bool) netip.Addr {
	if v4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(u.Lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], u.Hi)
	binary.BigEndian.PutUint64(b[8:], u.Lo)
	return netip.AddrFrom16(b)
}

// Add returns u+v, wrapping on overflow.
func (u U128) Add(v U128) U128 {
	lo, c := bits.Add64(u.Lo, v.Lo, 0)
	hi, _ := bits.Add64(u.Hi, v.Hi, c)
	return U128{hi, lo}
}

// Sub returns u-v, wrapping on underflow.
func (u U128) Sub(v U128) U128 {
	lo, b := bits.Sub64(u.Lo, v.Lo, 0)
	hi, _ := bits.Sub64(u.Hi, v.Hi, b)
	return U128{hi, lo}
}

// AddSmall returns u+n.
func (u U128) AddSmall(n uint64) U128 { return u.Add(U128{Lo: n}) }

// Cmp returns -1, 0 or 1.
func (u U128) Cmp(v U128) int {
	switch {
	case u.Hi < v.Hi:
		return -1
	case u.Hi > v.Hi:
		return 1
	case u.Lo < v.Lo:
		return -1
	case u.Lo > v.Lo:
		return 1
	}
	return 0
}

// IsZero reports whether u == 0.
func (u U128) IsZero() bool { return u.Hi == 0 && u.Lo == 0 }

// Shr returns u >> n for n in [0, 127].
func (u U128) Shr(n uint) U128 {
	switch {
	case n == 0:
		return u
	case n >= 64:
		return U128{Lo: u.Hi >> (n - 64)}
	}
	return U128{Hi: u.Hi >> n, Lo: u.Lo>>n | u.Hi<<(64-n)}
}

// Shl returns u << n for n in [0, 127].
func (u U128) Shl(n uint) U128 {
	switch {
	case n == 0:
		return u
	case n >= 64:
		return U128{Hi: u.Lo << (n - 64)}
	}
	return U128{Hi: u.Hi<<n | u.Lo>>(64-n), Lo: u.Lo << n}
}

// BitLen is the number of bits needed to represent u (0 for 0).
func (u U128) BitLen() int {
	if u.Hi != 0 {
		return 64 + bits.Len64(u.Hi)
	}
	return bits.Len64(u.Lo)
}

// TrailingZeros returns the number of trailing zero bits (128 for 0).
func (u U128) TrailingZeros() int {
	if u.Lo != 0 {
		return bits.TrailingZeros64(u.Lo)
	}
	return 64 + bits.TrailingZeros64(u.Hi)
}

// Big converts u to a big.Int.
func (u U128) Big() *big.Int {
	b := new(big.Int).SetUint64(u.Hi)
	b.Lsh(b, 64)
	return b.Or(b, new(big.Int).SetUint64(u.Lo))
}
