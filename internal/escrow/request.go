package escrow

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// RequestStatus is where an access request, or its grant, is in its
// lifecycle:
//
//	pending → approved → active → expired
//	pending → denied | cancelled | timed_out
//	approved → cancelled            (by the requester, before the window starts)
//	approved | active → revoked
//
// A grant only ever holds approved (its window has not started), active,
// expired or revoked.
type RequestStatus string

// The statuses. Their string values are part of the public API.
const (
	StatusPending   RequestStatus = "pending"
	StatusApproved  RequestStatus = "approved"
	StatusActive    RequestStatus = "active"
	StatusExpired   RequestStatus = "expired"
	StatusDenied    RequestStatus = "denied"
	StatusCancelled RequestStatus = "cancelled"
	StatusTimedOut  RequestStatus = "timed_out"
	StatusRevoked   RequestStatus = "revoked"
)

// Terminal reports whether s is an end state: nothing changes it again.
func (s RequestStatus) Terminal() bool {
	switch s {
	case StatusExpired, StatusDenied, StatusCancelled, StatusTimedOut, StatusRevoked:
		return true
	}
	return false
}

// Limits on a requested window.
const (
	// StartSkew absorbs clock differences between client and server: a
	// start this close to now (either side) means now.
	StartSkew = time.Minute
	// MaxStartAhead bounds how far ahead a request may be booked.
	MaxStartAhead = 365 * 24 * time.Hour
)

// InWindow reports whether now lies in the half-open window [start, end):
// the end itself is already outside, so a grant never outlives its end by
// even a nanosecond.
func InWindow(start, end, now time.Time) bool {
	return !now.Before(start) && now.Before(end)
}

// Covers reports whether a grant for k also allows want. A grant for edit
// or checkout includes reading the value (view); nothing else is implied.
func (k AccessKind) Covers(want AccessKind) bool {
	if !k.Valid() || !want.Valid() {
		return false
	}
	return k == want || want == AccessView
}

// Request is one request for time-boxed access to a protected secret. It
// carries snapshots (requester, policy) taken when it was made, so that a
// later policy edit or group change never alters a request in flight.
//
// Every successful state change bumps Revision by one and sets UpdatedAt;
// stores write the request conditional on the previous Revision. A method
// that returns an error leaves the request unchanged.
type Request struct {
	ID         string     `json:"id"`
	SecretID   string     `json:"secretId"`
	SecretPath string     `json:"secretPath"`
	Requester  Actor      `json:"requester"`
	Access     AccessKind `json:"access"`
	// Start and End are the requested window; End = Start + duration when a
	// duration was given. The grant's real window is GrantStart..GrantEnd.
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Comment string    `json:"comment,omitempty"`
	Ticket  string    `json:"ticket,omitempty"`
	// TicketInfo is the ticket as its system described it when it was
	// validated, for approvers and auditors.
	TicketInfo *Ticket       `json:"ticketInfo,omitempty"`
	Status     RequestStatus `json:"status"`
	// Policy is the effective policy when the request was made, with
	// approval.clockStarts made explicit; PolicyFrom says where it came
	// from ("secret", "folder:/prod").
	Policy     Policy `json:"policy"`
	PolicyFrom string `json:"policyFrom"`
	// Step is the index of the approval step being decided; it stays on
	// the last step once the request is approved.
	Step      int        `json:"step"`
	Decisions []Decision `json:"decisions,omitempty"`
	CreatedAt time.Time  `json:"createdAt"`
	UpdatedAt time.Time  `json:"updatedAt"`
	// ExpiresAt is the pending deadline: CreatedAt + pendingTimeout, or the
	// requested end if that comes first and the clock starts at the
	// requested start (an approval after the window is useless).
	ExpiresAt   time.Time `json:"expiresAt"`
	DecidedAt   time.Time `json:"decidedAt,omitzero"`
	CancelledBy string    `json:"cancelledBy,omitempty"`
	GrantID     string    `json:"grantId,omitempty"`
	GrantStart  time.Time `json:"grantStart,omitzero"`
	GrantEnd    time.Time `json:"grantEnd,omitzero"`
	Revision    int64     `json:"revision"`
	// WorkflowToken is the task token the workflow waits on for the
	// decision. It is a capability: stores keep it, the API never shows it
	// (Public), and no link or mail carries it.
	WorkflowToken string `json:"workflowToken,omitempty"`
}

