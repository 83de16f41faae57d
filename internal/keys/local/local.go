// Package local implements escrow.Keys with a master key kept in a local file:
// the keyring of `escrow server -dev` and of tests. Data keys are wrapped with
// AES-256-GCM under the master key, bound to their encryption context.
//
// It must never write the master key anywhere but its own 0600 file, never
// accept a key file that other users can read, and never put key material in
// an error.
package local

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Sizes of the master key, the data keys and the wrapped format.
const (
	KeySize = 32 // AES-256

	formatV1   byte = 1
	idLen           = 8 // bytes of the master key's fingerprint carried in each blob
	nonceLen        = 12
	headerLen       = 1 + idLen
	wrappedLen      = headerLen + nonceLen + KeySize + 16 // + GCM tag
)

// Keys wraps data keys under one master key. It is safe for concurrent use.
type Keys struct {
	aead  cipher.AEAD
	id    [idLen]byte
	keyID string
}

var _ escrow.Keys = (*Keys)(nil)

// New returns Keys using master, which must be 32 bytes. master is copied.
func New(master []byte) (*Keys, error) {
	if len(master) != KeySize {
		return nil, fmt.Errorf("local keys: master key must be %d bytes, got %d", KeySize, len(master))
	}
	block, err := aes.NewCipher(master)
	if err != nil {
		return nil, fmt.Errorf("local keys: new cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("local keys: new gcm: %w", err)
	}
	// The key id is a fingerprint, domain-separated so that it can never be
	// confused with any other hash of the key; it tells a blob wrapped under
	// another master key apart from a corrupted one.
	h := sha256.New()
	h.Write([]byte("escrow/keys/local/key-id\x00"))
	h.Write(master)
	sum := h.Sum(nil)
	k := &Keys{aead: aead}
	copy(k.id[:], sum)
	k.keyID = "local:" + hex.EncodeToString(k.id[:])
	return k, nil
}

// Open loads the master key from path, creating it (32 random bytes, file
// mode 0600, parent directories 0700) if it does not exist. It refuses a
// file that group or others may access, and one of the wrong length.
func Open(path string) (*Keys, error) {
	master, err := readKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		master, err = createKeyFile(path)
	}
	if err != nil {
		return nil, err
	}
	defer clear(master)
	return New(master)
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // keeps fs.ErrNotExist visible to Open
	}
	defer f.Close()
	// Stat the open file, not the path, so the checked file is the read one.
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat master key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("master key file %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("master key file %s has mode %04o, which lets group or others access it; run: chmod 600 %s", path, perm, path)
	}
	buf, err := io.ReadAll(io.LimitReader(f, KeySize+1))
	if err != nil {
		return nil, fmt.Errorf("read master key file: %w", err)
	}
	if len(buf) != KeySize {
		clear(buf)
		return nil, fmt.Errorf("master key file %s holds %d bytes, want exactly %d", path, len(buf), KeySize)
	}
	return buf, nil
}

// createKeyFile writes a fresh key to a temporary file and links it into
// place, so that a concurrent Open sees either no file or a complete one, and
// two racing creators agree on one key.
func createKeyFile(path string) ([]byte, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create master key directory: %w", err)
	}
	master := make([]byte, KeySize)
	if _, err := rand.Read(master); err != nil {
		return nil, fmt.Errorf("generate master key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".masterkey-*")
	if err != nil {
		return nil, fmt.Errorf("create master key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(master)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write master key file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			clear(master)
			return readKeyFile(path) // another process won the race
		}
		return nil, fmt.Errorf("install master key file: %w", err)
	}
	return master, nil
}

// KeyID names the master key: "local:" and a short fingerprint of it.
func (k *Keys) KeyID() string { return k.keyID }

// GenerateDataKey returns a fresh 256-bit data key wrapped under the master
// key and bound to encCtx.
func (k *Keys) GenerateDataKey(ctx context.Context, encCtx map[string]string) (escrow.DataKey, error) {
	plain := make([]byte, KeySize)
	if _, err := rand.Read(plain); err != nil {
		return escrow.DataKey{}, escrow.Wrap(escrow.CodeInternal, fmt.Errorf("generate data key: %w", err), "generate data key")
	}
	wrapped := make([]byte, headerLen+nonceLen, wrappedLen)
	wrapped[0] = formatV1
	copy(wrapped[1:headerLen], k.id[:])
	nonce := wrapped[headerLen : headerLen+nonceLen]
	if _, err := rand.Read(nonce); err != nil {
		clear(plain)
		return escrow.DataKey{}, escrow.Wrap(escrow.CodeInternal, fmt.Errorf("generate nonce: %w", err), "generate data key")
	}
	wrapped = k.aead.Seal(wrapped, nonce, plain, aad(wrapped[:headerLen], encCtx))
	return escrow.DataKey{Plaintext: plain, Wrapped: wrapped, KeyID: k.keyID}, nil
}

// Decrypt unwraps a data key. Any mismatch (another context, another master
// key, a modified or truncated blob) fails with CodeInternal.
func (k *Keys) Decrypt(ctx context.Context, wrapped []byte, encCtx map[string]string) ([]byte, error) {
	fail := func(cause error) ([]byte, error) {
		return nil, escrow.Wrap(escrow.CodeInternal, cause, "decrypt data key")
	}
	switch {
	case len(wrapped) != wrappedLen:
		return fail(fmt.Errorf("wrapped key is %d bytes, want %d", len(wrapped), wrappedLen))
	case wrapped[0] != formatV1:
		return fail(fmt.Errorf("unknown wrapped key format %d", wrapped[0]))
	case !bytes.Equal(wrapped[1:headerLen], k.id[:]):
		return fail(fmt.Errorf("wrapped under local:%x, not %s", wrapped[1:headerLen], k.keyID))
	}
	nonce := wrapped[headerLen : headerLen+nonceLen]
	plain, err := k.aead.Open(nil, nonce, wrapped[headerLen+nonceLen:], aad(wrapped[:headerLen], encCtx))
	if err != nil {
		return fail(errors.New("wrapped key or encryption context does not match"))
	}
	return plain, nil
}

// aad binds the blob header and the encryption context. The context is
// encoded canonically and unambiguously: a label, the pair count, then each
// pair sorted by key with every string length-prefixed, so that no two
// different contexts (say {"ab":"c"} and {"a":"bc"}) share an encoding.
func aad(header []byte, encCtx map[string]string) []byte {
	const label = "escrow/keys/local/v1\x00"
	n := len(label) + len(header) + 4
	keys := make([]string, 0, len(encCtx))
	for key, val := range encCtx {
		keys = append(keys, key)
		n += 8 + len(key) + len(val)
	}
	sort.Strings(keys)
	b := make([]byte, 0, n)
	b = append(b, label...)
	b = append(b, header...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(keys)))
	for _, key := range keys {
		b = appendString(b, key)
		b = appendString(b, encCtx[key])
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
