// Package rotation changes a secret's password on its real target without
// ever losing one. It follows AWS Secrets Manager's four steps:
//
//  1. create: generate a new password from the secret's password policy and
//     store it as the secret's *pending* version, with its audit record;
//  2. set: make it the target's password (skipped if the target already
//     takes it);
//  3. test: log in with it;
//  4. finish: promote the pending version to current; the previous version
//     is kept.
//
// The target is changed only after the new password is durable, so a run
// killed between any two steps leaves a password Escrow holds (current or
// pending) as the target's, and the next run finishes the job with the
// same pending password.
//
// It must never put a password into a log, an audit record or an error.
package rotation

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"

	"github.com/escrow-pam/escrow/internal/audit"
	"github.com/escrow-pam/escrow/internal/envelope"
	"github.com/escrow-pam/escrow/internal/escrow"
)

// Config holds the ports a Rotator needs.
type Config struct {
	Store escrow.Store
	Audit escrow.AuditLog
	Keys  escrow.Keys
	// Targets maps a rotation target name (escrow.TargetPostgres, ...) to
	// its adapter. A secret whose target is missing cannot be rotated.
	Targets map[string]escrow.RotationTarget
	// Sealer and QLockKeys, if set, rotate QuantumLocked secrets: the new
	// password is locked to the members' public keys and never stored in
	// a form the server can read.
	Sealer    escrow.QLockSealer
	QLockKeys escrow.QLockKeyStore
	Clock     escrow.Clock // nil = system clock
	Logger    *slog.Logger // nil = discard
}

// Rotator rotates secrets. The caller's principal (in ctx) is the actor of
// every audit record; the workflow passes its own.
type Rotator struct {
	store   escrow.Store
	keys    escrow.Keys
	targets map[string]escrow.RotationTarget
	sealer  escrow.QLockSealer
	qkeys   escrow.QLockKeyStore
	clock   escrow.Clock
	logger  *slog.Logger
	rec     *audit.Recorder

	// afterStep, if set, runs after each durable step ("pending", "set",
	// "test"); an error stops the run there, as a crash would. Tests use
	// it to cut a rotation at each point.
	afterStep func(step string) error
}

// New returns a Rotator.
func New(cfg Config) *Rotator {
	r := &Rotator{store: cfg.Store, keys: cfg.Keys, targets: cfg.Targets, sealer: cfg.Sealer, qkeys: cfg.QLockKeys,
		clock: cfg.Clock, logger: cfg.Logger}
	if r.clock == nil {
		r.clock = escrow.SystemClock{}
	}
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	r.rec = &audit.Recorder{Log: cfg.Audit, Clock: r.clock, Logger: r.logger}
	return r
}

// Result is what a rotation did.
type Result struct {
	// Version is the secret's current version afterwards: the new password.
	Version int `json:"version"`
	// Previous is the version it replaced (kept in the history).
	Previous int `json:"previous"`
	// Resumed says the run finished a pending version an earlier run left.
	Resumed bool `json:"resumed"`
}

