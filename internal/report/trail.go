package report

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Actions of other use case packages that the reports read by index.
// They are spelled out (not imported) so that this package depends only
// on the domain; report_test checks them against the packages' constants.
const (
	actionRequestCreate  = "request.create"
	actionRequestGet     = "request.get"
	actionRequestList    = "request.list"
	actionRequestApprove = "request.approve"
	actionRequestDeny    = "request.deny"
	actionRequestCancel  = "request.cancel"
	actionGrantList      = "grant.list"
	actionGrantRevoke    = "grant.revoke"

	actionSystemPut        = "ticket-system.put"
	actionSystemList       = "ticket-system.list"
	actionSystemDefault    = "ticket-system.default"
	actionSystemTest       = "ticket-system.test"
	actionCredentialReveal = "ticket-system.credentials"

	// workflowSubject is the checkout workflow's actor (checkout.Workflow).
	workflowSubject = "escrow-checkout"
)

// attemptActions are the actions a person (or script) attempts: the
// denied report reads each one's index and keeps what was refused or
// failed. Bookkeeping of the workflows (activation, expiry, release) is
// not an attempt; a failed rotation is (it is the workflow's attempt, and
// it is an alert).
var attemptActions = []string{
	escrow.ActionSecretCreate, escrow.ActionSecretGet, escrow.ActionSecretList, escrow.ActionSecretUpdate,
	escrow.ActionSecretDelete, escrow.ActionSecretReveal, escrow.ActionSecretVersions, escrow.ActionSecretACL,
	escrow.ActionFolderGet, escrow.ActionFolderACL, escrow.ActionAuditQuery, escrow.ActionPolicyGet,
	escrow.ActionPolicySet, escrow.ActionAuthFailed,
	escrow.ActionCheckout, escrow.ActionCheckin, escrow.ActionCheckoutExtend, escrow.ActionForceCheckin,
	escrow.ActionCheckoutStatus, escrow.ActionHook, escrow.ActionRotationSet, escrow.ActionRotationPending,
	escrow.ActionRotationSetOnTarget, escrow.ActionRotationTest, escrow.ActionRotationPromote,
	escrow.ActionRotationFailed, escrow.ActionRotateNow, escrow.ActionPrivilegedRead,
	escrow.ActionQLockKeyPut, escrow.ActionQLockKeyGet, escrow.ActionQLockKeyList, escrow.ActionQLockLock,
	escrow.ActionQLockShare, escrow.ActionQLockRevoke, escrow.ActionQLockRelock,
	actionRequestCreate, actionRequestGet, actionRequestList, actionRequestApprove, actionRequestDeny,
	actionRequestCancel, actionGrantList, actionGrantRevoke,
	actionSystemPut, actionSystemList, actionSystemDefault, actionSystemTest, actionCredentialReveal,
	ActionRun,
}

// checkoutEvents are the checkout report's actions and the event name
// each row shows. Status reads (secret.checkout.get) are not events.
var checkoutEvents = []struct{ action, event string }{
	{escrow.ActionCheckout, "checkout"},
	{escrow.ActionCheckin, "checkin"},
	{escrow.ActionCheckoutExtend, "extend"},
	{escrow.ActionForceCheckin, "force-checkin"},
	{escrow.ActionCheckoutExpire, "expire"},
	{escrow.ActionCheckoutRelease, "release"},
	{escrow.ActionHook, "hook"},
	{escrow.ActionRotationSet, "rotation-config"},
	{escrow.ActionRotationPending, "rotation-pending"},
	{escrow.ActionRotationSetOnTarget, "rotation-set-on-target"},
	{escrow.ActionRotationTest, "rotation-test"},
	{escrow.ActionRotationPromote, "rotation-promote"},
	{escrow.ActionRotationFailed, "rotation-failed"},
	{escrow.ActionRotateNow, "rotate-now"},
	{escrow.ActionPrivilegedRead, "privileged-read"},
}

var auditColumns = []Column{
	{"time", "when it happened (UTC)"},
	{"auditId", "the audit record's id"},
	{"actor", "who acted (subject; empty for an unauthenticated attempt)"},
	{"action", "what was done, e.g. secret.reveal, secret.checkout, request.approve"},
	{"outcome", "success, denied (authorization refused it) or failed"},
	{"secret", "the secret's id"},
	{"path", "the secret's path when it happened (else its current path)"},
	{"ticket", "the change or incident number it was done under"},
	{"comment", "the actor's reason, as they gave it"},
	{"request", "the access request it was done under or about"},
	{"grant", "the grant it was done under or about"},
	{"reason", "why it was denied or failed (code: message)"},
	{"sourceIp", "the client's address"},
	{"httpRequest", "the API request id, which error messages quote"},
}

