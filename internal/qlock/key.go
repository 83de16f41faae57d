package qlock

import (
	"bytes"
	"crypto/cipher"
	cryptorand "crypto/rand"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/kem/xwing"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/escrow-pam/escrow/internal/qlock/qlockfmt"
)

// KDFParams are the Argon2id costs a private key is sealed with; they are
// stored in the sealed key. Seal and OpenPrivateKey refuse values outside
// qlockfmt's MinTime..MaxTime and MinMemoryKiB..MaxMemoryKiB, and 0 threads.
type KDFParams = qlockfmt.KDFParams

// DefaultKDF is Argon2id with t=3, m=64 MiB, p=4. Raise it by sealing with
// larger parameters: sealed keys carry theirs, so old ones still open.
var DefaultKDF = KDFParams{Time: 3, MemoryKiB: 64 * 1024, Threads: 4}

var (
	// ErrWrongPassword is the only error OpenPrivateKey gives for a sealed
	// key that is well-formed but does not open: the password is wrong, or
	// the blob was modified. It is never wrapped, so its message is exactly
	// "wrong QuantumLock password".
	ErrWrongPassword = errors.New("wrong QuantumLock password")
	// ErrTampered means a locked value did not open although the caller is
	// listed in it: an AEAD failed, or the value is not bound to the secret
	// id and version it was opened as.
	ErrTampered = errors.New("QuantumLock value was modified or belongs to another secret or version")
	// ErrNotRecipient means a locked value has no wrap for the subject, or
	// its wrap is for another key of that subject.
	ErrNotRecipient = errors.New("not a recipient of this QuantumLock value")
	// ErrMalformed means bad framing (see qlockfmt.ErrMalformed).
	ErrMalformed = qlockfmt.ErrMalformed
	// ErrInvalidPublicKey means a key is not an X-Wing QuantumLock public key.
	ErrInvalidPublicKey = qlockfmt.ErrInvalidPublicKey
)

// PublicKey is an encoded QuantumLock public key: qlockfmt.PublicKeySize
// bytes (label, version byte, X-Wing public key). It is what the server
// stores for a user and what Lock encrypts to.
type PublicKey []byte

// Fingerprint returns a short, human-comparable digest of pub: the first 16
// bytes of SHA-256 over the encoded key, as colon-separated hex groups.
func Fingerprint(pub PublicKey) string { return qlockfmt.Fingerprint(pub) }

// PrivateKey is a user's X-Wing key pair, derived from a 32-byte seed. It
// leaves the process only sealed under a password; it formats as its
// fingerprint, so it cannot be printed or logged by accident.
type PrivateKey struct {
	seed [qlockfmt.SeedSize]byte
	sk   *xwing.PrivateKey
	pub  PublicKey
	fp   [qlockfmt.FingerprintSize]byte
}

// GenerateKey returns a new key pair from a seed read from rand (nil means
// crypto/rand.Reader).
func GenerateKey(rand io.Reader) (*PrivateKey, error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	var seed [qlockfmt.SeedSize]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("read key seed: %w", err)
	}
	defer clear(seed[:])
	return newPrivateKey(seed[:]), nil
}

// newPrivateKey derives the key pair of a SeedSize-byte seed.
func newPrivateKey(seed []byte) *PrivateKey {
	k := &PrivateKey{}
	copy(k.seed[:], seed)
	sk, pk := xwing.DeriveKeyPair(k.seed[:])
	k.sk = sk
	k.pub = make(PublicKey, 0, qlockfmt.PublicKeySize)
	k.pub = append(k.pub, qlockfmt.PublicKeyLabel...)
	k.pub = append(k.pub, qlockfmt.Version1)
	k.pub = k.pub[:qlockfmt.PublicKeySize]
	pk.Pack(k.pub[qlockfmt.LabelSize+1:])
	k.fp = qlockfmt.FingerprintOf(k.pub)
	return k
}

// Destroy clears the key's seed and drops its expanded form. Go cannot
// promise the memory is gone (the expanded key may have been copied), but
// a destroyed key no longer holds the seed. The key is unusable after.
func (k *PrivateKey) Destroy() {
	if k == nil {
		return
	}
	clear(k.seed[:])
	k.sk = nil
}

// Public returns a copy of the encoded public key.
func (k *PrivateKey) Public() PublicKey { return bytes.Clone(k.pub) }

