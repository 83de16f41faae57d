package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/store/storetest"
)

func open(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "escrow.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, path
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		s, _ := open(t)
		return s
	})
}

func TestRequestConformance(t *testing.T) {
	storetest.RunRequests(t, func(t *testing.T) storetest.RequestBackend {
		s, _ := open(t)
		return s
	})
	// Every request and grant query reads an index, never the table.
	t.Run("QueriesUseIndexes", func(t *testing.T) {
		_, path := open(t)
		db := rawDB(t, path)
		queries := []string{
			"SELECT body FROM requests WHERE id = 'x'",
			"SELECT body FROM grants WHERE id = 'x'",
			"SELECT body FROM grants WHERE subject = 'a' AND secret_id = 's' AND end_at > 5",
			"UPDATE requests SET status = 'denied' WHERE id = 'x' AND revision = 1",
			"UPDATE grants SET status = 'revoked' WHERE id = 'x' AND revision = 1",
		}
		for _, where := range [][]string{
			nil, {"requester = 'a'"}, {"secret_id = 's'"}, {"open = 1", "status = 'pending'"},
			{"requester = 'a'", "status = 'denied'"}, {"secret_id = 's'", "requester = 'a'"},
		} {
			queries = append(queries, listSQL("requests", where))
		}
		for _, where := range [][]string{
			{"subject = 'a'"}, {"secret_id = 's'"}, {"open = 1"}, {"subject = 'a'", "open = 1"},
		} {
			queries = append(queries, listSQL("grants", where))
		}
		for _, q := range queries {
			q = strings.NewReplacer("(?, ?)", "(9, 'z')", "LIMIT ?", "LIMIT 10").Replace(q)
			rows, err := db.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+q)
			if err != nil {
				t.Fatalf("explain %s: %v", q, err)
			}
			var plan []string
			for rows.Next() {
				var id, parent, notused int
				var detail string
				if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, detail)
			}
			rows.Close()
			for _, d := range plan {
				if strings.HasPrefix(d, "SCAN ") && !strings.Contains(d, " USING ") || strings.Contains(d, "TEMP B-TREE") {
					t.Errorf("%s\n  plan: %q", q, plan)
				}
			}
		}
	})
}

func TestCheckoutConformance(t *testing.T) {
	storetest.RunCheckouts(t, func(t *testing.T) storetest.CheckoutBackend {
		s, _ := open(t)
		return s
	})
}

func TestTicketSystemConformance(t *testing.T) {
	storetest.RunTicketSystems(t, func(t *testing.T) storetest.TicketBackend {
		s, _ := open(t)
		return s
	})
}

func TestQLockKeyConformance(t *testing.T) {
	storetest.RunQLockKeys(t, func(t *testing.T) storetest.QLockKeyBackend {
		s, _ := open(t)
		return s
	})
}

func TestReportScheduleConformance(t *testing.T) {
	storetest.RunReportSchedules(t, func(t *testing.T) storetest.ReportScheduleBackend {
		s, _ := open(t)
		return s
	})
	// The list reads the primary key in order: no scan of another index,
	// no sort step. Writes find their row by the primary key.
	t.Run("QueriesUseIndexes", func(t *testing.T) {
		_, path := open(t)
		db := rawDB(t, path)
		for _, q := range []string{
			"SELECT body FROM report_schedules ORDER BY name",
			"SELECT body FROM report_schedules WHERE name = 'x'",
			"UPDATE report_schedules SET revision = 2, body = '{}' WHERE name = 'x' AND revision = 1",
			"DELETE FROM report_schedules WHERE name = 'x' AND revision = 1",
		} {
			rows, err := db.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+q)
			if err != nil {
				t.Fatalf("explain %s: %v", q, err)
			}
			var plan []string
			for rows.Next() {
				var id, parent, notused int
				var detail string
				if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, detail)
			}
			rows.Close()
			for _, d := range plan {
				if strings.Contains(d, "TEMP B-TREE") || strings.HasPrefix(d, "SCAN ") && strings.Contains(q, "WHERE") {
					t.Errorf("%s\n  plan: %q", q, plan)
				}
			}
		}
	})
}

func TestSessionConformance(t *testing.T) {
	storetest.RunSessions(t, func(t *testing.T) storetest.SessionBackend {
		s, _ := open(t)
		return s
	})
	// Reads and deletes find their row by the primary key; the purge walks
	// the expires index, oldest first, and deletes by rowid.
	t.Run("QueriesUseIndexes", func(t *testing.T) {
		_, path := open(t)
		db := rawDB(t, path)
		purge := strings.Replace(purgeSessionsSQL, "?", "5", 1)
		for _, q := range []string{
			"SELECT body FROM sessions WHERE id_hash = 'x'",
			"DELETE FROM sessions WHERE id_hash = 'x'",
			purge,
		} {
			plan := explain(t, db, q)
			if strings.Contains(plan, "TEMP B-TREE") || strings.Contains(plan, "SCAN ") {
				t.Errorf("%s\n  plan: %s", q, plan)
			}
		}
		if plan := explain(t, db, purge); !strings.Contains(plan, "sessions_expires") {
			t.Errorf("the purge does not use the expires index: %s", plan)
		}
	})
}

