package secrets

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/escrow-pam/escrow/internal/envelope"
	"github.com/escrow-pam/escrow/internal/escrow"
)

// CreateInput describes a new secret.
type CreateInput struct {
	Name        string
	Folder      string
	Type        escrow.SecretType
	Description string
	Tags        map[string]string
	ACL         []escrow.ACE
	Value       escrow.SecretValue
}

// Create stores a new secret with its first version. The caller needs edit
// on the folder and becomes an owner of the secret unless they are an admin
// or the ACL names an owner.
func (s *Service) Create(ctx context.Context, in CreateInput) (*escrow.Secret, error) {
	now := s.clock.Now()
	id := escrow.NewID(now)
	rec := s.record(ctx, escrow.ActionSecretCreate, escrow.SecretTarget(id))
	rec.SecretID = id
	sec, err := s.create(ctx, id, in, rec)
	if err != nil {
		return nil, s.fail(ctx, rec, err)
	}
	return sec, nil
}

func (s *Service) create(ctx context.Context, id string, in CreateInput, rec *escrow.AuditRecord) (*escrow.Secret, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	now := s.clock.Now()
	sec := &escrow.Secret{
		ID: id, Name: in.Name, Folder: in.Folder, Type: in.Type, Description: in.Description,
		Tags: in.Tags, ACL: slices.Clone(in.ACL), CurrentVersion: 1, Revision: 1,
		CreatedAt: now, CreatedBy: p.Subject, UpdatedAt: now, UpdatedBy: p.Subject,
	}
	// The creator owns what they create, unless they are an admin (who owns
	// everything anyway) or the ACL already names an owner.
	hasOwner := slices.ContainsFunc(sec.ACL, func(a escrow.ACE) bool { return a.Permission == escrow.PermOwner })
	if !p.IsAdmin() && !hasOwner {
		sec.ACL = append(sec.ACL, escrow.ACE{Principal: escrow.UserKey(p.Subject), Permission: escrow.PermOwner})
	}
	if err := sec.ValidateMeta(); err != nil {
		return nil, err
	}
	rec.Target = escrow.SecretTarget(id)
	rec.Details = map[string]string{"path": sec.Path(), "type": string(sec.Type), "version": "1",
		"fields": strings.Join(in.Value.FieldNames(), ",")}
	if err := escrow.ValidateValue(sec.Type, in.Value); err != nil {
		return nil, err
	}
	perm, err := s.folderPermission(ctx, p, sec.Folder)
	if err != nil {
		return nil, err
	}
	if !perm.Includes(escrow.PermEdit) {
		return nil, escrow.Errorf(escrow.CodeForbidden, "you need edit permission on folder %s to create secrets in it", sec.Folder)
	}
	ver, err := s.seal(ctx, id, 1, in.Value, p.Subject)
	if err != nil {
		return nil, err
	}
	if err := s.store.CreateSecret(ctx, sec, ver, rec); err != nil {
		if errors.Is(err, escrow.ErrConflict) {
			return nil, escrow.Errorf(escrow.CodeConflict, "a secret named %s already exists", sec.Path())
		}
		return nil, fmtErr("create secret", err)
	}
	return sec, nil
}

// Get returns a secret's metadata; the caller needs list.
func (s *Service) Get(ctx context.Context, id string) (*escrow.Secret, error) {
	rec := s.record(ctx, escrow.ActionSecretGet, escrow.SecretTarget(id))
	rec.SecretID = id
	sec, _, err := s.load(ctx, id, escrow.PermList)
	if err != nil {
		return nil, s.fail(ctx, rec, err)
	}
	if err := s.commit(ctx, rec); err != nil {
		return nil, err
	}
	return sec, nil
}

// UpdateInput changes a secret. Nil fields are left as they are; a non-nil
// Value adds a new version. Revision, if set, must match the stored one.
type UpdateInput struct {
	Revision    *int64
	Name        *string
	Folder      *string
	Description *string
	Tags        *map[string]string
	Value       escrow.SecretValue
}

// Update changes a secret's metadata and/or value; the caller needs edit
// (and edit on the new folder when moving it).
func (s *Service) Update(ctx context.Context, id string, in UpdateInput) (*escrow.Secret, error) {
	rec := s.record(ctx, escrow.ActionSecretUpdate, escrow.SecretTarget(id))
	rec.SecretID = id
	sec, err := s.update(ctx, id, in, rec)
	if err != nil {
		return nil, s.fail(ctx, rec, err)
	}
	return sec, nil
}

