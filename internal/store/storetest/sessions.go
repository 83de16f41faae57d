package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// SessionBackend is what an adapter of escrow.SessionStore must provide:
// the suite checks each write's audit record through the AuditLog.
type SessionBackend interface {
	escrow.SessionStore
	escrow.AuditLog
}

// RunSessions runs the conformance suite of escrow.SessionStore; open
// returns a fresh, empty backend for each subtest. Sessions are compared as
// JSON, the form the stores keep, and their times with time.Equal.
func RunSessions(t *testing.T, open func(t *testing.T) SessionBackend) {
	groups := []struct {
		name  string
		tests []sessionTest
	}{
		{"Sessions", []sessionTest{
			{"CreateAndGet", testSessionCreateAndGet},
			{"Duplicate", testSessionDuplicate},
			{"Expired", testSessionExpired},
			{"Many", testSessionsMany},
		}},
		{"Delete", []sessionTest{
			{"DeleteAndRecreate", testSessionDelete},
			{"Missing", testSessionDeleteMissing},
		}},
		{"Concurrency", []sessionTest{
			{"CreateRace", testSessionCreateRace},
			{"DeleteRace", testSessionDeleteRace},
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

type sessionTest struct {
	name string
	fn   func(t *testing.T, b SessionBackend)
}

// sessionRacers is how many clients race on one session.
const sessionRacers = 16

// sessionTTL is the fixtures' session lifetime.
const sessionTTL = 8 * time.Hour

// newSessionClock starts at the real now, not at base: stores may purge a
// session some time after its Expires (DynamoDB's TTL does, on its own
// clock), so the suite's sessions must be live, or expired only recently,
// by the wall clock. It stays millisecond-precise, like base.
func newSessionClock() *clock {
	return &clock{t: time.Now().UTC().Truncate(time.Millisecond)}
}

// sessionHash is the key of the session whose cookie holds id: its hex
// SHA-256, as the port says.
func sessionHash(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

// newSession returns a session of p, signed in a minute before it was
// created, expiring sessionTTL after.
func newSession(c *clock, cookie string, p *escrow.Principal) *escrow.Session {
	now := c.next()
	return &escrow.Session{
		IDHash: sessionHash(cookie),
		Principal: escrow.Principal{
			Subject: p.Subject,
			Email:   p.Email,
			Name:    p.Name,
			Groups:  slices.Clone(p.Groups),
			Roles:   slices.Clone(p.Roles),
		},
		AuthTime: now.Add(-time.Minute),
		Created:  now,
		Expires:  now.Add(sessionTTL),
	}
}

func sessionRecord(ctx context.Context, c *clock, action string, sess *escrow.Session) *escrow.AuditRecord {
	return escrow.NewAuditRecord(ctx, c.next(), action, "user:"+sess.Principal.Subject)
}

// mustCreateSession stores sess and returns its audit record.
func mustCreateSession(t *testing.T, b SessionBackend, ctx context.Context, c *clock, sess *escrow.Session) *escrow.AuditRecord {
	t.Helper()
	rec := sessionRecord(ctx, c, escrow.ActionSessionLogin, sess)
	if err := b.CreateSession(ctx, sess, rec); err != nil {
		t.Fatalf("CreateSession(%s): %v", sess.Principal.Subject, err)
	}
	return rec
}

// mustDeleteSession deletes sess and returns its audit record.
func mustDeleteSession(t *testing.T, b SessionBackend, ctx context.Context, c *clock, sess *escrow.Session) *escrow.AuditRecord {
	t.Helper()
	rec := sessionRecord(ctx, c, escrow.ActionSessionLogout, sess)
	if err := b.DeleteSession(ctx, sess.IDHash, rec); err != nil {
		t.Fatalf("DeleteSession(%s): %v", sess.Principal.Subject, err)
	}
	return rec
}

// checkSession reads the session keyed by want.IDHash and checks it is
// want: whole as JSON, and each time by time.Equal.
func checkSession(t *testing.T, b SessionBackend, ctx context.Context, what string, want *escrow.Session) {
	t.Helper()
	got, err := b.GetSession(ctx, want.IDHash)
	if err != nil {
		t.Fatalf("%s: GetSession: %v", what, err)
	}
	checkJSON(t, what+": GetSession", got, want)
	for _, f := range []struct {
		name      string
		got, want time.Time
	}{
		{"AuthTime", got.AuthTime, want.AuthTime},
		{"Created", got.Created, want.Created},
		{"Expires", got.Expires, want.Expires},
	} {
		if !f.got.Equal(f.want) {
			t.Errorf("%s: GetSession: %s = %v, want %v", what, f.name, f.got, f.want)
		}
	}
}

func wantNoSession(t *testing.T, b SessionBackend, ctx context.Context, what, idHash string) {
	t.Helper()
	_, err := b.GetSession(ctx, idHash)
	wantErr(t, fmt.Sprintf("GetSession(%.12q, %s)", idHash, what), err, escrow.ErrNotFound)
}

func testSessionCreateAndGet(t *testing.T, b SessionBackend) {
	ctx, c := ctxFor(t, alice), newSessionClock()
	full := newSession(c, "cookie-1", &escrow.Principal{
		Subject: "alice",
		Email:   "alice@example.com",
		Name:    `Alice "Ops" Ünïcode <&>`,
		Groups:  []string{"dba", "ops", "group with spaces"},
		Roles:   []string{escrow.RoleAdmin, escrow.RoleAuditor},
	})
	wantNoSession(t, b, ctx, "empty store", full.IDHash)
	recs := []*escrow.AuditRecord{mustCreateSession(t, b, ctx, c, full)}
	checkSession(t, b, ctx, "full session", full)

	// A bare principal: no email, name, groups or roles (nil reads back
	// nil), and an AuthTime equal to Created.
	bare := newSession(c, "cookie-2", &escrow.Principal{Subject: "svc-bob"})
	bare.AuthTime = bare.Created
	recs = append(recs, mustCreateSession(t, b, ctx, c, bare))
	checkSession(t, b, ctx, "bare session", bare)
	checkSession(t, b, ctx, "full session beside another", full)

	// Only the exact hash finds a session.
	for _, other := range []string{
		sessionHash("cookie-3"), full.IDHash[:63], full.IDHash + "0",
		"ABCDEF" + full.IDHash[6:], "cookie-1", "",
	} {
		wantNoSession(t, b, ctx, "other hash", other)
	}

	// Each write's audit record is in the log, whole, and by action.
	all := allAudit(t, b, ctx, escrow.AuditQuery{})
	if len(all) != len(recs) {
		t.Fatalf("audit log has %d records %v, want %d", len(all), auditIDs(all), len(recs))
	}
	for i, w := range recs {
		if d := diffRecord(all[len(all)-1-i], w); d != "" {
			t.Errorf("audit record %d: %s", i, d)
		}
	}
	want := auditIDs(recs)
	slices.Reverse(want)
	if byAction := auditOf(t, b, ctx, escrow.AuditQuery{Action: escrow.ActionSessionLogin}); !slices.Equal(byAction, want) {
		t.Errorf("QueryAudit(Action) = %v, want %v", byAction, want)
	}
}

func testSessionDuplicate(t *testing.T, b SessionBackend) {
	ctx, c := ctxFor(t, alice), newSessionClock()
	first := newSession(c, "cookie", alice)
	ok := mustCreateSession(t, b, ctx, c, first)

	// The same hash for another user, even an otherwise identical
	// session, is refused whole: the stored session stays, and the
	// refused audit record is not in the log.
	other := newSession(c, "cookie", &escrow.Principal{Subject: "mallory", Roles: []string{escrow.RoleAdmin}})
	var refused []string
	for _, dup := range []*escrow.Session{other, first} {
		rec := sessionRecord(ctx, c, escrow.ActionSessionLogin, dup)
		refused = append(refused, rec.ID)
		wantErr(t, "CreateSession(same hash as "+dup.Principal.Subject+")", b.CreateSession(ctx, dup, rec), escrow.ErrConflict)
	}
	checkSession(t, b, ctx, "after refused duplicates", first)
	checkAudit(t, b, ctx, ok)
	checkRefused(t, b, ctx, refused)
}

// testSessionExpired checks that a session past its Expires is still
// returned (the caller checks the clock) and still deleted, also after
// later writes.
func testSessionExpired(t *testing.T, b SessionBackend) {
	ctx, c := ctxFor(t, alice), newSessionClock()
	expired := newSession(c, "expired", alice)
	expired.AuthTime = expired.Created.Add(-2 * time.Hour)
	expired.Expires = expired.Created.Add(-time.Hour)
	ok := []*escrow.AuditRecord{mustCreateSession(t, b, ctx, c, expired)}
	checkSession(t, b, ctx, "expired session", expired)

	live := newSession(c, "live", alice)
	ok = append(ok, mustCreateSession(t, b, ctx, c, live))
	checkSession(t, b, ctx, "expired session after another login", expired)
	checkSession(t, b, ctx, "live session", live)

	ok = append(ok, mustDeleteSession(t, b, ctx, c, expired))
	wantNoSession(t, b, ctx, "deleted expired session", expired.IDHash)
	checkSession(t, b, ctx, "live session after the delete", live)
	checkAudit(t, b, ctx, ok...)
}

// testSessionsMany checks that sessions, of one user and of several, are
// independent: each reads back its own, and deleting some leaves the
// others.
func testSessionsMany(t *testing.T, b SessionBackend) {
	ctx, c := ctxFor(t, alice), newSessionClock()
	users := []*escrow.Principal{alice, {Subject: "bob", Groups: []string{"ops"}}, {Subject: "carol", Roles: []string{escrow.RoleAdmin}}}
	var sessions []*escrow.Session
	var ok []*escrow.AuditRecord
	for i := range 24 {
		sess := newSession(c, fmt.Sprintf("cookie-%d", i), users[i%len(users)])
		sess.Expires = sess.Created.Add(time.Duration(i+1) * time.Hour)
		sessions = append(sessions, sess)
		ok = append(ok, mustCreateSession(t, b, ctx, c, sess))
	}
	for _, sess := range sessions {
		checkSession(t, b, ctx, "one of many", sess)
	}
	var kept []*escrow.Session
	for i, sess := range sessions {
		if i%3 == 1 {
			ok = append(ok, mustDeleteSession(t, b, ctx, c, sess))
			continue
		}
		kept = append(kept, sess)
	}
	for i, sess := range sessions {
		if i%3 == 1 {
			wantNoSession(t, b, ctx, "deleted one of many", sess.IDHash)
		}
	}
	for _, sess := range kept {
		checkSession(t, b, ctx, "kept one of many", sess)
	}
	checkAudit(t, b, ctx, ok...)
	if n := len(auditOf(t, b, ctx, escrow.AuditQuery{Action: escrow.ActionSessionLogout})); n != len(sessions)-len(kept) {
		t.Errorf("QueryAudit(Action %s) = %d records, want %d", escrow.ActionSessionLogout, n, len(sessions)-len(kept))
	}
}

func testSessionDelete(t *testing.T, b SessionBackend) {
	ctx, c := ctxFor(t, alice), newSessionClock()
	sess := newSession(c, "cookie", alice)
	other := newSession(c, "other", alice)
	ok := []*escrow.AuditRecord{mustCreateSession(t, b, ctx, c, sess), mustCreateSession(t, b, ctx, c, other)}

	del := mustDeleteSession(t, b, ctx, c, sess)
	ok = append(ok, del)
	wantNoSession(t, b, ctx, "deleted", sess.IDHash)
	checkSession(t, b, ctx, "the other session", other)

	// Deleting again finds nothing, and leaves no audit record.
	rec := sessionRecord(ctx, c, escrow.ActionSessionLogout, sess)
	wantErr(t, "DeleteSession(deleted)", b.DeleteSession(ctx, sess.IDHash, rec), escrow.ErrNotFound)
	refused := []string{rec.ID}

	// The hash can be taken anew, with none of the old session's state.
	again := newSession(c, "cookie", &escrow.Principal{Subject: "alice", Groups: []string{"new-group"}})
	ok = append(ok, mustCreateSession(t, b, ctx, c, again))
	checkSession(t, b, ctx, "recreated", again)

	checkAudit(t, b, ctx, ok...)
	checkRefused(t, b, ctx, refused)
	all := allAudit(t, b, ctx, escrow.AuditQuery{Action: escrow.ActionSessionLogout})
	if len(all) != 1 {
		t.Fatalf("QueryAudit(Action %s) = %v, want [%s]", escrow.ActionSessionLogout, auditIDs(all), del.ID)
	}
	if d := diffRecord(all[0], del); d != "" {
		t.Errorf("the delete's audit record: %s", d)
	}
}

func testSessionDeleteMissing(t *testing.T, b SessionBackend) {
	ctx, c := ctxFor(t, alice), newSessionClock()
	var refused []string
	deleteMissing := func(what, idHash string) {
		t.Helper()
		rec := sessionRecord(ctx, c, escrow.ActionSessionLogout, &escrow.Session{Principal: *alice})
		refused = append(refused, rec.ID)
		wantErr(t, fmt.Sprintf("DeleteSession(%.12q, %s)", idHash, what), b.DeleteSession(ctx, idHash, rec), escrow.ErrNotFound)
	}
	deleteMissing("empty store", sessionHash("ghost"))
	stored := newSession(c, "cookie", alice)
	ok := mustCreateSession(t, b, ctx, c, stored)
	for _, h := range []string{sessionHash("ghost"), stored.IDHash[:63], stored.IDHash + "0", "cookie", ""} {
		deleteMissing("another stored", h)
	}
	checkSession(t, b, ctx, "the stored session", stored)
	checkAudit(t, b, ctx, ok)
	checkRefused(t, b, ctx, refused)
}

// testSessionCreateRace has sessionRacers clients create a session under
// one hash at once: exactly one wins, every other gets ErrConflict, the
// store holds the winner's session, and of the racers' audit records only
// the winner's is in the log.
func testSessionCreateRace(t *testing.T, b SessionBackend) {
	ctx, c := ctxFor(t, alice), newSessionClock()
	sessions := make([]*escrow.Session, sessionRacers)
	recs := make([]*escrow.AuditRecord, sessionRacers)
	for i := range sessionRacers {
		sessions[i] = newSession(c, "cookie", &escrow.Principal{Subject: fmt.Sprintf("racer%d", i)})
		recs[i] = sessionRecord(ctx, c, escrow.ActionSessionLogin, sessions[i])
	}
	winner := raceOne(t, sessionRacers, 0, func(i int) error { return b.CreateSession(ctx, sessions[i], recs[i]) })
	checkSession(t, b, ctx, "after the race", sessions[winner])
	checkAudit(t, b, ctx, recs[winner])
}

// testSessionDeleteRace has sessionRacers clients delete one session at
// once (a logout sent twice): exactly one wins; a loser gets ErrNotFound,
// or ErrConflict if it raced the winner rather than followed it; only the
// winner's audit record is in the log.
func testSessionDeleteRace(t *testing.T, b SessionBackend) {
	ctx, c := ctxFor(t, alice), newSessionClock()
	sess := newSession(c, "cookie", alice)
	create := mustCreateSession(t, b, ctx, c, sess)
	recs := make([]*escrow.AuditRecord, sessionRacers)
	for i := range recs {
		recs[i] = sessionRecord(ctx, c, escrow.ActionSessionLogout, sess)
	}
	winner := raceOneLosing(t, sessionRacers, "deleting one session", func(i int) error {
		return b.DeleteSession(ctx, sess.IDHash, recs[i])
	}, escrow.ErrNotFound, escrow.ErrConflict)
	wantNoSession(t, b, ctx, "after the race", sess.IDHash)
	checkAudit(t, b, ctx, create, recs[winner])
}
