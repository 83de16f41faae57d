package secrets

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"strings"

	"github.com/escrow-pam/escrow/internal/envelope"
	"github.com/escrow-pam/escrow/internal/escrow"
	"github.com/escrow-pam/escrow/internal/qlock/qlockfmt"
)

// QuantumLock on the server: it stores users' public keys and sealed
// private keys, and locked values, and checks what clients send against
// the action they claim (framing only: qlockfmt links no KEM or KDF code).
// It never receives a QuantumLock password or the plaintext of a locked
// field, and has no way to open either.

// PutQLockKey stores the caller's QuantumLock key: a new key if they have
// none, or the same public key with its private key sealed under a new
// password (escrow qlock passwd). A different key is refused: it would
// lock its owner out of every secret sealed to the old one.
func (s *Service) PutQLockKey(ctx context.Context, public, sealed []byte) (*escrow.QLockKey, error) {
	rec := s.record(ctx, escrow.ActionQLockKeyPut, "qlock-key")
	k, err := s.putQLockKey(ctx, public, sealed, rec)
	if err != nil {
		return nil, s.fail(ctx, rec, err)
	}
	return k, nil
}

func (s *Service) putQLockKey(ctx context.Context, public, sealed []byte, rec *escrow.AuditRecord) (*escrow.QLockKey, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if s.qkeys == nil {
		return nil, escrow.Errorf(escrow.CodeUnavailable, "QuantumLock is not configured on this server")
	}
	rec.Target = "qlock-key:" + p.Subject
	if err := qlockfmt.CheckPublicKey(public); err != nil {
		return nil, escrow.Errorf(escrow.CodeInvalid, "publicKey is not a QuantumLock (X-Wing) public key")
	}
	inner, err := qlockfmt.PublicKeyOf(sealed)
	if err != nil || !bytes.Equal(inner, public) {
		return nil, escrow.Errorf(escrow.CodeInvalid, "sealed is not a QuantumLock private key sealed for this public key")
	}
	fp := qlockfmt.Fingerprint(public)
	rec.Details = map[string]string{"fingerprint": fp}
	old, err := s.qkeys.GetQLockKeys(ctx, []string{p.Subject})
	if err != nil {
		return nil, fmtErr("read qlock key", err)
	}
	now := s.clock.Now()
	k := &escrow.QLockKey{Subject: p.Subject, PublicKey: public, Sealed: sealed, Fingerprint: fp, CreatedAt: now, UpdatedAt: now, Revision: 1}
	prev := int64(0)
	rec.Details["change"] = "new"
	if len(old) == 1 {
		if !bytes.Equal(old[0].PublicKey, public) {
			return nil, escrow.Errorf(escrow.CodeConflict, "you already have a QuantumLock key (%s); change its password with escrow qlock passwd: a new key would lock you out of every secret sealed to the old one", old[0].Fingerprint)
		}
		prev, k.CreatedAt, k.Revision = old[0].Revision, old[0].CreatedAt, old[0].Revision+1
		rec.Details["change"] = "password"
	}
	if err := s.qkeys.PutQLockKey(ctx, k, prev, rec); err != nil {
		return nil, fmtErr("store qlock key", err)
	}
	return k, nil
}

// QLockKey returns the caller's own key, with its sealed private key (to
// open in the client). Returns not_found if they have none.
func (s *Service) QLockKey(ctx context.Context) (*escrow.QLockKey, error) {
	rec := s.record(ctx, escrow.ActionQLockKeyGet, "qlock-key")
	k, err := s.qlockKey(ctx, rec)
	if err != nil {
		return nil, s.fail(ctx, rec, err)
	}
	if err := s.commit(ctx, rec); err != nil {
		return nil, err
	}
	return k, nil
}

func (s *Service) qlockKey(ctx context.Context, rec *escrow.AuditRecord) (*escrow.QLockKey, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	rec.Target = "qlock-key:" + p.Subject
	ks, err := s.publicKeys(ctx, []string{p.Subject})
	if err != nil {
		return nil, err
	}
	if len(ks) == 0 {
		return nil, escrow.Errorf(escrow.CodeNotFound, "you have no QuantumLock key yet: escrow qlock init")
	}
	return ks[0], nil
}

