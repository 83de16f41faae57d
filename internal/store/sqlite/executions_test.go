package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/asl"
	"github.com/escrow-pam/escrow/internal/asl/asltest"
	"github.com/escrow-pam/escrow/internal/escrow"
)

func TestExecutionConformance(t *testing.T) {
	asltest.RunStoreSuite(t, func(t *testing.T) asl.Store {
		s, _ := open(t)
		return s.Executions()
	})
}

var execBase = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func execRecord(id string) *asl.Record {
	return &asl.Record{
		ID: id, Machine: "m", Name: id, Status: asl.Running,
		Input: json.RawMessage(`{"a":1}`), StartTime: execBase, NextID: 2,
		Frames:  []asl.Frame{{ID: 1, State: "S", Input: json.RawMessage(`{"a":1}`), Entered: execBase}},
		History: []asl.Event{{Type: "ExecutionStarted", Time: execBase}},
	}
}

// reopen opens the database at path again, closed at the end of the test.
func reopen(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestExecutionsSurviveReopen: records, timers and tokens are read back
// from the file by a new Store.
func TestExecutionsSurviveReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "escrow.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	st := s.Executions()
	rec := execRecord("e1")
	rec.Timers = []asl.Timer{{ExecutionID: "e1", Frame: 1, Kind: asl.TimerWait, Due: execBase.Add(time.Minute)}}
	rec.Tokens = []asl.Token{{Token: "tok", ExecutionID: "e1", Frame: 1, State: "S"}}
	if err := st.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := st.Update(ctx, rec); err != nil {
		t.Fatal(err)
	}
	done := execRecord("e2")
	done.Status = asl.Succeeded
	if err := st.Create(ctx, done); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	st = reopen(t, path).Executions()
	got, err := st.Get(ctx, "e1")
	if err != nil {
		t.Fatalf("Get after reopen: %v", err)
	}
	if got.Version != 1 || got.Status != asl.Running || got.Frames[0].State != "S" || len(got.Timers) != 1 || len(got.Tokens) != 1 {
		t.Fatalf("after reopen Get = %+v", got)
	}
	if ids, err := st.Running(ctx); err != nil || len(ids) != 1 || ids[0] != "e1" {
		t.Fatalf("after reopen Running = %v, %v", ids, err)
	}
	due, err := st.DueTimers(ctx, execBase.Add(time.Hour), 10)
	if err != nil || len(due) != 1 || due[0] != rec.Timers[0] {
		t.Fatalf("after reopen DueTimers = %+v, %v", due, err)
	}
	if tok, err := st.LookupToken(ctx, "tok"); err != nil || tok != rec.Tokens[0] {
		t.Fatalf("after reopen LookupToken = %+v, %v", tok, err)
	}
	// The version survived too: a stale writer still loses.
	stale := execRecord("e1")
	if err := st.Update(ctx, stale); !errors.Is(err, escrow.ErrConflict) {
		t.Fatalf("Update at version 0 after reopen: %v, want ErrConflict", err)
	}
}

