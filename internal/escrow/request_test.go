package escrow

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// The cast. alice requests; bob, carol and dave are DBAs (step 1); sec and
// frank (through secops) approve step 2.
var (
	alice     = &Principal{Subject: "alice", Email: "alice@example.com", Groups: []string{"dba"}}
	aliceBare = &Principal{Subject: "alice"}                                                        // same subject, a token without groups
	aliceAlt  = &Principal{Subject: "alice-2", Email: "Alice@Example.com", Groups: []string{"dba"}} // her second account
	bob       = &Principal{Subject: "bob", Email: "bob@example.com", Groups: []string{"dba"}}
	bobAlt    = &Principal{Subject: "bob-2", Email: "bob@example.com", Groups: []string{"dba"}}
	carol     = &Principal{Subject: "carol", Email: "carol@example.com", Groups: []string{"dba"}}
	dave      = &Principal{Subject: "dave", Groups: []string{"dba"}}
	sec       = &Principal{Subject: "sec", Email: "sec@example.com"}
	frank     = &Principal{Subject: "frank", Groups: []string{"secops"}}
	eve       = &Principal{Subject: "eve", Email: "eve@example.com"}
	root      = &Principal{Subject: "root", Roles: []string{RoleAdmin}}
	dbSecret  = &Secret{ID: "S1", Name: "db", Folder: "/prod", Type: TypePassword}
)

func testPolicy() *Policy {
	return &Policy{
		Approval: &ApprovalRule{
			For: []AccessKind{AccessView, AccessCheckout},
			Steps: []ApprovalStep{
				{Name: "dba", Approvers: []string{"group:dba"}, Quorum: 2},
				{Name: "security", Approvers: []string{"user:sec", "group:secops"}, Quorum: 1},
			},
			PendingTimeout:   Duration(24 * time.Hour),
			MaxDuration:      Duration(8 * time.Hour),
			AllowFutureStart: true,
			ClockStarts:      ClockAtApproval,
		},
		Comment: CommentRule{Mode: CommentRequired, Pattern: `^(CHG|INC)[0-9]{7}$`, PatternMessage: "Enter the change or incident number"},
		Notice:  "Access is logged.",
	}
}

// oneStep makes the policy a single step that bob alone approves.
func oneStep(p *Policy) {
	p.Approval.Steps = []ApprovalStep{{Approvers: []string{"user:bob"}, Quorum: 1}}
}

func newTestRequest(t *testing.T, mod func(*Policy), start time.Time, d time.Duration) *Request {
	t.Helper()
	p := testPolicy()
	if mod != nil {
		mod(p)
	}
	r, err := NewRequest(alice, dbSecret, p, "folder:/prod", AccessView, start, time.Time{}, d, "CHG1234567", t0)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	return r
}

// wantErr fails unless err has code (nil when code is "") and a message
// containing msg.
func wantErr(t *testing.T, what string, err error, code Code, msg string) {
	t.Helper()
	if code == "" {
		if err != nil {
			t.Fatalf("%s: unexpected error %v", what, err)
		}
		return
	}
	if ErrorCode(err) != code || !errors.Is(err, &Error{Code: code}) {
		t.Fatalf("%s: error %v; want code %s", what, err, code)
	}
	if !strings.Contains(ErrorMessage(err), msg) && !strings.Contains(err.Error(), msg) {
		t.Fatalf("%s: error %q does not say %q", what, err, msg)
	}
}

