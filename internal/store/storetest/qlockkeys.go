package storetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// QLockKeyBackend is what an adapter of escrow.QLockKeyStore must provide:
// the suite checks each write's audit record through the AuditLog.
type QLockKeyBackend interface {
	escrow.QLockKeyStore
	escrow.AuditLog
}

// RunQLockKeys runs the conformance suite of escrow.QLockKeyStore; open
// returns a fresh, empty backend for each subtest. Keys are compared as
// JSON, the form the API sees.
func RunQLockKeys(t *testing.T, open func(t *testing.T) QLockKeyBackend) {
	groups := []struct {
		name  string
		tests []qlockKeyTest
	}{
		{"Keys", []qlockKeyTest{
			{"PutAndGet", testQLockKeyPutAndGet},
			{"GetSeveral", testQLockKeysSeveral},
			{"NoSubjects", testQLockKeysNone},
			{"ManySubjects", testQLockKeysMany},
			{"StaleRevision", testQLockKeyStale},
		}},
		{"Concurrency", []qlockKeyTest{
			{"FirstKeyRace", testFirstQLockKeyRace},
			{"KeyChangeRace", testQLockKeyChangeRace},
		}},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tc := range g.tests {
				t.Run(tc.name, func(t *testing.T) {
					tc.fn(t, open(t))
				})
			}
		})
	}
}

type qlockKeyTest struct {
	name string
	fn   func(t *testing.T, b QLockKeyBackend)
}

// actQLockKey is the suite's audit action: the store audits whatever
// record it is given.
const actQLockKey = "qlock.key.put"

// Sizes of a real key: an encoded X-Wing public key, and a private key
// sealed under a password.
const (
	qlockPublicKeySize = 1216
	qlockSealedSize    = 1300
)

// qlockRacers is how many clients race to write one user's key.
const qlockRacers = 16

// randomBytes returns n random bytes: key material has every byte value,
// which a text encoding of binary data would mangle.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails
	return b
}

// qlockFingerprint is a fingerprint of pub in the form people compare:
// the store keeps whatever string it is given.
func qlockFingerprint(pub []byte) string {
	sum := sha256.Sum256(pub)
	h := hex.EncodeToString(sum[:16])
	var groups []string
	for i := 0; i < len(h); i += 4 {
		groups = append(groups, h[i:i+4])
	}
	return strings.Join(groups, ":")
}

// newQLockKey returns subject's first key, with every field set.
func newQLockKey(c *clock, subject string) *escrow.QLockKey {
	now := c.next()
	pub := randomBytes(qlockPublicKeySize)
	return &escrow.QLockKey{
		Subject:     subject,
		PublicKey:   pub,
		Sealed:      randomBytes(qlockSealedSize + len(subject)%7), // sizes vary a little
		Fingerprint: qlockFingerprint(pub),
		CreatedAt:   now,
		UpdatedAt:   now,
		Revision:    1,
	}
}

// resealed returns k's next revision after a QuantumLock password change:
// the same key pair, sealed anew.
func resealed(t *testing.T, c *clock, k *escrow.QLockKey) *escrow.QLockKey {
	t.Helper()
	u := cloneJSON(t, k)
	u.Sealed = randomBytes(qlockSealedSize)
	u.UpdatedAt = c.next()
	u.Revision++
	return u
}

// rekeyed returns k's next revision with a new key pair.
func rekeyed(t *testing.T, c *clock, k *escrow.QLockKey) *escrow.QLockKey {
	t.Helper()
	u := resealed(t, c, k)
	u.PublicKey = randomBytes(qlockPublicKeySize)
	u.Fingerprint = qlockFingerprint(u.PublicKey)
	return u
}

func qlockKeyRecord(ctx context.Context, c *clock, k *escrow.QLockKey) *escrow.AuditRecord {
	rec := escrow.NewAuditRecord(ctx, c.next(), actQLockKey, "user:"+k.Subject)
	rec.Details = map[string]string{"fingerprint": k.Fingerprint, "revision": strconv.FormatInt(k.Revision, 10)}
	return rec
}

// mustPutQLockKey writes k over k.Revision-1 and returns its audit record.
func mustPutQLockKey(t *testing.T, b QLockKeyBackend, ctx context.Context, c *clock, k *escrow.QLockKey) *escrow.AuditRecord {
	t.Helper()
	rec := qlockKeyRecord(ctx, c, k)
	if err := b.PutQLockKey(ctx, k, k.Revision-1, rec); err != nil {
		t.Fatalf("PutQLockKey(%s, rev %d): %v", k.Subject, k.Revision, err)
	}
	return rec
}

