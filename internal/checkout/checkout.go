// Package checkout is exclusive checkout of secrets: one person at a time
// holds a secret, and when they give it back (or their time runs out) its
// password is rotated on the real target, so what they saw was a one-time
// password.
//
// The lock is a conditional write on the secret's checkout slot (of any
// number of racing checkouts exactly one wins) that commits its audit
// record in the same transaction. A checkout authorizes only before its
// expiry, by the clock, whatever the workflow did or failed to do.
//
// It depends only on the ports of package escrow and must never put a
// secret value into a log, an audit record or an error.
package checkout

import (
	"context"
	"errors"
	"log/slog"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/escrow-pam/escrow/internal/audit"
	"github.com/escrow-pam/escrow/internal/envelope"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/rotation"
)

// TicketLookup finds a ticket in a configured system ("" = the default);
// any error means the ticket is not validated (fail closed).
type TicketLookup interface {
	Lookup(ctx context.Context, system, number string) (*escrow.Ticket, error)
}

// Config holds the ports the service needs.
type Config struct {
	Store     escrow.Store
	Checkouts escrow.CheckoutStore
	Audit     escrow.AuditLog
	Keys      escrow.Keys
	// Grants, if set, lets approved requests authorize checkouts that the
	// policy puts under approval; without it they are refused.
	Grants escrow.RequestStore
	// Workflow, if set, runs each checkout's state machine; without it a
	// checkout still works, and the sweeper ends it.
	Workflow escrow.CheckoutWorkflow
	// Hooks calls the policy's webhooks; without it a policy with hooks
	// refuses checkouts (fail closed).
	Hooks escrow.Hooks
	// Rotator runs rotations (the rotate function; the -dev server).
	Rotator *rotation.Rotator
	// Tickets validates the tickets a policy requires.
	Tickets TicketLookup
	Clock   escrow.Clock // nil = system clock
	Logger  *slog.Logger // nil = discard
}

// Service implements checkout, check-in, extension, forced check-in,
// rotate-now and the tasks of the checkout state machine.
type Service struct {
	store     escrow.Store
	checkouts escrow.CheckoutStore
	keys      escrow.Keys
	grants    escrow.RequestStore
	workflow  escrow.CheckoutWorkflow
	hooks     escrow.Hooks
	rotator   *rotation.Rotator
	tickets   TicketLookup
	clock     escrow.Clock
	logger    *slog.Logger
	rec       *audit.Recorder
}

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{store: cfg.Store, checkouts: cfg.Checkouts, keys: cfg.Keys, grants: cfg.Grants,
		workflow: cfg.Workflow, hooks: cfg.Hooks, rotator: cfg.Rotator, tickets: cfg.Tickets,
		clock: cfg.Clock, logger: cfg.Logger}
	if s.clock == nil {
		s.clock = escrow.SystemClock{}
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	s.rec = &audit.Recorder{Log: cfg.Audit, Clock: s.clock, Logger: s.logger}
	return s
}

// Input asks to check a secret out.
type Input struct {
	SecretID string
	Comment  string
	Ticket   string
}

// Result is a checkout and the value it hands out.
type Result struct {
	Checkout *escrow.Checkout  `json:"checkout"`
	Path     string            `json:"path"`
	Type     escrow.SecretType `json:"type"`
	Version  int               `json:"version"`
	// Value is the secret's current value: after check-in (with rotation)
	// it no longer works.
	Value escrow.SecretValue `json:"value"`
}

func (s *Service) record(ctx context.Context, action, secretID string) *escrow.AuditRecord {
	rec := s.rec.New(ctx, action, escrow.SecretTarget(secretID))
	rec.SecretID = secretID
	rec.Details = map[string]string{}
	return rec
}

func principal(ctx context.Context) (*escrow.Principal, error) {
	p := escrow.PrincipalFrom(ctx)
	if p == nil || p.Subject == "" {
		return nil, escrow.ErrUnauthenticated
	}
	return p, nil
}

func actorOf(p *escrow.Principal) escrow.Actor {
	return escrow.Actor{Subject: p.Subject, Email: p.Email, Groups: p.Groups, Roles: p.Roles}
}

// internal keeps coded errors and marks anything else internal.
func internal(verb string, err error) error {
	var e *escrow.Error
	if errors.As(err, &e) {
		return err
	}
	return escrow.Wrap(escrow.CodeInternal, err, verb)
}

