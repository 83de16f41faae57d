package checkout

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Workflow is the subject that the checkout workflow's audit records name.
const Workflow = "escrow-checkout"

// ActionAwait records that the workflow waits for a check-in.
const ActionAwait = "workflow.await-checkin"

// Step is what a checkout task answers the state machine.
type Step struct {
	// Status: ended or extended (waits); rotated or released (rotate);
	// failed or superseded (rotation-failed).
	Status      string `json:"status"`
	WaitSeconds int64  `json:"waitSeconds"`
	Version     int    `json:"version,omitempty"`
}

// WorkflowContext is the context a workflow task runs under: the
// workflow's own principal and a fresh request id for its audit records.
func WorkflowContext(ctx context.Context, now time.Time) context.Context {
	ctx = escrow.NewContext(ctx, &escrow.Principal{Subject: Workflow})
	return escrow.WithRequestInfo(ctx, escrow.RequestInfo{RequestID: escrow.NewID(now), UserAgent: "escrow workflow"})
}

// ours reads the slot and reports whether it still belongs to checkout
// checkoutID (a take-over gives it a new id; the old execution then ends).
func (s *Service) ours(ctx context.Context, secretID, checkoutID string) (*escrow.Checkout, bool, error) {
	c, err := s.slot(ctx, secretID)
	if err != nil {
		return nil, false, err
	}
	return c, c != nil && c.ID == checkoutID, nil
}

// AwaitCheckin is the AwaitCheckin task: it keeps the task token in the
// slot, or, if the checkout already ended (or was extended past the
// workflow's wait), answers it at once.
func (s *Service) AwaitCheckin(ctx context.Context, secretID, checkoutID, token string) error {
	ctx = WorkflowContext(ctx, s.clock.Now())
	for range 4 {
		c, mine, err := s.ours(ctx, secretID, checkoutID)
		if err != nil {
			return err
		}
		if !mine || c.Status != escrow.CheckoutActive {
			if s.workflow == nil {
				return escrow.Errorf(escrow.CodeUnavailable, "no workflow to answer")
			}
			return s.workflow.SendTaskSuccess(ctx, token, Step{Status: "ended"})
		}
		prev := c.Revision
		c.Token = token
		c.Touch(s.clock.Now())
		rec := s.record(ctx, ActionAwait, secretID)
		rec.Details["checkout"] = checkoutID
		err = s.checkouts.PutCheckout(ctx, c, prev, rec)
		if !errors.Is(err, escrow.ErrConflict) {
			return err
		}
	}
	return escrow.Errorf(escrow.CodeConflict, "the checkout kept changing")
}

// CheckExpiry is the CheckExpiry task, run when the wait for check-in
// timed out: it ends the checkout if its time is up by the clock, or says
// how long to wait on if it was extended meanwhile.
func (s *Service) CheckExpiry(ctx context.Context, secretID, checkoutID string) (Step, error) {
	ctx = WorkflowContext(ctx, s.clock.Now())
	for range 4 {
		c, mine, err := s.ours(ctx, secretID, checkoutID)
		if err != nil {
			return Step{}, err
		}
		if !mine || c.Status != escrow.CheckoutActive {
			return Step{Status: "ended"}, nil
		}
		now := s.clock.Now()
		if now.Before(c.Expires) {
			return Step{Status: "extended", WaitSeconds: escrow.SecondsUntil(c.Expires, now)}, nil
		}
		if err := s.expire(ctx, c, now); !errors.Is(err, escrow.ErrConflict) {
			return Step{Status: "ended"}, err
		}
	}
	return Step{}, escrow.Errorf(escrow.CodeConflict, "the checkout kept changing")
}

// expire ends an active checkout whose time is up (the workflow or the
// sweeper), with its audit record.
func (s *Service) expire(ctx context.Context, c *escrow.Checkout, now time.Time) error {
	rec := s.record(ctx, escrow.ActionCheckoutExpire, c.SecretID)
	rec.Ticket = c.Ticket
	prev := c.Revision
	st, err := c.End(Workflow, "expired", now)
	if err != nil {
		return err
	}
	rec.Details["checkout"], rec.Details["holder"], rec.Details["next"] = c.ID, c.Holder.Subject, string(st)
	rec.Details["expires"] = c.Expires.Format(time.RFC3339)
	return s.checkouts.PutCheckout(ctx, c, prev, rec)
}

