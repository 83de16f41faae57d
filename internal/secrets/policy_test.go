package secrets_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/secrets"
)

func changePolicy() *escrow.Policy {
	return &escrow.Policy{Comment: escrow.CommentRule{Mode: escrow.CommentRequired, Prompt: "Change or incident number",
		Pattern: `^(CHG|INC)[0-9]{7}$`, PatternMessage: "Enter the change or incident number, e.g. CHG0012345", OnReveal: true}}
}

// TestRequireCommentOnReveal: a folder policy demands a ticket-shaped
// comment on every reveal; a bad one is refused with the policy's message,
// a good one is stored in the reveal's audit record.
func TestRequireCommentOnReveal(t *testing.T) {
	e := newEnv(t)
	sec := e.mustCreate(t, admin, "/prod/db", "pg", escrow.SecretValue{"password": "p"})
	if _, err := e.svc.SetFolderACL(as(admin), "/prod", []escrow.ACE{{Principal: "group:engineering", Permission: escrow.PermView}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SetFolderPolicy(as(admin), "/prod", changePolicy(), nil); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "because", "CHG123", "chg0012345", "CHG0012345 and more"} {
		_, err := e.svc.RevealWith(as(alice), sec.ID, secrets.RevealOptions{Comment: bad})
		if !errors.Is(err, escrow.ErrInvalid) {
			t.Fatalf("comment %q: %v, want invalid", bad, err)
		}
		if bad != "" && escrow.ErrorMessage(err) != "Enter the change or incident number, e.g. CHG0012345" {
			t.Fatalf("comment %q: message %q is not the policy's", bad, escrow.ErrorMessage(err))
		}
		if bad == "" && !strings.Contains(escrow.ErrorMessage(err), "Change or incident number") {
			t.Fatalf("empty comment: message %q does not show the prompt", escrow.ErrorMessage(err))
		}
	}
	rv, err := e.svc.RevealWith(as(alice), sec.ID, secrets.RevealOptions{Comment: " CHG0012345 "})
	if err != nil || rv.Value["password"] != "p" {
		t.Fatalf("good comment: %v", err)
	}
	recs := e.allAudit(t)
	if recs[0].Action != escrow.ActionSecretReveal || recs[0].Outcome != escrow.OutcomeSuccess || recs[0].Comment != "CHG0012345" {
		t.Fatalf("reveal audit: %+v", recs[0])
	}
	if recs[1].Outcome != escrow.OutcomeFailed || recs[1].Comment != "CHG0012345 and more" || recs[1].ErrorCode != escrow.CodeInvalid {
		t.Fatalf("refused reveal audit: %+v", recs[1])
	}

	// A nearer policy wins: the secret's own, without onReveal, frees it.
	own := &escrow.Policy{Comment: escrow.CommentRule{Mode: escrow.CommentOptional}}
	if _, err := e.svc.SetSecretPolicy(as(admin), sec.ID, own, nil); err != nil {
		t.Fatal(err)
	}
	v, err := e.svc.GetPolicy(as(alice), sec.ID)
	if err != nil || v.From != "secret" || v.Policy.Comment.Mode != escrow.CommentOptional {
		t.Fatalf("policy view: %+v %v", v, err)
	}
	if _, err := e.svc.Reveal(as(alice), sec.ID, 0); err != nil {
		t.Fatalf("reveal under the secret's own policy: %v", err)
	}
	// Removing it brings the folder's back.
	if _, err := e.svc.SetSecretPolicy(as(admin), sec.ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	v, err = e.svc.GetPolicy(as(alice), sec.ID)
	if err != nil || v.From != "folder:/prod" || v.Own != nil {
		t.Fatalf("policy view after removal: %+v %v", v, err)
	}
	if _, err := e.svc.Reveal(as(alice), sec.ID, 0); !errors.Is(err, escrow.ErrInvalid) {
		t.Fatalf("reveal under the folder policy again: %v", err)
	}
}

// TestApprovalPolicyFailsClosed: while access requests do not exist, a
// secret whose policy puts view (or edit) under approval cannot be revealed
// (or changed) by anyone, admins included.
func TestApprovalPolicyFailsClosed(t *testing.T) {
	e := newEnv(t)
	sec := e.mustCreate(t, admin, "/vault", "root", escrow.SecretValue{"password": "p"})
	pol := &escrow.Policy{Approval: &escrow.ApprovalRule{
		For:            []escrow.AccessKind{escrow.AccessView, escrow.AccessEdit},
		Steps:          []escrow.ApprovalStep{{Approvers: []string{"group:approvers"}, Quorum: 1}},
		PendingTimeout: escrow.Duration(time.Hour), MaxDuration: escrow.Duration(2 * time.Hour)}}
	if _, err := e.svc.SetSecretPolicy(as(admin), sec.ID, pol, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Reveal(as(admin), sec.ID, 0); !errors.Is(err, escrow.ErrForbidden) || !strings.Contains(err.Error(), "approved access request") {
		t.Fatalf("reveal under approval: %v", err)
	}
	if _, err := e.svc.Update(as(admin), sec.ID, secrets.UpdateInput{Value: escrow.SecretValue{"password": "q"}}); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("update under edit approval: %v", err)
	}
	if got := e.allAudit(t)[0]; got.Outcome != escrow.OutcomeDenied {
		t.Fatalf("refusal audited as %s", got.Outcome)
	}
}

func TestPolicyChangesNeedOwnerAndValidPolicies(t *testing.T) {
	e := newEnv(t)
	sec := e.mustCreate(t, admin, "/prod", "pg", escrow.SecretValue{"password": "p"})
	if _, err := e.svc.SetACL(as(admin), sec.ID, []escrow.ACE{{Principal: "user:alice", Permission: escrow.PermEdit}, {Principal: "user:bob", Permission: escrow.PermOwner}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SetSecretPolicy(as(alice), sec.ID, changePolicy(), nil); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("editor sets policy: %v", err)
	}
	if _, err := e.svc.SetFolderPolicy(as(bob), "/prod", changePolicy(), nil); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("non-owner sets folder policy: %v", err)
	}
	bad := []*escrow.Policy{
		{Comment: escrow.CommentRule{Mode: "sometimes"}},
		{Comment: escrow.CommentRule{Mode: escrow.CommentRequired, Pattern: "(unclosed"}},
		{Approval: &escrow.ApprovalRule{For: []escrow.AccessKind{"read"}}},
		{Approval: &escrow.ApprovalRule{For: []escrow.AccessKind{escrow.AccessView}}}, // no steps
		{Approval: &escrow.ApprovalRule{For: []escrow.AccessKind{escrow.AccessView},
			Steps: []escrow.ApprovalStep{{Approvers: []string{"bob"}, Quorum: 1}}, PendingTimeout: escrow.Duration(time.Hour), MaxDuration: escrow.Duration(time.Hour)}},
		{Approval: &escrow.ApprovalRule{For: []escrow.AccessKind{escrow.AccessView},
			Steps: []escrow.ApprovalStep{{Approvers: []string{"user:bob"}, Quorum: 0}}, PendingTimeout: escrow.Duration(time.Hour), MaxDuration: escrow.Duration(time.Hour)}},
	}
	for i, p := range bad {
		if _, err := e.svc.SetSecretPolicy(as(bob), sec.ID, p, nil); !errors.Is(err, escrow.ErrInvalid) {
			t.Errorf("bad policy %d: %v, want invalid", i, err)
		}
	}
	if _, err := e.svc.SetSecretPolicy(as(bob), sec.ID, changePolicy(), nil); err != nil {
		t.Fatalf("owner sets policy: %v", err)
	}
}