func snapshot(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestNewRequest(t *testing.T) {
	h := time.Hour
	cases := []struct {
		name    string
		mod     func(*Policy)
		nilPol  bool
		who     *Principal
		secret  *Secret
		access  AccessKind
		start   time.Time
		end     time.Time
		dur     time.Duration
		comment string
		code    Code
		msg     string
		// on success, relative to t0
		wantStart, wantEnd, wantExpires time.Duration
	}{
		{name: "duration from now", dur: 2 * h, wantEnd: 2 * h, wantExpires: 24 * h},
		{name: "end from now", end: t0.Add(3 * h), wantEnd: 3 * h, wantExpires: 24 * h},
		{name: "end in another zone", end: t0.Add(3 * h).In(time.FixedZone("CET", 3600)), wantEnd: 3 * h, wantExpires: 24 * h},
		{name: "start just past is now", start: t0.Add(-30 * time.Second), dur: h, wantEnd: h, wantExpires: 24 * h},
		{name: "start just ahead is now", start: t0.Add(StartSkew), dur: h, wantEnd: h, wantExpires: 24 * h},
		{name: "start in the past", start: t0.Add(-StartSkew - time.Second), dur: h, code: CodeInvalid, msg: "is in the past"},
		{name: "future start", start: t0.Add(24 * h), dur: 2 * h, wantStart: 24 * h, wantEnd: 26 * h, wantExpires: 24 * h},
		{name: "future start not allowed", mod: func(p *Policy) { p.Approval.AllowFutureStart = false }, start: t0.Add(2 * h), dur: h, code: CodeInvalid, msg: "does not allow a later start"},
		{name: "future start too far", start: t0.Add(MaxStartAhead + h), dur: h, code: CodeInvalid, msg: "ahead"},
		{name: "end before start", end: t0.Add(-h), code: CodeInvalid, msg: "must be after start"},
		{name: "end equals start", start: t0.Add(2 * h), end: t0.Add(2 * h), code: CodeInvalid, msg: "must be after start"},
		{name: "end and duration", end: t0.Add(h), dur: h, code: CodeInvalid, msg: "not both"},
		{name: "neither end nor duration", code: CodeInvalid, msg: "give an end or a duration"},
		{name: "negative duration", dur: -h, code: CodeInvalid, msg: "positive"},
		{name: "duration at max", dur: 8 * h, wantEnd: 8 * h, wantExpires: 24 * h},
		{name: "duration over max", dur: 8*h + time.Minute, code: CodeInvalid, msg: "the window is 8h1m; this policy allows at most 8h"},
		{name: "end over max", end: t0.Add(9 * h), code: CodeInvalid, msg: "at most 8h"},
		{name: "clock at start: deadline is the end", mod: func(p *Policy) { p.Approval.ClockStarts = ClockAtStart }, dur: 2 * h, wantEnd: 2 * h, wantExpires: 2 * h},
		{name: "clock at start: deadline is the timeout", mod: func(p *Policy) { p.Approval.ClockStarts = ClockAtStart }, start: t0.Add(30 * h), dur: 2 * h, wantStart: 30 * h, wantEnd: 32 * h, wantExpires: 24 * h},
		{name: "kind needs no approval", access: AccessEdit, dur: h, code: CodeInvalid, msg: "no approval needed for edit access to /prod/db: edit directly"},
		{name: "no policy", nilPol: true, dur: h, code: CodeInvalid, msg: "no approval needed for view access to /prod/db: reveal directly"},
		{name: "policy without approval", mod: func(p *Policy) { p.Approval = nil }, dur: h, code: CodeInvalid, msg: "reveal directly"},
		{name: "checkout", access: AccessCheckout, dur: h, wantEnd: h, wantExpires: 24 * h},
		{name: "unknown kind", access: "read", dur: h, code: CodeInvalid, msg: "must be one of view, edit, checkout"},
		{name: "comment missing", comment: " ", dur: h, code: CodeInvalid, msg: "a comment is required"},
		{name: "comment fails the pattern", comment: "fixing stuff", dur: h, code: CodeInvalid, msg: "Enter the change or incident number"},
		{name: "comment trimmed", comment: "  INC7654321\n", dur: h, wantEnd: h, wantExpires: 24 * h},
		{name: "no principal", who: &Principal{}, dur: h, code: CodeUnauthenticated, msg: "sign in"},
		{name: "deleted secret", secret: &Secret{ID: "S2", Name: "x", Folder: "/", DeletedAt: &t0}, dur: h, code: CodeNotFound, msg: "not found"},
		{name: "broken policy", mod: func(p *Policy) { p.Approval.Steps[0].Quorum = 0 }, dur: h, code: CodeInternal},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := testPolicy()
			if c.mod != nil {
				c.mod(p)
			}
			if c.nilPol {
				p = nil
			}
			who, s, access, comment := alice, dbSecret, AccessView, "CHG1234567"
			if c.who != nil {
				who = c.who
			}
			if c.secret != nil {
				s = c.secret
			}
			if c.access != "" {
				access = c.access
			}
			if c.comment != "" {
				comment = c.comment
			}
			r, err := NewRequest(who, s, p, "folder:/prod", access, c.start, c.end, c.dur, comment, t0)
			wantErr(t, "NewRequest", err, c.code, c.msg)
			if c.code != "" {
				if r != nil {
					t.Fatal("a request came back with the error")
				}
				return
			}
			if !r.Start.Equal(t0.Add(c.wantStart)) || !r.End.Equal(t0.Add(c.wantEnd)) || !r.ExpiresAt.Equal(t0.Add(c.wantExpires)) {
				t.Fatalf("window %s..%s expires %s; want +%s..+%s expires +%s", r.Start, r.End, r.ExpiresAt, c.wantStart, c.wantEnd, c.wantExpires)
			}
			if r.Start.Location() != time.UTC || r.End.Location() != time.UTC {
				t.Fatalf("times not in UTC: %s %s", r.Start, r.End)
			}
			if r.Status != StatusPending || r.Step != 0 || r.Revision != 1 || len(r.Decisions) != 0 || r.GrantID != "" {
				t.Fatalf("fresh request: %+v", r)
			}
			if r.ID == "" || r.SecretID != s.ID || r.SecretPath != "/prod/db" || r.PolicyFrom != "folder:/prod" || r.Access != access {
				t.Fatalf("identity fields: %+v", r)
			}
			if r.Comment != strings.TrimSpace(comment) || !r.CreatedAt.Equal(t0) || !r.UpdatedAt.Equal(t0) {
				t.Fatalf("comment %q created %s", r.Comment, r.CreatedAt)
			}
		})
	}
}

