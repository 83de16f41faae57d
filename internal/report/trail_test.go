package report_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/csv"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/escrow-pam/escrow/internal/access"
	"github.com/escrow-pam/escrow/internal/checkout"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/hook"
	"github.com/escrow-pam/escrow/internal/keys/local"
	"github.com/escrow-pam/escrow/internal/report"
	"github.com/escrow-pam/escrow/internal/rotation"
	"github.com/escrow-pam/escrow/internal/secrets"
)

// backend is what both stores (SQLite and DynamoDB) implement.
type backend interface {
	escrow.Store
	escrow.RequestStore
	escrow.CheckoutStore
	escrow.AuditLog
}

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

var (
	admin   = &escrow.Principal{Subject: "admin", Email: "admin@example.com", Roles: []string{escrow.RoleAdmin}}
	auditor = &escrow.Principal{Subject: "auditor", Email: "auditor@example.com", Roles: []string{escrow.RoleAuditor}}
	alice   = &escrow.Principal{Subject: "alice", Email: "alice@example.com", Groups: []string{"ops"}}
	bob     = &escrow.Principal{Subject: "bob", Email: "bob@example.com", Groups: []string{"approvers"}}
	carol   = &escrow.Principal{Subject: "carol", Email: "carol@example.com", Groups: []string{"approvers"}}
	dave    = &escrow.Principal{Subject: "dave", Email: "dave@example.com", Groups: []string{"ops"}}
	eve     = &escrow.Principal{Subject: "eve", Email: "eve@example.com", Groups: []string{"visitors"}}
	mallory = &escrow.Principal{Subject: "mallory", Email: "mallory@example.com", Groups: []string{"ops"}}
)

func as(p *escrow.Principal) context.Context {
	ctx := escrow.NewContext(context.Background(), p)
	return escrow.WithRequestInfo(ctx, escrow.RequestInfo{RequestID: "req-" + p.Subject, SourceIP: "192.0.2.10", UserAgent: "test"})
}

// tickets validates every number as an open change.
type tickets struct{}

func (tickets) Lookup(_ context.Context, system, number string) (*escrow.Ticket, error) {
	return &escrow.Ticket{System: "test", Number: number, Kind: escrow.TicketChange, State: "Implement"}, nil
}
func (tickets) Comment(context.Context, string, string, string) error { return nil }

// target is a rotation target that keeps one password and can be made to
// refuse changes.
type target struct {
	mu       sync.Mutex
	password string
	down     bool
}

func (t *target) Set(_ context.Context, _ escrow.TargetAccount, _ escrow.Credentials, next string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.down {
		return escrow.Errorf(escrow.CodeUnavailable, "target unreachable")
	}
	t.password = next
	return nil
}

func (t *target) Test(_ context.Context, _ escrow.TargetAccount, password string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if password != t.password {
		return fmt.Errorf("test login: %w", escrow.ErrLoginRefused)
	}
	return nil
}

// trail is what buildTrail did, for the reports' expectations.
type trail struct {
	from, to    time.Time
	clock       *clock
	prod, root  string // secret ids: /prod/db (approval + ticket), /ops/root (checkout + rotation)
	aliceReq    *escrow.Request
	aliceGrant  *escrow.Grant
	revoked     *escrow.Grant
	daveDenied  *escrow.Request
	daveGrant   *escrow.Grant // upcoming
	selfReq     string        // a forged request a requester approved
	forcedCO    string        // the checkout an admin ended
	approveWait time.Duration // alice's first request: created to last approval
}