// Public returns a copy of r without its workflow token, for the API.
func (r *Request) Public() *Request {
	c := *r
	c.WorkflowToken = ""
	return &c
}

// Decision is one approver's approve or deny, kept in the request's
// history.
type Decision struct {
	ID       string    `json:"id"`
	Approver Actor     `json:"approver"`
	Step     int       `json:"step"`
	Approve  bool      `json:"approve"`
	Comment  string    `json:"comment,omitempty"`
	Time     time.Time `json:"time"`
}

// Grant is approved, time-boxed access of one kind to one secret for one
// subject. Whether it authorizes is decided from the clock as well as the
// status (Authorizes), so a grant past its end never authorizes even if
// nothing ever marked it expired.
type Grant struct {
	ID         string        `json:"id"`
	RequestID  string        `json:"requestId"`
	SecretID   string        `json:"secretId"`
	SecretPath string        `json:"secretPath"`
	Subject    string        `json:"subject"`
	Access     AccessKind    `json:"access"`
	Start      time.Time     `json:"start"`
	End        time.Time     `json:"end"`
	Status     RequestStatus `json:"status"`
	Ticket     string        `json:"ticket,omitempty"`
	CreatedAt  time.Time     `json:"createdAt"`
	RevokedAt  *time.Time    `json:"revokedAt,omitempty"`
	RevokedBy  string        `json:"revokedBy,omitempty"`
	Revision   int64         `json:"revision"`
}

// NewRequest validates and builds a pending request by p for access to
// sec under policy (the effective policy, from EffectivePolicy). It does not
// check the ACL: a policy adds conditions on top of it, so the caller checks
// that p may use the secret at all first.
//
// The window: a zero start means now; a start within StartSkew of now is
// now; an earlier start is refused, and a later one needs the policy's
// allowFutureStart. Exactly one of end and duration must be given, and the
// window may not exceed the policy's maxDuration.
//
// Returns ErrUnauthenticated without a principal, ErrNotFound for a
// deleted secret, ErrInvalid for a kind that needs no approval, a comment
// the policy refuses (with the policy's message) or a bad window, and
// ErrInternal for a policy that does not validate.
func NewRequest(p *Principal, sec *Secret, policy *Policy, policyFrom string, access AccessKind, start, end time.Time, duration time.Duration, comment string, now time.Time) (*Request, error) {
	if p == nil || p.Subject == "" {
		return nil, Errorf(CodeUnauthenticated, "sign in to request access")
	}
	if sec == nil || sec.Deleted() {
		return nil, Errorf(CodeNotFound, "secret not found")
	}
	if !access.Valid() {
		return nil, Errorf(CodeInvalid, "access %q must be one of view, edit, checkout", access)
	}
	if policy == nil || !policy.Approval.Requires(access) {
		verb := "reveal"
		if access != AccessView {
			verb = string(access)
		}
		return nil, Errorf(CodeInvalid, "no approval needed for %s access to %s: %s directly", access, sec.Path(), verb)
	}
	if err := policy.Validate(); err != nil {
		return nil, Wrap(CodeInternal, err, "the secret's policy is invalid")
	}
	if err := policy.Comment.Check(comment); err != nil {
		return nil, err
	}
	now = now.UTC()
	snap := clonePolicy(policy)
	rule := snap.Approval
	start, end, err := requestWindow(rule, start, end, duration, now)
	if err != nil {
		return nil, err
	}
	expires := now.Add(rule.PendingTimeout.D())
	if rule.ClockStarts == ClockAtStart && end.Before(expires) {
		expires = end
	}
	return &Request{
		ID:         NewID(now),
		SecretID:   sec.ID,
		SecretPath: sec.Path(),
		Requester:  actorOf(p),
		Access:     access,
		Start:      start,
		End:        end,
		Comment:    strings.TrimSpace(comment),
		Status:     StatusPending,
		Policy:     snap,
		PolicyFrom: policyFrom,
		CreatedAt:  now,
		UpdatedAt:  now,
		ExpiresAt:  expires,
		Revision:   1,
	}, nil
}

