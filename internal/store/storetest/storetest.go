// Package storetest is the one conformance suite for the store ports:
// escrow.Store and escrow.AuditLog (Run), escrow.RequestStore
// (RunRequests), escrow.TicketSystemStore (RunTicketSystems),
// escrow.CheckoutStore (RunCheckouts), escrow.QLockKeyStore
// (RunQLockKeys), escrow.ReportScheduleStore (RunReportSchedules) and
// escrow.SessionStore (RunSessions).
// Every adapter (store/sqlite, store/dynamo) calls each from its own
// tests, so that the embedded store and the DynamoDB store are checked
// against the same promises.
//
// The suite must test only what the port doc comments in internal/escrow
// promise, never an adapter's internals (no SQL, no table layouts, no cursor
// formats), and it must stay small and fast enough to run against moto.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Backend is what an adapter must provide.
type Backend interface {
	escrow.Store
	escrow.AuditLog
}

// Run runs the whole conformance suite; open returns a fresh, empty backend
// for each subtest.
func Run(t *testing.T, open func(t *testing.T) Backend) {
	groups := []struct {
		name  string
		tests []test
	}{
		{"Secrets", []test{
			{"CreateAndGet", testCreateAndGet},
			{"GetByPath", testGetByPath},
			{"NotFound", testNotFound},
			{"DuplicateID", testDuplicateID},
			{"DuplicatePath", testDuplicatePath},
			{"DuplicatePathOfDeleted", testDuplicatePathOfDeleted},
		}},
		{"Versions", []test{
			{"KeepOldVersions", testVersions},
			{"PendingVersion", testPendingVersion},
			{"ExistingVersion", testExistingVersion},
			{"UnknownSecret", testVersionsUnknown},
			{"VersionAndFolders", testVersionAndFolders},
		}},
		{"Update", []test{
			{"StaleRevision", testStaleRevision},
			{"UnknownID", testUpdateUnknown},
			{"Rename", testRename},
			{"MoveToTakenPath", testMoveToTakenPath},
			{"SoftDelete", testSoftDelete},
		}},
		{"AuditAtomicity", []test{
			{"SuccessfulWritesAudited", testWritesAudited},
			{"FailedWritesNotAudited", testFailedWritesNotAudited},
		}},
		{"ListSecrets", []test{
			{"Queries", testListSecrets},
			{"Pagination", testListPagination},
			{"MalformedCursor", testListBadCursor},
		}},
		{"Folders", []test{
			{"CreateUpdate", testFolders},
			{"GetFolders", testGetFolders},
		}},
		{"ACLIndex", []test{
			{"Grants", testACLGrants},
			{"Changes", testACLChanges},
		}},
		{"Audit", []test{
			{"RoundTrip", testAuditRoundTrip},
			{"Filters", testAuditFilters},
			{"Pagination", testAuditPagination},
			{"DuplicateID", testAuditDuplicate},
			{"MalformedCursor", testAuditBadCursor},
			{"Tickets", testAuditTickets},
		}},
		{"Concurrency", []test{
			{"UpdateRace", testUpdateRace},
			{"ParallelAppends", testParallelAppends},
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

type test struct {
	name string
	fn   func(t *testing.T, b Backend)
}

// base is the suite's fixed clock origin. It is millisecond-precise so that
// a store keeping times "at least to the millisecond" returns them exactly.
// base is a few weeks back from today (at an odd time of day), so that
// records spread over several days stay inside the window an unfiltered
// audit query covers (DynamoDB walks day partitions back from now).
var base = time.Now().UTC().Truncate(24 * time.Hour).Add(-20*24*time.Hour + 9*time.Hour + 30*time.Minute + 15*time.Second + 123*time.Millisecond)

// clock hands out distinct, increasing, millisecond-precise times.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: base} }

func (c *clock) next() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

var alice = &escrow.Principal{
	Subject: "alice",
	Email:   "alice@example.com",
	Groups:  []string{"dba", "ops"},
	Roles:   []string{escrow.RoleAuditor},
}

func ctxFor(t *testing.T, p *escrow.Principal) context.Context {
	ctx := escrow.NewContext(t.Context(), p)
	return escrow.WithRequestInfo(ctx, escrow.RequestInfo{RequestID: "req-1", SourceIP: "192.0.2.7", UserAgent: "storetest"})
}

// record builds the audit record of a store write.
func record(ctx context.Context, c *clock, action, secretID string) *escrow.AuditRecord {
	rec := escrow.NewAuditRecord(ctx, c.next(), action, escrow.SecretTarget(secretID))
	rec.SecretID = secretID
	return rec
}

// newSecret returns a secret at folder/name with its first version.
func newSecret(c *clock, folder, name string, acl ...escrow.ACE) (*escrow.Secret, *escrow.SecretVersion) {
	now := c.next()
	id := escrow.NewID(now)
	s := &escrow.Secret{
		ID:             id,
		Name:           name,
		Folder:         folder,
		Type:           escrow.TypePassword,
		Description:    "db " + name,
		Tags:           map[string]string{"env": "prod", "team": "dba"},
		ACL:            acl,
		CurrentVersion: 1,
		Revision:       1,
		CreatedAt:      now,
		CreatedBy:      "alice",
		UpdatedAt:      now,
		UpdatedBy:      "alice",
	}
	return s, newVersion(now, id, 1)
}

func newVersion(now time.Time, id string, n int) *escrow.SecretVersion {
	return &escrow.SecretVersion{
		SecretID:   id,
		Version:    n,
		CreatedAt:  now,
		CreatedBy:  "alice",
		KeyID:      "key-" + fmt.Sprint(n),
		WrappedKey: pattern(byte(n), 40),
		Ciphertext: pattern(byte(n)+100, 60),
	}
}

// pattern returns n bytes that cover every byte value over enough calls,
// including 0 and 0xff, to catch text encodings of binary data.
func pattern(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*37)
	}
	b[0], b[n-1] = 0, 0xff
	return b
}

// clone copies s deeply enough that changing the copy leaves s alone.
func clone(s *escrow.Secret) *escrow.Secret {
	c := *s
	c.Tags = maps.Clone(s.Tags)
	c.ACL = slices.Clone(s.ACL)
	if s.Rotation != nil {
		r := *s.Rotation
		r.Options = maps.Clone(r.Options)
		r.Password.Classes = slices.Clone(r.Password.Classes)
		c.Rotation = &r
	}
	if s.QLock != nil {
		q := *s.QLock
		q.Members = slices.Clone(q.Members)
		q.Fields = slices.Clone(q.Fields)
		c.QLock = &q
	}
	if s.DeletedAt != nil {
		d := *s.DeletedAt
		c.DeletedAt = &d
	}
	return &c
}

// next returns a copy of s as the next revision, updated at now.
func next(s *escrow.Secret, now time.Time) *escrow.Secret {
	c := clone(s)
	c.Revision++
	c.UpdatedAt = now
	c.UpdatedBy = "bob"
	return c
}

func create(t *testing.T, b Backend, ctx context.Context, c *clock, s *escrow.Secret, v *escrow.SecretVersion) {
	t.Helper()
	if err := b.CreateSecret(ctx, s, v, record(ctx, c, escrow.ActionSecretCreate, s.ID)); err != nil {
		t.Fatalf("CreateSecret(%s): %v", s.Path(), err)
	}
}

func update(t *testing.T, b Backend, ctx context.Context, c *clock, s *escrow.Secret, v *escrow.SecretVersion) {
	t.Helper()
	if err := b.UpdateSecret(ctx, s, s.Revision-1, v, record(ctx, c, escrow.ActionSecretUpdate, s.ID)); err != nil {
		t.Fatalf("UpdateSecret(%s, rev %d): %v", s.Path(), s.Revision, err)
	}
}

func mustGet(t *testing.T, b Backend, ctx context.Context, id string) *escrow.Secret {
	t.Helper()
	s, err := b.GetSecret(ctx, id)
	if err != nil {
		t.Fatalf("GetSecret(%s): %v", id, err)
	}
	return s
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

// --- comparisons ---

func sameTime(a, b time.Time) bool { return a.Equal(b) }

func diffSecret(got, want *escrow.Secret) string {
	var d []string
	add := func(field string, g, w any) { d = append(d, fmt.Sprintf("%s = %v, want %v", field, g, w)) }
	if got.ID != want.ID {
		add("ID", got.ID, want.ID)
	}
	if got.Name != want.Name {
		add("Name", got.Name, want.Name)
	}
	if got.Folder != want.Folder {
		add("Folder", got.Folder, want.Folder)
	}
	if got.Type != want.Type {
		add("Type", got.Type, want.Type)
	}
	if got.Description != want.Description {
		add("Description", got.Description, want.Description)
	}
	if !maps.Equal(got.Tags, want.Tags) { // nil and empty are equal
		add("Tags", got.Tags, want.Tags)
	}
	if !slices.Equal(got.ACL, want.ACL) {
		add("ACL", got.ACL, want.ACL)
	}
	if !samePolicy(got.Policy, want.Policy) {
		add("Policy", policyJSON(got.Policy), policyJSON(want.Policy))
	}
	if r, w := rotationJSON(got.Rotation), rotationJSON(want.Rotation); r != w {
		add("Rotation", r, w)
	}
	if q, w := qlockJSON(got.QLock), qlockJSON(want.QLock); q != w {
		add("QLock", q, w)
	}
	if got.CurrentVersion != want.CurrentVersion {
		add("CurrentVersion", got.CurrentVersion, want.CurrentVersion)
	}
	if got.PendingVersion != want.PendingVersion {
		add("PendingVersion", got.PendingVersion, want.PendingVersion)
	}
	if got.Revision != want.Revision {
		add("Revision", got.Revision, want.Revision)
	}
	if !sameTime(got.CreatedAt, want.CreatedAt) {
		add("CreatedAt", got.CreatedAt, want.CreatedAt)
	}
	if got.CreatedBy != want.CreatedBy {
		add("CreatedBy", got.CreatedBy, want.CreatedBy)
	}
	if !sameTime(got.UpdatedAt, want.UpdatedAt) {
		add("UpdatedAt", got.UpdatedAt, want.UpdatedAt)
	}
	if got.UpdatedBy != want.UpdatedBy {
		add("UpdatedBy", got.UpdatedBy, want.UpdatedBy)
	}
	switch {
	case (got.DeletedAt == nil) != (want.DeletedAt == nil):
		add("DeletedAt", got.DeletedAt, want.DeletedAt)
	case got.DeletedAt != nil && !sameTime(*got.DeletedAt, *want.DeletedAt):
		add("DeletedAt", *got.DeletedAt, *want.DeletedAt)
	}
	return strings.Join(d, "; ")
}

func checkSecret(t *testing.T, what string, got, want *escrow.Secret) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: got nil secret", what)
	}
	if d := diffSecret(got, want); d != "" {
		t.Errorf("%s: %s", what, d)
	}
}

// checkVersion compares version metadata, and the bytes when withBytes.
func checkVersion(t *testing.T, what string, got, want *escrow.SecretVersion, withBytes bool) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: got nil version", what)
	}
	if got.SecretID != want.SecretID || got.Version != want.Version || got.CreatedBy != want.CreatedBy ||
		got.KeyID != want.KeyID || !sameTime(got.CreatedAt, want.CreatedAt) {
		t.Errorf("%s: got %s/%d by %q key %q at %v, want %s/%d by %q key %q at %v", what,
			got.SecretID, got.Version, got.CreatedBy, got.KeyID, got.CreatedAt,
			want.SecretID, want.Version, want.CreatedBy, want.KeyID, want.CreatedAt)
	}
	if withBytes {
		if !bytes.Equal(got.Ciphertext, want.Ciphertext) {
			t.Errorf("%s: ciphertext = %x, want %x", what, got.Ciphertext, want.Ciphertext)
		}
		if !bytes.Equal(got.WrappedKey, want.WrappedKey) {
			t.Errorf("%s: wrapped key = %x, want %x", what, got.WrappedKey, want.WrappedKey)
		}
	}
}

