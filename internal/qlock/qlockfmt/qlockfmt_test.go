package qlockfmt_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"go/parser"
	"go/token"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/escrow-pam/escrow/internal/qlock/qlockfmt"
)

// TestNoCryptoImports keeps this package framing-only, so the server can
// link it without the KEM, Argon2 or AEAD code.
func TestNoCryptoImports(t *testing.T) {
	allowed := map[string]bool{
		"bytes": true, "crypto/sha256": true, "encoding/binary": true, "encoding/hex": true,
		"errors": true, "fmt": true, "math": true, "strings": true, "unicode/utf8": true,
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if !allowed[path] {
				t.Errorf("%s imports %s: qlockfmt must stay framing-only", name, path)
			}
		}
	}
}

func fill(r *rand.ChaCha8, n int) []byte {
	b := make([]byte, n)
	_, _ = r.Read(b)
	return b
}

func fakePublicKey(r *rand.ChaCha8) []byte {
	return append([]byte(qlockfmt.PublicKeyLabel+"\x01"), fill(r, qlockfmt.XWingPublicKeySize)...)
}

var minKDF = qlockfmt.KDFParams{Time: 1, MemoryKiB: 8192, Threads: 1}

// fakeSealedKey is a well-framed sealed key with random contents.
func fakeSealedKey(t testing.TB) []byte {
	r := rand.NewChaCha8([32]byte{1})
	h, err := qlockfmt.AppendSealedKeyHeader(nil, minKDF, fill(r, qlockfmt.SaltSize), fill(r, qlockfmt.SealNonceSize), fakePublicKey(r))
	if err != nil {
		t.Fatal(err)
	}
	return append(h, fill(r, qlockfmt.SealedSeedSize)...)
}

// fakeLockedValue is a well-framed locked value with random contents.
func fakeLockedValue(t testing.TB, secretID string, version int, subjects ...string) []byte {
	r := rand.NewChaCha8([32]byte{2})
	var wraps []qlockfmt.Wrap
	for _, s := range subjects {
		wraps = append(wraps, qlockfmt.Wrap{
			Subject:     s,
			Fingerprint: qlockfmt.FingerprintOf(fakePublicKey(r)),
			Enc:         fill(r, qlockfmt.XWingCiphertextSize),
			WrappedKey:  fill(r, qlockfmt.WrappedKeySize),
		})
	}
	h, err := qlockfmt.AppendLockedValueHeader(nil, secretID, version, wraps)
	if err != nil {
		t.Fatal(err)
	}
	return append(h, fill(r, qlockfmt.ValueNonceSize+5+qlockfmt.TagSize)...)
}

func TestSealedKey(t *testing.T) {
	blob := fakeSealedKey(t)
	if len(blob) != qlockfmt.SealedKeySize || qlockfmt.SealedKeySize != 1347 {
		t.Fatalf("sealed key is %d bytes; doc.go says 1347", len(blob))
	}
	k, err := qlockfmt.ParseSealedKey(blob)
	if err != nil {
		t.Fatal(err)
	}
	if k.KDF != minKDF || len(k.Header) != qlockfmt.SealedKeyHeaderSize || !bytes.Equal(k.Ciphertext, blob[1299:]) ||
		!bytes.Equal(k.Salt, blob[26:42]) || !bytes.Equal(k.Nonce, blob[42:66]) || !bytes.Equal(k.PublicKey, blob[66:1299]) {
		t.Errorf("fields are not where doc.go says: %+v", k.KDF)
	}
	pub, err := qlockfmt.PublicKeyOf(blob)
	if err != nil || !bytes.Equal(pub, blob[66:1299]) {
		t.Errorf("PublicKeyOf = %v", err)
	}
	pub[0] ^= 1
	if blob[66] == pub[0] {
		t.Error("PublicKeyOf aliases the blob")
	}

	for _, c := range []struct {
		name string
		mod  func(b []byte) []byte
		kdf  bool
	}{
		{"empty", func([]byte) []byte { return nil }, false},
		{"short", func(b []byte) []byte { return b[:len(b)-1] }, false},
		{"long", func(b []byte) []byte { return append(b, 0) }, false},
		{"label", func(b []byte) []byte { b[5] = 'X'; return b }, false},
		{"value label", func(b []byte) []byte { copy(b, qlockfmt.LockedValueLabel); return b }, false},
		{"version 0", func(b []byte) []byte { b[16] = 0; return b }, false},
		{"version 2", func(b []byte) []byte { b[16] = 2; return b }, false},
		{"time 0", func(b []byte) []byte { binary.BigEndian.PutUint32(b[17:], 0); return b }, true},
		{"time 101", func(b []byte) []byte { binary.BigEndian.PutUint32(b[17:], 101); return b }, true},
		{"memory 4 GiB + 1 KiB", func(b []byte) []byte { binary.BigEndian.PutUint32(b[21:], 4<<20+1); return b }, true},
		{"memory 8 MiB - 1 KiB", func(b []byte) []byte { binary.BigEndian.PutUint32(b[21:], 8191); return b }, true},
		{"threads 0", func(b []byte) []byte { b[25] = 0; return b }, true},
		{"public key label", func(b []byte) []byte { b[70] ^= 1; return b }, false},
		{"public key version", func(b []byte) []byte { b[82] = 2; return b }, false},
	} {
		_, err := qlockfmt.ParseSealedKey(c.mod(bytes.Clone(blob)))
		if !errors.Is(err, qlockfmt.ErrMalformed) || errors.Is(err, qlockfmt.ErrKDFParams) != c.kdf {
			t.Errorf("%s: err = %v", c.name, err)
		}
		if _, err2 := qlockfmt.PublicKeyOf(c.mod(bytes.Clone(blob))); !errors.Is(err2, qlockfmt.ErrMalformed) {
			t.Errorf("%s: PublicKeyOf err = %v", c.name, err2)
		}
	}
	if _, err := qlockfmt.AppendSealedKeyHeader(nil, qlockfmt.KDFParams{}, make([]byte, 16), make([]byte, 24), pub); err == nil {
		t.Error("AppendSealedKeyHeader took zero KDF parameters")
	}
}