func TestNewRequestSnapshots(t *testing.T) {
	p := testPolicy()
	p.Approval.ClockStarts = ""
	who := &Principal{Subject: "alice", Email: "alice@example.com", Groups: []string{"dba"}, Roles: []string{"user"}}
	r, err := NewRequest(who, dbSecret, p, "secret", AccessView, time.Time{}, time.Time{}, time.Hour, "CHG1234567", t0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Policy.Approval.ClockStarts != ClockAtApproval {
		t.Fatalf("an empty clockStarts is recorded as %q; want approval", r.Policy.Approval.ClockStarts)
	}
	before := snapshot(t, r)
	// Later edits to the policy or the principal must not reach the request.
	p.Approval.Steps[0].Approvers[0] = "group:everyone"
	p.Approval.Steps[0].Quorum = 1
	p.Approval.For[0] = AccessEdit
	p.Approval.MaxDuration = 0
	p.Comment.Pattern = ".*"
	who.Groups[0] = "admins"
	who.Roles[0] = RoleAdmin
	if after := snapshot(t, r); after != before {
		t.Fatalf("request changed with its sources:\n%s\n%s", before, after)
	}
	if r.Requester.Subject != "alice" || r.Requester.Email != "alice@example.com" || r.Requester.Groups[0] != "dba" {
		t.Fatalf("requester snapshot %+v", r.Requester)
	}
}

// TestDecide plays scripts of decisions against the two-step test policy
// (step 1: two of group:dba; step 2: one of user:sec, group:secops).
func TestDecide(t *testing.T) {
	type move struct {
		who     *Principal
		deny    bool
		at      time.Duration // after t0
		comment string
		code    Code // "" for success
		msg     string
	}
	h := time.Hour
	cases := []struct {
		name      string
		mod       func(*Policy)
		moves     []move
		status    RequestStatus
		step      int
		approvals int // distinct approvals of the final current step
		grant     bool
	}{
		{name: "self-approval through a group", moves: []move{{who: alice, code: CodeForbidden, msg: "you cannot approve your own request"}}, status: StatusPending},
		{name: "self-approval with another token", moves: []move{{who: aliceBare, code: CodeForbidden, msg: "you cannot approve your own request"}}, status: StatusPending},
		{name: "self-approval from a second account", moves: []move{{who: aliceAlt, code: CodeForbidden, msg: "you cannot approve your own request"}}, status: StatusPending},
		{name: "self-approval when named directly", mod: func(p *Policy) { p.Approval.Steps[0].Approvers = []string{"user:alice", "user:bob"} },
			moves: []move{{who: alice, code: CodeForbidden, msg: "own request"}}, status: StatusPending},
		{name: "self-denial", moves: []move{{who: alice, deny: true, code: CodeForbidden, msg: "cancel it instead"}}, status: StatusPending},
		{name: "not an approver", moves: []move{{who: eve, code: CodeForbidden, msg: "not an approver of step 1 (dba)"}}, status: StatusPending},
		{name: "admin is not an approver", moves: []move{{who: root, code: CodeForbidden, msg: "step 1"}}, status: StatusPending},
		{name: "later step's approver waits", moves: []move{{who: sec, code: CodeForbidden, msg: "not an approver of step 1"}}, status: StatusPending},
		{name: "no approver", moves: []move{{who: nil, code: CodeUnauthenticated}}, status: StatusPending},
		{name: "one approval is not a quorum", moves: []move{{who: bob}}, status: StatusPending, approvals: 1},
		{name: "same person twice counts once", moves: []move{{who: bob}, {who: bob, code: CodeConflict, msg: "already decided"}}, status: StatusPending, approvals: 1},
		{name: "same person, two accounts, counts once", moves: []move{{who: bob}, {who: bobAlt, code: CodeConflict, msg: "already decided"}}, status: StatusPending, approvals: 1},
		{name: "a deny after an approval by the same person", moves: []move{{who: bob}, {who: bob, deny: true, code: CodeConflict, msg: "already decided"}}, status: StatusPending, approvals: 1},
		{name: "quorum of distinct people opens the next step", moves: []move{{who: bob}, {who: carol}}, status: StatusPending, step: 1},
		{name: "every step approved grants", moves: []move{{who: bob}, {who: carol}, {who: sec}}, status: StatusActive, step: 1, approvals: 1, grant: true},
		{name: "later step through a group", moves: []move{{who: bob, at: h}, {who: carol, at: 2 * h}, {who: frank, at: 3 * h}}, status: StatusActive, step: 1, approvals: 1, grant: true},
		{name: "step order is enforced", moves: []move{{who: bob}, {who: sec, code: CodeForbidden, msg: "step 1"}, {who: carol}, {who: sec}}, status: StatusActive, step: 1, approvals: 1, grant: true},
		{name: "separation of duties across steps", mod: func(p *Policy) { p.Approval.Steps[1].Approvers = []string{"group:dba"} },
			moves: []move{{who: bob}, {who: carol}, {who: bob, code: CodeConflict, msg: "already decided on this request (step 1 (dba))"}, {who: dave}}, status: StatusActive, step: 1, approvals: 1, grant: true},
		{name: "deny ends the request", moves: []move{{who: bob, deny: true, comment: "not during the freeze"}, {who: carol, code: CodeConflict, msg: "is denied"}}, status: StatusDenied},
		{name: "deny after approvals", moves: []move{{who: bob}, {who: carol}, {who: frank, deny: true}}, status: StatusDenied, step: 1},
		{name: "no decision after approval", moves: []move{{who: bob}, {who: carol}, {who: sec}, {who: dave, code: CodeConflict, msg: "is active"}}, status: StatusActive, step: 1, approvals: 1, grant: true},
		{name: "decision at the deadline refused", moves: []move{{who: bob, at: 24 * h, code: CodeConflict, msg: "request timed out"}}, status: StatusPending},
		{name: "decision after the deadline refused", moves: []move{{who: bob}, {who: carol, at: 30 * h, code: CodeConflict, msg: "request timed out"}}, status: StatusPending, approvals: 1},
		{name: "decision a nanosecond before the deadline", moves: []move{{who: bob, at: 24*h - 1}, {who: carol, at: 24*h - 1}}, status: StatusPending, step: 1},
		{name: "over-long comment", moves: []move{{who: bob, comment: strings.Repeat("x", MaxCommentLength+1), code: CodeInvalid, msg: "longer than"}}, status: StatusPending},
		{name: "quorum of one", mod: oneStep, moves: []move{{who: carol, code: CodeForbidden, msg: "step 1"}, {who: bob}}, status: StatusActive, approvals: 1, grant: true},
		{name: "each step counts its own approvals", mod: func(p *Policy) { p.Approval.Steps[1].Quorum = 2 },
			moves: []move{{who: bob}, {who: carol}, {who: sec}}, status: StatusPending, step: 1, approvals: 1},
		{name: "two steps of two", mod: func(p *Policy) { p.Approval.Steps[1].Quorum = 2 },
			moves: []move{{who: bob}, {who: carol}, {who: sec}, {who: frank}}, status: StatusActive, step: 1, approvals: 2, grant: true},
		{name: "quorum of three", mod: func(p *Policy) { p.Approval.Steps[0].Quorum = 3 },
			moves: []move{{who: bob}, {who: carol}, {who: sec, code: CodeForbidden}, {who: dave}, {who: sec}}, status: StatusActive, step: 1, approvals: 1, grant: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newTestRequest(t, c.mod, time.Time{}, 2*h)
			var grant *Grant
			for i, m := range c.moves {
				before := snapshot(t, r)
				rev := r.Revision
				g, err := r.Decide(m.who, !m.deny, m.comment, t0.Add(m.at))
				wantErr(t, "move "+string(rune('1'+i)), err, m.code, m.msg)
				if err != nil {
					if g != nil || snapshot(t, r) != before {
						t.Fatalf("move %d: a refused decision changed the request or returned a grant", i+1)
					}
					continue
				}
				if r.Revision != rev+1 || !r.UpdatedAt.Equal(t0.Add(m.at)) {
					t.Fatalf("move %d: revision %d updated %s", i+1, r.Revision, r.UpdatedAt)
				}
				d := r.Decisions[len(r.Decisions)-1]
				if d.Approver.Subject != m.who.Subject || d.Approve == m.deny || d.ID == "" || !d.Time.Equal(t0.Add(m.at)) || d.Comment != m.comment {
					t.Fatalf("move %d: decision recorded as %+v", i+1, d)
				}
				if g != nil {
					grant = g
				}
			}
			if r.Status != c.status || r.Step != c.step || r.Approvals(r.Step) != c.approvals {
				t.Fatalf("ended %s at step %d with %d approvals; want %s at step %d with %d", r.Status, r.Step, r.Approvals(r.Step), c.status, c.step, c.approvals)
			}
			if (grant != nil) != c.grant {
				t.Fatalf("grant %v; want one: %v", grant, c.grant)
			}
			if r.Status.Terminal() || r.Status == StatusActive {
				if r.DecidedAt.IsZero() {
					t.Fatal("decided request without DecidedAt")
				}
			}
			if grant != nil {
				if grant.RequestID != r.ID || grant.ID != r.GrantID || grant.Subject != "alice" || grant.SecretID != "S1" ||
					grant.SecretPath != "/prod/db" || grant.Access != AccessView || grant.Revision != 1 {
					t.Fatalf("grant %+v does not match request %+v", grant, r)
				}
				if !grant.Start.Equal(r.GrantStart) || !grant.End.Equal(r.GrantEnd) || grant.End.Sub(grant.Start) != 2*h {
					t.Fatalf("grant window %s..%s, request says %s..%s", grant.Start, grant.End, r.GrantStart, r.GrantEnd)
				}
			}
		})
	}
}