func (s *Service) update(ctx context.Context, id string, in UpdateInput, rec *escrow.AuditRecord) (*escrow.Secret, error) {
	old, _, err := s.load(ctx, id, escrow.PermEdit)
	if err != nil {
		return nil, err
	}
	if old.Deleted() {
		return nil, escrow.Errorf(escrow.CodeNotFound, "secret %s is deleted", old.Path())
	}
	if in.Revision != nil && *in.Revision != old.Revision {
		return nil, escrow.Errorf(escrow.CodeConflict, "secret %s changed since revision %d (now %d)", old.Path(), *in.Revision, old.Revision)
	}
	folders, err := s.store.GetFolders(ctx, escrow.Ancestors(old.Folder))
	if err != nil {
		return nil, fmtErr("read folders", err)
	}
	p := escrow.PrincipalFrom(ctx)
	if pol, from, ok := escrow.EffectivePolicy(old.Policy, old.Folder, folders); ok {
		if err := s.checkPolicy(ctx, p, old, pol, from, escrow.AccessEdit, "", rec); err != nil {
			return nil, err
		}
	}
	sec := *old
	if in.Name != nil {
		sec.Name = *in.Name
	}
	if in.Folder != nil {
		sec.Folder = *in.Folder
	}
	if in.Description != nil {
		sec.Description = *in.Description
	}
	if in.Tags != nil {
		sec.Tags = *in.Tags
	}
	if err := sec.ValidateMeta(); err != nil {
		return nil, err
	}
	changed := []string{}
	if sec.Path() != old.Path() {
		changed = append(changed, "path")
		perm, err := s.folderPermission(ctx, p, sec.Folder)
		if err != nil {
			return nil, err
		}
		if !perm.Includes(escrow.PermEdit) {
			return nil, escrow.Errorf(escrow.CodeForbidden, "you need edit permission on folder %s to move a secret into it", sec.Folder)
		}
	}
	if in.Description != nil {
		changed = append(changed, "description")
	}
	if in.Tags != nil {
		changed = append(changed, "tags")
	}
	now := s.clock.Now()
	sec.Revision = old.Revision + 1
	sec.UpdatedAt, sec.UpdatedBy = now, p.Subject
	var ver *escrow.SecretVersion
	if in.Value != nil && old.QLock != nil {
		return nil, escrow.Errorf(escrow.CodeInvalid, "%s is QuantumLocked: the server cannot change its value; use escrow qlock set", old.Path())
	}
	if in.Value != nil {
		if err := escrow.ValidateValue(sec.Type, in.Value); err != nil {
			return nil, err
		}
		// A pending rotation version is set aside (it stays in the history):
		// the value stored now is the truth, and the next rotation starts
		// from it. This is how an admin repairs a failed rotation.
		sec.CurrentVersion = max(old.CurrentVersion, old.PendingVersion) + 1
		if old.PendingVersion != 0 {
			changed = append(changed, "pending-discarded")
			sec.PendingVersion = 0
		}
		if ver, err = s.seal(ctx, id, sec.CurrentVersion, in.Value, p.Subject); err != nil {
			return nil, err
		}
		changed = append(changed, "value")
	}
	if len(changed) == 0 {
		return nil, escrow.Errorf(escrow.CodeInvalid, "nothing to change")
	}
	rec.Details = map[string]string{"path": sec.Path(), "changed": strings.Join(changed, ","),
		"version": itoa(sec.CurrentVersion), "revision": itoa64(sec.Revision)}
	if ver != nil {
		rec.Details["fields"] = strings.Join(in.Value.FieldNames(), ",")
	}
	if err := s.store.UpdateSecret(ctx, &sec, old.Revision, ver, rec); err != nil {
		if errors.Is(err, escrow.ErrConflict) {
			return nil, escrow.Errorf(escrow.CodeConflict, "secret %s was changed concurrently, or %s is taken; read it again and retry", old.Path(), sec.Path())
		}
		return nil, fmtErr("update secret", err)
	}
	return &sec, nil
}

// Delete soft-deletes a secret: its versions are kept, it can no longer be
// revealed or changed. The caller needs edit.
func (s *Service) Delete(ctx context.Context, id string) error {
	rec := s.record(ctx, escrow.ActionSecretDelete, escrow.SecretTarget(id))
	rec.SecretID = id
	if err := s.delete(ctx, id, rec); err != nil {
		return s.fail(ctx, rec, err)
	}
	return nil
}