// requestWindow resolves and checks a requested window against rule.
func requestWindow(rule *ApprovalRule, start, end time.Time, d time.Duration, now time.Time) (time.Time, time.Time, error) {
	zero := time.Time{}
	switch {
	case start.IsZero():
		start = now
	case start.Before(now.Add(-StartSkew)):
		return zero, zero, Errorf(CodeInvalid, "start %s is in the past; leave it empty to start now", stamp(start))
	case !start.After(now.Add(StartSkew)):
		start = now // within the skew: the client meant now
	case !rule.AllowFutureStart:
		return zero, zero, Errorf(CodeInvalid, "this policy does not allow a later start; leave start empty to start now")
	case start.After(now.Add(MaxStartAhead)):
		return zero, zero, Errorf(CodeInvalid, "start %s is more than %s ahead", stamp(start), human(MaxStartAhead))
	default:
		start = start.UTC()
	}
	switch {
	case !end.IsZero() && d != 0:
		return zero, zero, Errorf(CodeInvalid, "give an end or a duration, not both")
	case d < 0:
		return zero, zero, Errorf(CodeInvalid, "the duration must be positive")
	case d > 0:
		end = start.Add(d)
	case end.IsZero():
		return zero, zero, Errorf(CodeInvalid, "give an end or a duration for the access window")
	default:
		end = end.UTC()
		if !end.After(start) {
			return zero, zero, Errorf(CodeInvalid, "end %s must be after start %s", stamp(end), stamp(start))
		}
	}
	if limit := rule.MaxDuration.D(); end.Sub(start) > limit {
		return zero, zero, Errorf(CodeInvalid, "the window is %s; this policy allows at most %s", human(end.Sub(start)), human(limit))
	}
	return start, end, nil
}

// Decide applies approver's approve or deny at now. A deny ends the
// request. An approval counts toward the current step's quorum of distinct
// people; a step that reaches it hands over to the next, and the last one
// approves the request and returns its grant (nil otherwise).
//
// The grant's window starts at the later of now and the requested start. If
// the clock starts at approval it lasts the requested duration from there;
// if it starts at the requested start it ends at the requested end.
//
// Separation of duties: a person decides at most once per request, so one
// who approved an earlier step cannot approve a later one even if named
// there too. "A person" is a subject, or an email address shared by two
// subjects (the same human with two accounts).
//
// Returns ErrUnauthenticated without an approver; ErrConflict if the
// request is not pending, timed out (now at or past ExpiresAt), or the
// approver already decided on it; ErrForbidden for the requester (however
// they are named in the step) or someone who is not an approver of the
// current step; ErrInvalid for an over-long comment.
func (r *Request) Decide(approver *Principal, approve bool, comment string, now time.Time) (*Grant, error) {
	now = now.UTC()
	comment = strings.TrimSpace(comment)
	if len(comment) > MaxCommentLength {
		return nil, Errorf(CodeInvalid, "the comment is longer than %d characters", MaxCommentLength)
	}
	if err := r.checkDecider(approver, approve, now); err != nil {
		return nil, err
	}
	d := Decision{ID: NewID(now), Approver: actorOf(approver), Step: r.Step, Approve: approve, Comment: comment, Time: now}
	if !approve {
		r.Decisions = append(r.Decisions, d)
		r.Status, r.DecidedAt = StatusDenied, now
		r.touch(now)
		return nil, nil
	}
	steps := r.Policy.Approval.Steps
	reached := r.Approvals(r.Step)+1 >= steps[r.Step].Quorum
	if !reached || r.Step < len(steps)-1 {
		r.Decisions = append(r.Decisions, d)
		if reached {
			r.Step++
		}
		r.touch(now)
		return nil, nil
	}
	r.Decisions = append(r.Decisions, d)
	return r.grant(now)
}