// checkQLockKeys reads subjects and checks that the answer holds exactly
// the keys of want that they name, each once, in any order.
func checkQLockKeys(t *testing.T, b QLockKeyBackend, ctx context.Context, what string, subjects []string, want map[string]*escrow.QLockKey) {
	t.Helper()
	got, err := b.GetQLockKeys(ctx, subjects)
	if err != nil {
		t.Fatalf("%s: GetQLockKeys(%d subjects): %v", what, len(subjects), err)
	}
	var exp []string
	for _, sub := range subjects {
		if _, ok := want[sub]; ok && !slices.Contains(exp, sub) {
			exp = append(exp, sub)
		}
	}
	gotSubs := idsOf(got, func(k *escrow.QLockKey) string { return k.Subject })
	if g, w := slices.Sorted(slices.Values(gotSubs)), slices.Sorted(slices.Values(exp)); !slices.Equal(g, w) {
		t.Errorf("%s: GetQLockKeys(%d subjects) = keys of %q, want (in any order) %q", what, len(subjects), g, w)
		return
	}
	for _, k := range got {
		checkJSON(t, fmt.Sprintf("%s: key of %s", what, k.Subject), k, want[k.Subject])
	}
}

// getQLockKey reads one subject's key; nil if there is none.
func getQLockKey(t *testing.T, b QLockKeyBackend, ctx context.Context, subject string) *escrow.QLockKey {
	t.Helper()
	got, err := b.GetQLockKeys(ctx, []string{subject})
	if err != nil {
		t.Fatalf("GetQLockKeys(%s): %v", subject, err)
	}
	switch len(got) {
	case 0:
		return nil
	case 1:
		return got[0]
	}
	t.Fatalf("GetQLockKeys(%s) = %d keys", subject, len(got))
	return nil
}

func testQLockKeyPutAndGet(t *testing.T, b QLockKeyBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	k := newQLockKey(c, "alice")
	recs := []*escrow.AuditRecord{mustPutQLockKey(t, b, ctx, c, k)}
	checkJSON(t, "key after the first put", getQLockKey(t, b, ctx, "alice"), k)

	// A password change reseals the same key pair; a new key pair replaces
	// everything but the creation time.
	reseal := resealed(t, c, k)
	for _, u := range []*escrow.QLockKey{reseal, rekeyed(t, c, reseal)} {
		recs = append(recs, mustPutQLockKey(t, b, ctx, c, u))
		checkJSON(t, fmt.Sprintf("key after the put of revision %d", u.Revision), getQLockKey(t, b, ctx, "alice"), u)
	}

	// Each write's audit record is in the log, whole, and by action.
	got := allAudit(t, b, ctx, escrow.AuditQuery{})
	if len(got) != len(recs) {
		t.Fatalf("audit log has %d records %v, want %d", len(got), auditIDs(got), len(recs))
	}
	for i, w := range recs {
		if d := diffRecord(got[len(got)-1-i], w); d != "" {
			t.Errorf("audit record %d: %s", i, d)
		}
	}
	want := auditIDs(recs)
	slices.Reverse(want)
	if byAction := auditOf(t, b, ctx, escrow.AuditQuery{Action: actQLockKey}); !slices.Equal(byAction, want) {
		t.Errorf("QueryAudit(Action) = %v, want %v", byAction, want)
	}
}

func testQLockKeysSeveral(t *testing.T, b QLockKeyBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	keys := map[string]*escrow.QLockKey{}
	for _, sub := range []string{"alice", "bob", "carol@example.com", "auth0|5f7c1e", `ünï "quoted" #1`} {
		k := newQLockKey(c, sub)
		if sub == "bob" {
			k.Sealed = nil // a key whose private half the server does not keep
		}
		mustPutQLockKey(t, b, ctx, c, k)
		keys[sub] = k
	}
	// bob has a newer revision; dave, "Alice" and "bo" have no key (nor do
	// prefixes or case variants of those that do).
	keys["bob"] = resealed(t, c, keys["bob"])
	mustPutQLockKey(t, b, ctx, c, keys["bob"])

	for _, q := range [][]string{
		{"alice", "bob", "carol@example.com", "auth0|5f7c1e", `ünï "quoted" #1`},
		{"dave", "bob", "Alice", "auth0|5f7c1e", "bo", "carol@example.com "},
		{"carol@example.com"},
		{"alice", "alice", "dave", "alice"}, // a subject named twice comes back once
		{"dave", "Alice", "bo", "auth0", ""},
	} {
		checkQLockKeys(t, b, ctx, fmt.Sprintf("subjects %q", q), q, keys)
	}
}

func testQLockKeysNone(t *testing.T, b QLockKeyBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	check := func(what string) {
		t.Helper()
		for _, q := range [][]string{nil, {}} {
			got, err := b.GetQLockKeys(ctx, q)
			if err != nil || len(got) != 0 {
				t.Errorf("%s: GetQLockKeys(%#v) = %d keys, %v; want none", what, q, len(got), err)
			}
		}
	}
	check("empty store")
	mustPutQLockKey(t, b, ctx, c, newQLockKey(c, "alice"))
	check("one key stored")
}

