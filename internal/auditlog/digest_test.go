package auditlog

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

var update = flag.Bool("update", false, "rewrite testdata/digest_v1*.json from goldenDigests")

// goldenKeyID is testSigner's key id, and goldenChainHash the Hash of
// testdata/digest_v1.json. They change only if key derivation, the key id
// formula or the digest encoding changes: each breaks every stored chain.
// Both, the files' signatures, roots and prevHash links were checked once
// outside Go, with pyca/cryptography (OpenSSL's Ed25519 and ML-DSA-65) and
// a Python rebuild of the canonical encoding from doc.go.
const (
	goldenKeyID     = "107bdd308209702dbd08b7f76bd3c5ef"
	goldenChainHash = "7f8149d09848f0dd046050fbb57fdcb612f8b4db2b2dd86b2b6936ab31b3866e"
)

// goldenDigests seals the golden chain: 3 records in [t0, t0+1h), then an
// empty period.
func goldenDigests(t testing.TB) []*SignedDigest {
	t.Helper()
	recs := []*escrow.AuditRecord{newRecord(0, t0), newRecord(1, t0.Add(time.Minute)), newRecord(7, t0.Add(59*time.Minute))}
	first, err := Seal(recs, t0, t0.Add(time.Hour), nil, testSigner)
	mustf(t, err, "seal")
	second, err := Seal(nil, t0.Add(time.Hour), t0.Add(2*time.Hour), first, testSigner)
	mustf(t, err, "seal")
	return []*SignedDigest{first, second}
}

var goldenFiles = []string{"testdata/digest_v1.json", "testdata/digest_v1_empty.json"}

// TestGoldenDigests: Seal is deterministic and its output, byte for byte,
// is the files in testdata; they parse and verify.
func TestGoldenDigests(t *testing.T) {
	if got := testSigner.KeyID(); got != goldenKeyID {
		t.Errorf("KeyID = %s, want %s", got, goldenKeyID)
	}
	chain := goldenDigests(t)
	if h := mustHash(t, chain[0]); hex.EncodeToString(h[:]) != goldenChainHash {
		t.Errorf("Hash(digest 0) = %x, want %s", h, goldenChainHash)
	}
	if chain[1].PrevHash != mustHash(t, chain[0]) {
		t.Errorf("digest 1 does not link to digest 0")
	}
	for i, sd := range chain {
		b, err := sd.Marshal()
		mustf(t, err, "marshal")
		if *update {
			mustf(t, os.WriteFile(goldenFiles[i], b, 0o644), "write")
		}
		want, err := os.ReadFile(goldenFiles[i])
		mustf(t, err, "read")
		if !bytes.Equal(b, want) {
			t.Errorf("%s: Seal gives different bytes (run with -update only if the format change is intended):\n got %s\nwant %s", goldenFiles[i], b, want)
		}
		parsed, err := ParseSignedDigest(want)
		mustf(t, err, "parse %s", goldenFiles[i])
		if err := VerifyDigest(parsed, testSigner.PublicKeys()); err != nil {
			t.Errorf("%s does not verify: %v", goldenFiles[i], err)
		}
	}
}

// TestCanonicalDigestLayout assembles the canonical encoding by hand from
// the layout in doc.go.
func TestCanonicalDigestLayout(t *testing.T) {
	t.Parallel()
	h := seedOf("leaf")
	d := &Digest{
		Seq:      258,
		From:     time.Unix(1_800_000_000, 5).UTC(),
		To:       time.Unix(1_800_003_600, 0).UTC(),
		Count:    1,
		FirstID:  "AB",
		LastID:   "AB",
		Root:     seedOf("root"),
		PrevHash: seedOf("prev"),
		Leaves:   []Leaf{{ID: "AB", Hash: h}},
	}
	var want []byte
	want = append(want, 0x01)                            // version
	want = append(want, 0, 0, 0, 0, 0, 0, 0x01, 0x02)    // seq 258
	want = append(want, be64(1_800_000_000)...)          // from seconds
	want = append(want, 0, 0, 0, 5)                      // from nanoseconds
	want = append(want, be64(1_800_003_600)...)          // to seconds
	want = append(want, 0, 0, 0, 0)                      // to nanoseconds
	want = append(want, be64(1)...)                      // count
	want = append(want, 0, 2, 'A', 'B', 0, 2, 'A', 'B')  // first and last ID
	want = append(want, d.Root[:]...)                    // root
	want = append(want, d.PrevHash[:]...)                // prevHash
	want = append(append(want, 0, 2, 'A', 'B'), h[:]...) // the leaf
	got, err := d.Canonical()
	mustf(t, err, "canonical")
	if !bytes.Equal(got, want) {
		t.Fatalf("canonical:\n got %x\nwant %x", got, want)
	}
}