// Rotate runs the four steps on secret id. Each step writes its audit
// record (success or failure). Returns ErrInvalid if the secret has no
// rotation or no password field, a conflict if the secret changed under
// it (the next run resumes), and the target's error (wrapping
// escrow.ErrLoginRefused or ErrUnavailable) if the target refused.
func (r *Rotator) Rotate(ctx context.Context, id string) (Result, error) {
	sec, err := r.store.GetSecret(ctx, id)
	if err != nil {
		return Result{}, fmt.Errorf("read secret: %w", err)
	}
	if sec.Deleted() {
		return Result{}, escrow.Errorf(escrow.CodeInvalid, "secret %s is deleted", sec.Path())
	}
	rot := sec.Rotation
	if rot == nil {
		return Result{}, escrow.Errorf(escrow.CodeInvalid, "secret %s has no rotation configured", sec.Path())
	}
	target := r.targets[rot.Target]
	if target == nil {
		return Result{}, escrow.Errorf(escrow.CodeInvalid, "rotation target %q is not available here", rot.Target)
	}
	current, err := r.open(ctx, sec.ID, sec.CurrentVersion)
	if err != nil {
		return Result{}, err
	}
	locked := sec.QLock != nil
	if err := r.checkLocked(sec); err != nil {
		return Result{}, err
	}
	if !locked && current["password"] == "" {
		return Result{}, escrow.Errorf(escrow.CodeInvalid, "secret %s has no password field to rotate", sec.Path())
	}
	if rot.Privileged != "" {
		// The privileged login, and the new password, go only where the
		// owner pointed them: checked before anything reaches the network.
		if err := rot.CheckPinned(current); err != nil {
			rec := r.record(ctx, escrow.ActionRotationSetOnTarget, sec, 0)
			return Result{}, r.rec.Fail(ctx, rec, err)
		}
	}
	res := Result{Previous: sec.CurrentVersion}

	// Step 1: the pending version, made durable before anything else.
	var pending escrow.SecretValue
	switch {
	case locked:
		// The server cannot read a locked pending version an earlier run
		// left: it is set aside (its members can still open it) and the
		// privileged account sets a fresh password.
		if sec, pending, err = r.createLockedPending(ctx, sec, current); err != nil {
			return res, err
		}
	case sec.PendingVersion != 0:
		res.Resumed = true
		if pending, err = r.open(ctx, sec.ID, sec.PendingVersion); err != nil {
			return res, err
		}
	default:
		if sec, pending, err = r.createPending(ctx, sec, current); err != nil {
			return res, err
		}
	}
	if err := r.cut("pending"); err != nil {
		return res, err
	}
	acct := escrow.AccountOf(current, rot)

	// Step 2: set it on the target, unless the target already takes it (an
	// earlier run got that far).
	if err := r.setOnTarget(ctx, sec, target, acct, current, pending, res.Resumed); err != nil {
		return res, err
	}
	if err := r.cut("set"); err != nil {
		return res, err
	}

	// Step 3: test it.
	rec := r.record(ctx, escrow.ActionRotationTest, sec, sec.PendingVersion)
	if err := target.Test(ctx, acct, pending["password"]); err != nil {
		return res, r.rec.Fail(ctx, rec, targetErr("test the new password", err))
	}
	if err := r.rec.Commit(ctx, rec); err != nil {
		return res, err
	}
	if err := r.cut("test"); err != nil {
		return res, err
	}

	// Step 4: promote pending to current.
	res.Version = sec.PendingVersion
	rec = r.record(ctx, escrow.ActionRotationPromote, sec, sec.PendingVersion)
	rec.Details["previous"] = strconv.Itoa(sec.CurrentVersion)
	next := *sec
	next.CurrentVersion, next.PendingVersion = sec.PendingVersion, 0
	next.Revision++
	next.UpdatedAt, next.UpdatedBy = r.clock.Now(), actor(ctx)
	if err := r.store.UpdateSecret(ctx, &next, sec.Revision, nil, rec); err != nil {
		return res, r.rec.Fail(ctx, rec, storeErr("promote the pending version", err))
	}
	return res, nil
}

// createPending generates the new password and stores it as the pending
// version; the secret's other fields are carried over.
func (r *Rotator) createPending(ctx context.Context, sec *escrow.Secret, current escrow.SecretValue) (*escrow.Secret, escrow.SecretValue, error) {
	version := sec.CurrentVersion + 1
	rec := r.record(ctx, escrow.ActionRotationPending, sec, version)
	pw, err := Generate(sec.Rotation.Password)
	if err != nil {
		return nil, nil, r.rec.Fail(ctx, rec, err)
	}
	pending := maps.Clone(current)
	pending["password"] = pw
	next, err := r.storePending(ctx, sec, version, pending, rec)
	if err != nil {
		return nil, nil, err
	}
	return next, pending, nil
}

