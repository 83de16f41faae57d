package storetest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// RequestBackend is what an adapter of escrow.RequestStore must provide:
// the suite checks each write's audit record through the AuditLog.
type RequestBackend interface {
	escrow.RequestStore
	escrow.AuditLog
}

// RunRequests runs the conformance suite of escrow.RequestStore; open
// returns a fresh, empty backend for each subtest.
//
// Requests and grants are built with only their identifying fields (ID,
// SecretID, Requester.Subject, Subject, Status, End, CreatedAt, Revision)
// and compared as JSON, so that the suite checks that stores keep them
// whole without depending on the rest of their shape.
func RunRequests(t *testing.T, open func(t *testing.T) RequestBackend) {
	groups := []struct {
		name  string
		tests []requestTest
	}{
		{"Requests", []requestTest{
			{"CreateAndGet", testRequestCreateAndGet},
			{"Update", testRequestUpdate},
			{"UpdateFailuresWriteNothing", testRequestUpdateFailures},
		}},
		{"ListRequests", []requestTest{
			{"Queries", testListRequests},
			{"Pagination", testListRequestsPagination},
			{"MalformedCursor", testListRequestsBadCursor},
		}},
		{"Grants", []requestTest{
			{"Update", testGrantUpdate},
			{"GrantsFor", testGrantsFor},
			{"ListGrants", testListGrants},
			{"Pagination", testListGrantsPagination},
		}},
		{"Concurrency", []requestTest{
			{"UpdateRequestRace", testRequestRace},
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

type requestTest struct {
	name string
	fn   func(t *testing.T, b RequestBackend)
}

// Audit actions of the suite's writes (the suite only needs them to be
// distinct).
const (
	actRequestCreate = "request.create"
	actRequestUpdate = "request.update"
	actGrantUpdate   = "grant.update"
)

// Secret IDs the requests point at; the store never checks them.
var (
	secretA = escrow.NewID(base.Add(-time.Hour))
	secretB = escrow.NewID(base.Add(-time.Hour + time.Millisecond))
)

func newRequest(c *clock, requester, secretID string) *escrow.Request {
	now := c.next()
	return &escrow.Request{
		ID:        escrow.NewID(now),
		SecretID:  secretID,
		Requester: escrow.Actor{Subject: requester},
		Status:    escrow.StatusPending,
		CreatedAt: now,
		Revision:  1,
	}
}

// newGrantOf returns the grant an approval of r makes, ending at end.
func newGrantOf(c *clock, r *escrow.Request, end time.Time) *escrow.Grant {
	now := c.next()
	return &escrow.Grant{
		ID:        escrow.NewID(now),
		SecretID:  r.SecretID,
		Subject:   r.Requester.Subject,
		Status:    escrow.StatusActive,
		End:       end,
		CreatedAt: now,
		Revision:  1,
	}
}

// cloneJSON deep-copies v through its JSON form, the form stores keep.
func cloneJSON[T any](t *testing.T, v *T) *T {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %T: %v", v, err)
	}
	c := new(T)
	if err := json.Unmarshal(b, c); err != nil {
		t.Fatalf("unmarshal %T: %v", v, err)
	}
	return c
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %T: %v", v, err)
	}
	return string(b)
}

func checkJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	if g, w := jsonOf(t, got), jsonOf(t, want); g != w {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

// nextRequest returns a copy of r as its next revision with status st.
func nextRequest(t *testing.T, r *escrow.Request, st escrow.RequestStatus) *escrow.Request {
	t.Helper()
	u := cloneJSON(t, r)
	u.Status = st
	u.Revision++
	return u
}

func nextGrant(t *testing.T, g *escrow.Grant, st escrow.RequestStatus) *escrow.Grant {
	t.Helper()
	u := cloneJSON(t, g)
	u.Status = st
	u.Revision++
	return u
}

func reqRecord(ctx context.Context, c *clock, action, target, secretID string) *escrow.AuditRecord {
	rec := escrow.NewAuditRecord(ctx, c.next(), action, target)
	rec.SecretID = secretID
	return rec
}

// mustCreateRequest stores r and returns its audit record.
func mustCreateRequest(t *testing.T, b RequestBackend, ctx context.Context, c *clock, r *escrow.Request) *escrow.AuditRecord {
	t.Helper()
	rec := reqRecord(ctx, c, actRequestCreate, "request:"+r.ID, r.SecretID)
	if err := b.CreateRequest(ctx, r, rec); err != nil {
		t.Fatalf("CreateRequest(%s): %v", r.ID, err)
	}
	return rec
}

// mustUpdateRequest writes r (and g) over r.Revision-1.
func mustUpdateRequest(t *testing.T, b RequestBackend, ctx context.Context, c *clock, r *escrow.Request, g *escrow.Grant) *escrow.AuditRecord {
	t.Helper()
	rec := reqRecord(ctx, c, actRequestUpdate, "request:"+r.ID, r.SecretID)
	if err := b.UpdateRequest(ctx, r, r.Revision-1, g, rec); err != nil {
		t.Fatalf("UpdateRequest(%s, rev %d): %v", r.ID, r.Revision, err)
	}
	return rec
}

func mustUpdateGrant(t *testing.T, b RequestBackend, ctx context.Context, c *clock, g *escrow.Grant) *escrow.AuditRecord {
	t.Helper()
	rec := reqRecord(ctx, c, actGrantUpdate, "grant:"+g.ID, g.SecretID)
	if err := b.UpdateGrant(ctx, g, g.Revision-1, rec); err != nil {
		t.Fatalf("UpdateGrant(%s, rev %d): %v", g.ID, g.Revision, err)
	}
	return rec
}

// approve stores a request of subject on secretID and approves it with a
// grant ending at end, returning both as stored.
func approve(t *testing.T, b RequestBackend, ctx context.Context, c *clock, subject, secretID string, end time.Time) (*escrow.Request, *escrow.Grant) {
	t.Helper()
	r := newRequest(c, subject, secretID)
	mustCreateRequest(t, b, ctx, c, r)
	g := newGrantOf(c, r, end)
	u := nextRequest(t, r, escrow.StatusActive)
	mustUpdateRequest(t, b, ctx, c, u, g)
	return u, g
}

func mustGetRequest(t *testing.T, b RequestBackend, ctx context.Context, id string) *escrow.Request {
	t.Helper()
	r, err := b.GetRequest(ctx, id)
	if err != nil {
		t.Fatalf("GetRequest(%s): %v", id, err)
	}
	return r
}

func mustGetGrant(t *testing.T, b RequestBackend, ctx context.Context, id string) *escrow.Grant {
	t.Helper()
	g, err := b.GetGrant(ctx, id)
	if err != nil {
		t.Fatalf("GetGrant(%s): %v", id, err)
	}
	return g
}

// auditOf reads every page of q, failing on a record seen twice.
func auditOf(t *testing.T, b escrow.AuditLog, ctx context.Context, q escrow.AuditQuery) []string {
	t.Helper()
	return auditIDs(drain(t, fmt.Sprintf("QueryAudit(%+v)", q), q.Limit, func(cursor string) ([]*escrow.AuditRecord, string, error) {
		q.Cursor = cursor
		p, err := b.QueryAudit(ctx, q)
		return p.Records, p.Next, err
	}, auditID))
}

// checkAudit checks that the log holds exactly recs (in any order of
// writing; the log lists newest first).
func checkAudit(t *testing.T, b escrow.AuditLog, ctx context.Context, recs ...*escrow.AuditRecord) {
	t.Helper()
	want := auditIDs(recs)
	slices.Sort(want)
	slices.Reverse(want)
	if got := auditOf(t, b, ctx, escrow.AuditQuery{}); !slices.Equal(got, want) {
		t.Errorf("audit log = %v, want %v", got, want)
	}
}

// --- requests ---

func testRequestCreateAndGet(t *testing.T, b RequestBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	r := newRequest(c, "alice", secretA)
	create := mustCreateRequest(t, b, ctx, c, r)
	checkJSON(t, "GetRequest after create", mustGetRequest(t, b, ctx, r.ID), r)

	dup := newRequest(c, "bob", secretB)
	dup.ID = r.ID
	rec := reqRecord(ctx, c, actRequestCreate, "request:"+r.ID, secretB)
	wantErr(t, "CreateRequest(duplicate ID)", b.CreateRequest(ctx, dup, rec), escrow.ErrConflict)
	checkJSON(t, "GetRequest after a duplicate create", mustGetRequest(t, b, ctx, r.ID), r)

	_, err := b.GetRequest(ctx, escrow.NewID(c.next()))
	wantErr(t, "GetRequest(unknown)", err, escrow.ErrNotFound)
	_, err = b.GetGrant(ctx, escrow.NewID(c.next()))
	wantErr(t, "GetGrant(unknown)", err, escrow.ErrNotFound)

	checkAudit(t, b, ctx, create)
	if got := auditOf(t, b, ctx, escrow.AuditQuery{SecretID: secretA}); !slices.Equal(got, []string{create.ID}) {
		t.Errorf("QueryAudit(SecretID) = %v, want [%s]", got, create.ID)
	}
}

func testRequestUpdate(t *testing.T, b RequestBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	r := newRequest(c, "alice", secretA)
	create := mustCreateRequest(t, b, ctx, c, r)

	// A decision that does not finish the request: no grant.
	step := nextRequest(t, r, escrow.StatusPending)
	up1 := mustUpdateRequest(t, b, ctx, c, step, nil)
	checkJSON(t, "GetRequest after update", mustGetRequest(t, b, ctx, r.ID), step)

	// The final approval creates the grant in the same write.
	since := c.next()
	final := nextRequest(t, step, escrow.StatusActive)
	g := newGrantOf(c, final, since.Add(time.Hour))
	up2 := mustUpdateRequest(t, b, ctx, c, final, g)
	checkJSON(t, "GetRequest after approval", mustGetRequest(t, b, ctx, r.ID), final)
	checkJSON(t, "GetGrant after approval", mustGetGrant(t, b, ctx, g.ID), g)
	got, err := b.GrantsFor(ctx, secretA, "alice", since)
	if err != nil {
		t.Fatalf("GrantsFor: %v", err)
	}
	checkJSON(t, "GrantsFor after approval", got, []*escrow.Grant{g})

	checkAudit(t, b, ctx, create, up1, up2)
}

func testRequestUpdateFailures(t *testing.T, b RequestBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	r := newRequest(c, "alice", secretA)
	create := mustCreateRequest(t, b, ctx, c, r)
	u := nextRequest(t, r, escrow.StatusPending)
	up := mustUpdateRequest(t, b, ctx, c, u, nil)

	// Stale: written over revision 1, which has moved on to 2.
	stale := nextRequest(t, r, escrow.StatusActive)
	g := newGrantOf(c, stale, c.next().Add(time.Hour))
	rec := reqRecord(ctx, c, actRequestUpdate, "request:"+r.ID, secretA)
	wantErr(t, "UpdateRequest(stale)", b.UpdateRequest(ctx, stale, 1, g, rec), escrow.ErrConflict)
	checkJSON(t, "GetRequest after a stale update", mustGetRequest(t, b, ctx, r.ID), u)
	_, err := b.GetGrant(ctx, g.ID)
	wantErr(t, "GetGrant(grant of a stale update)", err, escrow.ErrNotFound)
	if got, err := b.GrantsFor(ctx, secretA, "alice", time.Time{}); err != nil || len(got) != 0 {
		t.Errorf("GrantsFor after a stale update = %d grants, %v; want none", len(got), err)
	}

	// Unknown request.
	ghost := nextRequest(t, newRequest(c, "alice", secretA), escrow.StatusDenied)
	rec = reqRecord(ctx, c, actRequestUpdate, "request:"+ghost.ID, secretA)
	wantErr(t, "UpdateRequest(unknown)", b.UpdateRequest(ctx, ghost, 1, nil, rec), escrow.ErrNotFound)

	// A grant whose ID exists: the request stays as it was.
	final := nextRequest(t, u, escrow.StatusActive)
	g = newGrantOf(c, final, c.next().Add(time.Hour))
	ok := mustUpdateRequest(t, b, ctx, c, final, g)
	again := nextRequest(t, final, escrow.StatusActive)
	rec = reqRecord(ctx, c, actRequestUpdate, "request:"+r.ID, secretA)
	dupGrant := cloneJSON(t, g)
	dupGrant.Subject = "mallory"
	wantErr(t, "UpdateRequest(existing grant)", b.UpdateRequest(ctx, again, final.Revision, dupGrant, rec), escrow.ErrConflict)
	checkJSON(t, "GetRequest after a failed grant", mustGetRequest(t, b, ctx, r.ID), final)
	checkJSON(t, "GetGrant after a duplicate", mustGetGrant(t, b, ctx, g.ID), g)

	checkAudit(t, b, ctx, create, up, ok)
}

// --- listing requests ---

// sortNewest orders requests or grants as the lists do: newest first.
func sortNewest[T any](xs []T, key func(T) (time.Time, string)) {
	slices.SortFunc(xs, func(x, y T) int {
		tx, ix := key(x)
		ty, iy := key(y)
		if c := ty.Compare(tx); c != 0 {
			return c
		}
		return cmp.Compare(iy, ix)
	})
}

func requestKey(r *escrow.Request) (time.Time, string) { return r.CreatedAt, r.ID }
func grantKey(g *escrow.Grant) (time.Time, string)     { return g.CreatedAt, g.ID }

// expectRequests is what q must list from all (as stored).
func expectRequests(all []*escrow.Request, q escrow.RequestQuery) []*escrow.Request {
	var out []*escrow.Request
	for _, r := range all {
		if (q.Requester == "" || r.Requester.Subject == q.Requester) &&
			(q.SecretID == "" || r.SecretID == q.SecretID) &&
			(q.Status == "" || r.Status == q.Status) {
			out = append(out, r)
		}
	}
	sortNewest(out, requestKey)
	return out
}

// listRequests reads every page of q, checking page sizes and that no
// request comes twice.
func listRequests(t *testing.T, b RequestBackend, ctx context.Context, q escrow.RequestQuery) []*escrow.Request {
	t.Helper()
	return drain(t, fmt.Sprintf("ListRequests(%+v)", q), q.Limit, func(cursor string) ([]*escrow.Request, string, error) {
		q.Cursor = cursor
		p, err := b.ListRequests(ctx, q)
		return p.Requests, p.Next, err
	}, func(r *escrow.Request) string { return r.ID })
}

func requestIDs(rs []*escrow.Request) []string {
	return idsOf(rs, func(r *escrow.Request) string { return r.ID })
}

func testListRequests(t *testing.T, b RequestBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	var all []*escrow.Request
	var recs []*escrow.AuditRecord
	for _, f := range []struct{ who, secret string }{
		{"alice", secretA}, {"bob", secretA}, {"alice", secretB},
		{"bob", secretB}, {"alice", secretA}, {"bob", secretB}, {"carol", secretA},
	} {
		r := newRequest(c, f.who, f.secret)
		recs = append(recs, mustCreateRequest(t, b, ctx, c, r))
		all = append(all, r)
	}
	// Denied leaves the pending list; approved (active) joins its own.
	denied := nextRequest(t, all[2], escrow.StatusDenied)
	recs = append(recs, mustUpdateRequest(t, b, ctx, c, denied, nil))
	all[2] = denied
	active := nextRequest(t, all[1], escrow.StatusActive)
	recs = append(recs, mustUpdateRequest(t, b, ctx, c, active, newGrantOf(c, active, c.next().Add(time.Hour))))
	all[1] = active

	for _, q := range []escrow.RequestQuery{
		{Requester: "alice"},
		{Requester: "bob", Status: escrow.StatusPending},
		{Requester: "alice", Status: escrow.StatusDenied},
		{SecretID: secretA},
		{SecretID: secretB, Requester: "bob"},
		{SecretID: secretB, Status: escrow.StatusPending},
		{Status: escrow.StatusPending},
		{Status: escrow.StatusActive},
		{Requester: "nobody"},
		{}, // every request
	} {
		got := listRequests(t, b, ctx, q)
		want := expectRequests(all, q)
		if !slices.Equal(requestIDs(got), requestIDs(want)) {
			t.Errorf("ListRequests(%+v) = %v, want %v", q, requestIDs(got), requestIDs(want))
			continue
		}
		for i := range want {
			checkJSON(t, fmt.Sprintf("ListRequests(%+v)[%d]", q, i), got[i], want[i])
		}
	}
	pending := requestIDs(listRequests(t, b, ctx, escrow.RequestQuery{Status: escrow.StatusPending}))
	if slices.Contains(pending, denied.ID) || slices.Contains(pending, active.ID) {
		t.Errorf("pending list %v still holds a decided request (%s or %s)", pending, denied.ID, active.ID)
	}
	checkAudit(t, b, ctx, recs...)
}

func testListRequestsPagination(t *testing.T, b RequestBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	var all []*escrow.Request
	for i := range 7 {
		r := newRequest(c, "alice", secretA)
		if i == 3 {
			r.Requester.Subject = "bob" // a neighbour the pages must skip
		}
		mustCreateRequest(t, b, ctx, c, r)
		all = append(all, r)
	}
	for _, q := range []escrow.RequestQuery{
		{Requester: "alice", Limit: 2},
		{SecretID: secretA, Limit: 3},
		{Status: escrow.StatusPending, Limit: 1},
		{SecretID: secretA, Requester: "alice", Limit: 4},
		{Limit: 2},
	} {
		got, want := requestIDs(listRequests(t, b, ctx, q)), requestIDs(expectRequests(all, q))
		if !slices.Equal(got, want) {
			t.Errorf("ListRequests(%+v) over all pages = %v, want %v", q, got, want)
		}
	}
	// A full page that is also the last may or may not carry a Next, but
	// following it must not repeat anything.
	q := escrow.RequestQuery{Requester: "alice", Limit: 6}
	if got := listRequests(t, b, ctx, q); len(got) != 6 {
		t.Errorf("ListRequests(limit 6 of 6) = %d requests", len(got))
	}
}

func testListRequestsBadCursor(t *testing.T, b RequestBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	mustCreateRequest(t, b, ctx, c, newRequest(c, "alice", secretA))
	for _, cur := range []string{"not a cursor!", "%%%", "\x00\xff"} {
		_, err := b.ListRequests(ctx, escrow.RequestQuery{Requester: "alice", Cursor: cur})
		wantErr(t, fmt.Sprintf("ListRequests(cursor %q)", cur), err, escrow.ErrInvalid)
		_, err = b.ListGrants(ctx, escrow.GrantQuery{Subject: "alice", Cursor: cur})
		wantErr(t, fmt.Sprintf("ListGrants(cursor %q)", cur), err, escrow.ErrInvalid)
	}
}

// --- grants ---

func testGrantUpdate(t *testing.T, b RequestBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	_, g := approve(t, b, ctx, c, "alice", secretA, c.next().Add(time.Hour))
	before := auditOf(t, b, ctx, escrow.AuditQuery{})

	revoked := nextGrant(t, g, escrow.StatusRevoked)
	rec := mustUpdateGrant(t, b, ctx, c, revoked)
	checkJSON(t, "GetGrant after update", mustGetGrant(t, b, ctx, g.ID), revoked)

	stale := nextGrant(t, g, escrow.StatusExpired)
	bad := reqRecord(ctx, c, actGrantUpdate, "grant:"+g.ID, secretA)
	wantErr(t, "UpdateGrant(stale)", b.UpdateGrant(ctx, stale, 1, bad), escrow.ErrConflict)
	checkJSON(t, "GetGrant after a stale update", mustGetGrant(t, b, ctx, g.ID), revoked)

	ghost := nextGrant(t, newGrantOf(c, newRequest(c, "alice", secretA), c.next()), escrow.StatusExpired)
	bad2 := reqRecord(ctx, c, actGrantUpdate, "grant:"+ghost.ID, secretA)
	wantErr(t, "UpdateGrant(unknown)", b.UpdateGrant(ctx, ghost, 1, bad2), escrow.ErrNotFound)

	got := auditOf(t, b, ctx, escrow.AuditQuery{})
	if want := append([]string{rec.ID}, before...); !slices.Equal(got, want) {
		t.Errorf("audit log = %v, want %v (failed: %s, %s)", got, want, bad.ID, bad2.ID)
	}
}

func grantIDs(gs []*escrow.Grant) []string {
	return idsOf(gs, func(g *escrow.Grant) string { return g.ID })
}

func testGrantsFor(t *testing.T, b RequestBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	since := base.Add(24 * time.Hour)
	_, in1 := approve(t, b, ctx, c, "alice", secretA, since.Add(time.Hour))
	approve(t, b, ctx, c, "alice", secretA, since.Add(-time.Hour)) // ended before since
	approve(t, b, ctx, c, "alice", secretB, since.Add(time.Hour))  // another secret
	approve(t, b, ctx, c, "bob", secretA, since.Add(time.Hour))    // someone else's
	approve(t, b, ctx, c, "alicea", secretA, since.Add(time.Hour)) // a subject that only shares a prefix
	// A revoked grant is still returned: callers decide with Authorizes.
	_, in2 := approve(t, b, ctx, c, "alice", secretA, since.Add(2*time.Hour))
	in2 = nextGrant(t, in2, escrow.StatusRevoked)
	mustUpdateGrant(t, b, ctx, c, in2)

	got, err := b.GrantsFor(ctx, secretA, "alice", since)
	if err != nil {
		t.Fatalf("GrantsFor: %v", err)
	}
	want := []*escrow.Grant{in1, in2}
	slices.SortFunc(got, func(x, y *escrow.Grant) int { return cmp.Compare(x.ID, y.ID) })
	if !slices.Equal(grantIDs(got), grantIDs(want)) {
		t.Fatalf("GrantsFor(alice, A) = %v, want %v", grantIDs(got), grantIDs(want))
	}
	for i := range want {
		checkJSON(t, fmt.Sprintf("GrantsFor[%d]", i), got[i], want[i])
	}
	if got, err := b.GrantsFor(ctx, secretA, "alice", since.Add(3*time.Hour)); err != nil || len(got) != 0 {
		t.Errorf("GrantsFor after every end = %v, %v; want none", grantIDs(got), err)
	}
	if got, err := b.GrantsFor(ctx, secretA, "carol", time.Time{}); err != nil || len(got) != 0 {
		t.Errorf("GrantsFor(carol) = %v, %v; want none", grantIDs(got), err)
	}
}

func expectGrants(all []*escrow.Grant, q escrow.GrantQuery) []*escrow.Grant {
	var out []*escrow.Grant
	for _, g := range all {
		if (q.Subject == "" || g.Subject == q.Subject) &&
			(q.SecretID == "" || g.SecretID == q.SecretID) &&
			(!q.Open || !g.Status.Terminal()) {
			out = append(out, g)
		}
	}
	sortNewest(out, grantKey)
	return out
}

func listGrants(t *testing.T, b RequestBackend, ctx context.Context, q escrow.GrantQuery) []*escrow.Grant {
	t.Helper()
	return drain(t, fmt.Sprintf("ListGrants(%+v)", q), q.Limit, func(cursor string) ([]*escrow.Grant, string, error) {
		q.Cursor = cursor
		p, err := b.ListGrants(ctx, q)
		return p.Grants, p.Next, err
	}, func(g *escrow.Grant) string { return g.ID })
}

// grantFixture makes grants of alice and bob on both secrets, one of them
// revoked and one expired.
func grantFixture(t *testing.T, b RequestBackend, ctx context.Context, c *clock) []*escrow.Grant {
	t.Helper()
	end := base.Add(30 * 24 * time.Hour)
	var all []*escrow.Grant
	for _, f := range []struct{ who, secret string }{
		{"alice", secretA}, {"alice", secretB}, {"bob", secretA},
		{"alice", secretA}, {"bob", secretB}, {"bob", secretA}, {"alice", secretB},
	} {
		_, g := approve(t, b, ctx, c, f.who, f.secret, end)
		all = append(all, g)
	}
	all[3] = nextGrant(t, all[3], escrow.StatusRevoked)
	mustUpdateGrant(t, b, ctx, c, all[3])
	all[4] = nextGrant(t, all[4], escrow.StatusExpired)
	mustUpdateGrant(t, b, ctx, c, all[4])
	all[1] = nextGrant(t, all[1], escrow.StatusApproved) // still open
	mustUpdateGrant(t, b, ctx, c, all[1])
	return all
}

func testListGrants(t *testing.T, b RequestBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	all := grantFixture(t, b, ctx, c)
	for _, q := range []escrow.GrantQuery{
		{Subject: "alice"},
		{Subject: "bob", SecretID: secretB},
		{SecretID: secretA},
		{Open: true},
		{Subject: "alice", Open: true},
		{SecretID: secretB, Open: true},
		{Subject: "carol"},
	} {
		got, want := listGrants(t, b, ctx, q), expectGrants(all, q)
		if !slices.Equal(grantIDs(got), grantIDs(want)) {
			t.Errorf("ListGrants(%+v) = %v, want %v", q, grantIDs(got), grantIDs(want))
			continue
		}
		for i := range want {
			checkJSON(t, fmt.Sprintf("ListGrants(%+v)[%d]", q, i), got[i], want[i])
		}
	}
	open := grantIDs(listGrants(t, b, ctx, escrow.GrantQuery{Open: true}))
	if slices.Contains(open, all[3].ID) || slices.Contains(open, all[4].ID) {
		t.Errorf("open grants %v still hold a revoked or expired one (%s, %s)", open, all[3].ID, all[4].ID)
	}
}

func testListGrantsPagination(t *testing.T, b RequestBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	all := grantFixture(t, b, ctx, c)
	for _, q := range []escrow.GrantQuery{
		{Subject: "alice", Limit: 1},
		{SecretID: secretA, Limit: 2},
		{Open: true, Limit: 2},
		{Subject: "bob", Open: true, Limit: 1},
	} {
		got, want := grantIDs(listGrants(t, b, ctx, q)), grantIDs(expectGrants(all, q))
		if !slices.Equal(got, want) {
			t.Errorf("ListGrants(%+v) over all pages = %v, want %v", q, got, want)
		}
	}
}

// --- concurrency ---

func testRequestRace(t *testing.T, b RequestBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	r := newRequest(c, "alice", secretA)
	create := mustCreateRequest(t, b, ctx, c, r)

	const n = 8
	errs := make([]error, n)
	recs := make([]*escrow.AuditRecord, n)
	ups := make([]*escrow.Request, n)
	grants := make([]*escrow.Grant, n)
	end := c.next().Add(time.Hour)
	var wg sync.WaitGroup
	for i := range n {
		ups[i] = nextRequest(t, r, escrow.StatusActive)
		grants[i] = newGrantOf(c, ups[i], end)
		recs[i] = reqRecord(ctx, c, actRequestUpdate, "request:"+r.ID, secretA)
		wg.Go(func() { errs[i] = b.UpdateRequest(ctx, ups[i], 1, grants[i], recs[i]) })
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
	checkJSON(t, "GetRequest after the race", mustGetRequest(t, b, ctx, r.ID), ups[winner])
	for i, g := range grants {
		_, err := b.GetGrant(ctx, g.ID)
		if i == winner && err != nil {
			t.Errorf("GetGrant(winner's grant): %v", err)
		}
		if i != winner && !errors.Is(err, escrow.ErrNotFound) {
			t.Errorf("GetGrant(loser %d's grant) = %v, want ErrNotFound", i, err)
		}
	}
	checkAudit(t, b, ctx, create, recs[winner])
}