func diffRecord(got, want *escrow.AuditRecord) string {
	var d []string
	add := func(field string, g, w any) { d = append(d, fmt.Sprintf("%s = %v, want %v", field, g, w)) }
	if got.ID != want.ID {
		add("ID", got.ID, want.ID)
	}
	if !sameTime(got.Time, want.Time) {
		add("Time", got.Time, want.Time)
	}
	if got.Actor.Subject != want.Actor.Subject || got.Actor.Email != want.Actor.Email ||
		!slices.Equal(got.Actor.Groups, want.Actor.Groups) || !slices.Equal(got.Actor.Roles, want.Actor.Roles) {
		add("Actor", got.Actor, want.Actor)
	}
	for _, f := range []struct {
		name      string
		got, want string
	}{
		{"Action", got.Action, want.Action},
		{"SecretID", got.SecretID, want.SecretID},
		{"Target", got.Target, want.Target},
		{"Outcome", string(got.Outcome), string(want.Outcome)},
		{"ErrorCode", string(got.ErrorCode), string(want.ErrorCode)},
		{"Reason", got.Reason, want.Reason},
		{"RequestID", got.RequestID, want.RequestID},
		{"SourceIP", got.SourceIP, want.SourceIP},
		{"UserAgent", got.UserAgent, want.UserAgent},
		{"Comment", got.Comment, want.Comment},
		{"Ticket", got.Ticket, want.Ticket},
	} {
		if f.got != f.want {
			add(f.name, f.got, f.want)
		}
	}
	if !maps.Equal(got.Details, want.Details) {
		add("Details", got.Details, want.Details)
	}
	return strings.Join(d, "; ")
}

// --- secrets ---

func testCreateAndGet(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	s, v := newSecret(c, "/prod/db", "pg-main",
		escrow.ACE{Principal: "user:alice", Permission: escrow.PermOwner},
		escrow.ACE{Principal: "group:dba", Permission: escrow.PermView})
	s.Description = "main Postgres, \"quoted\" and ünïcode"
	s.Tags["note"] = `a "quoted" \ back<slash> & ünïcode`
	s.Policy = testPolicy()
	s.Rotation = testRotation()
	s.QLock = testQLock()
	create(t, b, ctx, c, s, v)
	checkSecret(t, "GetSecret", mustGet(t, b, ctx, s.ID), s)

	gv, err := b.GetVersion(ctx, s.ID, 1)
	if err != nil {
		t.Fatalf("GetVersion: %v", err)
	}
	checkVersion(t, "GetVersion", gv, v, true)

	// A minimal secret in the root folder: no tags, no ACL, another type.
	m, mv := newSecret(c, "/", "bare")
	m.Tags, m.ACL, m.Description, m.Type = nil, nil, "", escrow.TypeGeneric
	create(t, b, ctx, c, m, mv)
	checkSecret(t, "GetSecret(minimal)", mustGet(t, b, ctx, m.ID), m)

	// DeletedAt round-trips when set.
	d, dv := newSecret(c, "/prod", "gone")
	del := c.next()
	d.DeletedAt = &del
	create(t, b, ctx, c, d, dv)
	got := mustGet(t, b, ctx, d.ID)
	checkSecret(t, "GetSecret(deleted)", got, d)
	if !got.Deleted() {
		t.Errorf("GetSecret(deleted).Deleted() = false")
	}

	// Updates carry the QuantumLock mark: locked to other members, then
	// unlocked; both reads see each.
	relocked := next(s, c.next())
	relocked.QLock.Members = []string{"carol"}
	relocked.QLock.Fields = append(relocked.QLock.Fields, "notes")
	relocked.QLock.LockedAt, relocked.QLock.LockedBy = relocked.UpdatedAt, "bob"
	unlocked := next(relocked, c.next())
	unlocked.QLock = nil
	for _, u := range []*escrow.Secret{relocked, unlocked} {
		update(t, b, ctx, c, u, nil)
		checkSecret(t, fmt.Sprintf("GetSecret(revision %d)", u.Revision), mustGet(t, b, ctx, s.ID), u)
		byPath, err := b.GetSecretByPath(ctx, s.Folder, s.Name)
		if err != nil {
			t.Fatalf("GetSecretByPath(revision %d): %v", u.Revision, err)
		}
		checkSecret(t, fmt.Sprintf("GetSecretByPath(revision %d)", u.Revision), byPath, u)
	}
}

func testGetByPath(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	s, v := newSecret(c, "/prod/db", "pg")
	create(t, b, ctx, c, s, v)
	r, rv := newSecret(c, "/", "pg")
	create(t, b, ctx, c, r, rv)

	got, err := b.GetSecretByPath(ctx, "/prod/db", "pg")
	if err != nil {
		t.Fatalf("GetSecretByPath: %v", err)
	}
	checkSecret(t, "GetSecretByPath(/prod/db, pg)", got, s)
	got, err = b.GetSecretByPath(ctx, "/", "pg")
	if err != nil {
		t.Fatalf("GetSecretByPath(/, pg): %v", err)
	}
	checkSecret(t, "GetSecretByPath(/, pg)", got, r)

	for _, p := range [][2]string{{"/prod", "pg"}, {"/prod/db", "pg2"}, {"/prod/db/pg", "x"}, {"/prod", "db/pg"}} {
		_, err := b.GetSecretByPath(ctx, p[0], p[1])
		wantErr(t, fmt.Sprintf("GetSecretByPath(%q, %q)", p[0], p[1]), err, escrow.ErrNotFound)
	}
}

func testNotFound(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	s, v := newSecret(c, "/a", "x")
	create(t, b, ctx, c, s, v)
	unknown := escrow.NewID(c.next())

	_, err := b.GetSecret(ctx, unknown)
	wantErr(t, "GetSecret(unknown)", err, escrow.ErrNotFound)
	_, err = b.GetVersion(ctx, unknown, 1)
	wantErr(t, "GetVersion(unknown, 1)", err, escrow.ErrNotFound)
	_, err = b.GetVersion(ctx, s.ID, 2)
	wantErr(t, "GetVersion(id, 2)", err, escrow.ErrNotFound)
	_, err = b.GetSecretByPath(ctx, "/a", "y")
	wantErr(t, "GetSecretByPath(/a, y)", err, escrow.ErrNotFound)
}

func testDuplicateID(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	s, v := newSecret(c, "/a", "x")
	create(t, b, ctx, c, s, v)

	d, dv := newSecret(c, "/b", "y")
	d.ID, dv.SecretID = s.ID, s.ID
	err := b.CreateSecret(ctx, d, dv, record(ctx, c, escrow.ActionSecretCreate, d.ID))
	wantErr(t, "CreateSecret(same ID)", err, escrow.ErrConflict)

	checkSecret(t, "GetSecret after conflict", mustGet(t, b, ctx, s.ID), s)
	_, err = b.GetSecretByPath(ctx, "/b", "y")
	wantErr(t, "GetSecretByPath(/b, y) after conflict", err, escrow.ErrNotFound)
	gv, err := b.GetVersion(ctx, s.ID, 1)
	if err != nil {
		t.Fatalf("GetVersion: %v", err)
	}
	checkVersion(t, "GetVersion after conflict", gv, v, true)
}