// auditRow fills the run's row from rec (auditColumns).
func (s *Service) auditRow(ctx context.Context, r *run, rec *escrow.AuditRecord) error {
	p, err := s.pathOf(ctx, r, rec)
	if err != nil {
		return err
	}
	v := r.vals
	v[0], v[1], v[2], v[3] = Time(rec.Time), Str(rec.ID), Str(rec.Actor.Subject), Str(rec.Action)
	v[4], v[5], v[6], v[7] = Str(string(rec.Outcome)), Str(rec.SecretID), Str(p), Str(rec.Ticket)
	v[8], v[9], v[10], v[11] = Str(rec.Comment), Str(ref(rec, "request")), Str(ref(rec, "grant")), Str(reason(rec))
	v[12], v[13] = Str(rec.SourceIP), Str(rec.RequestID)
	return nil
}

// ref is the id of a request or grant a record names, in its details or
// as its target ("request:ID").
func ref(rec *escrow.AuditRecord, kind string) string {
	if id := rec.Details[kind]; id != "" {
		return id
	}
	id, _ := strings.CutPrefix(rec.Target, kind+":")
	if id == rec.Target {
		return ""
	}
	return id
}

func reason(rec *escrow.AuditRecord) string {
	switch {
	case rec.ErrorCode != "" && rec.Reason != "":
		return string(rec.ErrorCode) + ": " + rec.Reason
	case rec.ErrorCode != "":
		return string(rec.ErrorCode)
	}
	return rec.Reason
}

// maxPaths bounds the run's cache of secret paths.
const maxPaths = 10000

// pathOf is the secret path a record carries, else the secret's current
// path (one read per secret per run), else "".
func (s *Service) pathOf(ctx context.Context, r *run, rec *escrow.AuditRecord) (string, error) {
	if p := rec.Details["path"]; p != "" || rec.SecretID == "" {
		return p, nil
	}
	if p, ok := r.paths[rec.SecretID]; ok {
		return p, nil
	}
	p := ""
	sec, err := s.store.GetSecret(ctx, rec.SecretID)
	switch {
	case err == nil:
		p = sec.Path()
	case !errors.Is(err, escrow.ErrNotFound) && !errors.Is(err, escrow.ErrInvalid):
		return "", internal("read secret", err)
	}
	if len(r.paths) >= maxPaths {
		clear(r.paths)
	}
	r.paths[rec.SecretID] = p
	return p, nil
}

// streams runs f with a context whose audit streams all stop, and are
// waited for, when f returns.
func streams(ctx context.Context, f func(ctx context.Context, wg *sync.WaitGroup) error) error {
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer wg.Wait()
	defer cancel()
	return f(ctx, &wg)
}

// trail runs an audit-row report over one indexed query.
func (s *Service) trail(ctx context.Context, r *run, q escrow.AuditQuery, keep func(*escrow.AuditRecord) (bool, error)) error {
	return streams(ctx, func(ctx context.Context, wg *sync.WaitGroup) error {
		q.From, q.To, q.Limit = r.params.From, r.params.To, s.pageSize
		row := func(r *run, rec *escrow.AuditRecord) error { return s.auditRow(ctx, r, rec) }
		return s.records(ctx, r, stream(ctx, wg, s.log, q), keep, row)
	})
}

func (s *Service) accessByUser(ctx context.Context, r *run) error {
	return s.trail(ctx, r, escrow.AuditQuery{Actor: r.params.User}, nil)
}

func (s *Service) accessToSecret(ctx context.Context, r *run) error {
	return s.trail(ctx, r, escrow.AuditQuery{SecretID: r.secretID}, nil)
}

func (s *Service) ticket(ctx context.Context, r *run) error {
	return s.trail(ctx, r, escrow.AuditQuery{Ticket: r.params.Ticket}, nil)
}

