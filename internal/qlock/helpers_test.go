package qlock

import (
	"crypto/sha256"
	"io"
	"math/rand/v2"
)

// fastKDF is the cheapest sealing qlockfmt accepts; tests use it except
// where DefaultKDF is the point.
var fastKDF = KDFParams{Time: 1, MemoryKiB: 8 * 1024, Threads: 1}

// stream returns a deterministic randomness source: ChaCha8 (math/rand/v2)
// keyed by seed. Test vectors record seed; the stream supplies everything
// the code under test reads from rand.
func stream(seed [32]byte) io.Reader { return rand.NewChaCha8(seed) }

// testBytes derives fixed 32-byte test inputs from a name, so vectors and
// tests are reproducible without pasting hex.
func testBytes(name string) [32]byte { return sha256.Sum256([]byte("escrow/qlock test " + name)) }

// testKey is the key pair of testBytes("seed " + name).
func testKey(name string) *PrivateKey {
	seed := testBytes("seed " + name)
	return newPrivateKey(seed[:])
}
