package escrow

import (
	"context"
	"errors"
	"time"
)

// Outcome of an audited action.
type Outcome string

// Outcomes.
const (
	OutcomeSuccess Outcome = "success"
	OutcomeDenied  Outcome = "denied" // authorization refused it
	OutcomeFailed  Outcome = "failed" // invalid input, conflict, not found, or an internal failure
)

// Audited actions.
const (
	ActionSecretCreate   = "secret.create"
	ActionSecretGet      = "secret.get"
	ActionSecretList     = "secret.list"
	ActionSecretUpdate   = "secret.update"
	ActionSecretDelete   = "secret.delete"
	ActionSecretReveal   = "secret.reveal"
	ActionSecretVersions = "secret.versions"
	ActionSecretACL      = "secret.acl"
	ActionFolderGet      = "folder.get"
	ActionFolderACL      = "folder.acl"
	ActionAuditQuery     = "audit.query"
	ActionPolicyGet      = "policy.get"
	ActionPolicySet      = "policy.set"
	ActionAuthFailed     = "auth.failed"

	ActionCheckout            = "secret.checkout"
	ActionCheckin             = "secret.checkin"
	ActionCheckoutExtend      = "secret.checkout.extend"
	ActionForceCheckin        = "secret.checkout.force"
	ActionCheckoutExpire      = "secret.checkout.expire"
	ActionCheckoutRelease     = "secret.checkout.release"
	ActionCheckoutStatus      = "secret.checkout.get"
	ActionHook                = "secret.checkout.hook"
	ActionRotationSet         = "secret.rotation.set"
	ActionRotationPending     = "secret.rotation.pending"
	ActionRotationSetOnTarget = "secret.rotation.target"
	ActionRotationTest        = "secret.rotation.test"
	ActionRotationPromote     = "secret.rotation.promote"
	ActionRotationFailed      = "secret.rotation.failed" // an alert: the secret stays locked
	ActionRotateNow           = "secret.rotation.now"
	ActionPrivilegedRead      = "secret.rotation.privileged"

	ActionQLockKeyPut  = "qlock.key.put"
	ActionQLockKeyGet  = "qlock.key.get"
	ActionQLockKeyList = "qlock.keys"
	ActionQLockLock    = "secret.qlock.lock"
	ActionQLockShare   = "secret.qlock.share"
	ActionQLockRevoke  = "secret.qlock.revoke"
	ActionQLockRelock  = "secret.qlock.relock"
)

// Actor is who performed an audited action.
type Actor struct {
	Subject string   `json:"sub"`
	Email   string   `json:"email,omitempty"`
	Groups  []string `json:"groups,omitempty"`
	Roles   []string `json:"roles,omitempty"`
}

// AuditRecord is one append-only audit entry. It never holds a secret value:
// Details carries only allow-listed, non-sensitive facts (field names, a
// version number), never field values.
type AuditRecord struct {
	ID        string            `json:"id"`
	Time      time.Time         `json:"time"`
	Actor     Actor             `json:"actor"`
	Action    string            `json:"action"`
	SecretID  string            `json:"secretId,omitempty"`
	Target    string            `json:"target,omitempty"`
	Outcome   Outcome           `json:"outcome"`
	ErrorCode Code              `json:"errorCode,omitempty"`
	Reason    string            `json:"reason,omitempty"`
	RequestID string            `json:"requestId,omitempty"`
	SourceIP  string            `json:"sourceIp,omitempty"`
	UserAgent string            `json:"userAgent,omitempty"`
	Comment   string            `json:"comment,omitempty"`
	Ticket    string            `json:"ticket,omitempty"`
	Details   map[string]string `json:"details,omitempty"`
}

// NewAuditRecord starts a record for action on target, filled from the
// principal and request info in ctx. Outcome defaults to success.
func NewAuditRecord(ctx context.Context, now time.Time, action, target string) *AuditRecord {
	rec := &AuditRecord{
		ID:      NewID(now),
		Time:    now.UTC(),
		Action:  action,
		Target:  target,
		Outcome: OutcomeSuccess,
	}
	if p := PrincipalFrom(ctx); p != nil {
		rec.Actor = Actor{Subject: p.Subject, Email: p.Email, Groups: p.Groups, Roles: p.Roles}
	}
	ri := RequestInfoFrom(ctx)
	rec.RequestID, rec.SourceIP, rec.UserAgent = ri.RequestID, ri.SourceIP, ri.UserAgent
	return rec
}

// Fail marks rec as denied (for forbidden/unauthenticated errors, even when
// wrapped) or failed,
// with err's code and client-safe message.
func (r *AuditRecord) Fail(err error) {
	r.ErrorCode = ErrorCode(err)
	r.Reason = ErrorMessage(err)
	// errors.Is also finds a denial hidden behind a not_found answer (a
	// caller who may not see a secret is told it does not exist).
	if errors.Is(err, ErrForbidden) || errors.Is(err, ErrUnauthenticated) {
		r.Outcome = OutcomeDenied
	} else {
		r.Outcome = OutcomeFailed
	}
}

// AuditQuery filters audit records. Empty fields do not filter. Results are
// newest first.
type AuditQuery struct {
	Actor    string // subject
	SecretID string
	Action   string
	Ticket   string    // change or incident number, by index
	From, To time.Time // inclusive From, exclusive To; zero means open
	Cursor   string
	Limit    int // default 100, capped at 1000
}

// AuditPage is one page of audit records; Next is "" on the last page.
type AuditPage struct {
	Records []*AuditRecord
	Next    string
}