// buildTrail makes a realistic audit trail through the real services on
// st: approvals with tickets and comments, reveals under grants, a
// refusal, checkouts with an extension, a forced check-in whose rotation
// first fails, a rotate-now, an admin's revocation, and a forged
// self-approval written straight to the store.
func buildTrail(t *testing.T, st backend) *trail {
	t.Helper()
	master := make([]byte, 32)
	rand.Read(master)
	keys, err := local.New(master)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Now().UTC().Truncate(time.Second).Add(-2 * time.Hour)}
	tr := &trail{from: c.Now(), clock: c}
	tgt := &target{password: "initial"}
	rot := rotation.New(rotation.Config{Store: st, Audit: st, Keys: keys, Clock: c,
		Targets: map[string]escrow.RotationTarget{escrow.TargetPostgres: tgt}})
	sec := secrets.New(secrets.Config{Store: st, Audit: st, Keys: keys, Grants: st, Checkouts: st, Clock: c})
	acc := access.New(access.Config{Store: st, Requests: st, Audit: st, Clock: c, Tickets: tickets{}})
	co := checkout.New(checkout.Config{Store: st, Checkouts: st, Audit: st, Keys: keys, Grants: st,
		Hooks: hook.New(nil, c.Now), Rotator: rot, Tickets: tickets{}, Clock: c})
	step := func() { c.Add(time.Minute) }
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	_, err = sec.SetFolderACL(as(admin), "/prod", []escrow.ACE{
		{Principal: "group:ops", Permission: escrow.PermView}, {Principal: "group:visitors", Permission: escrow.PermList}}, nil)
	must("prod acl", err)
	pol := &escrow.Policy{
		Approval: &escrow.ApprovalRule{For: []escrow.AccessKind{escrow.AccessView},
			Steps:          []escrow.ApprovalStep{{Name: "owners", Approvers: []string{"group:approvers"}, Quorum: 2}},
			PendingTimeout: escrow.Duration(time.Hour), MaxDuration: escrow.Duration(time.Hour), AllowFutureStart: true},
		Ticket: &escrow.TicketRule{Kinds: []escrow.TicketKind{escrow.TicketChange}},
	}
	_, err = sec.SetFolderPolicy(as(admin), "/prod", pol, nil)
	must("prod policy", err)
	prod, err := sec.Create(as(admin), secrets.CreateInput{Name: "db", Folder: "/prod", Type: escrow.TypePassword,
		Value: escrow.SecretValue{"username": "app", "password": "pw-canary-prod"}})
	must("create /prod/db", err)
	tr.prod = prod.ID
	_, err = sec.SetFolderACL(as(admin), "/ops", []escrow.ACE{{Principal: "group:ops", Permission: escrow.PermView}}, nil)
	must("ops acl", err)
	_, err = sec.SetFolderPolicy(as(admin), "/ops", &escrow.Policy{Checkout: &escrow.CheckoutRule{MaxExtensions: 2},
		Ticket: &escrow.TicketRule{}}, nil)
	must("ops policy", err)
	root, err := sec.Create(as(admin), secrets.CreateInput{Name: "root", Folder: "/ops", Type: escrow.TypePassword,
		Value: escrow.SecretValue{"username": "root", "host": "db.internal", "password": "initial"}})
	must("create /ops/root", err)
	tr.root = root.ID
	_, err = co.SetRotation(as(admin), root.ID, &escrow.RotationConfig{Target: escrow.TargetPostgres})
	must("set rotation", err)
	step()

	// alice asks, two approvers agree, she reads the secret under the grant.
	r, err := acc.Request(as(alice), access.RequestInput{SecretID: prod.ID, Access: escrow.AccessView,
		Duration: time.Hour, Comment: "deploy 42, needs the app password", Ticket: "CHG0001"})
	must("alice requests", err)
	created := r.CreatedAt
	step()
	_, _, err = acc.Decide(as(bob), r.ID, true, "ok for the deploy")
	must("bob approves", err)
	c.Add(90 * time.Second)
	r, tr.aliceGrant, err = acc.Decide(as(carol), r.ID, true, "=HYPERLINK(\"http://evil\"), fine")
	must("carol approves", err)
	tr.aliceReq, tr.approveWait = r, c.Now().Sub(created)
	step()
	_, err = sec.RevealWith(as(alice), prod.ID, secrets.RevealOptions{Comment: "deploying"})
	must("alice reveals", err)
	step()

	// dave is denied; eve may not see the value at all.
	r, err = acc.Request(as(dave), access.RequestInput{SecretID: prod.ID, Access: escrow.AccessView,
		Duration: 30 * time.Minute, Comment: "curious", Ticket: "CHG0002"})
	must("dave requests", err)
	step()
	tr.daveDenied, _, err = acc.Decide(as(bob), r.ID, false, "no change planned")
	must("bob denies", err)
	step()
	if _, err := sec.Reveal(as(eve), prod.ID, 0); !errors.Is(err, escrow.ErrForbidden) {
		t.Fatalf("eve's reveal: %v, want forbidden", err)
	}
	step()

	// A second grant of alice's, revoked by an admin.
	r, err = acc.Request(as(alice), access.RequestInput{SecretID: prod.ID, Access: escrow.AccessView,
		Duration: 20 * time.Minute, Comment: "hotfix", Ticket: "CHG0003"})
	must("alice requests again", err)
	acc.Decide(as(bob), r.ID, true, "")
	_, g, err := acc.Decide(as(carol), r.ID, true, "")
	must("second grant", err)
	step()
	tr.revoked, err = acc.Revoke(as(admin), g.ID, "left the team")
	must("admin revokes", err)
	step()

	// dave books a window that starts later.
	r, err = acc.Request(as(dave), access.RequestInput{SecretID: prod.ID, Access: escrow.AccessView,
		Start: c.Now().Add(3 * time.Hour), Duration: 30 * time.Minute, Comment: "maintenance", Ticket: "CHG0004"})
	must("dave books", err)
	acc.Decide(as(bob), r.ID, true, "")
	_, tr.daveGrant, err = acc.Decide(as(carol), r.ID, true, "")
	must("dave's grant", err)
	step()

	// alice checks /ops/root out, extends, checks in; the password rotates.
	res, err := co.Checkout(as(alice), checkout.Input{SecretID: root.ID, Comment: "INC0042 db down", Ticket: "INC0042"})
	must("alice checks out", err)
	step()
	_, err = co.Extend(as(alice), root.ID)
	must("alice extends", err)
	step()
	_, err = co.Checkin(as(alice), root.ID, "done")
	must("alice checks in", err)
	finish(t, co, root.ID, res.Checkout.ID)
	step()

	// dave checks out; alice is refused meanwhile; an admin forces it back
	// and the rotation fails once before it succeeds.
	res, err = co.Checkout(as(dave), checkout.Input{SecretID: root.ID, Comment: "patching", Ticket: "INC0043"})
	must("dave checks out", err)
	tr.forcedCO = res.Checkout.ID
	step()
	if _, err := co.Checkout(as(alice), checkout.Input{SecretID: root.ID, Ticket: "INC0042"}); !errors.Is(err, escrow.ErrConflict) {
		t.Fatalf("alice's checkout while dave holds it: %v, want conflict", err)
	}
	step()
	_, err = co.ForceCheckin(as(admin), root.ID, "dave is on leave")
	must("force checkin", err)
	tgt.mu.Lock()
	tgt.down = true
	tgt.mu.Unlock()
	if _, err := co.Rotate(context.Background(), root.ID, res.Checkout.ID); err == nil {
		t.Fatal("rotation against a down target succeeded")
	}
	_, err = co.RotationFailed(context.Background(), root.ID, res.Checkout.ID, checkout.TaskError{Error: "RotationError", Cause: "target unreachable"})
	must("rotation failed task", err)
	tgt.mu.Lock()
	tgt.down = false
	tgt.mu.Unlock()
	step()
	finish(t, co, root.ID, res.Checkout.ID)
	step()

	// An admin rotates now.
	slot, err := co.RotateNow(as(admin), root.ID)
	must("rotate now", err)
	finish(t, co, root.ID, slot.ID)
	step()

	// A request its requester approved, written around the domain (which
	// refuses it): the same person under a second account.
	now := c.Now()
	self := &escrow.Request{ID: escrow.NewID(now), SecretID: prod.ID, SecretPath: "/prod/db",
		Requester: escrow.Actor{Subject: "mallory", Email: "mallory@example.com"}, Access: escrow.AccessView,
		Start: now, End: now.Add(10 * time.Minute), Status: escrow.StatusPending, Policy: *pol, PolicyFrom: "folder:/prod",
		Decisions: []escrow.Decision{{ID: escrow.NewID(now), Approver: escrow.Actor{Subject: "mallory2", Email: "Mallory@example.com"},
			Approve: true, Comment: "lgtm", Time: now}},
		CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour), Revision: 1}
	rec := escrow.NewAuditRecord(as(mallory), now, "request.create", "request:"+self.ID)
	rec.SecretID = prod.ID
	must("forge request", st.CreateRequest(context.Background(), self, rec))
	tr.selfReq = self.ID
	step()
	tr.to = c.Now()
	return tr
}

