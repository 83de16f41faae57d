package access_test

import (
	"context"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/access"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/keys/local"
	"github.com/escrow-pam/escrow/internal/secrets"
	"github.com/escrow-pam/escrow/internal/store/sqlite"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	secrets *secrets.Service
	access  *access.Service
	store   *sqlite.Store
	clock   *clock
	secret  *escrow.Secret
}

var (
	admin   = &escrow.Principal{Subject: "admin", Roles: []string{"admin"}}
	auditor = &escrow.Principal{Subject: "auditor", Roles: []string{"auditor"}}
	alice   = &escrow.Principal{Subject: "alice", Email: "alice@example.com", Groups: []string{"engineering", "approvers"}}
	bob     = &escrow.Principal{Subject: "bob", Email: "bob@example.com", Groups: []string{"approvers"}}
	carol   = &escrow.Principal{Subject: "carol", Email: "carol@example.com", Groups: []string{"approvers", "engineering"}}
	dave    = &escrow.Principal{Subject: "dave", Email: "dave@example.com", Groups: []string{"engineering"}}
)

func as(p *escrow.Principal) context.Context {
	return escrow.WithRequestInfo(escrow.NewContext(context.Background(), p), escrow.RequestInfo{RequestID: "r-" + p.Subject})
}

// newEnv stores /prod/db/pg under a policy: view needs 2 distinct approvers
// from group approvers, a change number, at most 4h, within 1h.
func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "escrow.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	master := make([]byte, 32)
	rand.Read(master)
	keys, _ := local.New(master)
	c := &clock{t: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)}
	e := &env{store: store, clock: c,
		secrets: secrets.New(secrets.Config{Store: store, Audit: store, Keys: keys, Grants: store, Clock: c}),
		access:  access.New(access.Config{Store: store, Requests: store, Audit: store, Clock: c})}
	sec, err := e.secrets.Create(as(admin), secrets.CreateInput{Name: "pg", Folder: "/prod/db", Type: escrow.TypePassword,
		Value: escrow.SecretValue{"password": "s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	e.secret = sec
	if _, err := e.secrets.SetFolderACL(as(admin), "/prod", []escrow.ACE{{Principal: "group:engineering", Permission: escrow.PermView}}, nil); err != nil {
		t.Fatal(err)
	}
	pol := &escrow.Policy{
		Approval: &escrow.ApprovalRule{For: []escrow.AccessKind{escrow.AccessView},
			Steps:          []escrow.ApprovalStep{{Name: "approvers", Approvers: []string{"group:approvers"}, Quorum: 2}},
			PendingTimeout: escrow.Duration(time.Hour), MaxDuration: escrow.Duration(4 * time.Hour), AllowFutureStart: true},
		Comment: escrow.CommentRule{Mode: escrow.CommentRequired, Pattern: `^CHG[0-9]{7}$`, PatternMessage: "Enter the change number"},
	}
	if _, err := e.secrets.SetFolderPolicy(as(admin), "/prod", pol, nil); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) reveal(p *escrow.Principal) error {
	_, err := e.secrets.Reveal(as(p), e.secret.ID, 0)
	return err
}

// TestRequestApproveRevealExpire is the whole story: dave requests, two
// distinct approvers approve, dave reveals within the window and is refused
// the moment it ends, even though nothing marked the grant expired.
func TestRequestApproveRevealExpire(t *testing.T) {
	e := newEnv(t)
	if err := e.reveal(dave); !errors.Is(err, escrow.ErrForbidden) || !strings.Contains(err.Error(), "escrow request /prod/db/pg") {
		t.Fatalf("reveal before any request: %v", err)
	}
	r, err := e.access.Request(as(dave), access.RequestInput{SecretID: e.secret.ID, Access: escrow.AccessView, Duration: 2 * time.Hour, Comment: "CHG0012345"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != escrow.StatusPending {
		t.Fatalf("new request is %s", r.Status)
	}
	// Pending for bob and carol, not for dave or admin.
	for p, want := range map[*escrow.Principal]int{bob: 1, carol: 1, dave: 0, admin: 0} {
		page, err := e.access.List(as(p), access.ListInput{PendingForMe: true})
		if err != nil || len(page.Requests) != want {
			t.Fatalf("pending for %s: %d, %v; want %d", p.Subject, len(page.Requests), err, want)
		}
	}
	e.clock.Add(5 * time.Minute)
	if _, g, err := e.access.Decide(as(bob), r.ID, true, "ok"); err != nil || g != nil {
		t.Fatalf("bob approves: grant %v, %v", g, err)
	}
	if _, _, err := e.access.Decide(as(bob), r.ID, true, "again"); !errors.Is(err, escrow.ErrConflict) {
		t.Fatalf("bob approves twice: %v", err)
	}
	if err := e.reveal(dave); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("reveal with one of two approvals: %v", err)
	}
	_, g, err := e.access.Decide(as(carol), r.ID, true, "fine")
	if err != nil || g == nil {
		t.Fatalf("carol approves: %v %v", g, err)
	}
	if err := e.reveal(dave); err != nil {
		t.Fatalf("reveal with a grant: %v", err)
	}
	recs, _ := e.store.QueryAudit(context.Background(), escrow.AuditQuery{Action: escrow.ActionSecretReveal, Limit: 1})
	if recs.Records[0].Details["grant"] != g.ID || recs.Records[0].Details["request"] != r.ID {
		t.Fatalf("reveal audit does not name the grant: %+v", recs.Records[0].Details)
	}
	// The grant is dave's alone.
	if err := e.reveal(alice); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("alice rides on dave's grant: %v", err)
	}
	// One nanosecond before the end it works; at the end it does not.
	e.clock.Add(g.End.Sub(e.clock.Now()) - time.Nanosecond)
	if err := e.reveal(dave); err != nil {
		t.Fatalf("reveal 1ns before the end: %v", err)
	}
	e.clock.Add(time.Nanosecond)
	if err := e.reveal(dave); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("reveal at the end of the window: %v", err)
	}
	got, err := e.access.Get(as(dave), r.ID)
	if err != nil || len(got.Decisions) != 2 || got.GrantID != g.ID {
		t.Fatalf("request history: %+v %v", got, err)
	}
}

func TestNoSelfApprovalThroughGroup(t *testing.T) {
	e := newEnv(t)
	// alice is in approvers herself.
	r, err := e.access.Request(as(alice), access.RequestInput{SecretID: e.secret.ID, Access: escrow.AccessView, Duration: time.Hour, Comment: "CHG0000001"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.access.Decide(as(alice), r.ID, true, "me"); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("self-approval through a group: %v", err)
	}
	recs, _ := e.store.QueryAudit(context.Background(), escrow.AuditQuery{Action: access.ActionRequestApprove, Limit: 1})
	if len(recs.Records) != 1 || recs.Records[0].Outcome != escrow.OutcomeDenied {
		t.Fatalf("refused self-approval not audited as denied: %+v", recs.Records)
	}
}

func TestDenyCancelRevokeTimeout(t *testing.T) {
	e := newEnv(t)
	req := func() *escrow.Request {
		t.Helper()
		r, err := e.access.Request(as(dave), access.RequestInput{SecretID: e.secret.ID, Access: escrow.AccessView, Duration: time.Hour, Comment: "CHG0000002"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Deny ends it.
	r := req()
	if got, _, err := e.access.Decide(as(bob), r.ID, false, "no"); err != nil || got.Status != escrow.StatusDenied {
		t.Fatalf("deny: %v", err)
	}
	if _, _, err := e.access.Decide(as(carol), r.ID, true, "late"); !errors.Is(err, escrow.ErrConflict) {
		t.Fatalf("approve after deny: %v", err)
	}
	// Cancel by the requester; not by someone else.
	r = req()
	if _, err := e.access.Cancel(as(bob), r.ID, ""); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("bob cancels dave's request: %v", err)
	}
	if got, err := e.access.Cancel(as(dave), r.ID, "not needed"); err != nil || got.Status != escrow.StatusCancelled {
		t.Fatalf("cancel: %v", err)
	}
	// Revoke an active grant: access ends at once.
	r = req()
	e.access.Decide(as(bob), r.ID, true, "")
	_, g, err := e.access.Decide(as(carol), r.ID, true, "")
	if err != nil || g == nil {
		t.Fatalf("approve: %v", err)
	}
	if err := e.reveal(dave); err != nil {
		t.Fatalf("reveal before revoke: %v", err)
	}
	if _, err := e.access.Revoke(as(bob), g.ID, ""); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("bob revokes dave's grant: %v", err)
	}
	if got, err := e.access.Revoke(as(admin), g.ID, "incident over"); err != nil || got.Status != escrow.StatusRevoked {
		t.Fatalf("admin revokes: %v", err)
	}
	if err := e.reveal(dave); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("reveal after revoke: %v", err)
	}
	if got, _ := e.access.Get(as(dave), r.ID); got.Status != escrow.StatusRevoked {
		t.Fatalf("request after revoke: %s", got.Status)
	}
	// Nobody decides within the pending timeout: the decision is refused.
	r = req()
	e.clock.Add(time.Hour)
	if _, _, err := e.access.Decide(as(bob), r.ID, true, ""); !errors.Is(err, escrow.ErrConflict) || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("decision after the deadline: %v", err)
	}
}

func TestRequestRules(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name string
		p    *escrow.Principal
		in   access.RequestInput
		want *escrow.Error
	}{
		{"bad comment", dave, access.RequestInput{Duration: time.Hour, Comment: "please"}, escrow.ErrInvalid},
		{"too long", dave, access.RequestInput{Duration: 5 * time.Hour, Comment: "CHG0000003"}, escrow.ErrInvalid},
		{"no acl", bob, access.RequestInput{Duration: time.Hour, Comment: "CHG0000003"}, escrow.ErrNotFound},
		{"no approval for edit", dave, access.RequestInput{Access: escrow.AccessEdit, Duration: time.Hour, Comment: "CHG0000003"}, escrow.ErrForbidden},
	}
	for _, c := range cases {
		c.in.SecretID = e.secret.ID
		if c.in.Access == "" {
			c.in.Access = escrow.AccessView
		}
		_, err := e.access.Request(as(c.p), c.in)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if c.name == "bad comment" && escrow.ErrorMessage(err) != "Enter the change number" {
			t.Errorf("bad comment: message %q", escrow.ErrorMessage(err))
		}
	}
	// A request in advance becomes usable at its start, not before.
	start := e.clock.Now().Add(2 * time.Hour)
	r, err := e.access.Request(as(dave), access.RequestInput{SecretID: e.secret.ID, Access: escrow.AccessView, Start: start, Duration: time.Hour, Comment: "CHG0000004"})
	if err != nil {
		t.Fatal(err)
	}
	e.access.Decide(as(bob), r.ID, true, "")
	if _, g, err := e.access.Decide(as(carol), r.ID, true, ""); err != nil || g.Status != escrow.StatusApproved || !g.Start.Equal(start) {
		t.Fatalf("advance approval: %+v %v", g, err)
	}
	if err := e.reveal(dave); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("reveal before the booked window: %v", err)
	}
	e.clock.Add(2 * time.Hour)
	if err := e.reveal(dave); err != nil {
		t.Fatalf("reveal in the booked window: %v", err)
	}
	// Only the requester, approvers, admins and auditors see a request.
	for p, ok := range map[*escrow.Principal]bool{dave: true, bob: true, auditor: true, &escrow.Principal{Subject: "eve"}: false} {
		if _, err := e.access.Get(as(p), r.ID); (err == nil) != ok {
			t.Errorf("%s reads the request: %v", p.Subject, err)
		}
	}
}