// secret reads a secret and its folders and checks the caller holds need.
// A caller who may not list it is told it does not exist.
func (s *Service) secret(ctx context.Context, p *escrow.Principal, id string, need escrow.Permission) (*escrow.Secret, []escrow.Folder, escrow.Permission, error) {
	if id == "" || len(id) > 64 {
		return nil, nil, "", escrow.Errorf(escrow.CodeInvalid, "secret id must be 1 to 64 characters")
	}
	sec, err := s.store.GetSecret(ctx, id)
	if errors.Is(err, escrow.ErrNotFound) {
		return nil, nil, "", escrow.Errorf(escrow.CodeNotFound, "secret %s not found", id)
	}
	if err != nil {
		return nil, nil, "", internal("read secret", err)
	}
	folders, err := s.store.GetFolders(ctx, escrow.Ancestors(sec.Folder))
	if err != nil {
		return nil, nil, "", internal("read folders", err)
	}
	perm := escrow.PermOwner
	if !p.IsAdmin() {
		perm = escrow.Effective(p, sec.ACL, folders)
	}
	if !perm.Includes(escrow.PermList) || sec.Deleted() {
		return nil, nil, perm, &escrow.Error{Code: escrow.CodeNotFound, Message: "secret " + id + " not found", Err: escrow.ErrForbidden}
	}
	if !perm.Includes(need) {
		return nil, nil, perm, escrow.Errorf(escrow.CodeForbidden, "you need %s permission on %s (you have %s)", need, sec.Path(), perm)
	}
	return sec, folders, perm, nil
}

// caller is the caller and the secret id, which they must hold need on;
// the secret's path goes into rec.
func (s *Service) caller(ctx context.Context, id string, need escrow.Permission, rec *escrow.AuditRecord) (*escrow.Principal, *escrow.Secret, []escrow.Folder, escrow.Permission, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, nil, nil, "", err
	}
	sec, folders, perm, err := s.secret(ctx, p, id, need)
	if err != nil {
		return nil, nil, nil, "", err
	}
	rec.Details["path"] = sec.Path()
	return p, sec, folders, perm, nil
}

// rule returns the checkout rule that governs sec, or an error saying none
// does.
func rule(sec *escrow.Secret, folders []escrow.Folder) (*escrow.Policy, string, error) {
	pol, from, ok := escrow.EffectivePolicy(sec.Policy, sec.Folder, folders)
	if !ok || pol.Checkout == nil {
		return nil, "", escrow.Errorf(escrow.CodeInvalid, "%s is not under a checkout policy; reveal it instead, or set policy.checkout", sec.Path())
	}
	return pol, from, nil
}

// slot reads a secret's checkout slot; nil if it was never used.
func (s *Service) slot(ctx context.Context, id string) (*escrow.Checkout, error) {
	c, err := s.checkouts.GetCheckout(ctx, id)
	if errors.Is(err, escrow.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, internal("read checkout", err)
	}
	return c, nil
}

// Checkout checks a secret out: the caller needs view; the policy's
// comment, approval and ticket rules apply; every pre-checkout hook must
// let it through; the slot must be free. The lock and its audit record
// commit together, then the value is returned with the expiry.
func (s *Service) Checkout(ctx context.Context, in Input) (*Result, error) {
	rec := s.record(ctx, escrow.ActionCheckout, in.SecretID)
	rec.Comment = strings.TrimSpace(in.Comment)
	res, err := s.checkout(ctx, in, rec)
	if err != nil {
		return nil, s.rec.Fail(ctx, rec, err)
	}
	s.startWorkflow(ctx, escrow.CheckoutWorkflowInput{SecretID: res.Checkout.SecretID, CheckoutID: res.Checkout.ID,
		WaitSeconds: escrow.SecondsUntil(res.Checkout.Expires, s.clock.Now())})
	return res, nil
}

