package reportsched_test

import (
	"context"
	"encoding/csv"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/notify"
	"github.com/escrow-pam/escrow/internal/notify/outbox"
	"github.com/escrow-pam/escrow/internal/report"
	"github.com/escrow-pam/escrow/internal/reportsched"
	"github.com/escrow-pam/escrow/internal/store/sqlite"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

var (
	admin   = &escrow.Principal{Subject: "admin", Roles: []string{escrow.RoleAdmin}}
	auditor = &escrow.Principal{Subject: "auditor", Roles: []string{escrow.RoleAuditor}}
	alice   = &escrow.Principal{Subject: "alice"}
)

func as(p *escrow.Principal) context.Context {
	return escrow.WithRequestInfo(escrow.NewContext(context.Background(), p), escrow.RequestInfo{RequestID: "r-" + p.Subject})
}

type env struct {
	store *sqlite.Store
	box   *outbox.Outbox
	clock *clock
	svc   *reportsched.Service
}

func newEnv(t *testing.T) *env {
	t.Helper()
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "escrow.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	box, err := outbox.Open(filepath.Join(t.TempDir(), "outbox"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2026, 12, 7, 5, 30, 0, 0, time.UTC)}
	reps := report.New(report.Config{Store: store, Requests: store, Audit: store, Clock: c})
	return &env{store: store, box: box, clock: c,
		svc: reportsched.New(reportsched.Config{Reports: reps, Store: store, Audit: store, Notifier: box, Clock: c})}
}

func (e *env) write(t *testing.T, at time.Time, actor, action string, outcome escrow.Outcome) {
	t.Helper()
	rec := &escrow.AuditRecord{ID: escrow.NewID(at), Time: at, Actor: escrow.Actor{Subject: actor}, Action: action,
		Target: "secret:s1", SecretID: "s1", Outcome: outcome}
	if err := e.store.Append(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
}

// TestDailyReportIsMailedOnceWithItsWindow: a daily 06:00 schedule of
// alice's access mails, at the first tick after 06:00, the CSV of exactly
// the day before; a second tick sends nothing; the run is audited.
func TestDailyReportIsMailedOnceWithItsWindow(t *testing.T) {
	e := newEnv(t)
	sc, err := e.svc.Put(as(admin), &escrow.ReportSchedule{Name: "alice-daily", Report: "access-by-user",
		Params: map[string]string{"user": "alice"}, Every: "daily", At: 6, Recipients: []string{"sec@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if !sc.LastRun.Equal(time.Date(2026, 12, 6, 6, 0, 0, 0, time.UTC)) {
		t.Fatalf("a new schedule starts at %v, want the last boundary (it does not mail the past)", sc.LastRun)
	}
	// In the window (06:00 on the 6th to 06:00 on the 7th), and outside it.
	e.write(t, time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC), "alice", "secret.reveal", escrow.OutcomeSuccess)
	e.write(t, time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC), "alice", "secret.reveal", escrow.OutcomeSuccess)
	e.write(t, time.Date(2026, 12, 7, 5, 59, 0, 0, time.UTC), "alice", "secret.checkout", escrow.OutcomeDenied)
	e.write(t, time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC), "bob", "secret.reveal", escrow.OutcomeSuccess)
	if n, err := e.svc.RunDue(context.Background()); err != nil || n != 0 {
		t.Fatalf("before 06:00: sent %d %v", n, err)
	}
	e.clock.Set(time.Date(2026, 12, 7, 6, 0, 30, 0, time.UTC))
	if n, err := e.svc.RunDue(context.Background()); err != nil || n != 1 {
		t.Fatalf("after 06:00: sent %d %v", n, err)
	}
	if n, _ := e.svc.RunDue(context.Background()); n != 0 {
		t.Fatalf("a second tick sent %d", n)
	}
	msgs, err := e.box.List(context.Background(), "alice-daily", 10)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("outbox: %d %v", len(msgs), err)
	}
	m := msgs[0]
	if len(m.Attachments) != 1 || !strings.HasSuffix(m.Attachments[0].Name, ".csv") || m.To[0] != "sec@example.com" {
		t.Fatalf("mail %+v", m)
	}
	rows, err := csv.NewReader(strings.NewReader(string(m.Attachments[0].Data))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 { // header + two of alice's records in the window
		t.Fatalf("CSV has %d lines, want the header and 2 rows:\n%s", len(rows), m.Attachments[0].Data)
	}
	page, _ := e.store.QueryAudit(context.Background(), escrow.AuditQuery{Action: reportsched.ActionSent})
	if len(page.Records) != 1 || page.Records[0].Actor.Subject != reportsched.Runner {
		t.Fatalf("sent records: %+v", page.Records)
	}
	runs, _ := e.store.QueryAudit(context.Background(), escrow.AuditQuery{Action: report.ActionRun})
	if len(runs.Records) != 1 || runs.Records[0].Outcome != escrow.OutcomeSuccess {
		t.Fatalf("report runs: %+v", runs.Records)
	}
}

// TestFailedMailIsRetried: when mail fails, the window is not marked sent,
// and the next tick sends it.
func TestFailedMailIsRetried(t *testing.T) {
	e := newEnv(t)
	failing := &flaky{}
	reps := report.New(report.Config{Store: e.store, Requests: e.store, Audit: e.store, Clock: e.clock})
	svc := reportsched.New(reportsched.Config{Reports: reps, Store: e.store, Audit: e.store, Notifier: failing, Clock: e.clock})
	if _, err := svc.Put(as(admin), &escrow.ReportSchedule{Name: "hourly-denied", Report: "denied", Every: "hourly",
		Recipients: []string{"soc@example.com"}}); err != nil {
		t.Fatal(err)
	}
	e.clock.Set(e.clock.Now().Add(time.Hour))
	failing.fail = true
	if n, err := svc.RunDue(context.Background()); n != 0 || err == nil {
		t.Fatalf("with mail down: sent %d, err %v", n, err)
	}
	failing.fail = false
	if n, err := svc.RunDue(context.Background()); n != 1 || err != nil {
		t.Fatalf("with mail back: sent %d, err %v", n, err)
	}
	if failing.sent != 1 {
		t.Fatalf("%d mails", failing.sent)
	}
}

type flaky struct {
	fail bool
	sent int
}

func (f *flaky) Send(context.Context, notify.Message) error {
	if f.fail {
		return escrow.Errorf(escrow.CodeUnavailable, "mail is down")
	}
	f.sent++
	return nil
}

func TestSchedulesAreAdminsAndChecked(t *testing.T) {
	e := newEnv(t)
	good := &escrow.ReportSchedule{Name: "s", Report: "denied", Every: "weekly", At: 7, Recipients: []string{"a@example.com"}}
	if _, err := e.svc.Put(as(alice), good); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("alice defines a schedule: %v", err)
	}
	if _, err := e.svc.Put(as(auditor), good); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("an auditor defines a schedule: %v", err)
	}
	for name, bad := range map[string]*escrow.ReportSchedule{
		"unknown report": {Name: "s", Report: "nope", Every: "daily", Recipients: []string{"a@example.com"}},
		"missing param":  {Name: "s", Report: "access-by-user", Every: "daily", Recipients: []string{"a@example.com"}},
		"fixed window":   {Name: "s", Report: "denied", Every: "daily", Params: map[string]string{"from": "2026-01-01"}, Recipients: []string{"a@example.com"}},
		"bad every":      {Name: "s", Report: "denied", Every: "yearly", Recipients: []string{"a@example.com"}},
		"bad recipient":  {Name: "s", Report: "denied", Every: "daily", Recipients: []string{"not mail"}},
	} {
		if _, err := e.svc.Put(as(admin), bad); escrow.ErrorCode(err) != escrow.CodeInvalid {
			t.Errorf("%s: %v, want invalid", name, err)
		}
	}
	if _, err := e.svc.Put(as(admin), good); err != nil {
		t.Fatal(err)
	}
	if ls, err := e.svc.List(as(auditor)); err != nil || len(ls) != 1 {
		t.Fatalf("auditor lists: %d %v", len(ls), err)
	}
	if err := e.svc.Delete(as(alice), "s"); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("alice deletes: %v", err)
	}
	if err := e.svc.Delete(as(admin), "s"); err != nil {
		t.Fatal(err)
	}
	if ls, _ := e.svc.List(as(admin)); len(ls) != 0 {
		t.Fatal("deleted schedule still listed")
	}
}

func TestDueBoundaries(t *testing.T) {
	at := func(s string) time.Time { t, _ := time.Parse(time.RFC3339, s); return t }
	for _, tc := range []struct {
		every, now, want string
	}{
		{"hourly", "2026-12-07T05:30:00Z", "2026-12-07T05:00:00Z"},
		{"daily", "2026-12-07T05:30:00Z", "2026-12-06T06:00:00Z"},
		{"daily", "2026-12-07T06:00:00Z", "2026-12-07T06:00:00Z"},
		{"weekly", "2026-12-07T07:00:00Z", "2026-12-07T06:00:00Z"}, // a Monday
		{"weekly", "2026-12-06T07:00:00Z", "2026-11-30T06:00:00Z"},
		{"monthly", "2026-12-01T05:00:00Z", "2026-11-01T06:00:00Z"},
	} {
		sc := &escrow.ReportSchedule{Every: tc.every, At: 6}
		got, ok := sc.Due(at(tc.now))
		if !ok || !got.Equal(at(tc.want)) {
			t.Errorf("%s at %s: %v %v, want %s", tc.every, tc.now, got, ok, tc.want)
		}
	}
}