func (s *Service) delete(ctx context.Context, id string, rec *escrow.AuditRecord) error {
	old, _, err := s.load(ctx, id, escrow.PermEdit)
	if err != nil {
		return err
	}
	if old.Deleted() {
		return escrow.Errorf(escrow.CodeNotFound, "secret %s is already deleted", old.Path())
	}
	now := s.clock.Now()
	sec := *old
	sec.DeletedAt = &now
	sec.Revision = old.Revision + 1
	sec.UpdatedAt, sec.UpdatedBy = now, escrow.PrincipalFrom(ctx).Subject
	rec.Details = map[string]string{"path": sec.Path()}
	if err := s.store.UpdateSecret(ctx, &sec, old.Revision, nil, rec); err != nil {
		return fmtErr("delete secret", err)
	}
	return nil
}

// Revealed is a decrypted secret value. It must never be logged.
type Revealed struct {
	SecretID string             `json:"secretId"`
	Path     string             `json:"path"`
	Version  int                `json:"version"`
	Type     escrow.SecretType  `json:"type"`
	Value    escrow.SecretValue `json:"value"`
}

// RevealOptions qualify a reveal.
type RevealOptions struct {
	Version int    // 0 = current
	Comment string // the reason; the policy may require one (Require Comment)
}

// Reveal decrypts a version (0 = current) of a secret; see RevealWith.
func (s *Service) Reveal(ctx context.Context, id string, version int) (*Revealed, error) {
	return s.RevealWith(ctx, id, RevealOptions{Version: version})
}

// RevealWith decrypts a version of a secret. The caller needs view; the
// secret's policy may add conditions (a comment that matches its rule; an
// approved grant). The audit record, with the comment, is durable before
// the value is returned.
func (s *Service) RevealWith(ctx context.Context, id string, opts RevealOptions) (*Revealed, error) {
	rec := s.record(ctx, escrow.ActionSecretReveal, escrow.SecretTarget(id))
	rec.SecretID = id
	rec.Comment = strings.TrimSpace(opts.Comment)
	r, err := s.reveal(ctx, id, opts, rec)
	if err != nil {
		return nil, s.fail(ctx, rec, err)
	}
	if err := s.commit(ctx, rec); err != nil {
		return nil, err
	}
	return r, nil
}

// reveal makes two reads, the secret and then its version with the folder
// chain (one round trip on DynamoDB), and decides before it decrypts.
func (s *Service) reveal(ctx context.Context, id string, opts RevealOptions, rec *escrow.AuditRecord) (*Revealed, error) {
	version := opts.Version
	p, sec, err := s.getSecret(ctx, id)
	if err != nil {
		return nil, err
	}
	want := version
	if want == 0 {
		want = sec.CurrentVersion
	}
	inRange := want >= 1 && want <= sec.CurrentVersion
	ancestors := escrow.Ancestors(sec.Folder)
	var v *escrow.SecretVersion
	var folders []escrow.Folder
	if inRange {
		v, folders, err = s.store.GetVersionAndFolders(ctx, id, want, ancestors)
	} else {
		folders, err = s.store.GetFolders(ctx, ancestors)
	}
	if err != nil {
		return nil, fmtErr("read version and folders", err)
	}
	if _, err := decide(p, sec, folders, escrow.PermView); err != nil {
		return nil, err
	}
	if sec.Deleted() {
		return nil, escrow.Errorf(escrow.CodeNotFound, "secret %s is deleted", sec.Path())
	}
	if err := qlockMember(sec, p); err != nil {
		return nil, err
	}
	rec.Details = map[string]string{"path": sec.Path(), "version": itoa(want)}
	if pol, from, ok := escrow.EffectivePolicy(sec.Policy, sec.Folder, folders); ok {
		if err := s.checkPolicy(ctx, p, sec, pol, from, escrow.AccessView, opts.Comment, rec); err != nil {
			return nil, err
		}
		if pol.Checkout != nil {
			if err := s.checkCheckout(ctx, p, sec, pol.Checkout, rec); err != nil {
				return nil, err
			}
		}
	}
	if !inRange {
		return nil, escrow.Errorf(escrow.CodeNotFound, "secret %s has no version %d (current is %d)", sec.Path(), version, sec.CurrentVersion)
	}
	value, err := envelope.Open(ctx, s.keys, v)
	if err != nil {
		return nil, fmtErr("decrypt value", err)
	}
	return &Revealed{SecretID: id, Path: sec.Path(), Version: want, Type: sec.Type, Value: value}, nil
}