// QLockPublicKeys returns the public keys (never the sealed private keys)
// of the named users that have one: what a client locks to.
func (s *Service) QLockPublicKeys(ctx context.Context, subjects []string) ([]*escrow.QLockKey, error) {
	rec := s.record(ctx, escrow.ActionQLockKeyList, "qlock-keys")
	rec.Details = map[string]string{"users": strings.Join(subjects, ",")}
	ks, err := s.qlockPublicKeys(ctx, subjects)
	if err != nil {
		return nil, s.fail(ctx, rec, err)
	}
	if err := s.commit(ctx, rec); err != nil {
		return nil, err
	}
	return ks, nil
}

func (s *Service) qlockPublicKeys(ctx context.Context, subjects []string) ([]*escrow.QLockKey, error) {
	if _, err := principal(ctx); err != nil {
		return nil, err
	}
	if len(subjects) == 0 || len(subjects) > 50 {
		return nil, escrow.Errorf(escrow.CodeInvalid, "name 1 to 50 users")
	}
	ks, err := s.publicKeys(ctx, subjects)
	if err != nil {
		return nil, err
	}
	for _, k := range ks {
		k.Sealed = nil
	}
	return ks, nil
}

func (s *Service) publicKeys(ctx context.Context, subjects []string) ([]*escrow.QLockKey, error) {
	if s.qkeys == nil {
		return nil, escrow.Errorf(escrow.CodeUnavailable, "QuantumLock is not configured on this server")
	}
	ks, err := s.qkeys.GetQLockKeys(ctx, subjects)
	if err != nil {
		return nil, fmtErr("read qlock keys", err)
	}
	return ks, nil
}

// QLock actions.
const (
	QLockLock   = "lock"   // lock a plain secret to its first members
	QLockShare  = "share"  // the same members plus one
	QLockRevoke = "revoke" // the same members less one, with a fresh data key
	QLockRelock = "relock" // the same members, a new value
)

// QLockInput is a client's locked value for the secret's next version.
type QLockInput struct {
	Action string `json:"action"`
	// Subject is the member shared with or revoked.
	Subject string `json:"subject,omitempty"`
	// Blob is the locked value (internal/qlock), sealed for the secret's
	// next version.
	Blob []byte `json:"blob"`
	// Fields are the value fields inside the blob (lock only).
	Fields []string `json:"fields,omitempty"`
	// Value holds the fields left readable (lock only; later actions keep
	// them). It must not repeat a locked field.
	Value escrow.SecretValue `json:"value,omitempty"`
	// Revision, if set, makes the write conditional.
	Revision *int64 `json:"revision,omitempty"`
}

// LockSecret stores a client's locked value as the secret's next version.
// The caller needs edit, and (except to lock a plain secret) must be a
// member. The server checks the blob's recipients against the action, that
// every member has a key and the blob carries that key, and that the blob
// is sealed for this secret and the version it becomes.
func (s *Service) LockSecret(ctx context.Context, id string, in QLockInput) (*escrow.Secret, error) {
	action := map[string]string{QLockLock: escrow.ActionQLockLock, QLockShare: escrow.ActionQLockShare,
		QLockRevoke: escrow.ActionQLockRevoke, QLockRelock: escrow.ActionQLockRelock}[in.Action]
	if action == "" {
		action = escrow.ActionQLockLock
	}
	rec := s.record(ctx, action, escrow.SecretTarget(id))
	rec.SecretID = id
	sec, err := s.lockSecret(ctx, id, in, rec)
	if err != nil {
		return nil, s.fail(ctx, rec, err)
	}
	return sec, nil
}