func testDuplicatePath(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	s, v := newSecret(c, "/a", "x")
	create(t, b, ctx, c, s, v)

	d, dv := newSecret(c, "/a", "x")
	err := b.CreateSecret(ctx, d, dv, record(ctx, c, escrow.ActionSecretCreate, d.ID))
	wantErr(t, "CreateSecret(same folder+name)", err, escrow.ErrConflict)
	_, err = b.GetSecret(ctx, d.ID)
	wantErr(t, "GetSecret(loser)", err, escrow.ErrNotFound)
	if vs, err := b.ListVersions(ctx, d.ID); err != nil || len(vs) != 0 {
		t.Errorf("ListVersions(loser) = %d versions, %v; want none", len(vs), err)
	}
	got, err := b.GetSecretByPath(ctx, "/a", "x")
	if err != nil {
		t.Fatalf("GetSecretByPath: %v", err)
	}
	checkSecret(t, "GetSecretByPath after conflict", got, s)

	// The same name in another folder, and another name in the same
	// folder, are different paths.
	o, ov := newSecret(c, "/a/x", "x")
	create(t, b, ctx, c, o, ov)
	n, nv := newSecret(c, "/a", "x2")
	create(t, b, ctx, c, n, nv)
}

func testDuplicatePathOfDeleted(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	s, v := newSecret(c, "/a", "x")
	create(t, b, ctx, c, s, v)
	del := next(s, c.next())
	now := c.next()
	del.DeletedAt = &now
	update(t, b, ctx, c, del, nil)

	d, dv := newSecret(c, "/a", "x")
	err := b.CreateSecret(ctx, d, dv, record(ctx, c, escrow.ActionSecretCreate, d.ID))
	wantErr(t, "CreateSecret(path of a deleted secret)", err, escrow.ErrConflict)
	_, err = b.GetSecret(ctx, d.ID)
	wantErr(t, "GetSecret(loser)", err, escrow.ErrNotFound)
}

// --- versions ---

func testVersions(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	s, v1 := newSecret(c, "/a", "x")
	create(t, b, ctx, c, s, v1)

	s2 := next(s, c.next())
	s2.CurrentVersion = 2
	v2 := newVersion(s2.UpdatedAt, s.ID, 2)
	update(t, b, ctx, c, s2, v2)

	// A metadata-only update adds no version.
	s3 := next(s2, c.next())
	s3.Description = "metadata only"
	s3.Tags["owner"] = "bob"
	update(t, b, ctx, c, s3, nil)

	checkSecret(t, "GetSecret", mustGet(t, b, ctx, s.ID), s3)
	for _, want := range []*escrow.SecretVersion{v1, v2} {
		got, err := b.GetVersion(ctx, s.ID, want.Version)
		if err != nil {
			t.Fatalf("GetVersion(%d): %v", want.Version, err)
		}
		checkVersion(t, fmt.Sprintf("GetVersion(%d)", want.Version), got, want, true)
	}
	_, err := b.GetVersion(ctx, s.ID, 3)
	wantErr(t, "GetVersion(3)", err, escrow.ErrNotFound)

	vs, err := b.ListVersions(ctx, s.ID)
	if err != nil {
		t.Fatalf("ListVersions: %v", err)
	}
	if len(vs) != 2 {
		t.Fatalf("ListVersions returned %d versions, want 2", len(vs))
	}
	for i, want := range []*escrow.SecretVersion{v1, v2} {
		checkVersion(t, fmt.Sprintf("ListVersions[%d]", i), vs[i], want, false)
		if len(vs[i].Ciphertext) != 0 {
			t.Errorf("ListVersions[%d] carries a ciphertext (%d bytes); it must be omitted", i, len(vs[i].Ciphertext))
		}
	}
}

// testVersionAndFolders: the reveal's combined read returns the exact
// version and only the folders that exist.
func testVersionAndFolders(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	s, v1 := newSecret(c, "/a/b", "x")
	create(t, b, ctx, c, s, v1)
	s2 := next(s, c.next())
	s2.CurrentVersion = 2
	v2 := newVersion(s2.UpdatedAt, s.ID, 2)
	update(t, b, ctx, c, s2, v2)
	want := escrow.Folder{Path: "/a", ACL: []escrow.ACE{{Principal: "group:dba", Permission: escrow.PermView}}, Revision: 1, UpdatedBy: "alice"}
	f := want
	if err := b.PutFolder(ctx, &f, 0, escrow.NewAuditRecord(ctx, c.next(), escrow.ActionFolderACL, escrow.FolderTarget("/a"))); err != nil {
		t.Fatalf("PutFolder: %v", err)
	}
	got, folders, err := b.GetVersionAndFolders(ctx, s.ID, 1, escrow.Ancestors("/a/b"))
	if err != nil {
		t.Fatalf("GetVersionAndFolders: %v", err)
	}
	checkVersion(t, "GetVersionAndFolders version", got, v1, true)
	if len(folders) != 1 {
		t.Fatalf("GetVersionAndFolders returned %d folders, want only /a", len(folders))
	}
	checkFolder(t, "GetVersionAndFolders folder", folders[0], want)
	got, folders, err = b.GetVersionAndFolders(ctx, s.ID, 2, nil)
	if err != nil || len(folders) != 0 {
		t.Fatalf("GetVersionAndFolders(no folders): %d folders, %v", len(folders), err)
	}
	checkVersion(t, "GetVersionAndFolders v2", got, v2, true)
	_, _, err = b.GetVersionAndFolders(ctx, s.ID, 3, escrow.Ancestors("/a/b"))
	wantErr(t, "GetVersionAndFolders(3)", err, escrow.ErrNotFound)
	_, _, err = b.GetVersionAndFolders(ctx, escrow.NewID(c.next()), 1, nil)
	wantErr(t, "GetVersionAndFolders(unknown)", err, escrow.ErrNotFound)
}

// testPendingVersion follows a rotation through the store: the new
// password is stored as the pending version (the current one, and what a
// reveal reads, stay as they were), then promoted by a metadata update.
func testPendingVersion(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	s, v1 := newSecret(c, "/a", "x")
	s.Rotation = testRotation()
	create := record(ctx, c, escrow.ActionSecretCreate, s.ID)
	if err := b.CreateSecret(ctx, s, v1, create); err != nil {
		t.Fatalf("CreateSecret: %v", err)
	}
	done := []*escrow.AuditRecord{create}
	write := func(what string, u *escrow.Secret, v *escrow.SecretVersion) {
		t.Helper()
		rec := record(ctx, c, escrow.ActionSecretUpdate, s.ID)
		if err := b.UpdateSecret(ctx, u, u.Revision-1, v, rec); err != nil {
			t.Fatalf("UpdateSecret(%s): %v", what, err)
		}
		done = append(done, rec)
	}
	var refused []string
	refuse := func(what string, u *escrow.Secret, v *escrow.SecretVersion, want error) {
		t.Helper()
		rec := record(ctx, c, escrow.ActionSecretUpdate, s.ID)
		// want nil: the port names no error for this misuse, so any will do.
		err := b.UpdateSecret(ctx, u, u.Revision-1, v, rec)
		if err == nil || (want != nil && !errors.Is(err, want)) {
			t.Fatalf("UpdateSecret(%s): got error %v, want %v", what, err, want)
		}
		refused = append(refused, rec.ID)
	}
	version := func(what string, n int, want *escrow.SecretVersion) {
		t.Helper()
		got, err := b.GetVersion(ctx, s.ID, n)
		if err != nil {
			t.Fatalf("GetVersion(%s, %d): %v", what, n, err)
		}
		checkVersion(t, fmt.Sprintf("GetVersion(%s, %d)", what, n), got, want, true)
	}

	pending := next(s, c.next())
	pending.PendingVersion = 2
	v2 := newVersion(pending.UpdatedAt, s.ID, 2)
	write("add pending version", pending, v2)
	got := mustGet(t, b, ctx, s.ID)
	checkSecret(t, "GetSecret with a pending version", got, pending)
	version("current, while pending", got.CurrentVersion, v1)
	version("pending", got.PendingVersion, v2)

	// A retried step that writes the pending version again conflicts; a
	// version that is neither current nor pending is refused.
	again := next(pending, c.next())
	dup := newVersion(again.UpdatedAt, s.ID, 2)
	dup.Ciphertext = []byte("replacement")
	refuse("pending version again", again, dup, escrow.ErrConflict)
	odd := next(pending, c.next())
	refuse("neither current nor pending", odd, newVersion(odd.UpdatedAt, s.ID, 3), nil)
	checkSecret(t, "GetSecret after refused writes", mustGet(t, b, ctx, s.ID), pending)
	version("pending, after refused writes", 2, v2)
	_, err := b.GetVersion(ctx, s.ID, 3)
	wantErr(t, "GetVersion(refused version)", err, escrow.ErrNotFound)

	// Promotion: the pending version becomes current, with no new version.
	promoted := next(pending, c.next())
	promoted.CurrentVersion, promoted.PendingVersion = 2, 0
	promoted.Rotation.Options["tls"] = "verify-full"
	write("promote", promoted, nil)
	got = mustGet(t, b, ctx, s.ID)
	checkSecret(t, "GetSecret after promotion", got, promoted)
	version("current, after promotion", got.CurrentVersion, v2)
	if vs, err := b.ListVersions(ctx, s.ID); err != nil || len(vs) != 2 {
		t.Errorf("ListVersions after promotion = %d versions, %v; want 2", len(vs), err)
	}

	// Turning rotation off stores none.
	off := next(promoted, c.next())
	off.Rotation = nil
	write("rotation off", off, nil)
	checkSecret(t, "GetSecret with rotation off", mustGet(t, b, ctx, s.ID), off)

	logged := auditIDs(allAudit(t, b, ctx, escrow.AuditQuery{SecretID: s.ID}))
	want := auditIDs(done)
	slices.Reverse(want)
	if !slices.Equal(logged, want) {
		t.Errorf("audit records = %v, want %v (refused: %v)", logged, want, refused)
	}
}

