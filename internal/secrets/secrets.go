// Package secrets is the use case layer of the vault: create, read, change,
// reveal and share secrets, each decided by ACLs and written to the audit log.
//
// It depends only on the ports of package escrow. Every method writes exactly
// one audit record, whatever the outcome, before it returns; if that record
// cannot be written the method fails (fail closed). It must never put a
// secret value into a log, an audit record or an error.
package secrets

import (
	"context"
	"errors"
	"log/slog"

	"github.com/escrow-pam/escrow/internal/audit"
	"github.com/escrow-pam/escrow/internal/envelope"
	"github.com/escrow-pam/escrow/internal/escrow"
)

// Config holds the ports the service needs.
type Config struct {
	Store escrow.Store
	Audit escrow.AuditLog
	Keys  escrow.Keys
	// Grants, if set, lets approved access requests open secrets whose
	// policy requires approval; without it such access is always refused.
	Grants escrow.RequestStore
	// Checkouts, if set, enforces checkout policies on reveals; without
	// it a secret that requires checkout cannot be revealed.
	Checkouts escrow.CheckoutStore
	// QLockKeys, if set, stores users' QuantumLock keys; without it
	// QuantumLock is refused.
	QLockKeys escrow.QLockKeyStore
	Clock     escrow.Clock // nil = system clock
	Logger    *slog.Logger // nil = discard
}

// Service implements the secret use cases.
type Service struct {
	store     escrow.Store
	audit     escrow.AuditLog
	keys      escrow.Keys
	grants    escrow.RequestStore
	checkouts escrow.CheckoutStore
	qkeys     escrow.QLockKeyStore
	clock     escrow.Clock
	logger    *slog.Logger
	rec       *audit.Recorder
}

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{store: cfg.Store, audit: cfg.Audit, keys: cfg.Keys, grants: cfg.Grants, checkouts: cfg.Checkouts, qkeys: cfg.QLockKeys, clock: cfg.Clock, logger: cfg.Logger}
	if s.clock == nil {
		s.clock = escrow.SystemClock{}
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	s.rec = &audit.Recorder{Log: cfg.Audit, Clock: s.clock, Logger: s.logger}
	return s
}

func (s *Service) record(ctx context.Context, action, target string) *escrow.AuditRecord {
	return s.rec.New(ctx, action, target)
}

func (s *Service) commit(ctx context.Context, rec *escrow.AuditRecord) error {
	return s.rec.Commit(ctx, rec)
}

func (s *Service) fail(ctx context.Context, rec *escrow.AuditRecord, err error) error {
	return s.rec.Fail(ctx, rec, err)
}

// principal returns the caller or ErrUnauthenticated.
func principal(ctx context.Context) (*escrow.Principal, error) {
	p := escrow.PrincipalFrom(ctx)
	if p == nil || p.Subject == "" {
		return nil, escrow.ErrUnauthenticated
	}
	return p, nil
}

// permission returns what the caller holds on sec.
func (s *Service) permission(ctx context.Context, p *escrow.Principal, sec *escrow.Secret) (escrow.Permission, error) {
	if p.IsAdmin() {
		return escrow.PermOwner, nil
	}
	folders, err := s.store.GetFolders(ctx, escrow.Ancestors(sec.Folder))
	if err != nil {
		return escrow.PermNone, fmtErr("read folders", err)
	}
	return escrow.Effective(p, sec.ACL, folders), nil
}

// folderPermission returns what the caller holds on a folder (its ACL and
// its ancestors').
func (s *Service) folderPermission(ctx context.Context, p *escrow.Principal, folder string) (escrow.Permission, error) {
	if p.IsAdmin() {
		return escrow.PermOwner, nil
	}
	folders, err := s.store.GetFolders(ctx, escrow.Ancestors(folder))
	if err != nil {
		return escrow.PermNone, fmtErr("read folders", err)
	}
	return escrow.Effective(p, nil, folders), nil
}

