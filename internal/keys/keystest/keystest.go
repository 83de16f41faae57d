// Package keystest is the conformance suite of the escrow.Keys port. Every
// implementation (keys/local, keys/kms) runs it, so that they agree on what
// "bound to the encryption context" means.
//
// It must never be imported by non-test code.
package keystest

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Limits names checks that an implementation's test environment cannot
// honour. Each non-empty field skips one check and says why.
type Limits struct {
	// AmbiguousContext skips the check that contexts such as {"ab":"c"} and
	// {"a":"bc"} are told apart (moto's KMS concatenates the pairs; real KMS
	// does not).
	AmbiguousContext string
}

// Run checks k against the escrow.Keys contract.
func Run(t *testing.T, k escrow.Keys, lim Limits) {
	ctx := context.Background()
	encCtx := map[string]string{"escrow:secret": "01SECRET", "escrow:version": "3"}

	generate := func(t *testing.T, c map[string]string) escrow.DataKey {
		t.Helper()
		dk, err := k.GenerateDataKey(ctx, c)
		if err != nil {
			t.Fatalf("GenerateDataKey: %v", err)
		}
		return dk
	}
	wantDecryptFail := func(t *testing.T, wrapped []byte, c map[string]string) {
		t.Helper()
		plain, err := k.Decrypt(ctx, wrapped, c)
		if err == nil {
			t.Fatalf("Decrypt succeeded (%d bytes), want an error", len(plain))
		}
		if code := escrow.ErrorCode(err); code != escrow.CodeInternal {
			t.Fatalf("Decrypt error code = %q (%v), want %q", code, err, escrow.CodeInternal)
		}
		if errors.Is(err, escrow.ErrUnavailable) {
			t.Fatalf("Decrypt error %v must not read as unavailable", err)
		}
	}

	t.Run("RoundTrip", func(t *testing.T) {
		dk := generate(t, encCtx)
		if len(dk.Plaintext) != 32 {
			t.Fatalf("plaintext data key is %d bytes, want 32", len(dk.Plaintext))
		}
		if len(dk.Wrapped) == 0 || dk.KeyID == "" {
			t.Fatalf("wrapped %d bytes, key id %q: want both set", len(dk.Wrapped), dk.KeyID)
		}
		if bytes.Contains(dk.Wrapped, dk.Plaintext) {
			t.Fatal("wrapped key contains the plaintext key")
		}
		// A copy of the context, built in another order, must do.
		same := map[string]string{"escrow:version": "3", "escrow:secret": "01SECRET"}
		plain, err := k.Decrypt(ctx, dk.Wrapped, same)
		if err != nil {
			t.Fatalf("Decrypt: %v", err)
		}
		if !bytes.Equal(plain, dk.Plaintext) {
			t.Fatal("Decrypt returned another key")
		}
	})

	t.Run("FreshKeys", func(t *testing.T) {
		a, b := generate(t, encCtx), generate(t, encCtx)
		if bytes.Equal(a.Plaintext, b.Plaintext) || bytes.Equal(a.Wrapped, b.Wrapped) {
			t.Fatal("two GenerateDataKey calls returned the same key")
		}
	})

	t.Run("OtherContextFails", func(t *testing.T) {
		dk := generate(t, encCtx)
		for name, c := range map[string]map[string]string{
			"other secret":  {"escrow:secret": "01OTHER", "escrow:version": "3"},
			"other version": {"escrow:secret": "01SECRET", "escrow:version": "4"},
			"extra pair":    {"escrow:secret": "01SECRET", "escrow:version": "3", "x": "y"},
			"missing pair":  {"escrow:secret": "01SECRET"},
			"empty":         {},
			"nil":           nil,
		} {
			t.Run(name, func(t *testing.T) { wantDecryptFail(t, dk.Wrapped, c) })
		}
	})

	t.Run("ContextIsUnambiguous", func(t *testing.T) {
		if lim.AmbiguousContext != "" {
			t.Skip(lim.AmbiguousContext)
		}
		// Naive concatenations of these collide; a sound encoding does not.
		dk := generate(t, map[string]string{"ab": "c"})
		wantDecryptFail(t, dk.Wrapped, map[string]string{"a": "bc"})
		dk = generate(t, map[string]string{"a": "b", "c": "d"})
		wantDecryptFail(t, dk.Wrapped, map[string]string{"a": "bcd"})
	})

	t.Run("TamperedFails", func(t *testing.T) {
		dk := generate(t, encCtx)
		n := len(dk.Wrapped)
		for _, i := range []int{n / 2, n - 17, n - 1} {
			bad := bytes.Clone(dk.Wrapped)
			bad[i] ^= 0x01
			wantDecryptFail(t, bad, encCtx)
		}
		wantDecryptFail(t, dk.Wrapped[:n-1], encCtx)
		wantDecryptFail(t, append(bytes.Clone(dk.Wrapped), 0), encCtx)
	})

	t.Run("EmptyContext", func(t *testing.T) {
		dk := generate(t, nil)
		plain, err := k.Decrypt(ctx, dk.Wrapped, map[string]string{})
		if err != nil || !bytes.Equal(plain, dk.Plaintext) {
			t.Fatalf("Decrypt with an empty context = %v; want the key back", err)
		}
	})
}