// Rotate is the Rotate task: it rotates the password of an ended checkout
// that rotates (resuming any pending version), or answers released for
// one that does not. An error sends the machine to RotationFailed.
func (s *Service) Rotate(ctx context.Context, secretID, checkoutID string) (Step, error) {
	ctx = WorkflowContext(ctx, s.clock.Now())
	c, mine, err := s.ours(ctx, secretID, checkoutID)
	if err != nil {
		return Step{}, err
	}
	if !mine {
		return Step{Status: "superseded"}, nil
	}
	switch c.Status {
	case escrow.CheckoutReleased:
		return Step{Status: "released"}, nil
	case escrow.CheckoutActive:
		return Step{}, escrow.Errorf(escrow.CodeConflict, "checkout %s is still active", checkoutID)
	}
	if s.rotator == nil {
		return Step{}, escrow.Errorf(escrow.CodeUnavailable, "no rotator is configured on this function")
	}
	res, err := s.rotator.Rotate(ctx, secretID)
	if err != nil {
		return Step{}, err
	}
	return Step{Status: "rotated", Version: res.Version}, nil
}

// Backoff is how long the machine waits before retrying a failed rotation:
// 5 s doubling per attempt, at most an hour.
func Backoff(attempts int) int64 {
	d := int64(5)
	for i := 1; i < attempts && d < 3600; i++ {
		d *= 2
	}
	return min(d, 3600)
}

// TaskError is the error of a failed task, as the state machine's Catch
// hands it over.
type TaskError struct {
	Error string `json:"Error"`
	Cause string `json:"Cause"`
}

// RotationFailed is the RotationFailed task: the slot stays locked as
// rotation_failed (nobody may check it out; the password the holder saw
// may still be live), an alert audit record is written, and the answer
// says how long to back off before the next attempt.
func (s *Service) RotationFailed(ctx context.Context, secretID, checkoutID string, cause TaskError) (Step, error) {
	ctx = WorkflowContext(ctx, s.clock.Now())
	for range 4 {
		c, mine, err := s.ours(ctx, secretID, checkoutID)
		if err != nil {
			return Step{}, err
		}
		if !mine {
			return Step{Status: "superseded"}, nil
		}
		prev := c.Revision
		c.Status = escrow.CheckoutRotationFailed
		c.RotationAttempts++
		c.RotationError = taskMessage(cause)
		c.Touch(s.clock.Now())
		wait := Backoff(c.RotationAttempts)
		rec := s.record(ctx, escrow.ActionRotationFailed, secretID)
		rec.Outcome, rec.Reason = escrow.OutcomeFailed, c.RotationError
		rec.Details["checkout"], rec.Details["attempts"] = c.ID, strconv.Itoa(c.RotationAttempts)
		rec.Details["retryIn"] = strconv.FormatInt(wait, 10) + "s"
		rec.Details["alert"] = "true"
		err = s.checkouts.PutCheckout(ctx, c, prev, rec)
		if err == nil {
			s.logger.ErrorContext(ctx, "ALERT: password rotation failed; the secret stays locked and the rotation is retried",
				"secret", secretID, "checkout", checkoutID, "attempts", c.RotationAttempts, "retryIn", wait, "reason", c.RotationError)
			return Step{Status: "failed", WaitSeconds: wait}, nil
		}
		if !errors.Is(err, escrow.ErrConflict) {
			return Step{}, err
		}
	}
	return Step{}, escrow.Errorf(escrow.CodeConflict, "the checkout kept changing")
}

// taskMessage turns a task error into the client-safe reason kept on the
// slot. Task errors carry only client-safe messages (package tasks).
func taskMessage(e TaskError) string {
	cause := e.Cause
	// Lambda reports a function's error as {"errorMessage": ..., "errorType": ...}.
	var lambdaErr struct {
		Message string `json:"errorMessage"`
	}
	if json.Unmarshal([]byte(cause), &lambdaErr) == nil && lambdaErr.Message != "" {
		cause = lambdaErr.Message
	}
	msg := e.Error
	if cause != "" {
		msg += ": " + cause
	}
	if len(msg) > 500 {
		msg = msg[:500]
	}
	return msg
}