func TestGrantWindow(t *testing.T) {
	h := time.Hour
	cases := []struct {
		name      string
		clock     ClockStart
		start     time.Duration // requested start after t0; 0 = now
		approveAt time.Duration
		code      Code
		from, to  time.Duration // the grant's window after t0
		status    RequestStatus
	}{
		{name: "approval clock runs from approval", clock: ClockAtApproval, approveAt: 30 * time.Minute, from: 30 * time.Minute, to: 150 * time.Minute, status: StatusActive},
		{name: "empty clock means approval", clock: "", approveAt: h, from: h, to: 3 * h, status: StatusActive},
		{name: "start clock keeps the requested end", clock: ClockAtStart, approveAt: 30 * time.Minute, from: 30 * time.Minute, to: 2 * h, status: StatusActive},
		{name: "start clock, booked ahead", clock: ClockAtStart, start: 10 * h, approveAt: h, from: 10 * h, to: 12 * h, status: StatusApproved},
		{name: "approval clock, booked ahead", clock: ClockAtApproval, start: 10 * h, approveAt: h, from: 10 * h, to: 12 * h, status: StatusApproved},
		{name: "approval clock, approved after the start", clock: ClockAtApproval, start: 2 * h, approveAt: 3 * h, from: 3 * h, to: 5 * h, status: StatusActive},
		{name: "start clock, approved after the start", clock: ClockAtStart, start: 2 * h, approveAt: 3 * h, from: 3 * h, to: 4 * h, status: StatusActive},
		{name: "start clock, approved right at the start", clock: ClockAtStart, start: 2 * h, approveAt: 2 * h, from: 2 * h, to: 4 * h, status: StatusActive},
		{name: "start clock, approved at the requested end", clock: ClockAtStart, start: 2 * h, approveAt: 4 * h, code: CodeConflict},
		{name: "start clock, approved a nanosecond before the end", clock: ClockAtStart, start: 2 * h, approveAt: 4*h - 1, from: 4*h - 1, to: 4 * h, status: StatusActive},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Time{}
			if c.start != 0 {
				start = t0.Add(c.start)
			}
			r := newTestRequest(t, func(p *Policy) { oneStep(p); p.Approval.ClockStarts = c.clock }, start, 2*h)
			g, err := r.Decide(bob, true, "", t0.Add(c.approveAt))
			wantErr(t, "Decide", err, c.code, "timed out")
			if err != nil {
				return
			}
			if !g.Start.Equal(t0.Add(c.from)) || !g.End.Equal(t0.Add(c.to)) {
				t.Fatalf("grant window +%s..+%s; want +%s..+%s", g.Start.Sub(t0), g.End.Sub(t0), c.from, c.to)
			}
			if g.Status != c.status || r.Status != c.status {
				t.Fatalf("grant %s request %s; want %s", g.Status, r.Status, c.status)
			}
		})
	}
}