func (s *Service) lockSecret(ctx context.Context, id string, in QLockInput, rec *escrow.AuditRecord) (*escrow.Secret, error) {
	old, _, err := s.load(ctx, id, escrow.PermEdit)
	if err != nil {
		return nil, err
	}
	p := escrow.PrincipalFrom(ctx)
	if old.Deleted() {
		return nil, escrow.Errorf(escrow.CodeNotFound, "secret %s is deleted", old.Path())
	}
	if in.Revision != nil && *in.Revision != old.Revision {
		return nil, escrow.Errorf(escrow.CodeConflict, "secret %s changed since revision %d (now %d)", old.Path(), *in.Revision, old.Revision)
	}
	infos, blobID, blobVersion, err := qlockfmt.Recipients(in.Blob)
	if err != nil {
		return nil, escrow.Errorf(escrow.CodeInvalid, "blob is not a QuantumLock locked value")
	}
	version := max(old.CurrentVersion, old.PendingVersion) + 1
	if blobID != id || blobVersion != version {
		return nil, escrow.Errorf(escrow.CodeInvalid, "the blob is sealed for %s version %d; this secret's next version is %s version %d", blobID, blobVersion, id, version)
	}
	members := make([]string, 0, len(infos))
	for _, r := range infos {
		if slices.Contains(members, r.Subject) {
			return nil, escrow.Errorf(escrow.CodeInvalid, "the blob names %s twice", r.Subject)
		}
		members = append(members, r.Subject)
	}
	slices.Sort(members)
	want, fields, err := expectedMembers(old, p, in, members)
	if err != nil {
		return nil, err
	}
	if !slices.Equal(members, want) {
		return nil, escrow.Errorf(escrow.CodeInvalid, "a %s must be locked to exactly %s; the blob is locked to %s",
			in.Action, strings.Join(want, ", "), strings.Join(members, ", "))
	}
	keys, err := s.publicKeys(ctx, members)
	if err != nil {
		return nil, err
	}
	for _, r := range infos {
		i := slices.IndexFunc(keys, func(k *escrow.QLockKey) bool { return k.Subject == r.Subject })
		if i < 0 {
			return nil, escrow.Errorf(escrow.CodeInvalid, "%s has no QuantumLock key: they must run escrow qlock init first", r.Subject)
		}
		if keys[i].Fingerprint != r.Fingerprint {
			return nil, escrow.Errorf(escrow.CodeInvalid, "the blob is locked to a key of %s that is not their current one (%s)", r.Subject, keys[i].Fingerprint)
		}
	}
	value, err := s.unlockedValue(ctx, old, in, fields)
	if err != nil {
		return nil, err
	}
	value[escrow.QLockField] = base64.StdEncoding.EncodeToString(in.Blob)
	if err := escrow.ValidateValue(escrow.TypeGeneric, value); err != nil {
		return nil, err
	}
	now := s.clock.Now()
	sec := *old
	sec.CurrentVersion, sec.PendingVersion = version, 0
	sec.QLock = &escrow.QLock{Members: members, Fields: fields, LockedAt: now, LockedBy: p.Subject}
	sec.Revision = old.Revision + 1
	sec.UpdatedAt, sec.UpdatedBy = now, p.Subject
	ver, err := s.seal(ctx, id, version, value, p.Subject)
	if err != nil {
		return nil, err
	}
	rec.Details = map[string]string{"path": sec.Path(), "version": itoa(version), "members": strings.Join(members, ","),
		"fields": strings.Join(fields, ",")}
	if in.Subject != "" {
		rec.Details["subject"] = in.Subject
	}
	if err := s.store.UpdateSecret(ctx, &sec, old.Revision, ver, rec); err != nil {
		if errors.Is(err, escrow.ErrConflict) {
			return nil, escrow.Errorf(escrow.CodeConflict, "secret %s was changed concurrently; read it again and retry", old.Path())
		}
		return nil, fmtErr("update secret", err)
	}
	return &sec, nil
}

