package secrets_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/keys/local"
	"github.com/escrow-pam/escrow/internal/secrets"
	"github.com/escrow-pam/escrow/internal/store/sqlite"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	svc   *secrets.Service
	store *sqlite.Store
	clock *clock
	logs  *bytes.Buffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "escrow.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	master := make([]byte, 32)
	rand.Read(master)
	keys, err := local.New(master)
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	c := &clock{t: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)}
	svc := secrets.New(secrets.Config{Store: store, Audit: store, Keys: keys, Clock: c,
		Logger: slog.New(slog.NewJSONHandler(&syncWriter{w: logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	return &env{svc: svc, store: store, clock: c, logs: logs}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

var (
	admin   = &escrow.Principal{Subject: "admin", Roles: []string{"admin"}}
	auditor = &escrow.Principal{Subject: "auditor", Roles: []string{"auditor"}}
	alice   = &escrow.Principal{Subject: "alice", Email: "alice@example.com", Groups: []string{"engineering"}}
	bob     = &escrow.Principal{Subject: "bob", Groups: []string{"approvers"}}
	mallory = &escrow.Principal{Subject: "mallory"}
)

func as(p *escrow.Principal) context.Context {
	ctx := escrow.NewContext(context.Background(), p)
	return escrow.WithRequestInfo(ctx, escrow.RequestInfo{RequestID: "req-" + p.Subject, SourceIP: "127.0.0.1", UserAgent: "test"})
}

// allAudit reads the whole audit log straight from the store (not through
// the service, which would add records of its own).
func (e *env) allAudit(t *testing.T) []*escrow.AuditRecord {
	t.Helper()
	var out []*escrow.AuditRecord
	q := escrow.AuditQuery{Limit: 1000}
	for {
		page, err := e.store.QueryAudit(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Records...)
		if page.Next == "" {
			return out
		}
		q.Cursor = page.Next
	}
}

func (e *env) mustCreate(t *testing.T, p *escrow.Principal, folder, name string, value escrow.SecretValue) *escrow.Secret {
	t.Helper()
	sec, err := e.svc.Create(as(p), secrets.CreateInput{Name: name, Folder: folder, Type: escrow.TypePassword, Value: value})
	if err != nil {
		t.Fatalf("create %s/%s: %v", folder, name, err)
	}
	return sec
}

func TestCreateRevealVersions(t *testing.T) {
	e := newEnv(t)
	sec := e.mustCreate(t, admin, "/prod/db", "pg", escrow.SecretValue{"username": "postgres", "password": "one"})
	if sec.CurrentVersion != 1 || sec.Path() != "/prod/db/pg" {
		t.Fatalf("created %+v", sec)
	}
	v2 := "two"
	e.clock.Add(time.Minute)
	upd, err := e.svc.Update(as(admin), sec.ID, secrets.UpdateInput{Value: escrow.SecretValue{"username": "postgres", "password": v2}})
	if err != nil {
		t.Fatal(err)
	}
	if upd.CurrentVersion != 2 || upd.Revision != 2 {
		t.Fatalf("after update: version %d revision %d", upd.CurrentVersion, upd.Revision)
	}
	cur, err := e.svc.Reveal(as(admin), sec.ID, 0)
	if err != nil || cur.Value["password"] != v2 || cur.Version != 2 {
		t.Fatalf("reveal current: %+v %v", cur, err)
	}
	old, err := e.svc.Reveal(as(admin), sec.ID, 1)
	if err != nil || old.Value["password"] != "one" {
		t.Fatalf("reveal v1: %+v %v", old, err)
	}
	if _, err := e.svc.Reveal(as(admin), sec.ID, 3); !errors.Is(err, escrow.ErrNotFound) {
		t.Fatalf("reveal v3: %v, want not found", err)
	}
	vs, err := e.svc.Versions(as(admin), sec.ID)
	if err != nil || len(vs) != 2 || vs[0].Version != 1 || vs[1].Version != 2 {
		t.Fatalf("versions: %v %v", vs, err)
	}
}

func TestAccessControl(t *testing.T) {
	e := newEnv(t)
	sec := e.mustCreate(t, admin, "/prod/db", "pg", escrow.SecretValue{"password": "p"})

	// No grant: the secret does not exist as far as alice can tell.
	if _, err := e.svc.Reveal(as(alice), sec.ID, 0); !errors.Is(err, escrow.ErrNotFound) {
		t.Fatalf("alice without grant: %v, want not found", err)
	}
	// A folder grant of list on an ancestor: visible, but not revealable.
	if _, err := e.svc.SetFolderACL(as(admin), "/prod", []escrow.ACE{{Principal: "group:engineering", Permission: escrow.PermList}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Get(as(alice), sec.ID); err != nil {
		t.Fatalf("alice get with inherited list: %v", err)
	}
	if _, err := e.svc.Reveal(as(alice), sec.ID, 0); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("alice reveal with list: %v, want forbidden", err)
	}
	// view on the nearer folder (inherited by the secret).
	if _, err := e.svc.SetFolderACL(as(admin), "/prod/db", []escrow.ACE{{Principal: "group:engineering", Permission: escrow.PermView}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Reveal(as(alice), sec.ID, 0); err != nil {
		t.Fatalf("alice reveal with inherited view: %v", err)
	}
	// view does not allow edit, nor acl changes.
	if _, err := e.svc.Update(as(alice), sec.ID, secrets.UpdateInput{Value: escrow.SecretValue{"password": "x"}}); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("alice update: %v, want forbidden", err)
	}
	if _, err := e.svc.SetACL(as(alice), sec.ID, []escrow.ACE{{Principal: "user:alice", Permission: escrow.PermOwner}}, nil); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("alice acl: %v, want forbidden", err)
	}
	// A direct grant to a user on the secret.
	if _, err := e.svc.SetACL(as(admin), sec.ID, []escrow.ACE{{Principal: "user:bob", Permission: escrow.PermOwner}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Reveal(as(bob), sec.ID, 0); err != nil {
		t.Fatalf("bob reveal as owner: %v", err)
	}
	// Non-admins may not drop the last owner.
	if _, err := e.svc.SetACL(as(bob), sec.ID, []escrow.ACE{{Principal: "user:bob", Permission: escrow.PermView}}, nil); !errors.Is(err, escrow.ErrInvalid) {
		t.Fatalf("bob drops last owner: %v, want invalid", err)
	}
	// Auditors see metadata but never values.
	if _, err := e.svc.Get(as(auditor), sec.ID); err != nil {
		t.Fatalf("auditor get: %v", err)
	}
	if _, err := e.svc.Reveal(as(auditor), sec.ID, 0); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("auditor reveal: %v, want forbidden", err)
	}
	// Only admins and auditors read the audit log.
	if _, err := e.svc.QueryAudit(as(alice), escrow.AuditQuery{}); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("alice audit: %v, want forbidden", err)
	}
	if _, err := e.svc.QueryAudit(as(auditor), escrow.AuditQuery{}); err != nil {
		t.Fatalf("auditor audit: %v", err)
	}
	// Creating needs edit on the folder.
	if _, err := e.svc.Create(as(alice), secrets.CreateInput{Name: "x", Folder: "/prod/db", Type: escrow.TypeGeneric, Value: escrow.SecretValue{"a": "b"}}); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("alice create in /prod/db: %v, want forbidden", err)
	}
	// No principal at all.
	if _, err := e.svc.Reveal(context.Background(), sec.ID, 0); !errors.Is(err, escrow.ErrUnauthenticated) {
		t.Fatalf("anonymous reveal: %v, want unauthenticated", err)
	}
}

func TestDeleteIsSoft(t *testing.T) {
	e := newEnv(t)
	sec := e.mustCreate(t, admin, "/", "gone", escrow.SecretValue{"password": "p"})
	if err := e.svc.Delete(as(admin), sec.ID); err != nil {
		t.Fatal(err)
	}
	got, err := e.svc.Get(as(admin), sec.ID)
	if err != nil || got.DeletedAt == nil {
		t.Fatalf("get deleted: %+v %v", got, err)
	}
	if _, err := e.svc.Reveal(as(admin), sec.ID, 0); !errors.Is(err, escrow.ErrNotFound) {
		t.Fatalf("reveal deleted: %v", err)
	}
	if vs, _ := e.store.ListVersions(context.Background(), sec.ID); len(vs) != 1 {
		t.Fatalf("versions kept after delete: %d", len(vs))
	}
	page, err := e.svc.List(as(admin), secrets.ListInput{Folder: "/", Recursive: true})
	if err != nil || len(page.Secrets) != 0 {
		t.Fatalf("list hides deleted: %v %v", page.Secrets, err)
	}
	page, err = e.svc.List(as(admin), secrets.ListInput{Folder: "/", Recursive: true, Deleted: true})
	if err != nil || len(page.Secrets) != 1 {
		t.Fatalf("list with deleted: %v %v", page.Secrets, err)
	}
}

func TestListShowsOnlyGranted(t *testing.T) {
	e := newEnv(t)
	mine := e.mustCreate(t, admin, "/prod/db", "a", escrow.SecretValue{"password": "p"})
	e.mustCreate(t, admin, "/prod/db", "b", escrow.SecretValue{"password": "p"})
	e.mustCreate(t, admin, "/prod/web/deep", "c", escrow.SecretValue{"password": "p"})
	e.mustCreate(t, admin, "/other", "d", escrow.SecretValue{"password": "p"})
	if _, err := e.svc.SetFolderACL(as(admin), "/prod/web", []escrow.ACE{{Principal: "group:engineering", Permission: escrow.PermList}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SetACL(as(admin), mine.ID, []escrow.ACE{{Principal: "user:alice", Permission: escrow.PermView}, {Principal: "user:admin", Permission: escrow.PermOwner}}, nil); err != nil {
		t.Fatal(err)
	}
	paths := func(p *escrow.Principal, in secrets.ListInput) []string {
		t.Helper()
		var out []string
		for {
			page, err := e.svc.List(as(p), in)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range page.Secrets {
				out = append(out, s.Path())
			}
			if page.Next == "" {
				return out
			}
			in.Cursor = page.Next
		}
	}
	got := strings.Join(paths(alice, secrets.ListInput{Folder: "/", Recursive: true, Limit: 1}), " ")
	if got != "/prod/db/a /prod/web/deep/c" {
		t.Fatalf("alice sees %q", got)
	}
	if got := strings.Join(paths(alice, secrets.ListInput{Folder: "/prod/db"}), " "); got != "/prod/db/a" {
		t.Fatalf("alice in /prod/db sees %q", got)
	}
	if got := paths(mallory, secrets.ListInput{Folder: "/", Recursive: true}); len(got) != 0 {
		t.Fatalf("mallory sees %q", got)
	}
	if got := paths(admin, secrets.ListInput{Folder: "/", Recursive: true}); len(got) != 4 {
		t.Fatalf("admin sees %q", got)
	}
	if got := paths(alice, secrets.ListInput{Path: "/prod/db/b"}); len(got) != 0 {
		t.Fatalf("alice by path of an invisible secret sees %q", got)
	}
	if got := paths(alice, secrets.ListInput{Path: "/prod/db/a"}); len(got) != 1 {
		t.Fatalf("alice by path sees %q", got)
	}
}

// TestExactlyOneAuditRecordPerAction checks successful, denied and failed
// actions alike.
func TestExactlyOneAuditRecordPerAction(t *testing.T) {
	e := newEnv(t)
	sec := e.mustCreate(t, admin, "/prod", "pg", escrow.SecretValue{"password": "p"})
	stale := int64(99)
	cases := []struct {
		name    string
		do      func() error
		action  string
		outcome escrow.Outcome
	}{
		{"reveal ok", func() error { _, err := e.svc.Reveal(as(admin), sec.ID, 0); return err }, escrow.ActionSecretReveal, escrow.OutcomeSuccess},
		{"reveal hidden", func() error { _, err := e.svc.Reveal(as(mallory), sec.ID, 0); return err }, escrow.ActionSecretReveal, escrow.OutcomeDenied},
		{"reveal auditor denied", func() error { _, err := e.svc.Reveal(as(auditor), sec.ID, 0); return err }, escrow.ActionSecretReveal, escrow.OutcomeDenied},
		{"reveal unknown", func() error { _, err := e.svc.Reveal(as(admin), "NOPE", 0); return err }, escrow.ActionSecretReveal, escrow.OutcomeFailed},
		{"update ok", func() error {
			_, err := e.svc.Update(as(admin), sec.ID, secrets.UpdateInput{Value: escrow.SecretValue{"password": "q"}})
			return err
		}, escrow.ActionSecretUpdate, escrow.OutcomeSuccess},
		{"update stale", func() error {
			_, err := e.svc.Update(as(admin), sec.ID, secrets.UpdateInput{Revision: &stale, Value: escrow.SecretValue{"password": "r"}})
			return err
		}, escrow.ActionSecretUpdate, escrow.OutcomeFailed},
		{"update invalid", func() error {
			_, err := e.svc.Update(as(admin), sec.ID, secrets.UpdateInput{Value: escrow.SecretValue{"nopassword": "r"}})
			return err
		}, escrow.ActionSecretUpdate, escrow.OutcomeFailed},
		{"create duplicate", func() error {
			_, err := e.svc.Create(as(admin), secrets.CreateInput{Name: "pg", Folder: "/prod", Type: escrow.TypePassword, Value: escrow.SecretValue{"password": "x"}})
			return err
		}, escrow.ActionSecretCreate, escrow.OutcomeFailed},
		{"create forbidden", func() error {
			_, err := e.svc.Create(as(alice), secrets.CreateInput{Name: "new", Folder: "/prod", Type: escrow.TypePassword, Value: escrow.SecretValue{"password": "x"}})
			return err
		}, escrow.ActionSecretCreate, escrow.OutcomeDenied},
		{"get", func() error { _, err := e.svc.Get(as(admin), sec.ID); return err }, escrow.ActionSecretGet, escrow.OutcomeSuccess},
		{"list", func() error { _, err := e.svc.List(as(alice), secrets.ListInput{}); return err }, escrow.ActionSecretList, escrow.OutcomeSuccess},
		{"versions", func() error { _, err := e.svc.Versions(as(admin), sec.ID); return err }, escrow.ActionSecretVersions, escrow.OutcomeSuccess},
		{"acl denied", func() error { _, err := e.svc.SetACL(as(auditor), sec.ID, nil, nil); return err }, escrow.ActionSecretACL, escrow.OutcomeDenied},
		{"folder acl", func() error { _, err := e.svc.SetFolderACL(as(admin), "/x", nil, nil); return err }, escrow.ActionFolderACL, escrow.OutcomeSuccess},
		{"audit query denied", func() error { _, err := e.svc.QueryAudit(as(bob), escrow.AuditQuery{}); return err }, escrow.ActionAuditQuery, escrow.OutcomeDenied},
		{"audit query", func() error { _, err := e.svc.QueryAudit(as(auditor), escrow.AuditQuery{}); return err }, escrow.ActionAuditQuery, escrow.OutcomeSuccess},
		{"delete ok", func() error { return e.svc.Delete(as(admin), sec.ID) }, escrow.ActionSecretDelete, escrow.OutcomeSuccess},
		{"delete again", func() error { return e.svc.Delete(as(admin), sec.ID) }, escrow.ActionSecretDelete, escrow.OutcomeFailed},
		{"auth failure", func() error {
			return e.svc.RecordAuthFailure(as(&escrow.Principal{}), "GET /v1/secrets", escrow.Errorf(escrow.CodeUnauthenticated, "token expired"))
		}, escrow.ActionAuthFailed, escrow.OutcomeDenied},
	}
	for _, c := range cases {
		before := len(e.allAudit(t))
		e.clock.Add(time.Second)
		err := c.do()
		if (err == nil) != (c.outcome == escrow.OutcomeSuccess) {
			t.Fatalf("%s: err = %v", c.name, err)
		}
		recs := e.allAudit(t)
		if len(recs) != before+1 {
			t.Fatalf("%s: %d audit records written, want exactly 1", c.name, len(recs)-before)
		}
		got := recs[0] // newest first
		if got.Action != c.action || got.Outcome != c.outcome {
			t.Fatalf("%s: audit %s/%s, want %s/%s", c.name, got.Action, got.Outcome, c.action, c.outcome)
		}
		if got.RequestID == "" || got.SourceIP != "127.0.0.1" {
			t.Fatalf("%s: request info missing from audit: %+v", c.name, got)
		}
		if err != nil && got.ErrorCode != escrow.ErrorCode(err) {
			t.Fatalf("%s: audit error code %q, want %q", c.name, got.ErrorCode, escrow.ErrorCode(err))
		}
	}
}

// TestCanaryNeverLeaks: a secret value appears in no log line, audit record
// or error message, whatever happens to it.
func TestCanaryNeverLeaks(t *testing.T) {
	e := newEnv(t)
	const canary = "CANARY-7f3a9c1e-do-not-leak"
	sec := e.mustCreate(t, admin, "/prod", "pg", escrow.SecretValue{"password": canary, "note": canary})
	var errs []error
	collect := func(_ any, err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	collect(e.svc.Reveal(as(admin), sec.ID, 0))
	collect(e.svc.Reveal(as(mallory), sec.ID, 0))
	collect(e.svc.Update(as(admin), sec.ID, secrets.UpdateInput{Value: escrow.SecretValue{"password": canary + "2"}}))
	collect(e.svc.Update(as(admin), sec.ID, secrets.UpdateInput{Value: escrow.SecretValue{"username": canary}}))              // invalid: no password
	collect(e.svc.Update(as(admin), sec.ID, secrets.UpdateInput{Value: escrow.SecretValue{strings.Repeat("k", 65): canary}})) // invalid field name
	collect(e.svc.Create(as(admin), secrets.CreateInput{Name: "pg", Folder: "/prod", Type: escrow.TypePassword, Value: escrow.SecretValue{"password": canary}}))
	collect(e.svc.Create(as(admin), secrets.CreateInput{Name: "bad\x01", Folder: "/prod", Type: escrow.TypePassword, Value: escrow.SecretValue{"password": canary}}))
	if len(errs) < 5 {
		t.Fatalf("expected the failing calls to fail, got %d errors", len(errs))
	}
	for _, err := range errs {
		if strings.Contains(err.Error(), canary) || strings.Contains(escrow.ErrorMessage(err), canary) {
			t.Fatalf("error leaks the value: %v", err)
		}
	}
	if strings.Contains(e.logs.String(), canary) {
		t.Fatalf("logs leak the value")
	}
	recs, _ := json.Marshal(e.allAudit(t))
	if strings.Contains(string(recs), canary) {
		t.Fatalf("audit leaks the value")
	}
	if !strings.Contains(string(recs), `"fields":"note,password"`) {
		t.Fatalf("audit should name the fields written (not their values): %s", recs)
	}
}

// TestAuditFailureFailsClosed: if the audit log cannot be written, nothing
// is revealed or changed.
func TestAuditFailureFailsClosed(t *testing.T) {
	e := newEnv(t)
	sec := e.mustCreate(t, admin, "/prod", "pg", escrow.SecretValue{"password": "p"})
	broken, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "broken.db"))
	if err != nil {
		t.Fatal(err)
	}
	broken.Close() // a real adapter that can no longer write
	master := make([]byte, 32)
	keys, _ := local.New(master)
	svc := secrets.New(secrets.Config{Store: e.store, Audit: broken, Keys: keys})
	rv, err := svc.Reveal(as(admin), sec.ID, 0)
	if rv != nil || !errors.Is(err, escrow.ErrUnavailable) {
		t.Fatalf("reveal with broken audit: %+v, %v; want no value and unavailable", rv, err)
	}
	if _, err := svc.Get(as(admin), sec.ID); !errors.Is(err, escrow.ErrUnavailable) {
		t.Fatalf("get with broken audit: %v", err)
	}
}

func TestConcurrentUpdatesOneWins(t *testing.T) {
	e := newEnv(t)
	sec := e.mustCreate(t, admin, "/", "race", escrow.SecretValue{"password": "p"})
	rev := sec.Revision
	var wg sync.WaitGroup
	results := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.svc.Update(as(admin), sec.ID, secrets.UpdateInput{Revision: &rev, Value: escrow.SecretValue{"password": strings.Repeat("x", i+1)}})
			results <- err
		}()
	}
	wg.Wait()
	close(results)
	wins := 0
	for err := range results {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, escrow.ErrConflict):
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d concurrent updates won, want exactly 1", wins)
	}
	got, _ := e.svc.Get(as(admin), sec.ID)
	if got.CurrentVersion != 2 {
		t.Fatalf("current version %d, want 2", got.CurrentVersion)
	}
}
