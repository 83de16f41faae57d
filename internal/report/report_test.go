package report_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/access"
	"github.com/escrow-pam/escrow/internal/checkout"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/report"
	"github.com/escrow-pam/escrow/internal/store/sqlite"
	"github.com/escrow-pam/escrow/internal/ticketing"
)

func openSQLite(t testing.TB) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "escrow.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newService(st backend, c escrow.Clock) *report.Service {
	return report.New(report.Config{Store: st, Requests: st, Audit: st, Clock: c})
}

// TestReportsOnSQLite runs every report over a trail made by the real
// services on the embedded store, with full pages and with pages of three
// records (one per index where several are merged).
func TestReportsOnSQLite(t *testing.T) {
	st := openSQLite(t)
	tr := buildTrail(t, st)
	t.Run("pages of 1000", func(t *testing.T) { checkReports(t, newService(st, tr.clock), tr) })
	t.Run("pages of 3", func(t *testing.T) {
		checkReports(t, report.New(report.Config{Store: st, Requests: st, Audit: st, Clock: tr.clock, PageSize: 3}), tr)
	})
}

// TestRoles: only admins and auditors run reports; a refusal returns
// nothing and is audited as denied.
func TestRoles(t *testing.T) {
	st := openSQLite(t)
	tr := buildTrail(t, st)
	svc := newService(st, tr.clock)
	for _, p := range []*escrow.Principal{alice, bob, {Subject: "robot", Roles: []string{"reader"}}} {
		w := &recorder{}
		err := svc.Run(as(p), "activity", report.Params{}, w)
		if !errors.Is(err, escrow.ErrForbidden) {
			t.Errorf("%s: %v, want forbidden", p.Subject, err)
		}
		if w.began || len(w.rows) > 0 {
			t.Errorf("%s got output", p.Subject)
		}
	}
	if err := svc.Run(context.Background(), "activity", report.Params{}, &recorder{}); !errors.Is(err, escrow.ErrUnauthenticated) {
		t.Errorf("no principal: %v", err)
	}
	for _, p := range []*escrow.Principal{auditor, admin} {
		if err := svc.Run(as(p), "grants", report.Params{}, &recorder{}); err != nil {
			t.Errorf("%s: %v", p.Subject, err)
		}
	}
	page, err := st.QueryAudit(context.Background(), escrow.AuditQuery{Action: report.ActionRun, Actor: "alice"})
	if err != nil || len(page.Records) != 1 || page.Records[0].Outcome != escrow.OutcomeDenied ||
		page.Records[0].Details["report"] != "activity" || page.Records[0].ErrorCode != escrow.CodeForbidden {
		t.Fatalf("alice's refused run in the trail: %+v %v", page.Records, err)
	}
}

// failingLog refuses every append, as a full or unreachable audit table
// would.
type failingLog struct{ escrow.AuditLog }

func (failingLog) Append(context.Context, *escrow.AuditRecord) error {
	return escrow.Wrap(escrow.CodeUnavailable, errors.New("disk full"), "audit log unavailable")
}

// TestFailClosed: a run whose audit record cannot be written returns no
// row, for an allowed caller and a refused one alike.
func TestFailClosed(t *testing.T) {
	st := openSQLite(t)
	tr := buildTrail(t, st)
	svc := report.New(report.Config{Store: st, Requests: st, Audit: failingLog{st}, Clock: tr.clock})
	for _, p := range []*escrow.Principal{auditor, alice} {
		w := &recorder{}
		err := svc.Run(as(p), "activity", report.Params{}, w)
		if !errors.Is(err, escrow.ErrUnavailable) {
			t.Errorf("%s: %v, want unavailable", p.Subject, err)
		}
		if w.began || len(w.rows) > 0 {
			t.Errorf("%s got %d rows without an audit record", p.Subject, len(w.rows))
		}
	}
}

// TestRunAudited: each run writes exactly one record, with the report and
// its parameters, before any row.
func TestRunAudited(t *testing.T) {
	st := openSQLite(t)
	tr := buildTrail(t, st)
	svc := newService(st, tr.clock)
	from := tr.from
	before := countRuns(t, st)
	w := &recorder{onBegin: func() {
		if countRuns(t, st) != before+1 {
			t.Error("rows began before the run was audited")
		}
	}}
	if err := svc.Run(as(auditor), "access-to-secret", report.Params{Secret: "/prod/db", From: from}, w); err != nil {
		t.Fatal(err)
	}
	page, err := st.QueryAudit(context.Background(), escrow.AuditQuery{Action: report.ActionRun, Actor: "auditor", Limit: 1})
	if err != nil || len(page.Records) != 1 {
		t.Fatalf("run record: %v %v", page.Records, err)
	}
	rec := page.Records[0]
	want := map[string]string{"report": "access-to-secret", "secret": "/prod/db", "secretId": tr.prod, "from": from.Format(time.RFC3339Nano)}
	for k, v := range want {
		if rec.Details[k] != v {
			t.Errorf("details[%s] = %q, want %q (%v)", k, rec.Details[k], v, rec.Details)
		}
	}
	if rec.Outcome != escrow.OutcomeSuccess || rec.Target != "report:access-to-secret" || rec.RequestID != "req-auditor" {
		t.Errorf("record = %+v", rec)
	}
	if countRuns(t, st) != before+1 {
		t.Errorf("%d run records, want one more than %d", countRuns(t, st), before)
	}
}

