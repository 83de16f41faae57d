package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// ReportScheduleBackend is what an adapter of escrow.ReportScheduleStore
// must provide: the suite checks each write's audit record through the
// AuditLog.
type ReportScheduleBackend interface {
	escrow.ReportScheduleStore
	escrow.AuditLog
}

// RunReportSchedules runs the conformance suite of
// escrow.ReportScheduleStore; open returns a fresh, empty backend for each
// subtest. Schedules are compared as JSON, the form the API sees. An
// adapter that reads the list in pages should also run the suite with a
// small page size: List writes more schedules than a few pages hold.
func RunReportSchedules(t *testing.T, open func(t *testing.T) ReportScheduleBackend) {
	groups := []struct {
		name  string
		tests []reportSchedTest
	}{
		{"Schedules", []reportSchedTest{
			{"PutAndGet", testReportSchedPutAndGet},
			{"Duplicate", testReportSchedDuplicate},
			{"StaleRevision", testReportSchedStale},
			{"List", testReportSchedList},
		}},
		{"Delete", []reportSchedTest{
			{"DeleteAndRecreate", testReportSchedDelete},
			{"StaleRevision", testReportSchedDeleteStale},
			{"Missing", testReportSchedDeleteMissing},
		}},
		{"Concurrency", []reportSchedTest{
			{"FirstPutRace", testFirstReportSchedRace},
			{"UpdateRace", testReportSchedUpdateRace},
			{"UpdateDeleteRace", testReportSchedUpdateDeleteRace},
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

type reportSchedTest struct {
	name string
	fn   func(t *testing.T, b ReportScheduleBackend)
}

// The suite's audit actions: the store audits whatever record it is
// given.
const (
	actReportSchedPut    = "report.schedule.put"
	actReportSchedDelete = "report.schedule.delete"
)

// reportSchedRacers is how many clients race to write one schedule.
const reportSchedRacers = 16

// reportSchedListed is how many schedules the list test writes: more than
// a few pages of an adapter run with a small page size.
const reportSchedListed = 30

// newReportSched returns name's first revision, with every field set but
// LastRun (a new schedule has never run). It fails the test if the
// schedule would not pass Validate: the suite stores only what the
// service would.
func newReportSched(t *testing.T, c *clock, name string) *escrow.ReportSchedule {
	t.Helper()
	now := c.next()
	rs := &escrow.ReportSchedule{
		Name:   name,
		Report: "secret-access",
		Params: map[string]string{
			"secret": escrow.NewID(now),
			"ticket": "CHG0000042",
			"user":   `ünï "quoted" <user> & co`,
		},
		Every:      "weekly",
		At:         7,
		Recipients: []string{"audit@example.com", `"Ops, Team" <ops@example.com>`},
		CreatedBy:  "alice",
		CreatedAt:  now,
		Revision:   1,
	}
	if err := rs.Validate(); err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	return rs
}

// nextReportSched returns a copy of rs as its next revision.
func nextReportSched(t *testing.T, rs *escrow.ReportSchedule) *escrow.ReportSchedule {
	t.Helper()
	u := cloneJSON(t, rs)
	u.Revision++
	return u
}

// ran returns rs's next revision after a run: LastRun is the end of the
// window mailed.
func ran(t *testing.T, c *clock, rs *escrow.ReportSchedule) *escrow.ReportSchedule {
	t.Helper()
	u := nextReportSched(t, rs)
	// A month and more after the last run: a new window has ended, whatever
	// the period.
	now := c.next().Add(30 * 24 * time.Hour)
	if later := u.LastRun.Add(40 * 24 * time.Hour); later.After(now) {
		now = later
	}
	end, ok := u.Due(now)
	if !ok {
		t.Fatalf("schedule %s is not due at %v", rs.Name, now)
	}
	u.LastRun = end
	return u
}

func reportSchedRecord(ctx context.Context, c *clock, action, name string, revision int64) *escrow.AuditRecord {
	rec := escrow.NewAuditRecord(ctx, c.next(), action, "reportschedule:"+name)
	rec.Details = map[string]string{"revision": strconv.FormatInt(revision, 10)}
	return rec
}

// mustPutReportSched writes rs over rs.Revision-1 and returns its audit
// record.
func mustPutReportSched(t *testing.T, b ReportScheduleBackend, ctx context.Context, c *clock, rs *escrow.ReportSchedule) *escrow.AuditRecord {
	t.Helper()
	rec := reportSchedRecord(ctx, c, actReportSchedPut, rs.Name, rs.Revision)
	if err := b.PutReportSchedule(ctx, rs, rs.Revision-1, rec); err != nil {
		t.Fatalf("PutReportSchedule(%s, rev %d): %v", rs.Name, rs.Revision, err)
	}
	return rec
}

// mustDeleteReportSched deletes name at revision and returns its audit
// record.
func mustDeleteReportSched(t *testing.T, b ReportScheduleBackend, ctx context.Context, c *clock, name string, revision int64) *escrow.AuditRecord {
	t.Helper()
	rec := reportSchedRecord(ctx, c, actReportSchedDelete, name, revision)
	if err := b.DeleteReportSchedule(ctx, name, revision, rec); err != nil {
		t.Fatalf("DeleteReportSchedule(%s, rev %d): %v", name, revision, err)
	}
	return rec
}

func mustGetReportSched(t *testing.T, b ReportScheduleBackend, ctx context.Context, name string) *escrow.ReportSchedule {
	t.Helper()
	rs, err := b.GetReportSchedule(ctx, name)
	if err != nil {
		t.Fatalf("GetReportSchedule(%s): %v", name, err)
	}
	return rs
}

func wantNoReportSched(t *testing.T, b ReportScheduleBackend, ctx context.Context, what, name string) {
	t.Helper()
	_, err := b.GetReportSchedule(ctx, name)
	wantErr(t, fmt.Sprintf("GetReportSchedule(%q, %s)", name, what), err, escrow.ErrNotFound)
}

// checkReportScheds lists the schedules and checks that the list is
// exactly want (as last written), by name.
func checkReportScheds(t *testing.T, b ReportScheduleBackend, ctx context.Context, what string, want map[string]*escrow.ReportSchedule) {
	t.Helper()
	got, err := b.ListReportSchedules(ctx)
	if err != nil {
		t.Fatalf("%s: ListReportSchedules: %v", what, err)
	}
	names := idsOf(got, func(rs *escrow.ReportSchedule) string { return rs.Name })
	var wantNames []string
	for name := range want {
		wantNames = append(wantNames, name)
	}
	slices.Sort(wantNames) // byte order: names are ASCII
	if !slices.Equal(names, wantNames) {
		t.Errorf("%s: ListReportSchedules = %q, want %q", what, names, wantNames)
		return
	}
	for _, rs := range got {
		checkJSON(t, fmt.Sprintf("%s: ListReportSchedules: %s", what, rs.Name), rs, want[rs.Name])
	}
}

// checkRefused checks that none of the refused writes' audit records is
// in the log.
func checkRefused(t *testing.T, b escrow.AuditLog, ctx context.Context, refused []string) {
	t.Helper()
	logged := auditOf(t, b, ctx, escrow.AuditQuery{})
	for _, r := range refused {
		if slices.Contains(logged, r) {
			t.Errorf("the audit record %s of a refused write is in the log", r)
		}
	}
}

func testReportSchedPutAndGet(t *testing.T, b ReportScheduleBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	wantNoReportSched(t, b, ctx, "empty store", "weekly-access")

	rs := newReportSched(t, c, "weekly-access")
	recs := []*escrow.AuditRecord{mustPutReportSched(t, b, ctx, c, rs)}
	got := mustGetReportSched(t, b, ctx, rs.Name)
	checkJSON(t, "GetReportSchedule after the first put", got, rs)
	if !got.LastRun.IsZero() {
		t.Errorf("a schedule that never ran reads back LastRun %v", got.LastRun)
	}

	// A run sets LastRun; an edit changes recipients and parameters; a
	// replacement is stored whole, so dropped parameters stay dropped.
	run := ran(t, c, rs)
	edit := nextReportSched(t, run)
	edit.Recipients = append(edit.Recipients, "ciso@example.com")
	edit.Params["ticket"] = "CHG0000043"
	edit.Every, edit.At = "monthly", 23
	bare := nextReportSched(t, edit)
	bare.Params, bare.Report, bare.Every, bare.At = nil, "grants", "hourly", 0
	for _, u := range []*escrow.ReportSchedule{run, edit, bare} {
		recs = append(recs, mustPutReportSched(t, b, ctx, c, u))
		got := mustGetReportSched(t, b, ctx, rs.Name)
		checkJSON(t, fmt.Sprintf("GetReportSchedule after the put of revision %d", u.Revision), got, u)
		if !got.LastRun.Equal(run.LastRun) {
			t.Errorf("revision %d: LastRun = %v, want %v", u.Revision, got.LastRun, run.LastRun)
		}
	}
	if got := mustGetReportSched(t, b, ctx, rs.Name); len(got.Params) != 0 {
		t.Errorf("dropped parameters came back: %v", got.Params)
	}
	for _, other := range []string{"weekly-acces", "weekly-access-2", "WEEKLY-ACCESS", "weekly", ""} {
		wantNoReportSched(t, b, ctx, "other name", other)
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
	if byAction := auditOf(t, b, ctx, escrow.AuditQuery{Action: actReportSchedPut}); !slices.Equal(byAction, want) {
		t.Errorf("QueryAudit(Action) = %v, want %v", byAction, want)
	}
}

func testReportSchedDuplicate(t *testing.T, b ReportScheduleBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	first := newReportSched(t, c, "daily")
	ok := mustPutReportSched(t, b, ctx, c, first)
	again := newReportSched(t, c, "daily")
	again.Recipients = []string{"mallory@example.com"}
	rec := reportSchedRecord(ctx, c, actReportSchedPut, again.Name, again.Revision)
	wantErr(t, "PutReportSchedule(same name, prev 0)", b.PutReportSchedule(ctx, again, 0, rec), escrow.ErrConflict)

	checkJSON(t, "GetReportSchedule after a refused duplicate", mustGetReportSched(t, b, ctx, "daily"), first)
	checkAudit(t, b, ctx, ok)
}

func testReportSchedStale(t *testing.T, b ReportScheduleBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	rs := newReportSched(t, c, "monthly-grants")
	ok := []*escrow.AuditRecord{mustPutReportSched(t, b, ctx, c, rs)}
	cur := ran(t, c, rs)
	ok = append(ok, mustPutReportSched(t, b, ctx, c, cur))

	var refused []string
	for _, tc := range []struct {
		what string
		rs   *escrow.ReportSchedule
		prev int64
	}{
		{"stale revision", nextReportSched(t, rs), 1},
		{"future revision", nextReportSched(t, nextReportSched(t, cur)), 3},
		{"no schedule, prev 1", nextReportSched(t, newReportSched(t, c, "ghost")), 1},
	} {
		rec := reportSchedRecord(ctx, c, actReportSchedPut, tc.rs.Name, tc.rs.Revision)
		refused = append(refused, rec.ID)
		wantErr(t, "PutReportSchedule("+tc.what+")", b.PutReportSchedule(ctx, tc.rs, tc.prev, rec), escrow.ErrConflict)
	}
	// A revision that skips one breaks the port's rule; the port names no
	// error for it, so any will do, as long as nothing lands.
	skip := nextReportSched(t, nextReportSched(t, cur))
	rec := reportSchedRecord(ctx, c, actReportSchedPut, skip.Name, skip.Revision)
	refused = append(refused, rec.ID)
	if err := b.PutReportSchedule(ctx, skip, cur.Revision, rec); err == nil {
		t.Errorf("PutReportSchedule(revision %d over %d) succeeded", skip.Revision, cur.Revision)
	}

	checkJSON(t, "GetReportSchedule after refused writes", mustGetReportSched(t, b, ctx, rs.Name), cur)
	wantNoReportSched(t, b, ctx, "a refused write's", "ghost")
	checkReportScheds(t, b, ctx, "after refused writes", map[string]*escrow.ReportSchedule{cur.Name: cur})
	checkAudit(t, b, ctx, ok...)
	checkRefused(t, b, ctx, refused)
}

func testReportSchedList(t *testing.T, b ReportScheduleBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	checkReportScheds(t, b, ctx, "empty store", nil)

	// Names of every shape the rule allows, written out of name order:
	// digits before letters, '-' before both, prefixes of one another.
	names := []string{"0-first", "9", "a", "a-b", "a0", "ab", "zz-last", "1000000000"}
	for i := len(names); i < reportSchedListed; i++ {
		names = append(names, fmt.Sprintf("weekly-%02d", i))
	}
	want := map[string]*escrow.ReportSchedule{}
	var ok []*escrow.AuditRecord
	for i := range names {
		name := names[(i*7)%len(names)] // 7 is prime to 30: every name once
		rs := newReportSched(t, c, name)
		if i%2 == 1 {
			rs = ran(t, c, rs)
			rs.Revision = 1
		}
		ok = append(ok, mustPutReportSched(t, b, ctx, c, rs))
		want[name] = rs
	}
	if len(want) != reportSchedListed {
		t.Fatalf("fixture has %d schedules, want %d", len(want), reportSchedListed)
	}
	checkReportScheds(t, b, ctx, fmt.Sprintf("%d schedules", reportSchedListed), want)

	// Updates show in the list; deleted schedules leave it.
	for _, name := range []string{"a", "weekly-17", "zz-last"} {
		u := ran(t, c, want[name])
		ok = append(ok, mustPutReportSched(t, b, ctx, c, u))
		want[name] = u
	}
	for _, name := range []string{"0-first", "weekly-20"} {
		ok = append(ok, mustDeleteReportSched(t, b, ctx, c, name, want[name].Revision))
		delete(want, name)
	}
	checkReportScheds(t, b, ctx, "after updates and deletes", want)
	checkAudit(t, b, ctx, ok...)
}

func testReportSchedDelete(t *testing.T, b ReportScheduleBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	rs := newReportSched(t, c, "weekly-access")
	other := newReportSched(t, c, "other")
	puts := []*escrow.AuditRecord{mustPutReportSched(t, b, ctx, c, rs), mustPutReportSched(t, b, ctx, c, other)}
	cur := ran(t, c, rs)
	puts = append(puts, mustPutReportSched(t, b, ctx, c, cur))

	del := mustDeleteReportSched(t, b, ctx, c, rs.Name, cur.Revision)
	wantNoReportSched(t, b, ctx, "deleted", rs.Name)
	checkReportScheds(t, b, ctx, "after the delete", map[string]*escrow.ReportSchedule{other.Name: other})
	checkJSON(t, "GetReportSchedule(the other schedule)", mustGetReportSched(t, b, ctx, other.Name), other)

	// Deleting again finds nothing; the name can be taken anew, from
	// revision 1, and the new schedule has none of the old one's state.
	rec := reportSchedRecord(ctx, c, actReportSchedDelete, rs.Name, cur.Revision)
	wantErr(t, "DeleteReportSchedule(deleted)", b.DeleteReportSchedule(ctx, rs.Name, cur.Revision, rec), escrow.ErrNotFound)
	refused := []string{rec.ID}
	again := newReportSched(t, c, rs.Name)
	again.Every = "daily"
	puts = append(puts, mustPutReportSched(t, b, ctx, c, again))
	checkJSON(t, "GetReportSchedule(recreated)", mustGetReportSched(t, b, ctx, rs.Name), again)
	checkReportScheds(t, b, ctx, "after the re-creation", map[string]*escrow.ReportSchedule{other.Name: other, again.Name: again})

	// The winners' audit records are in the log, and by action.
	checkAudit(t, b, ctx, append(slices.Clone(puts), del)...)
	checkRefused(t, b, ctx, refused)
	if byAction := auditOf(t, b, ctx, escrow.AuditQuery{Action: actReportSchedDelete}); !slices.Equal(byAction, []string{del.ID}) {
		t.Errorf("QueryAudit(Action %s) = %v, want [%s]", actReportSchedDelete, byAction, del.ID)
	}
	all := allAudit(t, b, ctx, escrow.AuditQuery{Action: actReportSchedDelete})
	if len(all) == 1 {
		if d := diffRecord(all[0], del); d != "" {
			t.Errorf("the delete's audit record: %s", d)
		}
	}
}

func testReportSchedDeleteStale(t *testing.T, b ReportScheduleBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	rs := newReportSched(t, c, "hourly")
	ok := []*escrow.AuditRecord{mustPutReportSched(t, b, ctx, c, rs)}
	cur := ran(t, c, rs)
	ok = append(ok, mustPutReportSched(t, b, ctx, c, cur))

	var refused []string
	for _, prev := range []int64{1, 3} {
		rec := reportSchedRecord(ctx, c, actReportSchedDelete, rs.Name, prev)
		refused = append(refused, rec.ID)
		wantErr(t, fmt.Sprintf("DeleteReportSchedule(rev %d of %d)", prev, cur.Revision),
			b.DeleteReportSchedule(ctx, rs.Name, prev, rec), escrow.ErrConflict)
	}
	checkJSON(t, "GetReportSchedule after refused deletes", mustGetReportSched(t, b, ctx, rs.Name), cur)
	checkReportScheds(t, b, ctx, "after refused deletes", map[string]*escrow.ReportSchedule{cur.Name: cur})
	checkAudit(t, b, ctx, ok...)
	checkRefused(t, b, ctx, refused)
}

func testReportSchedDeleteMissing(t *testing.T, b ReportScheduleBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	var refused []string
	deleteMissing := func(what, name string) {
		t.Helper()
		rec := reportSchedRecord(ctx, c, actReportSchedDelete, name, 1)
		refused = append(refused, rec.ID)
		wantErr(t, fmt.Sprintf("DeleteReportSchedule(%q, %s)", name, what), b.DeleteReportSchedule(ctx, name, 1, rec), escrow.ErrNotFound)
	}
	deleteMissing("empty store", "ghost")
	other := newReportSched(t, c, "other")
	ok := mustPutReportSched(t, b, ctx, c, other)
	for _, name := range []string{"ghost", "othe", "other-2", "OTHER"} {
		deleteMissing("another stored", name)
	}
	checkJSON(t, "GetReportSchedule(the stored one)", mustGetReportSched(t, b, ctx, other.Name), other)
	checkAudit(t, b, ctx, ok)
	checkRefused(t, b, ctx, refused)
}

// reportSchedRace has reportSchedRacers clients write their own schedule
// name over prevRevision at once, and checks that exactly one wins, every
// other gets ErrConflict, the store holds the winner's schedule, and of
// the racers' audit records only the winner's is in the log (beside
// before's).
func reportSchedRace(t *testing.T, b ReportScheduleBackend, ctx context.Context, c *clock, name string, prevRevision int64, before []*escrow.AuditRecord) {
	t.Helper()
	scheds := make([]*escrow.ReportSchedule, reportSchedRacers)
	recs := make([]*escrow.AuditRecord, reportSchedRacers)
	for i := range reportSchedRacers {
		scheds[i] = newReportSched(t, c, name)
		scheds[i].CreatedBy = fmt.Sprintf("racer%d", i)
		scheds[i].Recipients = []string{fmt.Sprintf("racer%d@example.com", i)}
		scheds[i].Revision = prevRevision + 1
		recs[i] = reportSchedRecord(ctx, c, actReportSchedPut, name, scheds[i].Revision)
	}
	winner := raceOne(t, reportSchedRacers, prevRevision, func(i int) error { return b.PutReportSchedule(ctx, scheds[i], prevRevision, recs[i]) })
	checkJSON(t, "GetReportSchedule after the race", mustGetReportSched(t, b, ctx, name), scheds[winner])
	checkAudit(t, b, ctx, append(slices.Clone(before), recs[winner])...)
}

func testFirstReportSchedRace(t *testing.T, b ReportScheduleBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	reportSchedRace(t, b, ctx, c, "weekly-access", 0, nil)
}

func testReportSchedUpdateRace(t *testing.T, b ReportScheduleBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	rs := newReportSched(t, c, "weekly-access")
	before := []*escrow.AuditRecord{mustPutReportSched(t, b, ctx, c, rs)}
	rs = ran(t, c, rs)
	before = append(before, mustPutReportSched(t, b, ctx, c, rs))
	reportSchedRace(t, b, ctx, c, rs.Name, rs.Revision, before)
}

// testReportSchedUpdateDeleteRace races updates (even racers) against
// deletes (odd racers) of one revision. Exactly one wins. A losing update
// is ErrConflict; a losing delete is ErrConflict if an update won, and
// ErrNotFound or ErrConflict (it may have raced the winner rather than
// followed it) if a delete won.
func testReportSchedUpdateDeleteRace(t *testing.T, b ReportScheduleBackend) {
	ctx, c := ctxFor(t, alice), newClock()
	rs := newReportSched(t, c, "weekly-access")
	before := []*escrow.AuditRecord{mustPutReportSched(t, b, ctx, c, rs)}
	rs = ran(t, c, rs)
	before = append(before, mustPutReportSched(t, b, ctx, c, rs))

	scheds := make([]*escrow.ReportSchedule, reportSchedRacers)
	recs := make([]*escrow.AuditRecord, reportSchedRacers)
	errs := make([]error, reportSchedRacers)
	for i := range reportSchedRacers {
		if i%2 == 0 {
			scheds[i] = nextReportSched(t, rs)
			scheds[i].Recipients = []string{fmt.Sprintf("racer%d@example.com", i)}
			recs[i] = reportSchedRecord(ctx, c, actReportSchedPut, rs.Name, scheds[i].Revision)
		} else {
			recs[i] = reportSchedRecord(ctx, c, actReportSchedDelete, rs.Name, rs.Revision)
		}
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range reportSchedRacers {
		wg.Go(func() {
			<-start
			if scheds[i] != nil {
				errs[i] = b.PutReportSchedule(ctx, scheds[i], rs.Revision, recs[i])
			} else {
				errs[i] = b.DeleteReportSchedule(ctx, rs.Name, rs.Revision, recs[i])
			}
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for i, err := range errs {
		if err == nil {
			if winner >= 0 {
				t.Errorf("racers %d and %d both won", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatalf("no racer won: %v", errs)
	}
	deleted := scheds[winner] == nil
	for i, err := range errs {
		switch {
		case err == nil, errors.Is(err, escrow.ErrConflict):
		case errors.Is(err, escrow.ErrNotFound) && deleted && scheds[i] == nil:
		default:
			t.Errorf("racer %d (delete: %v, a delete won: %v): %v", i, scheds[i] == nil, deleted, err)
		}
	}
	t.Logf("%d racers from revision %d: racer %d won (delete: %v)", reportSchedRacers, rs.Revision, winner, deleted)
	if deleted {
		wantNoReportSched(t, b, ctx, "after a delete won the race", rs.Name)
		checkReportScheds(t, b, ctx, "after a delete won the race", nil)
	} else {
		checkJSON(t, "GetReportSchedule after an update won the race", mustGetReportSched(t, b, ctx, rs.Name), scheds[winner])
	}
	checkAudit(t, b, ctx, append(slices.Clone(before), recs[winner])...)
}
