package qlock

import (
	"bytes"
	"crypto/ecdh"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/escrow-pam/escrow/internal/qlock/qlockfmt"
)

func TestKeyRoundTrip(t *testing.T) {
	t.Parallel()
	k, err := GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := k.Seal(nil, []byte("pw"), fastKDF)
	if err != nil {
		t.Fatal(err)
	}
	if len(blob) != qlockfmt.SealedKeySize {
		t.Errorf("sealed key is %d bytes, doc.go says %d", len(blob), qlockfmt.SealedKeySize)
	}
	got, err := OpenPrivateKey(blob, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Public(), k.Public()) || got.seed != k.seed {
		t.Error("opened key differs")
	}
	if err := qlockfmt.CheckPublicKey(k.Public()); err != nil {
		t.Error(err)
	}
	if f := Fingerprint(k.Public()); len(f) != 39 || strings.Count(f, ":") != 7 {
		t.Errorf("fingerprint %q: want 8 colon-separated groups of 4 hex digits", f)
	}
	// Public returns a copy.
	p := k.Public()
	p[20] ^= 1
	if bytes.Equal(p, k.Public()) {
		t.Error("Public exposes the key's own slice")
	}
}

func TestDefaultKDFRoundTrip(t *testing.T) {
	t.Parallel()
	k := testKey("alice")
	blob, err := k.Seal(nil, []byte("a long passphrase"), DefaultKDF)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := qlockfmt.ParseSealedKey(blob)
	if err != nil {
		t.Fatal(err)
	}
	if sealed.KDF != (KDFParams{Time: 3, MemoryKiB: 64 * 1024, Threads: 4}) {
		t.Errorf("stored KDF = %+v, want t=3 m=64MiB p=4", sealed.KDF)
	}
	got, err := OpenPrivateKey(blob, []byte("a long passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Public(), k.Public()) {
		t.Error("opened key differs")
	}
}

func TestWrongPassword(t *testing.T) {
	t.Parallel()
	blob, err := testKey("alice").Seal(nil, []byte("right"), fastKDF)
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{"wrong", "", "right ", "Right"} {
		_, err := OpenPrivateKey(blob, []byte(pw))
		if !errors.Is(err, ErrWrongPassword) || err.Error() != "wrong QuantumLock password" {
			t.Errorf("password %q: err = %v, want exactly ErrWrongPassword", pw, err)
		}
	}
}

func TestSealRefusesBadInput(t *testing.T) {
	t.Parallel()
	k := testKey("alice")
	if _, err := k.Seal(nil, nil, fastKDF); err == nil {
		t.Error("Seal with an empty password succeeded")
	}
	for _, p := range []KDFParams{
		{Time: 0, MemoryKiB: 8192, Threads: 1},
		{Time: 101, MemoryKiB: 8192, Threads: 1},
		{Time: 1, MemoryKiB: 8191, Threads: 1},
		{Time: 1, MemoryKiB: 4*1024*1024 + 1, Threads: 1},
		{Time: 1, MemoryKiB: 8192, Threads: 0},
	} {
		if _, err := k.Seal(nil, []byte("pw"), p); !errors.Is(err, qlockfmt.ErrKDFParams) {
			t.Errorf("Seal(%+v) = %v, want ErrKDFParams", p, err)
		}
	}
}

func TestReseal(t *testing.T) {
	t.Parallel()
	k := testKey("alice")
	blob, err := k.Seal(nil, []byte("old"), fastKDF)
	if err != nil {
		t.Fatal(err)
	}
	raised := KDFParams{Time: 2, MemoryKiB: 9 * 1024, Threads: 2}
	if _, err := Reseal(nil, blob, []byte("nope"), []byte("new"), raised); err != ErrWrongPassword {
		t.Errorf("Reseal with a wrong old password: %v", err)
	}
	blob2, err := Reseal(nil, blob, []byte("old"), []byte("new"), raised)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := qlockfmt.ParseSealedKey(blob2); s == nil || s.KDF != raised {
		t.Errorf("resealed KDF = %+v, want %+v", s, raised)
	}
	if _, err := OpenPrivateKey(blob2, []byte("old")); err != ErrWrongPassword {
		t.Errorf("old password on the resealed key: %v", err)
	}
	got, err := OpenPrivateKey(blob2, []byte("new"))
	if err != nil || !bytes.Equal(got.Public(), k.Public()) {
		t.Errorf("new password: %v", err)
	}
}

// TestTamperedSealedKey flips one byte in each field: framing gives
// ErrMalformed, anything else exactly ErrWrongPassword (no finer oracle).
func TestTamperedSealedKey(t *testing.T) {
	t.Parallel()
	blob, err := testKey("alice").Seal(nil, []byte("pw"), fastKDF)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		off  int
		xor  byte
		want error
	}{
		{"label", 0, 1, ErrMalformed},
		{"version", 16, 1, ErrMalformed},
		{"time out of range", 20, 1, ErrMalformed},    // 1 -> 0
		{"time in range", 20, 2, ErrWrongPassword},    // 1 -> 3
		{"memory in range", 23, 1, ErrWrongPassword},  // 8192 -> 8448 KiB
		{"memory out of range", 21, 1, ErrMalformed},  // +16 GiB
		{"threads in range", 25, 2, ErrWrongPassword}, // 1 -> 3
		{"threads out of range", 25, 1, ErrMalformed}, // 1 -> 0
		{"salt first", 26, 1, ErrWrongPassword},
		{"salt last", 41, 0x80, ErrWrongPassword},
		{"nonce first", 42, 1, ErrWrongPassword},
		{"nonce last", 65, 1, ErrWrongPassword},
		{"public key label", 66, 1, ErrMalformed},
		{"public key version", 82, 1, ErrMalformed},
		{"public key ML-KEM", 83, 1, ErrWrongPassword},
		{"public key X25519", 1298, 1, ErrWrongPassword},
		{"ciphertext", 1299, 1, ErrWrongPassword},
		{"tag", len(blob) - 1, 1, ErrWrongPassword},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := bytes.Clone(blob)
			b[c.off] ^= c.xor
			_, err := OpenPrivateKey(b, []byte("pw"))
			if c.want == ErrWrongPassword {
				if err != ErrWrongPassword {
					t.Errorf("err = %v, want exactly ErrWrongPassword", err)
				}
			} else if !errors.Is(err, c.want) {
				t.Errorf("err = %v, want %v", err, c.want)
			}
		})
	}
	for _, n := range []int{0, 16, 17, 1298, len(blob) - 1, len(blob) + 1} {
		b := append(bytes.Clone(blob), 0)[:n]
		if _, err := OpenPrivateKey(b, []byte("pw")); !errors.Is(err, ErrMalformed) {
			t.Errorf("length %d: err = %v, want ErrMalformed", n, err)
		}
	}
}