// activity walks the time range itself: the audit log's id order on
// SQLite, its day partitions on DynamoDB. With a start it reads several
// time windows at once (an open end is taken as a day past now, as a
// host's clock may run ahead); without one it follows a single cursor.
func (s *Service) activity(ctx context.Context, r *run) error {
	if r.params.From.IsZero() {
		return s.trail(ctx, r, escrow.AuditQuery{}, nil)
	}
	to := r.params.To
	if to.IsZero() {
		to = r.now.Add(24 * time.Hour)
	}
	return streams(ctx, func(ctx context.Context, wg *sync.WaitGroup) error {
		row := func(r *run, rec *escrow.AuditRecord) error { return s.auditRow(ctx, r, rec) }
		return s.records(ctx, r, slice(ctx, wg, s.log, escrow.AuditQuery{}, r.params.From, to, s.pageSize), nil, row)
	})
}

func (s *Service) denied(ctx context.Context, r *run) error {
	return streams(ctx, func(ctx context.Context, wg *sync.WaitGroup) error {
		keep := func(rec *escrow.AuditRecord) (bool, error) { return rec.Outcome != escrow.OutcomeSuccess, nil }
		row := func(r *run, rec *escrow.AuditRecord) error { return s.auditRow(ctx, r, rec) }
		return s.records(ctx, r, s.byActions(ctx, wg, r, attemptActions), keep, row)
	})
}

var checkoutColumns = []Column{
	{"time", "when it happened (UTC)"},
	{"auditId", "the audit record's id"},
	{"event", "checkout, checkin, extend, force-checkin, expire, release, hook, rotation-config, rotation-pending, rotation-set-on-target, rotation-test, rotation-promote, rotation-failed, rotate-now or privileged-read"},
	{"action", "the audited action"},
	{"actor", "who acted (escrow-checkout for the workflow)"},
	{"outcome", "success, denied or failed"},
	{"failed", "true for a refusal, a failure or a failed rotation (an alert: the secret stays locked)"},
	{"secret", "the secret's id"},
	{"path", "the secret's path"},
	{"checkout", "the checkout's id"},
	{"holder", "who held (or took) the checkout"},
	{"ticket", "the change or incident number"},
	{"comment", "the actor's reason"},
	{"expires", "the checkout's expiry after this event"},
	{"version", "the secret version handed out or rotated to"},
	{"reason", "why it was denied or failed"},
}

func (s *Service) checkouts(ctx context.Context, r *run) error {
	event := make(map[string]string, len(checkoutEvents))
	actions := make([]string, len(checkoutEvents))
	for i, e := range checkoutEvents {
		event[e.action], actions[i] = e.event, e.action
	}
	return streams(ctx, func(ctx context.Context, wg *sync.WaitGroup) error {
		return s.records(ctx, r, s.byActions(ctx, wg, r, actions), nil, func(r *run, rec *escrow.AuditRecord) error {
			p, err := s.pathOf(ctx, r, rec)
			if err != nil {
				return err
			}
			holder := rec.Details["holder"]
			if holder == "" && rec.Action == escrow.ActionCheckout && rec.Outcome == escrow.OutcomeSuccess {
				holder = rec.Actor.Subject
			}
			failed := rec.Outcome != escrow.OutcomeSuccess || rec.Action == escrow.ActionRotationFailed
			v := r.vals
			v[0], v[1], v[2], v[3] = Time(rec.Time), Str(rec.ID), Str(event[rec.Action]), Str(rec.Action)
			v[4], v[5], v[6], v[7] = Str(rec.Actor.Subject), Str(string(rec.Outcome)), Bool(failed), Str(rec.SecretID)
			v[8], v[9], v[10], v[11] = Str(p), Str(rec.Details["checkout"]), Str(holder), Str(rec.Ticket)
			v[12], v[13], v[14], v[15] = Str(rec.Comment), Str(rec.Details["expires"]), Str(rec.Details["version"]), Str(reason(rec))
			return nil
		})
	})
}

var sodColumns = []Column{
	{"time", "when it happened (UTC)"},
	{"kind", "force-checkin, rotate-now or grant-revoke (by an admin), or self-approval / self-denial (a decision by the requester)"},
	{"actor", "who did it"},
	{"actorRoles", "the actor's roles then"},
	{"affected", "whose checkout, grant or request it was"},
	{"secret", "the secret's id"},
	{"path", "the secret's path"},
	{"request", "the access request"},
	{"grant", "the grant"},
	{"checkout", "the checkout"},
	{"ticket", "the change or incident number"},
	{"comment", "the actor's reason"},
	{"detail", "what makes it an exception"},
	{"auditId", "the audit record's id (empty for a decision found on a request)"},
}

// sodActions are read by index for the exceptions an admin's override
// leaves in the trail.
var sodActions = []string{escrow.ActionForceCheckin, escrow.ActionRotateNow, actionGrantRevoke}