func testExistingVersion(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	s, v1 := newSecret(c, "/a", "x")
	create(t, b, ctx, c, s, v1)

	s2 := next(s, c.next())
	s2.Description = "should not land"
	dup := newVersion(s2.UpdatedAt, s.ID, 1) // v1 exists
	dup.Ciphertext = []byte("replacement")
	err := b.UpdateSecret(ctx, s2, 1, dup, record(ctx, c, escrow.ActionSecretUpdate, s.ID))
	wantErr(t, "UpdateSecret adding an existing version", err, escrow.ErrConflict)

	checkSecret(t, "GetSecret after conflict", mustGet(t, b, ctx, s.ID), s)
	got, err := b.GetVersion(ctx, s.ID, 1)
	if err != nil {
		t.Fatalf("GetVersion: %v", err)
	}
	checkVersion(t, "GetVersion after conflict", got, v1, true)
}

func testVersionsUnknown(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	s, v := newSecret(c, "/a", "x")
	create(t, b, ctx, c, s, v)
	vs, err := b.ListVersions(ctx, escrow.NewID(c.next()))
	if err != nil {
		t.Fatalf("ListVersions(unknown): %v", err)
	}
	if len(vs) != 0 {
		t.Errorf("ListVersions(unknown) = %d versions, want none", len(vs))
	}
}

// --- conditional updates ---

func testStaleRevision(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	s, v := newSecret(c, "/a", "x", escrow.ACE{Principal: "user:alice", Permission: escrow.PermOwner})
	create(t, b, ctx, c, s, v)
	first := next(s, c.next())
	first.Description = "first"
	update(t, b, ctx, c, first, nil)

	// A second writer that read revision 1 loses, with a new version and a
	// rename: nothing of it may land.
	stale := next(s, c.next())
	stale.Description = "second"
	stale.Name = "renamed"
	stale.CurrentVersion = 2
	stale.ACL = []escrow.ACE{{Principal: "user:mallory", Permission: escrow.PermOwner}}
	err := b.UpdateSecret(ctx, stale, 1, newVersion(stale.UpdatedAt, s.ID, 2), record(ctx, c, escrow.ActionSecretUpdate, s.ID))
	wantErr(t, "UpdateSecret(stale revision)", err, escrow.ErrConflict)

	checkSecret(t, "GetSecret after stale update", mustGet(t, b, ctx, s.ID), first)
	if vs, err := b.ListVersions(ctx, s.ID); err != nil || len(vs) != 1 {
		t.Errorf("ListVersions after stale update = %d versions, %v; want 1", len(vs), err)
	}
	_, err = b.GetSecretByPath(ctx, "/a", "renamed")
	wantErr(t, "GetSecretByPath(new name of stale update)", err, escrow.ErrNotFound)
	if gs, err := b.ListACLGrants(ctx, []string{"user:mallory"}); err != nil || len(gs) != 0 {
		t.Errorf("ListACLGrants(mallory) after stale update = %v, %v; want none", gs, err)
	}

	// A revision from the future is just as stale.
	future := next(first, c.next())
	err = b.UpdateSecret(ctx, next(future, c.next()), future.Revision, nil, record(ctx, c, escrow.ActionSecretUpdate, s.ID))
	wantErr(t, "UpdateSecret(future revision)", err, escrow.ErrConflict)
}

func testUpdateUnknown(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	s, _ := newSecret(c, "/a", "x")
	err := b.UpdateSecret(ctx, next(s, c.next()), 1, nil, record(ctx, c, escrow.ActionSecretUpdate, s.ID))
	wantErr(t, "UpdateSecret(unknown id)", err, escrow.ErrNotFound)
	_, err = b.GetSecret(ctx, s.ID)
	wantErr(t, "GetSecret after failed update", err, escrow.ErrNotFound)
}

func testRename(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	s, v := newSecret(c, "/f", "a")
	create(t, b, ctx, c, s, v)

	r := next(s, c.next())
	r.Name = "c"
	update(t, b, ctx, c, r, nil)
	_, err := b.GetSecretByPath(ctx, "/f", "a")
	wantErr(t, "GetSecretByPath(old name)", err, escrow.ErrNotFound)
	got, err := b.GetSecretByPath(ctx, "/f", "c")
	if err != nil {
		t.Fatalf("GetSecretByPath(new name): %v", err)
	}
	checkSecret(t, "GetSecretByPath(new name)", got, r)

	// The old path is free again.
	n, nv := newSecret(c, "/f", "a")
	create(t, b, ctx, c, n, nv)

	// Move to another folder.
	m := next(r, c.next())
	m.Folder = "/g/h"
	update(t, b, ctx, c, m, nil)
	got, err = b.GetSecretByPath(ctx, "/g/h", "c")
	if err != nil {
		t.Fatalf("GetSecretByPath(moved): %v", err)
	}
	checkSecret(t, "GetSecretByPath(moved)", got, m)
	_, err = b.GetSecretByPath(ctx, "/f", "c")
	wantErr(t, "GetSecretByPath(before move)", err, escrow.ErrNotFound)
}

func testMoveToTakenPath(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	a, av := newSecret(c, "/f", "a")
	create(t, b, ctx, c, a, av)
	x, xv := newSecret(c, "/g", "b")
	create(t, b, ctx, c, x, xv)
	d, dv := newSecret(c, "/g", "deleted")
	create(t, b, ctx, c, d, dv)
	dd := next(d, c.next())
	now := c.next()
	dd.DeletedAt = &now
	update(t, b, ctx, c, dd, nil)

	for _, to := range [][2]string{{"/g", "b"}, {"/g", "deleted"}} {
		m := next(a, c.next())
		m.Folder, m.Name = to[0], to[1]
		err := b.UpdateSecret(ctx, m, a.Revision, nil, record(ctx, c, escrow.ActionSecretUpdate, a.ID))
		wantErr(t, fmt.Sprintf("UpdateSecret moving to taken %s/%s", to[0], to[1]), err, escrow.ErrConflict)
	}
	checkSecret(t, "GetSecret after failed moves", mustGet(t, b, ctx, a.ID), a)
	got, err := b.GetSecretByPath(ctx, "/g", "b")
	if err != nil {
		t.Fatalf("GetSecretByPath(/g, b): %v", err)
	}
	checkSecret(t, "owner of the taken path", got, x)
	got, err = b.GetSecretByPath(ctx, "/f", "a")
	if err != nil {
		t.Fatalf("GetSecretByPath(/f, a): %v", err)
	}
	checkSecret(t, "GetSecretByPath after failed moves", got, a)
}

func testSoftDelete(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	s, v := newSecret(c, "/a", "x")
	create(t, b, ctx, c, s, v)

	del := next(s, c.next())
	now := c.next()
	del.DeletedAt = &now
	update(t, b, ctx, c, del, nil)
	got := mustGet(t, b, ctx, s.ID)
	checkSecret(t, "GetSecret(deleted)", got, del)
	if !got.Deleted() {
		t.Errorf("Deleted() = false after soft delete")
	}
	// Versions survive a soft delete.
	if _, err := b.GetVersion(ctx, s.ID, 1); err != nil {
		t.Errorf("GetVersion after soft delete: %v", err)
	}

	// Restoring is an update too.
	restored := next(del, c.next())
	restored.DeletedAt = nil
	update(t, b, ctx, c, restored, nil)
	checkSecret(t, "GetSecret(restored)", mustGet(t, b, ctx, s.ID), restored)
}

// --- atomicity with audit ---

// allAudit reads every page of q, failing on a record seen twice.
func allAudit(t *testing.T, b escrow.AuditLog, ctx context.Context, q escrow.AuditQuery) []*escrow.AuditRecord {
	t.Helper()
	return drain(t, fmt.Sprintf("QueryAudit(%+v)", q), q.Limit, func(cursor string) ([]*escrow.AuditRecord, string, error) {
		q.Cursor = cursor
		p, err := b.QueryAudit(ctx, q)
		return p.Records, p.Next, err
	}, auditID)
}

func auditIDs(recs []*escrow.AuditRecord) []string { return idsOf(recs, auditID) }

func auditID(r *escrow.AuditRecord) string { return r.ID }

func testWritesAudited(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	var want []*escrow.AuditRecord

	s, v := newSecret(c, "/a", "x")
	rec := record(ctx, c, escrow.ActionSecretCreate, s.ID)
	rec.Details = map[string]string{"fields": "password,username", "version": "1"}
	if err := b.CreateSecret(ctx, s, v, rec); err != nil {
		t.Fatalf("CreateSecret: %v", err)
	}
	want = append(want, rec)

	u := next(s, c.next())
	u.CurrentVersion = 2
	rec = record(ctx, c, escrow.ActionSecretUpdate, s.ID)
	rec.Comment, rec.Ticket = "rotate after incident", "INC-42"
	if err := b.UpdateSecret(ctx, u, 1, newVersion(u.UpdatedAt, s.ID, 2), rec); err != nil {
		t.Fatalf("UpdateSecret: %v", err)
	}
	want = append(want, rec)

	rec = escrow.NewAuditRecord(ctx, c.next(), escrow.ActionFolderACL, escrow.FolderTarget("/a"))
	f := &escrow.Folder{Path: "/a", Revision: 1, UpdatedBy: "alice", ACL: []escrow.ACE{{Principal: "group:dba", Permission: escrow.PermView}}}
	if err := b.PutFolder(ctx, f, 0, rec); err != nil {
		t.Fatalf("PutFolder: %v", err)
	}
	want = append(want, rec)

	rec = escrow.NewAuditRecord(ctx, c.next(), escrow.ActionSecretReveal, escrow.SecretTarget(s.ID))
	rec.SecretID = s.ID
	if err := b.Append(ctx, rec); err != nil {
		t.Fatalf("Append: %v", err)
	}
	want = append(want, rec)

	got := allAudit(t, b, ctx, escrow.AuditQuery{})
	slices.Reverse(want) // newest first
	if !slices.Equal(auditIDs(got), auditIDs(want)) {
		t.Fatalf("QueryAudit = %v, want %v", auditIDs(got), auditIDs(want))
	}
	for i := range want {
		if d := diffRecord(got[i], want[i]); d != "" {
			t.Errorf("record %d (%s): %s", i, want[i].Action, d)
		}
	}
	bySecret := allAudit(t, b, ctx, escrow.AuditQuery{SecretID: s.ID})
	if ids, w := auditIDs(bySecret), []string{want[0].ID, want[2].ID, want[3].ID}; !slices.Equal(ids, w) {
		t.Errorf("QueryAudit(SecretID) = %v, want %v", ids, w)
	}
}

