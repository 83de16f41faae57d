package escrow

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTicketRuleCheck(t *testing.T) {
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	tk := &Ticket{Number: "CHG0012345", Kind: TicketChange, State: "Implement", Assignee: "Alice Smith",
		AssigneeEmail: "alice@example.com", AssignmentGroup: "DBA", PlannedStart: start, PlannedEnd: start.Add(4 * time.Hour),
		ConfigurationItem: "orders-db"}
	alice := Actor{Subject: "alice", Email: "alice@example.com", Groups: []string{"dba"}}
	sec := &Secret{Tags: map[string]string{"system": "Orders-DB"}}
	all := TicketRule{Kinds: []TicketKind{TicketChange}, States: []string{"implement", "Scheduled"}, RequesterIsAssignee: true,
		RequesterInGroup: true, WithinWindow: true, CITag: "system"}
	if err := all.Check(tk, alice, sec, start.Add(time.Hour), start.Add(2*time.Hour)); err != nil {
		t.Fatalf("a ticket that passes every rule: %v", err)
	}
	cases := []struct {
		rule   string
		mutate func(*Ticket, *Actor, *Secret) (time.Time, time.Time)
	}{
		{"kinds", func(t *Ticket, _ *Actor, _ *Secret) (time.Time, time.Time) {
			t.Kind = TicketIncident
			return start, start.Add(time.Hour)
		}},
		{"states", func(t *Ticket, _ *Actor, _ *Secret) (time.Time, time.Time) {
			t.State = "Closed"
			return start, start.Add(time.Hour)
		}},
		{"requesterIsAssignee", func(t *Ticket, _ *Actor, _ *Secret) (time.Time, time.Time) {
			t.AssigneeEmail, t.Assignee = "bob@example.com", "Bob"
			return start, start.Add(time.Hour)
		}},
		{"requesterInGroup", func(_ *Ticket, a *Actor, _ *Secret) (time.Time, time.Time) {
			a.Groups = []string{"web"}
			return start, start.Add(time.Hour)
		}},
		{"withinWindow", func(*Ticket, *Actor, *Secret) (time.Time, time.Time) {
			return start.Add(3 * time.Hour), start.Add(5 * time.Hour)
		}},
		{"withinWindow", func(*Ticket, *Actor, *Secret) (time.Time, time.Time) {
			return start.Add(-time.Minute), start.Add(time.Hour)
		}},
		{"window", func(t *Ticket, _ *Actor, _ *Secret) (time.Time, time.Time) {
			t.PlannedEnd = time.Time{}
			return start, start.Add(time.Hour)
		}},
		{"ciTag", func(_ *Ticket, _ *Actor, s *Secret) (time.Time, time.Time) {
			s.Tags = map[string]string{"system": "web"}
			return start, start.Add(time.Hour)
		}},
		{"ciTag", func(_ *Ticket, _ *Actor, s *Secret) (time.Time, time.Time) {
			s.Tags = nil
			return start, start.Add(time.Hour)
		}},
	}
	for _, c := range cases {
		tk2, a2, s2 := *tk, alice, &Secret{Tags: map[string]string{"system": "Orders-DB"}}
		from, to := c.mutate(&tk2, &a2, s2)
		err := all.Check(&tk2, a2, s2, from, to)
		if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), `ticket rule "`+c.rule+`"`) {
			t.Errorf("rule %s: %v", c.rule, err)
		}
	}
}

func TestApproveByTicket(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	pol := &Policy{
		Approval: &ApprovalRule{For: []AccessKind{AccessView}, PendingTimeout: Duration(time.Hour), MaxDuration: Duration(2 * time.Hour)},
		Ticket:   &TicketRule{Standalone: true, States: []string{"Implement"}},
	}
	if err := pol.Validate(); err != nil {
		t.Fatalf("standalone policy: %v", err)
	}
	p := &Principal{Subject: "alice"}
	sec := &Secret{ID: "S1", Name: "pg", Folder: "/prod"}
	r, err := NewRequest(p, sec, pol, "secret", AccessView, time.Time{}, time.Time{}, time.Hour, "", now)
	if err != nil {
		t.Fatal(err)
	}
	r.ID = "R1"
	g, err := r.ApproveByTicket(now)
	if err != nil || g == nil || r.Status != StatusActive || !g.Authorizes("alice", AccessView, now.Add(time.Minute)) {
		t.Fatalf("approve by ticket: %+v %v", g, err)
	}
	if _, err := r.ApproveByTicket(now); !errors.Is(err, ErrConflict) {
		t.Fatalf("second approval: %v", err)
	}
	human := &Policy{Approval: &ApprovalRule{For: []AccessKind{AccessView}, Steps: []ApprovalStep{{Approvers: []string{"group:x"}, Quorum: 1}},
		PendingTimeout: Duration(time.Hour), MaxDuration: Duration(2 * time.Hour)}}
	r2, _ := NewRequest(p, sec, human, "secret", AccessView, time.Time{}, time.Time{}, time.Hour, "", now)
	if _, err := r2.ApproveByTicket(now); !errors.Is(err, ErrForbidden) {
		t.Fatalf("approve by ticket without a standalone policy: %v", err)
	}
	bad := &Policy{Approval: human.Approval, Ticket: &TicketRule{Standalone: true}}
	if err := bad.Validate(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("standalone with human steps: %v", err)
	}
}
