package web

import (
	"strings"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

func TestPolicyWords(t *testing.T) {
	rot := false
	p := &escrow.Policy{
		Approval: &escrow.ApprovalRule{For: []escrow.AccessKind{escrow.AccessView, escrow.AccessCheckout},
			Steps:          []escrow.ApprovalStep{{Name: "leads", Approvers: []string{"group:approvers", "user:carol"}, Quorum: 2}},
			PendingTimeout: escrow.Duration(time.Hour), MaxDuration: escrow.Duration(4 * time.Hour), AllowFutureStart: true,
			StepUp: escrow.Duration(5 * time.Minute)},
		Comment: escrow.CommentRule{Mode: escrow.CommentRequired, Prompt: "Change number", Pattern: `^CHG\d+$`,
			PatternMessage: "Enter the change number, e.g. CHG0012345", OnReveal: true},
		Ticket:   &escrow.TicketRule{System: "snow", Kinds: []escrow.TicketKind{escrow.TicketChange}, States: []string{"Implement"}},
		Checkout: &escrow.CheckoutRule{Required: true, Interval: escrow.Duration(15 * time.Minute), MaxExtensions: 2, RotateOnCheckin: &rot},
	}
	got := strings.Join(policyWords(p, "folder:/prod/root"), "\n")
	for _, want := range []string{
		"inherited from the folder /prod/root",
		"Access to view or checkout needs an approved request.",
		"Step 1 of 1 (leads): 2 approvals from group approvers or carol. Nobody approves their own request.",
		"at most 4 h and is dropped if nobody decides within 1 h",
		"booked in advance",
		"signed in within 5 min",
		"A comment is required for every reveal, request and checkout: Change number.",
		"Enter the change number, e.g. CHG0012345",
		"Requests must name a change ticket, checked live against the ticket system snow (state Implement). If the ticket system cannot be reached, no access is given.",
		"One person at a time may check it out, for 15 min, extendable 2 times.",
		"You must hold the checkout to reveal it.",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "password is changed") {
		t.Errorf("rotateOnCheckin false, yet the words promise a rotation:\n%s", got)
	}
	if none := policyWords(nil, ""); len(none) != 1 || !strings.Contains(none[0], "No policy applies") {
		t.Errorf("no policy: %q", none)
	}
}

func TestSafePath(t *testing.T) {
	for in, want := range map[string]string{
		"/requests/01ABC": "/requests/01ABC", "/": "/", "": "", "//evil.example": "", "https://evil.example": "",
		`/\evil.example`: "", "relative": "", "/x\r\nSet-Cookie: a=b": "",
	} {
		if got := safePath(in); got != want {
			t.Errorf("safePath(%q) = %q, want %q", in, got, want)
		}
	}
}