// TestExecutionWritesAreAtomic: when one index row cannot be written (a
// token another execution holds), neither the record nor any of its other
// index rows change.
func TestExecutionWritesAreAtomic(t *testing.T) {
	ctx := t.Context()
	s, _ := open(t)
	st := s.Executions()
	a := execRecord("a")
	a.Tokens = []asl.Token{{Token: "taken", ExecutionID: "a", Frame: 1, State: "S"}}
	if err := st.Create(ctx, a); err != nil {
		t.Fatal(err)
	}

	b := execRecord("b")
	b.Timers = []asl.Timer{{ExecutionID: "b", Frame: 1, Kind: asl.TimerWait, Due: execBase}}
	b.Tokens = []asl.Token{
		{Token: "free", ExecutionID: "b", Frame: 1, State: "S"},
		{Token: "taken", ExecutionID: "b", Frame: 1, State: "S"},
	}
	if err := st.Create(ctx, b); !errors.Is(err, escrow.ErrConflict) {
		t.Fatalf("Create with a taken token: %v, want ErrConflict", err)
	}
	if _, err := st.Get(ctx, "b"); !errors.Is(err, escrow.ErrNotFound) {
		t.Fatalf("record of the failed Create: %v, want ErrNotFound", err)
	}
	if _, err := st.LookupToken(ctx, "free"); !errors.Is(err, escrow.ErrNotFound) {
		t.Fatalf("token of the failed Create: %v, want ErrNotFound", err)
	}
	if due, _ := st.DueTimers(ctx, execBase, 10); len(due) != 0 {
		t.Fatalf("timer of the failed Create: %+v", due)
	}

	c := execRecord("c")
	c.Tokens = []asl.Token{{Token: "c1", ExecutionID: "c", Frame: 1, State: "S"}}
	if err := st.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	c.Status = asl.Failed
	c.Timers = []asl.Timer{{ExecutionID: "c", Frame: 1, Kind: asl.TimerWait, Due: execBase}}
	c.Tokens = []asl.Token{{Token: "taken", ExecutionID: "c", Frame: 1, State: "S"}}
	if err := st.Update(ctx, c); !errors.Is(err, escrow.ErrConflict) {
		t.Fatalf("Update with a taken token: %v, want ErrConflict", err)
	}
	if c.Version != 0 {
		t.Fatalf("failed Update changed rec.Version to %d", c.Version)
	}
	got, _ := st.Get(ctx, "c")
	if got.Status != asl.Running || got.Version != 0 {
		t.Fatalf("record after the failed Update: %+v", got)
	}
	if tok, err := st.LookupToken(ctx, "c1"); err != nil || tok.ExecutionID != "c" {
		t.Fatalf("old token after the failed Update: %+v, %v", tok, err)
	}
	if tok, err := st.LookupToken(ctx, "taken"); err != nil || tok.ExecutionID != "a" {
		t.Fatalf("the taken token moved: %+v, %v", tok, err)
	}
	if due, _ := st.DueTimers(ctx, execBase, 10); len(due) != 0 {
		t.Fatalf("timer of the failed Update: %+v", due)
	}
}

// TestExecutionUpdateRace: of writers racing from the same version,
// exactly one wins.
func TestExecutionUpdateRace(t *testing.T) {
	ctx := t.Context()
	s, _ := open(t)
	st := s.Executions()
	if err := st.Create(ctx, execRecord("e")); err != nil {
		t.Fatal(err)
	}
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := execRecord("e")
			rec.NextID = 100 + i
			errs[i] = st.Update(ctx, rec)
		}()
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Fatalf("writers %d and %d both won", won, i)
		case err == nil:
			won = i
		case !errors.Is(err, escrow.ErrConflict):
			t.Fatalf("writer %d: %v, want ErrConflict", i, err)
		}
	}
	if won < 0 {
		t.Fatal("no writer won")
	}
	got, _ := st.Get(ctx, "e")
	if got.Version != 1 || got.NextID != 100+won {
		t.Fatalf("stored %+v, want writer %d's record at version 1", got, won)
	}
}

// TestExecutionTimerFarOutsideInt64: due times outside the years Unix
// nanoseconds hold come back exactly, so the runner recognizes its timer.
func TestExecutionTimerFarOutsideInt64(t *testing.T) {
	ctx := t.Context()
	s, _ := open(t)
	st := s.Executions()
	early := time.Date(1600, 1, 1, 0, 0, 0, 123, time.UTC)
	late := time.Date(9000, 1, 1, 0, 0, 0, 0, time.UTC)
	rec := execRecord("e")
	rec.Timers = []asl.Timer{
		{ExecutionID: "e", Frame: 1, Kind: asl.TimerWait, Due: late},
		{ExecutionID: "e", Frame: 2, Kind: asl.TimerWait, Due: early},
	}
	if err := st.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	due, err := st.DueTimers(ctx, execBase, 10)
	if err != nil || len(due) != 1 || !due[0].Due.Equal(early) {
		t.Fatalf("DueTimers now = %+v, %v; want only the 1600 one, exactly", due, err)
	}
	due, _ = st.DueTimers(ctx, time.Date(8000, 1, 1, 0, 0, 0, 0, time.UTC), 10)
	if len(due) != 1 {
		t.Fatalf("DueTimers in 8000 = %+v; the 9000 timer is not due", due)
	}
	due, _ = st.DueTimers(ctx, late, 0)
	if len(due) != 2 || !due[1].Due.Equal(late) {
		t.Fatalf("DueTimers in 9000, no limit = %+v", due)
	}
}