// load reads the secret id and checks that the caller holds need on it.
func (s *Service) load(ctx context.Context, id string, need escrow.Permission) (*escrow.Secret, escrow.Permission, error) {
	p, sec, err := s.getSecret(ctx, id)
	if err != nil {
		return nil, escrow.PermNone, err
	}
	var folders []escrow.Folder
	if !p.IsAdmin() {
		if folders, err = s.store.GetFolders(ctx, escrow.Ancestors(sec.Folder)); err != nil {
			return nil, escrow.PermNone, fmtErr("read folders", err)
		}
	}
	perm, err := decide(p, sec, folders, need)
	if err != nil {
		return nil, perm, err
	}
	return sec, perm, nil
}

// getSecret returns the caller and the secret id.
func (s *Service) getSecret(ctx context.Context, id string) (*escrow.Principal, *escrow.Secret, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, nil, err
	}
	if id == "" || len(id) > 64 {
		return nil, nil, escrow.Errorf(escrow.CodeInvalid, "secret id must be 1 to 64 characters")
	}
	sec, err := s.store.GetSecret(ctx, id)
	if err != nil {
		if errors.Is(err, escrow.ErrNotFound) {
			return nil, nil, escrow.Errorf(escrow.CodeNotFound, "secret %s not found", id)
		}
		return nil, nil, fmtErr("read secret", err)
	}
	return p, sec, nil
}

// decide checks that p holds need on sec, given the folders above it. A
// caller who may not even list it is told it does not exist (and the audit
// record still says denied).
func decide(p *escrow.Principal, sec *escrow.Secret, folders []escrow.Folder, need escrow.Permission) (escrow.Permission, error) {
	perm := escrow.Effective(p, sec.ACL, folders)
	if !perm.Includes(escrow.PermList) {
		return perm, &escrow.Error{Code: escrow.CodeNotFound, Message: "secret " + sec.ID + " not found", Err: escrow.ErrForbidden}
	}
	if !perm.Includes(need) {
		return perm, escrow.Errorf(escrow.CodeForbidden, "you need %s permission on %s (you have %s)", need, sec.Path(), perm)
	}
	return perm, nil
}

// fmtErr keeps escrow-coded errors as they are and marks anything else
// internal, wrapping with the verb that failed.
func fmtErr(verb string, err error) error {
	var e *escrow.Error
	if errors.As(err, &e) {
		return &escrow.Error{Code: e.Code, Message: e.Message, Err: errors.Join(errors.New(verb), err)}
	}
	return escrow.Wrap(escrow.CodeInternal, err, verb)
}

// seal encrypts value as version of secret id.
func (s *Service) seal(ctx context.Context, id string, version int, value escrow.SecretValue, by string) (*escrow.SecretVersion, error) {
	keyID, wrapped, ct, err := envelope.Seal(ctx, s.keys, id, version, value)
	if err != nil {
		return nil, fmtErr("encrypt value", err)
	}
	return &escrow.SecretVersion{
		SecretID: id, Version: version, CreatedAt: s.clock.Now(), CreatedBy: by,
		KeyID: keyID, WrappedKey: wrapped, Ciphertext: ct,
	}, nil
}

// RecordAuthFailure audits a request that failed authentication (target is
// "METHOD /path") and returns err, or ErrUnavailable if the audit log cannot
// take the record.
func (s *Service) RecordAuthFailure(ctx context.Context, target string, err error) error {
	return s.fail(ctx, s.record(ctx, escrow.ActionAuthFailed, target), err)
}

// PermissionOn returns what the caller holds on sec (as Get returned it),
// without an audit record of its own: the web console asks it to offer
// only the actions the caller may take. It authorizes nothing; every action
// still checks for itself.
func (s *Service) PermissionOn(ctx context.Context, sec *escrow.Secret) (escrow.Permission, error) {
	p, err := principal(ctx)
	if err != nil {
		return escrow.PermNone, err
	}
	return s.permission(ctx, p, sec)
}