func testFailedWritesNotAudited(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	s, v := newSecret(c, "/a", "x")
	create(t, b, ctx, c, s, v)
	f := &escrow.Folder{Path: "/a", Revision: 1}
	if err := b.PutFolder(ctx, f, 0, escrow.NewAuditRecord(ctx, c.next(), escrow.ActionFolderACL, escrow.FolderTarget("/a"))); err != nil {
		t.Fatalf("PutFolder: %v", err)
	}
	before := auditIDs(allAudit(t, b, ctx, escrow.AuditQuery{}))
	if len(before) != 2 {
		t.Fatalf("QueryAudit after two writes = %d records, want 2", len(before))
	}

	var failed []string
	fail := func(what string, err, want error, rec *escrow.AuditRecord) {
		t.Helper()
		wantErr(t, what, err, want)
		failed = append(failed, rec.ID)
	}
	d, dv := newSecret(c, "/a", "x")
	rec := record(ctx, c, escrow.ActionSecretCreate, d.ID)
	fail("CreateSecret(duplicate path)", b.CreateSecret(ctx, d, dv, rec), escrow.ErrConflict, rec)

	d2, dv2 := newSecret(c, "/b", "y")
	d2.ID, dv2.SecretID = s.ID, s.ID
	rec = record(ctx, c, escrow.ActionSecretCreate, s.ID)
	fail("CreateSecret(duplicate ID)", b.CreateSecret(ctx, d2, dv2, rec), escrow.ErrConflict, rec)

	stale := next(next(s, c.next()), c.next())
	rec = record(ctx, c, escrow.ActionSecretUpdate, s.ID)
	fail("UpdateSecret(stale)", b.UpdateSecret(ctx, stale, 2, nil, rec), escrow.ErrConflict, rec)

	ghost, _ := newSecret(c, "/a", "ghost")
	rec = record(ctx, c, escrow.ActionSecretUpdate, ghost.ID)
	fail("UpdateSecret(unknown)", b.UpdateSecret(ctx, next(ghost, c.next()), 1, nil, rec), escrow.ErrNotFound, rec)

	rec = escrow.NewAuditRecord(ctx, c.next(), escrow.ActionFolderACL, escrow.FolderTarget("/a"))
	fail("PutFolder(exists)", b.PutFolder(ctx, &escrow.Folder{Path: "/a", Revision: 1}, 0, rec), escrow.ErrConflict, rec)

	rec = escrow.NewAuditRecord(ctx, c.next(), escrow.ActionFolderACL, escrow.FolderTarget("/a"))
	fail("PutFolder(stale)", b.PutFolder(ctx, &escrow.Folder{Path: "/a", Revision: 3}, 2, rec), escrow.ErrConflict, rec)

	after := auditIDs(allAudit(t, b, ctx, escrow.AuditQuery{}))
	if !slices.Equal(after, before) {
		t.Errorf("QueryAudit after failed writes = %v, want only %v (failed: %v)", after, before, failed)
	}
	for _, id := range failed {
		if slices.Contains(after, id) {
			t.Errorf("audit record %s of a failed write is in the log", id)
		}
	}
}

// --- listing ---

// listFixture creates secrets whose path order differs from (folder, name)
// order, with neighbours that a naive prefix match would confuse.
func listFixture(t *testing.T, b Backend, ctx context.Context, c *clock) []*escrow.Secret {
	t.Helper()
	var all []*escrow.Secret
	for _, p := range []struct {
		folder, name string
		deleted      bool
		locked       bool // QuantumLocked
	}{
		{"/prod", "web", true, true},
		{"/a", "z", false, false},
		{"/a-b", "c", false, false}, // "/a-b/c" < "/a/z" in byte order, though "/a" < "/a-b"
		{"/", "root", false, false},
		{"/prod", "api", false, false},
		{"/prod/db", "x", false, true},
		{"/production", "y", false, false},
		{"/prod/db/replica", "r", false, false},
		{"/prod", "api-old", true, false},
		{"/", "Zeta", false, false}, // upper case sorts before lower case
		{"/prod/db", "x.y", false, false},
	} {
		s, v := newSecret(c, p.folder, p.name)
		if p.locked {
			s.QLock = testQLock()
		}
		create(t, b, ctx, c, s, v)
		if p.deleted {
			d := next(s, c.next())
			now := c.next()
			d.DeletedAt = &now
			update(t, b, ctx, c, d, nil)
			s = d
		}
		all = append(all, s)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Path() < all[j].Path() })
	return all
}

// expect filters the fixture the way q asks, in path order.
func expect(all []*escrow.Secret, q escrow.SecretQuery) []string {
	var out []string
	for _, s := range all {
		if s.Deleted() && !q.IncludeDeleted {
			continue
		}
		in := s.Folder == q.Folder
		if q.Recursive {
			in = in || q.Folder == "/" || strings.HasPrefix(s.Folder, q.Folder+"/")
		}
		if in {
			out = append(out, s.Path())
		}
	}
	return out
}

func listAll(t *testing.T, b Backend, ctx context.Context, q escrow.SecretQuery) []*escrow.Secret {
	t.Helper()
	return drain(t, fmt.Sprintf("ListSecrets(%+v)", q), q.Limit, func(cursor string) ([]*escrow.Secret, string, error) {
		q.Cursor = cursor
		p, err := b.ListSecrets(ctx, q)
		return p.Secrets, p.Next, err
	}, func(s *escrow.Secret) string { return s.Path() })
}

func paths(ss []*escrow.Secret) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.Path()
	}
	return out
}

func testListSecrets(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	all := listFixture(t, b, ctx, c)
	byID := map[string]*escrow.Secret{}
	for _, s := range all {
		byID[s.ID] = s
	}

	for _, q := range []escrow.SecretQuery{
		{Folder: "/", Recursive: true, IncludeDeleted: true},
		{Folder: "/", Recursive: true},
		{Folder: "/"},
		{Folder: "/prod"},
		{Folder: "/prod", IncludeDeleted: true},
		{Folder: "/prod", Recursive: true},
		{Folder: "/prod", Recursive: true, IncludeDeleted: true},
		{Folder: "/prod/db", Recursive: true},
		{Folder: "/a"},
		{Folder: "/a", Recursive: true},
		{Folder: "/production", Recursive: true},
		{Folder: "/empty", Recursive: true},
		{Folder: "/pro", Recursive: true},
	} {
		got := listAll(t, b, ctx, q)
		want := expect(all, q)
		if !slices.Equal(paths(got), want) {
			t.Errorf("ListSecrets(folder %q, recursive %v, deleted %v) = %q, want %q",
				q.Folder, q.Recursive, q.IncludeDeleted, paths(got), want)
			continue
		}
		for _, s := range got {
			checkSecret(t, "listed "+s.Path(), s, byID[s.ID])
		}
	}
}

func testListPagination(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	all := listFixture(t, b, ctx, c)
	for _, q := range []escrow.SecretQuery{
		{Folder: "/", Recursive: true, IncludeDeleted: true},
		{Folder: "/", Recursive: true},
		{Folder: "/prod", Recursive: true},
		{Folder: "/prod", IncludeDeleted: true},
	} {
		want := expect(all, q)
		for _, limit := range []int{1, 2, 3, 5, len(want), 1000} {
			q.Limit = limit
			if got := paths(listAll(t, b, ctx, q)); !slices.Equal(got, want) {
				t.Errorf("ListSecrets(folder %q, recursive %v, deleted %v) in pages of %d = %q, want %q",
					q.Folder, q.Recursive, q.IncludeDeleted, limit, got, want)
			}
		}
	}

	// The first page of a limited listing says there is more.
	p, err := b.ListSecrets(ctx, escrow.SecretQuery{Folder: "/", Recursive: true, Limit: 2})
	if err != nil {
		t.Fatalf("ListSecrets: %v", err)
	}
	if p.Next == "" {
		t.Errorf("ListSecrets(limit 2 of %d) has no Next", len(all))
	}
}

func testListBadCursor(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	s, v := newSecret(c, "/a", "x")
	create(t, b, ctx, c, s, v)
	for _, cur := range []string{"not a cursor!", "%%%", "\x00\xff"} {
		_, err := b.ListSecrets(ctx, escrow.SecretQuery{Folder: "/", Recursive: true, Cursor: cur})
		wantErr(t, fmt.Sprintf("ListSecrets(cursor %q)", cur), err, escrow.ErrInvalid)
	}
}

// --- folders ---

// samePolicy compares policies by their JSON form (nil and nil are equal).
func samePolicy(a, b *escrow.Policy) bool { return policyJSON(a) == policyJSON(b) }