// TestSealedKeyKDFBounds: a hostile blob cannot make the opener run a huge
// Argon2id; it is refused before any derivation.
func TestSealedKeyKDFBounds(t *testing.T) {
	t.Parallel()
	blob, err := testKey("alice").Seal(nil, []byte("pw"), fastKDF)
	if err != nil {
		t.Fatal(err)
	}
	set := func(time, mem uint32, threads uint8) []byte {
		b := bytes.Clone(blob)
		binary.BigEndian.PutUint32(b[17:], time)
		binary.BigEndian.PutUint32(b[21:], mem)
		b[25] = threads
		return b
	}
	for _, c := range []struct {
		name      string
		time, mem uint32
		threads   uint8
	}{
		{"memory above 4 GiB", 1, 4*1024*1024 + 1, 1},
		{"memory max uint32", 1, ^uint32(0), 1},
		{"memory below 8 MiB", 1, 8*1024 - 1, 1},
		{"time above 100", 101, 8192, 1},
		{"time max uint32", ^uint32(0), 8192, 1},
		{"time zero", 0, 8192, 1},
		{"no threads", 1, 8192, 0},
	} {
		_, err := OpenPrivateKey(set(c.time, c.mem, c.threads), []byte("pw"))
		if !errors.Is(err, ErrMalformed) || !errors.Is(err, qlockfmt.ErrKDFParams) {
			t.Errorf("%s: err = %v, want ErrMalformed and ErrKDFParams", c.name, err)
		}
	}
	// The bounds themselves are accepted by the parser (not run here: 4 GiB).
	if _, err := qlockfmt.ParseSealedKey(set(100, 4*1024*1024, 255)); err != nil {
		t.Errorf("upper bounds refused: %v", err)
	}
}