func countRuns(t *testing.T, st backend) int {
	t.Helper()
	page, err := st.QueryAudit(context.Background(), escrow.AuditQuery{Action: report.ActionRun, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return len(page.Records)
}

// TestParams: each report refuses what it does not take and needs what it
// must have, and the refusals are audited as failed.
func TestParams(t *testing.T) {
	st := openSQLite(t)
	svc := newService(st, nil)
	now := time.Now()
	tests := []struct {
		name   string
		params report.Params
		code   escrow.Code
	}{
		{"access-by-user", report.Params{}, escrow.CodeInvalid},
		{"access-by-user", report.Params{User: "a", Ticket: "CHG1"}, escrow.CodeInvalid},
		{"access-to-secret", report.Params{}, escrow.CodeInvalid},
		{"access-to-secret", report.Params{Secret: "/no/such"}, escrow.CodeNotFound},
		{"ticket", report.Params{User: "bob"}, escrow.CodeInvalid},
		{"grants", report.Params{From: now}, escrow.CodeInvalid},
		{"requests", report.Params{From: now, To: now}, escrow.CodeInvalid},
		{"everything", report.Params{}, escrow.CodeNotFound},
	}
	for _, tc := range tests {
		err := svc.Run(as(auditor), tc.name, tc.params, &recorder{})
		if escrow.ErrorCode(err) != tc.code {
			t.Errorf("%s %+v: %v, want %s", tc.name, tc.params, err, tc.code)
		}
	}
	page, err := st.QueryAudit(context.Background(), escrow.AuditQuery{Action: report.ActionRun, Limit: 100})
	if err != nil || len(page.Records) != len(tests) {
		t.Fatalf("%d run records, want %d: %v", len(page.Records), len(tests), err)
	}
	for _, r := range page.Records {
		if r.Outcome != escrow.OutcomeFailed {
			t.Errorf("refused run recorded as %s", r.Outcome)
		}
	}
}

// countingLog counts the pages read from the audit log.
type countingLog struct {
	escrow.AuditLog
	queries atomic.Int64
}

func (c *countingLog) QueryAudit(ctx context.Context, q escrow.AuditQuery) (escrow.AuditPage, error) {
	c.queries.Add(1)
	return c.AuditLog.QueryAudit(ctx, q)
}

// TestStreaming: rows are written as pages arrive, not after the last one,
// and every page is read once.
func TestStreaming(t *testing.T) {
	st := openSQLite(t)
	const n = 2000
	base := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			at := base.Add(time.Duration(i) * time.Second)
			rec := escrow.NewAuditRecord(as(alice), at, escrow.ActionSecretReveal, "secret:S1")
			rec.SecretID, rec.Details = "S1", map[string]string{"path": "/a/b"}
			if err := st.Append(context.Background(), rec); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	log := &countingLog{AuditLog: st}
	svc := report.New(report.Config{Store: st, Requests: st, Audit: log, PageSize: 50})
	var atFirstRow int64 = -1
	w := &recorder{onRow: func(i int) {
		if i == 0 {
			atFirstRow = log.queries.Load()
		}
	}}
	if err := svc.Run(as(auditor), "access-by-user", report.Params{User: "alice", From: base}, w); err != nil {
		t.Fatal(err)
	}
	if len(w.rows) != n {
		t.Fatalf("%d rows, want %d", len(w.rows), n)
	}
	pages := log.queries.Load()
	if pages < n/50 || pages > n/50+1 {
		t.Errorf("%d pages read, want %d", pages, n/50)
	}
	if atFirstRow < 1 || atFirstRow > 2 {
		t.Errorf("the first row was written after %d of %d pages; rows must stream as pages arrive", atFirstRow, pages)
	}
	for i := 1; i < n; i++ {
		if w.rows[i][0] >= w.rows[i-1][0] {
			t.Fatalf("row %d (%s) is not older than row %d (%s)", i, w.rows[i][0], i-1, w.rows[i-1][0])
		}
	}

	// activity reads time windows side by side: every record once, in
	// order, though records fall exactly on the windows' bounds.
	w = &recorder{}
	if err := svc.Run(as(auditor), "activity", report.Params{From: base, To: base.Add(n * time.Second)}, w); err != nil {
		t.Fatal(err)
	}
	if len(w.rows) != n {
		t.Fatalf("activity: %d rows, want %d", len(w.rows), n)
	}
	for i := 1; i < n; i++ {
		if w.rows[i][0] >= w.rows[i-1][0] {
			t.Fatalf("activity row %d (%s) is not older than row %d (%s)", i, w.rows[i][0], i-1, w.rows[i-1][0])
		}
	}

	// A run whose context ends midway fails: it never ends as if complete.
	for name, p := range map[string]report.Params{
		"access-by-user":   {User: "alice", From: base},
		"access-to-secret": {Secret: "S1", From: base},
		"activity":         {From: base},
	} {
		ctx, cancel := context.WithCancel(as(auditor))
		w := &recorder{onRow: func(i int) {
			if i == 10 {
				cancel()
			}
		}}
		err := svc.Run(ctx, name, p, w)
		cancel()
		if !errors.Is(err, context.Canceled) || w.ended || len(w.rows) >= n {
			t.Errorf("%s cancelled after 10 rows: %v, %d rows, ended %v", name, err, len(w.rows), w.ended)
		}
	}
}

// recorder keeps a report's rows as text.
type recorder struct {
	began   bool
	cols    []report.Column
	rows    [][]string
	ended   bool
	onBegin func()
	onRow   func(i int)
}

func (r *recorder) Begin(cols []report.Column) error {
	r.began, r.cols = true, cols
	if r.onBegin != nil {
		r.onBegin()
	}
	return nil
}

func (r *recorder) Row(vals []report.Value) error {
	if r.onRow != nil {
		r.onRow(len(r.rows))
	}
	row := make([]string, len(vals))
	for i, v := range vals {
		row[i] = v.Text()
	}
	r.rows = append(r.rows, row)
	return nil
}

func (r *recorder) End() error { r.ended = true; return nil }

// TestCSV checks RFC 4180 quoting and the formula guard.
func TestCSV(t *testing.T) {
	var buf bytes.Buffer
	w := report.NewCSVWriter(&buf)
	cols := []report.Column{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	rows := [][]report.Value{
		{report.Str(`plain`), report.Str(`with, comma`), report.Str(`say "hi"`)},
		{report.Str("two\nlines"), report.Str("=1+2"), report.Str("+cmd|' /C calc'!A0")},
		{report.Str("-2"), report.Str("@SUM(A1)"), report.Str("\t=x")},
		{report.Int(-3), report.Bool(true), report.Time(time.Date(2026, 11, 22, 10, 0, 0, 5e6, time.FixedZone("x", 3600)))},
		{report.Null(), report.Structured("a; b", []string{"a", "b"}), report.Str("ünï, cödé")},
	}
	if err := w.Begin(cols); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if err := w.Row(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.End(); err != nil {
		t.Fatal(err)
	}
	want := "a,b,c\r\n" +
		"plain,\"with, comma\",\"say \"\"hi\"\"\"\r\n" +
		"\"two\r\nlines\",'=1+2,'+cmd|' /C calc'!A0\r\n" +
		"'-2,'@SUM(A1),'\t=x\r\n" +
		"'-3,true,2026-11-22T09:00:00.005Z\r\n" +
		",a; b,\"ünï, cödé\"\r\n"
	if buf.String() != want {
		t.Errorf("csv =\n%q\nwant\n%q", buf.String(), want)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(recs) != 6 || recs[2][0] != "two\nlines" || recs[1][2] != `say "hi"` {
		t.Errorf("read back: %q %v", recs, err)
	}
	if w.Rows() != 5 {
		t.Errorf("Rows() = %d", w.Rows())
	}
}

// TestJSON: both JSON forms parse, keep the columns' names and types, and
// escape what JSON must.
func TestJSON(t *testing.T) {
	cols := []report.Column{{Name: "s"}, {Name: "n"}, {Name: "b"}, {Name: "t"}, {Name: "x"}, {Name: "z"}}
	row := []report.Value{report.Str("q\"\\\n\x01\u2028ok\xff"), report.Int(42), report.Bool(false),
		report.Time(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)), report.Structured("flat", map[string]int{"k": 1}), report.Null()}
	for _, lines := range []bool{false, true} {
		var buf bytes.Buffer
		w := report.NewJSONWriter(&buf, lines)
		w.Begin(cols)
		w.Row(row)
		w.Row(row)
		if err := w.End(); err != nil {
			t.Fatal(err)
		}
		var got []map[string]any
		if lines {
			for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				var m map[string]any
				if err := json.Unmarshal([]byte(l), &m); err != nil {
					t.Fatalf("line %q: %v", l, err)
				}
				got = append(got, m)
			}
		} else if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
			t.Fatalf("array %q: %v", buf.String(), err)
		}
		if len(got) != 2 {
			t.Fatalf("%d rows", len(got))
		}
		m := got[0]
		if m["s"] != "q\"\\\n\x01\u2028ok\ufffd" || m["n"] != 42.0 || m["b"] != false || m["t"] != "2026-01-02T03:04:05.000Z" ||
			m["x"].(map[string]any)["k"] != 1.0 || m["z"] != nil {
			t.Errorf("row = %#v", m)
		}
	}
	var buf bytes.Buffer
	w := report.NewJSONWriter(&buf, false)
	w.Begin(cols)
	w.End()
	if buf.String() != "[]\n" {
		t.Errorf("empty array = %q", buf.String())
	}
}

// TestJSONReport: a real report's JSON output parses, with typed values.
func TestJSONReport(t *testing.T) {
	st := openSQLite(t)
	tr := buildTrail(t, st)
	svc := newService(st, tr.clock)
	var buf bytes.Buffer
	if err := svc.Run(as(auditor), "requests", report.Params{From: tr.from}, report.NewJSONWriter(&buf, false)); err != nil {
		t.Fatal(err)
	}
	var rows []struct {
		Request   string `json:"request"`
		Decisions []struct {
			Step     int    `json:"step"`
			Approver string `json:"approver"`
			Approve  bool   `json:"approve"`
			Comment  string `json:"comment"`
		} `json:"decisions"`
		ApprovedBy    []string   `json:"approvedBy"`
		TimeToApprove *int64     `json:"timeToApproveSeconds"`
		Created       time.Time  `json:"created"`
		DecidedAt     *time.Time `json:"decidedAt"`
	}
	if err := json.Unmarshal(buf.Bytes(), &rows); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if len(rows) != 5 {
		t.Fatalf("%d rows", len(rows))
	}
	found := false
	for _, r := range rows {
		if r.Request != tr.aliceReq.ID {
			continue
		}
		found = true
		if len(r.Decisions) != 2 || r.Decisions[0].Approver != "bob" || !r.Decisions[0].Approve || r.Decisions[0].Comment != "ok for the deploy" ||
			r.Decisions[0].Step != 1 || strings.Join(r.ApprovedBy, ",") != "bob,carol" || r.TimeToApprove == nil ||
			*r.TimeToApprove != int64(tr.approveWait/time.Second) || r.DecidedAt == nil {
			t.Errorf("alice's request = %+v", r)
		}
	}
	if !found {
		t.Error("alice's request is missing")
	}
}

// TestCatalogDocumented: the package doc names every report and every
// column, so the documentation cannot drift from the code.
func TestCatalogDocumented(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	sections := strings.Split(string(doc), "// # ")
	find := func(name string) string {
		for _, s := range sections {
			if strings.HasPrefix(s, name+"\n") || strings.HasPrefix(s, name+" (") {
				return s
			}
		}
		return ""
	}
	shared := find("The audit columns")
	for _, info := range report.Catalog() {
		sec := find(info.Name)
		if sec == "" {
			t.Errorf("report %s has no section in doc.go", info.Name)
			continue
		}
		text := sec
		if strings.Contains(sec, "audit columns") {
			text += shared
		}
		for _, c := range info.Columns {
			if !strings.Contains(text, c.Name) {
				t.Errorf("doc.go does not name column %s of report %s", c.Name, info.Name)
			}
		}
		for _, p := range info.Params {
			if !strings.Contains(strings.SplitN(sec, "\n", 2)[0], p.Name) {
				t.Errorf("doc.go's heading of %s does not name parameter %s", info.Name, p.Name)
			}
		}
	}
}

// TestActionNames: the actions this package spells out match the use case
// packages' constants.
func TestActionNames(t *testing.T) {
	for got, want := range map[string]string{
		"request.create": access.ActionRequestCreate, "request.get": access.ActionRequestGet,
		"request.list": access.ActionRequestList, "request.approve": access.ActionRequestApprove,
		"request.deny": access.ActionRequestDeny, "request.cancel": access.ActionRequestCancel,
		"grant.list": access.ActionGrantList, "grant.revoke": access.ActionGrantRevoke,
		"ticket-system.put": ticketing.ActionSystemPut, "ticket-system.list": ticketing.ActionSystemList,
		"ticket-system.default": ticketing.ActionSystemDefault, "ticket-system.test": ticketing.ActionSystemTest,
		"ticket-system.credentials": ticketing.ActionCredentialReveal, "escrow-checkout": checkout.Workflow,
	} {
		if got != want {
			t.Errorf("report spells %q; the constant is %q", got, want)
		}
	}
}