// A request booked in advance becomes active at its start and expires at
// its end, and the request follows its grant.
func TestRequestInAdvance(t *testing.T) {
	h := time.Hour
	r := newTestRequest(t, oneStep, t0.Add(10*h), 2*h)
	g, err := r.Decide(bob, true, "ok for the window", t0.Add(h))
	if err != nil {
		t.Fatal(err)
	}
	if g.Status != StatusApproved || g.Authorizes("alice", AccessView, t0.Add(10*h-1)) {
		t.Fatalf("a grant booked ahead authorizes early: %+v", g)
	}
	wantErr(t, "early activation", g.Activate(t0.Add(10*h-1)), CodeConflict, "starts at")
	if !g.Authorizes("alice", AccessView, t0.Add(10*h)) {
		t.Fatal("grant does not authorize at its start (before activation is recorded)")
	}
	if err := g.Activate(t0.Add(10 * h)); err != nil || g.Status != StatusActive || g.Revision != 2 {
		t.Fatalf("Activate: %v, %s rev %d", err, g.Status, g.Revision)
	}
	rev := r.Revision
	if err := r.SyncGrant(g, t0.Add(10*h)); err != nil || r.Status != StatusActive || r.Revision != rev+1 {
		t.Fatalf("SyncGrant: %v, %s rev %d", err, r.Status, r.Revision)
	}
	if err := r.SyncGrant(g, t0.Add(11*h)); err != nil || r.Revision != rev+1 {
		t.Fatalf("SyncGrant with nothing new: %v, rev %d", err, r.Revision)
	}
	if err := g.Expire(t0.Add(12 * h)); err != nil {
		t.Fatal(err)
	}
	if err := r.SyncGrant(g, t0.Add(12*h)); err != nil || r.Status != StatusExpired {
		t.Fatalf("SyncGrant after expiry: %v, %s", err, r.Status)
	}
	wantErr(t, "sync a terminal request", r.SyncGrant(g, t0.Add(13*h)), CodeConflict, "expired")
	other := *g
	other.ID = "G-other"
	r2 := newTestRequest(t, oneStep, time.Time{}, h)
	if _, err := r2.Decide(bob, true, "", t0); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "sync another grant", r2.SyncGrant(&other, t0), CodeInvalid, "does not belong")
	wantErr(t, "sync nil", r2.SyncGrant(nil, t0), CodeInvalid, "does not belong")
}

func TestCancel(t *testing.T) {
	h := time.Hour
	pending := func(t *testing.T) *Request { return newTestRequest(t, nil, time.Time{}, h) }
	ahead := func(t *testing.T) *Request {
		r := newTestRequest(t, oneStep, t0.Add(10*h), h)
		if _, err := r.Decide(bob, true, "", t0.Add(h)); err != nil {
			t.Fatal(err)
		}
		return r
	}
	active := func(t *testing.T) *Request {
		r := newTestRequest(t, oneStep, time.Time{}, h)
		if _, err := r.Decide(bob, true, "", t0); err != nil {
			t.Fatal(err)
		}
		return r
	}
	denied := func(t *testing.T) *Request {
		r := pending(t)
		if _, err := r.Decide(bob, false, "", t0); err != nil {
			t.Fatal(err)
		}
		return r
	}
	cancelled := func(t *testing.T) *Request {
		r := pending(t)
		if err := r.Cancel(alice, t0); err != nil {
			t.Fatal(err)
		}
		return r
	}
	cases := []struct {
		name  string
		setup func(*testing.T) *Request
		by    *Principal
		at    time.Duration
		code  Code
		msg   string
	}{
		{name: "requester cancels pending", setup: pending, by: alice, at: h},
		{name: "requester from another token", setup: pending, by: aliceBare},
		{name: "admin cancels pending", setup: pending, by: root},
		{name: "approver may not cancel", setup: pending, by: bob, code: CodeForbidden, msg: "only the requester or an admin"},
		{name: "anonymous", setup: pending, by: nil, code: CodeUnauthenticated},
		{name: "pending past its deadline", setup: pending, by: alice, at: 24 * h, code: CodeConflict, msg: "timed out"},
		{name: "approved, window not started", setup: ahead, by: alice, at: 10*h - 1},
		{name: "approved, window started by the clock", setup: ahead, by: alice, at: 10 * h, code: CodeConflict, msg: "revoke the grant instead"},
		{name: "active", setup: active, by: alice, code: CodeConflict, msg: "revoke its grant instead"},
		{name: "denied", setup: denied, by: alice, code: CodeConflict, msg: "is denied"},
		{name: "twice", setup: cancelled, by: alice, code: CodeConflict, msg: "is cancelled"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := c.setup(t)
			before, rev := snapshot(t, r), r.Revision
			err := r.Cancel(c.by, t0.Add(c.at))
			wantErr(t, "Cancel", err, c.code, c.msg)
			if err != nil {
				if snapshot(t, r) != before {
					t.Fatal("a refused cancel changed the request")
				}
				return
			}
			if r.Status != StatusCancelled || r.CancelledBy != c.by.Subject || r.Revision != rev+1 || !r.UpdatedAt.Equal(t0.Add(c.at)) {
				t.Fatalf("after cancel: %s by %q rev %d", r.Status, r.CancelledBy, r.Revision)
			}
			if _, err := r.Decide(carol, true, "", t0.Add(c.at)); ErrorCode(err) != CodeConflict {
				t.Fatalf("decision on a cancelled request: %v", err)
			}
		})
	}
}

