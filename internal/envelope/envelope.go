// Package envelope encrypts secret values under per-version data keys from
// the escrow.Keys port (envelope encryption). Each (secret id, version) gets
// a fresh data key bound to an encryption context naming both, and the same
// context is the AAD of the value's AES-256-GCM ciphertext, so neither the
// wrapped key nor the ciphertext opens if it is moved to another secret or
// version.
//
// It must never import a key service's SDK (that is keys/*), never keep a
// plaintext data key after use, and never put a value, or anything derived
// from one, into an error.
package envelope

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Encryption-context keys. They appear in KMS audit trails (CloudTrail) and
// can be used in key policy conditions, so they are part of the format.
const (
	ContextSecret  = "escrow:secret"
	ContextVersion = "escrow:version"
)

const (
	formatV1  byte = 1
	nonceLen       = 12
	tagLen         = 16
	headerLen      = 1 + nonceLen
	aadLabel       = "escrow/envelope/v1\x00"
)

// Seal encrypts value for (secretID, version) under a fresh data key from
// keys. It returns the key id and wrapped data key to store with the
// version, and the ciphertext: a format byte, the nonce, then the sealed
// value and tag.
func Seal(ctx context.Context, keys escrow.Keys, secretID string, version int, value escrow.SecretValue) (keyID string, wrapped, ciphertext []byte, err error) {
	if err := checkTarget(secretID, version); err != nil {
		return "", nil, nil, err
	}
	dk, err := keys.GenerateDataKey(ctx, encryptionContext(secretID, version))
	if err != nil {
		return "", nil, nil, fmt.Errorf("generate data key: %w", err)
	}
	defer clear(dk.Plaintext)
	aead, err := newAEAD(dk.Plaintext)
	if err != nil {
		return "", nil, nil, err
	}
	plain := encodeValue(value)
	defer clear(plain)

	out := make([]byte, headerLen, headerLen+len(plain)+tagLen)
	out[0] = formatV1
	if _, err := rand.Read(out[1:headerLen]); err != nil {
		return "", nil, nil, escrow.Wrap(escrow.CodeInternal, fmt.Errorf("generate nonce: %w", err), "encrypt secret value")
	}
	out = aead.Seal(out, out[1:headerLen], plain, aad(formatV1, secretID, version))
	return dk.KeyID, dk.Wrapped, out, nil
}

// Open decrypts the value of v, using its SecretID, Version, WrappedKey and
// Ciphertext. A key or ciphertext that belongs to another secret or version,
// or was modified, fails with CodeInternal; an unreachable key service with
// ErrUnavailable.
func Open(ctx context.Context, keys escrow.Keys, v *escrow.SecretVersion) (escrow.SecretValue, error) {
	if v == nil {
		return nil, escrow.Errorf(escrow.CodeInternal, "open secret value: no version")
	}
	if err := checkTarget(v.SecretID, v.Version); err != nil {
		return nil, err
	}
	ct := v.Ciphertext
	if len(ct) < headerLen+tagLen || ct[0] != formatV1 {
		return nil, escrow.Wrap(escrow.CodeInternal, errors.New("malformed ciphertext or unknown format"), "decrypt secret value")
	}
	dataKey, err := keys.Decrypt(ctx, v.WrappedKey, encryptionContext(v.SecretID, v.Version))
	if err != nil {
		return nil, fmt.Errorf("unwrap data key: %w", err)
	}
	defer clear(dataKey)
	aead, err := newAEAD(dataKey)
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, ct[1:headerLen], ct[headerLen:], aad(ct[0], v.SecretID, v.Version))
	if err != nil {
		return nil, escrow.Wrap(escrow.CodeInternal, errors.New("ciphertext does not match its secret, version or key"), "decrypt secret value")
	}
	defer clear(plain)
	value, ok := decodeValue(plain)
	if !ok {
		return nil, escrow.Errorf(escrow.CodeInternal, "decode secret value")
	}
	return value, nil
}

func checkTarget(secretID string, version int) error {
	if secretID == "" || version < 1 {
		return escrow.Errorf(escrow.CodeInternal, "envelope: need a secret id and a version >= 1")
	}
	return nil
}

func encryptionContext(secretID string, version int) map[string]string {
	return map[string]string{ContextSecret: secretID, ContextVersion: strconv.Itoa(version)}
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, escrow.Wrap(escrow.CodeInternal, fmt.Errorf("new cipher: %w", err), "data key")
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, escrow.Wrap(escrow.CodeInternal, fmt.Errorf("new gcm: %w", err), "data key")
	}
	return aead, nil
}

// aad binds the format byte and the encryption context, length-prefixed so
// that no two (id, version) pairs share an encoding.
func aad(format byte, secretID string, version int) []byte {
	b := make([]byte, 0, len(aadLabel)+1+4+len(secretID)+8)
	b = append(b, aadLabel...)
	b = append(b, format)
	b = binary.BigEndian.AppendUint32(b, uint32(len(secretID)))
	b = append(b, secretID...)
	return binary.BigEndian.AppendUint64(b, uint64(version))
}

// encodeValue serialises v as a field count then length-prefixed name and
// value pairs, sorted by name. A hand-rolled encoding (rather than JSON)
// leaves no copy of the value in a pooled buffer: the caller clears the one
// buffer there is.
func encodeValue(v escrow.SecretValue) []byte {
	names := make([]string, 0, len(v))
	n := 4
	for k, val := range v {
		names = append(names, k)
		n += 8 + len(k) + len(val)
	}
	sort.Strings(names)
	b := make([]byte, 0, n)
	b = binary.BigEndian.AppendUint32(b, uint32(len(names)))
	for _, k := range names {
		b = binary.BigEndian.AppendUint32(b, uint32(len(k)))
		b = append(b, k...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(v[k])))
		b = append(b, v[k]...)
	}
	return b
}

func decodeValue(b []byte) (escrow.SecretValue, bool) {
	next := func() (string, bool) {
		if len(b) < 4 {
			return "", false
		}
		n := binary.BigEndian.Uint32(b)
		b = b[4:]
		if uint64(n) > uint64(len(b)) {
			return "", false
		}
		s := string(b[:n])
		b = b[n:]
		return s, true
	}
	if len(b) < 4 {
		return nil, false
	}
	count := binary.BigEndian.Uint32(b)
	b = b[4:]
	if uint64(count) > uint64(len(b))/8 { // each pair takes at least 8 bytes
		return nil, false
	}
	v := make(escrow.SecretValue, count)
	for range count {
		k, ok := next()
		if !ok {
			return nil, false
		}
		val, ok := next()
		if !ok {
			return nil, false
		}
		v[k] = val
	}
	if len(b) != 0 || len(v) != int(count) {
		return nil, false
	}
	return v, true
}