// Versions lists a secret's versions (metadata only); the caller needs view.
func (s *Service) Versions(ctx context.Context, id string) ([]*escrow.SecretVersion, error) {
	rec := s.record(ctx, escrow.ActionSecretVersions, escrow.SecretTarget(id))
	rec.SecretID = id
	vs, err := s.versions(ctx, id)
	if err != nil {
		return nil, s.fail(ctx, rec, err)
	}
	if err := s.commit(ctx, rec); err != nil {
		return nil, err
	}
	return vs, nil
}

func (s *Service) versions(ctx context.Context, id string) ([]*escrow.SecretVersion, error) {
	if _, _, err := s.load(ctx, id, escrow.PermView); err != nil {
		return nil, err
	}
	vs, err := s.store.ListVersions(ctx, id)
	if err != nil {
		return nil, fmtErr("list versions", err)
	}
	return vs, nil
}

// SetACL replaces a secret's ACL; the caller needs owner. An ACL that would
// leave the secret without any owner is refused unless the caller is admin.
func (s *Service) SetACL(ctx context.Context, id string, acl []escrow.ACE, revision *int64) (*escrow.Secret, error) {
	rec := s.record(ctx, escrow.ActionSecretACL, escrow.SecretTarget(id))
	rec.SecretID = id
	sec, err := s.setACL(ctx, id, acl, revision, rec)
	if err != nil {
		return nil, s.fail(ctx, rec, err)
	}
	return sec, nil
}

func (s *Service) setACL(ctx context.Context, id string, acl []escrow.ACE, revision *int64, rec *escrow.AuditRecord) (*escrow.Secret, error) {
	old, _, err := s.load(ctx, id, escrow.PermOwner)
	if err != nil {
		return nil, err
	}
	if old.Deleted() {
		return nil, escrow.Errorf(escrow.CodeNotFound, "secret %s is deleted", old.Path())
	}
	if revision != nil && *revision != old.Revision {
		return nil, escrow.Errorf(escrow.CodeConflict, "secret %s changed since revision %d (now %d)", old.Path(), *revision, old.Revision)
	}
	if err := escrow.ValidateACL(acl); err != nil {
		return nil, err
	}
	p := escrow.PrincipalFrom(ctx)
	if !p.IsAdmin() && !slices.ContainsFunc(acl, func(a escrow.ACE) bool { return a.Permission == escrow.PermOwner }) {
		return nil, escrow.Errorf(escrow.CodeInvalid, "the acl must keep at least one owner")
	}
	sec := *old
	sec.ACL = slices.Clone(acl)
	sec.Revision = old.Revision + 1
	sec.UpdatedAt, sec.UpdatedBy = s.clock.Now(), p.Subject
	rec.Details = map[string]string{"path": sec.Path(), "acl": aclString(acl)}
	if err := s.store.UpdateSecret(ctx, &sec, old.Revision, nil, rec); err != nil {
		if errors.Is(err, escrow.ErrConflict) {
			return nil, escrow.Errorf(escrow.CodeConflict, "secret %s was changed concurrently; read it again and retry", old.Path())
		}
		return nil, fmtErr("update acl", err)
	}
	return &sec, nil
}

// GetFolder returns a folder's ACL (an empty one if it was never set); the
// caller needs list on it.
func (s *Service) GetFolder(ctx context.Context, path string) (*escrow.Folder, error) {
	rec := s.record(ctx, escrow.ActionFolderGet, escrow.FolderTarget(path))
	f, err := s.getFolder(ctx, path)
	if err != nil {
		return nil, s.fail(ctx, rec, err)
	}
	if err := s.commit(ctx, rec); err != nil {
		return nil, err
	}
	return f, nil
}

func (s *Service) getFolder(ctx context.Context, path string) (*escrow.Folder, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	clean, err := escrow.CleanFolder(path)
	if err != nil {
		return nil, err
	}
	perm, err := s.folderPermission(ctx, p, clean)
	if err != nil {
		return nil, err
	}
	if !perm.Includes(escrow.PermList) {
		return nil, escrow.Errorf(escrow.CodeForbidden, "you hold no permission on folder %s", clean)
	}
	fs, err := s.store.GetFolders(ctx, []string{clean})
	if err != nil {
		return nil, fmtErr("read folder", err)
	}
	if len(fs) == 0 {
		return &escrow.Folder{Path: clean, ACL: []escrow.ACE{}}, nil
	}
	return &fs[0], nil
}

