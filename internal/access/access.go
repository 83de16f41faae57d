// Package access is the use case layer of access requests: asking for
// time-boxed access to a secret whose policy requires approval, deciding,
// cancelling and revoking, each written to the audit log.
//
// It depends only on the ports of package escrow, and leaves every rule
// (quorum, separation of duties, windows) to escrow.Request and
// escrow.Grant. Every method writes exactly one audit record per state
// change, or one for a refusal, before it returns; it must never write a
// secret value anywhere.
package access

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/escrow-pam/escrow/internal/audit"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/notify"
)

// Config holds the ports the service needs.
type Config struct {
	Store    escrow.Store
	Requests escrow.RequestStore
	Audit    escrow.AuditLog
	Clock    escrow.Clock // nil = system clock
	Logger   *slog.Logger // nil = discard
	// Notifier and Directory, if both set, mail approvers and requesters;
	// PublicURL (e.g. https://escrow.example.com) makes the links.
	Notifier  notify.Notifier
	Directory escrow.Directory
	PublicURL string
	// Workflow, if set, runs each request's state machine.
	Workflow escrow.Workflow
	// Tickets, if set, validates the tickets that policies require.
	Tickets TicketLookup
}

// TicketLookup finds a ticket in a configured system ("" = the default);
// any error means the ticket is not validated.
type TicketLookup interface {
	Lookup(ctx context.Context, system, number string) (*escrow.Ticket, error)
	// Comment writes a note on the ticket (the policy's writeBack).
	Comment(ctx context.Context, system, number, text string) error
}

// Service implements the access request use cases.
type Service struct {
	store    escrow.Store
	requests escrow.RequestStore
	clock    escrow.Clock
	logger   *slog.Logger

	notifier  notify.Notifier
	directory escrow.Directory
	publicURL string
	workflow  escrow.Workflow
	rec       *audit.Recorder
	tickets   TicketLookup
}

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{store: cfg.Store, requests: cfg.Requests, clock: cfg.Clock, logger: cfg.Logger,
		notifier: cfg.Notifier, directory: cfg.Directory, publicURL: strings.TrimSuffix(cfg.PublicURL, "/"), workflow: cfg.Workflow,
		tickets: cfg.Tickets}
	if s.clock == nil {
		s.clock = escrow.SystemClock{}
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	s.rec = &audit.Recorder{Log: cfg.Audit, Clock: s.clock, Logger: s.logger}
	return s
}

// Audited actions of this package.
const (
	ActionRequestCreate  = "request.create"
	ActionRequestGet     = "request.get"
	ActionRequestList    = "request.list"
	ActionRequestApprove = "request.approve"
	ActionRequestDeny    = "request.deny"
	ActionRequestCancel  = "request.cancel"
	ActionGrantList      = "grant.list"
	ActionGrantRevoke    = "grant.revoke"
)

func (s *Service) record(ctx context.Context, action, target string) *escrow.AuditRecord {
	return s.rec.New(ctx, action, target)
}

func (s *Service) commit(ctx context.Context, rec *escrow.AuditRecord) error {
	return s.rec.Commit(ctx, rec)
}

func (s *Service) fail(ctx context.Context, rec *escrow.AuditRecord, err error) error {
	return s.rec.Fail(ctx, rec, err)
}

func principal(ctx context.Context) (*escrow.Principal, error) {
	p := escrow.PrincipalFrom(ctx)
	if p == nil || p.Subject == "" {
		return nil, escrow.ErrUnauthenticated
	}
	return p, nil
}

// internal keeps coded errors and marks anything else internal.
func internal(verb string, err error) error {
	var e *escrow.Error
	if errors.As(err, &e) {
		return err
	}
	return escrow.Wrap(escrow.CodeInternal, err, verb)
}

// needFor is the ACL permission an access kind presumes: a policy adds
// approval on top of the ACL, it never replaces it.
func needFor(k escrow.AccessKind) escrow.Permission {
	if k == escrow.AccessEdit {
		return escrow.PermEdit
	}
	return escrow.PermView
}

// RequestInput asks for access to a secret. Start zero means now; give End
// or Duration.
type RequestInput struct {
	SecretID string
	Access   escrow.AccessKind
	Start    time.Time
	End      time.Time
	Duration time.Duration
	Comment  string
	// Ticket is the change or incident number the policy may require; if
	// empty, the comment is taken as the number.
	Ticket string
}

