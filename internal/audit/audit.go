// Package audit is how use cases write their audit records: one record per
// action, appended before the action answers, and failing the action when
// it cannot be written ("fail closed", as Vault does with a blocked audit
// device). Changes commit their record inside the store's own transaction;
// reads and refusals append theirs here.
//
// It must never put a secret value into a record or a log line.
package audit

import (
	"context"
	"log/slog"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Recorder starts, appends and fails audit records.
type Recorder struct {
	Log    escrow.AuditLog
	Clock  escrow.Clock
	Logger *slog.Logger
}

// New starts the record of one action on target, from the principal and
// request info in ctx.
func (r *Recorder) New(ctx context.Context, action, target string) *escrow.AuditRecord {
	return escrow.NewAuditRecord(ctx, r.Clock.Now(), action, target)
}

// Commit appends a read's record. If it cannot, the action fails: the
// caller gets ErrUnavailable and must return no data.
func (r *Recorder) Commit(ctx context.Context, rec *escrow.AuditRecord) error {
	if err := r.Log.Append(ctx, rec); err != nil {
		r.Logger.ErrorContext(ctx, "audit append failed; failing the action closed",
			"action", rec.Action, "target", rec.Target, "requestId", rec.RequestID, "err", err)
		return escrow.Wrap(escrow.CodeUnavailable, err, "the audit log is unavailable, so the action was refused")
	}
	return nil
}

// Fail records err as rec's outcome (denied or failed), appends it and
// returns the error to give the caller. Internal failures are logged with
// their cause, which the caller never sees.
func (r *Recorder) Fail(ctx context.Context, rec *escrow.AuditRecord, err error) error {
	rec.Fail(err)
	if code := escrow.ErrorCode(err); code == escrow.CodeInternal || code == escrow.CodeUnavailable {
		r.Logger.ErrorContext(ctx, "action failed", "action", rec.Action, "target", rec.Target,
			"requestId", rec.RequestID, "err", err)
	}
	if aerr := r.Commit(ctx, rec); aerr != nil {
		return aerr
	}
	return err
}