// storePending encrypts value as the secret's pending version and stores
// it with rec.
func (r *Rotator) storePending(ctx context.Context, sec *escrow.Secret, version int, value escrow.SecretValue, rec *escrow.AuditRecord) (*escrow.Secret, error) {
	keyID, wrapped, ct, err := envelope.Seal(ctx, r.keys, sec.ID, version, value)
	if err != nil {
		return nil, r.rec.Fail(ctx, rec, storeErr("encrypt the pending version", err))
	}
	now := r.clock.Now()
	v := &escrow.SecretVersion{SecretID: sec.ID, Version: version, CreatedAt: now, CreatedBy: actor(ctx),
		KeyID: keyID, WrappedKey: wrapped, Ciphertext: ct}
	next := *sec
	next.PendingVersion = version
	next.Revision++
	next.UpdatedAt, next.UpdatedBy = now, actor(ctx)
	if err := r.store.UpdateSecret(ctx, &next, sec.Revision, v, rec); err != nil {
		return nil, r.rec.Fail(ctx, rec, storeErr("store the pending version", err))
	}
	return &next, nil
}

// checkLocked says whether a QuantumLocked secret can be rotated here: the
// server cannot read its current password, so a privileged account must
// set the new one, and the lock must hold the password alone (the server
// could not carry other locked fields over).
func (r *Rotator) checkLocked(sec *escrow.Secret) error {
	q := sec.QLock
	if q == nil {
		return nil
	}
	switch {
	case r.sealer == nil || r.qkeys == nil:
		return escrow.Errorf(escrow.CodeUnavailable, "this rotator cannot rotate QuantumLocked secrets")
	case sec.Rotation.Privileged == "":
		return escrow.Errorf(escrow.CodeInvalid, "%s is QuantumLocked: the server cannot read its password, so its rotation needs a privileged account", sec.Path())
	case len(q.Fields) != 1 || q.Fields[0] != "password":
		return escrow.Errorf(escrow.CodeInvalid, "%s locks %v: a rotation needs the lock to hold the password alone (escrow qlock lock --fields password)", sec.Path(), q.Fields)
	}
	return nil
}

// createLockedPending generates the new password, locks it to the members'
// public keys and stores that as the pending version. The password itself
// stays in memory for the rest of the run and is then forgotten.
func (r *Rotator) createLockedPending(ctx context.Context, sec *escrow.Secret, current escrow.SecretValue) (*escrow.Secret, escrow.SecretValue, error) {
	version := max(sec.CurrentVersion, sec.PendingVersion) + 1
	rec := r.record(ctx, escrow.ActionRotationPending, sec, version)
	rec.Details["qlock"] = strings.Join(sec.QLock.Members, ",")
	pw, err := Generate(sec.Rotation.Password)
	if err != nil {
		return nil, nil, r.rec.Fail(ctx, rec, err)
	}
	keys, err := r.qkeys.GetQLockKeys(ctx, sec.QLock.Members)
	if err == nil && len(keys) != len(sec.QLock.Members) {
		err = escrow.Errorf(escrow.CodeInvalid, "a member of %s's QuantumLock has no key any more", sec.Path())
	}
	var blob []byte
	if err == nil {
		var plain []byte
		if plain, err = escrow.EncodeLocked(escrow.SecretValue{"password": pw}); err == nil {
			blob, err = r.sealer.Seal(sec.ID, version, plain, keys)
			clear(plain)
		}
	}
	if err != nil {
		return nil, nil, r.rec.Fail(ctx, rec, storeErr("lock the new password", err))
	}
	stored := maps.Clone(current)
	stored[escrow.QLockField] = base64.StdEncoding.EncodeToString(blob)
	if sec, err = r.storePending(ctx, sec, version, stored, rec); err != nil {
		return nil, nil, err
	}
	pending := maps.Clone(current)
	delete(pending, escrow.QLockField)
	pending["password"] = pw
	return sec, pending, nil
}