// Request files an access request. The caller must hold the ACL
// permission the access presumes; the secret's policy must put that access
// under approval; the comment must satisfy the policy's rule.
func (s *Service) Request(ctx context.Context, in RequestInput) (*escrow.Request, error) {
	rec := s.record(ctx, ActionRequestCreate, escrow.SecretTarget(in.SecretID))
	rec.SecretID = in.SecretID
	rec.Comment = in.Comment
	r, err := s.request(ctx, in, rec)
	if err != nil {
		return nil, s.fail(ctx, rec, err)
	}
	return r, nil
}

func (s *Service) request(ctx context.Context, in RequestInput, rec *escrow.AuditRecord) (*escrow.Request, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if !in.Access.Valid() {
		return nil, escrow.Errorf(escrow.CodeInvalid, "access must be view, edit or checkout")
	}
	sec, folders, err := s.secret(ctx, p, in.SecretID, needFor(in.Access))
	if err != nil {
		return nil, err
	}
	pol, from, ok := escrow.EffectivePolicy(sec.Policy, sec.Folder, folders)
	if !ok {
		pol = &escrow.Policy{}
	}
	now := s.clock.Now()
	var tk *escrow.Ticket
	if pol.Ticket != nil {
		if tk, err = s.lookupTicket(ctx, pol.Ticket, in); err != nil {
			return nil, err
		}
		rec.Ticket = tk.Number
		if pol.Ticket.WindowFromTicket {
			// The change's planned window is the access window (from now
			// if it has begun).
			in.Start, in.End, in.Duration = tk.PlannedStart, tk.PlannedEnd, 0
			if in.Start.Before(now) {
				in.Start = time.Time{}
			}
		}
	}
	r, err := escrow.NewRequest(p, sec, pol, from, in.Access, in.Start, in.End, in.Duration, in.Comment, now)
	if err != nil {
		return nil, err
	}
	if tk != nil {
		if err := pol.Ticket.Check(tk, r.Requester, sec, r.Start, r.End); err != nil {
			return nil, err
		}
		r.Ticket, r.TicketInfo = tk.Number, tk
	}
	r.ID = escrow.NewID(now)
	rec.Target = "request:" + r.ID
	rec.Details = map[string]string{"request": r.ID, "path": sec.Path(), "access": string(r.Access),
		"start": r.Start.Format(time.RFC3339), "end": r.End.Format(time.RFC3339), "policy": from}
	if err := s.requests.CreateRequest(ctx, r, rec); err != nil {
		return nil, internal("create request", err)
	}
	if pol.Ticket != nil && pol.Ticket.Standalone {
		if err := s.approveByTicket(ctx, r); err != nil {
			return nil, err
		}
	} else {
		s.notifyApprovers(ctx, r)
	}
	s.startWorkflow(ctx, r)
	return r.Public(), nil
}

// lookupTicket validates that the request names a ticket its system knows.
func (s *Service) lookupTicket(ctx context.Context, rule *escrow.TicketRule, in RequestInput) (*escrow.Ticket, error) {
	number := strings.TrimSpace(in.Ticket)
	if number == "" {
		number = strings.TrimSpace(in.Comment)
	}
	if number == "" || strings.ContainsAny(number, " \t\n") {
		return nil, escrow.Errorf(escrow.CodeInvalid, "the policy requires a change or incident ticket number (escrow request --ticket CHG...)")
	}
	if s.tickets == nil {
		return nil, escrow.Errorf(escrow.CodeUnavailable, "the policy requires a ticket, but no ticket system is configured")
	}
	return s.tickets.Lookup(ctx, rule.System, number)
}

// approveByTicket grants a request whose validated ticket stands in for
// approvers, in its own audited write.
func (s *Service) approveByTicket(ctx context.Context, r *escrow.Request) error {
	rec := s.record(ctx, ActionRequestApprove, "request:"+r.ID)
	rec.SecretID, rec.Ticket = r.SecretID, r.Ticket
	prev := r.Revision
	g, err := r.ApproveByTicket(s.clock.Now())
	if err != nil {
		return s.fail(ctx, rec, err)
	}
	rec.Details = map[string]string{"request": r.ID, "by": "ticket", "ticket": r.Ticket, "grant": g.ID,
		"start": g.Start.Format(time.RFC3339), "end": g.End.Format(time.RFC3339)}
	if err := s.requests.UpdateRequest(ctx, r, prev, g, rec); err != nil {
		return s.fail(ctx, rec, internal("approve by ticket", err))
	}
	s.notifyRequester(ctx, r, g, "")
	s.writeBack(ctx, r.Policy.Ticket, g, fmt.Sprintf("Escrow: %s access to %s for %s granted on this ticket, %s to %s (request %s).",
		g.Access, g.SecretPath, g.Subject, stamp(g.Start), stamp(g.End), r.ID))
	return nil
}