// finish runs what the checkout state machine runs once a checkout ends.
func finish(t *testing.T, co *checkout.Service, id, checkoutID string) {
	t.Helper()
	step, err := co.Rotate(context.Background(), id, checkoutID)
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if err := co.PostHooks(context.Background(), id, checkoutID, step.Status); err != nil {
		t.Fatalf("post hooks: %v", err)
	}
	if err := co.Release(context.Background(), id, checkoutID); err != nil {
		t.Fatalf("release: %v", err)
	}
}

// table is a report's CSV output, parsed back.
type table struct {
	header []string
	rows   []map[string]string
	raw    string
}

func (tb *table) where(col, val string) []map[string]string {
	var out []map[string]string
	for _, r := range tb.rows {
		if r[col] == val {
			out = append(out, r)
		}
	}
	return out
}

func (tb *table) column(col string) []string {
	out := make([]string, len(tb.rows))
	for i, r := range tb.rows {
		out[i] = r[col]
	}
	return out
}

// runCSV runs a report as p and parses its CSV.
func runCSV(t *testing.T, svc *report.Service, p *escrow.Principal, name string, params report.Params) *table {
	t.Helper()
	var buf bytes.Buffer
	if err := svc.Run(as(p), name, params, report.NewCSVWriter(&buf)); err != nil {
		t.Fatalf("report %s: %v", name, err)
	}
	rd := csv.NewReader(bytes.NewReader(buf.Bytes()))
	recs, err := rd.ReadAll()
	if err != nil {
		t.Fatalf("report %s: parse csv: %v\n%s", name, err, buf.String())
	}
	if len(recs) == 0 {
		t.Fatalf("report %s: no header row", name)
	}
	tb := &table{header: recs[0], raw: buf.String()}
	for _, rec := range recs[1:] {
		m := make(map[string]string, len(rec))
		for i, v := range rec {
			m[tb.header[i]] = v
		}
		tb.rows = append(tb.rows, m)
	}
	return tb
}