// setOnTarget is step 2. A target that already accepts the pending
// password was set by an earlier run that died before promoting it.
func (r *Rotator) setOnTarget(ctx context.Context, sec *escrow.Secret, target escrow.RotationTarget, acct escrow.TargetAccount, current, pending escrow.SecretValue, resumed bool) error {
	rec := r.record(ctx, escrow.ActionRotationSetOnTarget, sec, sec.PendingVersion)
	rec.Details["target"] = sec.Rotation.Target
	if resumed {
		// Only a pending password an earlier run made can already be set.
		if err := target.Test(ctx, acct, pending["password"]); err == nil {
			rec.Details["already"] = "true"
			return r.rec.Commit(ctx, rec)
		} else if !errors.Is(err, escrow.ErrLoginRefused) {
			return r.rec.Fail(ctx, rec, targetErr("reach the target", err))
		}
	}
	login := escrow.Credentials{Username: current["username"], Password: current["password"]}
	if priv := sec.Rotation.Privileged; priv != "" {
		var err error
		if login, err = r.privileged(ctx, sec, priv); err != nil {
			return r.rec.Fail(ctx, rec, err)
		}
		rec.Details["privileged"] = priv
	}
	if err := target.Set(ctx, acct, login, pending["password"]); err != nil {
		return r.rec.Fail(ctx, rec, targetErr("set the new password on the target", err))
	}
	return r.rec.Commit(ctx, rec)
}

// privileged reads the privileged account's credentials: another secret,
// read by the rotation (audited as such), never shown to anyone.
func (r *Rotator) privileged(ctx context.Context, sec *escrow.Secret, id string) (escrow.Credentials, error) {
	rec := r.record(ctx, escrow.ActionPrivilegedRead, sec, 0)
	rec.Details["privileged"] = id
	ps, err := r.store.GetSecret(ctx, id)
	if err == nil && ps.Deleted() {
		err = escrow.Errorf(escrow.CodeNotFound, "the privileged secret %s is deleted", id)
	}
	var v escrow.SecretValue
	if err == nil {
		v, err = r.open(ctx, ps.ID, ps.CurrentVersion)
	}
	if err != nil {
		return escrow.Credentials{}, r.rec.Fail(ctx, rec, storeErr("read the privileged account", err))
	}
	if err := r.rec.Commit(ctx, rec); err != nil {
		return escrow.Credentials{}, err
	}
	return escrow.Credentials{Username: v["username"], Password: v["password"], PrivateKey: v["private_key"]}, nil
}

func (r *Rotator) open(ctx context.Context, id string, version int) (escrow.SecretValue, error) {
	v, err := r.store.GetVersion(ctx, id, version)
	if err != nil {
		return nil, storeErr("read version "+strconv.Itoa(version), err)
	}
	val, err := envelope.Open(ctx, r.keys, v)
	if err != nil {
		return nil, storeErr("decrypt version "+strconv.Itoa(version), err)
	}
	return val, nil
}

func (r *Rotator) record(ctx context.Context, action string, sec *escrow.Secret, version int) *escrow.AuditRecord {
	rec := r.rec.New(ctx, action, escrow.SecretTarget(sec.ID))
	rec.SecretID = sec.ID
	rec.Details = map[string]string{"path": sec.Path()}
	if version != 0 {
		rec.Details["version"] = strconv.Itoa(version)
	}
	return rec
}

func (r *Rotator) cut(step string) error {
	if r.afterStep == nil {
		return nil
	}
	return r.afterStep(step)
}

func actor(ctx context.Context) string {
	if p := escrow.PrincipalFrom(ctx); p != nil {
		return p.Subject
	}
	return ""
}

// targetErr keeps a coded error's code (and ErrLoginRefused in the chain)
// and says which step failed.
func targetErr(verb string, err error) error {
	var e *escrow.Error
	if errors.Is(err, escrow.ErrLoginRefused) {
		// Whatever code the adapter chose, a refused login is invalid
		// configuration (a stored password the target no longer takes):
		// retrying it at once would only risk locking the account.
		msg := verb + ": the target refused the login"
		if errors.As(err, &e) && e.Message != "" {
			msg = verb + ": " + e.Message
		}
		return &escrow.Error{Code: escrow.CodeInvalid, Message: msg, Err: err}
	}
	if errors.As(err, &e) {
		return &escrow.Error{Code: e.Code, Message: verb + ": " + e.Message, Err: err}
	}
	return escrow.Wrap(escrow.CodeUnavailable, err, verb)
}

func storeErr(verb string, err error) error {
	var e *escrow.Error
	if errors.As(err, &e) {
		return &escrow.Error{Code: e.Code, Message: verb + ": " + e.Message, Err: err}
	}
	return escrow.Wrap(escrow.CodeInternal, err, verb)
}