// TestSweep: the safety net expires ended grants, activates booked ones,
// times out undecided requests, audits each once, and is idempotent.
func TestSweep(t *testing.T) {
	e := newEnv(t)
	approve := func(r *escrow.Request) *escrow.Grant {
		t.Helper()
		e.access.Decide(as(bob), r.ID, true, "")
		_, g, err := e.access.Decide(as(carol), r.ID, true, "")
		if err != nil || g == nil {
			t.Fatalf("approve: %v", err)
		}
		return g
	}
	now := e.clock.Now()
	r1, _ := e.access.Request(as(dave), access.RequestInput{SecretID: e.secret.ID, Access: escrow.AccessView, Duration: time.Hour, Comment: "CHG0000010"})
	g1 := approve(r1) // active now, ends in 1h
	r2, _ := e.access.Request(as(dave), access.RequestInput{SecretID: e.secret.ID, Access: escrow.AccessView, Start: now.Add(30 * time.Minute), Duration: 2 * time.Hour, Comment: "CHG0000011"})
	g2 := approve(r2)                                                                                                                                      // booked for +30m
	r3, _ := e.access.Request(as(dave), access.RequestInput{SecretID: e.secret.ID, Access: escrow.AccessView, Duration: time.Hour, Comment: "CHG0000012"}) // nobody decides
	if res, err := e.access.Sweep(context.Background()); err != nil || res != (access.SweepResult{}) {
		t.Fatalf("sweep with nothing due: %+v %v", res, err)
	}
	e.clock.Add(time.Hour + time.Second) // g1 ended, g2 started, r3 timed out
	res, err := e.access.Sweep(context.Background())
	if err != nil || res.Expired != 1 || res.Activated != 1 || res.TimedOut != 1 {
		t.Fatalf("sweep: %+v %v", res, err)
	}
	if res, _ := e.access.Sweep(context.Background()); res != (access.SweepResult{}) {
		t.Fatalf("second sweep changed more: %+v", res)
	}
	for id, want := range map[string]escrow.RequestStatus{r1.ID: escrow.StatusExpired, r2.ID: escrow.StatusActive, r3.ID: escrow.StatusTimedOut} {
		if got, err := e.access.Get(as(admin), id); err != nil || got.Status != want {
			t.Errorf("request %s: %v %v, want %s", id, got.Status, err, want)
		}
	}
	for id, want := range map[string]escrow.RequestStatus{g1.ID: escrow.StatusExpired, g2.ID: escrow.StatusActive} {
		if g, err := e.store.GetGrant(context.Background(), id); err != nil || g.Status != want {
			t.Errorf("grant %s: %v %v, want %s", id, g.Status, err, want)
		}
	}
	page, _ := e.store.QueryAudit(context.Background(), escrow.AuditQuery{Actor: access.Sweeper, Limit: 100})
	actions := map[string]int{}
	for _, r := range page.Records {
		actions[r.Action]++
	}
	if actions[access.ActionGrantExpire] != 1 || actions[access.ActionGrantActivate] != 1 || actions[access.ActionRequestTimeout] != 1 {
		t.Fatalf("sweeper audit records: %v", actions)
	}
}
