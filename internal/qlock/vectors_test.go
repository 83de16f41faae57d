package qlock

import (
	"bytes"
	stdhpke "crypto/hpke"
	"encoding/hex"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/escrow-pam/escrow/internal/qlock/qlockfmt"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors_v1.json from the inputs in vectors_test.go")

const vectorsV1 = "testdata/vectors_v1.json"

// hexBytes is a byte string written as hex in the vector file.
type hexBytes []byte

func (h hexBytes) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }

func (h *hexBytes) UnmarshalText(b []byte) error {
	d, err := hex.DecodeString(string(b))
	*h = d
	return err
}

// vectorFile is testdata/vectors_v1.json. Inputs (seeds, passwords, KDF
// parameters, randomness seeds, bindings, plaintexts) fully determine the
// outputs; the intermediate values (salt, nonce, data key, fingerprints) are
// there for other implementations to debug against.
type vectorFile struct {
	Comment      []string            `json:"comment"`
	SealedKeys   []sealedKeyVector   `json:"sealed_keys"`
	LockedValues []lockedValueVector `json:"locked_values"`
}

type sealedKeyVector struct {
	Name        string    `json:"name"`
	Seed        hexBytes  `json:"seed"`
	Password    string    `json:"password"`
	KDF         KDFParams `json:"kdf"`
	RandSeed    hexBytes  `json:"rand_seed"`
	Salt        hexBytes  `json:"salt"`
	Nonce       hexBytes  `json:"nonce"`
	PublicKey   hexBytes  `json:"public_key"`
	Fingerprint string    `json:"fingerprint"`
	Sealed      hexBytes  `json:"sealed"`
}

type vectorRecipient struct {
	Subject     string   `json:"subject"`
	Seed        hexBytes `json:"seed"`
	Fingerprint string   `json:"fingerprint"`
}

type lockedValueVector struct {
	Name       string            `json:"name"`
	SecretID   string            `json:"secret_id"`
	Version    int               `json:"version"`
	Plaintext  hexBytes          `json:"plaintext"`
	Recipients []vectorRecipient `json:"recipients"`
	RandSeed   hexBytes          `json:"rand_seed"`
	DataKey    hexBytes          `json:"data_key"`
	Nonce      hexBytes          `json:"nonce"`
	Locked     hexBytes          `json:"locked"`
}

// vectorInputs are the inputs -update writes vectors from.
func vectorInputs() vectorFile {
	seed := func(name string) hexBytes { b := testBytes("seed " + name); return b[:] }
	rnd := func(name string) hexBytes { b := testBytes("rand " + name); return b[:] }
	return vectorFile{
		Comment: []string{
			"QuantumLock format version 1 known-answer vectors; layouts in internal/qlock/doc.go.",
			"Byte strings are hex. rand_seed keys a ChaCha8 stream (Go math/rand/v2 NewChaCha8) that supplies all randomness:",
			"sealed key: salt (16) then nonce (24); locked value: data key (32), nonce (12), then 64 bytes of X-Wing encapsulation randomness per recipient, in order.",
			"Seeds are X-Wing key seeds (32). Regenerate with: go test ./internal/qlock -run TestVectors -update",
		},
		SealedKeys: []sealedKeyVector{
			{Name: "minimum-kdf", Seed: seed("alice"), Password: "correct horse battery staple", KDF: fastKDF, RandSeed: rnd("sealed minimum-kdf")},
			{Name: "t2-p2-unicode-password", Seed: seed("bob"), Password: "pässwörd 🔐 ünïcödé", KDF: KDFParams{Time: 2, MemoryKiB: 9 * 1024, Threads: 2}, RandSeed: rnd("sealed t2-p2")},
		},
		LockedValues: []lockedValueVector{
			{
				Name: "one-recipient", SecretID: "secret-1", Version: 1, Plaintext: hexBytes("hunter2"),
				Recipients: []vectorRecipient{{Subject: "alice", Seed: seed("alice")}},
				RandSeed:   rnd("locked one-recipient"),
			},
			{
				Name: "three-recipients", SecretID: "db/prod/postgres", Version: 7,
				Plaintext: hexBytes(`{"password":"s3cr3t!","username":"app"}`),
				Recipients: []vectorRecipient{
					{Subject: "alice", Seed: seed("alice")},
					{Subject: "bob@example.com", Seed: seed("bob")},
					{Subject: "oidc|carol", Seed: seed("carol")},
				},
				RandSeed: rnd("locked three-recipients"),
			},
			{
				Name: "empty-plaintext-max-version-unicode", SecretID: "sécret/ü", Version: qlockfmt.MaxVersion, Plaintext: hexBytes{},
				Recipients: []vectorRecipient{{Subject: "bøb", Seed: seed("bob")}},
				RandSeed:   rnd("locked empty"),
			},
		},
	}
}