// ApproveByTicket grants a pending request whose policy lets a validated
// ticket stand in for human approvers (ticket.standalone). The caller has
// validated the ticket against the policy's rule. Returns ErrConflict if the
// request is not pending or timed out, and ErrForbidden if its policy does
// not allow standalone tickets.
func (r *Request) ApproveByTicket(now time.Time) (*Grant, error) {
	now = now.UTC()
	if r.Policy.Ticket == nil || !r.Policy.Ticket.Standalone {
		return nil, Errorf(CodeForbidden, "the policy does not let a ticket grant access without approvers")
	}
	if r.Status != StatusPending {
		return nil, Errorf(CodeConflict, "request %s is %s", r.ID, r.Status)
	}
	if !now.Before(r.ExpiresAt) {
		return nil, Errorf(CodeConflict, "request timed out at %s", stamp(r.ExpiresAt))
	}
	return r.grant(now)
}

// grant ends an approved request with its grant.
func (r *Request) grant(now time.Time) (*Grant, error) {
	start, end := r.grantWindow(now)
	if !end.After(now) { // cannot happen while ExpiresAt <= End; refuse rather than grant nothing
		return nil, Errorf(CodeConflict, "the requested window ended at %s", stamp(end))
	}
	g := &Grant{
		ID:         NewID(now),
		RequestID:  r.ID,
		SecretID:   r.SecretID,
		SecretPath: r.SecretPath,
		Subject:    r.Requester.Subject,
		Access:     r.Access,
		Start:      start,
		End:        end,
		Status:     StatusActive,
		Ticket:     r.Ticket,
		CreatedAt:  now,
		Revision:   1,
	}
	if start.After(now) {
		g.Status = StatusApproved
	}
	r.Status, r.DecidedAt = g.Status, now
	r.GrantID, r.GrantStart, r.GrantEnd = g.ID, g.Start, g.End
	r.touch(now)
	return g, nil
}

// checkDecider says why p may not decide r's current step at now, or nil.
func (r *Request) checkDecider(p *Principal, approve bool, now time.Time) error {
	if p == nil || p.Subject == "" {
		return Errorf(CodeUnauthenticated, "sign in to decide on a request")
	}
	if r.Status != StatusPending {
		return Errorf(CodeConflict, "request %s is %s; it can no longer be decided", r.ID, r.Status)
	}
	if !now.Before(r.ExpiresAt) {
		return Errorf(CodeConflict, "request timed out at %s", stamp(r.ExpiresAt))
	}
	if samePerson(r.Requester, p) {
		if approve {
			return Errorf(CodeForbidden, "you cannot approve your own request")
		}
		return Errorf(CodeForbidden, "you cannot deny your own request: cancel it instead")
	}
	for _, d := range r.Decisions {
		if samePerson(d.Approver, p) {
			return Errorf(CodeConflict, "you already decided on this request (%s); a person decides once per request", r.stepLabel(d.Step))
		}
	}
	a := r.Policy.Approval
	if a == nil || r.Step < 0 || r.Step >= len(a.Steps) {
		return Errorf(CodeInternal, "request %s has no approval step %d", r.ID, r.Step+1)
	}
	if !names(a.Steps[r.Step].Approvers, p) {
		return Errorf(CodeForbidden, "you are not an approver of %s of this request", r.stepLabel(r.Step))
	}
	return nil
}

// Eligible reports whether p may decide r's current step at now: the
// request is pending and not timed out, p is not the requester, has not
// decided on it yet, and is named in the step (directly or by a group). It
// answers "pending for me".
func (r *Request) Eligible(p *Principal, now time.Time) bool {
	return r.checkDecider(p, true, now.UTC()) == nil
}

// Approvals counts the distinct people who approved step.
func (r *Request) Approvals(step int) int {
	var seen []Actor
	for _, d := range r.Decisions {
		if d.Step != step || !d.Approve {
			continue
		}
		if !slices.ContainsFunc(seen, func(a Actor) bool { return sameActor(a, d.Approver) }) {
			seen = append(seen, d.Approver)
		}
	}
	return len(seen)
}