// String returns the key's fingerprint, never the seed.
func (k *PrivateKey) String() string {
	return "qlock.PrivateKey(" + qlockfmt.FormatFingerprint(k.fp) + ")"
}

// GoString is String, so %#v shows no seed either.
func (k *PrivateKey) GoString() string { return k.String() }

// Format makes every verb print String, so no verb (%d, %x...) can reach the
// seed through reflection.
func (k *PrivateKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// Seal encrypts the key's seed under password for storage on the server:
// Argon2id(password, random salt, kdf) keys XChaCha20-Poly1305 with a random
// nonce, and the whole header (public key included) is associated data.
// rand (nil means crypto/rand.Reader) gives the salt, then the nonce.
// It refuses an empty password and kdf outside the bounds
// (qlockfmt.ErrKDFParams).
func (k *PrivateKey) Seal(rand io.Reader, password []byte, kdf KDFParams) ([]byte, error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	if k == nil || k.sk == nil {
		return nil, errors.New("seal private key: no key")
	}
	if len(password) == 0 {
		return nil, errors.New("seal private key: empty password")
	}
	if err := kdf.Check(); err != nil {
		return nil, fmt.Errorf("seal private key: %w", err)
	}
	var salt [qlockfmt.SaltSize]byte
	var nonce [qlockfmt.SealNonceSize]byte
	if _, err := io.ReadFull(rand, salt[:]); err != nil {
		return nil, fmt.Errorf("seal private key: read salt: %w", err)
	}
	if _, err := io.ReadFull(rand, nonce[:]); err != nil {
		return nil, fmt.Errorf("seal private key: read nonce: %w", err)
	}
	header, err := qlockfmt.AppendSealedKeyHeader(nil, kdf, salt[:], nonce[:], k.pub)
	if err != nil {
		return nil, fmt.Errorf("seal private key: %w", err)
	}
	aead, err := passwordAEAD(password, salt[:], kdf)
	if err != nil {
		return nil, fmt.Errorf("seal private key: %w", err)
	}
	out := make([]byte, len(header), qlockfmt.SealedKeySize)
	copy(out, header)
	return aead.Seal(out, nonce[:], k.seed[:], header), nil
}

// OpenPrivateKey opens a sealed private key with password. It returns
// ErrMalformed (wrapped, with the field) if the blob is not a well-formed
// sealed key with in-range KDF parameters, and otherwise exactly
// ErrWrongPassword for any failure: a wrong password and a modified blob
// are indistinguishable.
func OpenPrivateKey(blob, password []byte) (*PrivateKey, error) {
	sealed, err := qlockfmt.ParseSealedKey(blob)
	if err != nil {
		return nil, fmt.Errorf("open private key: %w", err)
	}
	aead, err := passwordAEAD(password, sealed.Salt, sealed.KDF)
	if err != nil {
		return nil, fmt.Errorf("open private key: %w", err)
	}
	seed, err := aead.Open(nil, sealed.Nonce, sealed.Ciphertext, sealed.Header)
	if err != nil {
		return nil, ErrWrongPassword
	}
	defer clear(seed)
	k := newPrivateKey(seed)
	// The header is authenticated, so this only fails if the sealer paired a
	// seed with another key's public half; treat it as any other failure.
	if !bytes.Equal(k.pub, sealed.PublicKey) {
		return nil, ErrWrongPassword
	}
	return k, nil
}

// Reseal opens blob with oldPassword and seals the same key under
// newPassword with kdf (a fresh salt and nonce from rand). It returns the
// errors of OpenPrivateKey, then of Seal.
func Reseal(rand io.Reader, blob, oldPassword, newPassword []byte, kdf KDFParams) ([]byte, error) {
	k, err := OpenPrivateKey(blob, oldPassword)
	if err != nil {
		return nil, err
	}
	defer clear(k.seed[:])
	return k.Seal(rand, newPassword, kdf)
}

// passwordAEAD derives the sealing key from a password.
func passwordAEAD(password, salt []byte, kdf KDFParams) (cipher.AEAD, error) {
	key := argon2.IDKey(password, salt, kdf.Time, kdf.MemoryKiB, kdf.Threads, chacha20poly1305.KeySize)
	defer clear(key)
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("new XChaCha20-Poly1305: %w", err)
	}
	return aead, nil
}
