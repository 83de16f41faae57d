package secrets

import (
	"context"
	"errors"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// checkPolicy applies a secret's effective policy to one direct access:
// Require Comment on reveals (where the rule says onReveal; the rule always
// applies to access requests, which check it themselves) and approval: an
// access the policy puts under approval needs a grant that authorizes it at
// this moment, decided from the clock (escrow.Grant.Authorizes). Without a
// grant store, such access is always refused: fail closed. The grant's id
// and ticket go into the audit record.
func (s *Service) checkPolicy(ctx context.Context, p *escrow.Principal, sec *escrow.Secret, pol *escrow.Policy, from string,
	access escrow.AccessKind, comment string, rec *escrow.AuditRecord) error {
	if access == escrow.AccessView && pol.Comment.OnReveal {
		if err := pol.Comment.Check(comment); err != nil {
			return err
		}
	}
	if !pol.Approval.Requires(access) {
		return nil
	}
	refused := &escrow.Error{Code: escrow.CodeForbidden,
		Message: "the policy (" + from + ") requires an approved access request for " + string(access) +
			" access; ask with: escrow request " + sec.Path() + " --access " + string(access),
		Err: errors.New("no grant authorizes this access now")}
	if s.grants == nil {
		return refused
	}
	now := s.clock.Now()
	gs, err := s.grants.GrantsFor(ctx, sec.ID, p.Subject, now)
	if err != nil {
		return fmtErr("read grants", err)
	}
	for _, g := range gs {
		if g.Authorizes(p.Subject, access, now) {
			if rec.Details == nil {
				rec.Details = map[string]string{}
			}
			rec.Details["grant"] = g.ID
			rec.Details["request"] = g.RequestID
			rec.Ticket = g.Ticket
			return nil
		}
	}
	return refused
}

// checkCheckout applies a checkout rule to a reveal: with required, only
// the holder of an unexpired checkout may reveal; in any case nobody else
// may while the secret is checked out or its password is being rotated.
// Without a checkout store, a secret that requires checkout is refused.
func (s *Service) checkCheckout(ctx context.Context, p *escrow.Principal, sec *escrow.Secret, rule *escrow.CheckoutRule, rec *escrow.AuditRecord) error {
	if s.checkouts == nil {
		if rule.Required {
			return escrow.Errorf(escrow.CodeUnavailable, "%s must be checked out, and checkout is not configured on this server", sec.Path())
		}
		return nil
	}
	c, err := s.checkouts.GetCheckout(ctx, sec.ID)
	if errors.Is(err, escrow.ErrNotFound) {
		c, err = nil, nil
	}
	if err != nil {
		return fmtErr("read checkout", err)
	}
	if err := c.AllowsReveal(p.Subject, rule.Required, sec.Path(), s.clock.Now()); err != nil {
		return err
	}
	if c.Holds(p.Subject, s.clock.Now()) {
		if rec.Details == nil {
			rec.Details = map[string]string{}
		}
		rec.Details["checkout"] = c.ID
		if rec.Ticket == "" {
			rec.Ticket = c.Ticket
		}
	}
	return nil
}

// PolicyView is a secret's effective policy and where it comes from.
type PolicyView struct {
	SecretID string         `json:"secretId"`
	Path     string         `json:"path"`
	Policy   *escrow.Policy `json:"policy"`         // nil when none applies
	From     string         `json:"from,omitempty"` // "secret" or "folder:<path>"
	Own      *escrow.Policy `json:"own,omitempty"`  // the secret's own policy, if any
	Revision int64          `json:"revision"`       // the secret's revision, for a conditional set
}

// GetPolicy returns the policy that governs a secret (nearest wins); the
// caller needs list.
func (s *Service) GetPolicy(ctx context.Context, id string) (*PolicyView, error) {
	rec := s.record(ctx, escrow.ActionPolicyGet, escrow.SecretTarget(id))
	rec.SecretID = id
	v, err := s.getPolicy(ctx, id)
	if err != nil {
		return nil, s.fail(ctx, rec, err)
	}
	if err := s.commit(ctx, rec); err != nil {
		return nil, err
	}
	return v, nil
}

func (s *Service) getPolicy(ctx context.Context, id string) (*PolicyView, error) {
	sec, _, err := s.load(ctx, id, escrow.PermList)
	if err != nil {
		return nil, err
	}
	folders, err := s.store.GetFolders(ctx, escrow.Ancestors(sec.Folder))
	if err != nil {
		return nil, fmtErr("read folders", err)
	}
	v := &PolicyView{SecretID: sec.ID, Path: sec.Path(), Own: sec.Policy, Revision: sec.Revision}
	v.Policy, v.From, _ = escrow.EffectivePolicy(sec.Policy, sec.Folder, folders)
	return v, nil
}

// SetSecretPolicy sets (or, with nil, removes) a secret's own policy; the
// caller needs owner.
func (s *Service) SetSecretPolicy(ctx context.Context, id string, pol *escrow.Policy, revision *int64) (*escrow.Secret, error) {
	rec := s.record(ctx, escrow.ActionPolicySet, escrow.SecretTarget(id))
	rec.SecretID = id
	sec, err := s.setSecretPolicy(ctx, id, pol, revision, rec)
	if err != nil {
		return nil, s.fail(ctx, rec, err)
	}
	return sec, nil
}

func (s *Service) setSecretPolicy(ctx context.Context, id string, pol *escrow.Policy, revision *int64, rec *escrow.AuditRecord) (*escrow.Secret, error) {
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
	if err := pol.Validate(); err != nil {
		return nil, err
	}
	sec := *old
	sec.Policy = pol
	sec.Revision = old.Revision + 1
	sec.UpdatedAt, sec.UpdatedBy = s.clock.Now(), escrow.PrincipalFrom(ctx).Subject
	rec.Details = map[string]string{"path": sec.Path(), "policy": policySummary(pol)}
	if err := s.store.UpdateSecret(ctx, &sec, old.Revision, nil, rec); err != nil {
		if errors.Is(err, escrow.ErrConflict) {
			return nil, escrow.Errorf(escrow.CodeConflict, "secret %s was changed concurrently; read it again and retry", old.Path())
		}
		return nil, fmtErr("update policy", err)
	}
	return &sec, nil
}

// SetFolderPolicy sets (or, with nil, removes) a folder's policy; the caller
// needs owner on the folder.
func (s *Service) SetFolderPolicy(ctx context.Context, path string, pol *escrow.Policy, revision *int64) (*escrow.Folder, error) {
	rec := s.record(ctx, escrow.ActionPolicySet, escrow.FolderTarget(path))
	f, err := s.setFolderPolicy(ctx, path, pol, revision, rec)
	if err != nil {
		return nil, s.fail(ctx, rec, err)
	}
	return f, nil
}

func (s *Service) setFolderPolicy(ctx context.Context, path string, pol *escrow.Policy, revision *int64, rec *escrow.AuditRecord) (*escrow.Folder, error) {
	if err := pol.Validate(); err != nil {
		return nil, err
	}
	return s.putFolder(ctx, path, revision, rec, func(f *escrow.Folder) {
		f.Policy = pol
		rec.Details = map[string]string{"policy": policySummary(pol)}
	})
}

// policySummary is a short, value-free description for audit records.
func policySummary(p *escrow.Policy) string {
	if p == nil {
		return "none"
	}
	out := "comment=" + string(p.Comment.Mode)
	if p.Comment.Mode == "" {
		out = "comment=off"
	}
	if p.Comment.OnReveal {
		out += "+reveal"
	}
	if p.Approval != nil {
		out += " approval="
		for i, k := range p.Approval.For {
			if i > 0 {
				out += ","
			}
			out += string(k)
		}
	}
	return out
}
