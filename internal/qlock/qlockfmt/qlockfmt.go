// Package qlockfmt reads and writes the framing of QuantumLock's two formats
// (sealed private keys and locked values) and of its public keys, without any
// KEM, KDF or AEAD code. The server imports it to check what a client sends
// (labels, versions, lengths, bindings, recipient lists and fingerprints)
// without linking the crypto; package qlock imports it so that every byte is
// parsed in one place. The layouts are documented in package qlock.
//
// It must never import a KEM, Argon2 or an AEAD (a test enforces this), and
// never read past or allocate beyond what the blob in hand holds: every
// decoder here faces hostile input.
package qlockfmt

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// Labels open every encoding (domain separation); each is LabelSize ASCII
// bytes and is followed by a version byte.
const (
	PublicKeyLabel   = "escrow/qlock/pub"
	SealedKeyLabel   = "escrow/qlock/key"
	LockedValueLabel = "escrow/qlock/val"
	LabelSize        = 16
)

// Version1 is the only format version so far, for all three encodings. In a
// public key it also names the algorithm (X-Wing), so a future KEM gets a new
// version rather than being mistaken for this one.
const Version1 byte = 1

// Sizes of the fixed-width fields, in bytes.
const (
	XWingPublicKeySize  = 1216 // ML-KEM-768 encapsulation key || X25519 point
	XWingCiphertextSize = 1120 // X-Wing encapsulated key (HPKE enc)
	PublicKeySize       = LabelSize + 1 + XWingPublicKeySize

	SaltSize       = 16 // Argon2id salt
	SealNonceSize  = 24 // XChaCha20-Poly1305 nonce
	SeedSize       = 32 // X-Wing key seed
	TagSize        = 16 // Poly1305 and GCM tags
	SealedSeedSize = SeedSize + TagSize

	SealedKeyHeaderSize = LabelSize + 1 + 4 + 4 + 1 + SaltSize + SealNonceSize + PublicKeySize
	SealedKeySize       = SealedKeyHeaderSize + SealedSeedSize

	FingerprintSize = 16 // truncated SHA-256 of an encoded public key
	DataKeySize     = 32 // AES-256 data key of a locked value
	WrappedKeySize  = DataKeySize + TagSize
	ValueNonceSize  = 12 // AES-256-GCM nonce
)

// Limits a locked value's framing enforces.
const (
	MaxNameSize   = 1024 // bytes of a secret id or a subject
	MaxRecipients = 1024
	MaxVersion    = math.MaxInt32
)

// Bounds on Argon2id parameters, enforced when sealing and when parsing, so
// that a hostile blob cannot demand a huge allocation or hours of work.
const (
	MinTime      = 1
	MaxTime      = 100
	MinMemoryKiB = 8 * 1024        // 8 MiB
	MaxMemoryKiB = 4 * 1024 * 1024 // 4 GiB
	MinThreads   = 1
)

var (
	// ErrMalformed means the bytes are not a well-formed encoding of this
	// version: wrong label or version, bad length, out-of-range field.
	ErrMalformed = errors.New("malformed QuantumLock data")
	// ErrInvalidPublicKey means a public key is not a QuantumLock X-Wing key
	// of the right length (for example a classical key): it is never used.
	ErrInvalidPublicKey = errors.New("not a QuantumLock X-Wing public key")
	// ErrKDFParams means Argon2id parameters are outside the bounds above.
	ErrKDFParams = errors.New("Argon2id parameters out of range")
)

// KDFParams are the Argon2id costs a private key is sealed with. They are
// stored in the sealed key, so they can be raised for new seals while old
// ones still open.
type KDFParams struct {
	Time      uint32 `json:"time"`       // passes
	MemoryKiB uint32 `json:"memory_kib"` // memory in KiB
	Threads   uint8  `json:"threads"`    // lanes
}

