package qlockfmt_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/escrow-pam/escrow/internal/qlock/qlockfmt"
)

func seeds(blob []byte, cuts ...int) [][]byte {
	out := [][]byte{blob, append(bytes.Clone(blob), 0)}
	for _, n := range cuts {
		if n >= 0 && n < len(blob) {
			out = append(out, blob[:n])
		}
	}
	return out
}

// FuzzRecipients: parsing never panics, fails only with ErrMalformed, and
// whatever parses re-encodes to the same bytes (one encoding per value).
func FuzzRecipients(f *testing.F) {
	blob := fakeLockedValue(f, "db/prod", 9, "alice", "bøb")
	for _, b := range seeds(blob, 0, 16, 17, 19, 26, 30, 1200, len(blob)-22, len(blob)-16, len(blob)-1) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, blob []byte) {
		infos, id, version, err := qlockfmt.Recipients(blob)
		if err != nil {
			if !errors.Is(err, qlockfmt.ErrMalformed) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		v, err := qlockfmt.ParseLockedValue(blob)
		if err != nil || v.SecretID != id || v.Version != version || len(v.Wraps) != len(infos) {
			t.Fatalf("ParseLockedValue disagrees with Recipients: %v", err)
		}
		h, err := qlockfmt.AppendLockedValueHeader(nil, v.SecretID, v.Version, v.Wraps)
		if err != nil {
			t.Fatalf("parsed value does not re-encode: %v", err)
		}
		if !bytes.Equal(append(append(h, v.Nonce...), v.Ciphertext...), blob) || !bytes.Equal(h, v.Header) {
			t.Fatal("re-encoding differs")
		}
	})
}

// FuzzPublicKeyOf: parsing a sealed key never panics, fails only with
// ErrMalformed, and whatever parses re-encodes to the same header.
func FuzzPublicKeyOf(f *testing.F) {
	blob := fakeSealedKey(f)
	for _, b := range seeds(blob, 0, 16, 17, 21, 25, 26, 66, 83, 1299, len(blob)-1) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, blob []byte) {
		pub, err := qlockfmt.PublicKeyOf(blob)
		if err != nil {
			if !errors.Is(err, qlockfmt.ErrMalformed) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if err := qlockfmt.CheckPublicKey(pub); err != nil {
			t.Fatalf("PublicKeyOf returned a key CheckPublicKey refuses: %v", err)
		}
		k, err := qlockfmt.ParseSealedKey(blob)
		if err != nil {
			t.Fatalf("ParseSealedKey disagrees with PublicKeyOf: %v", err)
		}
		h, err := qlockfmt.AppendSealedKeyHeader(nil, k.KDF, k.Salt, k.Nonce, k.PublicKey)
		if err != nil || !bytes.Equal(h, k.Header) || !bytes.Equal(append(h, k.Ciphertext...), blob) {
			t.Fatalf("re-encoding differs: %v", err)
		}
	})
}

// FuzzCheckPublicKey: never panics; accepts only the exact framing.
func FuzzCheckPublicKey(f *testing.F) {
	pub, err := qlockfmt.PublicKeyOf(fakeSealedKey(f))
	if err != nil {
		f.Fatal(err)
	}
	for _, b := range seeds(pub, 0, 16, 17, 32, len(pub)-1) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, pub []byte) {
		err := qlockfmt.CheckPublicKey(pub)
		ok := len(pub) == qlockfmt.PublicKeySize && string(pub[:16]) == qlockfmt.PublicKeyLabel && pub[16] == qlockfmt.Version1
		if (err == nil) != ok || (err != nil && !errors.Is(err, qlockfmt.ErrInvalidPublicKey)) {
			t.Fatalf("CheckPublicKey = %v for a key that is ok=%v", err, ok)
		}
		_ = qlockfmt.Fingerprint(pub)
	})
}
