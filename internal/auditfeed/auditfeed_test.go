package auditfeed

import (
	"bytes"
	"context"
	"encoding/json"
	"iter"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/auditlog"
	"github.com/escrow-pam/escrow/internal/auditlog/dir"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/siem"
	"github.com/escrow-pam/escrow/internal/store/sqlite"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

type env struct {
	log    *sqlite.Store
	store  *dir.Store
	signer *auditlog.Signer
	clock  *clock
	d      *Digester
}

func newEnv(t *testing.T) *env {
	t.Helper()
	log, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "escrow.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	st, err := dir.Open(filepath.Join(t.TempDir(), "digests"))
	if err != nil {
		t.Fatal(err)
	}
	signer := auditlog.NewSigner([32]byte{7})
	c := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	return &env{log: log, store: st, signer: signer, clock: c,
		d: &Digester{Log: log, Store: st, Signer: signer, Period: time.Hour, Grace: time.Minute, Clock: c, Logger: slog.New(slog.DiscardHandler)}}
}

func (e *env) write(t *testing.T, at time.Time, action string) *escrow.AuditRecord {
	t.Helper()
	rec := &escrow.AuditRecord{ID: escrow.NewID(at), Time: at, Actor: escrow.Actor{Subject: "alice"}, Action: action,
		Target: "secret:s1", SecretID: "s1", Outcome: escrow.OutcomeSuccess}
	if err := e.log.Append(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

func (e *env) verify(t *testing.T) auditlog.Report {
	t.Helper()
	ds, err := e.store.Range(context.Background(), time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := e.d.records(context.Background(), Genesis, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	seq := iter.Seq2[*escrow.AuditRecord, error](func(yield func(*escrow.AuditRecord, error) bool) {
		for _, r := range recs {
			if !yield(r, nil) {
				return
			}
		}
	})
	rep, err := auditlog.Verify(context.Background(), seq, ds, e.signer.PublicKeys())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestSealDueSealsEndedPeriodsOnce: the first digest covers everything
// before the first sealing; then one per hour, empty hours included, only
// once an hour has ended and the grace passed; a second call (a
// redelivered batch) seals nothing; the whole log verifies clean.
func TestSealDueSealsEndedPeriodsOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	base := e.clock.Now()
	e.write(t, base.Add(-3*time.Hour), "secret.create")
	e.write(t, base.Add(10*time.Minute), "secret.reveal")
	e.write(t, base.Add(20*time.Minute), "secret.reveal")
	e.clock.Set(base.Add(30 * time.Minute))
	if n, err := e.d.SealDue(ctx); err != nil || n != 1 {
		t.Fatalf("first sealing: %d %v, want the genesis digest", n, err)
	}
	first, _ := e.store.Latest(ctx)
	if !first.From.Equal(Genesis) || !first.To.Equal(base) || first.Count != 1 {
		t.Fatalf("genesis digest %v..%v count %d", first.From, first.To, first.Count)
	}
	// 11:00 has passed, but not the grace.
	e.clock.Set(base.Add(time.Hour + 30*time.Second))
	if n, _ := e.d.SealDue(ctx); n != 0 {
		t.Fatalf("sealed %d within the grace", n)
	}
	e.write(t, base.Add(2*time.Hour+5*time.Minute), "secret.checkout")
	e.clock.Set(base.Add(3*time.Hour + 2*time.Minute))
	if n, err := e.d.SealDue(ctx); err != nil || n != 3 {
		t.Fatalf("after three hours: sealed %d %v, want 3 (one of them empty)", n, err)
	}
	if n, err := e.d.SealDue(ctx); err != nil || n != 0 {
		t.Fatalf("again: %d %v", n, err)
	}
	ds, _ := e.store.Range(ctx, time.Time{}, time.Time{})
	counts := []int{}
	for _, d := range ds {
		counts = append(counts, d.Count)
	}
	if len(counts) != 4 || counts[1] != 2 || counts[2] != 0 || counts[3] != 1 {
		t.Fatalf("digest counts %v, want [1 2 0 1]", counts)
	}
	if rep := e.verify(t); !rep.Clean() {
		t.Fatalf("verify: %+v", rep.Problems)
	}
}

// TestConcurrentDigestersSealOnce: two consumers (two stream shards, or a
// redelivery racing the schedule) never seal a period twice.
func TestConcurrentDigestersSealOnce(t *testing.T) {
	e := newEnv(t)
	base := e.clock.Now()
	for i := range 50 {
		e.write(t, base.Add(time.Duration(i)*time.Minute), "secret.reveal")
	}
	e.clock.Set(base.Add(5 * time.Hour))
	other := *e.d
	var wg sync.WaitGroup
	for _, d := range []*Digester{e.d, &other} {
		wg.Go(func() {
			if _, err := d.SealDue(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	ds, _ := e.store.Range(context.Background(), time.Time{}, time.Time{})
	total := 0
	for i, d := range ds {
		if d.Seq != int64(i) {
			t.Fatalf("digest %d has seq %d", i, d.Seq)
		}
		total += d.Count
	}
	if total != 50 {
		t.Fatalf("%d records sealed, want 50 exactly once", total)
	}
	if rep := e.verify(t); !rep.Clean() {
		t.Fatalf("verify: %+v", rep.Problems)
	}
}

// TestConsumerExports: a batch goes to the SIEM sink as JSON lines, and
// sealing runs with it.
func TestConsumerExports(t *testing.T) {
	e := newEnv(t)
	var out bytes.Buffer
	c := &Consumer{Sink: siem.JSONLines(&out), Digester: e.d}
	r := e.write(t, e.clock.Now().Add(-2*time.Hour), "secret.reveal")
	if err := c.Records(context.Background(), []*escrow.AuditRecord{r}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var ev struct{ ID, Type string }
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &ev) != nil || ev.ID != r.ID || ev.Type != "secret.reveal" {
		t.Fatalf("exported %q", out.String())
	}
	if _, err := e.store.Latest(context.Background()); err != nil {
		t.Fatalf("no digest after the batch: %v", err)
	}
}

// TestFollowFeedsNewRecords: the -dev stand-in for the stream hands each
// new record to the consumer once.
func TestFollowFeedsNewRecords(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var out bytes.Buffer
	sink := siem.JSONLines(&syncWriter{mu: &mu, w: &out})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	start := time.Now().Add(-time.Minute)
	go func() {
		defer close(done)
		Follow(ctx, e.log, &Consumer{Sink: sink}, start, 20*time.Millisecond, slog.New(slog.DiscardHandler))
	}()
	for range 5 {
		e.write(t, time.Now().UTC(), "secret.reveal")
		time.Sleep(30 * time.Millisecond)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := strings.Count(out.String(), "\n")
		mu.Unlock()
		if n == 5 {
			break
		}
		if n > 5 || time.Now().After(deadline) {
			t.Fatalf("%d events exported, want 5 exactly", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	cancel()
	<-done
	if n := strings.Count(out.String(), "\n"); n != 5 {
		t.Fatalf("%d events exported after more polls, want 5", n)
	}
}

type syncWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestIDTime(t *testing.T) {
	at := time.Date(2026, 12, 6, 10, 0, 0, 123e6, time.UTC)
	got, ok := idTime(escrow.NewID(at))
	if !ok || !got.Equal(at) {
		t.Fatalf("idTime = %v %v, want %v", got, ok, at)
	}
	if _, ok := idTime("short"); ok {
		t.Fatal("a short id has a time")
	}
}