// Check returns an error wrapping ErrKDFParams if p is outside the bounds.
func (p KDFParams) Check() error {
	switch {
	case p.Time < MinTime || p.Time > MaxTime:
		return fmt.Errorf("%w: time %d not in [%d, %d]", ErrKDFParams, p.Time, MinTime, MaxTime)
	case p.MemoryKiB < MinMemoryKiB || p.MemoryKiB > MaxMemoryKiB:
		return fmt.Errorf("%w: memory %d KiB not in [%d, %d]", ErrKDFParams, p.MemoryKiB, MinMemoryKiB, MaxMemoryKiB)
	case p.Threads < MinThreads:
		return fmt.Errorf("%w: threads %d below %d", ErrKDFParams, p.Threads, MinThreads)
	}
	return nil
}

// CheckPublicKey returns an error wrapping ErrInvalidPublicKey unless pub is
// PublicKeySize bytes starting with PublicKeyLabel and Version1. It does not
// check the ML-KEM key itself: qlock.Lock does that before encrypting.
func CheckPublicKey(pub []byte) error {
	switch {
	case len(pub) != PublicKeySize:
		return fmt.Errorf("%w: %d bytes, want %d", ErrInvalidPublicKey, len(pub), PublicKeySize)
	case string(pub[:LabelSize]) != PublicKeyLabel:
		return fmt.Errorf("%w: wrong label", ErrInvalidPublicKey)
	case pub[LabelSize] != Version1:
		return fmt.Errorf("%w: unsupported version %d", ErrInvalidPublicKey, pub[LabelSize])
	}
	return nil
}

// FingerprintOf returns the first FingerprintSize bytes of SHA-256 over the
// encoded public key (label and version included).
func FingerprintOf(pub []byte) [FingerprintSize]byte {
	sum := sha256.Sum256(pub)
	return [FingerprintSize]byte(sum[:FingerprintSize])
}

// FormatFingerprint writes a fingerprint for people to compare: lowercase
// hex in groups of four, joined by colons.
func FormatFingerprint(fp [FingerprintSize]byte) string {
	h := hex.EncodeToString(fp[:])
	var b strings.Builder
	b.Grow(len(h) + len(h)/4)
	for i := 0; i < len(h); i += 4 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+4])
	}
	return b.String()
}

// Fingerprint is FormatFingerprint(FingerprintOf(pub)).
func Fingerprint(pub []byte) string { return FormatFingerprint(FingerprintOf(pub)) }

// CheckName returns an error unless s is a usable secret id or subject:
// non-empty, at most MaxNameSize bytes, valid UTF-8.
func CheckName(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) > MaxNameSize:
		return fmt.Errorf("%d bytes, limit %d", len(s), MaxNameSize)
	case !utf8.ValidString(s):
		return errors.New("not valid UTF-8")
	}
	return nil
}

// CheckVersion returns an error unless 1 <= version <= MaxVersion.
func CheckVersion(version int) error {
	if version < 1 || int64(version) > MaxVersion {
		return fmt.Errorf("secret version %d not in [1, %d]", version, MaxVersion)
	}
	return nil
}

// malformed wraps ErrMalformed with what was wrong, for debugging: framing
// is public, so saying which field failed reveals nothing.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// reader consumes a blob front to back; the first failure sticks.
type reader struct {
	b   []byte
	off int
	bad bool
}

func (r *reader) take(n int) []byte {
	if r.bad || n < 0 || n > len(r.b)-r.off {
		r.bad = true
		return nil
	}
	s := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return s
}

func (r *reader) u8() uint8 {
	if s := r.take(1); s != nil {
		return s[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if s := r.take(2); s != nil {
		return binary.BigEndian.Uint16(s)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if s := r.take(4); s != nil {
		return binary.BigEndian.Uint32(s)
	}
	return 0
}

func (r *reader) rest() []byte { return r.take(len(r.b) - r.off) }

// header checks the label and version byte that open every encoding.
func (r *reader) header(label string) error {
	l := r.take(LabelSize)
	if l == nil || string(l) != label {
		return malformed("not a %s encoding", label)
	}
	if v := r.u8(); r.bad || v != Version1 {
		return malformed("%s: unsupported version %d", label, v)
	}
	return nil
}
