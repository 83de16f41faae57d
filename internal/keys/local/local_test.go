package local_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/keys/keystest"
	"github.com/escrow-pam/escrow/internal/keys/local"
)

func newKeys(t testing.TB) *local.Keys {
	t.Helper()
	master := make([]byte, 32)
	if _, err := rand.Read(master); err != nil {
		t.Fatal(err)
	}
	k, err := local.New(master)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestConformance(t *testing.T) {
	keystest.Run(t, newKeys(t), keystest.Limits{})
}

func TestNewRejectsWrongLength(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := local.New(make([]byte, n)); err == nil {
			t.Errorf("New(%d bytes) succeeded", n)
		}
	}
}

func TestKeyID(t *testing.T) {
	master := bytes.Repeat([]byte{7}, 32)
	a, _ := local.New(master)
	b, _ := local.New(master)
	c := newKeys(t)
	if !strings.HasPrefix(a.KeyID(), "local:") || len(a.KeyID()) != len("local:")+16 {
		t.Fatalf("KeyID = %q, want local:<16 hex>", a.KeyID())
	}
	if a.KeyID() != b.KeyID() || a.KeyID() == c.KeyID() {
		t.Fatalf("KeyID must be a function of the master key: %q %q %q", a.KeyID(), b.KeyID(), c.KeyID())
	}
	dk, err := a.GenerateDataKey(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if dk.KeyID != a.KeyID() {
		t.Fatalf("DataKey.KeyID = %q, want %q", dk.KeyID, a.KeyID())
	}
}

func TestOtherMasterKeyFails(t *testing.T) {
	ctx := context.Background()
	a, b := newKeys(t), newKeys(t)
	dk, err := a.GenerateDataKey(ctx, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Decrypt(ctx, dk.Wrapped, map[string]string{"k": "v"})
	if escrow.ErrorCode(err) != escrow.CodeInternal || escrow.ErrorMessage(err) != "internal error" {
		t.Fatalf("Decrypt under another master key: %v, want an internal error", err)
	}
	var e *escrow.Error
	if !errors.As(err, &e) || e.Message != "decrypt data key" {
		t.Fatalf("error %v: want message %q", err, "decrypt data key")
	}
}

// TestWrappedFormat pins the wrapped layout: version byte, key id prefix,
// nonce, sealed key and tag.
func TestWrappedFormat(t *testing.T) {
	k := newKeys(t)
	dk, err := k.GenerateDataKey(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(dk.Wrapped) != 1+8+12+32+16 {
		t.Fatalf("wrapped key is %d bytes", len(dk.Wrapped))
	}
	if dk.Wrapped[0] != 1 {
		t.Fatalf("version byte = %d, want 1", dk.Wrapped[0])
	}
	if got := strings.TrimPrefix(k.KeyID(), "local:"); got != hex.EncodeToString(dk.Wrapped[1:9]) {
		t.Fatalf("key id prefix %x does not match KeyID %q", dk.Wrapped[1:9], k.KeyID())
	}
	bad := bytes.Clone(dk.Wrapped)
	bad[0] = 2
	if _, err := k.Decrypt(context.Background(), bad, nil); escrow.ErrorCode(err) != escrow.CodeInternal {
		t.Fatalf("unknown version: %v, want an internal error", err)
	}
}

func TestOpenCreatesThenReuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	path := filepath.Join(dir, "master.key")
	k1, err := local.Open(path)
	if err != nil {
		t.Fatalf("Open (create): %v", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || st.Size() != 32 {
		t.Fatalf("key file mode %04o size %d, want 0600 and 32", st.Mode().Perm(), st.Size())
	}
	dst, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if dst.Mode().Perm() != 0o700 {
		t.Fatalf("key directory mode %04o, want 0700", dst.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only the key file", len(entries))
	}

	ctx := context.Background()
	dk, err := k1.GenerateDataKey(ctx, map[string]string{"a": "b"})
	if err != nil {
		t.Fatal(err)
	}
	k2, err := local.Open(path)
	if err != nil {
		t.Fatalf("Open (reuse): %v", err)
	}
	if k2.KeyID() != k1.KeyID() {
		t.Fatalf("reopened key id %q != %q", k2.KeyID(), k1.KeyID())
	}
	plain, err := k2.Decrypt(ctx, dk.Wrapped, map[string]string{"a": "b"})
	if err != nil || !bytes.Equal(plain, dk.Plaintext) {
		t.Fatalf("reopened keyring cannot unwrap: %v", err)
	}
}

func TestOpenRacingCreatorsAgree(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	const n = 8
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			k, err := local.Open(path)
			if err != nil {
				t.Errorf("Open: %v", err)
				return
			}
			ids[i] = k.KeyID()
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("racing Opens disagree on the key: %q", ids)
		}
	}
}

func TestOpenRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // umask-proof
			t.Fatal(err)
		}
		return p
	}
	key := bytes.Repeat([]byte{1}, 32)
	for _, tc := range []struct {
		name, path, want string
	}{
		{"group readable", write("g.key", key, 0o640), "chmod 600"},
		{"world readable", write("w.key", key, 0o604), "chmod 600"},
		{"group writable", write("gw.key", key, 0o620), "chmod 600"},
		{"short", write("s.key", key[:31], 0o600), "31 bytes"},
		{"long", write("l.key", append(key, 0), 0o600), "33 bytes"},
		{"empty", write("e.key", nil, 0o600), "0 bytes"},
		{"directory", dir, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := local.Open(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open(%s) = %v, want an error mentioning %q", tc.name, err, tc.want)
			}
		})
	}
}

func BenchmarkGenerateDataKey(b *testing.B) {
	k := newKeys(b)
	ctx := context.Background()
	encCtx := map[string]string{"escrow:secret": "01SECRET", "escrow:version": "1"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.GenerateDataKey(ctx, encCtx); err != nil {
			b.Fatal(err)
		}
	}
}