func TestTimeOut(t *testing.T) {
	h := time.Hour
	cases := []struct {
		name  string
		clock ClockStart
		moves []*Principal // approvals before the time-out
		at    time.Duration
		code  Code
		msg   string
	}{
		{name: "before the deadline", at: 24*h - 1, code: CodeConflict, msg: "may be decided until"},
		{name: "at the deadline", at: 24 * h},
		{name: "long after, partly approved", moves: []*Principal{bob}, at: 100 * h},
		{name: "start clock: at the requested end", clock: ClockAtStart, at: 2 * h},
		{name: "start clock: before the requested end", clock: ClockAtStart, at: 2*h - 1, code: CodeConflict},
		{name: "approved", moves: []*Principal{bob, carol, sec}, at: 24 * h, code: CodeConflict, msg: "is active, not pending"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newTestRequest(t, func(p *Policy) { p.Approval.ClockStarts = c.clock }, time.Time{}, 2*h)
			for _, who := range c.moves {
				if _, err := r.Decide(who, true, "", t0); err != nil {
					t.Fatal(err)
				}
			}
			before := snapshot(t, r)
			err := r.TimeOut(t0.Add(c.at))
			wantErr(t, "TimeOut", err, c.code, c.msg)
			if err != nil {
				if snapshot(t, r) != before {
					t.Fatal("a refused time-out changed the request")
				}
				return
			}
			if r.Status != StatusTimedOut || !r.Status.Terminal() {
				t.Fatalf("status %s", r.Status)
			}
			wantErr(t, "decide after time-out", func() error { _, err := r.Decide(dave, true, "", t0); return err }(), CodeConflict, "timed_out")
			wantErr(t, "time out twice", r.TimeOut(t0.Add(c.at)), CodeConflict, "timed_out")
		})
	}
}

func TestEligible(t *testing.T) {
	h := time.Hour
	r := newTestRequest(t, nil, time.Time{}, h)
	check := func(when string, p *Principal, at time.Duration, want bool) {
		t.Helper()
		if got := r.Eligible(p, t0.Add(at)); got != want {
			t.Errorf("%s: Eligible(%v) = %v; want %v", when, p, got, want)
		}
	}
	check("step 1", bob, 0, true)
	check("step 1", carol, 0, true)
	check("step 1", alice, 0, false)
	check("step 1", aliceAlt, 0, false)
	check("step 1", sec, 0, false)
	check("step 1", eve, 0, false)
	check("step 1", nil, 0, false)
	check("at the deadline", bob, 24*h, false)
	if _, err := r.Decide(bob, true, "", t0); err != nil {
		t.Fatal(err)
	}
	check("after deciding", bob, 0, false)
	check("after deciding", bobAlt, 0, false)
	check("after bob", carol, 0, true)
	if _, err := r.Decide(carol, true, "", t0); err != nil {
		t.Fatal(err)
	}
	check("step 2", sec, 0, true)
	check("step 2", frank, 0, true)
	check("step 2", dave, 0, false)
	if _, err := r.Decide(sec, true, "", t0); err != nil {
		t.Fatal(err)
	}
	check("approved", frank, 0, false)
}

func testGrant(status RequestStatus, access AccessKind) *Grant {
	return &Grant{ID: "G1", RequestID: "R1", SecretID: "S1", Subject: "alice", Access: access,
		Start: t0.Add(time.Hour), End: t0.Add(3 * time.Hour), Status: status, Revision: 1}
}

