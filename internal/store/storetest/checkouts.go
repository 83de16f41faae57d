package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// CheckoutBackend is what an adapter of escrow.CheckoutStore must provide:
// the suite checks each write's audit record through the AuditLog.
type CheckoutBackend interface {
	escrow.CheckoutStore
	escrow.AuditLog
}

// RunCheckouts runs the conformance suite of escrow.CheckoutStore; open
// returns a fresh, empty backend for each subtest. Slots are compared as
// JSON, the form the API and the workflows see.
func RunCheckouts(t *testing.T, open func(t *testing.T) CheckoutBackend) {
	groups := []struct {
		name  string
		tests []checkoutTest
	}{
		{"Slots", []checkoutTest{
			{"NeverUsed", testCheckoutNeverUsed},
			{"PutAndGet", testCheckoutPutAndGet},
			{"StaleRevision", testCheckoutStale},
		}},
		{"ListOpen", []checkoutTest{
			{"Queries", testListOpenCheckouts},
			{"Pagination", testListOpenPagination},
			{"MalformedCursor", testListOpenBadCursor},
		}},
		{"Concurrency", []checkoutTest{
			{"FirstCheckoutRace", testFirstCheckoutRace},
			{"CheckoutAfterReleaseRace", testReleasedCheckoutRace},
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

type checkoutTest struct {
	name string
	fn   func(t *testing.T, b CheckoutBackend)
}

// actCheckout is the suite's audit action: the store audits whatever
// record it is given.
const actCheckout = "checkout.put"

// racers is how many clients race for one slot (DESIGN 5.6: of N racing
// clients exactly one wins).
const racers = 64

// newCheckout returns the first checkout of secretID by holder, with every
// field set (the task token too: the store keeps it, only answers strip
// it).
func newCheckout(c *clock, secretID, holder string) *escrow.Checkout {
	now := c.next()
	return &escrow.Checkout{
		SecretID:      secretID,
		ID:            escrow.NewID(now),
		Status:        escrow.CheckoutActive,
		Holder:        escrow.Actor{Subject: holder, Email: holder + "@example.com", Groups: []string{"dba"}, Roles: []string{"user"}},
		Start:         now,
		Expires:       now.Add(30 * time.Minute),
		Interval:      escrow.Duration(30 * time.Minute),
		MaxExtensions: 2,
		Comment:       `fix "replication" ünïcode`,
		Ticket:        "CHG0000042",
		GrantID:       escrow.NewID(now.Add(-time.Minute)),
		Version:       3,
		Rotate:        true,
		Token:         "AAAA-task-token-" + secretID,
		Revision:      1,
		UpdatedAt:     now,
	}
}

// nextCheckout returns a copy of co as its next revision with status st,
// updated now.
func nextCheckout(t *testing.T, c *clock, co *escrow.Checkout, st escrow.CheckoutStatus) *escrow.Checkout {
	t.Helper()
	u := cloneJSON(t, co)
	u.Status = st
	u.Revision++
	u.UpdatedAt = c.next()
	return u
}

// ended returns co's next revision after a check-in: rotating if it
// rotates, else released.
func ended(t *testing.T, c *clock, co *escrow.Checkout) *escrow.Checkout {
	t.Helper()
	st := escrow.CheckoutReleased
	if co.Rotate {
		st = escrow.CheckoutRotating
	}
	u := nextCheckout(t, c, co, st)
	at := u.UpdatedAt
	u.EndedAt, u.EndedBy, u.EndReason = &at, co.Holder.Subject, "checkin"
	return u
}

func checkoutRecord(ctx context.Context, c *clock, co *escrow.Checkout) *escrow.AuditRecord {
	rec := reqRecord(ctx, c, actCheckout, escrow.SecretTarget(co.SecretID), co.SecretID)
	rec.Details = map[string]string{"checkout": co.ID, "status": string(co.Status)}
	return rec
}

// mustPutCheckout writes co over co.Revision-1 and returns its audit
// record.
func mustPutCheckout(t *testing.T, b CheckoutBackend, ctx context.Context, c *clock, co *escrow.Checkout) *escrow.AuditRecord {
	t.Helper()
	rec := checkoutRecord(ctx, c, co)
	if err := b.PutCheckout(ctx, co, co.Revision-1, rec); err != nil {
		t.Fatalf("PutCheckout(%s, rev %d): %v", co.SecretID, co.Revision, err)
	}
	return rec
}

func mustGetCheckout(t *testing.T, b CheckoutBackend, ctx context.Context, secretID string) *escrow.Checkout {
	t.Helper()
	co, err := b.GetCheckout(ctx, secretID)
	if err != nil {
		t.Fatalf("GetCheckout(%s): %v", secretID, err)
	}
	return co
}

func testCheckoutNeverUsed(t *testing.T, b CheckoutBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	_, err := b.GetCheckout(ctx, escrow.NewID(c.next()))
	wantErr(t, "GetCheckout(never checked out, empty store)", err, escrow.ErrNotFound)
	mustPutCheckout(t, b, ctx, c, newCheckout(c, escrow.NewID(c.next()), "alice"))
	_, err = b.GetCheckout(ctx, escrow.NewID(c.next()))
	wantErr(t, "GetCheckout(never checked out)", err, escrow.ErrNotFound)
}

func testCheckoutPutAndGet(t *testing.T, b CheckoutBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	id := escrow.NewID(c.next())
	co := newCheckout(c, id, "alice")
	recs := []*escrow.AuditRecord{mustPutCheckout(t, b, ctx, c, co)}
	checkJSON(t, "GetCheckout after the first put", mustGetCheckout(t, b, ctx, id), co)

	// Every later state, each stored whole: extended, ended (with how), a
	// failed rotation with its error, and released again.
	ext := nextCheckout(t, c, co, escrow.CheckoutActive)
	ext.Extensions, ext.Expires = 1, ext.Expires.Add(ext.Interval.D())
	end := ended(t, c, ext)
	failed := nextCheckout(t, c, end, escrow.CheckoutRotationFailed)
	failed.RotationAttempts, failed.RotationError = 3, "the target refused the login"
	released := nextCheckout(t, c, failed, escrow.CheckoutReleased)
	released.Token = ""
	for _, u := range []*escrow.Checkout{ext, end, failed, released} {
		recs = append(recs, mustPutCheckout(t, b, ctx, c, u))
		checkJSON(t, "GetCheckout after a put of "+string(u.Status), mustGetCheckout(t, b, ctx, id), u)
	}

	// Each write's audit record is in the log, whole, and by secret.
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
	if bySecret := auditOf(t, b, ctx, escrow.AuditQuery{SecretID: id}); !slices.Equal(bySecret, want) {
		t.Errorf("QueryAudit(SecretID) = %v, want %v", bySecret, want)
	}
}

func testCheckoutStale(t *testing.T, b CheckoutBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	id := escrow.NewID(c.next())
	co := newCheckout(c, id, "alice")
	ok := []*escrow.AuditRecord{mustPutCheckout(t, b, ctx, c, co)}
	end := ended(t, c, co)
	ok = append(ok, mustPutCheckout(t, b, ctx, c, end))

	var refused []string
	ghost := escrow.NewID(c.next())
	for _, tc := range []struct {
		what string
		co   *escrow.Checkout
		prev int64
	}{
		{"stale revision", nextCheckout(t, c, co, escrow.CheckoutReleased), 1},
		{"slot exists, prev 0", newCheckout(c, id, "mallory"), 0},
		{"future revision", nextCheckout(t, c, nextCheckout(t, c, end, escrow.CheckoutReleased), escrow.CheckoutActive), 3},
		{"no slot, prev 1", nextCheckout(t, c, newCheckout(c, ghost, "mallory"), escrow.CheckoutReleased), 1},
	} {
		rec := checkoutRecord(ctx, c, tc.co)
		refused = append(refused, rec.ID)
		wantErr(t, "PutCheckout("+tc.what+")", b.PutCheckout(ctx, tc.co, tc.prev, rec), escrow.ErrConflict)
	}

	checkJSON(t, "GetCheckout after refused writes", mustGetCheckout(t, b, ctx, id), end)
	_, err := b.GetCheckout(ctx, ghost)
	wantErr(t, "GetCheckout(slot of a refused write)", err, escrow.ErrNotFound)
	checkAudit(t, b, ctx, ok...)
	logged := auditOf(t, b, ctx, escrow.AuditQuery{})
	for _, r := range refused {
		if slices.Contains(logged, r) {
			t.Errorf("the audit record %s of a refused write is in the log", r)
		}
	}
}

// listOpen reads every page of open slots, checking page sizes and that
// no slot comes twice.
func listOpen(t *testing.T, b CheckoutBackend, ctx context.Context, limit int) []*escrow.Checkout {
	t.Helper()
	return drain(t, fmt.Sprintf("ListOpenCheckouts(limit %d)", limit), limit, func(cursor string) ([]*escrow.Checkout, string, error) {
		p, err := b.ListOpenCheckouts(ctx, cursor, limit)
		return p.Checkouts, p.Next, err
	}, func(co *escrow.Checkout) string { return co.SecretID })
}

// checkOpen checks that the open list holds exactly the open slots of
// slots (as last written), oldest update first. The order of slots updated
// at the same time is not part of the port.
func checkOpen(t *testing.T, b CheckoutBackend, ctx context.Context, what string, limit int, slots map[string]*escrow.Checkout) {
	t.Helper()
	got := listOpen(t, b, ctx, limit)
	var want []string
	for id, co := range slots {
		if co.Open() {
			want = append(want, id)
		}
	}
	ids := idsOf(got, func(co *escrow.Checkout) string { return co.SecretID })
	if g := slices.Sorted(slices.Values(ids)); !slices.Equal(g, slices.Sorted(slices.Values(want))) {
		t.Errorf("%s: ListOpenCheckouts(limit %d) = %v, want (in any order) %v", what, limit, ids, want)
		return
	}
	for i, co := range got {
		checkJSON(t, fmt.Sprintf("%s: ListOpenCheckouts[%d]", what, i), co, slots[co.SecretID])
		if i > 0 && co.UpdatedAt.Before(got[i-1].UpdatedAt) {
			t.Errorf("%s: ListOpenCheckouts(limit %d) is not oldest update first: %s (%v) after %s (%v)",
				what, limit, co.SecretID, co.UpdatedAt, got[i-1].SecretID, got[i-1].UpdatedAt)
		}
	}
}

// openFixture makes slots in every status, two of them updated at the same
// instant (a page boundary between them must lose neither), and returns
// them as last written.
func openFixture(t *testing.T, b CheckoutBackend, ctx context.Context, c *clock) map[string]*escrow.Checkout {
	t.Helper()
	slots := map[string]*escrow.Checkout{}
	put := func(co *escrow.Checkout) {
		t.Helper()
		mustPutCheckout(t, b, ctx, c, co)
		slots[co.SecretID] = co
	}
	var first []*escrow.Checkout
	for i := range 7 {
		co := newCheckout(c, escrow.NewID(c.next()), fmt.Sprintf("user%d", i))
		put(co)
		first = append(first, co)
	}
	tie := nextCheckout(t, c, first[2], escrow.CheckoutActive)
	tie.Extensions++
	put(tie)
	tie2 := nextCheckout(t, c, first[5], escrow.CheckoutActive)
	tie2.UpdatedAt = tie.UpdatedAt
	put(tie2)
	put(ended(t, c, first[0])) // rotating: still open
	put(ended(t, c, first[1]))
	put(nextCheckout(t, c, slots[first[1].SecretID], escrow.CheckoutRotationFailed))
	noRotate := cloneJSON(t, first[3])
	noRotate.Rotate = false
	put(ended(t, c, noRotate)) // released at once
	put(ended(t, c, first[4]))
	put(nextCheckout(t, c, slots[first[4].SecretID], escrow.CheckoutReleased)) // rotated
	return slots
}

func testListOpenCheckouts(t *testing.T, b CheckoutBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	if got := listOpen(t, b, ctx, 0); len(got) != 0 {
		t.Fatalf("ListOpenCheckouts(empty store) = %d slots", len(got))
	}
	slots := openFixture(t, b, ctx, c)
	checkOpen(t, b, ctx, "fixture", 0, slots)

	// A released slot leaves the list; a slot updated moves to its end; a
	// released slot checked out again comes back.
	var open []*escrow.Checkout
	for _, co := range slots {
		if co.Open() {
			open = append(open, co)
		}
	}
	slices.SortFunc(open, func(x, y *escrow.Checkout) int { return x.UpdatedAt.Compare(y.UpdatedAt) })
	rel := nextCheckout(t, c, open[0], escrow.CheckoutReleased)
	mustPutCheckout(t, b, ctx, c, rel)
	slots[rel.SecretID] = rel
	touched := nextCheckout(t, c, open[1], open[1].Status)
	mustPutCheckout(t, b, ctx, c, touched)
	slots[touched.SecretID] = touched
	checkOpen(t, b, ctx, "after a release and an update", 0, slots)
	if got := listOpen(t, b, ctx, 0); got[len(got)-1].SecretID != touched.SecretID {
		t.Errorf("the slot updated last (%s) is not listed last: %v", touched.SecretID,
			idsOf(got, func(co *escrow.Checkout) string { return co.SecretID }))
	}

	again := newCheckout(c, rel.SecretID, "bob")
	again.Revision = rel.Revision + 1
	mustPutCheckout(t, b, ctx, c, again)
	slots[again.SecretID] = again
	checkOpen(t, b, ctx, "after a new checkout of a released slot", 0, slots)
}

func testListOpenPagination(t *testing.T, b CheckoutBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	slots := openFixture(t, b, ctx, c)
	for _, limit := range []int{1, 2, 3, 5, 6, 1000} {
		checkOpen(t, b, ctx, "pages", limit, slots)
	}
}

func testListOpenBadCursor(t *testing.T, b CheckoutBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	for range 3 {
		mustPutCheckout(t, b, ctx, c, newCheckout(c, escrow.NewID(c.next()), "alice"))
	}
	for _, cur := range []string{"not a cursor!", "%%%", "\x00\xff", "e30"} {
		_, err := b.ListOpenCheckouts(ctx, cur, 1)
		wantErr(t, fmt.Sprintf("ListOpenCheckouts(cursor %q)", cur), err, escrow.ErrInvalid)
	}
}

// race has racers clients write their own checkout of secretID over
// prevRevision at once, and checks that exactly one wins, every other gets
// ErrConflict, the slot holds the winner's checkout, and of the racers'
// audit records only the winner's is in the log (beside before's).
func race(t *testing.T, b CheckoutBackend, ctx context.Context, c *clock, secretID string, prevRevision int64, before []*escrow.AuditRecord) {
	t.Helper()
	cos := make([]*escrow.Checkout, racers)
	recs := make([]*escrow.AuditRecord, racers)
	for i := range racers {
		cos[i] = newCheckout(c, secretID, fmt.Sprintf("racer%d", i))
		cos[i].Revision = prevRevision + 1
		recs[i] = checkoutRecord(ctx, c, cos[i])
	}
	winner := raceOne(t, racers, prevRevision, func(i int) error { return b.PutCheckout(ctx, cos[i], prevRevision, recs[i]) })
	checkJSON(t, "GetCheckout after the race", mustGetCheckout(t, b, ctx, secretID), cos[winner])
	checkAudit(t, b, ctx, append(slices.Clone(before), recs[winner])...)
}

func testFirstCheckoutRace(t *testing.T, b CheckoutBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	race(t, b, ctx, c, escrow.NewID(c.next()), 0, nil)
}

func testReleasedCheckoutRace(t *testing.T, b CheckoutBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	id := escrow.NewID(c.next())
	co := newCheckout(c, id, "alice")
	co.Rotate = false
	before := []*escrow.AuditRecord{mustPutCheckout(t, b, ctx, c, co)}
	rel := ended(t, c, co)
	before = append(before, mustPutCheckout(t, b, ctx, c, rel))
	race(t, b, ctx, c, id, rel.Revision, before)
}
