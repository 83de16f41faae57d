package report_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/report"
	"github.com/escrow-pam/escrow/internal/store/sqlite"
)

// The benchmark's month of audit trail. It is generated once into
// $TMPDIR/escrow-report-bench-v1 (never into the repository) and reused;
// bump the version to regenerate after changing its shape. Records spread
// evenly over October 2026; 70% carry one of the tickets.
const (
	benchRecords = 1_000_000
	benchSecrets = 10_000
	benchUsers   = 2_000
	benchTickets = 20_000
	benchDir     = "escrow-report-bench-v1"
	benchDone    = "complete" // written last: a directory without it is regenerated
)

var (
	benchFrom = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	benchTo   = benchFrom.AddDate(0, 1, 0)

	benchOnce  sync.Once
	benchStore *sqlite.Store
	benchErr   error
)

// openBench opens the cached month, generating it on first use.
func openBench(b *testing.B) *sqlite.Store {
	b.Helper()
	benchOnce.Do(func() {
		dir := filepath.Join(os.TempDir(), benchDir)
		if note, err := os.ReadFile(filepath.Join(dir, benchDone)); err == nil {
			fmt.Printf("report bench: using %s (%s)\n", dir, note)
		} else if benchErr = generate(dir); benchErr != nil {
			return
		}
		benchStore, benchErr = sqlite.Open(context.Background(), filepath.Join(dir, "escrow.db"))
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchStore
}

// generate writes the month into a fresh directory, then moves it into
// place. The store creates the schema; the rows go in through a bulk path
// of this file (large transactions, no fsync per commit), encoded as the
// store's Append encodes them, which is checked afterwards by reading the
// month back through the store's own queries.
func generate(dir string) error {
	start := time.Now()
	tmp, err := os.MkdirTemp(os.TempDir(), benchDir+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	path := filepath.Join(tmp, "escrow.db")
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		return err
	}
	if err := st.Close(); err != nil {
		return err
	}
	perTicket, err := bulkInsert(path)
	if err != nil {
		return fmt.Errorf("bulk insert: %w", err)
	}
	fmt.Printf("report bench: %d records inserted in %s\n", benchRecords, time.Since(start).Round(time.Second))
	if err := verify(path, perTicket); err != nil {
		return err
	}
	took := time.Since(start).Round(time.Millisecond)
	what := fmt.Sprintf("%d audit records, %d secrets, %d users, %d tickets", benchRecords, benchSecrets, benchUsers, benchTickets)
	if err := os.WriteFile(filepath.Join(tmp, benchDone), []byte(what+", generated in "+took.String()), 0o600); err != nil {
		return err
	}
	os.RemoveAll(dir) // a partial earlier attempt
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	fmt.Printf("report bench: generated %s into %s in %s\n", what, dir, took)
	return nil
}

// benchTicket is the ticket BenchmarkReport/ticket reads.
const benchTicket = "CHG0012345"

// bulkInsert writes the month's records in transactions of 50,000 rows,
// into the audit table's columns as the store's Append fills them. It
// returns how many records carry benchTicket.
func bulkInsert(path string) (int, error) {
	// The database is private until generate moves it into place, so it
	// needs no fsync; a large page cache keeps the five indexes' pages in
	// memory.
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=synchronous(OFF)&_pragma=cache_size(-524288)")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	step := benchTo.Sub(benchFrom) / benchRecords
	n, tx := 0, (*sql.Tx)(nil)
	var ins *sql.Stmt
	for i := range benchRecords {
		if i%50_000 == 0 {
			if tx != nil {
				if err := tx.Commit(); err != nil {
					return 0, err
				}
			}
			if tx, err = db.BeginTx(ctx, nil); err != nil {
				return 0, err
			}
			if ins, err = tx.PrepareContext(ctx, "INSERT INTO audit (id, actor, action, secret_id, ticket, record) VALUES (?, ?, ?, ?, ?, ?)"); err != nil {
				return 0, err
			}
		}
		rec := benchRecord(rng, benchFrom.Add(time.Duration(i)*step+time.Duration(rng.Int64N(int64(step)))))
		b, err := json.Marshal(rec)
		if err != nil {
			return 0, err
		}
		var ticket any // NULL without one: the ticket index is partial
		if rec.Ticket != "" {
			ticket = rec.Ticket
		}
		if rec.Ticket == benchTicket {
			n++
		}
		if _, err := ins.ExecContext(ctx, rec.ID, rec.Actor.Subject, rec.Action, rec.SecretID, ticket, b); err != nil {
			return 0, err
		}
	}
	return n, tx.Commit()
}

// verify reads the benchmark's ticket back through the store: it holds
// what was written under it. (BenchmarkReportCSVMonth checks that the
// month holds every record.)
func verify(path string, perTicket int) error {
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		return err
	}
	defer st.Close()
	page, err := st.QueryAudit(context.Background(), escrow.AuditQuery{Ticket: benchTicket, From: benchFrom, To: benchTo, Limit: 1000})
	if err != nil {
		return err
	}
	if len(page.Records) != perTicket {
		return fmt.Errorf("the store reads %d records under %s, %d were written", len(page.Records), benchTicket, perTicket)
	}
	return nil
}

var benchActions = []struct {
	action string
	weight int
}{
	{escrow.ActionSecretReveal, 50}, {escrow.ActionSecretGet, 15}, {escrow.ActionSecretList, 8},
	{escrow.ActionCheckout, 5}, {escrow.ActionCheckin, 5}, {"request.create", 5}, {"request.approve", 5},
	{escrow.ActionSecretUpdate, 5}, {escrow.ActionRotationPromote, 2},
}

// benchRecord is one plausible record at t.
func benchRecord(rng *rand.Rand, t time.Time) *escrow.AuditRecord {
	u, s := rng.IntN(benchUsers), rng.IntN(benchSecrets)
	w := rng.IntN(100)
	action := benchActions[0].action
	for _, a := range benchActions {
		if w < a.weight {
			action = a.action
			break
		}
		w -= a.weight
	}
	sub := fmt.Sprintf("user%04d", u)
	rec := &escrow.AuditRecord{
		ID: escrow.NewID(t), Time: t, Action: action, Outcome: escrow.OutcomeSuccess,
		Actor:    escrow.Actor{Subject: sub, Email: sub + "@example.com", Groups: []string{fmt.Sprintf("team%02d", u%50)}},
		SecretID: fmt.Sprintf("sec-%05d", s), Target: fmt.Sprintf("secret:sec-%05d", s),
		RequestID: escrow.NewID(t), SourceIP: fmt.Sprintf("10.%d.%d.%d", u%250, s%250, rng.IntN(250)), UserAgent: "escrow-cli",
		Details: map[string]string{"path": fmt.Sprintf("/team%02d/app%05d", s%50, s), "version": fmt.Sprint(1 + rng.IntN(9))},
	}
	if rng.IntN(10) < 7 {
		rec.Ticket = fmt.Sprintf("CHG%07d", rng.IntN(benchTickets))
	}
	if rng.IntN(10) < 3 {
		rec.Comment = fmt.Sprintf("deploy %d", rng.IntN(1000))
	}
	switch o := rng.IntN(100); {
	case o < 2:
		rec.Fail(escrow.Errorf(escrow.CodeForbidden, "you need view permission"))
	case o < 3:
		rec.Fail(escrow.Errorf(escrow.CodeConflict, "checked out by someone else"))
	}
	return rec
}

// readOnlyLog keeps the benchmark's runs out of the cached month: their
// report.run records are counted, not written.
type readOnlyLog struct {
	escrow.AuditLog
	mu   sync.Mutex
	runs int
}

func (l *readOnlyLog) Append(context.Context, *escrow.AuditRecord) error {
	l.mu.Lock()
	l.runs++
	l.mu.Unlock()
	return nil
}

// BenchmarkReport runs the indexed reports over the whole month: one
// ticket (~35 records), one user (~500) and one secret (~100). The aim is
// at most 100 ms each.
func BenchmarkReport(b *testing.B) {
	st := openBench(b)
	svc := report.New(report.Config{Store: st, Requests: st, Audit: &readOnlyLog{AuditLog: st}})
	ctx := as(auditor)
	for _, bc := range []struct {
		name, report string
		params       report.Params
	}{
		{"ticket", "ticket", report.Params{Ticket: benchTicket, From: benchFrom, To: benchTo}},
		{"user", "access-by-user", report.Params{User: "user0042", From: benchFrom, To: benchTo}},
		{"secret", "access-to-secret", report.Params{Secret: "sec-04242", From: benchFrom, To: benchTo}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var rows int64
			for b.Loop() {
				w := report.NewCSVWriter(io.Discard)
				if err := svc.Run(ctx, bc.report, bc.params, w); err != nil {
					b.Fatal(err)
				}
				rows = w.Rows()
			}
			if rows == 0 {
				b.Fatal("no rows")
			}
			b.ReportMetric(float64(rows), "rows/op")
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
		})
	}
}

// BenchmarkReportCSVMonth streams the whole month (the activity report)
// as CSV. The aim is at least 100,000 rows/s.
func BenchmarkReportCSVMonth(b *testing.B) {
	st := openBench(b)
	svc := report.New(report.Config{Store: st, Requests: st, Audit: &readOnlyLog{AuditLog: st}})
	ctx := as(auditor)
	var rows int64
	for b.Loop() {
		w := report.NewCSVWriter(io.Discard)
		if err := svc.Run(ctx, "activity", report.Params{From: benchFrom, To: benchTo}, w); err != nil {
			b.Fatal(err)
		}
		if w.Rows() != benchRecords {
			b.Fatalf("%d rows, want %d", w.Rows(), benchRecords)
		}
		rows += w.Rows()
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
}