func TestCheckPublicKey(t *testing.T) {
	good := fakePublicKey(rand.NewChaCha8([32]byte{3}))
	if err := qlockfmt.CheckPublicKey(good); err != nil {
		t.Fatal(err)
	}
	for name, pub := range map[string][]byte{
		"nil":       nil,
		"X25519":    make([]byte, 32),
		"raw XWing": good[17:],
		"short":     good[:len(good)-1],
		"long":      append(bytes.Clone(good), 0),
		"label":     append([]byte("escrow/qlock/key"), good[16:]...),
		"version":   append(append([]byte(qlockfmt.PublicKeyLabel), 2), good[17:]...),
	} {
		if err := qlockfmt.CheckPublicKey(pub); !errors.Is(err, qlockfmt.ErrInvalidPublicKey) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestFingerprint(t *testing.T) {
	pub := fakePublicKey(rand.NewChaCha8([32]byte{4}))
	sum := sha256.Sum256(pub)
	h := hex.EncodeToString(sum[:16])
	want := strings.Join([]string{h[0:4], h[4:8], h[8:12], h[12:16], h[16:20], h[20:24], h[24:28], h[28:32]}, ":")
	if got := qlockfmt.Fingerprint(pub); got != want {
		t.Errorf("Fingerprint = %s, want %s", got, want)
	}
}

func TestLockedValue(t *testing.T) {
	blob := fakeLockedValue(t, "db/prod", 9, "alice", "bøb")
	infos, id, v, err := qlockfmt.Recipients(blob)
	if err != nil || id != "db/prod" || v != 9 || len(infos) != 2 || infos[0].Subject != "alice" || infos[1].Subject != "bøb" {
		t.Fatalf("Recipients = %+v, %q, %d, %v", infos, id, v, err)
	}
	parsed, err := qlockfmt.ParseLockedValue(blob)
	if err != nil {
		t.Fatal(err)
	}
	if infos[1].Fingerprint != qlockfmt.FormatFingerprint(parsed.Wraps[1].Fingerprint) || parsed.Find("bøb") != &parsed.Wraps[1] || parsed.Find("carol") != nil {
		t.Error("fingerprint or Find mismatch")
	}
	wantHeader := 16 + 1 + 2 + len("db/prod") + 4 + 2 + 2*(2+16+1120+48) + len("bøb") + len("alice")
	if len(parsed.Header) != wantHeader || len(parsed.Nonce) != 12 || len(parsed.Ciphertext) != 5+16 {
		t.Errorf("header %d (want %d), nonce %d, ciphertext %d", len(parsed.Header), wantHeader, len(parsed.Nonce), len(parsed.Ciphertext))
	}

	// Rebuild a locked value from raw parts to hit each check.
	raw := func(id string, version uint32, count int, subjects []string, tail int) []byte {
		b := append([]byte(qlockfmt.LockedValueLabel), 1)
		b = binary.BigEndian.AppendUint16(b, uint16(len(id)))
		b = append(b, id...)
		b = binary.BigEndian.AppendUint32(b, version)
		b = binary.BigEndian.AppendUint16(b, uint16(count))
		for _, s := range subjects {
			b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
			b = append(b, s...)
			b = append(b, make([]byte, 16+1120+48)...)
		}
		return append(b, make([]byte, tail)...)
	}
	if _, err := qlockfmt.ParseLockedValue(raw("s", 1, 1, []string{"a"}, 28)); err != nil {
		t.Fatalf("minimal value refused: %v", err)
	}
	for _, c := range []struct {
		name string
		blob []byte
	}{
		{"empty", nil},
		{"sealed key label", append([]byte(qlockfmt.SealedKeyLabel), blob[16:]...)},
		{"version 2", append(append([]byte(qlockfmt.LockedValueLabel), 2), blob[17:]...)},
		{"empty secret id", raw("", 1, 1, []string{"a"}, 28)},
		{"secret id not UTF-8", raw("\xc3", 1, 1, []string{"a"}, 28)},
		{"secret id too long", raw(strings.Repeat("s", 1025), 1, 1, []string{"a"}, 28)},
		{"version 0", raw("s", 0, 1, []string{"a"}, 28)},
		{"version 2^31", raw("s", 1<<31, 1, []string{"a"}, 28)},
		{"version 2^32-1", raw("s", ^uint32(0), 1, []string{"a"}, 28)},
		{"no recipients", raw("s", 1, 0, nil, 28)},
		{"count above entries", raw("s", 1, 2, []string{"a"}, 28)},
		{"count 65535", raw("s", 1, 65535, []string{"a"}, 28)},
		{"empty subject", raw("s", 1, 1, []string{""}, 28)},
		{"subject not UTF-8", raw("s", 1, 1, []string{"\xff"}, 28)},
		{"duplicate subject", raw("s", 1, 2, []string{"a", "a"}, 28)},
		{"no nonce", raw("s", 1, 1, []string{"a"}, 0)},
		{"short tag", raw("s", 1, 1, []string{"a"}, 27)},
		{"truncated", blob[:len(blob)-22]},
	} {
		if _, _, _, err := qlockfmt.Recipients(c.blob); !errors.Is(err, qlockfmt.ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", c.name, err)
		}
	}

	w := parsed.Wraps[0]
	for name, args := range map[string]struct {
		id      string
		version int
		wraps   []qlockfmt.Wrap
	}{
		"no wraps":       {"s", 1, nil},
		"duplicate":      {"s", 1, []qlockfmt.Wrap{w, w}},
		"version 0":      {"s", 0, []qlockfmt.Wrap{w}},
		"empty id":       {"", 1, []qlockfmt.Wrap{w}},
		"short enc":      {"s", 1, []qlockfmt.Wrap{{Subject: "a", Enc: w.Enc[1:], WrappedKey: w.WrappedKey}}},
		"empty subject":  {"s", 1, []qlockfmt.Wrap{{Enc: w.Enc, WrappedKey: w.WrappedKey}}},
		"long secret id": {strings.Repeat("s", 1025), 1, []qlockfmt.Wrap{w}},
	} {
		if _, err := qlockfmt.AppendLockedValueHeader(nil, args.id, args.version, args.wraps); err == nil {
			t.Errorf("AppendLockedValueHeader accepted %s", name)
		}
	}
}

// TestVectorFile reads the blobs of qlock's known-answer vectors: what the
// server sees of real values and keys.
func TestVectorFile(t *testing.T) {
	b, err := os.ReadFile("../testdata/vectors_v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var vf struct {
		SealedKeys []struct {
			Name        string `json:"name"`
			PublicKey   string `json:"public_key"`
			Fingerprint string `json:"fingerprint"`
			Sealed      string `json:"sealed"`
		} `json:"sealed_keys"`
		LockedValues []struct {
			SecretID   string `json:"secret_id"`
			Version    int    `json:"version"`
			Recipients []struct {
				Subject     string `json:"subject"`
				Fingerprint string `json:"fingerprint"`
			} `json:"recipients"`
			Locked string `json:"locked"`
		} `json:"locked_values"`
	}
	if err := json.Unmarshal(b, &vf); err != nil {
		t.Fatal(err)
	}
	if len(vf.SealedKeys) == 0 || len(vf.LockedValues) == 0 {
		t.Fatal("no vectors")
	}
	for _, k := range vf.SealedKeys {
		sealed, _ := hex.DecodeString(k.Sealed)
		pub, err := qlockfmt.PublicKeyOf(sealed)
		if err != nil || hex.EncodeToString(pub) != k.PublicKey || qlockfmt.CheckPublicKey(pub) != nil {
			t.Errorf("%s: PublicKeyOf: %v", k.Name, err)
		}
		if qlockfmt.Fingerprint(pub) != k.Fingerprint {
			t.Errorf("%s: fingerprint %s, vector says %s", k.Name, qlockfmt.Fingerprint(pub), k.Fingerprint)
		}
	}
	for _, v := range vf.LockedValues {
		blob, _ := hex.DecodeString(v.Locked)
		infos, id, ver, err := qlockfmt.Recipients(blob)
		if err != nil || id != v.SecretID || ver != v.Version || len(infos) != len(v.Recipients) {
			t.Fatalf("Recipients = %+v, %q, %d, %v", infos, id, ver, err)
		}
		for i, info := range infos {
			if info.Subject != v.Recipients[i].Subject || info.Fingerprint != v.Recipients[i].Fingerprint {
				t.Errorf("recipient %d = %+v, want %+v", i, info, v.Recipients[i])
			}
		}
	}
}