func (s *Service) checkout(ctx context.Context, in Input, rec *escrow.AuditRecord) (*Result, error) {
	p, sec, folders, _, err := s.caller(ctx, in.SecretID, escrow.PermView, rec)
	if err != nil {
		return nil, err
	}
	if sec.QLock != nil && !sec.QLock.IsMember(p.Subject) {
		return nil, escrow.Errorf(escrow.CodeForbidden, "%s is QuantumLocked; only its members can check it out", sec.Path())
	}
	pol, from, err := rule(sec, folders)
	if err != nil {
		return nil, err
	}
	cr := pol.Checkout
	if err := pol.Comment.Check(in.Comment); err != nil {
		return nil, err
	}
	now := s.clock.Now()
	next := &escrow.Checkout{
		SecretID: sec.ID, ID: escrow.NewID(now), Holder: actorOf(p),
		Interval: escrow.Duration(cr.IntervalOrDefault()), MaxExtensions: cr.MaxExtensions,
		Comment: rec.Comment, Version: sec.CurrentVersion, Rotate: cr.Rotates(sec.Rotation),
	}
	var grantEnd time.Time
	if pol.Approval.Requires(escrow.AccessCheckout) {
		g, err := s.grantFor(ctx, p, sec, from, now)
		if err != nil {
			return nil, err
		}
		next.GrantID, next.Ticket, grantEnd = g.ID, g.Ticket, g.End
		rec.Details["grant"] = g.ID
	} else if pol.Ticket != nil {
		t, err := s.ticket(ctx, pol.Ticket, p, sec, in, now, now.Add(next.Interval.D()))
		if err != nil {
			return nil, err
		}
		next.Ticket = t.Number
	}
	rec.Ticket = next.Ticket
	prev, err := s.slot(ctx, sec.ID)
	if err != nil {
		return nil, err
	}
	if err := prev.Busy(true, now); err != nil {
		return nil, err
	}
	if err := s.preHooks(ctx, sec, next, cr.PreHooks); err != nil {
		return nil, err
	}
	value, err := s.current(ctx, sec)
	if err != nil {
		return nil, err
	}
	now = s.clock.Now()
	prevRev := int64(0)
	if prev != nil {
		prevRev = prev.Revision
	}
	if err := prev.Begin(next, true, now); err != nil {
		return nil, err
	}
	if !grantEnd.IsZero() && grantEnd.Before(next.Expires) {
		next.Expires = grantEnd // a checkout never outlives its grant
	}
	rec.Details["checkout"] = next.ID
	rec.Details["version"] = strconv.Itoa(next.Version)
	rec.Details["expires"] = next.Expires.Format(time.RFC3339)
	if err := s.checkouts.PutCheckout(ctx, next, prevRev, rec); err != nil {
		if errors.Is(err, escrow.ErrConflict) {
			// Someone else won the race: name them.
			if cur, rerr := s.slot(ctx, sec.ID); rerr == nil {
				if berr := cur.Busy(true, s.clock.Now()); berr != nil {
					return nil, berr
				}
			}
			return nil, escrow.Errorf(escrow.CodeConflict, "someone else checked %s out at the same moment", sec.Path())
		}
		return nil, internal("write checkout", err)
	}
	return &Result{Checkout: next.Public(), Path: sec.Path(), Type: sec.Type, Version: next.Version, Value: value}, nil
}

// grantFor finds the caller's grant that authorizes checkout now.
func (s *Service) grantFor(ctx context.Context, p *escrow.Principal, sec *escrow.Secret, from string, now time.Time) (*escrow.Grant, error) {
	refused := &escrow.Error{Code: escrow.CodeForbidden,
		Message: "the policy (" + from + ") requires an approved access request for checkout; ask with: escrow request " +
			sec.Path() + " --access checkout",
		Err: errors.New("no grant authorizes this checkout now")}
	if s.grants == nil {
		return nil, refused
	}
	gs, err := s.grants.GrantsFor(ctx, sec.ID, p.Subject, now)
	if err != nil {
		return nil, internal("read grants", err)
	}
	for _, g := range gs {
		if g.Authorizes(p.Subject, escrow.AccessCheckout, now) {
			return g, nil
		}
	}
	return nil, refused
}

// ticket validates the ticket a policy demands of a checkout, live.
func (s *Service) ticket(ctx context.Context, tr *escrow.TicketRule, p *escrow.Principal, sec *escrow.Secret, in Input, start, end time.Time) (*escrow.Ticket, error) {
	number := strings.TrimSpace(in.Ticket)
	if number == "" || strings.ContainsAny(number, " \t\n") {
		return nil, escrow.Errorf(escrow.CodeInvalid, "the policy requires a change or incident ticket number (escrow checkout --ticket CHG...)")
	}
	if s.tickets == nil {
		return nil, escrow.Errorf(escrow.CodeUnavailable, "the policy requires a ticket, but no ticket system is configured")
	}
	t, err := s.tickets.Lookup(ctx, tr.System, number)
	if err != nil {
		return nil, err
	}
	if err := tr.Check(t, actorOf(p), sec, start, end); err != nil {
		return nil, err
	}
	return t, nil
}