// TestExecutionQueriesUseIndexes checks the plans of the runner's reads
// and of the writes' index maintenance: no table scan, no sort.
func TestExecutionQueriesUseIndexes(t *testing.T) {
	_, path := open(t)
	db := rawDB(t, path)
	queries := []struct {
		sql   string
		args  []any
		index string // the index the plan must name
	}{
		{getExecSQL, []any{"x"}, "sqlite_autoindex_executions_1"},
		{runningExecSQL, nil, "executions_running"},
		{dueTimersSQL, []any{int64(5), 100}, "execution_timers_due"},
		{lookupTokenSQL, []any{"tok"}, "PRIMARY KEY"},
		{"UPDATE executions SET status = 'SUCCEEDED' WHERE id = 'x' AND version = 1", nil, "sqlite_autoindex_executions_1"},
		{"DELETE FROM execution_timers WHERE execution_id = 'x'", nil, "execution_timers_exec"},
		{"DELETE FROM execution_tokens WHERE execution_id = 'x'", nil, "execution_tokens_exec"},
	}
	for _, q := range queries {
		rows, err := db.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+q.sql, q.args...)
		if err != nil {
			t.Fatalf("explain %s: %v", q.sql, err)
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
		if !strings.Contains(strings.Join(plan, "\n"), q.index) {
			t.Errorf("%s\n  plan %q does not use %s", q.sql, plan, q.index)
		}
		for _, d := range plan {
			if strings.HasPrefix(d, "SCAN ") && !strings.Contains(d, " USING ") || strings.Contains(d, "TEMP B-TREE") {
				t.Errorf("%s\n  plan: %q", q.sql, plan)
			}
		}
	}
}

// --- the runner across a restart ---

const (
	waitDef = `{"StartAt":"Hold","States":{
		"Hold":{"Type":"Wait","Seconds":60,"Next":"Done"},
		"Done":{"Type":"Pass","Result":{"waited":true},"ResultPath":"$.r","End":true}}}`
	askDef = `{"StartAt":"Ask","States":{
		"Ask":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke.waitForTaskToken",
			"Parameters":{"FunctionName":"ask","Payload":{"Token.$":"$$.Task.Token"}},
			"TimeoutSeconds":3600,"ResultPath":"$.answer","End":true}}}`
)

// tokenSink is the "ask" handler: it keeps the task tokens it is given, as
// a mailer would put them behind an approval link.
type tokenSink struct {
	mu  sync.Mutex
	got []string
}

func (k *tokenSink) handle(ctx context.Context, in json.RawMessage) (json.RawMessage, error) {
	var p struct{ Token string }
	if err := json.Unmarshal(in, &p); err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.got = append(k.got, p.Token)
	k.mu.Unlock()
	return nil, nil
}

func newRunner(t *testing.T, st asl.Store, clock escrow.Clock, sink *tokenSink) *asl.Runner {
	t.Helper()
	machines := map[string]*asl.Machine{}
	for name, def := range map[string]string{"wait": waitDef, "ask": askDef} {
		m, err := asl.Parse([]byte(def), nil)
		if err != nil {
			t.Fatalf("parse %s: %v", name, err)
		}
		machines[name] = m
	}
	r, err := asl.New(asl.Config{Store: st, Clock: clock, Resources: map[string]asl.Handler{"ask": sink.handle}}, machines)
	if err != nil {
		t.Fatalf("new runner: %v", err)
	}
	return r
}