// TestSessionPurge checks that a login deletes the sessions that expired
// more than a day before its audit record's time, up to a batch of them,
// oldest first, and keeps the rest, however expired.
func TestSessionPurge(t *testing.T) {
	s, _ := open(t)
	ctx := escrow.NewContext(t.Context(), &escrow.Principal{Subject: "alice"})
	seq := 0
	create := func(expires, now time.Time) *escrow.Session {
		t.Helper()
		seq++
		sess := &escrow.Session{IDHash: fmt.Sprintf("%064x", seq), Principal: escrow.Principal{Subject: "alice"},
			AuthTime: expires.Add(-time.Hour), Created: expires.Add(-time.Hour), Expires: expires}
		rec := escrow.NewAuditRecord(ctx, now, escrow.ActionSessionLogin, "user:alice")
		if err := s.CreateSession(ctx, sess, rec); err != nil {
			t.Fatalf("CreateSession(%d): %v", seq, err)
		}
		return sess
	}
	exists := func(sess *escrow.Session) bool {
		t.Helper()
		_, err := s.GetSession(ctx, sess.IDHash)
		if err != nil && !errors.Is(err, escrow.ErrNotFound) {
			t.Fatalf("GetSession: %v", err)
		}
		return err == nil
	}

	// Written by logins a year back, whose purge touched none of them.
	yearAgo := t0.AddDate(-1, 0, 0)
	old := make([]*escrow.Session, sessionPurgeBatch+5)
	for i := range old {
		old[i] = create(t0.Add(-48*time.Hour-time.Duration(len(old)-i)*time.Minute), yearAgo)
	}
	recent := create(t0.Add(-23*time.Hour), yearAgo)
	edge := create(t0.Add(-sessionGrace), yearAgo)

	// A login at t0 purges one batch, oldest first; another, the rest.
	create(t0.Add(8*time.Hour), t0)
	for i, sess := range old {
		if got, want := exists(sess), i >= sessionPurgeBatch; got != want {
			t.Fatalf("after one login, old session %d exists: %v, want %v", i, got, want)
		}
	}
	live := create(t0.Add(8*time.Hour), t0)
	for i, sess := range old {
		if exists(sess) {
			t.Errorf("after two logins, old session %d is still there", i)
		}
	}
	for name, sess := range map[string]*escrow.Session{"expired 23h ago": recent, "expired 24h ago": edge, "live": live} {
		if !exists(sess) {
			t.Errorf("the session %s was purged", name)
		}
	}
}

// TestSessionMigration upgrades a database that predates sessions: its
// data stays, and sessions can be stored.
func TestSessionMigration(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "escrow.db")
	db := migratedBefore(t, path, "CREATE TABLE sessions")
	old := newRecord(0)
	b, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO audit (id, actor, action, secret_id, record) VALUES (?, ?, ?, '', ?)",
		old.ID, old.Actor.Subject, old.Action, b); err != nil {
		t.Fatalf("insert old record: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open (migrating): %v", err)
	}
	defer s.Close()
	sess := &escrow.Session{IDHash: strings.Repeat("0f", 32), Principal: escrow.Principal{Subject: "alice"},
		AuthTime: t0, Created: t0, Expires: t0.Add(8 * time.Hour)}
	login := newRecord(1)
	if err := s.CreateSession(ctx, sess, login); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	got, err := s.GetSession(ctx, sess.IDHash)
	if err != nil || got.Principal.Subject != "alice" || !got.Expires.Equal(sess.Expires) {
		t.Fatalf("GetSession after migration = %+v, %v", got, err)
	}
	all, err := s.QueryAudit(ctx, escrow.AuditQuery{})
	if err != nil || len(all.Records) != 2 || all.Records[0].ID != login.ID || all.Records[1].ID != old.ID {
		t.Errorf("QueryAudit after migration = %+v, %v; want the login and the old record", all.Records, err)
	}
}

var t0 = time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)

func newRecord(i int) *escrow.AuditRecord {
	rec := escrow.NewAuditRecord(context.Background(), t0.Add(time.Duration(i)*time.Millisecond), escrow.ActionSecretReveal, "secret:S")
	rec.Actor = escrow.Actor{Subject: fmt.Sprintf("user%d", i%3)}
	return rec
}