// SetFolderACL replaces a folder's ACL; the caller needs owner on the
// folder (through it or an ancestor), or admin.
func (s *Service) SetFolderACL(ctx context.Context, path string, acl []escrow.ACE, revision *int64) (*escrow.Folder, error) {
	rec := s.record(ctx, escrow.ActionFolderACL, escrow.FolderTarget(path))
	f, err := s.setFolderACL(ctx, path, acl, revision, rec)
	if err != nil {
		return nil, s.fail(ctx, rec, err)
	}
	return f, nil
}

func (s *Service) setFolderACL(ctx context.Context, path string, acl []escrow.ACE, revision *int64, rec *escrow.AuditRecord) (*escrow.Folder, error) {
	if err := escrow.ValidateACL(acl); err != nil {
		return nil, err
	}
	return s.putFolder(ctx, path, revision, rec, func(f *escrow.Folder) {
		f.ACL = slices.Clone(acl)
		rec.Details = map[string]string{"acl": aclString(acl)}
	})
}

// putFolder changes one folder (creating it if it was never set) where the
// caller holds owner on it, through it or an ancestor, or is admin.
func (s *Service) putFolder(ctx context.Context, path string, revision *int64, rec *escrow.AuditRecord, change func(*escrow.Folder)) (*escrow.Folder, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	clean, err := escrow.CleanFolder(path)
	if err != nil {
		return nil, err
	}
	rec.Target = escrow.FolderTarget(clean)
	perm, err := s.folderPermission(ctx, p, clean)
	if err != nil {
		return nil, err
	}
	if !perm.Includes(escrow.PermOwner) {
		return nil, escrow.Errorf(escrow.CodeForbidden, "you need owner permission on folder %s to change it", clean)
	}
	fs, err := s.store.GetFolders(ctx, []string{clean})
	if err != nil {
		return nil, fmtErr("read folder", err)
	}
	f := &escrow.Folder{Path: clean, ACL: []escrow.ACE{}}
	if len(fs) == 1 {
		f = &fs[0]
	}
	prev := f.Revision
	if revision != nil && *revision != prev {
		return nil, escrow.Errorf(escrow.CodeConflict, "folder %s changed since revision %d (now %d)", clean, *revision, prev)
	}
	change(f)
	f.Revision, f.UpdatedBy = prev+1, p.Subject
	rec.Details["revision"] = itoa64(f.Revision)
	if err := s.store.PutFolder(ctx, f, prev, rec); err != nil {
		if errors.Is(err, escrow.ErrConflict) {
			return nil, escrow.Errorf(escrow.CodeConflict, "folder %s was changed concurrently; read it again and retry", clean)
		}
		return nil, fmtErr("put folder", err)
	}
	return f, nil
}

// QueryAudit returns audit records; the caller needs the admin or auditor
// role.
func (s *Service) QueryAudit(ctx context.Context, q escrow.AuditQuery) (escrow.AuditPage, error) {
	rec := s.record(ctx, escrow.ActionAuditQuery, "audit")
	page, err := s.queryAudit(ctx, q, rec)
	if err != nil {
		return escrow.AuditPage{}, s.fail(ctx, rec, err)
	}
	if err := s.commit(ctx, rec); err != nil {
		return escrow.AuditPage{}, err
	}
	return page, nil
}

func (s *Service) queryAudit(ctx context.Context, q escrow.AuditQuery, rec *escrow.AuditRecord) (escrow.AuditPage, error) {
	p, err := principal(ctx)
	if err != nil {
		return escrow.AuditPage{}, err
	}
	if !p.IsAdmin() && !p.HasRole(escrow.RoleAuditor) {
		return escrow.AuditPage{}, escrow.Errorf(escrow.CodeForbidden, "reading the audit log needs the admin or auditor role")
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		return escrow.AuditPage{}, escrow.Errorf(escrow.CodeInvalid, "from must be before to")
	}
	if q.Limit < 0 || q.Limit > 1000 {
		return escrow.AuditPage{}, escrow.Errorf(escrow.CodeInvalid, "limit must be between 1 and 1000")
	}
	rec.Details = auditQueryDetails(q)
	page, err := s.audit.QueryAudit(ctx, q)
	if err != nil {
		return escrow.AuditPage{}, fmtErr("query audit", err)
	}
	return page, nil
}
