package qlock

import (
	"bytes"
	"errors"
	"testing"

	"github.com/escrow-pam/escrow/internal/qlock/qlockfmt"
)

// addTruncations returns blob, its prefixes at the given cut points, and
// blob with one extra byte: seeds for a fuzz corpus.
func addTruncations(blob []byte, cuts ...int) [][]byte {
	out := [][]byte{blob, append(bytes.Clone(blob), 0)}
	for _, n := range cuts {
		if n >= 0 && n < len(blob) {
			out = append(out, blob[:n])
		}
	}
	return out
}

// FuzzOpenPrivateKey: any blob and password give a key, ErrMalformed or
// exactly ErrWrongPassword, never a panic. Blobs asking for more than the
// cheapest Argon2id are only parsed, so one input cannot take minutes.
func FuzzOpenPrivateKey(f *testing.F) {
	blob, err := testKey("alice").Seal(stream(testBytes("fuzz sealed")), []byte("pw"), fastKDF)
	if err != nil {
		f.Fatal(err)
	}
	for _, b := range addTruncations(blob, 0, 1, 16, 17, 25, 26, 66, 82, 1299, len(blob)-1) {
		f.Add(b, []byte("pw"))
		f.Add(b, []byte("wrong"))
	}
	f.Fuzz(func(t *testing.T, blob, password []byte) {
		if s, err := qlockfmt.ParseSealedKey(blob); err == nil && s.KDF != fastKDF {
			return
		}
		k, err := OpenPrivateKey(blob, password)
		switch {
		case err == nil:
			if !bytes.Equal(k.Public(), blob[qlockfmt.SealedKeyHeaderSize-qlockfmt.PublicKeySize:qlockfmt.SealedKeyHeaderSize]) {
				t.Fatal("opened key does not match the stored public key")
			}
		case err == ErrWrongPassword:
		case errors.Is(err, ErrMalformed):
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// FuzzOpen: any blob gives a plaintext or one of the documented errors,
// never a panic.
func FuzzOpen(f *testing.F) {
	alice := testKey("alice")
	rs := []Recipient{{Subject: "alice", Key: alice.Public()}, {Subject: "bob", Key: testKey("bob").Public()}}
	blob, err := Lock(stream(testBytes("fuzz locked")), "s1", 1, []byte("p@ss"), rs)
	if err != nil {
		f.Fatal(err)
	}
	hdr := 16 + 1 + 2 + 2 + 4 + 2
	for _, b := range addTruncations(blob, 0, 16, 17, 19, hdr, hdr+2, hdr+7, hdr+7+16, hdr+7+16+1120, len(blob)-20, len(blob)-16, len(blob)-1) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, blob []byte) {
		pt, err := Open(blob, "s1", 1, "alice", alice)
		switch {
		case err == nil:
			if pt == nil {
				t.Fatal("nil plaintext without an error")
			}
		case errors.Is(err, ErrMalformed), errors.Is(err, ErrTampered), errors.Is(err, ErrNotRecipient):
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// FuzzLockPublicKey: Lock validates recipient keys without panicking (circl
// panics on a wrong-length key) and encrypts only to keys that pass
// CheckPublicKey.
func FuzzLockPublicKey(f *testing.F) {
	good := testKey("alice").Public()
	f.Add([]byte(good))
	f.Add([]byte(good[:len(good)-1]))
	f.Add([]byte(good[qlockfmt.LabelSize+1:]))
	f.Add(make([]byte, 32))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, key []byte) {
		blob, err := Lock(stream(testBytes("fuzz lock")), "s1", 1, []byte("v"), []Recipient{{Subject: "a", Key: key}})
		if err != nil {
			if !errors.Is(err, ErrInvalidPublicKey) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if qlockfmt.CheckPublicKey(key) != nil || blob == nil {
			t.Fatal("locked to a key CheckPublicKey refuses")
		}
	})
}