// expectedMembers is who a blob for the action must be locked to, sorted,
// and the locked fields; blob is who the blob is locked to (sorted). A
// first lock may name anyone, but must include its author: locking a
// secret you cannot open yourself is almost always a mistake.
func expectedMembers(old *escrow.Secret, p *escrow.Principal, in QLockInput, blob []string) ([]string, []string, error) {
	q := old.QLock
	if in.Action == QLockLock {
		if q != nil {
			return nil, nil, escrow.Errorf(escrow.CodeConflict, "%s is already QuantumLocked; use share, revoke or set", old.Path())
		}
		fields := slices.Clone(in.Fields)
		slices.Sort(fields)
		if len(fields) == 0 || slices.Contains(fields, escrow.QLockField) || len(slices.Compact(slices.Clone(fields))) != len(fields) {
			return nil, nil, escrow.Errorf(escrow.CodeInvalid, "name the fields to lock, once each (not %q)", escrow.QLockField)
		}
		if !slices.Contains(blob, p.Subject) {
			return nil, nil, escrow.Errorf(escrow.CodeInvalid, "lock the secret to yourself too, or nobody who locked it could open it")
		}
		return blob, fields, nil
	}
	if q == nil {
		return nil, nil, escrow.Errorf(escrow.CodeConflict, "%s is not QuantumLocked: lock it first", old.Path())
	}
	if !q.IsMember(p.Subject) {
		return nil, nil, escrow.Errorf(escrow.CodeForbidden, "only a member of %s's QuantumLock can change it", old.Path())
	}
	want := slices.Clone(q.Members)
	switch in.Action {
	case QLockShare:
		if in.Subject == "" || q.IsMember(in.Subject) {
			return nil, nil, escrow.Errorf(escrow.CodeInvalid, "share with someone who is not a member yet")
		}
		want = append(want, in.Subject)
	case QLockRevoke:
		if !q.IsMember(in.Subject) {
			return nil, nil, escrow.Errorf(escrow.CodeInvalid, "%q is not a member", in.Subject)
		}
		if len(want) == 1 {
			return nil, nil, escrow.Errorf(escrow.CodeInvalid, "the last member cannot be revoked: nobody could open the secret")
		}
		want = slices.DeleteFunc(want, func(m string) bool { return m == in.Subject })
	case QLockRelock:
	default:
		return nil, nil, escrow.Errorf(escrow.CodeInvalid, "action must be lock, share, revoke or relock")
	}
	slices.Sort(want)
	return want, q.Fields, nil
}

// unlockedValue is the readable part of the next version: the client's for
// a first lock, the current version's otherwise.
func (s *Service) unlockedValue(ctx context.Context, old *escrow.Secret, in QLockInput, fields []string) (escrow.SecretValue, error) {
	if in.Action == QLockLock {
		v := escrow.SecretValue{}
		for k, val := range in.Value {
			if k == escrow.QLockField || slices.Contains(fields, k) {
				return nil, escrow.Errorf(escrow.CodeInvalid, "field %q is locked; it cannot also be sent in clear", k)
			}
			v[k] = val
		}
		return v, nil
	}
	if in.Value != nil {
		return nil, escrow.Errorf(escrow.CodeInvalid, "only a first lock sets the readable fields")
	}
	cur, err := s.store.GetVersion(ctx, old.ID, old.CurrentVersion)
	if err != nil {
		return nil, fmtErr("read version", err)
	}
	val, err := envelope.Open(ctx, s.keys, cur)
	if err != nil {
		return nil, fmtErr("decrypt value", err)
	}
	delete(val, escrow.QLockField)
	return val, nil
}

// qlockMember refuses a QuantumLocked secret's value to anyone who is not
// a member, admins included: they could not open it, and a non-member
// never even receives the ciphertext (defence in depth against a future
// break of the KEM).
func qlockMember(sec *escrow.Secret, p *escrow.Principal) error {
	if sec.QLock == nil || sec.QLock.IsMember(p.Subject) {
		return nil
	}
	return escrow.Errorf(escrow.CodeForbidden, "%s is QuantumLocked; only its members (%s) can fetch it", sec.Path(), strings.Join(sec.QLock.Members, ", "))
}