// checkReports runs every report over tr and checks what each must show.
// It runs against every backend.
func checkReports(t *testing.T, svc *report.Service, tr *trail) {
	rng := report.Params{From: tr.from, To: tr.to.Add(time.Minute)}
	byActions := func(tb *table) map[string]int {
		m := map[string]int{}
		for _, r := range tb.rows {
			m[r["action"]+"/"+r["outcome"]]++
		}
		return m
	}
	newestFirst := func(t *testing.T, tb *table, col string) {
		t.Helper()
		for i := 1; i < len(tb.rows); i++ {
			if tb.rows[i][col] > tb.rows[i-1][col] {
				t.Errorf("row %d (%s) is newer than row %d (%s)", i, tb.rows[i][col], i-1, tb.rows[i-1][col])
			}
		}
	}

	t.Run("access-by-user", func(t *testing.T) {
		p := rng
		p.User = "alice"
		tb := runCSV(t, svc, auditor, "access-by-user", p)
		newestFirst(t, tb, "auditId")
		for _, r := range tb.rows {
			if r["actor"] != "alice" {
				t.Errorf("row of %s in alice's report", r["actor"])
			}
		}
		got := byActions(tb)
		for k, n := range map[string]int{"request.create/success": 2, "secret.reveal/success": 1, "secret.checkout/success": 1,
			"secret.checkout.extend/success": 1, "secret.checkin/success": 1, "secret.checkout/failed": 1} {
			if got[k] != n {
				t.Errorf("%s: %d rows, want %d (all: %v)", k, got[k], n, got)
			}
		}
		rv := tb.where("action", "secret.reveal")[0]
		if rv["secret"] != tr.prod || rv["path"] != "/prod/db" || rv["ticket"] != "CHG0001" || rv["comment"] != "deploying" ||
			rv["request"] != tr.aliceReq.ID || rv["grant"] != tr.aliceGrant.ID || rv["httpRequest"] != "req-alice" || rv["sourceIp"] != "192.0.2.10" {
			t.Errorf("reveal row = %v", rv)
		}
		if f := tb.where("outcome", "failed")[0]; f["reason"] == "" || f["path"] != "/ops/root" {
			t.Errorf("refused checkout row = %v", f)
		}
	})

	t.Run("access-to-secret by path", func(t *testing.T) {
		p := rng
		p.Secret = "/prod/db"
		tb := runCSV(t, svc, auditor, "access-to-secret", p)
		byID := p
		byID.Secret = tr.prod
		if again := runCSV(t, svc, admin, "access-to-secret", byID); len(again.rows) != len(tb.rows) {
			t.Errorf("by id %d rows, by path %d", len(again.rows), len(tb.rows))
		}
		got := byActions(tb)
		for k, n := range map[string]int{"secret.create/success": 1, "secret.reveal/success": 1, "secret.reveal/denied": 1,
			"request.create/success": 5, "request.approve/success": 6, "request.deny/success": 1, "grant.revoke/success": 1} {
			if got[k] != n {
				t.Errorf("%s: %d rows, want %d (all: %v)", k, got[k], n, got)
			}
		}
		for _, r := range tb.rows {
			if r["secret"] != tr.prod {
				t.Errorf("row of secret %s", r["secret"])
			}
		}
		denied := tb.where("outcome", "denied")[0]
		if denied["actor"] != "eve" || denied["path"] != "/prod/db" || denied["reason"] == "" {
			t.Errorf("eve's refusal: %v", denied)
		}
	})

	t.Run("ticket", func(t *testing.T) {
		tb := runCSV(t, svc, auditor, "ticket", report.Params{Ticket: "CHG0001"})
		got := byActions(tb)
		if got["request.create/success"] != 1 || got["request.approve/success"] != 2 || got["secret.reveal/success"] != 1 || len(tb.rows) != 4 {
			t.Errorf("CHG0001: %v", got)
		}
		bob := tb.where("actor", "bob")
		if len(bob) != 1 || bob[0]["comment"] != "ok for the deploy" {
			t.Errorf("bob's approval under CHG0001: %v", bob)
		}
		inc := runCSV(t, svc, auditor, "ticket", report.Params{Ticket: "INC0042", From: tr.from})
		if got := byActions(inc); got["secret.checkout/success"] != 1 || got["secret.checkout.extend/success"] != 1 || got["secret.checkin/success"] != 1 {
			t.Errorf("INC0042: %v", got)
		}
	})

	t.Run("requests", func(t *testing.T) {
		tb := runCSV(t, svc, auditor, "requests", rng)
		if len(tb.rows) != 5 {
			t.Fatalf("%d requests, want 5: %v", len(tb.rows), tb.column("request"))
		}
		newestFirst(t, tb, "created")
		a := tb.where("request", tr.aliceReq.ID)[0]
		want := map[string]string{"requester": "alice", "requesterEmail": "alice@example.com", "secret": tr.prod, "path": "/prod/db",
			"access": "view", "status": "active", "ticket": "CHG0001", "comment": "deploy 42, needs the app password",
			"steps": "step 1 (owners): 2 of group:approvers", "approvedBy": "bob, carol", "grant": tr.aliceGrant.ID,
			"timeToApproveSeconds": fmt.Sprint(int(tr.approveWait.Seconds()))}
		for k, v := range want {
			if a[k] != v {
				t.Errorf("alice's request %s = %q, want %q", k, a[k], v)
			}
		}
		if dec := a["decisions"]; !bytes.Contains([]byte(dec), []byte(`step 1: bob approved at `)) ||
			!bytes.Contains([]byte(dec), []byte(`"ok for the deploy"`)) || !bytes.Contains([]byte(dec), []byte(`carol approved`)) {
			t.Errorf("decisions = %q", dec)
		}
		d := tb.where("request", tr.daveDenied.ID)[0]
		if d["status"] != "denied" || d["timeToApproveSeconds"] != "" || !bytes.Contains([]byte(d["decisions"]), []byte(`bob denied at`)) {
			t.Errorf("dave's denied request: %v", d)
		}
		// The range bounds creation: nothing before from or at to.
		late := runCSV(t, svc, auditor, "requests", report.Params{From: tr.aliceReq.CreatedAt.Add(time.Second), To: tr.to})
		if len(late.where("request", tr.aliceReq.ID)) != 0 || len(late.rows) != 4 {
			t.Errorf("requests after alice's first: %v", late.column("request"))
		}
	})

	t.Run("grants", func(t *testing.T) {
		tb := runCSV(t, svc, auditor, "grants", report.Params{})
		if len(tb.rows) != 2 {
			t.Fatalf("grants %v, want alice's active one and dave's upcoming one", tb.column("grant"))
		}
		a, d := tb.where("grant", tr.aliceGrant.ID), tb.where("grant", tr.daveGrant.ID)
		if len(a) != 1 || a[0]["status"] != "active" || a[0]["subject"] != "alice" || a[0]["startsInSeconds"] != "" ||
			a[0]["timeLeftSeconds"] != fmt.Sprint(int(tr.aliceGrant.End.Sub(tr.clock.Now()).Seconds())) {
			t.Errorf("alice's grant: %v", a)
		}
		if len(d) != 1 || d[0]["status"] != "upcoming" || d[0]["startsInSeconds"] == "" || d[0]["ticket"] != "CHG0004" {
			t.Errorf("dave's grant: %v", d)
		}
	})

	t.Run("checkouts", func(t *testing.T) {
		tb := runCSV(t, svc, auditor, "checkouts", rng)
		newestFirst(t, tb, "auditId")
		events := map[string]int{}
		for _, r := range tb.rows {
			events[r["event"]]++
			if r["secret"] != tr.root {
				t.Errorf("row of secret %s: %v", r["secret"], r)
			}
		}
		for ev, n := range map[string]int{"rotation-config": 1, "checkout": 3, "extend": 1, "checkin": 1, "force-checkin": 1,
			"rotation-failed": 1, "rotate-now": 1, "release": 3, "rotation-promote": 3} {
			if events[ev] != n {
				t.Errorf("%s: %d rows, want %d (all: %v)", ev, events[ev], n, events)
			}
		}
		failed := tb.where("failed", "true")
		kinds := map[string]bool{}
		for _, r := range failed {
			kinds[r["event"]] = true
		}
		if !kinds["rotation-failed"] || !kinds["rotation-set-on-target"] || !kinds["checkout"] {
			t.Errorf("failed rows: %v", failed)
		}
		fc := tb.where("event", "force-checkin")[0]
		if fc["actor"] != "admin" || fc["holder"] != "dave" || fc["checkout"] != tr.forcedCO || fc["comment"] != "dave is on leave" {
			t.Errorf("force checkin row: %v", fc)
		}
		co := tb.where("action", "secret.checkout")
		for _, r := range co {
			if r["outcome"] == "success" && r["holder"] == "alice" && (r["ticket"] != "INC0042" || r["expires"] == "" || r["version"] != "1") {
				t.Errorf("alice's checkout: %v", r)
			}
		}
	})

	t.Run("sod-exceptions", func(t *testing.T) {
		tb := runCSV(t, svc, auditor, "sod-exceptions", rng)
		kinds := tb.column("kind")
		want := []string{"rotate-now", "force-checkin", "grant-revoke", "self-approval"}
		if fmt.Sprint(kinds) != fmt.Sprint(want) {
			t.Fatalf("exceptions %v, want %v", kinds, want)
		}
		gr := tb.rows[2]
		if gr["actor"] != "admin" || gr["affected"] != "alice" || gr["grant"] != tr.revoked.ID || gr["comment"] != "left the team" {
			t.Errorf("revocation: %v", gr)
		}
		if fc := tb.rows[1]; fc["affected"] != "dave" || fc["actorRoles"] != "admin" {
			t.Errorf("force checkin: %v", fc)
		}
		self := tb.rows[3]
		if self["request"] != tr.selfReq || self["actor"] != "mallory2" || self["affected"] != "mallory" || self["auditId"] != "" {
			t.Errorf("self-approval: %v", self)
		}
	})

	t.Run("denied", func(t *testing.T) {
		tb := runCSV(t, svc, auditor, "denied", rng)
		newestFirst(t, tb, "auditId")
		got := byActions(tb)
		for k, n := range map[string]int{"secret.reveal/denied": 1, "secret.checkout/failed": 1,
			"secret.rotation.target/failed": 1, "secret.rotation.failed/failed": 1} {
			if got[k] != n {
				t.Errorf("%s: %d rows, want %d (all: %v)", k, got[k], n, got)
			}
		}
		for _, r := range tb.rows {
			if r["outcome"] == "success" {
				t.Errorf("a success in denied: %v", r)
			}
		}
	})

	t.Run("activity", func(t *testing.T) {
		tb := runCSV(t, svc, auditor, "activity", rng)
		newestFirst(t, tb, "auditId")
		seen := map[string]bool{}
		for _, r := range tb.rows {
			if seen[r["auditId"]] {
				t.Errorf("record %s twice", r["auditId"])
			}
			seen[r["auditId"]] = true
		}
		user := runCSV(t, svc, auditor, "access-by-user", report.Params{User: "alice", From: rng.From, To: rng.To})
		for _, r := range user.rows {
			if !seen[r["auditId"]] {
				t.Errorf("alice's record %s is not in the activity", r["auditId"])
			}
		}
		if len(tb.rows) < 50 {
			t.Errorf("only %d records of activity", len(tb.rows))
		}
	})
}