// writeBack notes an access event on the grant's ticket when the policy
// asks for it. Best-effort: the ticket system being down must not undo or
// block a change to access (the audit trail has the event either way).
func (s *Service) writeBack(ctx context.Context, rule *escrow.TicketRule, g *escrow.Grant, text string) {
	if rule == nil || !rule.WriteBack || g.Ticket == "" || s.tickets == nil {
		return
	}
	if err := s.tickets.Comment(ctx, rule.System, g.Ticket, text); err != nil {
		s.logger.WarnContext(ctx, "ticket write-back", "ticket", g.Ticket, "grant", g.ID, "err", err)
	}
}

// secret reads a secret and the folders above it, and checks the caller
// holds need on it (a caller who may not list it is told it does not
// exist).
func (s *Service) secret(ctx context.Context, p *escrow.Principal, id string, need escrow.Permission) (*escrow.Secret, []escrow.Folder, error) {
	if id == "" || len(id) > 64 {
		return nil, nil, escrow.Errorf(escrow.CodeInvalid, "secret id must be 1 to 64 characters")
	}
	sec, err := s.store.GetSecret(ctx, id)
	if errors.Is(err, escrow.ErrNotFound) {
		return nil, nil, escrow.Errorf(escrow.CodeNotFound, "secret %s not found", id)
	}
	if err != nil {
		return nil, nil, internal("read secret", err)
	}
	folders, err := s.store.GetFolders(ctx, escrow.Ancestors(sec.Folder))
	if err != nil {
		return nil, nil, internal("read folders", err)
	}
	perm := escrow.Effective(p, sec.ACL, folders)
	if !perm.Includes(escrow.PermList) || sec.Deleted() {
		return nil, nil, &escrow.Error{Code: escrow.CodeNotFound, Message: "secret " + id + " not found", Err: escrow.ErrForbidden}
	}
	if !perm.Includes(need) {
		return nil, nil, escrow.Errorf(escrow.CodeForbidden, "you need %s permission on %s to ask for this access (you have %s)", need, sec.Path(), perm)
	}
	return sec, folders, nil
}

// mayRead reports whether p may see request r: its requester, anyone named
// as an approver in its policy, admins and auditors.
func mayRead(p *escrow.Principal, r *escrow.Request) bool {
	if p.IsAdmin() || p.HasRole(escrow.RoleAuditor) || p.Subject == r.Requester.Subject {
		return true
	}
	if r.Policy.Approval == nil {
		return false
	}
	keys := p.Keys()
	for _, st := range r.Policy.Approval.Steps {
		for _, a := range st.Approvers {
			for _, k := range keys {
				if a == k {
					return true
				}
			}
		}
	}
	return false
}

// Get returns one request with its history of decisions.
func (s *Service) Get(ctx context.Context, id string) (*escrow.Request, error) {
	rec := s.record(ctx, ActionRequestGet, "request:"+id)
	r, err := s.get(ctx, id)
	if err != nil {
		return nil, s.fail(ctx, rec, err)
	}
	rec.SecretID = r.SecretID
	if err := s.commit(ctx, rec); err != nil {
		return nil, err
	}
	return r.Public(), nil
}

func (s *Service) get(ctx context.Context, id string) (*escrow.Request, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	r, err := s.requests.GetRequest(ctx, id)
	if errors.Is(err, escrow.ErrNotFound) {
		return nil, escrow.Errorf(escrow.CodeNotFound, "request %s not found", id)
	}
	if err != nil {
		return nil, internal("read request", err)
	}
	if !mayRead(p, r) {
		return nil, &escrow.Error{Code: escrow.CodeNotFound, Message: "request " + id + " not found", Err: escrow.ErrForbidden}
	}
	return r, nil
}

