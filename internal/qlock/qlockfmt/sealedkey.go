package qlockfmt

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// SealedKey is a parsed sealed private key. Its slices alias the blob.
type SealedKey struct {
	KDF        KDFParams
	Salt       []byte // SaltSize bytes
	Nonce      []byte // SealNonceSize bytes
	PublicKey  []byte // PublicKeySize bytes, checked by CheckPublicKey
	Header     []byte // everything before Ciphertext: the AEAD's associated data
	Ciphertext []byte // SealedSeedSize bytes: sealed seed and tag
}

// ParseSealedKey splits a sealed private key into its fields. It returns an
// error wrapping ErrMalformed (and ErrKDFParams or ErrInvalidPublicKey where
// that is the cause) if the blob is not exactly one version-1 sealed key
// with in-range Argon2id parameters.
func ParseSealedKey(blob []byte) (*SealedKey, error) {
	if len(blob) != SealedKeySize {
		return nil, malformed("sealed key is %d bytes, want %d", len(blob), SealedKeySize)
	}
	r := &reader{b: blob}
	if err := r.header(SealedKeyLabel); err != nil {
		return nil, err
	}
	var k SealedKey
	k.KDF = KDFParams{Time: r.u32(), MemoryKiB: r.u32(), Threads: r.u8()}
	k.Salt = r.take(SaltSize)
	k.Nonce = r.take(SealNonceSize)
	k.PublicKey = r.take(PublicKeySize)
	k.Header = blob[:r.off:r.off]
	k.Ciphertext = r.take(SealedSeedSize)
	if r.bad || r.off != len(blob) {
		return nil, malformed("sealed key framing")
	}
	if err := k.KDF.Check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := CheckPublicKey(k.PublicKey); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return &k, nil
}

// AppendSealedKeyHeader appends the header of a sealed private key (label,
// version, KDF parameters, salt, nonce, public key) to dst. The caller then
// appends the sealed seed, computed with the header as associated data.
func AppendSealedKeyHeader(dst []byte, kdf KDFParams, salt, nonce, pub []byte) ([]byte, error) {
	if err := kdf.Check(); err != nil {
		return nil, err
	}
	if len(salt) != SaltSize || len(nonce) != SealNonceSize {
		return nil, fmt.Errorf("sealed key header: salt %d and nonce %d bytes, want %d and %d", len(salt), len(nonce), SaltSize, SealNonceSize)
	}
	if err := CheckPublicKey(pub); err != nil {
		return nil, err
	}
	dst = append(dst, SealedKeyLabel...)
	dst = append(dst, Version1)
	dst = binary.BigEndian.AppendUint32(dst, kdf.Time)
	dst = binary.BigEndian.AppendUint32(dst, kdf.MemoryKiB)
	dst = append(dst, kdf.Threads)
	dst = append(dst, salt...)
	dst = append(dst, nonce...)
	return append(dst, pub...), nil
}

// PublicKeyOf returns a copy of the public key a sealed private key carries,
// after checking the sealed key's framing (errors as ParseSealedKey). It
// cannot tell whether the sealed seed matches that key: only the password
// holder can.
func PublicKeyOf(sealedKey []byte) ([]byte, error) {
	k, err := ParseSealedKey(sealedKey)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(k.PublicKey), nil
}