func policyJSON(p *escrow.Policy) string {
	if p == nil {
		return "null"
	}
	b, _ := json.Marshal(p)
	return string(b)
}

// testPolicy is a policy that uses every field.
func testPolicy() *escrow.Policy {
	return &escrow.Policy{
		Approval: &escrow.ApprovalRule{
			For:            []escrow.AccessKind{escrow.AccessView, escrow.AccessCheckout},
			Steps:          []escrow.ApprovalStep{{Name: "leads", Approvers: []string{"group:leads", "user:bob"}, Quorum: 2}},
			PendingTimeout: escrow.Duration(time.Hour), MaxDuration: escrow.Duration(4 * time.Hour),
			AllowFutureStart: true, ClockStarts: escrow.ClockAtStart,
		},
		Comment: escrow.CommentRule{Mode: escrow.CommentRequired, Prompt: "Change number", MinLength: 10,
			Pattern: `^CHG[0-9]{7}$`, PatternMessage: "Enter the change number", OnReveal: true},
		Notice: "# Be careful\nProduction access is logged.",
		Checkout: &escrow.CheckoutRule{
			Required: true, Interval: escrow.Duration(45 * time.Minute), MaxExtensions: 2,
			RotateOnCheckin: new(bool), // explicitly false: not the same as unset
			PreHooks: []escrow.HookRule{{Name: "cmdb", URL: "https://cmdb.example.com/hook?x=1", KeySecret: "/hooks/cmdb",
				Timeout: escrow.Duration(3 * time.Second), StopOnFailure: true}},
			PostHooks: []escrow.HookRule{{Name: "notify", URL: "http://notify.internal/hook", KeySecret: "/hooks/notify"}},
		},
	}
}

// testRotation is a rotation that uses every field.
func testRotation() *escrow.RotationConfig {
	return &escrow.RotationConfig{
		Target:     escrow.TargetPostgres,
		Privileged: escrow.NewID(base),
		Password: escrow.PasswordPolicy{Length: 32, Classes: []string{escrow.ClassLower, escrow.ClassUpper, escrow.ClassDigit},
			Symbols: "!#%", Exclude: "0O1lI"},
		Options: map[string]string{"tls": "require", "ca": "-----BEGIN CERTIFICATE-----\nMIIB \"quoted\" ünïcode\n-----END CERTIFICATE-----\n"},
	}
}

func rotationJSON(r *escrow.RotationConfig) string {
	if r == nil {
		return "null"
	}
	b, _ := json.Marshal(r)
	return string(b)
}

// testQLock is a QuantumLock mark that uses every field.
func testQLock() *escrow.QLock {
	return &escrow.QLock{
		Members:  []string{"alice", "auth0|5f7c1e", `bob "quoted" ünïcode`},
		Fields:   []string{"password", "private_key"},
		LockedAt: base.Add(time.Hour),
		LockedBy: "alice",
	}
}

func qlockJSON(q *escrow.QLock) string {
	if q == nil {
		return "null"
	}
	b, _ := json.Marshal(q)
	return string(b)
}

func checkFolder(t *testing.T, what string, got, want escrow.Folder) {
	t.Helper()
	if got.Path != want.Path || got.Revision != want.Revision || got.UpdatedBy != want.UpdatedBy || !slices.Equal(got.ACL, want.ACL) ||
		!samePolicy(got.Policy, want.Policy) {
		t.Errorf("%s = %+v, want %+v", what, got, want)
	}
}

func getFolder(t *testing.T, b Backend, ctx context.Context, path string) escrow.Folder {
	t.Helper()
	fs, err := b.GetFolders(ctx, []string{path})
	if err != nil {
		t.Fatalf("GetFolders(%s): %v", path, err)
	}
	if len(fs) != 1 {
		t.Fatalf("GetFolders(%s) = %d folders, want 1", path, len(fs))
	}
	return fs[0]
}

func testFolders(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	frec := func() *escrow.AuditRecord {
		return escrow.NewAuditRecord(ctx, c.next(), escrow.ActionFolderACL, escrow.FolderTarget("/prod"))
	}
	f1 := escrow.Folder{Path: "/prod", Revision: 1, UpdatedBy: "alice",
		ACL:    []escrow.ACE{{Principal: "group:dba", Permission: escrow.PermEdit}, {Principal: "user:bob", Permission: escrow.PermList}},
		Policy: testPolicy()}
	if err := b.PutFolder(ctx, &f1, 0, frec()); err != nil {
		t.Fatalf("PutFolder(create): %v", err)
	}
	checkFolder(t, "after create", getFolder(t, b, ctx, "/prod"), f1)

	f2 := escrow.Folder{Path: "/prod", Revision: 2, UpdatedBy: "bob", ACL: []escrow.ACE{{Principal: "user:carol", Permission: escrow.PermOwner}}}
	if err := b.PutFolder(ctx, &f2, 1, frec()); err != nil {
		t.Fatalf("PutFolder(update): %v", err)
	}
	checkFolder(t, "after update", getFolder(t, b, ctx, "/prod"), f2)

	stale := escrow.Folder{Path: "/prod", Revision: 2, UpdatedBy: "mallory"}
	wantErr(t, "PutFolder(stale)", b.PutFolder(ctx, &stale, 1, frec()), escrow.ErrConflict)
	again := escrow.Folder{Path: "/prod", Revision: 1, UpdatedBy: "mallory"}
	wantErr(t, "PutFolder(create existing)", b.PutFolder(ctx, &again, 0, frec()), escrow.ErrConflict)
	checkFolder(t, "after conflicts", getFolder(t, b, ctx, "/prod"), f2)

	// Updating a folder that does not exist is a conflict, not a create.
	ghost := escrow.Folder{Path: "/ghost", Revision: 4}
	wantErr(t, "PutFolder(update missing)", b.PutFolder(ctx, &ghost, 3, frec()), escrow.ErrConflict)
	if fs, err := b.GetFolders(ctx, []string{"/ghost"}); err != nil || len(fs) != 0 {
		t.Errorf("GetFolders(/ghost) = %v, %v; want none", fs, err)
	}

	// The root folder is a folder like any other, and an empty ACL is fine.
	root := escrow.Folder{Path: "/", Revision: 1}
	if err := b.PutFolder(ctx, &root, 0, frec()); err != nil {
		t.Fatalf("PutFolder(/): %v", err)
	}
	checkFolder(t, "root", getFolder(t, b, ctx, "/"), root)
}

func testGetFolders(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	want := map[string]escrow.Folder{}
	for i, p := range []string{"/", "/prod", "/prod/db", "/dev"} {
		f := escrow.Folder{Path: p, Revision: 1, UpdatedBy: "alice",
			ACL: []escrow.ACE{{Principal: fmt.Sprintf("user:u%d", i), Permission: escrow.PermView}}}
		if err := b.PutFolder(ctx, &f, 0, escrow.NewAuditRecord(ctx, c.next(), escrow.ActionFolderACL, escrow.FolderTarget(p))); err != nil {
			t.Fatalf("PutFolder(%s): %v", p, err)
		}
		want[p] = f
	}
	for _, q := range [][]string{
		escrow.Ancestors("/prod/db/replica"), // /prod/db/replica is missing
		{"/missing", "/dev", "/nope/deeper"},
		{"/prod"},
		{"/missing"},
		{},
	} {
		fs, err := b.GetFolders(ctx, q)
		if err != nil {
			t.Fatalf("GetFolders(%q): %v", q, err)
		}
		var got, exp []string
		for _, f := range fs {
			got = append(got, f.Path)
			if w, ok := want[f.Path]; ok {
				checkFolder(t, "GetFolders "+f.Path, f, w)
			}
		}
		for _, p := range q {
			if _, ok := want[p]; ok {
				exp = append(exp, p)
			}
		}
		sort.Strings(got)
		sort.Strings(exp)
		if !slices.Equal(got, exp) {
			t.Errorf("GetFolders(%q) = %q, want %q", q, got, exp)
		}
	}
}

// --- ACL index ---

func grantSet(t *testing.T, b Backend, ctx context.Context, principals ...string) []string {
	t.Helper()
	gs, err := b.ListACLGrants(ctx, principals)
	if err != nil {
		t.Fatalf("ListACLGrants(%q): %v", principals, err)
	}
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.Principal + " " + string(g.Permission) + " " + g.Target
	}
	sort.Strings(out)
	return out
}