func settle(t *testing.T, r *asl.Runner) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := r.Settle(ctx); err != nil {
		t.Fatalf("settle: %v", err)
	}
}

func sameJSON(t *testing.T, got json.RawMessage, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("output %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(g, w)
}

func describe(t *testing.T, r *asl.Runner, id string) *asl.Execution {
	t.Helper()
	d, err := r.Describe(t.Context(), id)
	if err != nil {
		t.Fatalf("describe %s: %v", id, err)
	}
	return d
}

// TestRunnerResumesAfterReopen is `escrow server -dev` restarting: two
// executions wait (on a 60 s Wait, on a task token) when the store is
// closed; a new runner on the reopened file fires the overdue Wait and
// accepts the token the old process handed out.
func TestRunnerResumesAfterReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "escrow.db")
	clock := asltest.NewClock(execBase)
	sink := &tokenSink{}

	s1, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	r1 := newRunner(t, s1.Executions(), clock, sink)
	waitID, err := r1.Start(ctx, "wait", "hold", json.RawMessage(`{"n":1}`))
	if err != nil {
		t.Fatalf("start wait: %v", err)
	}
	askID, err := r1.Start(ctx, "ask", "ask", json.RawMessage(`{"n":2}`))
	if err != nil {
		t.Fatalf("start ask: %v", err)
	}
	settle(t, r1)
	clock.Add(30 * time.Second)
	if err := r1.Tick(ctx); err != nil { // the Wait is not due yet
		t.Fatal(err)
	}
	settle(t, r1)
	for _, id := range []string{waitID, askID} {
		if d := describe(t, r1, id); d.Status != asl.Running {
			t.Fatalf("%s before restart: %s, want RUNNING", id, d.Status)
		}
	}
	sink.mu.Lock()
	if len(sink.got) != 1 || sink.got[0] == "" {
		sink.mu.Unlock()
		t.Fatalf("task tokens handed out: %d, want 1", len(sink.got))
	}
	token := sink.got[0]
	sink.mu.Unlock()
	if err := s1.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	r2 := newRunner(t, reopen(t, path).Executions(), clock, &tokenSink{})
	clock.Add(31 * time.Second) // 61 s after the start: the Wait is overdue
	if err := r2.Resume(ctx); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if err := r2.Tick(ctx); err != nil {
		t.Fatalf("tick: %v", err)
	}
	settle(t, r2)
	d := describe(t, r2, waitID)
	if d.Status != asl.Succeeded {
		t.Fatalf("wait execution after restart: %s, want SUCCEEDED", d.Status)
	}
	if !sameJSON(t, d.Output, `{"n":1,"r":{"waited":true}}`) {
		t.Fatalf("wait output %s", d.Output)
	}
	if d := describe(t, r2, askID); d.Status != asl.Running {
		t.Fatalf("ask execution before its answer: %s, want RUNNING", d.Status)
	}

	if err := r2.SendTaskSuccess(ctx, token, json.RawMessage(`{"ok":true}`)); err != nil {
		t.Fatalf("token after restart: %v", err)
	}
	settle(t, r2)
	d = describe(t, r2, askID)
	if d.Status != asl.Succeeded {
		t.Fatalf("ask execution after its answer: %s, want SUCCEEDED", d.Status)
	}
	if !sameJSON(t, d.Output, `{"n":2,"answer":{"ok":true}}`) {
		t.Fatalf("ask output %s", d.Output)
	}
	// The answered token is no longer awaited.
	if err := r2.SendTaskSuccess(ctx, token, json.RawMessage(`{}`)); !errors.Is(err, escrow.ErrNotFound) {
		t.Fatalf("token answered twice: %v, want ErrNotFound", err)
	}
}