// Status returns a secret's checkout slot; the caller needs list. Callers
// without view see the status but not the holder.
func (s *Service) Status(ctx context.Context, id string) (*escrow.Checkout, error) {
	rec := s.record(ctx, escrow.ActionCheckoutStatus, id)
	c, err := s.status(ctx, id, rec)
	if err != nil {
		return nil, s.rec.Fail(ctx, rec, err)
	}
	if err := s.rec.Commit(ctx, rec); err != nil {
		return nil, err
	}
	return c, nil
}

func (s *Service) status(ctx context.Context, id string, rec *escrow.AuditRecord) (*escrow.Checkout, error) {
	p, _, _, perm, err := s.caller(ctx, id, escrow.PermList, rec)
	if err != nil {
		return nil, err
	}
	c, err := s.slot(ctx, id)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return &escrow.Checkout{SecretID: id, Status: escrow.CheckoutReleased}, nil
	}
	c = c.Public()
	if !perm.Includes(escrow.PermView) && c.Holder.Subject != p.Subject {
		c.Holder, c.Comment, c.Ticket = escrow.Actor{}, "", ""
	}
	return c, nil
}

// Checkin gives a checkout back (its holder). The slot moves to rotating
// (or straight to released if it does not rotate) and the workflow is told.
func (s *Service) Checkin(ctx context.Context, id, comment string) (*escrow.Checkout, error) {
	return s.end(ctx, id, comment, escrow.ActionCheckin, "checkin")
}

// ForceCheckin ends someone's checkout (an admin or the secret's owner),
// with the same rotation as a check-in.
func (s *Service) ForceCheckin(ctx context.Context, id, comment string) (*escrow.Checkout, error) {
	return s.end(ctx, id, comment, escrow.ActionForceCheckin, "force-checkin")
}

func (s *Service) end(ctx context.Context, id, comment, action, reason string) (*escrow.Checkout, error) {
	rec := s.record(ctx, action, id)
	rec.Comment = strings.TrimSpace(comment)
	c, err := s.retry(ctx, func() (*escrow.Checkout, error) { return s.endOnce(ctx, id, reason, rec) })
	if err != nil {
		return nil, s.rec.Fail(ctx, rec, err)
	}
	s.answer(ctx, c, map[string]any{"status": "ended", "waitSeconds": 0})
	return c.Public(), nil
}

func (s *Service) endOnce(ctx context.Context, id, reason string, rec *escrow.AuditRecord) (*escrow.Checkout, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	need := escrow.PermList
	if reason == "force-checkin" {
		need = escrow.PermOwner
	}
	sec, _, _, err := s.secret(ctx, p, id, need)
	if err != nil {
		return nil, err
	}
	rec.Details["path"] = sec.Path()
	c, err := s.slot(ctx, id)
	if err != nil {
		return nil, err
	}
	if c == nil || c.Status != escrow.CheckoutActive {
		return nil, escrow.Errorf(escrow.CodeConflict, "%s is not checked out", sec.Path())
	}
	if reason == "checkin" && c.Holder.Subject != p.Subject {
		return nil, escrow.Errorf(escrow.CodeForbidden, "%s is checked out by someone else; an owner or admin can force a check-in", sec.Path())
	}
	prev := c.Revision
	st, err := c.End(p.Subject, reason, s.clock.Now())
	if err != nil {
		return nil, err
	}
	rec.Ticket = c.Ticket
	rec.Details["checkout"], rec.Details["holder"], rec.Details["next"] = c.ID, c.Holder.Subject, string(st)
	if err := s.checkouts.PutCheckout(ctx, c, prev, rec); err != nil {
		return nil, writeErr(err)
	}
	return c, nil
}

// writeErr marks a lost race on the slot (retried) apart from a rule's
// conflict (final).
func writeErr(err error) error {
	if errors.Is(err, escrow.ErrConflict) {
		return &escrow.Error{Code: escrow.CodeConflict, Message: "the checkout changed meanwhile; try again", Err: err}
	}
	return internal("write checkout", err)
}