// rawDB opens the database file the way any other program could.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatalf("open raw: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func TestAuditTableIsInsertOnly(t *testing.T) {
	s, path := open(t)
	ctx := t.Context()
	var recs []*escrow.AuditRecord
	for i := range 3 {
		rec := newRecord(i)
		if err := s.Append(ctx, rec); err != nil {
			t.Fatalf("Append: %v", err)
		}
		recs = append(recs, rec)
	}

	db := rawDB(t, path)
	id := recs[1].ID
	for _, q := range []string{
		"UPDATE audit SET action = 'secret.get' WHERE id = '" + id + "'",
		"UPDATE audit SET record = x'00'",
		"DELETE FROM audit WHERE id = '" + id + "'",
		"DELETE FROM audit",
		"INSERT OR REPLACE INTO audit (id, actor, action, secret_id, record) VALUES ('" + id + "', 'mallory', 'x', '', x'00')",
		"REPLACE INTO audit (id, actor, action, secret_id, record) VALUES ('" + id + "', 'mallory', 'x', '', x'00')",
		"INSERT INTO audit (id, actor, action, secret_id, record) VALUES ('" + id + "', 'mallory', 'x', '', x'00') ON CONFLICT (id) DO UPDATE SET actor = 'mallory'",
	} {
		_, err := db.ExecContext(ctx, q)
		if err == nil {
			t.Errorf("%s: succeeded, want an error", q)
		} else if !strings.Contains(err.Error(), "audit") {
			t.Errorf("%s: %v, want the trigger's refusal", q, err)
		}
	}

	page, err := s.QueryAudit(ctx, escrow.AuditQuery{})
	if err != nil {
		t.Fatalf("QueryAudit: %v", err)
	}
	if len(page.Records) != 3 {
		t.Fatalf("QueryAudit = %d records, want 3", len(page.Records))
	}
	for i, r := range page.Records {
		want := recs[2-i]
		if r.ID != want.ID || r.Actor.Subject != want.Actor.Subject || r.Action != want.Action {
			t.Errorf("record %d = %s %s %s, want %s %s %s", i, r.ID, r.Actor.Subject, r.Action, want.ID, want.Actor.Subject, want.Action)
		}
	}
}

func TestFileMode(t *testing.T) {
	s, path := open(t)
	if err := s.Append(t.Context(), newRecord(0)); err != nil {
		t.Fatalf("Append: %v", err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("stat: %v", err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(p), fi.Mode().Perm())
		}
	}

	// An existing, too open file is tightened; URI characters in the name
	// stay part of it.
	loose := filepath.Join(t.TempDir(), "lo ose?#%41.db")
	if err := os.WriteFile(loose, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(t.Context(), loose)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s2.Close()
	if err := s2.Append(t.Context(), newRecord(0)); err != nil {
		t.Fatalf("Append: %v", err)
	}
	fi, err := os.Stat(loose)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
		t.Errorf("existing file: %v, %v; want mode 0600 and the schema in it", fi, err)
	}
	if names, _ := filepath.Glob(filepath.Join(filepath.Dir(loose), "*")); len(names) != 3 { // db, -wal, -shm
		t.Errorf("files beside the database: %q", names)
	}
}