// generateSealedKey computes v's outputs from its inputs.
func generateSealedKey(v sealedKeyVector) (sealedKeyVector, error) {
	k := newPrivateKey(v.Seed)
	r := stream([32]byte(v.RandSeed))
	sealed, err := k.Seal(r, []byte(v.Password), v.KDF)
	if err != nil {
		return v, err
	}
	r = stream([32]byte(v.RandSeed))
	v.Salt = make(hexBytes, qlockfmt.SaltSize)
	v.Nonce = make(hexBytes, qlockfmt.SealNonceSize)
	_, _ = io.ReadFull(r, v.Salt)
	_, _ = io.ReadFull(r, v.Nonce)
	v.PublicKey = hexBytes(k.Public())
	v.Fingerprint = Fingerprint(k.Public())
	v.Sealed = sealed
	return v, nil
}

// generateLockedValue computes v's outputs from its inputs.
func generateLockedValue(v lockedValueVector) (lockedValueVector, error) {
	rs := make([]Recipient, len(v.Recipients))
	for i, r := range v.Recipients {
		pub := newPrivateKey(r.Seed).Public()
		rs[i] = Recipient{Subject: r.Subject, Key: pub}
		v.Recipients[i].Fingerprint = Fingerprint(pub)
	}
	locked, err := Lock(stream([32]byte(v.RandSeed)), v.SecretID, v.Version, v.Plaintext, rs)
	if err != nil {
		return v, err
	}
	r := stream([32]byte(v.RandSeed))
	v.DataKey = make(hexBytes, qlockfmt.DataKeySize)
	v.Nonce = make(hexBytes, qlockfmt.ValueNonceSize)
	_, _ = io.ReadFull(r, v.DataKey)
	_, _ = io.ReadFull(r, v.Nonce)
	v.Locked = locked
	return v, nil
}