// Extend adds one interval to the caller's checkout, if the policy allows
// another extension; the workflow's wait is re-armed.
func (s *Service) Extend(ctx context.Context, id string) (*escrow.Checkout, error) {
	rec := s.record(ctx, escrow.ActionCheckoutExtend, id)
	c, err := s.retry(ctx, func() (*escrow.Checkout, error) {
		p, sec, _, _, err := s.caller(ctx, id, escrow.PermList, rec)
		if err != nil {
			return nil, err
		}
		c, err := s.slot(ctx, id)
		if err != nil {
			return nil, err
		}
		if c == nil {
			return nil, escrow.Errorf(escrow.CodeConflict, "%s is not checked out", sec.Path())
		}
		prev := c.Revision
		if err := c.Extend(p.Subject, s.clock.Now()); err != nil {
			return nil, err
		}
		if c.GrantID != "" && s.grants != nil {
			// A checkout never outlives the grant that allowed it.
			g, err := s.grants.GetGrant(ctx, c.GrantID)
			if err != nil {
				return nil, internal("read grant", err)
			}
			if !c.Expires.Before(g.End) {
				return nil, escrow.Errorf(escrow.CodeConflict, "the checkout cannot run past its grant's end at %s", g.End.UTC().Format(time.RFC3339))
			}
		}
		rec.Ticket = c.Ticket
		rec.Details["checkout"], rec.Details["expires"] = c.ID, c.Expires.Format(time.RFC3339)
		rec.Details["extensions"] = strconv.Itoa(c.Extensions)
		if err := s.checkouts.PutCheckout(ctx, c, prev, rec); err != nil {
			return nil, writeErr(err)
		}
		return c, nil
	})
	if err != nil {
		return nil, s.rec.Fail(ctx, rec, err)
	}
	s.answer(ctx, c, map[string]any{"status": "extended", "waitSeconds": escrow.SecondsUntil(c.Expires, s.clock.Now())})
	return c.Public(), nil
}

// RotateNow rotates a secret's password at once (an owner or admin). The
// slot must be free; it is held as rotating while the same workflow as a
// check-in runs. A slot stuck rotating for StuckAfter (a dead execution)
// is taken over.
func (s *Service) RotateNow(ctx context.Context, id string) (*escrow.Checkout, error) {
	rec := s.record(ctx, escrow.ActionRotateNow, id)
	c, err := s.rotateNow(ctx, id, rec)
	if err != nil {
		return nil, s.rec.Fail(ctx, rec, err)
	}
	s.startWorkflow(ctx, escrow.CheckoutWorkflowInput{SecretID: id, CheckoutID: c.ID, WaitSeconds: 1, RotateNow: true})
	return c.Public(), nil
}

// StuckAfter is how long a rotation may go without progress before an
// owner's rotate-now (or the sweeper) takes it over.
const StuckAfter = 10 * time.Minute

func (s *Service) rotateNow(ctx context.Context, id string, rec *escrow.AuditRecord) (*escrow.Checkout, error) {
	p, sec, _, _, err := s.caller(ctx, id, escrow.PermOwner, rec)
	if err != nil {
		return nil, err
	}
	if sec.Rotation == nil {
		return nil, escrow.Errorf(escrow.CodeInvalid, "%s has no rotation configured (escrow rotation set)", sec.Path())
	}
	prev, err := s.slot(ctx, id)
	if err != nil {
		return nil, err
	}
	now := s.clock.Now()
	stuck := prev != nil && prev.Status == escrow.CheckoutRotating && now.Sub(prev.UpdatedAt) > StuckAfter
	if !stuck {
		if err := prev.Busy(true, now); err != nil {
			return nil, err
		}
	}
	c := &escrow.Checkout{SecretID: id, ID: escrow.NewID(now), Status: escrow.CheckoutRotating, Holder: actorOf(p),
		Start: now, Expires: now, Version: sec.CurrentVersion, Rotate: true, EndedAt: &now, EndedBy: p.Subject,
		EndReason: "rotate-now", Revision: 1, UpdatedAt: now}
	prevRev := int64(0)
	if prev != nil {
		prevRev, c.Revision = prev.Revision, prev.Revision+1
		if stuck {
			rec.Details["tookOver"] = prev.ID
		}
	}
	rec.Details["checkout"] = c.ID
	if err := s.checkouts.PutCheckout(ctx, c, prevRev, rec); err != nil {
		return nil, internal("write checkout", err)
	}
	return c, nil
}

