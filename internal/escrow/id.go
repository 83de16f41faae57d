package escrow

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"
)

// crockford is Crockford's base32 alphabet; its order is the byte order, so
// IDs sort by time as strings.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// idState makes IDs from one process strictly increasing within a
// millisecond (ULID's monotonic mode), so records made in the same
// millisecond still list in the order they happened.
var idState struct {
	sync.Mutex
	ms     uint64
	hi, lo uint64 // last 80 random bits: hi holds the top 16
}

// NewID returns a 26-character, lexically time-ordered, unguessable ID (a
// ULID: 48 bits of milliseconds then 80 random bits). IDs made by one
// process in the same millisecond increase.
func NewID(t time.Time) string {
	ms := uint64(t.UnixMilli())
	idState.Lock()
	if ms == idState.ms && idState.lo != ^uint64(0) {
		idState.lo++
	} else {
		var r [10]byte
		if _, err := rand.Read(r[:]); err != nil {
			idState.Unlock()
			panic("escrow: crypto/rand failed: " + err.Error()) // cannot happen on supported platforms
		}
		idState.ms = ms
		idState.hi = uint64(binary.BigEndian.Uint16(r[0:2]))
		idState.lo = binary.BigEndian.Uint64(r[2:10])
	}
	hi := ms<<16 | idState.hi
	lo := idState.lo
	idState.Unlock()
	var out [26]byte
	// 128 bits -> 26 base32 chars (130 bits, top 2 bits zero).
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