func TestFastJSON(t *testing.T) {
	for _, acl := range [][]escrow.ACE{
		{},
		{{Principal: "user:alice", Permission: escrow.PermOwner}},
		{{Principal: "group:a,b", Permission: escrow.PermView}, {Principal: `user:"q"`, Permission: escrow.PermList}},
		{{Principal: "user:<x>&ü\n", Permission: escrow.PermEdit}, {Principal: "user:}{][", Permission: "x"}},
	} {
		b, _ := json.Marshal(acl)
		got, err := decodeACLJSON(string(b))
		if err != nil || !slices.Equal(got, acl) {
			t.Errorf("decodeACLJSON(%s) = %v, %v; want %v", b, got, err, acl)
		}
	}
	for _, tags := range []map[string]string{
		{},
		{"env": "prod"},
		{"a": "", "": "b", "c:d": "e,f", "{": "}"},
		{"q": `"`, "u": "ü\u00fc", "h": "<&>"},
	} {
		b, _ := json.Marshal(tags)
		got, err := decodeTagsJSON(string(b))
		if err != nil || !maps.Equal(got, tags) {
			t.Errorf("decodeTagsJSON(%s) = %v, %v; want %v", b, got, err, tags)
		}
	}
	for _, bad := range []string{"", "[", `[{"principal":"a"}]`, `{"a":1}`, "null x", `[{"principal":"a","permission":"b"}] `} {
		if _, ok := fastACL(bad); ok {
			t.Errorf("fastACL(%q) accepted", bad)
		}
		if _, ok := fastTags(bad); ok {
			t.Errorf("fastTags(%q) accepted", bad)
		}
	}
	if _, err := decodeACLJSON("not json"); !errors.Is(err, escrow.ErrInternal) {
		t.Errorf("decodeACLJSON(garbage): %v, want ErrInternal", err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "escrow.db")
	ctx := t.Context()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	rec := newRecord(0)
	if err := s.Append(ctx, rec); err != nil {
		t.Fatalf("Append: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	s, err = Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	page, err := s.QueryAudit(ctx, escrow.AuditQuery{})
	if err != nil || len(page.Records) != 1 || page.Records[0].ID != rec.ID {
		t.Fatalf("QueryAudit after reopen = %v, %v; want the record", page.Records, err)
	}
	var v int
	if err := rawDB(t, path).QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil || v != len(migrations) {
		t.Errorf("user_version = %d (%v), want %d", v, err, len(migrations))
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "escrow.db")
	db := rawDB(t, path)
	if _, err := db.ExecContext(t.Context(), fmt.Sprintf("PRAGMA user_version = %d", len(migrations)+1)); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(t.Context(), path); err == nil {
		s.Close()
		t.Fatal("Open succeeded on a database from a newer version")
	}
}

// TestAuditTicketMigration upgrades a database whose audit table predates
// the ticket column: its rows keep a NULL ticket (so only records written
// since are found by ticket), and every record still reads back whole.
func TestAuditTicketMigration(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "escrow.db")
	db := migratedBefore(t, path, "ADD COLUMN ticket")
	old := newRecord(0)
	old.Ticket = "CHG1"
	b, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO audit (id, actor, action, secret_id, record) VALUES (?, ?, ?, '', ?)",
		old.ID, old.Actor.Subject, old.Action, b); err != nil {
		t.Fatalf("insert old record: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open (migrating): %v", err)
	}
	defer s.Close()
	rec := newRecord(1)
	rec.Ticket = "CHG1"
	if err := s.Append(ctx, rec); err != nil {
		t.Fatalf("Append: %v", err)
	}
	all, err := s.QueryAudit(ctx, escrow.AuditQuery{})
	if err != nil || len(all.Records) != 2 || all.Records[1].Ticket != "CHG1" {
		t.Fatalf("QueryAudit after migration = %+v, %v; want both records, tickets kept", all.Records, err)
	}
	byTicket, err := s.QueryAudit(ctx, escrow.AuditQuery{Ticket: "CHG1"})
	if err != nil || len(byTicket.Records) != 1 || byTicket.Records[0].ID != rec.ID {
		t.Errorf("QueryAudit(ticket) = %+v, %v; want only the record written since", byTicket.Records, err)
	}
}

// TestRotationMigration upgrades a database whose secrets predate
// rotation: they read back with no rotation and no pending version, and
// can take one.
func TestRotationMigration(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "escrow.db")
	db := migratedBefore(t, path, "ADD COLUMN pending_version")
	id := escrow.NewID(t0)
	if _, err := db.ExecContext(ctx, `INSERT INTO secrets (id, path, folder, name, type, description,
		current_version, revision, created_at, created_by, updated_at, updated_by)
		VALUES (?, '/a/x', '/a', 'x', 'password', '', 1, 1, ?, 'alice', ?, 'alice')`, id, t0.UnixNano(), t0.UnixNano()); err != nil {
		t.Fatalf("insert old secret: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open (migrating): %v", err)
	}
	defer s.Close()
	sec, err := s.GetSecret(ctx, id)
	if err != nil {
		t.Fatalf("GetSecret: %v", err)
	}
	if sec.Rotation != nil || sec.PendingVersion != 0 || sec.CurrentVersion != 1 {
		t.Fatalf("old secret reads back with rotation %+v, pending %d, current %d; want none, 0, 1",
			sec.Rotation, sec.PendingVersion, sec.CurrentVersion)
	}
	sec.Revision, sec.PendingVersion = 2, 2
	sec.Rotation = &escrow.RotationConfig{Target: escrow.TargetPostgres}
	v := &escrow.SecretVersion{SecretID: id, Version: 2, CreatedAt: t0, KeyID: "k", WrappedKey: []byte{1}, Ciphertext: []byte{2}}
	if err := s.UpdateSecret(ctx, sec, 1, v, newRecord(1)); err != nil {
		t.Fatalf("UpdateSecret(pending version): %v", err)
	}
	got, err := s.GetSecret(ctx, id)
	if err != nil || got.PendingVersion != 2 || got.CurrentVersion != 1 || got.Rotation == nil || got.Rotation.Target != escrow.TargetPostgres {
		t.Errorf("GetSecret after a pending version = %+v, %v", got, err)
	}
}

// TestQLockMigration upgrades a database whose secrets predate
// QuantumLock: they read back unlocked, and can be locked; the key table
// is there.
func TestQLockMigration(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "escrow.db")
	db := migratedBefore(t, path, "CREATE TABLE qlock_keys")
	id := escrow.NewID(t0)
	if _, err := db.ExecContext(ctx, `INSERT INTO secrets (id, path, folder, name, type, description,
		current_version, revision, created_at, created_by, updated_at, updated_by)
		VALUES (?, '/a/x', '/a', 'x', 'password', '', 1, 1, ?, 'alice', ?, 'alice')`, id, t0.UnixNano(), t0.UnixNano()); err != nil {
		t.Fatalf("insert old secret: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open (migrating): %v", err)
	}
	defer s.Close()
	sec, err := s.GetSecret(ctx, id)
	if err != nil {
		t.Fatalf("GetSecret: %v", err)
	}
	if sec.QLock != nil {
		t.Fatalf("old secret reads back locked: %+v", sec.QLock)
	}
	sec.Revision = 2
	sec.QLock = &escrow.QLock{Members: []string{"alice"}, Fields: []string{"password"}, LockedAt: t0, LockedBy: "alice"}
	if err := s.UpdateSecret(ctx, sec, 1, nil, newRecord(1)); err != nil {
		t.Fatalf("UpdateSecret(lock): %v", err)
	}
	got, err := s.GetSecret(ctx, id)
	if err != nil || !got.QLock.IsMember("alice") || got.QLock.LockedBy != "alice" {
		t.Errorf("GetSecret after locking = %+v, %v", got, err)
	}
	k := &escrow.QLockKey{Subject: "alice", PublicKey: []byte{1, 2}, Revision: 1}
	if err := s.PutQLockKey(ctx, k, 0, newRecord(2)); err != nil {
		t.Fatalf("PutQLockKey: %v", err)
	}
}