// SetRotation sets (or, with nil, clears) how a secret's password is
// rotated; the caller needs owner, and owner on the privileged secret it
// names (or it could make Escrow use credentials it may not see). The
// account fields are pinned then: a privileged rotation refuses to run
// once they change.
func (s *Service) SetRotation(ctx context.Context, id string, cfg *escrow.RotationConfig) (*escrow.Secret, error) {
	rec := s.record(ctx, escrow.ActionRotationSet, id)
	sec, err := s.setRotation(ctx, id, cfg, rec)
	if err != nil {
		return nil, s.rec.Fail(ctx, rec, err)
	}
	return sec, nil
}

func (s *Service) setRotation(ctx context.Context, id string, cfg *escrow.RotationConfig, rec *escrow.AuditRecord) (*escrow.Secret, error) {
	p, sec, _, _, err := s.caller(ctx, id, escrow.PermOwner, rec)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg != nil {
		if sec.Type != escrow.TypePassword && sec.Type != escrow.TypeGeneric {
			return nil, escrow.Errorf(escrow.CodeInvalid, "only password and generic secrets can be rotated")
		}
		rec.Details["target"] = cfg.Target
		cfg.Pinned = nil
		if cfg.Privileged != "" {
			if cfg.Privileged == id {
				return nil, escrow.Errorf(escrow.CodeInvalid, "a secret cannot be its own privileged account")
			}
			// Owner, not view: the rotation uses the privileged secret
			// without its policy's approvals or checkout, so only someone
			// who could lift that policy may lend it out.
			if _, _, _, err := s.secret(ctx, p, cfg.Privileged, escrow.PermOwner); err != nil {
				return nil, escrow.Errorf(escrow.CodeForbidden, "the privileged account %s must be a secret you own", cfg.Privileged)
			}
			val, err := s.current(ctx, sec)
			if err != nil {
				return nil, err
			}
			cfg.Pinned = escrow.PinAccount(val)
			rec.Details["privileged"] = cfg.Privileged
		}
	}
	next := *sec
	next.Rotation = cfg
	next.Revision++
	next.UpdatedAt, next.UpdatedBy = s.clock.Now(), p.Subject
	if err := s.store.UpdateSecret(ctx, &next, sec.Revision, nil, rec); err != nil {
		return nil, internal("update secret", err)
	}
	return &next, nil
}

// retry runs fn again when it lost a race with the workflow (which writes
// its task token into the slot): the second read sees the token.
func (s *Service) retry(ctx context.Context, fn func() (*escrow.Checkout, error)) (*escrow.Checkout, error) {
	var c *escrow.Checkout
	var err error
	for range 4 {
		c, err = fn()
		if !errors.Is(err, escrow.ErrConflict) || ctx.Err() != nil {
			return c, err
		}
		var e *escrow.Error
		if errors.As(err, &e) && e.Err == nil {
			return c, err // a rule's conflict (not checked out, out of extensions): final
		}
	}
	return c, err
}

// startWorkflow starts a checkout's execution. The checkout stands without
// it (the clock decides, the sweeper ends it), so a failure is logged.
func (s *Service) startWorkflow(ctx context.Context, in escrow.CheckoutWorkflowInput) {
	if s.workflow == nil {
		return
	}
	if err := s.workflow.StartCheckout(ctx, in); err != nil {
		s.logger.WarnContext(ctx, "start checkout workflow", "secret", in.SecretID, "checkout", in.CheckoutID, "err", err)
	}
}

// answer hands the workflow's wait for check-in its answer.
func (s *Service) answer(ctx context.Context, c *escrow.Checkout, out any) {
	if s.workflow == nil || c.Token == "" {
		return
	}
	if err := s.workflow.SendTaskSuccess(ctx, c.Token, out); err != nil {
		s.logger.WarnContext(ctx, "answer checkout workflow", "secret", c.SecretID, "checkout", c.ID, "err", err)
	}
}

// current decrypts a secret's current version.
func (s *Service) current(ctx context.Context, sec *escrow.Secret) (escrow.SecretValue, error) {
	v, err := s.store.GetVersion(ctx, sec.ID, sec.CurrentVersion)
	if err != nil {
		return nil, internal("read version", err)
	}
	val, err := envelope.Open(ctx, s.keys, v)
	if err != nil {
		return nil, internal("decrypt value", err)
	}
	return val, nil
}

