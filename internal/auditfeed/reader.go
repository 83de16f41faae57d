package auditfeed

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/escrow-pam/escrow/internal/audit"
	"github.com/escrow-pam/escrow/internal/auditlog"
	"github.com/escrow-pam/escrow/internal/escrow"
)

// Audited actions of the digest reader.
const (
	ActionDigests    = "audit.digests"
	ActionDigestKeys = "audit.keys"
)

// Reader serves the signed digests and the public keys that verify them,
// to admins and auditors, for `escrow audit verify`. Each read is audited.
type Reader struct {
	store auditlog.DigestStore
	keys  auditlog.PublicKeys
	rec   *audit.Recorder
}

// NewReader returns a Reader over store, whose digests keys verify.
func NewReader(store auditlog.DigestStore, keys auditlog.PublicKeys, log escrow.AuditLog, clock escrow.Clock, logger *slog.Logger) *Reader {
	if clock == nil {
		clock = escrow.SystemClock{}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Reader{store: store, keys: keys, rec: &audit.Recorder{Log: log, Clock: clock, Logger: logger}}
}

func mayRead(ctx context.Context) error {
	p := escrow.PrincipalFrom(ctx)
	if p == nil || p.Subject == "" {
		return escrow.ErrUnauthenticated
	}
	if !p.IsAdmin() && !p.HasRole(escrow.RoleAuditor) {
		return escrow.Errorf(escrow.CodeForbidden, "only admins and auditors may read the audit digests")
	}
	return nil
}

// Digests returns the digests whose periods overlap [from, to).
func (r *Reader) Digests(ctx context.Context, from, to time.Time) ([]*auditlog.SignedDigest, error) {
	rec := r.rec.New(ctx, ActionDigests, "audit-digests")
	rec.Details = map[string]string{"from": stamp(from), "to": stamp(to)}
	if err := mayRead(ctx); err != nil {
		return nil, r.rec.Fail(ctx, rec, err)
	}
	ds, err := r.store.Range(ctx, from, to)
	if err != nil {
		return nil, r.rec.Fail(ctx, rec, escrow.Wrap(escrow.CodeUnavailable, err, "the audit digests cannot be read"))
	}
	if err := r.rec.Commit(ctx, rec); err != nil {
		return nil, err
	}
	return ds, nil
}

// PublicKeys returns the keys that verify the digests.
func (r *Reader) PublicKeys(ctx context.Context) (auditlog.PublicKeys, error) {
	rec := r.rec.New(ctx, ActionDigestKeys, "audit-keys")
	if err := mayRead(ctx); err != nil {
		return auditlog.PublicKeys{}, r.rec.Fail(ctx, rec, err)
	}
	if err := r.rec.Commit(ctx, rec); err != nil {
		return auditlog.PublicKeys{}, err
	}
	return r.keys, nil
}

// DigestsJSON is Digests in their one-line encodings, for the HTTP API.
func (r *Reader) DigestsJSON(ctx context.Context, from, to time.Time) ([]json.RawMessage, error) {
	ds, err := r.Digests(ctx, from, to)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, 0, len(ds))
	for _, d := range ds {
		b, err := d.Marshal()
		if err != nil {
			return nil, escrow.Wrap(escrow.CodeInternal, err, "encode digest")
		}
		out = append(out, bytes.TrimSpace(b))
	}
	return out, nil
}

// PublicKeysJSON is PublicKeys in its JSON encoding, for the HTTP API.
func (r *Reader) PublicKeysJSON(ctx context.Context) (json.RawMessage, error) {
	k, err := r.PublicKeys(ctx)
	if err != nil {
		return nil, err
	}
	b, err := k.Marshal()
	if err != nil {
		return nil, escrow.Wrap(escrow.CodeInternal, err, "encode keys")
	}
	return bytes.TrimSpace(b), nil
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