// Cancel ends a request that is pending, or approved with its window not
// yet started (by the clock). Only the requester or an admin may. The
// caller revokes the grant of an approved request in the same write.
//
// Returns ErrUnauthenticated without a principal, ErrForbidden for anyone
// else, and ErrConflict in any other state (an active request's grant is
// revoked, not cancelled).
func (r *Request) Cancel(by *Principal, now time.Time) error {
	now = now.UTC()
	if by == nil || by.Subject == "" {
		return Errorf(CodeUnauthenticated, "sign in to cancel a request")
	}
	if !samePerson(r.Requester, by) && !by.IsAdmin() {
		return Errorf(CodeForbidden, "only the requester or an admin can cancel this request")
	}
	switch r.Status {
	case StatusPending:
		if !now.Before(r.ExpiresAt) {
			return Errorf(CodeConflict, "request timed out at %s", stamp(r.ExpiresAt))
		}
	case StatusApproved:
		if !now.Before(r.GrantStart) {
			return Errorf(CodeConflict, "the grant's window started at %s: revoke the grant instead", stamp(r.GrantStart))
		}
	case StatusActive:
		return Errorf(CodeConflict, "request %s is active: revoke its grant instead", r.ID)
	default:
		return Errorf(CodeConflict, "request %s is %s; it can no longer be cancelled", r.ID, r.Status)
	}
	r.Status, r.CancelledBy = StatusCancelled, by.Subject
	r.touch(now)
	return nil
}

// TimeOut ends a pending request nobody decided by ExpiresAt. Returns
// ErrConflict if the request is not pending or its deadline has not come.
func (r *Request) TimeOut(now time.Time) error {
	now = now.UTC()
	if r.Status != StatusPending {
		return Errorf(CodeConflict, "request %s is %s, not pending", r.ID, r.Status)
	}
	if now.Before(r.ExpiresAt) {
		return Errorf(CodeConflict, "request %s may be decided until %s", r.ID, stamp(r.ExpiresAt))
	}
	r.Status = StatusTimedOut
	r.touch(now)
	return nil
}

// SyncGrant brings an approved or active request's status in line with its
// grant's (activated, expired or revoked), so listings of requests show
// where access stands. It changes nothing when they already agree.
//
// Returns ErrInvalid if g is not this request's grant and ErrConflict if
// the request is not approved or active (a cancelled request stays
// cancelled even though its grant is revoked).
func (r *Request) SyncGrant(g *Grant, now time.Time) error {
	if g == nil || r.GrantID == "" || g.ID != r.GrantID {
		return Errorf(CodeInvalid, "that grant does not belong to request %s", r.ID)
	}
	if r.Status != StatusApproved && r.Status != StatusActive {
		return Errorf(CodeConflict, "request %s is %s", r.ID, r.Status)
	}
	if g.Status == r.Status {
		return nil
	}
	r.Status = g.Status
	r.touch(now.UTC())
	return nil
}

// grantWindow is the window a final approval at now grants.
func (r *Request) grantWindow(now time.Time) (start, end time.Time) {
	start = r.Start
	if now.After(start) {
		start = now
	}
	if r.Policy.Approval.ClockStarts == ClockAtStart {
		return start, r.End
	}
	return start, start.Add(r.End.Sub(r.Start))
}

func (r *Request) touch(now time.Time) {
	r.UpdatedAt = now
	r.Revision++
}

// stepLabel names a step for messages: `step 2 ("security")`.
func (r *Request) stepLabel(i int) string {
	label := "step " + strconv.Itoa(i+1)
	if a := r.Policy.Approval; a != nil && i >= 0 && i < len(a.Steps) && a.Steps[i].Name != "" {
		label += " (" + a.Steps[i].Name + ")"
	}
	return label
}

// StatusAt is the grant's status as the clock sees it at now: a stored
// approved or active status yields approved before Start, active within
// [Start, End) and expired from End on, even if nothing updated it.
func (g *Grant) StatusAt(now time.Time) RequestStatus {
	if g.Status != StatusApproved && g.Status != StatusActive {
		return g.Status
	}
	switch {
	case now.Before(g.Start):
		return StatusApproved
	case now.Before(g.End):
		return StatusActive
	}
	return StatusExpired
}