// hookKey reads a hook's signing key from the Escrow secret it names (an
// ID or a path): field "key", else "password".
func (s *Service) hookKey(ctx context.Context, ref string) ([]byte, error) {
	var sec *escrow.Secret
	var err error
	if strings.HasPrefix(ref, "/") {
		dir, name := path.Split(ref)
		folder, cerr := escrow.CleanFolder(dir)
		if cerr != nil {
			return nil, cerr
		}
		sec, err = s.store.GetSecretByPath(ctx, folder, name)
	} else {
		sec, err = s.store.GetSecret(ctx, ref)
	}
	if err == nil && sec.Deleted() {
		err = escrow.ErrNotFound
	}
	if err != nil {
		return nil, escrow.Wrap(escrow.CodeUnavailable, err, "the hook's signing key secret "+ref+" cannot be read")
	}
	val, err := s.current(ctx, sec)
	if err != nil {
		return nil, err
	}
	k := val["key"]
	if k == "" {
		k = val["password"]
	}
	if k == "" {
		return nil, escrow.Errorf(escrow.CodeUnavailable, "the hook's signing key secret %s has no key field", ref)
	}
	return []byte(k), nil
}

// event describes a checkout to a hook.
func (s *Service) event(kind string, sec *escrow.Secret, c *escrow.Checkout, outcome string) escrow.HookEvent {
	ev := escrow.HookEvent{Event: kind, SecretID: sec.ID, SecretPath: sec.Path(), CheckoutID: c.ID,
		Subject: c.Holder.Subject, Email: c.Holder.Email, Comment: c.Comment, Ticket: c.Ticket, Outcome: outcome,
		Time: s.clock.Now().Format(time.RFC3339)}
	if !c.Expires.IsZero() {
		ev.Expires = c.Expires.Format(time.RFC3339)
	}
	return ev
}

// preHooks calls each pre-checkout hook in order, each audited. A veto
// blocks the checkout with the hook's message; a failure blocks it when
// the hook says stopOnFailure.
func (s *Service) preHooks(ctx context.Context, sec *escrow.Secret, c *escrow.Checkout, hooks []escrow.HookRule) error {
	for _, h := range hooks {
		res, err := s.callHook(ctx, "pre-checkout", sec, c, h, "")
		switch {
		case err != nil && h.StopOnFailure:
			return escrow.Errorf(escrow.CodeUnavailable, "checkout stopped: the pre-checkout hook %q failed: %s", h.Name, escrow.ErrorMessage(err))
		case err != nil:
			continue
		case !res.Allow:
			msg := res.Message
			if msg == "" {
				msg = "no reason given"
			}
			return escrow.Errorf(escrow.CodeForbidden, "checkout refused by hook %q: %s", h.Name, msg)
		}
	}
	return nil
}

// callHook calls one hook and writes its audit record.
func (s *Service) callHook(ctx context.Context, kind string, sec *escrow.Secret, c *escrow.Checkout, h escrow.HookRule, outcome string) (escrow.HookResult, error) {
	rec := s.record(ctx, escrow.ActionHook, sec.ID)
	rec.Ticket = c.Ticket
	rec.Details["path"], rec.Details["hook"], rec.Details["event"], rec.Details["checkout"] = sec.Path(), h.Name, kind, c.ID
	res, err := s.hookCall(ctx, kind, sec, c, h, outcome)
	if err != nil {
		if aerr := s.rec.Fail(ctx, rec, err); errors.Is(aerr, escrow.ErrUnavailable) && !errors.Is(err, escrow.ErrUnavailable) {
			return res, aerr
		}
		return res, err
	}
	rec.Details["allow"] = strconv.FormatBool(res.Allow)
	if res.Message != "" {
		rec.Reason = res.Message
	}
	if !res.Allow {
		rec.Outcome = escrow.OutcomeDenied
	}
	if err := s.rec.Commit(ctx, rec); err != nil {
		return res, err
	}
	return res, nil
}

func (s *Service) hookCall(ctx context.Context, kind string, sec *escrow.Secret, c *escrow.Checkout, h escrow.HookRule, outcome string) (escrow.HookResult, error) {
	if s.hooks == nil {
		return escrow.HookResult{}, escrow.Errorf(escrow.CodeUnavailable, "hooks are not configured on this server")
	}
	key, err := s.hookKey(ctx, h.KeySecret)
	if err != nil {
		return escrow.HookResult{}, err
	}
	defer clear(key)
	return s.hooks.Call(ctx, h, key, s.event(kind, sec, c, outcome))
}
