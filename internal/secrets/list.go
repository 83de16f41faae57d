package secrets

import (
	"context"
	"encoding/base64"
	"errors"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// ListInput selects secrets to list. Path, if set, selects at most the one
// secret at that path.
type ListInput struct {
	Folder    string
	Recursive bool
	Deleted   bool
	Path      string
	Cursor    string
	Limit     int
}

const (
	defaultLimit = 100
	maxLimit     = 1000
)

// List returns the secrets the caller may list, ordered by path.
//
// Admins and auditors page straight through the store's index. Anyone else
// sees the union of the secrets and folders their ACL grants name (found
// through the principal index, never a scan), merged and paged here.
func (s *Service) List(ctx context.Context, in ListInput) (escrow.SecretPage, error) {
	rec := s.record(ctx, escrow.ActionSecretList, escrow.FolderTarget(in.Folder))
	page, err := s.list(ctx, in, rec)
	if err != nil {
		return escrow.SecretPage{}, s.fail(ctx, rec, err)
	}
	rec.Details["returned"] = strconv.Itoa(len(page.Secrets))
	if err := s.commit(ctx, rec); err != nil {
		return escrow.SecretPage{}, err
	}
	return page, nil
}

func (s *Service) list(ctx context.Context, in ListInput, rec *escrow.AuditRecord) (escrow.SecretPage, error) {
	p, err := principal(ctx)
	if err != nil {
		return escrow.SecretPage{}, err
	}
	if in.Limit == 0 {
		in.Limit = defaultLimit
	}
	if in.Limit < 0 || in.Limit > maxLimit {
		return escrow.SecretPage{}, escrow.Errorf(escrow.CodeInvalid, "limit must be between 1 and %d", maxLimit)
	}
	folder, err := escrow.CleanFolder(in.Folder)
	if err != nil {
		return escrow.SecretPage{}, err
	}
	rec.Target = escrow.FolderTarget(folder)
	rec.Details = map[string]string{"folder": folder, "recursive": strconv.FormatBool(in.Recursive)}
	if in.Path != "" {
		rec.Target = "path:" + in.Path
		rec.Details["path"] = in.Path
		return s.listPath(ctx, p, in.Path, in.Deleted)
	}
	q := escrow.SecretQuery{Folder: folder, Recursive: in.Recursive, IncludeDeleted: in.Deleted, Cursor: in.Cursor, Limit: in.Limit}
	if p.IsAdmin() || p.HasRole(escrow.RoleAuditor) {
		page, err := s.store.ListSecrets(ctx, q)
		if err != nil {
			return escrow.SecretPage{}, fmtErr("list secrets", err)
		}
		return page, nil
	}
	return s.listGranted(ctx, p, q)
}

func (s *Service) listPath(ctx context.Context, p *escrow.Principal, full string, deleted bool) (escrow.SecretPage, error) {
	dir, name := path.Split(full)
	folder, err := escrow.CleanFolder(strings.TrimSuffix(dir, "/"))
	if err != nil || name == "" {
		return escrow.SecretPage{}, escrow.Errorf(escrow.CodeInvalid, "path %q must look like /folder/name", full)
	}
	sec, err := s.store.GetSecretByPath(ctx, folder, name)
	if errors.Is(err, escrow.ErrNotFound) {
		return escrow.SecretPage{Secrets: []*escrow.Secret{}}, nil
	}
	if err != nil {
		return escrow.SecretPage{}, fmtErr("read secret", err)
	}
	perm, err := s.permission(ctx, p, sec)
	if err != nil {
		return escrow.SecretPage{}, err
	}
	if !perm.Includes(escrow.PermList) || (sec.Deleted() && !deleted) {
		return escrow.SecretPage{Secrets: []*escrow.Secret{}}, nil
	}
	return escrow.SecretPage{Secrets: []*escrow.Secret{sec}}, nil
}

// listGranted collects what a non-admin may list within q's scope.
func (s *Service) listGranted(ctx context.Context, p *escrow.Principal, q escrow.SecretQuery) (escrow.SecretPage, error) {
	grants, err := s.store.ListACLGrants(ctx, p.Keys())
	if err != nil {
		return escrow.SecretPage{}, fmtErr("list acl grants", err)
	}
	var folders []string
	var ids []string
	for _, g := range grants {
		if !g.Permission.Includes(escrow.PermList) {
			continue
		}
		if f, ok := strings.CutPrefix(g.Target, "folder:"); ok {
			folders = append(folders, f)
		} else if id, ok := strings.CutPrefix(g.Target, "secret:"); ok {
			ids = append(ids, id)
		}
	}
	byID := map[string]*escrow.Secret{}
	add := func(sec *escrow.Secret) {
		if (!sec.Deleted() || q.IncludeDeleted) && inScope(sec.Folder, q.Folder, q.Recursive) {
			byID[sec.ID] = sec
		}
	}
	for _, f := range folders {
		var scope escrow.SecretQuery
		switch {
		case isUnder(q.Folder, f): // the grant covers the whole query scope
			scope = escrow.SecretQuery{Folder: q.Folder, Recursive: q.Recursive, IncludeDeleted: q.IncludeDeleted}
		case q.Recursive && isUnder(f, q.Folder): // the grant covers part of it
			scope = escrow.SecretQuery{Folder: f, Recursive: true, IncludeDeleted: q.IncludeDeleted}
		default:
			continue
		}
		if err := s.eachSecret(ctx, scope, add); err != nil {
			return escrow.SecretPage{}, err
		}
	}
	for _, id := range ids {
		if _, ok := byID[id]; ok {
			continue
		}
		sec, err := s.store.GetSecret(ctx, id)
		if errors.Is(err, escrow.ErrNotFound) {
			continue
		}
		if err != nil {
			return escrow.SecretPage{}, fmtErr("read secret", err)
		}
		add(sec)
	}
	all := make([]*escrow.Secret, 0, len(byID))
	for _, sec := range byID {
		all = append(all, sec)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Path() < all[j].Path() })
	return pageOf(all, q.Cursor, q.Limit)
}