func TestAuthorizes(t *testing.T) {
	h := time.Hour
	start, end := time.Hour, 3*time.Hour
	cases := []struct {
		name    string
		status  RequestStatus
		grantee AccessKind
		subject string
		want    AccessKind
		at      time.Duration
		ok      bool
	}{
		{name: "exactly at start", at: start, ok: true},
		{name: "a nanosecond before start", at: start - 1},
		{name: "a nanosecond before end", at: end - 1, ok: true},
		{name: "exactly at end", at: end},
		{name: "long after end, never marked expired", at: end + 100*h},
		{name: "approved, activation not recorded", status: StatusApproved, at: start + time.Minute, ok: true},
		{name: "revoked within the window", status: StatusRevoked, at: 2 * h},
		{name: "marked expired within the window", status: StatusExpired, at: 2 * h},
		{name: "cancelled", status: StatusCancelled, at: 2 * h},
		{name: "pending", status: StatusPending, at: 2 * h},
		{name: "someone else", subject: "bob", at: 2 * h},
		{name: "no subject", subject: "-", at: 2 * h},
		{name: "edit covers view", grantee: AccessEdit, want: AccessView, at: 2 * h, ok: true},
		{name: "edit covers edit", grantee: AccessEdit, want: AccessEdit, at: 2 * h, ok: true},
		{name: "edit does not cover checkout", grantee: AccessEdit, want: AccessCheckout, at: 2 * h},
		{name: "checkout covers view", grantee: AccessCheckout, want: AccessView, at: 2 * h, ok: true},
		{name: "checkout does not cover edit", grantee: AccessCheckout, want: AccessEdit, at: 2 * h},
		{name: "view does not cover edit", want: AccessEdit, at: 2 * h},
		{name: "view does not cover checkout", want: AccessCheckout, at: 2 * h},
		{name: "unknown kind", want: "owner", at: 2 * h},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, grantee, subject, want := StatusActive, AccessView, "alice", AccessView
			if c.status != "" {
				status = c.status
			}
			if c.grantee != "" {
				grantee = c.grantee
			}
			if c.subject == "-" {
				subject = ""
			} else if c.subject != "" {
				subject = c.subject
			}
			if c.want != "" {
				want = c.want
			}
			if got := testGrant(status, grantee).Authorizes(subject, want, t0.Add(c.at)); got != c.ok {
				t.Fatalf("Authorizes = %v; want %v", got, c.ok)
			}
		})
	}
	var none *Grant
	if none.Authorizes("alice", AccessView, t0.Add(2*h)) {
		t.Fatal("a nil grant authorizes")
	}
	anon := testGrant(StatusActive, AccessView)
	anon.Subject = ""
	if anon.Authorizes("", AccessView, t0.Add(2*h)) {
		t.Fatal("a grant without a subject authorizes the empty subject")
	}
}

func TestGrantStatusAt(t *testing.T) {
	h := time.Hour
	cases := []struct {
		stored RequestStatus
		at     time.Duration
		want   RequestStatus
	}{
		{StatusApproved, h - 1, StatusApproved},
		{StatusApproved, h, StatusActive},
		{StatusActive, 3*h - 1, StatusActive},
		{StatusActive, 3 * h, StatusExpired},
		{StatusApproved, 5 * h, StatusExpired},
		{StatusRevoked, 2 * h, StatusRevoked},
		{StatusExpired, 2 * h, StatusExpired},
	}
	for _, c := range cases {
		if got := testGrant(c.stored, AccessView).StatusAt(t0.Add(c.at)); got != c.want {
			t.Errorf("stored %s at +%s: %s; want %s", c.stored, c.at, got, c.want)
		}
	}
}

func TestGrantTransitions(t *testing.T) {
	h := time.Hour
	cases := []struct {
		name   string
		stored RequestStatus
		op     string // activate, expire, revoke
		by     *Principal
		at     time.Duration
		code   Code
		msg    string
		want   RequestStatus
	}{
		{name: "activate before start", stored: StatusApproved, op: "activate", at: h - 1, code: CodeConflict, msg: "starts at"},
		{name: "activate at start", stored: StatusApproved, op: "activate", at: h, want: StatusActive},
		{name: "activate after end", stored: StatusApproved, op: "activate", at: 3 * h, code: CodeConflict, msg: "expire it instead"},
		{name: "activate twice", stored: StatusActive, op: "activate", at: 2 * h, code: CodeConflict, msg: "not approved"},
		{name: "activate revoked", stored: StatusRevoked, op: "activate", at: 2 * h, code: CodeConflict},
		{name: "expire before end", stored: StatusActive, op: "expire", at: 3*h - 1, code: CodeConflict, msg: "in force until"},
		{name: "expire at end", stored: StatusActive, op: "expire", at: 3 * h, want: StatusExpired},
		{name: "expire never activated", stored: StatusApproved, op: "expire", at: 4 * h, want: StatusExpired},
		{name: "expire twice", stored: StatusExpired, op: "expire", at: 4 * h, code: CodeConflict, msg: "is expired"},
		{name: "expire revoked", stored: StatusRevoked, op: "expire", at: 4 * h, code: CodeConflict, msg: "is revoked"},
		{name: "holder revokes", stored: StatusActive, op: "revoke", by: alice, at: 2 * h, want: StatusRevoked},
		{name: "admin revokes", stored: StatusActive, op: "revoke", by: root, at: 2 * h, want: StatusRevoked},
		{name: "admin revokes before start", stored: StatusApproved, op: "revoke", by: root, want: StatusRevoked},
		{name: "approver may not revoke", stored: StatusActive, op: "revoke", by: bob, at: 2 * h, code: CodeForbidden, msg: "holder or an admin"},
		{name: "anonymous revoke", stored: StatusActive, op: "revoke", by: nil, at: 2 * h, code: CodeUnauthenticated},
		{name: "revoke twice", stored: StatusRevoked, op: "revoke", by: root, at: 2 * h, code: CodeConflict, msg: "is revoked"},
		{name: "revoke expired", stored: StatusExpired, op: "revoke", by: root, at: 2 * h, code: CodeConflict, msg: "is expired"},
		{name: "revoke at end", stored: StatusActive, op: "revoke", by: root, at: 3 * h, code: CodeConflict, msg: "already ended"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := testGrant(c.stored, AccessView)
			before := snapshot(t, g)
			now := t0.Add(c.at)
			var err error
			switch c.op {
			case "activate":
				err = g.Activate(now)
			case "expire":
				err = g.Expire(now)
			case "revoke":
				err = g.Revoke(c.by, now)
			}
			wantErr(t, c.op, err, c.code, c.msg)
			if err != nil {
				if snapshot(t, g) != before {
					t.Fatal("a refused transition changed the grant")
				}
				return
			}
			if g.Status != c.want || g.Revision != 2 {
				t.Fatalf("status %s rev %d; want %s rev 2", g.Status, g.Revision, c.want)
			}
			if c.op == "revoke" {
				if g.RevokedAt == nil || !g.RevokedAt.Equal(now) || g.RevokedBy != c.by.Subject {
					t.Fatalf("revoked at %v by %q", g.RevokedAt, g.RevokedBy)
				}
				if g.Authorizes("alice", AccessView, t0.Add(2*h)) {
					t.Fatal("a revoked grant still authorizes within its window")
				}
			}
		})
	}
}