// ListInput selects requests: the caller's own (default), those waiting
// for the caller's decision, or (admins, auditors) all, optionally of one
// secret.
type ListInput struct {
	PendingForMe bool
	All          bool
	SecretID     string
	Cursor       string
	Limit        int
}

// List returns requests, newest first.
func (s *Service) List(ctx context.Context, in ListInput) (escrow.RequestPage, error) {
	rec := s.record(ctx, ActionRequestList, "requests")
	page, err := s.list(ctx, in, rec)
	if err != nil {
		return escrow.RequestPage{}, s.fail(ctx, rec, err)
	}
	if err := s.commit(ctx, rec); err != nil {
		return escrow.RequestPage{}, err
	}
	return page, nil
}

func (s *Service) list(ctx context.Context, in ListInput, rec *escrow.AuditRecord) (escrow.RequestPage, error) {
	p, err := principal(ctx)
	if err != nil {
		return escrow.RequestPage{}, err
	}
	if in.Limit < 0 || in.Limit > 1000 {
		return escrow.RequestPage{}, escrow.Errorf(escrow.CodeInvalid, "limit must be between 1 and 1000")
	}
	q := escrow.RequestQuery{SecretID: in.SecretID, Cursor: in.Cursor, Limit: in.Limit}
	switch {
	case in.PendingForMe:
		rec.Details = map[string]string{"view": "pending-for-me"}
		q.Status = escrow.StatusPending
	case in.All:
		rec.Details = map[string]string{"view": "all"}
		if !p.IsAdmin() && !p.HasRole(escrow.RoleAuditor) {
			return escrow.RequestPage{}, escrow.Errorf(escrow.CodeForbidden, "listing all requests needs the admin or auditor role")
		}
	default:
		rec.Details = map[string]string{"view": "mine"}
		q.Requester = p.Subject
	}
	page, err := s.requests.ListRequests(ctx, q)
	if err != nil {
		return escrow.RequestPage{}, internal("list requests", err)
	}
	if in.PendingForMe {
		now := s.clock.Now()
		mine := page.Requests[:0]
		for _, r := range page.Requests {
			if r.Eligible(p, now) {
				mine = append(mine, r)
			}
		}
		page.Requests = mine
	}
	rec.Details["returned"] = strconv.Itoa(len(page.Requests))
	for i, r := range page.Requests {
		page.Requests[i] = r.Public()
	}
	return page, nil
}

// Decide records one approver's decision. The last approval of the last
// step creates the grant in the same write.
func (s *Service) Decide(ctx context.Context, id string, approve bool, comment string) (*escrow.Request, *escrow.Grant, error) {
	action := ActionRequestDeny
	if approve {
		action = ActionRequestApprove
	}
	rec := s.record(ctx, action, "request:"+id)
	rec.Comment = comment
	r, g, err := s.decide(ctx, id, approve, comment, rec)
	if err != nil {
		return nil, nil, s.fail(ctx, rec, err)
	}
	return r, g, nil
}

// decideRetries bounds how often a decision is re-applied when the request
// changed between read and write (another approver, or the workflow keeping
// its token): the rules are then checked again on the new state.
const decideRetries = 5

func (s *Service) decide(ctx context.Context, id string, approve bool, comment string, rec *escrow.AuditRecord) (*escrow.Request, *escrow.Grant, error) {
	for i := 0; ; i++ {
		r, g, err := s.decideOnce(ctx, id, approve, comment, rec)
		if i < decideRetries && err == errRaced {
			continue
		}
		if err == errRaced {
			return nil, nil, escrow.Errorf(escrow.CodeConflict, "request %s keeps changing while you decide; try again", id)
		}
		return r, g, err
	}
}

// errRaced marks a write that lost to a concurrent one. It is a plain
// error on purpose: errors.Is against an *escrow.Error matches any error
// of the same code.
var errRaced = errors.New("request changed concurrently")