func checkGrants(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func testACLGrants(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	s1, v1 := newSecret(c, "/prod", "one",
		escrow.ACE{Principal: "user:alice", Permission: escrow.PermOwner},
		escrow.ACE{Principal: "group:dba", Permission: escrow.PermView})
	create(t, b, ctx, c, s1, v1)
	s2, v2 := newSecret(c, "/prod/db", "two", escrow.ACE{Principal: "group:dba", Permission: escrow.PermEdit})
	create(t, b, ctx, c, s2, v2)
	f := escrow.Folder{Path: "/prod", Revision: 1, ACL: []escrow.ACE{
		{Principal: "group:dba", Permission: escrow.PermList},
		{Principal: "user:bob", Permission: escrow.PermView},
	}}
	if err := b.PutFolder(ctx, &f, 0, escrow.NewAuditRecord(ctx, c.next(), escrow.ActionFolderACL, escrow.FolderTarget("/prod"))); err != nil {
		t.Fatalf("PutFolder: %v", err)
	}

	checkGrants(t, "grants of alice and dba", grantSet(t, b, ctx, "user:alice", "group:dba"),
		"user:alice owner "+escrow.SecretTarget(s1.ID),
		"group:dba view "+escrow.SecretTarget(s1.ID),
		"group:dba edit "+escrow.SecretTarget(s2.ID),
		"group:dba list "+escrow.FolderTarget("/prod"))
	checkGrants(t, "grants of bob", grantSet(t, b, ctx, "user:bob"),
		"user:bob view "+escrow.FolderTarget("/prod"))
	checkGrants(t, "grants of nobody named", grantSet(t, b, ctx, "user:carol", "user:ali", "group:db", "user:dba", "alice"))

	// Entries of soft-deleted secrets stay in the index.
	d := next(s2, c.next())
	now := c.next()
	d.DeletedAt = &now
	update(t, b, ctx, c, d, nil)
	checkGrants(t, "grants of dba after soft delete", grantSet(t, b, ctx, "group:dba"),
		"group:dba view "+escrow.SecretTarget(s1.ID),
		"group:dba edit "+escrow.SecretTarget(s2.ID),
		"group:dba list "+escrow.FolderTarget("/prod"))
}

func testACLChanges(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	s, v := newSecret(c, "/prod", "one",
		escrow.ACE{Principal: "user:alice", Permission: escrow.PermOwner},
		escrow.ACE{Principal: "group:dba", Permission: escrow.PermView})
	create(t, b, ctx, c, s, v)
	f := escrow.Folder{Path: "/prod", Revision: 1, ACL: []escrow.ACE{{Principal: "group:dba", Permission: escrow.PermList}}}
	if err := b.PutFolder(ctx, &f, 0, escrow.NewAuditRecord(ctx, c.next(), escrow.ActionFolderACL, escrow.FolderTarget("/prod"))); err != nil {
		t.Fatalf("PutFolder: %v", err)
	}

	u := next(s, c.next())
	u.ACL = []escrow.ACE{{Principal: "group:dba", Permission: escrow.PermOwner}, {Principal: "user:bob", Permission: escrow.PermEdit}}
	update(t, b, ctx, c, u, nil)
	f2 := escrow.Folder{Path: "/prod", Revision: 2, ACL: []escrow.ACE{{Principal: "user:alice", Permission: escrow.PermView}}}
	if err := b.PutFolder(ctx, &f2, 1, escrow.NewAuditRecord(ctx, c.next(), escrow.ActionFolderACL, escrow.FolderTarget("/prod"))); err != nil {
		t.Fatalf("PutFolder(update): %v", err)
	}

	checkGrants(t, "grants after ACL changes", grantSet(t, b, ctx, "user:alice", "group:dba", "user:bob"),
		"group:dba owner "+escrow.SecretTarget(s.ID),
		"user:bob edit "+escrow.SecretTarget(s.ID),
		"user:alice view "+escrow.FolderTarget("/prod"))

	// A rename keeps the secret's grants; emptying the ACL removes them.
	r := next(u, c.next())
	r.Name, r.Folder = "renamed", "/dev"
	update(t, b, ctx, c, r, nil)
	checkGrants(t, "grants of bob after move", grantSet(t, b, ctx, "user:bob"), "user:bob edit "+escrow.SecretTarget(s.ID))
	e := next(r, c.next())
	e.ACL = nil
	update(t, b, ctx, c, e, nil)
	checkGrants(t, "grants after emptying the ACL", grantSet(t, b, ctx, "user:alice", "group:dba", "user:bob"),
		"user:alice view "+escrow.FolderTarget("/prod"))
}

// --- audit ---

// auditFixture appends n records spread over several days, cycling through
// actors, actions and secrets, and returns them oldest first.
func auditFixture(t *testing.T, b Backend, n int) []*escrow.AuditRecord {
	t.Helper()
	actors := []*escrow.Principal{alice, {Subject: "bob", Groups: []string{"ops"}}, {Subject: "carol", Roles: []string{escrow.RoleAdmin}}}
	actions := []string{escrow.ActionSecretReveal, escrow.ActionSecretGet, escrow.ActionSecretUpdate, escrow.ActionAuditQuery}
	secrets := []string{escrow.NewID(base), escrow.NewID(base.Add(time.Second)), ""}
	recs := make([]*escrow.AuditRecord, n)
	for i := range recs {
		// About 4h apart, so 30 records span five days.
		now := base.Add(time.Duration(i)*(4*time.Hour+7*time.Minute) + time.Duration(i)*time.Millisecond)
		ctx := ctxFor(t, actors[i%len(actors)])
		sid := secrets[(i%5)%len(secrets)] // period 5 against the actors' 3: every combination occurs
		target := ""
		if sid != "" {
			target = escrow.SecretTarget(sid)
		}
		rec := escrow.NewAuditRecord(ctx, now, actions[i%len(actions)], target)
		rec.SecretID = sid
		if i%5 == 0 {
			rec.Fail(escrow.Errorf(escrow.CodeForbidden, "no access"))
		}
		if err := b.Append(ctx, rec); err != nil {
			t.Fatalf("Append(%d): %v", i, err)
		}
		recs[i] = rec
	}
	return recs
}

func testAuditRoundTrip(t *testing.T, b Backend) {
	ctx := ctxFor(t, alice)
	now := base.Add(36 * time.Hour)
	rec := escrow.NewAuditRecord(ctx, now, escrow.ActionSecretReveal, escrow.SecretTarget("S1"))
	rec.SecretID = "S1"
	rec.Comment = "break-glass: outage, \"quoted\", ünïcode"
	rec.Ticket = "CHG-1234"
	rec.Details = map[string]string{"version": "3", "fields": "password,username", "empty": ""}
	rec.Fail(escrow.Errorf(escrow.CodeForbidden, "approval required"))
	if err := b.Append(ctx, rec); err != nil {
		t.Fatalf("Append: %v", err)
	}
	bare := escrow.NewAuditRecord(t.Context(), now.Add(time.Millisecond), escrow.ActionAuthFailed, "")
	if err := b.Append(ctx, bare); err != nil {
		t.Fatalf("Append(bare): %v", err)
	}

	got := allAudit(t, b, ctx, escrow.AuditQuery{})
	if len(got) != 2 {
		t.Fatalf("QueryAudit = %d records, want 2", len(got))
	}
	for i, want := range []*escrow.AuditRecord{bare, rec} {
		if d := diffRecord(got[i], want); d != "" {
			t.Errorf("record %s: %s", want.Action, d)
		}
	}
	if got[1].Outcome != escrow.OutcomeDenied || got[1].ErrorCode != escrow.CodeForbidden {
		t.Errorf("outcome %q code %q, want denied/forbidden", got[1].Outcome, got[1].ErrorCode)
	}
}

func filterRecords(recs []*escrow.AuditRecord, q escrow.AuditQuery) []string {
	var out []string
	for i := len(recs) - 1; i >= 0; i-- { // newest first
		r := recs[i]
		if (q.Actor == "" || r.Actor.Subject == q.Actor) &&
			(q.SecretID == "" || r.SecretID == q.SecretID) &&
			(q.Action == "" || r.Action == q.Action) &&
			(q.Ticket == "" || r.Ticket == q.Ticket) &&
			(q.From.IsZero() || !r.Time.Before(q.From)) &&
			(q.To.IsZero() || r.Time.Before(q.To)) {
			out = append(out, r.ID)
		}
	}
	return out
}

func testAuditFilters(t *testing.T, b Backend) {
	recs := auditFixture(t, b, 30)
	ctx := t.Context()
	s1, s2 := recs[0].SecretID, recs[1].SecretID
	at := func(i int) time.Time { return recs[i].Time }
	for _, q := range []escrow.AuditQuery{
		{},
		{Actor: "alice"},
		{Actor: "nobody"},
		{SecretID: s1},
		{Action: escrow.ActionSecretReveal},
		{From: at(10)},
		{To: at(10)},
		{From: at(10), To: at(11)},
		{From: at(5), To: at(20)},
		{From: at(10).Add(500 * time.Microsecond)}, // excludes record 10
		{To: at(10).Add(500 * time.Microsecond)},   // includes record 10
		{From: at(29).Add(time.Hour)},
		{Actor: "bob", Action: escrow.ActionSecretGet},
		{Actor: "carol", SecretID: s2, From: at(3), To: at(28)},
		{SecretID: s1, Action: escrow.ActionSecretReveal},
		{Actor: "alice", SecretID: s1, Action: escrow.ActionSecretReveal, From: at(1)},
		{Action: escrow.ActionAuditQuery, To: at(25)},
	} {
		want := filterRecords(recs, q)
		if got := auditIDs(allAudit(t, b, ctx, q)); !slices.Equal(got, want) {
			t.Errorf("QueryAudit(%+v) = %v, want %v", q, got, want)
		}
	}
	// The filters above must be selective enough to mean something.
	if n := len(filterRecords(recs, escrow.AuditQuery{Actor: "bob", Action: escrow.ActionSecretGet})); n == 0 || n >= 10 {
		t.Fatalf("fixture gives bob+get %d records; the test needs a selective filter", n)
	}
}

func testAuditPagination(t *testing.T, b Backend) {
	recs := auditFixture(t, b, 30)
	ctx := t.Context()
	want := filterRecords(recs, escrow.AuditQuery{})
	for _, limit := range []int{4, 29, 30, 31} {
		if got := auditIDs(allAudit(t, b, ctx, escrow.AuditQuery{Limit: limit})); !slices.Equal(got, want) {
			t.Errorf("QueryAudit in pages of %d = %v, want %v", limit, got, want)
		}
	}
	// Filtered queries page too, down to one record a page.
	for _, q := range []escrow.AuditQuery{
		{Actor: "alice", From: recs[2].Time, Limit: 1},
		{Action: escrow.ActionSecretReveal, Limit: 2},
		{SecretID: recs[1].SecretID, To: recs[25].Time, Limit: 3},
		{Actor: "bob", Action: escrow.ActionSecretGet, Limit: 1},
	} {
		if got, want := auditIDs(allAudit(t, b, ctx, q)), filterRecords(recs, q); !slices.Equal(got, want) {
			t.Errorf("QueryAudit(%+v) = %v, want %v", q, got, want)
		}
	}
	p, err := b.QueryAudit(ctx, escrow.AuditQuery{Limit: 10})
	if err != nil {
		t.Fatalf("QueryAudit: %v", err)
	}
	if len(p.Records) != 10 || p.Next == "" {
		t.Errorf("first page of 10 of 30 = %d records, Next %q; want 10 and a cursor", len(p.Records), p.Next)
	}
}

func testAuditDuplicate(t *testing.T, b Backend) {
	ctx := ctxFor(t, alice)
	rec := escrow.NewAuditRecord(ctx, base, escrow.ActionSecretGet, "")
	if err := b.Append(ctx, rec); err != nil {
		t.Fatalf("Append: %v", err)
	}
	wantErr(t, "Append(same record)", b.Append(ctx, rec), escrow.ErrConflict)
	other := escrow.NewAuditRecord(ctx, base.Add(time.Hour), escrow.ActionSecretDelete, "")
	other.ID = rec.ID
	wantErr(t, "Append(same ID, other content)", b.Append(ctx, other), escrow.ErrConflict)

	got := allAudit(t, b, ctx, escrow.AuditQuery{})
	if len(got) != 1 {
		t.Fatalf("QueryAudit = %d records, want 1", len(got))
	}
	if d := diffRecord(got[0], rec); d != "" {
		t.Errorf("stored record: %s", d)
	}
}

func testAuditBadCursor(t *testing.T, b Backend) {
	auditFixture(t, b, 3)
	for _, cur := range []string{"not a cursor!", "%%%", "\x00\xff"} {
		_, err := b.QueryAudit(t.Context(), escrow.AuditQuery{Cursor: cur})
		wantErr(t, fmt.Sprintf("QueryAudit(cursor %q)", cur), err, escrow.ErrInvalid)
	}
}

// testAuditTickets checks the Ticket filter: alone, with the other
// filters, across pages, and that records without a ticket stay out of it
// and come back without one.
func testAuditTickets(t *testing.T, b Backend) {
	// One record in three has no ticket; the period of 7 against the
	// fixture's 3 actors, 4 actions and 5 secrets gives every combination.
	tickets := []string{"CHG0001234", "INC0000042", "", "CHG0001234", "", "CHG-0001234", "INC0000042"}
	actors := []*escrow.Principal{alice, {Subject: "bob"}, {Subject: "carol"}}
	actions := []string{escrow.ActionSecretReveal, escrow.ActionSecretGet, escrow.ActionSecretUpdate, escrow.ActionAuditQuery}
	secrets := []string{escrow.NewID(base), escrow.NewID(base.Add(time.Second)), "", "", ""}
	recs := make([]*escrow.AuditRecord, 42)
	for i := range recs {
		now := base.Add(time.Duration(i)*(3*time.Hour+11*time.Minute) + time.Duration(i)*time.Millisecond)
		ctx := ctxFor(t, actors[i%len(actors)])
		rec := escrow.NewAuditRecord(ctx, now, actions[i%len(actions)], "")
		rec.SecretID = secrets[i%len(secrets)]
		rec.Ticket = tickets[i%len(tickets)]
		if err := b.Append(ctx, rec); err != nil {
			t.Fatalf("Append(%d): %v", i, err)
		}
		recs[i] = rec
	}
	ctx := t.Context()
	at := func(i int) time.Time { return recs[i].Time }
	chg, inc := tickets[0], tickets[1]
	for _, q := range []escrow.AuditQuery{
		{Ticket: chg},
		{Ticket: inc},
		{Ticket: tickets[5]}, // differs from chg by one character
		{Ticket: "CHG000123"},
		{Ticket: "NOPE"},
		{Ticket: chg, Action: escrow.ActionSecretReveal},
		{Ticket: inc, Action: escrow.ActionSecretGet},
		{Ticket: chg, From: at(10)},
		{Ticket: chg, To: at(30)},
		{Ticket: chg, From: at(7), To: at(29)},
		{Ticket: chg, From: at(7).Add(500 * time.Microsecond), To: at(28).Add(500 * time.Microsecond)},
		{Ticket: inc, Action: escrow.ActionSecretUpdate, From: at(2), To: at(40)},
		{Ticket: chg, Actor: "bob"},
		{Ticket: inc, SecretID: recs[0].SecretID},
		{Ticket: chg, Actor: "alice", SecretID: recs[1].SecretID, Action: escrow.ActionSecretGet},
	} {
		want := filterRecords(recs, q)
		if got := auditIDs(allAudit(t, b, ctx, q)); !slices.Equal(got, want) {
			t.Errorf("QueryAudit(%+v) = %v, want %v", q, got, want)
		}
	}
	// The fixture must make the filters mean something.
	for _, q := range []escrow.AuditQuery{{Ticket: chg}, {Ticket: chg, Action: escrow.ActionSecretReveal}, {Ticket: chg, From: at(7), To: at(29)}} {
		if n, all := len(filterRecords(recs, q)), len(filterRecords(recs, escrow.AuditQuery{Ticket: q.Ticket})); n == 0 || (q.Action != "" || !q.From.IsZero()) && n >= all {
			t.Fatalf("fixture gives %+v %d records; the test needs a selective filter", q, n)
		}
	}

	// Pages, down to one record a page.
	for _, q := range []escrow.AuditQuery{
		{Ticket: chg, Limit: 1},
		{Ticket: chg, Limit: 4},
		{Ticket: inc, Action: escrow.ActionSecretGet, Limit: 1},
		{Ticket: chg, From: at(5), To: at(35), Limit: 2},
	} {
		if got, want := auditIDs(allAudit(t, b, ctx, q)), filterRecords(recs, q); !slices.Equal(got, want) {
			t.Errorf("QueryAudit(%+v) = %v, want %v", q, got, want)
		}
	}
	p, err := b.QueryAudit(ctx, escrow.AuditQuery{Ticket: chg, Limit: 3})
	if err != nil {
		t.Fatalf("QueryAudit: %v", err)
	}
	if len(p.Records) != 3 || p.Next == "" {
		t.Errorf("first page of 3 of ticket %s = %d records, Next %q; want 3 and a cursor", chg, len(p.Records), p.Next)
	}

	// Records with and without a ticket come back as written.
	got := allAudit(t, b, ctx, escrow.AuditQuery{})
	if len(got) != len(recs) {
		t.Fatalf("QueryAudit = %d records, want %d", len(got), len(recs))
	}
	for i, r := range got {
		if d := diffRecord(r, recs[len(recs)-1-i]); d != "" {
			t.Errorf("record %d: %s", len(recs)-1-i, d)
		}
	}
}

// --- concurrency ---

func testUpdateRace(t *testing.T, b Backend) {
	ctx, c := ctxFor(t, alice), newClock()
	s, v := newSecret(c, "/a", "x")
	create(t, b, ctx, c, s, v)

	const n = 8
	errs := make([]error, n)
	recs := make([]*escrow.AuditRecord, n)
	var wg sync.WaitGroup
	for i := range n {
		u := next(s, c.next())
		u.Description = fmt.Sprintf("writer %d", i)
		recs[i] = record(ctx, c, escrow.ActionSecretUpdate, s.ID)
		wg.Go(func() { errs[i] = b.UpdateSecret(ctx, u, 1, nil, recs[i]) })
	}
	wg.Wait()

	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("writers %d and %d both won", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, escrow.ErrConflict):
			t.Errorf("writer %d: %v, want ErrConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("no writer won: %v", errs)
	}
	got := mustGet(t, b, ctx, s.ID)
	if want := fmt.Sprintf("writer %d", winner); got.Description != want || got.Revision != 2 {
		t.Errorf("stored description %q revision %d, want %q revision 2", got.Description, got.Revision, want)
	}
	// Only the winner's audit record landed, next to the create's.
	logged := auditIDs(allAudit(t, b, ctx, escrow.AuditQuery{Action: escrow.ActionSecretUpdate}))
	if !slices.Equal(logged, []string{recs[winner].ID}) {
		t.Errorf("update records in the log = %v, want only the winner's %s", logged, recs[winner].ID)
	}
}

func testParallelAppends(t *testing.T, b Backend) {
	const goroutines, each = 8, 25
	c := newClock()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each)
	want := map[string]bool{}
	var recs [goroutines][]*escrow.AuditRecord
	for g := range goroutines {
		ctx := ctxFor(t, &escrow.Principal{Subject: fmt.Sprintf("user%d", g)})
		for range each {
			rec := escrow.NewAuditRecord(ctx, c.next(), escrow.ActionSecretReveal, "")
			recs[g] = append(recs[g], rec)
			want[rec.ID] = true
		}
		wg.Go(func() {
			for _, rec := range recs[g] {
				if err := b.Append(ctx, rec); err != nil {
					errs <- fmt.Errorf("goroutine %d: Append: %w", g, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	got := allAudit(t, b, t.Context(), escrow.AuditQuery{Limit: 1000})
	if len(got) != goroutines*each {
		t.Errorf("QueryAudit = %d records, want %d", len(got), goroutines*each)
	}
	for _, r := range got {
		if !want[r.ID] {
			t.Errorf("unexpected record %s", r.ID)
		}
	}
	for i := 1; i < len(got); i++ {
		if got[i-1].ID <= got[i].ID {
			t.Fatalf("records not newest first at %d: %s then %s", i, got[i-1].ID, got[i].ID)
		}
	}
	n := len(allAudit(t, b, t.Context(), escrow.AuditQuery{Actor: "user3"}))
	if n != each {
		t.Errorf("QueryAudit(Actor user3) = %d records, want %d", n, each)
	}
}