func TestAppendUnavailable(t *testing.T) {
	s, _ := open(t)
	ctx := t.Context()

	// A full disk: cap the file at its current size.
	fill := func(limit string) {
		t.Helper()
		err := s.w.do(ctx, false, func(w *writer) error {
			_, err := w.conn.ExecContext(w.ctx, "PRAGMA max_page_count = "+limit)
			return err
		})
		if err != nil {
			t.Fatalf("set max_page_count: %v", err)
		}
	}
	var pages int
	if err := s.rdb.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	fill(fmt.Sprint(pages))
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		rec := newRecord(i)
		rec.Details = map[string]string{"pad": strings.Repeat("x", 2000)}
		err = s.Append(ctx, rec)
	}
	if !errors.Is(err, escrow.ErrUnavailable) {
		t.Fatalf("Append on a full disk: %v, want ErrUnavailable", err)
	}
	// The writer recovers once there is room.
	fill("1073741823")
	if err := s.Append(ctx, newRecord(1000)); err != nil {
		t.Fatalf("Append after the disk has room again: %v", err)
	}

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Append(ctx, newRecord(1001)); !errors.Is(err, escrow.ErrUnavailable) {
		t.Errorf("Append after Close: %v, want ErrUnavailable", err)
	}
	if _, err := s.QueryAudit(ctx, escrow.AuditQuery{}); !errors.Is(err, escrow.ErrUnavailable) {
		t.Errorf("QueryAudit after Close: %v, want ErrUnavailable", err)
	}
}

// hold occupies the writer until the returned func is called, so that the
// writes queued meanwhile are committed as one batch.
func hold(t *testing.T, s *Store) (release func()) {
	t.Helper()
	started, gate := make(chan struct{}), make(chan struct{})
	go func() {
		_ = s.w.do(context.Background(), false, func(*writer) error {
			close(started)
			<-gate
			return nil
		})
	}()
	<-started
	return func() { close(gate) }
}