func writeVectors(t *testing.T) {
	t.Helper()
	vf := vectorInputs()
	var err error
	for i := range vf.SealedKeys {
		if vf.SealedKeys[i], err = generateSealedKey(vf.SealedKeys[i]); err != nil {
			t.Fatalf("generate %s: %v", vf.SealedKeys[i].Name, err)
		}
	}
	for i := range vf.LockedValues {
		if vf.LockedValues[i], err = generateLockedValue(vf.LockedValues[i]); err != nil {
			t.Fatalf("generate %s: %v", vf.LockedValues[i].Name, err)
		}
	}
	b, err := json.MarshalIndent(vf, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(vectorsV1), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vectorsV1, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readVectors(t testing.TB) vectorFile {
	t.Helper()
	b, err := os.ReadFile(vectorsV1)
	if err != nil {
		t.Fatalf("read vectors (regenerate with -update): %v", err)
	}
	var vf vectorFile
	if err := json.Unmarshal(b, &vf); err != nil {
		t.Fatalf("parse %s: %v", vectorsV1, err)
	}
	if len(vf.SealedKeys) == 0 || len(vf.LockedValues) == 0 {
		t.Fatalf("%s holds no vectors", vectorsV1)
	}
	return vf
}

// TestVectors opens every vector with its inputs and regenerates it byte for
// byte from them.
func TestVectors(t *testing.T) {
	if *update {
		writeVectors(t)
	}
	vf := readVectors(t)
	for _, v := range vf.SealedKeys {
		t.Run("sealed_key/"+v.Name, func(t *testing.T) {
			t.Parallel()
			k, err := OpenPrivateKey(v.Sealed, []byte(v.Password))
			if err != nil {
				t.Fatalf("OpenPrivateKey: %v", err)
			}
			if !bytes.Equal(k.seed[:], v.Seed) {
				t.Error("opened seed differs from the vector's")
			}
			if !bytes.Equal(k.Public(), v.PublicKey) || Fingerprint(k.Public()) != v.Fingerprint {
				t.Error("public key or fingerprint differs from the vector's")
			}
			pub, err := qlockfmt.PublicKeyOf(v.Sealed)
			if err != nil || !bytes.Equal(pub, v.PublicKey) {
				t.Errorf("qlockfmt.PublicKeyOf = %x, %v", pub[:min(len(pub), 20)], err)
			}
			if _, err := OpenPrivateKey(v.Sealed, []byte(v.Password+"x")); err != ErrWrongPassword {
				t.Errorf("wrong password: %v", err)
			}
			got, err := generateSealedKey(sealedKeyVector{Seed: v.Seed, Password: v.Password, KDF: v.KDF, RandSeed: v.RandSeed})
			if err != nil {
				t.Fatalf("regenerate: %v", err)
			}
			if !bytes.Equal(got.Sealed, v.Sealed) {
				t.Errorf("regenerated sealed key differs\n got %x\nwant %x", got.Sealed, v.Sealed)
			}
			if !bytes.Equal(got.Salt, v.Salt) || !bytes.Equal(got.Nonce, v.Nonce) ||
				!bytes.Equal(v.Sealed[26:42], v.Salt) || !bytes.Equal(v.Sealed[42:66], v.Nonce) {
				t.Error("salt or nonce differs from the vector's, or is not where doc.go says")
			}
		})
	}
	for _, v := range vf.LockedValues {
		t.Run("locked_value/"+v.Name, func(t *testing.T) {
			t.Parallel()
			for _, r := range v.Recipients {
				k := newPrivateKey(r.Seed)
				if Fingerprint(k.Public()) != r.Fingerprint {
					t.Errorf("%s: fingerprint %s, vector says %s", r.Subject, Fingerprint(k.Public()), r.Fingerprint)
				}
				pt, err := Open(v.Locked, v.SecretID, v.Version, r.Subject, k)
				if err != nil {
					t.Fatalf("Open as %s: %v", r.Subject, err)
				}
				if !bytes.Equal(pt, v.Plaintext) {
					t.Errorf("Open as %s = %q, want %q", r.Subject, pt, v.Plaintext)
				}
			}
			// The recorded data key and nonce are the ones in use.
			parsed, err := qlockfmt.ParseLockedValue(v.Locked)
			if err != nil {
				t.Fatal(err)
			}
			// An independent HPKE implementation (Go's crypto/hpke, whose
			// MLKEM768X25519 is X-Wing) unwraps every recipient's data key.
			for i, r := range v.Recipients {
				sk, err := stdhpke.MLKEM768X25519().NewPrivateKey(r.Seed)
				if err != nil {
					t.Fatal(err)
				}
				w := parsed.Wraps[i]
				rcpt, err := stdhpke.NewRecipient(w.Enc, sk, stdhpke.HKDFSHA256(), stdhpke.AES256GCM(), wrapInfo(v.SecretID, v.Version, r.Subject))
				if err != nil {
					t.Fatalf("crypto/hpke recipient %s: %v", r.Subject, err)
				}
				if dk, err := rcpt.Open(w.Fingerprint[:], w.WrappedKey); err != nil || !bytes.Equal(dk, v.DataKey) {
					t.Errorf("crypto/hpke unwrap for %s: %v", r.Subject, err)
				}
			}
			aead, err := valueAEAD(v.DataKey)
			if err != nil {
				t.Fatal(err)
			}
			if pt, err := aead.Open(nil, v.Nonce, parsed.Ciphertext, parsed.Header); err != nil || !bytes.Equal(pt, v.Plaintext) || !bytes.Equal(parsed.Nonce, v.Nonce) {
				t.Errorf("data key and nonce of the vector do not open it: %v", err)
			}
			infos, id, ver, err := qlockfmt.Recipients(v.Locked)
			if err != nil || id != v.SecretID || ver != v.Version || len(infos) != len(v.Recipients) {
				t.Fatalf("qlockfmt.Recipients = %v, %q, %d, %v", infos, id, ver, err)
			}
			for i, info := range infos {
				if info.Subject != v.Recipients[i].Subject || info.Fingerprint != v.Recipients[i].Fingerprint {
					t.Errorf("recipient %d = %+v, want %s %s", i, info, v.Recipients[i].Subject, v.Recipients[i].Fingerprint)
				}
			}
			in := lockedValueVector{SecretID: v.SecretID, Version: v.Version, Plaintext: v.Plaintext, RandSeed: v.RandSeed}
			for _, r := range v.Recipients {
				in.Recipients = append(in.Recipients, vectorRecipient{Subject: r.Subject, Seed: r.Seed})
			}
			got, err := generateLockedValue(in)
			if err != nil {
				t.Fatalf("regenerate: %v", err)
			}
			if !bytes.Equal(got.Locked, v.Locked) {
				t.Errorf("regenerated locked value differs\n got %x\nwant %x", got.Locked, v.Locked)
			}
			if !bytes.Equal(got.DataKey, v.DataKey) || !bytes.Equal(got.Nonce, v.Nonce) {
				t.Error("data key or nonce differs from the vector's")
			}
		})
	}
}