// PostHooks is the PostHooks task: each post-checkout hook is called and
// audited; failures do not stop the release.
func (s *Service) PostHooks(ctx context.Context, secretID, checkoutID, outcome string) error {
	ctx = WorkflowContext(ctx, s.clock.Now())
	c, mine, err := s.ours(ctx, secretID, checkoutID)
	if err != nil || !mine {
		return err
	}
	sec, err := s.store.GetSecret(ctx, secretID)
	if err != nil {
		return internal("read secret", err)
	}
	folders, err := s.store.GetFolders(ctx, escrow.Ancestors(sec.Folder))
	if err != nil {
		return internal("read folders", err)
	}
	pol, _, ok := escrow.EffectivePolicy(sec.Policy, sec.Folder, folders)
	if !ok || pol.Checkout == nil {
		return nil
	}
	for _, h := range pol.Checkout.PostHooks {
		if _, err := s.callHook(ctx, "post-checkout", sec, c, h, outcome); errors.Is(err, escrow.ErrUnavailable) && ctx.Err() != nil {
			return err
		}
	}
	return nil
}

// Release is the Release task: the slot becomes free. Idempotent.
func (s *Service) Release(ctx context.Context, secretID, checkoutID string) error {
	ctx = WorkflowContext(ctx, s.clock.Now())
	for range 4 {
		c, mine, err := s.ours(ctx, secretID, checkoutID)
		if err != nil || !mine || c.Status == escrow.CheckoutReleased {
			return err
		}
		if c.Status == escrow.CheckoutActive {
			return escrow.Errorf(escrow.CodeConflict, "checkout %s is still active", checkoutID)
		}
		prev := c.Revision
		c.Status, c.Token = escrow.CheckoutReleased, ""
		c.RotationError = ""
		c.Touch(s.clock.Now())
		rec := s.record(ctx, escrow.ActionCheckoutRelease, secretID)
		rec.Details["checkout"] = c.ID
		err = s.checkouts.PutCheckout(ctx, c, prev, rec)
		if !errors.Is(err, escrow.ErrConflict) {
			return err
		}
	}
	return escrow.Errorf(escrow.CodeConflict, "the checkout kept changing")
}

// SweepResult counts what a sweep did.
type SweepResult struct {
	Expired   int `json:"expired"`
	Restarted int `json:"restarted"`
}

// Sweep is the safety net for checkouts: it ends active checkouts past
// their expiry (the workflow should have), and restarts the workflow of a
// slot stuck rotating for StuckAfter, under a new id. Access never waits
// for it: an expired checkout authorizes nothing, by the clock.
func (s *Service) Sweep(ctx context.Context) (SweepResult, error) {
	ctx = WorkflowContext(ctx, s.clock.Now())
	var res SweepResult
	cursor := ""
	for {
		page, err := s.checkouts.ListOpenCheckouts(ctx, cursor, 200)
		if err != nil {
			return res, internal("list open checkouts", err)
		}
		for _, c := range page.Checkouts {
			now := s.clock.Now()
			switch {
			case c.Status == escrow.CheckoutActive && !now.Before(c.Expires.Add(sweepGrace)):
				if err := s.expire(ctx, c, now); err == nil {
					res.Expired++
					s.takeOver(ctx, c, now, &res)
				}
			case c.Status == escrow.CheckoutRotating && now.Sub(c.UpdatedAt) > StuckAfter:
				s.takeOver(ctx, c, now, &res)
			}
		}
		if page.Next == "" {
			return res, nil
		}
		cursor = page.Next
	}
}

// sweepGrace leaves the workflow time to end a checkout itself.
const sweepGrace = 30 * time.Second

// takeOver gives a slot that must rotate to a fresh execution (the old one
// is dead or late; once the slot's id changes it stops at its next step).
func (s *Service) takeOver(ctx context.Context, c *escrow.Checkout, now time.Time, res *SweepResult) {
	if s.workflow == nil || c.Status != escrow.CheckoutRotating {
		return
	}
	prev := c.Revision
	old := c.ID
	c.ID, c.Token = escrow.NewID(now), ""
	c.Touch(now)
	rec := s.record(ctx, escrow.ActionRotateNow, c.SecretID)
	rec.Details["checkout"], rec.Details["tookOver"] = c.ID, old
	if err := s.checkouts.PutCheckout(ctx, c, prev, rec); err != nil {
		s.logger.WarnContext(ctx, "take over a stuck rotation", "secret", c.SecretID, "err", err)
		return
	}
	res.Restarted++
	s.startWorkflow(ctx, escrow.CheckoutWorkflowInput{SecretID: c.SecretID, CheckoutID: c.ID, WaitSeconds: 1, RotateNow: true})
}
