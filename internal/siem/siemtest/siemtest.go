// Package siemtest is the conformance suite of the siem.Sink port. Every
// sink that carries JSON events (siem.JSONLines, siem.OpenFile with
// siem.JSON, siem/eventbridge) runs it, so that a SIEM reads the same
// events whichever way they reach it.
//
// It must never be imported by non-test code.
package siemtest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/siem"
)

// Run checks s against the siem.Sink contract.
//
// published returns every event the destination holds so far, in any
// order, decoded from the JSON it received. Run gives its records ids
// unique to the run, so it finds its own events among others and can run
// more than once against one destination.
func Run(t *testing.T, s siem.Sink, published func(t *testing.T) []siem.Event) {
	run := escrow.NewID(time.Now())
	seq := 0
	newRecord := func(mod func(r *escrow.AuditRecord)) *escrow.AuditRecord {
		seq++
		r := &escrow.AuditRecord{
			ID:      fmt.Sprintf("%s-%03d", run, seq),
			Time:    time.Date(2026, 11, 22, 10, 0, seq, 1000*seq, time.UTC),
			Actor:   escrow.Actor{Subject: "alice"},
			Action:  escrow.ActionSecretGet,
			Target:  "secret:S1",
			Outcome: escrow.OutcomeSuccess,
		}
		if mod != nil {
			mod(r)
		}
		return r
	}
	// mine returns the published events of this run by id, failing on a
	// duplicate (a sink may deliver twice in production, but not here).
	mine := func(t *testing.T) map[string]siem.Event {
		t.Helper()
		out := map[string]siem.Event{}
		for _, ev := range published(t) {
			if !strings.HasPrefix(ev.ID, run) {
				continue
			}
			if _, dup := out[ev.ID]; dup {
				t.Fatalf("event %s published twice", ev.ID)
			}
			out[ev.ID] = ev
		}
		return out
	}
	// check fails unless exactly want (by id, field for field) of this run
	// have been published.
	check := func(t *testing.T, want []*escrow.AuditRecord) {
		t.Helper()
		got := mine(t)
		if len(got) != len(want) {
			t.Fatalf("%d events published, want %d", len(got), len(want))
		}
		for _, r := range want {
			ev, ok := got[r.ID]
			if !ok {
				t.Fatalf("event %s not published", r.ID)
			}
			wantEv := siem.NewEvent(r)
			if !reflect.DeepEqual(ev, wantEv) {
				t.Fatalf("event %s:\n got %+v\nwant %+v", r.ID, ev, wantEv)
			}
			if !reflect.DeepEqual(ev.Record, r) {
				t.Fatalf("record %s:\n got %+v\nwant %+v", r.ID, ev.Record, r)
			}
		}
	}
	ctx := context.Background()
	var all []*escrow.AuditRecord

	t.Run("Publish", func(t *testing.T) {
		recs := []*escrow.AuditRecord{
			newRecord(nil),
			newRecord(func(r *escrow.AuditRecord) {
				r.Action, r.SecretID, r.Target = escrow.ActionSecretReveal, "S2", "secret:S2"
				r.Actor = escrow.Actor{Subject: "jörg", Email: "jörg@example.com", Groups: []string{"dba", "運用"}, Roles: []string{"user"}}
				r.Outcome, r.ErrorCode, r.Reason = escrow.OutcomeDenied, escrow.CodeForbidden, "forbidden"
				r.RequestID, r.SourceIP, r.UserAgent = "req-1", "2001:db8::7", `curl/8 "quoted" <b>`
				r.Comment, r.Ticket = "line 1\nline 2 | a=b \\ c\t✓", "INC-42"
				r.Details = map[string]string{"field": "password", "version": "3"}
			}),
			newRecord(func(r *escrow.AuditRecord) {
				r.Action, r.Outcome, r.ErrorCode, r.Reason = escrow.ActionRotationFailed, escrow.OutcomeFailed, escrow.CodeUnavailable, "target unreachable"
			}),
		}
		if err := s.Publish(ctx, recs); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		all = append(all, recs...)
		check(t, all)
	})

	t.Run("Empty", func(t *testing.T) {
		if err := s.Publish(ctx, nil); err != nil {
			t.Fatalf("Publish(nil): %v", err)
		}
		check(t, all)
	})

	t.Run("NilRecordSkipped", func(t *testing.T) {
		a, b := newRecord(nil), newRecord(nil)
		err := s.Publish(ctx, []*escrow.AuditRecord{a, nil, b})
		if !errors.Is(err, escrow.ErrInvalid) {
			t.Fatalf("Publish with a nil record = %v, want ErrInvalid", err)
		}
		all = append(all, a, b)
		check(t, all)
	})

	t.Run("Cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		err := s.Publish(cctx, []*escrow.AuditRecord{newRecord(nil)})
		if !errors.Is(err, escrow.ErrUnavailable) {
			t.Fatalf("Publish with a cancelled context = %v, want ErrUnavailable", err)
		}
		check(t, all)
	})

	t.Run("Many", func(t *testing.T) {
		var recs []*escrow.AuditRecord
		for range 23 {
			recs = append(recs, newRecord(nil))
		}
		if err := s.Publish(ctx, recs); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		all = append(all, recs...)
		check(t, all)
	})
}
