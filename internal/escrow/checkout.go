package escrow

import (
	"context"
	"net/url"
	"time"
)

// CheckoutRule is the checkout part of a policy: one person at a time
// holds the secret, and (by default, for a secret with a rotation) its
// password is changed on the real target when they give it back.
type CheckoutRule struct {
	// Required makes every reveal need the caller's own checkout.
	Required bool `json:"required"`
	// Interval is how long a checkout lasts (and each extension adds); 0
	// means 30 minutes.
	Interval Duration `json:"interval,omitempty"`
	// MaxExtensions bounds how often a holder may extend.
	MaxExtensions int `json:"maxExtensions,omitempty"`
	// RotateOnCheckin rotates the password when the checkout ends (check
	// in, expiry, force check-in). Unset means yes for a secret that has a
	// rotation.
	RotateOnCheckin *bool `json:"rotateOnCheckin,omitempty"`
	// PreHooks run before the lock is taken, in order; PostHooks after the
	// rotation, before the secret is released.
	PreHooks  []HookRule `json:"preHooks,omitempty"`
	PostHooks []HookRule `json:"postHooks,omitempty"`
}

// DefaultCheckoutInterval is a checkout's length when the policy sets none.
const DefaultCheckoutInterval = 30 * time.Minute

// IntervalOrDefault is the checkout's length.
func (c *CheckoutRule) IntervalOrDefault() time.Duration {
	if c == nil || c.Interval <= 0 {
		return DefaultCheckoutInterval
	}
	return c.Interval.D()
}

// Rotates reports whether a checkout under c ends with a rotation of a
// secret whose rotation is r.
func (c *CheckoutRule) Rotates(r *RotationConfig) bool {
	if c != nil && c.RotateOnCheckin != nil {
		return *c.RotateOnCheckin && r != nil
	}
	return r != nil
}

// Validate checks a checkout rule's shape.
func (c *CheckoutRule) Validate() error {
	if c == nil {
		return nil
	}
	if c.Interval < 0 || c.Interval.D() > 7*24*time.Hour || (c.Interval > 0 && c.Interval.D() < time.Second) {
		return Errorf(CodeInvalid, "checkout.interval must be between 1s and 7 days")
	}
	if c.MaxExtensions < 0 || c.MaxExtensions > 100 {
		return Errorf(CodeInvalid, "checkout.maxExtensions must be 0 to 100")
	}
	if len(c.PreHooks)+len(c.PostHooks) > 10 {
		return Errorf(CodeInvalid, "a checkout policy has at most 10 hooks")
	}
	for _, hs := range [][]HookRule{c.PreHooks, c.PostHooks} {
		for _, h := range hs {
			if err := h.Validate(); err != nil {
				return err
			}
		}
	}
	return nil
}

// Validate checks a hook's shape.
func (h HookRule) Validate() error {
	if h.Name == "" || len(h.Name) > 64 {
		return Errorf(CodeInvalid, "every hook needs a name of 1 to 64 characters")
	}
	u, err := url.Parse(h.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return Errorf(CodeInvalid, "hook %q: url must be an http(s) URL without credentials", h.Name)
	}
	if h.KeySecret == "" {
		return Errorf(CodeInvalid, "hook %q: keySecret must name the Escrow secret holding its signing key", h.Name)
	}
	if h.Timeout < 0 || h.Timeout.D() > 30*time.Second || (h.Timeout > 0 && h.Timeout.D() < time.Second) {
		return Errorf(CodeInvalid, "hook %q: timeout must be between 1s and 30s", h.Name)
	}
	return nil
}

// CheckoutStatus is where a secret's checkout slot is:
//
//	released → active → rotating → released
//	rotating → rotation_failed → rotating (retried with backoff)
//	active → released                       (no rotation)
//
// Only released lets anyone check the secret out. A checkout past its
// expiry stays locked (as active, then rotating) until its password is
// rotated: the password its holder saw is still the live one.
type CheckoutStatus string

// The checkout statuses. Their string values are part of the public API.
const (
	CheckoutActive         CheckoutStatus = "active"
	CheckoutRotating       CheckoutStatus = "rotating"
	CheckoutRotationFailed CheckoutStatus = "rotation_failed"
	CheckoutReleased       CheckoutStatus = "released"
)

