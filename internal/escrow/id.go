package escrow

import (
	"crypto/rand"
	"encoding/binary"
	"time"
)

// crockford is Crockford's base32 alphabet; its order is the byte order, so
// IDs sort by time as strings.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewID returns a 26-character, lexically time-ordered, unguessable ID (a
// ULID: 48 bits of milliseconds then 80 random bits).
func NewID(t time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[0:8], uint64(t.UnixMilli())<<16)
	if _, err := rand.Read(b[6:]); err != nil {
		panic("escrow: crypto/rand failed: " + err.Error()) // cannot happen on supported platforms
	}
	var out [26]byte
	// 128 bits -> 26 base32 chars (130 bits, top 2 bits zero).
	hi := binary.BigEndian.Uint64(b[0:8])
	lo := binary.BigEndian.Uint64(b[8:16])
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