// Authorizes reports whether g lets subject have access of kind at now. It
// is decided from the clock and the status together: never outside [Start,
// End), never once revoked or expired. A grant approved for a window
// authorizes within it even if its activation has not been recorded yet.
func (g *Grant) Authorizes(subject string, access AccessKind, now time.Time) bool {
	return g != nil && subject != "" && g.Subject == subject &&
		g.Access.Covers(access) && g.StatusAt(now) == StatusActive
}

// Activate marks an approved grant active once its window has started.
// Returns ErrConflict before Start, after End, or in any other status.
func (g *Grant) Activate(now time.Time) error {
	now = now.UTC()
	if g.Status != StatusApproved {
		return Errorf(CodeConflict, "grant %s is %s, not approved", g.ID, g.Status)
	}
	switch g.StatusAt(now) {
	case StatusApproved:
		return Errorf(CodeConflict, "grant %s starts at %s", g.ID, stamp(g.Start))
	case StatusExpired:
		return Errorf(CodeConflict, "grant %s ended at %s: expire it instead", g.ID, stamp(g.End))
	}
	g.Status = StatusActive
	g.Revision++
	return nil
}

// Expire marks an approved or active grant expired once its end has come.
// Returns ErrConflict before End or in any other status.
func (g *Grant) Expire(now time.Time) error {
	now = now.UTC()
	if g.Status != StatusApproved && g.Status != StatusActive {
		return Errorf(CodeConflict, "grant %s is %s", g.ID, g.Status)
	}
	if now.Before(g.End) {
		return Errorf(CodeConflict, "grant %s is in force until %s", g.ID, stamp(g.End))
	}
	g.Status = StatusExpired
	g.Revision++
	return nil
}

// Revoke ends an approved or active grant now. Its holder (giving access
// up) or an admin may. Returns ErrUnauthenticated without a principal,
// ErrForbidden for anyone else, and ErrConflict if the grant is not
// approved or active, or has already reached its end.
func (g *Grant) Revoke(by *Principal, now time.Time) error {
	now = now.UTC()
	if by == nil || by.Subject == "" {
		return Errorf(CodeUnauthenticated, "sign in to revoke a grant")
	}
	if by.Subject != g.Subject && !by.IsAdmin() {
		return Errorf(CodeForbidden, "only the grant's holder or an admin can revoke it")
	}
	if g.Status != StatusApproved && g.Status != StatusActive {
		return Errorf(CodeConflict, "grant %s is %s", g.ID, g.Status)
	}
	if !now.Before(g.End) {
		return Errorf(CodeConflict, "grant %s already ended at %s", g.ID, stamp(g.End))
	}
	g.Status, g.RevokedAt, g.RevokedBy = StatusRevoked, &now, by.Subject
	g.Revision++
	return nil
}

// names reports whether approvers ("user:x", "group:y") name p.
func names(approvers []string, p *Principal) bool {
	for _, k := range p.Keys() {
		if slices.Contains(approvers, k) {
			return true
		}
	}
	return false
}

// samePerson reports whether p is the person a: same subject, or same
// email (one human with two accounts). Matching more widely only ever
// refuses more, never grants more.
func samePerson(a Actor, p *Principal) bool {
	return sameActor(a, Actor{Subject: p.Subject, Email: p.Email})
}

func sameActor(a, b Actor) bool {
	return a.Subject == b.Subject || (a.Email != "" && strings.EqualFold(a.Email, b.Email))
}

// actorOf snapshots p; the slices are copied so later changes to p do not
// reach the record.
func actorOf(p *Principal) Actor {
	return Actor{Subject: p.Subject, Email: p.Email, Groups: slices.Clone(p.Groups), Roles: slices.Clone(p.Roles)}
}

// clonePolicy deep-copies p, making approval.clockStarts explicit (an
// empty value means approval).
func clonePolicy(p *Policy) Policy {
	c := *p
	if p.Approval != nil {
		a := *p.Approval
		a.For = slices.Clone(a.For)
		a.Steps = slices.Clone(a.Steps)
		for i := range a.Steps {
			a.Steps[i].Approvers = slices.Clone(a.Steps[i].Approvers)
		}
		if a.ClockStarts == "" {
			a.ClockStarts = ClockAtApproval
		}
		c.Approval = &a
	}
	return c
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// human renders d without trailing zero units: "2h", "1h30m", "90s".
func human(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