func TestPrivateKeyDoesNotPrintSeed(t *testing.T) {
	t.Parallel()
	k := testKey("alice")
	seedHex := hex.EncodeToString(k.seed[:])
	want := "qlock.PrivateKey(" + Fingerprint(k.Public()) + ")"
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q"} {
		s := fmt.Sprintf(verb, k)
		if s != want || strings.Contains(s, seedHex) {
			t.Errorf("Sprintf(%q) = %q, want %q", verb, s, want)
		}
	}
	if s := fmt.Sprintf("%v", struct{ K *PrivateKey }{k}); strings.Contains(s, seedHex) || !strings.Contains(s, want) {
		t.Errorf("nested %%v = %q", s)
	}
}

func lockTo(t *testing.T, secretID string, version int, plaintext string, names ...string) []byte {
	t.Helper()
	var rs []Recipient
	for _, n := range names {
		rs = append(rs, Recipient{Subject: n, Key: testKey(n).Public()})
	}
	blob, err := Lock(nil, secretID, version, []byte(plaintext), rs)
	if err != nil {
		t.Fatal(err)
	}
	return blob
}

func TestLockOpenRoundTrip(t *testing.T) {
	t.Parallel()
	blob := lockTo(t, "s1", 3, "p@ss", "alice", "bob", "carol")
	for _, n := range []string{"alice", "bob", "carol"} {
		pt, err := Open(blob, "s1", 3, n, testKey(n))
		if err != nil || string(pt) != "p@ss" {
			t.Errorf("Open as %s = %q, %v", n, pt, err)
		}
	}
	// Two locks of the same value share nothing but the framing.
	blob2 := lockTo(t, "s1", 3, "p@ss", "alice", "bob", "carol")
	if bytes.Equal(blob, blob2) {
		t.Error("two Locks gave the same blob")
	}
	infos, id, v, err := qlockfmt.Recipients(blob)
	if err != nil || id != "s1" || v != 3 || len(infos) != 3 || infos[1].Subject != "bob" || infos[1].Fingerprint != Fingerprint(testKey("bob").Public()) {
		t.Errorf("Recipients = %+v, %q, %d, %v", infos, id, v, err)
	}
	// Large plaintext.
	big := strings.Repeat("x", 1<<20)
	pt, err := Open(lockTo(t, "s1", 1, big, "alice"), "s1", 1, "alice", testKey("alice"))
	if err != nil || string(pt) != big {
		t.Errorf("1 MiB round trip: %v", err)
	}
}

// offsets locates the fields of a locked value for the tamper tests.
type offsets struct {
	id, version, count            int
	subject, fp, enc, wrapped     []int
	nonce, ciphertext, tag, total int
}

func locate(t *testing.T, blob []byte) offsets {
	t.Helper()
	v, err := qlockfmt.ParseLockedValue(blob)
	if err != nil {
		t.Fatal(err)
	}
	o := offsets{id: 19, version: 19 + len(v.SecretID), count: 23 + len(v.SecretID)}
	off := o.count + 2
	for _, w := range v.Wraps {
		o.subject = append(o.subject, off+2)
		off += 2 + len(w.Subject)
		o.fp = append(o.fp, off)
		o.enc = append(o.enc, off+qlockfmt.FingerprintSize)
		o.wrapped = append(o.wrapped, off+qlockfmt.FingerprintSize+qlockfmt.XWingCiphertextSize)
		off += qlockfmt.FingerprintSize + qlockfmt.XWingCiphertextSize + qlockfmt.WrappedKeySize
	}
	o.nonce, o.ciphertext, o.tag, o.total = off, off+qlockfmt.ValueNonceSize, len(blob)-qlockfmt.TagSize, len(blob)
	if o.nonce != len(v.Header) {
		t.Fatalf("layout: nonce at %d, header is %d bytes", o.nonce, len(v.Header))
	}
	return o
}