// sodExceptions lists, newest first, the overrides by admins found in the
// trail of the range, then the decisions a requester made on their own
// request, among requests created in the range (newest request first).
// The domain refuses the latter; the report looks for them anyway, since
// a store written around the domain could hold one.
func (s *Service) sodExceptions(ctx context.Context, r *run) error {
	err := streams(ctx, func(ctx context.Context, wg *sync.WaitGroup) error {
		holders := map[string]string{}
		keep := func(rec *escrow.AuditRecord) (bool, error) {
			if rec.Outcome != escrow.OutcomeSuccess || !isAdmin(rec.Actor) || rec.Actor.Subject == workflowSubject {
				return false, nil
			}
			if rec.Action != actionGrantRevoke {
				return true, nil
			}
			h, err := s.grantHolder(ctx, rec, holders)
			// Giving up one's own grant is no override.
			return h != rec.Actor.Subject, err
		}
		return s.records(ctx, r, s.byActions(ctx, wg, r, sodActions), keep, func(r *run, rec *escrow.AuditRecord) error {
			p, err := s.pathOf(ctx, r, rec)
			if err != nil {
				return err
			}
			kind, affected, detail := "", rec.Details["holder"], ""
			switch rec.Action {
			case escrow.ActionForceCheckin:
				kind, detail = "force-checkin", "an admin ended someone's checkout"
			case escrow.ActionRotateNow:
				kind, detail = "rotate-now", "an admin rotated the password outside a checkout"
			default:
				kind, detail = "grant-revoke", "an admin revoked someone else's grant"
				if affected == "" {
					affected = holders[ref(rec, "grant")]
				}
				if why := rec.Details["reason"]; why != "" {
					detail += " (" + why + ")"
				}
			}
			v := r.vals
			v[0], v[1], v[2], v[3] = Time(rec.Time), Str(kind), Str(rec.Actor.Subject), Str(strings.Join(rec.Actor.Roles, ","))
			v[4], v[5], v[6], v[7] = Str(affected), Str(rec.SecretID), Str(p), Str(ref(rec, "request"))
			v[8], v[9], v[10], v[11] = Str(ref(rec, "grant")), Str(rec.Details["checkout"]), Str(rec.Ticket), Str(rec.Comment)
			v[12], v[13] = Str(detail), Str(rec.ID)
			return nil
		})
	})
	if err != nil {
		return err
	}
	return s.eachRequest(ctx, r, func(req *escrow.Request) error {
		for _, d := range req.Decisions {
			if !sameActor(d.Approver, req.Requester) {
				continue
			}
			kind, verb := "self-denial", "denied"
			if d.Approve {
				kind, verb = "self-approval", "approved"
			}
			v := r.vals
			v[0], v[1], v[2], v[3] = Time(d.Time), Str(kind), Str(d.Approver.Subject), Str(strings.Join(d.Approver.Roles, ","))
			v[4], v[5], v[6], v[7] = Str(req.Requester.Subject), Str(req.SecretID), Str(req.SecretPath), Str(req.ID)
			v[8], v[9], v[10], v[11] = Str(req.GrantID), Null(), Str(req.Ticket), Str(d.Comment)
			v[12] = Str("the requester " + verb + " their own request at step " + itoa(d.Step+1))
			v[13] = Str("")
			if err := r.emit(); err != nil {
				return err
			}
		}
		return nil
	})
}

// grantHolder is the subject of the grant a revocation record names: from
// its details, else read once per grant.
func (s *Service) grantHolder(ctx context.Context, rec *escrow.AuditRecord, cache map[string]string) (string, error) {
	if h := rec.Details["holder"]; h != "" {
		return h, nil
	}
	id := ref(rec, "grant")
	if id == "" {
		return "", nil
	}
	if h, ok := cache[id]; ok {
		return h, nil
	}
	g, err := s.requests.GetGrant(ctx, id)
	switch {
	case errors.Is(err, escrow.ErrNotFound):
	case err != nil:
		return "", internal("read grant", err)
	default:
		if len(cache) >= maxPaths {
			clear(cache)
		}
		cache[id] = g.Subject
	}
	return cache[id], nil
}

// sameActor is the domain's "same person": same subject, or the same
// email on two accounts.
func sameActor(a, b escrow.Actor) bool {
	return a.Subject == b.Subject || (a.Email != "" && strings.EqualFold(a.Email, b.Email))
}