func TestRequestJSON(t *testing.T) {
	r := newTestRequest(t, oneStep, time.Time{}, time.Hour)
	pending := snapshot(t, r)
	for _, absent := range []string{`"decidedAt"`, `"grantStart"`, `"grantEnd"`, `"grantId"`, `"decisions"`} {
		if strings.Contains(pending, absent) {
			t.Errorf("a pending request's JSON has %s: %s", absent, pending)
		}
	}
	g, err := r.Decide(bob, true, "ok", t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	b := snapshot(t, r)
	for _, key := range []string{`"secretId":"S1"`, `"secretPath":"/prod/db"`, `"policyFrom":"folder:/prod"`, `"requester":{"sub":"alice"`,
		`"expiresAt":"2026-11-23T12:00:00Z"`, `"grantStart":"2026-11-22T12:01:00Z"`, `"grantId":"` + g.ID, `"pendingTimeout":"24h0m0s"`, `"status":"active"`} {
		if !strings.Contains(b, key) {
			t.Errorf("request JSON lacks %s: %s", key, b)
		}
	}
	var back Request
	if err := json.Unmarshal([]byte(b), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, r) {
		t.Fatalf("request does not round-trip:\n%+v\n%+v", &back, r)
	}
	var gb Grant
	if err := json.Unmarshal([]byte(snapshot(t, g)), &gb); err != nil || !reflect.DeepEqual(&gb, g) {
		t.Fatalf("grant does not round-trip (%v):\n%+v\n%+v", err, &gb, g)
	}
}

// Every exported field has a camelCase JSON name.
func TestRequestJSONTags(t *testing.T) {
	for _, v := range []any{Request{}, Decision{}, Grant{}} {
		typ := reflect.TypeOf(v)
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" || strings.ContainsAny(name, "_-") || strings.ToLower(name[:1]) != name[:1] {
				t.Errorf("%s.%s has json name %q", typ.Name(), f.Name, name)
			}
		}
	}
}

func TestStatusesAndKinds(t *testing.T) {
	terminal := map[RequestStatus]bool{
		StatusPending: false, StatusApproved: false, StatusActive: false,
		StatusExpired: true, StatusDenied: true, StatusCancelled: true, StatusTimedOut: true, StatusRevoked: true,
	}
	for s, want := range terminal {
		if s.Terminal() != want {
			t.Errorf("%s.Terminal() = %v", s, !want)
		}
	}
	covers := []struct {
		have, want AccessKind
		ok         bool
	}{
		{AccessView, AccessView, true}, {AccessView, AccessEdit, false}, {AccessView, AccessCheckout, false},
		{AccessEdit, AccessView, true}, {AccessEdit, AccessEdit, true}, {AccessEdit, AccessCheckout, false},
		{AccessCheckout, AccessView, true}, {AccessCheckout, AccessCheckout, true}, {AccessCheckout, AccessEdit, false},
		{"", AccessView, false}, {AccessView, "", false}, {"owner", "owner", false},
	}
	for _, c := range covers {
		if c.have.Covers(c.want) != c.ok {
			t.Errorf("%q.Covers(%q) = %v", c.have, c.want, !c.ok)
		}
	}
	if !InWindow(t0, t0.Add(1), t0) || InWindow(t0, t0.Add(1), t0.Add(1)) || InWindow(t0, t0, t0) {
		t.Fatal("InWindow is not [start, end)")
	}
}

// Approvals counts people, not decisions, even in a history Decide would
// never have written (a corrupted or hand-edited record).
func TestApprovalsCountsPeople(t *testing.T) {
	r := &Request{Decisions: []Decision{
		{Approver: actorOf(bob), Step: 0, Approve: true},
		{Approver: actorOf(bob), Step: 0, Approve: true},
		{Approver: actorOf(bobAlt), Step: 0, Approve: true},
		{Approver: actorOf(carol), Step: 0, Approve: false},
		{Approver: actorOf(dave), Step: 1, Approve: true},
		{Approver: actorOf(sec), Step: 0, Approve: true},
	}}
	if got := r.Approvals(0); got != 2 {
		t.Fatalf("Approvals(0) = %d; want 2 (bob once, sec)", got)
	}
	if got := r.Approvals(1); got != 1 {
		t.Fatalf("Approvals(1) = %d; want 1", got)
	}
}