func (s *Service) decideOnce(ctx context.Context, id string, approve bool, comment string, rec *escrow.AuditRecord) (*escrow.Request, *escrow.Grant, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, nil, err
	}
	r, err := s.requests.GetRequest(ctx, id)
	if errors.Is(err, escrow.ErrNotFound) {
		return nil, nil, escrow.Errorf(escrow.CodeNotFound, "request %s not found", id)
	}
	if err != nil {
		return nil, nil, internal("read request", err)
	}
	rec.SecretID, rec.Ticket = r.SecretID, r.Ticket
	prev, step := r.Revision, r.Step
	now := s.clock.Now()
	g, err := r.Decide(p, approve, comment, now)
	if err != nil {
		return nil, nil, err
	}
	rec.Details = map[string]string{"request": r.ID, "step": strconv.Itoa(r.Step + 1), "status": string(r.Status)}
	if g != nil {
		rec.Details["grant"] = g.ID
		rec.Details["start"] = g.Start.Format(time.RFC3339)
		rec.Details["end"] = g.End.Format(time.RFC3339)
	}
	if err := s.requests.UpdateRequest(ctx, r, prev, g, rec); err != nil {
		if errors.Is(err, escrow.ErrConflict) {
			return nil, nil, errRaced
		}
		return nil, nil, internal("update request", err)
	}
	switch {
	case r.Status == escrow.StatusPending && step != r.Step: // the next step begins
		s.notifyApprovers(ctx, r)
	case r.Status != escrow.StatusPending:
		s.notifyRequester(ctx, r, g, "")
		s.answerWorkflow(ctx, r)
		if g != nil {
			s.writeBack(ctx, r.Policy.Ticket, g, fmt.Sprintf("Escrow: %s access to %s for %s approved, %s to %s (request %s).",
				g.Access, g.SecretPath, g.Subject, stamp(g.Start), stamp(g.End), r.ID))
		}
	}
	return r.Public(), g, nil
}

// Cancel withdraws a request (its requester, or an admin), revoking the
// grant of an approved request whose window has not started.
func (s *Service) Cancel(ctx context.Context, id, comment string) (*escrow.Request, error) {
	rec := s.record(ctx, ActionRequestCancel, "request:"+id)
	rec.Comment = comment
	r, err := s.cancel(ctx, id, rec)
	if err != nil {
		return nil, s.fail(ctx, rec, err)
	}
	return r, nil
}

func (s *Service) cancel(ctx context.Context, id string, rec *escrow.AuditRecord) (*escrow.Request, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	r, err := s.get(ctx, id)
	if err != nil {
		return nil, err
	}
	rec.SecretID, rec.Ticket = r.SecretID, r.Ticket
	prev := r.Revision
	now := s.clock.Now()
	if err := r.Cancel(p, now); err != nil {
		return nil, err
	}
	if r.GrantID != "" {
		// Take the access away first: if the second write fails, the worst
		// case is a request still shown approved whose grant is revoked.
		g, err := s.requests.GetGrant(ctx, r.GrantID)
		if err != nil {
			return nil, internal("read grant", err)
		}
		gprev := g.Revision
		if err := g.Revoke(p, now); err != nil { // p is the requester (the holder) or an admin
			return nil, err
		}
		grec := s.record(ctx, ActionGrantRevoke, "grant:"+g.ID)
		grec.SecretID, grec.Ticket = g.SecretID, g.Ticket
		grec.Details = map[string]string{"grant": g.ID, "request": r.ID, "reason": "request cancelled"}
		if err := s.requests.UpdateGrant(ctx, g, gprev, grec); err != nil {
			return nil, internal("revoke grant", err)
		}
	}
	rec.Details = map[string]string{"request": r.ID}
	if err := s.requests.UpdateRequest(ctx, r, prev, nil, rec); err != nil {
		if errors.Is(err, escrow.ErrConflict) {
			return nil, escrow.Errorf(escrow.CodeConflict, "request %s changed meanwhile; read it again", id)
		}
		return nil, internal("update request", err)
	}
	s.answerWorkflow(ctx, r)
	return r.Public(), nil
}

// Revoke ends a grant now: its holder or an admin may.
func (s *Service) Revoke(ctx context.Context, grantID, comment string) (*escrow.Grant, error) {
	rec := s.record(ctx, ActionGrantRevoke, "grant:"+grantID)
	rec.Comment = comment
	g, err := s.revoke(ctx, grantID, rec)
	if err != nil {
		return nil, s.fail(ctx, rec, err)
	}
	return g, nil
}