func TestTamperedValue(t *testing.T) {
	t.Parallel()
	blob := lockTo(t, "s1", 3, "p@ss", "alice", "bob")
	o := locate(t, blob)
	alice := testKey("alice")
	for _, c := range []struct {
		name string
		off  int
		want error
	}{
		{"label", 0, ErrMalformed},
		{"format version", 16, ErrMalformed},
		{"secret id length", 17, ErrMalformed},
		{"secret id", o.id, ErrTampered},
		{"secret version", o.version + 3, ErrTampered},
		{"recipient count", o.count + 1, ErrMalformed},
		{"own subject", o.subject[0], ErrNotRecipient},
		{"own fingerprint", o.fp[0], ErrNotRecipient},
		{"own enc ML-KEM part", o.enc[0], ErrTampered},
		{"own enc X25519 part", o.enc[0] + qlockfmt.XWingCiphertextSize - 1, ErrTampered},
		{"own wrapped key", o.wrapped[0], ErrTampered},
		{"own wrap tag", o.wrapped[0] + qlockfmt.WrappedKeySize - 1, ErrTampered},
		{"other's subject", o.subject[1], ErrTampered},
		{"other's fingerprint", o.fp[1], ErrTampered},
		{"other's enc", o.enc[1] + 100, ErrTampered},
		{"other's wrapped key", o.wrapped[1], ErrTampered},
		{"nonce", o.nonce, ErrTampered},
		{"nonce last", o.nonce + qlockfmt.ValueNonceSize - 1, ErrTampered},
		{"ciphertext", o.ciphertext, ErrTampered},
		{"tag", o.tag, ErrTampered},
		{"tag last", o.total - 1, ErrTampered},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := bytes.Clone(blob)
			b[c.off] ^= 1
			pt, err := Open(b, "s1", 3, "alice", alice)
			if !errors.Is(err, c.want) || pt != nil {
				t.Errorf("Open = %q, %v; want %v", pt, err, c.want)
			}
		})
	}
	for _, n := range []int{0, 17, o.count, o.enc[0], o.nonce, o.ciphertext, o.ciphertext + qlockfmt.TagSize - 1} {
		if _, err := Open(blob[:n], "s1", 3, "alice", alice); !errors.Is(err, ErrMalformed) {
			t.Errorf("truncated to %d: err = %v, want ErrMalformed", n, err)
		}
	}
}

// TestMovedValue: a value copied to another secret id or version does not
// open there, whether or not its stored binding is rewritten to match.
func TestMovedValue(t *testing.T) {
	t.Parallel()
	blob := lockTo(t, "s1", 3, "p@ss", "alice")
	alice := testKey("alice")
	for _, c := range []struct {
		id string
		v  int
	}{{"s2", 3}, {"s1", 4}, {"s1", 2}, {"", 3}, {"s1 ", 3}} {
		if _, err := Open(blob, c.id, c.v, "alice", alice); !errors.Is(err, ErrTampered) {
			t.Errorf("opened as (%q, %d): err = %v, want ErrTampered", c.id, c.v, err)
		}
	}
	o := locate(t, blob)
	rewritten := bytes.Clone(blob)
	rewritten[o.id+1] = '2' // "s1" -> "s2"
	if _, err := Open(rewritten, "s2", 3, "alice", alice); !errors.Is(err, ErrTampered) {
		t.Errorf("binding rewritten to s2: err = %v, want ErrTampered", err)
	}
	rewritten = bytes.Clone(blob)
	binary.BigEndian.PutUint32(rewritten[o.version:], 4)
	if _, err := Open(rewritten, "s1", 4, "alice", alice); !errors.Is(err, ErrTampered) {
		t.Errorf("binding rewritten to version 4: err = %v, want ErrTampered", err)
	}
}

