package envelope_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"maps"
	"strings"
	"testing"

	sdkkms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/escrow-pam/escrow/internal/awstest"
	"github.com/escrow-pam/escrow/internal/envelope"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/keys/kms"
	"github.com/escrow-pam/escrow/internal/keys/local"
)

// canary is a value that must never show up in an error or a ciphertext.
const canary = "CANARY-s3cr3t-7f3a9c"

func localKeys(t testing.TB) *local.Keys {
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

func TestEnvelopeLocal(t *testing.T) { runSuite(t, localKeys(t)) }

func TestEnvelopeKMS(t *testing.T) {
	m := awstest.Start(t)
	client := sdkkms.NewFromConfig(m.MustConfig(t))
	out, err := client.CreateKey(context.Background(), &sdkkms.CreateKeyInput{
		KeySpec:  types.KeySpecSymmetricDefault,
		KeyUsage: types.KeyUsageTypeEncryptDecrypt,
	})
	if err != nil {
		t.Fatalf("create key: %v", err)
	}
	k := kms.New(client, *out.KeyMetadata.KeyId)
	runSuite(t, k)

	// With KMS gone, both directions must read as unavailable (so callers
	// retry), still without the value.
	ctx := context.Background()
	sv := seal(t, k, "01SECRET", 1, escrow.SecretValue{"password": canary})
	m.Stop()
	_, _, _, err = envelope.Seal(ctx, k, "01SECRET", 2, escrow.SecretValue{"password": canary})
	if !errors.Is(err, escrow.ErrUnavailable) || strings.Contains(err.Error(), canary) {
		t.Fatalf("Seal with KMS down = %v, want ErrUnavailable without the value", err)
	}
	if _, err := envelope.Open(ctx, k, sv); !errors.Is(err, escrow.ErrUnavailable) {
		t.Fatalf("Open with KMS down = %v, want ErrUnavailable", err)
	}
}

func seal(t *testing.T, k escrow.Keys, id string, version int, v escrow.SecretValue) *escrow.SecretVersion {
	t.Helper()
	keyID, wrapped, ct, err := envelope.Seal(context.Background(), k, id, version, v)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if keyID == "" {
		t.Fatal("Seal returned no key id")
	}
	return &escrow.SecretVersion{SecretID: id, Version: version, KeyID: keyID, WrappedKey: wrapped, Ciphertext: ct}
}

// wantFail checks that Open refuses sv with an internal error that says
// nothing about the value.
func wantFail(t *testing.T, k escrow.Keys, sv *escrow.SecretVersion) {
	t.Helper()
	v, err := envelope.Open(context.Background(), k, sv)
	if err == nil {
		t.Fatalf("Open succeeded with %d fields, want an error", len(v))
	}
	if code := escrow.ErrorCode(err); code != escrow.CodeInternal {
		t.Fatalf("Open error code %q (%v), want internal", code, err)
	}
	if strings.Contains(err.Error(), canary) || strings.Contains(escrow.ErrorMessage(err), canary) {
		t.Fatalf("error leaks the value: %v", err)
	}
}

func runSuite(t *testing.T, k escrow.Keys) {
	ctx := context.Background()
	value := escrow.SecretValue{"password": canary, "username": "dba", "notes": "ünïcødé\x00and nul", "empty": ""}

	t.Run("RoundTrip", func(t *testing.T) {
		big := escrow.SecretValue{"private_key": strings.Repeat("k", escrow.MaxValueBytes-20)}
		for name, v := range map[string]escrow.SecretValue{"typical": value, "big": big, "one field": {"key": "x"}} {
			t.Run(name, func(t *testing.T) {
				sv := seal(t, k, "01SECRET", 7, v)
				got, err := envelope.Open(ctx, k, sv)
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				if !maps.Equal(got, v) {
					t.Fatalf("Open returned another value (%d fields, want %d)", len(got), len(v))
				}
			})
		}
	})

	t.Run("CiphertextHidesValue", func(t *testing.T) {
		sv := seal(t, k, "01SECRET", 1, value)
		if bytes.Contains(sv.Ciphertext, []byte(canary)) || bytes.Contains(sv.WrappedKey, []byte(canary)) {
			t.Fatal("the value is visible in the sealed output")
		}
		if sv.Ciphertext[0] != 1 {
			t.Fatalf("format byte = %d, want 1", sv.Ciphertext[0])
		}
	})

	t.Run("FreshDataKeyPerCall", func(t *testing.T) {
		a, b := seal(t, k, "01SECRET", 1, value), seal(t, k, "01SECRET", 1, value)
		if bytes.Equal(a.WrappedKey, b.WrappedKey) || bytes.Equal(a.Ciphertext, b.Ciphertext) {
			t.Fatal("two Seals of the same value share a data key or ciphertext")
		}
	})

	t.Run("MovedFails", func(t *testing.T) {
		sv := seal(t, k, "01SECRET", 2, value)
		other := seal(t, k, "01SECRET", 3, value)
		moved := func(f func(*escrow.SecretVersion)) *escrow.SecretVersion {
			c := *sv
			f(&c)
			return &c
		}
		t.Run("other secret", func(t *testing.T) { wantFail(t, k, moved(func(c *escrow.SecretVersion) { c.SecretID = "01OTHER" })) })
		t.Run("other version", func(t *testing.T) { wantFail(t, k, moved(func(c *escrow.SecretVersion) { c.Version = 3 })) })
		t.Run("id prefix", func(t *testing.T) { wantFail(t, k, moved(func(c *escrow.SecretVersion) { c.SecretID = "01SECRE" })) })
		// The wrapped key of version 3 opens for version 3; the ciphertext of
		// version 2 must still not open with it.
		t.Run("ciphertext swapped", func(t *testing.T) {
			wantFail(t, k, moved(func(c *escrow.SecretVersion) { c.Version, c.WrappedKey = 3, other.WrappedKey }))
		})
		t.Run("wrapped key swapped", func(t *testing.T) {
			wantFail(t, k, moved(func(c *escrow.SecretVersion) { c.WrappedKey = other.WrappedKey }))
		})
	})

	t.Run("TamperedFails", func(t *testing.T) {
		sv := seal(t, k, "01SECRET", 1, value)
		for i := range sv.Ciphertext {
			c := *sv
			c.Ciphertext = bytes.Clone(sv.Ciphertext)
			c.Ciphertext[i] ^= 0x80
			wantFail(t, k, &c)
		}
		for _, ct := range [][]byte{nil, {}, sv.Ciphertext[:1], sv.Ciphertext[:len(sv.Ciphertext)-1], append(bytes.Clone(sv.Ciphertext), 0)} {
			c := *sv
			c.Ciphertext = ct
			wantFail(t, k, &c)
		}
		c := *sv
		c.WrappedKey = bytes.Clone(sv.WrappedKey)
		c.WrappedKey[len(c.WrappedKey)-1] ^= 1
		wantFail(t, k, &c)
		c.WrappedKey = nil
		wantFail(t, k, &c)
	})

	t.Run("BadTarget", func(t *testing.T) {
		if _, _, _, err := envelope.Seal(ctx, k, "", 1, value); err == nil {
			t.Fatal("Seal with no secret id succeeded")
		}
		if _, _, _, err := envelope.Seal(ctx, k, "01SECRET", 0, value); err == nil {
			t.Fatal("Seal with version 0 succeeded")
		}
		if _, err := envelope.Open(ctx, k, nil); err == nil {
			t.Fatal("Open(nil) succeeded")
		}
	})
}

// recordingKeys wraps real local keys and keeps the plaintext data keys it
// hands out, to check that the envelope clears them.
type recordingKeys struct {
	*local.Keys
	handed [][]byte
}

func (r *recordingKeys) GenerateDataKey(ctx context.Context, c map[string]string) (escrow.DataKey, error) {
	dk, err := r.Keys.GenerateDataKey(ctx, c)
	r.handed = append(r.handed, dk.Plaintext)
	return dk, err
}

func (r *recordingKeys) Decrypt(ctx context.Context, w []byte, c map[string]string) ([]byte, error) {
	p, err := r.Keys.Decrypt(ctx, w, c)
	r.handed = append(r.handed, p)
	return p, err
}

func TestDataKeysZeroedAfterUse(t *testing.T) {
	r := &recordingKeys{Keys: localKeys(t)}
	sv := seal(t, r, "01SECRET", 1, escrow.SecretValue{"password": canary})
	if _, err := envelope.Open(context.Background(), r, sv); err != nil {
		t.Fatalf("Open: %v", err)
	}
	if len(r.handed) != 2 {
		t.Fatalf("saw %d data keys, want 2", len(r.handed))
	}
	for i, key := range r.handed {
		if len(key) != 32 || !bytes.Equal(key, make([]byte, 32)) {
			t.Fatalf("data key %d was not zeroed after use", i)
		}
	}
}

var benchValue = escrow.SecretValue{
	"password": "correct horse battery staple", "username": "postgres",
	"host": "db.internal.example.com", "port": "5432", "database": "payroll",
}

func BenchmarkSeal(b *testing.B) {
	k := localKeys(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := envelope.Seal(ctx, k, "01SECRET", 1, benchValue); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	k := localKeys(b)
	ctx := context.Background()
	keyID, wrapped, ct, err := envelope.Seal(ctx, k, "01SECRET", 1, benchValue)
	if err != nil {
		b.Fatal(err)
	}
	sv := &escrow.SecretVersion{SecretID: "01SECRET", Version: 1, KeyID: keyID, WrappedKey: wrapped, Ciphertext: ct}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := envelope.Open(ctx, k, sv); err != nil {
			b.Fatal(err)
		}
	}
}
