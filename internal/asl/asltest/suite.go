// Package asltest holds test kits for package asl: the conformance suite
// every asl.Store implementation must pass, and the harness that runs one
// state machine in both the embedded runner and moto's Step Functions and
// compares them. It is for tests only and must never be imported by
// production code.
package asltest

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/asl"
	"github.com/escrow-pam/escrow/internal/escrow"
)

// RunStoreSuite runs the conformance suite against stores built by
// newStore; each subtest gets a fresh, empty store.
func RunStoreSuite(t *testing.T, newStore func(t *testing.T) asl.Store) {
	ctx := context.Background()
	base := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	record := func(id string) *asl.Record {
		return &asl.Record{
			ID: id, Machine: "m", Name: id, Status: asl.Running,
			Input: json.RawMessage(`{"a":1}`), StartTime: base, NextID: 2,
			Frames:  []asl.Frame{{ID: 1, State: "S", Input: json.RawMessage(`{"a":1}`), Entered: base}},
			History: []asl.Event{{Type: "ExecutionStarted", Time: base}},
		}
	}

	t.Run("CreateGet", func(t *testing.T) {
		s := newStore(t)
		rec := record("e1")
		if err := s.Create(ctx, rec); err != nil {
			t.Fatalf("Create: %v", err)
		}
		got, err := s.Get(ctx, "e1")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if got.ID != "e1" || got.Status != asl.Running || string(got.Input) != `{"a":1}` ||
			!got.StartTime.Equal(base) || len(got.Frames) != 1 || got.Frames[0].State != "S" ||
			len(got.History) != 1 || got.NextID != 2 {
			t.Fatalf("Get returned %+v", got)
		}
		if err := s.Create(ctx, record("e1")); !errors.Is(err, escrow.ErrConflict) {
			t.Fatalf("second Create: got %v, want ErrConflict", err)
		}
		if _, err := s.Get(ctx, "nope"); !errors.Is(err, escrow.ErrNotFound) {
			t.Fatalf("Get missing: got %v, want ErrNotFound", err)
		}
	})

	t.Run("GetReturnsCopies", func(t *testing.T) {
		s := newStore(t)
		if err := s.Create(ctx, record("e1")); err != nil {
			t.Fatal(err)
		}
		got, _ := s.Get(ctx, "e1")
		got.Frames[0].State = "changed"
		got.Status = asl.Failed
		again, _ := s.Get(ctx, "e1")
		if again.Frames[0].State != "S" || again.Status != asl.Running {
			t.Fatalf("modifying a returned record changed the store: %+v", again)
		}
	})

	t.Run("UpdateVersion", func(t *testing.T) {
		s := newStore(t)
		rec := record("e1")
		if err := s.Create(ctx, rec); err != nil {
			t.Fatal(err)
		}
		a, _ := s.Get(ctx, "e1")
		b, _ := s.Get(ctx, "e1")
		a.Frames[0].State = "T"
		if err := s.Update(ctx, a); err != nil {
			t.Fatalf("Update: %v", err)
		}
		if a.Version != rec.Version+1 {
			t.Fatalf("Version after Update = %d, want %d", a.Version, rec.Version+1)
		}
		b.Frames[0].State = "U"
		if err := s.Update(ctx, b); !errors.Is(err, escrow.ErrConflict) {
			t.Fatalf("stale Update: got %v, want ErrConflict", err)
		}
		got, _ := s.Get(ctx, "e1")
		if got.Frames[0].State != "T" || got.Version != a.Version {
			t.Fatalf("after stale Update: %+v", got)
		}
		if err := s.Update(ctx, a); err != nil {
			t.Fatalf("second Update with the new version: %v", err)
		}
		if err := s.Update(ctx, record("missing")); !errors.Is(err, escrow.ErrNotFound) {
			t.Fatalf("Update missing: got %v, want ErrNotFound", err)
		}
	})

	t.Run("Running", func(t *testing.T) {
		s := newStore(t)
		for _, id := range []string{"e1", "e2", "e3"} {
			if err := s.Create(ctx, record(id)); err != nil {
				t.Fatal(err)
			}
		}
		r, _ := s.Get(ctx, "e2")
		r.Status, r.Frames = asl.Succeeded, nil
		if err := s.Update(ctx, r); err != nil {
			t.Fatal(err)
		}
		ids, err := s.Running(ctx)
		if err != nil {
			t.Fatalf("Running: %v", err)
		}
		if len(ids) != 2 || !contains(ids, "e1") || !contains(ids, "e3") {
			t.Fatalf("Running = %v, want e1 and e3", ids)
		}
	})

	t.Run("Timers", func(t *testing.T) {
		s := newStore(t)
		rec := record("e1")
		rec.Timers = []asl.Timer{
			{ExecutionID: "e1", Frame: 1, Kind: asl.TimerWait, Due: base.Add(2 * time.Minute)},
			{ExecutionID: "e1", Frame: 2, Kind: asl.TimerTimeout, Due: base.Add(time.Minute)},
			{ExecutionID: "e1", Frame: 3, Kind: asl.TimerRetry, Due: base.Add(time.Hour)},
		}
		if err := s.Create(ctx, rec); err != nil {
			t.Fatal(err)
		}
		other := record("e2")
		other.Timers = []asl.Timer{{ExecutionID: "e2", Frame: 1, Kind: asl.TimerHeartbeat, Due: base.Add(90 * time.Second)}}
		if err := s.Create(ctx, other); err != nil {
			t.Fatal(err)
		}
		due, err := s.DueTimers(ctx, base.Add(2*time.Minute), 10)
		if err != nil {
			t.Fatalf("DueTimers: %v", err)
		}
		if len(due) != 3 || due[0].Frame != 2 || due[1].ExecutionID != "e2" || due[2].Kind != asl.TimerWait ||
			!due[0].Due.Equal(base.Add(time.Minute)) {
			t.Fatalf("DueTimers = %+v, want the three due by +2m, earliest first (due time inclusive)", due)
		}
		if due, _ := s.DueTimers(ctx, base.Add(2*time.Minute), 1); len(due) != 1 || due[0].Frame != 2 {
			t.Fatalf("DueTimers limit 1 = %+v", due)
		}
		if due, _ := s.DueTimers(ctx, base, 10); len(due) != 0 {
			t.Fatalf("DueTimers before any is due = %+v", due)
		}
		got, _ := s.Get(ctx, "e1")
		got.Timers = got.Timers[:0]
		if err := s.Update(ctx, got); err != nil {
			t.Fatal(err)
		}
		due, _ = s.DueTimers(ctx, base.Add(2*time.Hour), 10)
		if len(due) != 1 || due[0].ExecutionID != "e2" {
			t.Fatalf("after clearing e1's timers, DueTimers = %+v", due)
		}
	})

	t.Run("Tokens", func(t *testing.T) {
		s := newStore(t)
		rec := record("e1")
		rec.Tokens = []asl.Token{{Token: "tok-a", ExecutionID: "e1", Frame: 1, State: "S"}}
		if err := s.Create(ctx, rec); err != nil {
			t.Fatal(err)
		}
		tok, err := s.LookupToken(ctx, "tok-a")
		if err != nil {
			t.Fatalf("LookupToken: %v", err)
		}
		if tok.ExecutionID != "e1" || tok.Frame != 1 || tok.State != "S" {
			t.Fatalf("LookupToken = %+v", tok)
		}
		if _, err := s.LookupToken(ctx, "tok-b"); !errors.Is(err, escrow.ErrNotFound) {
			t.Fatalf("LookupToken unknown: got %v, want ErrNotFound", err)
		}
		got, _ := s.Get(ctx, "e1")
		got.Tokens = []asl.Token{{Token: "tok-b", ExecutionID: "e1", Frame: 1, State: "S"}}
		if err := s.Update(ctx, got); err != nil {
			t.Fatal(err)
		}
		if _, err := s.LookupToken(ctx, "tok-a"); !errors.Is(err, escrow.ErrNotFound) {
			t.Fatalf("replaced token still found: %v", err)
		}
		if _, err := s.LookupToken(ctx, "tok-b"); err != nil {
			t.Fatalf("new token: %v", err)
		}
		// A failed (stale) update must not touch the index.
		stale := *got
		stale.Version--
		stale.Tokens = nil
		if err := s.Update(ctx, &stale); !errors.Is(err, escrow.ErrConflict) {
			t.Fatalf("stale Update: %v", err)
		}
		if _, err := s.LookupToken(ctx, "tok-b"); err != nil {
			t.Fatalf("stale update removed a token: %v", err)
		}
	})
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