// TestRevoke: sharing and revoking are Open + Lock to the new member list
// under a new version; the revoked member cannot open the new blob, neither
// through Open nor with the data key it could unwrap before.
func TestRevoke(t *testing.T) {
	t.Parallel()
	alice, bob := testKey("alice"), testKey("bob")
	v1 := lockTo(t, "s1", 1, "old password", "alice", "bob")
	pt, err := Open(v1, "s1", 1, "alice", alice)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := Lock(nil, "s1", 2, pt, []Recipient{{Subject: "alice", Key: alice.Public()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(v2, "s1", 2, "bob", bob); !errors.Is(err, ErrNotRecipient) {
		t.Errorf("revoked bob opens v2: err = %v, want ErrNotRecipient", err)
	}
	// Bob's old data key, unwrapped from v1, does not open v2.
	parsed1, err := qlockfmt.ParseLockedValue(v1)
	if err != nil {
		t.Fatal(err)
	}
	w := parsed1.Find("bob")
	r, err := suite.NewReceiver(bob.sk, wrapInfo("s1", 1, "bob"))
	if err != nil {
		t.Fatal(err)
	}
	opener, err := r.Setup(w.Enc)
	if err != nil {
		t.Fatal(err)
	}
	oldKey, err := opener.Open(w.WrappedKey, w.Fingerprint[:])
	if err != nil {
		t.Fatal(err)
	}
	parsed2, err := qlockfmt.ParseLockedValue(v2)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := valueAEAD(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := aead.Open(nil, parsed2.Nonce, parsed2.Ciphertext, parsed2.Header); err == nil {
		t.Error("bob's v1 data key opens v2")
	}
	// Nor does splicing bob's v1 wrap into v2: its HPKE info binds version 1.
	header, err := qlockfmt.AppendLockedValueHeader(nil, "s1", 2, append(parsed2.Wraps, *w))
	if err != nil {
		t.Fatal(err)
	}
	spliced := append(append(header, parsed2.Nonce...), parsed2.Ciphertext...)
	if _, err := Open(spliced, "s1", 2, "bob", bob); !errors.Is(err, ErrTampered) {
		t.Errorf("bob opens v2 with his spliced v1 wrap: err = %v, want ErrTampered", err)
	}
	// A member's wrap is bound to their subject: bob cannot use alice's.
	if _, err := Open(v1, "s1", 1, "alice", bob); !errors.Is(err, ErrNotRecipient) {
		t.Errorf("bob opening as alice: %v, want ErrNotRecipient", err)
	}
}

// TestRekeyedMember: a value locked to a member's old key reports
// ErrNotRecipient for the new key, naming both fingerprints.
func TestRekeyedMember(t *testing.T) {
	t.Parallel()
	blob := lockTo(t, "s1", 1, "x", "alice")
	newKey := testKey("alice-rekeyed")
	_, err := Open(blob, "s1", 1, "alice", newKey)
	if !errors.Is(err, ErrNotRecipient) || !strings.Contains(err.Error(), Fingerprint(newKey.Public())) {
		t.Errorf("err = %v", err)
	}
}

// TestLockRefusesNonXWingKeys: a classical or malformed key is an error,
// never a silent downgrade, and nothing is produced for the other members.
func TestLockRefusesNonXWingKeys(t *testing.T) {
	t.Parallel()
	x25519, err := ecdh.X25519().GenerateKey(stream(testBytes("x25519")))
	if err != nil {
		t.Fatal(err)
	}
	good := testKey("alice").Public()
	rawXWing := good[qlockfmt.LabelSize+1:]
	wrongVersion := bytes.Clone(good)
	wrongVersion[qlockfmt.LabelSize] = 2
	wrongLabel := bytes.Clone(good)
	copy(wrongLabel, "escrow/qlock/key")
	badMLKEM := bytes.Clone(good)
	for i := qlockfmt.LabelSize + 1; i < qlockfmt.LabelSize+1+384; i++ {
		badMLKEM[i] = 0xff // coefficients >= q fail the FIPS 203 modulus check
	}
	for name, key := range map[string]PublicKey{
		"nil":              nil,
		"X25519":           x25519.PublicKey().Bytes(),
		"unlabelled XWing": rawXWing,
		"wrong version":    wrongVersion,
		"wrong label":      wrongLabel,
		"truncated":        good[:len(good)-1],
		"extended":         append(bytes.Clone(good), 0),
		"bad ML-KEM key":   badMLKEM,
	} {
		blob, err := Lock(nil, "s1", 1, []byte("v"), []Recipient{
			{Subject: "alice", Key: good},
			{Subject: "mallory", Key: key},
		})
		if !errors.Is(err, ErrInvalidPublicKey) || blob != nil {
			t.Errorf("%s: Lock = %d bytes, %v; want ErrInvalidPublicKey", name, len(blob), err)
		}
	}
}

func TestLockRefusesBadArguments(t *testing.T) {
	t.Parallel()
	alice := Recipient{Subject: "alice", Key: testKey("alice").Public()}
	for _, c := range []struct {
		name    string
		id      string
		version int
		rs      []Recipient
	}{
		{"no recipients", "s1", 1, nil},
		{"duplicate subject", "s1", 1, []Recipient{alice, alice}},
		{"empty subject", "s1", 1, []Recipient{{Subject: "", Key: alice.Key}}},
		{"subject not UTF-8", "s1", 1, []Recipient{{Subject: "\xff", Key: alice.Key}}},
		{"long subject", "s1", 1, []Recipient{{Subject: strings.Repeat("a", qlockfmt.MaxNameSize+1), Key: alice.Key}}},
		{"empty secret id", "", 1, []Recipient{alice}},
		{"long secret id", strings.Repeat("a", qlockfmt.MaxNameSize+1), 1, []Recipient{alice}},
		{"version 0", "s1", 0, []Recipient{alice}},
		{"negative version", "s1", -1, []Recipient{alice}},
		{"version past int32", "s1", qlockfmt.MaxVersion + 1, []Recipient{alice}},
	} {
		if blob, err := Lock(nil, c.id, c.version, []byte("v"), c.rs); err == nil || blob != nil {
			t.Errorf("%s: Lock succeeded", c.name)
		}
	}
	if _, err := Open(lockTo(t, "s1", 1, "v", "alice"), "s1", 1, "alice", nil); err == nil {
		t.Error("Open with a nil key succeeded")
	}
}

// TestZeroPrivateKey: a zero PrivateKey is refused, not dereferenced, even
// against a blob whose fingerprint matches the zero key's.
func TestZeroPrivateKey(t *testing.T) {
	t.Parallel()
	var zero PrivateKey
	if _, err := zero.Seal(nil, []byte("pw"), fastKDF); err == nil {
		t.Error("Seal with a zero key succeeded")
	}
	blob := lockTo(t, "s1", 1, "v", "alice")
	o := locate(t, blob)
	clear(blob[o.fp[0] : o.fp[0]+qlockfmt.FingerprintSize])
	if _, err := Open(blob, "s1", 1, "alice", &zero); err == nil {
		t.Error("Open with a zero key succeeded")
	}
}

func TestDestroyedKeyIsUnusable(t *testing.T) {
	t.Parallel()
	k, err := GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := Lock(nil, "s1", 1, []byte("v"), []Recipient{{Subject: "a", Key: k.Public()}})
	if err != nil {
		t.Fatal(err)
	}
	k.Destroy()
	if k.seed != [len(k.seed)]byte{} {
		t.Fatal("the seed survived Destroy")
	}
	if _, err := Open(blob, "s1", 1, "a", k); err == nil {
		t.Fatal("a destroyed key opened a value")
	}
	if _, err := k.Seal(nil, []byte("pw"), fastKDF); err == nil {
		t.Fatal("a destroyed key was sealed")
	}
	var nilKey *PrivateKey
	nilKey.Destroy()
}