// eachSecret calls fn for every secret in scope, page by page.
func (s *Service) eachSecret(ctx context.Context, q escrow.SecretQuery, fn func(*escrow.Secret)) error {
	q.Limit = maxLimit
	for {
		page, err := s.store.ListSecrets(ctx, q)
		if err != nil {
			return fmtErr("list secrets", err)
		}
		for _, sec := range page.Secrets {
			fn(sec)
		}
		if page.Next == "" {
			return nil
		}
		q.Cursor = page.Next
	}
}

// pageOf pages a sorted slice; the cursor is the last path returned.
func pageOf(all []*escrow.Secret, cursor string, limit int) (escrow.SecretPage, error) {
	start := 0
	if cursor != "" {
		after, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil {
			return escrow.SecretPage{}, escrow.Errorf(escrow.CodeInvalid, "malformed cursor")
		}
		start = sort.Search(len(all), func(i int) bool { return all[i].Path() > string(after) })
	}
	end := min(start+limit, len(all))
	page := escrow.SecretPage{Secrets: all[start:end]}
	if end < len(all) {
		page.Next = base64.RawURLEncoding.EncodeToString([]byte(all[end-1].Path()))
	}
	return page, nil
}

// isUnder reports whether folder a is b or below b.
func isUnder(a, b string) bool {
	return b == "/" || a == b || strings.HasPrefix(a, b+"/")
}

// inScope reports whether a secret in folder f belongs to a listing of
// scope (recursive or not).
func inScope(f, scope string, recursive bool) bool {
	if recursive {
		return isUnder(f, scope)
	}
	return f == scope
}

func itoa(n int) string     { return strconv.Itoa(n) }
func itoa64(n int64) string { return strconv.FormatInt(n, 10) }

func aclString(acl []escrow.ACE) string {
	parts := make([]string, len(acl))
	for i, a := range acl {
		parts[i] = a.String()
	}
	return strings.Join(parts, ",")
}

func auditQueryDetails(q escrow.AuditQuery) map[string]string {
	d := map[string]string{}
	set := func(k, v string) {
		if v != "" {
			d[k] = v
		}
	}
	set("actor", q.Actor)
	set("secretId", q.SecretID)
	set("action", q.Action)
	if !q.From.IsZero() {
		d["from"] = q.From.Format(time.RFC3339)
	}
	if !q.To.IsZero() {
		d["to"] = q.To.Format(time.RFC3339)
	}
	return d
}