// queued waits until n ops wait for the writer.
func queued(t *testing.T, s *Store, n int) {
	t.Helper()
	for i := 0; len(s.w.reqs) < n; i++ {
		if i > 5000 {
			t.Fatalf("%d of %d writes queued", len(s.w.reqs), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestGroupCommitIsolatesFailures(t *testing.T) {
	s, _ := open(t)
	ctx := t.Context()
	existing := newRecord(0)
	if err := s.Append(ctx, existing); err != nil {
		t.Fatalf("Append: %v", err)
	}
	taken := &escrow.Secret{ID: escrow.NewID(t0), Name: "x", Folder: "/a", Type: escrow.TypeGeneric, Revision: 1, CurrentVersion: 1,
		ACL: []escrow.ACE{{Principal: "user:alice", Permission: escrow.PermOwner}}}
	if err := s.CreateSecret(ctx, taken, &escrow.SecretVersion{Version: 1}, newRecord(1)); err != nil {
		t.Fatalf("CreateSecret: %v", err)
	}

	release := hold(t, s)
	type result struct {
		what string
		err  error
	}
	results := make(chan result, 32)
	var wg sync.WaitGroup
	submit := func(what string, f func() error) {
		wg.Go(func() { results <- result{what, f()} })
	}
	var good []*escrow.AuditRecord
	for i := 10; i < 20; i++ {
		rec := newRecord(i)
		good = append(good, rec)
		submit("append", func() error { return s.Append(ctx, rec) })
	}
	submit("duplicate append", func() error { return s.Append(ctx, existing) })
	// A multi-statement write that fails on its first statement, after
	// nothing, and one that fails after writing its secret row.
	loser := &escrow.Secret{ID: escrow.NewID(t0), Name: "x", Folder: "/a", Type: escrow.TypeGeneric, Revision: 1, CurrentVersion: 1,
		ACL: []escrow.ACE{{Principal: "user:mallory", Permission: escrow.PermOwner}}}
	loserRec := newRecord(30)
	submit("duplicate path", func() error {
		return s.CreateSecret(ctx, loser, &escrow.SecretVersion{Version: 1}, loserRec)
	})
	partial := &escrow.Secret{ID: escrow.NewID(t0), Name: "y", Folder: "/a", Type: escrow.TypeGeneric, Revision: 1, CurrentVersion: 1,
		ACL: []escrow.ACE{{Principal: "user:mallory", Permission: escrow.PermOwner}}}
	submit("duplicate audit id", func() error {
		return s.CreateSecret(ctx, partial, &escrow.SecretVersion{Version: 1}, existing)
	})
	queued(t, s, 13)
	release()
	wg.Wait()
	close(results)

	for r := range results {
		if strings.HasPrefix(r.what, "duplicate") {
			if !errors.Is(r.err, escrow.ErrConflict) {
				t.Errorf("%s: %v, want ErrConflict", r.what, r.err)
			}
		} else if r.err != nil {
			t.Errorf("%s: %v", r.what, r.err)
		}
	}
	page, err := s.QueryAudit(ctx, escrow.AuditQuery{})
	if err != nil {
		t.Fatalf("QueryAudit: %v", err)
	}
	if len(page.Records) != 2+len(good) {
		t.Errorf("QueryAudit = %d records, want %d", len(page.Records), 2+len(good))
	}
	for _, id := range []string{loser.ID, partial.ID} {
		if _, err := s.GetSecret(ctx, id); !errors.Is(err, escrow.ErrNotFound) {
			t.Errorf("GetSecret(failed create): %v, want ErrNotFound", err)
		}
	}
	if g, err := s.ListACLGrants(ctx, []string{"user:mallory"}); err != nil || len(g) != 0 {
		t.Errorf("grants of failed creates = %v, %v; want none", g, err)
	}
}

func TestFailedBatchFallsBackOneByOne(t *testing.T) {
	s, _ := open(t)
	ctx := t.Context()
	release := hold(t, s)
	var wg sync.WaitGroup
	errs := make([]error, 6)
	recs := make([]*escrow.AuditRecord, 6)
	for i := range recs {
		recs[i] = newRecord(i)
		wg.Go(func() {
			if i == 3 {
				// A failure of the store, not of the op's own logic.
				errs[i] = s.w.do(ctx, true, func(w *writer) error {
					if err := w.insertAudit(auditRow{id: recs[i].ID, record: []byte("{}")}); err != nil {
						return err
					}
					return unavailable("simulated", errors.New("disk on fire"))
				})
				return
			}
			errs[i] = s.Append(ctx, recs[i])
		})
	}
	queued(t, s, len(recs))
	release()
	wg.Wait()
	for i, err := range errs {
		if i == 3 {
			if !errors.Is(err, escrow.ErrUnavailable) {
				t.Errorf("failing op: %v, want ErrUnavailable", err)
			}
		} else if err != nil {
			t.Errorf("append %d: %v", i, err)
		}
	}
	page, err := s.QueryAudit(ctx, escrow.AuditQuery{})
	if err != nil {
		t.Fatalf("QueryAudit: %v", err)
	}
	if len(page.Records) != 5 {
		t.Errorf("QueryAudit = %d records, want 5", len(page.Records))
	}
	for _, r := range page.Records {
		if r.ID == recs[3].ID {
			t.Errorf("the failed op's insert was committed")
		}
	}
}

func TestCancelledWhileQueued(t *testing.T) {
	s, _ := open(t)
	release := hold(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	rec := newRecord(0)
	done := make(chan error, 1)
	go func() { done <- s.Append(ctx, rec) }()
	queued(t, s, 1)
	cancel()
	err := <-done
	release()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Append: %v, want context.Canceled", err)
	}
	// The writer skips the abandoned op: the caller saw a failure, so the
	// record must not land.
	if err := s.Append(t.Context(), newRecord(1)); err != nil {
		t.Fatalf("Append: %v", err)
	}
	page, err := s.QueryAudit(t.Context(), escrow.AuditQuery{})
	if err != nil || len(page.Records) != 1 || page.Records[0].ID == rec.ID {
		t.Errorf("QueryAudit = %v, %v; want only the second record", page.Records, err)
	}
}

func TestTimePrefixMatchesIDs(t *testing.T) {
	for _, tm := range []time.Time{t0, t0.Add(time.Millisecond), time.UnixMilli(1), time.UnixMilli(1<<47 + 12345)} {
		if got, want := timePrefix(tm), escrow.NewID(tm)[:10]; got != want {
			t.Errorf("timePrefix(%v) = %s, want %s", tm, got, want)
		}
		// A time inside a millisecond rounds up: records of that
		// millisecond are before it.
		if got, want := timePrefix(tm.Add(time.Microsecond)), escrow.NewID(tm.Add(time.Millisecond))[:10]; got != want {
			t.Errorf("timePrefix(%v + 1µs) = %s, want %s", tm, got, want)
		}
	}
	for _, id := range []string{"", "short", strings.Repeat("0", 25) + "I", "8" + strings.Repeat("0", 25)} {
		if validID(id) {
			t.Errorf("validID(%q) = true", id)
		}
	}
	if id := escrow.NewID(time.Now()); !validID(id) {
		t.Errorf("validID(%q) = false", id)
	}
}

// TestQueriesUseIndexes checks the query plans: no full table scan on any
// read path.
func TestQueriesUseIndexes(t *testing.T) {
	_, path := open(t)
	db := rawDB(t, path)
	queries := []string{
		"SELECT " + secretCols + " FROM secrets WHERE id = 'x'",
		"SELECT " + secretCols + " FROM secrets WHERE path = '/a/b' AND folder = '/a'",
		"SELECT created_at FROM versions WHERE secret_id = 'x' AND version = 1",
		"SELECT version FROM versions WHERE secret_id = 'x' ORDER BY version",
		"SELECT " + secretCols + " FROM secrets WHERE folder = '/a' AND path > '' AND (0 OR deleted_at IS NULL) ORDER BY path LIMIT 10",
		"SELECT " + secretCols + " FROM secrets WHERE path > '/a/' AND path < '/a0' AND (1 OR deleted_at IS NULL) ORDER BY path LIMIT 10",
		"SELECT path FROM folders WHERE path IN ('/a', '/')",
		"SELECT principal FROM acl WHERE principal IN ('user:a', 'group:b')",
		"DELETE FROM acl WHERE target = 'secret:x'",
		"SELECT record FROM audit WHERE id >= '' AND id < 'Z' ORDER BY id DESC LIMIT 10",
		"SELECT record FROM audit WHERE actor = 'a' AND id >= '' AND id < 'Z' ORDER BY id DESC LIMIT 10",
		"SELECT record FROM audit WHERE secret_id = 'a' AND id >= '' AND id < 'Z' ORDER BY id DESC LIMIT 10",
		"SELECT record FROM audit WHERE action = 'a' AND id >= '' AND id < 'Z' ORDER BY id DESC LIMIT 10",
		"SELECT record FROM audit WHERE actor = 'a' AND secret_id = 'b' AND action = 'c' AND id >= '' AND id < 'Z' ORDER BY id DESC LIMIT 10",
		"SELECT body FROM ticket_systems WHERE name = 'x'",
		// (ListTicketSystems reads the whole table, in key order, by design.)
		"SELECT value FROM settings WHERE name = 'x'",
		"UPDATE ticket_systems SET revision = 2 WHERE name = 'x' AND revision = 1",
		"SELECT body FROM checkouts WHERE secret_id = 'x'",
		"UPDATE checkouts SET status = 'released', open = 0 WHERE secret_id = 'x' AND revision = 1",
		"UPDATE qlock_keys SET revision = 2 WHERE subject = 'x' AND revision = 1",
	}
	// The key read searches qlock_keys by its key for each subject in the
	// list (the list itself is a table-valued function, which SQLite scans
	// by design).
	qk := strings.Replace(getQLockKeysSQL, "?", `'["a","b"]'`, 1)
	plan := explain(t, db, qk)
	if !strings.Contains(plan, "SEARCH qlock_keys USING") {
		t.Errorf("%s\n  plan: %q, want a search of qlock_keys by subject", qk, plan)
	}
	for _, d := range strings.Split(plan, "\n") {
		if strings.HasPrefix(d, "SCAN qlock_keys") || strings.Contains(d, "TEMP B-TREE") {
			t.Errorf("%s\n  plan: %q", qk, plan)
		}
	}
	// The sweeper's list must walk the partial index of open slots.
	openQ := strings.NewReplacer("(?, ?)", "(5, 'x')", "LIMIT ?", "LIMIT 10").Replace(listOpenSQL)
	if plan := explain(t, db, openQ); !strings.Contains(plan, "checkouts_open") {
		t.Errorf("%s\n  plan: %q, want the checkouts_open index", openQ, plan)
	}
	queries = append(queries, openQ)
	// The prepared audit queries themselves, with every filter set: the
	// ticket ones must walk audit_ticket (the plan names it).
	for bits := range 16 {
		q := strings.ReplaceAll(strings.Replace(auditSQL(bits), "LIMIT ?", "LIMIT 10", 1), "?", "'x'")
		if bits&byTicket != 0 && !strings.Contains(explain(t, db, q), "audit_ticket") {
			t.Errorf("%s\n  plan: %q, want the audit_ticket index", q, explain(t, db, q))
		}
		queries = append(queries, q)
	}
	for _, q := range queries {
		rows, err := db.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+q)
		if err != nil {
			t.Fatalf("explain %s: %v", q, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		for _, d := range plan {
			if strings.HasPrefix(d, "SCAN ") && !strings.Contains(d, " USING ") || strings.Contains(d, "TEMP B-TREE") {
				t.Errorf("%s\n  plan: %q", q, plan)
			}
		}
	}
}

// explain returns the query plan of q, one detail per line.
func explain(t *testing.T, db *sql.DB, q string) string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+q)
	if err != nil {
		t.Fatalf("explain %s: %v", q, err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "\n")
}

// --- benchmarks ---

// reportCPU reports CPU time per op (all cores, including GC and the
// writer), which, unlike ns/op, does not depend on other load on the
// machine. 2e9 / cpu-ns/op is the ops/s that 2 cores could serve.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() {
		b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
	}
}

func benchSecret(b *testing.B, s *Store) (*escrow.Secret, []string) {
	b.Helper()
	ctx := b.Context()
	folder := "/prod/db/pg"
	for _, f := range escrow.Ancestors(folder) {
		if f == "/prod/db/pg" {
			continue // one ancestor missing, as is common
		}
		fo := &escrow.Folder{Path: f, Revision: 1, ACL: []escrow.ACE{{Principal: "group:dba", Permission: escrow.PermView}}}
		if err := s.PutFolder(ctx, fo, 0, escrow.NewAuditRecord(ctx, time.Now(), escrow.ActionFolderACL, f)); err != nil {
			b.Fatal(err)
		}
	}
	now := time.Now().UTC()
	sec := &escrow.Secret{ID: escrow.NewID(now), Name: "main", Folder: folder, Type: escrow.TypePassword,
		Tags: map[string]string{"env": "prod"}, CurrentVersion: 1, Revision: 1, CreatedAt: now, UpdatedAt: now,
		ACL: []escrow.ACE{{Principal: "user:alice", Permission: escrow.PermOwner}, {Principal: "group:dba", Permission: escrow.PermView}}}
	v := &escrow.SecretVersion{SecretID: sec.ID, Version: 1, CreatedAt: now, KeyID: "k", WrappedKey: make([]byte, 184), Ciphertext: make([]byte, 120)}
	if err := s.CreateSecret(ctx, sec, v, escrow.NewAuditRecord(ctx, now, escrow.ActionSecretCreate, sec.ID)); err != nil {
		b.Fatal(err)
	}
	return sec, escrow.Ancestors(folder)
}

func benchRecord(ctx context.Context, id string) *escrow.AuditRecord {
	rec := escrow.NewAuditRecord(ctx, time.Now(), escrow.ActionSecretReveal, escrow.SecretTarget(id))
	rec.SecretID = id
	rec.Details = map[string]string{"version": "1"}
	return rec
}

// benchContext is cancellable, like an HTTP request's context: watching it
// is part of the cost of a call.
func benchContext(b *testing.B) context.Context {
	ctx, cancel := context.WithCancel(escrow.NewContext(b.Context(), &escrow.Principal{Subject: "alice", Groups: []string{"dba"}}))
	b.Cleanup(cancel)
	return ctx
}

// BenchmarkAppendParallel measures durable appends from many concurrent
// requests (16 goroutines per core), which group commit serves with
// shared fsyncs.
func BenchmarkAppendParallel(b *testing.B) {
	s, _ := open(b)
	ctx := benchContext(b)
	b.SetParallelism(16)
	b.ReportAllocs()
	defer reportCPU(b)()
	commits := s.w.commits.Load()
	defer func() { b.ReportMetric(float64(b.N)/float64(s.w.commits.Load()-commits), "appends/commit") }()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Append(ctx, benchRecord(ctx, "S")); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkGetSecret(b *testing.B) {
	s, _ := open(b)
	sec, _ := benchSecret(b, s)
	ctx := benchContext(b)
	b.ReportAllocs()
	defer reportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.GetSecret(ctx, sec.ID); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRevealReads is the store's reads of one reveal: the secret, its
// ancestor folders (for inherited ACLs) and the current version.
func BenchmarkRevealReads(b *testing.B) {
	s, _ := open(b)
	sec, anc := benchSecret(b, s)
	ctx := benchContext(b)
	b.ReportAllocs()
	defer reportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := revealReads(ctx, s, sec.ID, anc); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func revealReads(ctx context.Context, s *Store, id string, anc []string) error {
	got, err := s.GetSecret(ctx, id)
	if err != nil {
		return err
	}
	if _, err := s.GetFolders(ctx, anc); err != nil {
		return err
	}
	_, err = s.GetVersion(ctx, id, got.CurrentVersion)
	return err
}

// BenchmarkAuditedReveal is a whole audited reveal as the service does it
// (reads, then a durable audit append) from many concurrent requests; it
// reports reveals/s for the 5,000/s on 2 cores budget.
func BenchmarkAuditedReveal(b *testing.B) {
	s, _ := open(b)
	sec, anc := benchSecret(b, s)
	ctx := benchContext(b)
	b.SetParallelism(16)
	b.ReportAllocs()
	start := time.Now()
	defer reportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := revealReads(ctx, s, sec.ID, anc); err != nil {
				b.Error(err)
				return
			}
			if err := s.Append(ctx, benchRecord(ctx, sec.ID)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reveals/s")
}

// migratedBefore makes a database at path at the schema version just
// before the first migration that contains marker, as a store of that
// version left it, and returns it open: the starting point of a migration
// test.
func migratedBefore(t *testing.T, path, marker string) *sql.DB {
	t.Helper()
	ctx := t.Context()
	before := slices.IndexFunc(migrations, func(m string) bool { return strings.Contains(m, marker) })
	if before < 0 {
		t.Fatalf("no migration contains %q", marker)
	}
	db := rawDB(t, path)
	for i, m := range migrations[:before] {
		if _, err := db.ExecContext(ctx, m); err != nil {
			t.Fatalf("migration %d: %v", i+1, err)
		}
	}
	if _, err := db.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", before)); err != nil {
		t.Fatal(err)
	}
	return db
}