func (s *Service) revoke(ctx context.Context, id string, rec *escrow.AuditRecord) (*escrow.Grant, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	g, err := s.requests.GetGrant(ctx, id)
	if errors.Is(err, escrow.ErrNotFound) {
		return nil, escrow.Errorf(escrow.CodeNotFound, "grant %s not found", id)
	}
	if err != nil {
		return nil, internal("read grant", err)
	}
	rec.SecretID, rec.Ticket = g.SecretID, g.Ticket
	prev := g.Revision
	now := s.clock.Now()
	if err := g.Revoke(p, now); err != nil {
		return nil, err
	}
	rec.Details = map[string]string{"grant": g.ID, "request": g.RequestID, "holder": g.Subject}
	if err := s.requests.UpdateGrant(ctx, g, prev, rec); err != nil {
		if errors.Is(err, escrow.ErrConflict) {
			return nil, escrow.Errorf(escrow.CodeConflict, "grant %s changed meanwhile; read it again", id)
		}
		return nil, internal("revoke grant", err)
	}
	s.syncRequest(ctx, g, now)
	return g, nil
}

// syncRequest brings a grant's request in line with it. The grant is what
// authorizes; a request left behind here is only a display issue, so a
// failure is logged, not returned.
func (s *Service) syncRequest(ctx context.Context, g *escrow.Grant, now time.Time) *escrow.Request {
	r, err := s.requests.GetRequest(ctx, g.RequestID)
	if err != nil {
		s.logger.WarnContext(ctx, "sync request with grant: read", "grant", g.ID, "err", err)
		return nil
	}
	prev := r.Revision
	if err := r.SyncGrant(g, now); err != nil || r.Revision == prev {
		return r
	}
	rec := s.record(ctx, "request.sync", "request:"+r.ID)
	rec.SecretID = r.SecretID
	rec.Details = map[string]string{"request": r.ID, "status": string(r.Status), "grant": g.ID}
	if err := s.requests.UpdateRequest(ctx, r, prev, nil, rec); err != nil {
		s.logger.WarnContext(ctx, "sync request with grant: write", "grant", g.ID, "err", err)
	}
	return r
}

// GrantsInput selects grants: the caller's own (default), or (admins,
// auditors) those of a secret.
type GrantsInput struct {
	SecretID string
	Cursor   string
	Limit    int
}

// Grants lists grants, newest first, with their status as the clock sees
// it now.
func (s *Service) Grants(ctx context.Context, in GrantsInput) (escrow.GrantPage, error) {
	rec := s.record(ctx, ActionGrantList, "grants")
	page, err := s.grants(ctx, in)
	if err != nil {
		return escrow.GrantPage{}, s.fail(ctx, rec, err)
	}
	if err := s.commit(ctx, rec); err != nil {
		return escrow.GrantPage{}, err
	}
	return page, nil
}

func (s *Service) grants(ctx context.Context, in GrantsInput) (escrow.GrantPage, error) {
	p, err := principal(ctx)
	if err != nil {
		return escrow.GrantPage{}, err
	}
	q := escrow.GrantQuery{Subject: p.Subject, Cursor: in.Cursor, Limit: in.Limit}
	if in.SecretID != "" {
		if !p.IsAdmin() && !p.HasRole(escrow.RoleAuditor) {
			return escrow.GrantPage{}, escrow.Errorf(escrow.CodeForbidden, "listing a secret's grants needs the admin or auditor role")
		}
		q = escrow.GrantQuery{SecretID: in.SecretID, Cursor: in.Cursor, Limit: in.Limit}
	}
	page, err := s.requests.ListGrants(ctx, q)
	if err != nil {
		return escrow.GrantPage{}, internal("list grants", err)
	}
	now := s.clock.Now()
	for _, g := range page.Grants {
		g.Status = g.StatusAt(now)
	}
	return page, nil
}

// GrantsOn returns the caller's own grants on one secret that have not
// ended, with their status as the clock sees it now, in one indexed read:
// what the web console shows on a secret's page. It is audited like
// Grants.
func (s *Service) GrantsOn(ctx context.Context, secretID string) ([]*escrow.Grant, error) {
	rec := s.record(ctx, ActionGrantList, escrow.SecretTarget(secretID))
	rec.SecretID = secretID
	p, err := principal(ctx)
	if err != nil {
		return nil, s.fail(ctx, rec, err)
	}
	now := s.clock.Now()
	gs, err := s.requests.GrantsFor(ctx, secretID, p.Subject, now)
	if err != nil {
		return nil, s.fail(ctx, rec, internal("list grants", err))
	}
	if err := s.commit(ctx, rec); err != nil {
		return nil, err
	}
	for _, g := range gs {
		g.Status = g.StatusAt(now)
	}
	return gs, nil
}