// Checkout is a secret's checkout slot: one per secret, holding the
// current (or last) checkout. Writes are conditional on Revision, so of
// any number of racing checkouts exactly one wins.
type Checkout struct {
	SecretID      string         `json:"secretId"`
	ID            string         `json:"id"` // this checkout's id (a new one on every checkout)
	Status        CheckoutStatus `json:"status"`
	Holder        Actor          `json:"holder"`
	Start         time.Time      `json:"start"`
	Expires       time.Time      `json:"expires"`
	Interval      Duration       `json:"interval"`
	Extensions    int            `json:"extensions"`
	MaxExtensions int            `json:"maxExtensions"`
	Comment       string         `json:"comment,omitempty"`
	Ticket        string         `json:"ticket,omitempty"`
	GrantID       string         `json:"grantId,omitempty"`
	// Version is the secret version the holder was given.
	Version int `json:"version"`
	// Rotate says the checkout ends with a rotation.
	Rotate bool `json:"rotate"`
	// EndedAt, EndedBy and EndReason (checkin, expired, force-checkin,
	// rotate-now) say how it ended.
	EndedAt   *time.Time `json:"endedAt,omitempty"`
	EndedBy   string     `json:"endedBy,omitempty"`
	EndReason string     `json:"endReason,omitempty"`
	// RotationAttempts counts failed rotations since the checkout ended;
	// RotationError is the last one's client-safe message.
	RotationAttempts int    `json:"rotationAttempts,omitempty"`
	RotationError    string `json:"rotationError,omitempty"`
	// Token is the task token of the workflow's wait for check-in. It
	// stays server-side: Public strips it.
	Token     string    `json:"token,omitempty"`
	Revision  int64     `json:"revision"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Public returns a copy without the task token, for answers.
func (c *Checkout) Public() *Checkout {
	cp := *c
	cp.Token = ""
	return &cp
}

// Open reports whether the slot is taken (by a holder or a rotation).
func (c *Checkout) Open() bool { return c != nil && c.Status != CheckoutReleased && c.Status != "" }

// Holds reports whether subject holds the checkout at now: active, theirs,
// and before its expiry. Decided by the clock: a checkout past Expires
// authorizes nothing even if nothing has processed its end yet.
func (c *Checkout) Holds(subject string, now time.Time) bool {
	return c != nil && subject != "" && c.Status == CheckoutActive &&
		c.Holder.Subject == subject && now.Before(c.Expires)
}

// AllowsReveal says whether subject may reveal a secret whose slot is c
// (nil if never used) at now: nil if so. With required, subject must hold
// the checkout; without, subject may reveal unless the slot is taken by
// someone else or by a rotation.
func (c *Checkout) AllowsReveal(subject string, required bool, path string, now time.Time) error {
	if c.Holds(subject, now) {
		return nil
	}
	if c.Open() {
		return c.Busy(true, now)
	}
	if required {
		return Errorf(CodeForbidden, "%s must be checked out to be revealed: escrow checkout %s", path, path)
	}
	return nil
}

// Begin fills a new checkout into the slot prev (nil if the secret was
// never checked out). Returns ErrConflict, naming the holder and expiry
// when showHolder, if the slot is taken.
func (prev *Checkout) Begin(next *Checkout, showHolder bool, now time.Time) error {
	if err := prev.Busy(showHolder, now); err != nil {
		return err
	}
	next.Status = CheckoutActive
	next.Start = now.UTC()
	next.Expires = next.Start.Add(next.Interval.D())
	next.Revision = 1
	if prev != nil {
		next.Revision = prev.Revision + 1
	}
	next.UpdatedAt = next.Start
	return nil
}

// Busy returns nil if the slot is free, else ErrConflict saying why: who
// holds it until when (if showHolder), or that a rotation is running or
// failed.
func (c *Checkout) Busy(showHolder bool, now time.Time) error {
	if !c.Open() {
		return nil
	}
	switch c.Status {
	case CheckoutActive:
		if showHolder {
			if !now.Before(c.Expires) {
				return Errorf(CodeConflict, "the secret is checked out by %s; the checkout expired at %s and its password is being rotated", holderName(c.Holder), stamp(c.Expires))
			}
			return Errorf(CodeConflict, "the secret is checked out by %s until %s", holderName(c.Holder), stamp(c.Expires))
		}
		return Errorf(CodeConflict, "the secret is checked out by someone else")
	case CheckoutRotationFailed:
		return Errorf(CodeConflict, "the secret is locked: rotating its password failed (%d attempts); an administrator must repair it", c.RotationAttempts)
	}
	return Errorf(CodeConflict, "the secret's password is being rotated; try again shortly")
}

func holderName(a Actor) string {
	if a.Email != "" {
		return a.Subject + " <" + a.Email + ">"
	}
	return a.Subject
}

// Extend adds one interval to an active, unexpired checkout held by
// subject. Returns ErrForbidden for anyone else and ErrConflict once
// expired, ended or out of extensions.
func (c *Checkout) Extend(subject string, now time.Time) error {
	if c.Status != CheckoutActive || c.Holder.Subject != subject {
		return Errorf(CodeForbidden, "only the holder of an active checkout can extend it")
	}
	if !now.Before(c.Expires) {
		return Errorf(CodeConflict, "the checkout expired at %s", stamp(c.Expires))
	}
	if c.Extensions >= c.MaxExtensions {
		return Errorf(CodeConflict, "the checkout has used %d of %d extensions; the policy allows %d", c.Extensions, c.MaxExtensions, c.MaxExtensions)
	}
	c.Extensions++
	c.Expires = c.Expires.Add(c.Interval.D())
	c.touch(now)
	return nil
}

// End ends an active checkout (reason checkin, expired or force-checkin)
// and returns the status it moves to: rotating if it rotates, else
// released. Returns ErrConflict if it is not active, and, for expired,
// before its expiry.
func (c *Checkout) End(by, reason string, now time.Time) (CheckoutStatus, error) {
	if c.Status != CheckoutActive {
		return "", Errorf(CodeConflict, "the checkout is %s, not active", c.Status)
	}
	if reason == "expired" && now.Before(c.Expires) {
		return "", Errorf(CodeConflict, "the checkout runs until %s", stamp(c.Expires))
	}
	t := now.UTC()
	c.EndedAt, c.EndedBy, c.EndReason = &t, by, reason
	c.Status = CheckoutReleased
	if c.Rotate {
		c.Status = CheckoutRotating
	}
	c.touch(now)
	return c.Status, nil
}

func (c *Checkout) touch(now time.Time) {
	c.Revision++
	c.UpdatedAt = now.UTC()
}

// Touch bumps the revision for a write that changes nothing else the rules
// look at (a stored token, a rotation attempt).
func (c *Checkout) Touch(now time.Time) { c.touch(now) }

// CheckoutStore holds each secret's checkout slot. Every write commits its
// audit record atomically with the change; rec must not be nil.
//
// Implementations: store/sqlite and store/dynamo; both pass
// store/storetest.
type CheckoutStore interface {
	// GetCheckout returns a secret's slot. Returns ErrNotFound if the
	// secret was never checked out.
	GetCheckout(ctx context.Context, secretID string) (*Checkout, error)

	// PutCheckout writes c where the stored revision equals prevRevision
	// (0: no slot yet); c.Revision must be prevRevision+1. Returns
	// ErrConflict if another write got there first: of N racing writers
	// with the same prevRevision exactly one succeeds.
	PutCheckout(ctx context.Context, c *Checkout, prevRevision int64, rec *AuditRecord) error

	// ListOpenCheckouts returns slots whose status is not released,
	// oldest update first, by a sparse index (the sweeper's query).
	// Returns ErrInvalid for a malformed cursor.
	ListOpenCheckouts(ctx context.Context, cursor string, limit int) (CheckoutPage, error)
}

// CheckoutPage is one page of checkouts; Next is "" on the last page.
type CheckoutPage struct {
	Checkouts []*Checkout
	Next      string
}

// CheckoutWorkflowInput is the input of a checkout execution
// (statemachines/checkout.asl.json).
type CheckoutWorkflowInput struct {
	SecretID   string `json:"secretId"`
	CheckoutID string `json:"checkoutId"`
	// WaitSeconds is how long to wait for check-in (at least 1).
	WaitSeconds int64 `json:"waitSeconds"`
	// RotateNow skips the wait: the slot is already rotating.
	RotateNow bool `json:"rotateNow"`
}

// CheckoutWorkflow starts checkout executions.
//
// Implementations: workflow/sfn and workflow/local.
type CheckoutWorkflow interface {
	// StartCheckout starts the checkout execution named after
	// in.CheckoutID. Returns ErrUnavailable if the engine cannot be
	// reached.
	StartCheckout(ctx context.Context, in CheckoutWorkflowInput) error

	// SendTaskSuccess answers a task token with output (marshalled as
	// JSON). Returns ErrNotFound for an unknown or finished token.
	SendTaskSuccess(ctx context.Context, token string, output any) error
}

// SecondsUntil is the whole number of seconds from now until t, rounded
// up, at least 1: a wait that ends no earlier than t.
func SecondsUntil(t, now time.Time) int64 {
	d := t.Sub(now)
	s := int64(d / time.Second)
	if d%time.Second > 0 {
		s++
	}
	return max(1, s)
}