func TestCanonicalDigestRefuses(t *testing.T) {
	tests := map[string]func(d *Digest){
		"negative seq":   func(d *Digest) { d.Seq = -1 },
		"count mismatch": func(d *Digest) { d.Count++ },
		"long id":        func(d *Digest) { d.Leaves[0].ID = strings.Repeat("x", MaxIDLen+1) },
		"invalid utf-8":  func(d *Digest) { d.LastID = "\xff" },
		"year 10000":     func(d *Digest) { d.To = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, ds := testLog(t, 2)
			d := ds[0].clone()
			mutate(&d)
			if _, err := d.Canonical(); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Canonical = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestNewSignerIsDeterministic(t *testing.T) {
	t.Parallel()
	a, b := NewSigner(seedOf("x")), NewSigner(seedOf("x"))
	if a.KeyID() != b.KeyID() || !a.PublicKeys().MLDSA65.Equal(b.PublicKeys().MLDSA65) || !a.PublicKeys().Ed25519.Equal(b.PublicKeys().Ed25519) {
		t.Fatal("one seed gave two key pairs")
	}
	if NewSigner(seedOf("y")).KeyID() == a.KeyID() {
		t.Fatal("two seeds gave one key id")
	}
	seed := seedOf("x")
	g, err := GenerateSigner(bytes.NewReader(seed[:]))
	mustf(t, err, "generate")
	if g.KeyID() != a.KeyID() {
		t.Fatal("GenerateSigner does not derive like NewSigner")
	}
	if _, err := GenerateSigner(bytes.NewReader(nil)); err == nil {
		t.Fatal("GenerateSigner with an empty reader succeeded")
	}
	if r, err := GenerateSigner(nil); err != nil || r.KeyID() == a.KeyID() {
		t.Fatalf("GenerateSigner(nil) = %v, %v", r, err)
	}
	for _, s := range []string{a.String(), a.GoString()} {
		if !strings.Contains(s, a.KeyID()) || len(s) > 64 {
			t.Errorf("Signer formats as %q, want only its key id", s)
		}
	}
}

func TestPublicKeysRoundTrip(t *testing.T) {
	t.Parallel()
	keys := testSigner.PublicKeys()
	b, err := keys.Marshal()
	mustf(t, err, "marshal")
	got, err := ParsePublicKeys(b)
	mustf(t, err, "parse")
	if got.KeyID() != keys.KeyID() {
		t.Fatal("keys changed in a round trip")
	}
	other, err := otherSigner.PublicKeys().Marshal()
	mustf(t, err, "marshal")
	hostile := map[string][]byte{
		"other key id": bytes.Replace(b, []byte(keys.KeyID()), []byte(otherSigner.KeyID()), 1),
		"mixed keys":   append(append([]byte(nil), b[:bytes.Index(b, []byte(`"mldsa65"`))]...), other[bytes.Index(other, []byte(`"mldsa65"`)):]...),
		"no newline":   bytes.TrimSuffix(b, []byte("\n")),
		"empty":        nil,
		"only ed25519": []byte(`{"keyId":"` + keys.KeyID() + `","ed25519":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}` + "\n"),
	}
	for name, b := range hostile {
		if _, err := ParsePublicKeys(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ParsePublicKeys = %v, want ErrMalformed", name, err)
		}
	}
	if _, err := (PublicKeys{Ed25519: keys.Ed25519}).Marshal(); !errors.Is(err, ErrMalformed) {
		t.Errorf("Marshal of an Ed25519-only key = %v, want ErrMalformed", err)
	}
}

// TestVerifyDigest: both signatures must verify, over exactly the signed
// content, by exactly the given keys.
func TestVerifyDigest(t *testing.T) {
	_, ds := testLog(t, 3, 0)
	keys := testSigner.PublicKeys()
	good := ds[0]
	if err := VerifyDigest(good, keys); err != nil {
		t.Fatalf("VerifyDigest(good) = %v", err)
	}
	// forged re-signs altered content with testSigner, then puts back the
	// original signature of one algorithm: an attacker who broke only the
	// other algorithm.
	forged := func(keepOld func(new, old *SignedDigest)) *SignedDigest {
		d := good.clone()
		d.Leaves[1].Hash[0] ^= 1
		sd := resign(t, testSigner, &d)
		keepOld(sd, good)
		return sd
	}
	tests := []struct {
		name string
		sd   *SignedDigest
		keys PublicKeys
		want error
	}{
		{"Ed25519 bit flipped", mutated(good, func(sd *SignedDigest) { sd.Ed25519Sig[7] ^= 0x10 }), keys, ErrSignature},
		{"ML-DSA-65 bit flipped", mutated(good, func(sd *SignedDigest) { sd.MLDSA65Sig[1000] ^= 0x10 }), keys, ErrSignature},
		{"only Ed25519 forged", forged(func(n, o *SignedDigest) { n.MLDSA65Sig = o.MLDSA65Sig }), keys, ErrSignature},
		{"only ML-DSA-65 forged", forged(func(n, o *SignedDigest) { n.Ed25519Sig = o.Ed25519Sig }), keys, ErrSignature},
		{"signatures swapped between digests", mutated(good, func(sd *SignedDigest) { sd.Ed25519Sig = ds[1].Ed25519Sig }), keys, ErrSignature},
		{"another signer", resign(t, otherSigner, ptr(good.clone())), keys, ErrSignature},
		{"another signer, our key id", mutated(resign(t, otherSigner, ptr(good.clone())), func(sd *SignedDigest) { sd.KeyID = testSigner.KeyID() }), keys, ErrSignature},
		{"our signatures, another key id", mutated(good, func(sd *SignedDigest) { sd.KeyID = otherSigner.KeyID() }), keys, ErrSignature},
		{"verified with another key", good, otherSigner.PublicKeys(), ErrSignature},
		{"Ed25519 key only", good, PublicKeys{Ed25519: keys.Ed25519}, ErrSignature},
		{"ML-DSA-65 key only", good, PublicKeys{MLDSA65: keys.MLDSA65}, ErrSignature},
		{"mixed keys", good, PublicKeys{Ed25519: keys.Ed25519, MLDSA65: otherSigner.PublicKeys().MLDSA65}, ErrSignature},
		{"seq changed", mutated(good, func(sd *SignedDigest) { sd.Seq = 5 }), keys, ErrSignature},
		{"period moved", mutated(good, func(sd *SignedDigest) { sd.From, sd.To = sd.From.Add(time.Hour), sd.To.Add(time.Hour) }), keys, ErrSignature},
		{"prevHash changed", mutated(good, func(sd *SignedDigest) { sd.PrevHash[0] = 1 }), keys, ErrSignature},
		{"leaf changed", mutated(good, func(sd *SignedDigest) { sd.Leaves[0].Hash[0] ^= 1 }), keys, ErrMalformed},
		{"leaf changed, root fixed", mutated(good, func(sd *SignedDigest) { sd.Leaves[0].Hash[0] ^= 1; sd.Root = leavesRoot(sd.Leaves) }), keys, ErrSignature},
		{"leaf dropped", mutated(good, func(sd *SignedDigest) { sd.Leaves = sd.Leaves[:2] }), keys, ErrMalformed},
		{"leaves reordered", mutated(good, func(sd *SignedDigest) { sd.Leaves[0], sd.Leaves[1] = sd.Leaves[1], sd.Leaves[0] }), keys, ErrMalformed},
		{"from after to", mutated(good, func(sd *SignedDigest) { sd.From = sd.To }), keys, ErrMalformed},
		{"short signature", mutated(good, func(sd *SignedDigest) { sd.MLDSA65Sig = sd.MLDSA65Sig[:100] }), keys, ErrMalformed},
		{"nil", nil, keys, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := VerifyDigest(tt.sd, tt.keys); !errors.Is(err, tt.want) {
				t.Fatalf("VerifyDigest = %v, want %v", err, tt.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// mutated returns a deep copy of sd changed by f.
func mutated(sd *SignedDigest, f func(*SignedDigest)) *SignedDigest {
	c := cloneDigests([]*SignedDigest{sd})[0]
	f(c)
	return c
}

func TestSignRefusesInconsistentDigests(t *testing.T) {
	t.Parallel()
	_, ds := testLog(t, 2)
	d := ds[0].clone()
	d.Root[0] ^= 1
	if _, err := testSigner.Sign(&d); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Sign(bad root) = %v, want ErrMalformed", err)
	}
	if _, err := testSigner.Sign(nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Sign(nil) = %v, want ErrMalformed", err)
	}
}

func TestMarshalParseRoundTrip(t *testing.T) {
	t.Parallel()
	_, ds := testLog(t, 3, 0, 1)
	for _, sd := range ds {
		b, err := sd.Marshal()
		mustf(t, err, "marshal")
		got, err := ParseSignedDigest(b)
		mustf(t, err, "parse")
		if !reflect.DeepEqual(got, sd) {
			t.Fatalf("digest %d changed in a round trip", sd.Seq)
		}
		if mustHash(t, got) != mustHash(t, sd) {
			t.Fatalf("digest %d hash changed in a round trip", sd.Seq)
		}
	}
}

// TestHostileDigestFiles: every file in testdata/hostile is refused with
// ErrMalformed.
func TestHostileDigestFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/hostile/*")
	mustf(t, err, "glob")
	if len(files) < 15 {
		t.Fatalf("only %d hostile files", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			b, err := os.ReadFile(f)
			mustf(t, err, "read")
			sd, err := ParseSignedDigest(b)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseSignedDigest = %+v, %v; want ErrMalformed", sd, err)
			}
		})
	}
}

// FuzzParseSignedDigest: no input panics; what parses is canonical (it
// marshals back to the input), and verifying it gives nil, ErrMalformed or
// ErrSignature.
func FuzzParseSignedDigest(f *testing.F) {
	seeds, err := filepath.Glob("testdata/hostile/*")
	if err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, goldenFiles...)
	for _, name := range seeds {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		for _, n := range []int{0, 1, len(b) / 2, len(b) - 2} {
			if n >= 0 && n < len(b) {
				f.Add(b[:n])
			}
		}
	}
	keys := testSigner.PublicKeys()
	f.Fuzz(func(t *testing.T, b []byte) {
		sd, err := ParseSignedDigest(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseSignedDigest error %v is not ErrMalformed", err)
			}
			return
		}
		again, err := sd.Marshal()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("parsed digest marshals to %q, %v; input %q", again, err, b)
		}
		if err := VerifyDigest(sd, keys); err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrSignature) {
			t.Fatalf("VerifyDigest = %v", err)
		}
		if _, err := sd.Hash(); err != nil {
			t.Fatalf("Hash of a parsed digest = %v", err)
		}
	})
}

func TestHashCoversSignatures(t *testing.T) {
	t.Parallel()
	_, ds := testLog(t, 1)
	h := mustHash(t, ds[0])
	for name, f := range map[string]func(*SignedDigest){
		"ed25519": func(sd *SignedDigest) { sd.Ed25519Sig[0] ^= 1 },
		"mldsa65": func(sd *SignedDigest) { sd.MLDSA65Sig[0] ^= 1 },
		"key id":  func(sd *SignedDigest) { sd.KeyID = otherSigner.KeyID() },
		"leaf":    func(sd *SignedDigest) { sd.Leaves[0].Hash[0] ^= 1 },
	} {
		if mustHash(t, mutated(ds[0], f)) == h {
			t.Errorf("changing the %s does not change the chain hash", name)
		}
	}
	if hex.EncodeToString(h[:]) == strings.Repeat("0", 64) {
		t.Fatal("zero hash")
	}
}