// testQLockKeysMany names more subjects than one read of some backends
// takes, with keys on both sides of every boundary a backend is likely to
// have (16, 100).
func testQLockKeysMany(t *testing.T, b QLockKeyBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	const n = 150
	subjects := make([]string, n)
	for i := range subjects {
		subjects[i] = fmt.Sprintf("user-%03d", i)
	}
	keys := map[string]*escrow.QLockKey{}
	for _, i := range []int{0, 1, 15, 16, 57, 98, 99, 100, 101, 123, 148, 149} {
		k := newQLockKey(c, subjects[i])
		mustPutQLockKey(t, b, ctx, c, k)
		keys[k.Subject] = k
	}
	checkQLockKeys(t, b, ctx, "150 subjects", subjects, keys)
	rev := slices.Clone(subjects)
	slices.Reverse(rev)
	checkQLockKeys(t, b, ctx, "150 subjects, reversed, some twice", append(rev, subjects[:40]...), keys)
}

func testQLockKeyStale(t *testing.T, b QLockKeyBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	k := newQLockKey(c, "alice")
	ok := []*escrow.AuditRecord{mustPutQLockKey(t, b, ctx, c, k)}
	cur := resealed(t, c, k)
	ok = append(ok, mustPutQLockKey(t, b, ctx, c, cur))

	var refused []string
	ghost := newQLockKey(c, "ghost")
	ghostNext := resealed(t, c, ghost)
	future := resealed(t, c, resealed(t, c, cur))
	for _, tc := range []struct {
		what string
		k    *escrow.QLockKey
		prev int64
	}{
		{"stale revision", resealed(t, c, k), 1},
		{"key exists, prev 0", newQLockKey(c, "alice"), 0},
		{"future revision", future, 3},
		{"no key, prev 1", ghostNext, 1},
	} {
		rec := qlockKeyRecord(ctx, c, tc.k)
		refused = append(refused, rec.ID)
		wantErr(t, "PutQLockKey("+tc.what+")", b.PutQLockKey(ctx, tc.k, tc.prev, rec), escrow.ErrConflict)
	}
	// A revision that skips one breaks the port's rule; the port names no
	// error for it, so any will do, as long as nothing lands.
	skip := resealed(t, c, cur)
	skip.Revision++
	rec := qlockKeyRecord(ctx, c, skip)
	refused = append(refused, rec.ID)
	if err := b.PutQLockKey(ctx, skip, cur.Revision, rec); err == nil {
		t.Errorf("PutQLockKey(revision %d over %d) succeeded", skip.Revision, cur.Revision)
	}

	checkJSON(t, "key after refused writes", getQLockKey(t, b, ctx, "alice"), cur)
	if got := getQLockKey(t, b, ctx, "ghost"); got != nil {
		t.Errorf("GetQLockKeys(ghost) = %+v: a refused write landed", got)
	}
	checkAudit(t, b, ctx, ok...)
	logged := auditOf(t, b, ctx, escrow.AuditQuery{})
	for _, r := range refused {
		if slices.Contains(logged, r) {
			t.Errorf("the audit record %s of a refused write is in the log", r)
		}
	}
}

// qlockRace has qlockRacers clients write their own key for subject over
// prevRevision at once, and checks that exactly one wins, every other gets
// ErrConflict, the store holds the winner's key, and of the racers' audit
// records only the winner's is in the log (beside before's).
func qlockRace(t *testing.T, b QLockKeyBackend, ctx context.Context, c *clock, subject string, prevRevision int64, before []*escrow.AuditRecord) {
	t.Helper()
	keys := make([]*escrow.QLockKey, qlockRacers)
	recs := make([]*escrow.AuditRecord, qlockRacers)
	for i := range qlockRacers {
		keys[i] = newQLockKey(c, subject)
		keys[i].Revision = prevRevision + 1
		recs[i] = qlockKeyRecord(ctx, c, keys[i])
	}
	winner := raceOne(t, qlockRacers, prevRevision, func(i int) error { return b.PutQLockKey(ctx, keys[i], prevRevision, recs[i]) })
	checkJSON(t, "key after the race", getQLockKey(t, b, ctx, subject), keys[winner])
	checkAudit(t, b, ctx, append(slices.Clone(before), recs[winner])...)
}

func testFirstQLockKeyRace(t *testing.T, b QLockKeyBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	qlockRace(t, b, ctx, c, "alice", 0, nil)
}

func testQLockKeyChangeRace(t *testing.T, b QLockKeyBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	k := newQLockKey(c, "alice")
	before := []*escrow.AuditRecord{mustPutQLockKey(t, b, ctx, c, k)}
	k = resealed(t, c, k)
	before = append(before, mustPutQLockKey(t, b, ctx, c, k))
	qlockRace(t, b, ctx, c, "alice", k.Revision, before)
}
