package sqlite

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// maxIn is the most keys one multiQuery statement takes; longer lists are
// split.
const maxIn = 16

const secretCols = `id, folder, name, type, description, tags, acl, current_version, revision,
	created_at, created_by, updated_at, updated_by, deleted_at, policy, rotation, pending_version, qlock`

func (s *Store) prepareReads(ctx context.Context) error {
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&s.getSecret, "SELECT " + secretCols + " FROM secrets WHERE id = ?"},
		{&s.getSecretByPath, "SELECT " + secretCols + " FROM secrets WHERE path = ? AND folder = ?"},
		{&s.getVersion, `SELECT created_at, created_by, key_id, wrapped_key, ciphertext FROM versions
			WHERE secret_id = ? AND version = ?`},
		{&s.listVersions, `SELECT version, created_at, created_by, key_id FROM versions
			WHERE secret_id = ? ORDER BY version`},
		{&s.listFolder, "SELECT " + secretCols + ` FROM secrets
			WHERE folder = ?1 AND path > ?2 AND (?3 OR deleted_at IS NULL) ORDER BY path LIMIT ?4`},
		{&s.listRange, "SELECT " + secretCols + ` FROM secrets
			WHERE path > ?1 AND path < ?2 AND (?3 OR deleted_at IS NULL) ORDER BY path LIMIT ?4`},
	} {
		st, err := s.rdb.PrepareContext(ctx, p.sql)
		if err != nil {
			return unavailable("prepare read statement", err)
		}
		*p.dst = st
	}
	if err := s.getFolders.prepare(ctx, s.rdb, "SELECT path, acl, revision, updated_by, policy FROM folders WHERE path = ?"); err != nil {
		return err
	}
	if err := s.listGrants.prepare(ctx, s.rdb, "SELECT principal, target, permission FROM acl WHERE principal = ?"); err != nil {
		return err
	}
	if err := s.prepareRequests(ctx); err != nil {
		return err
	}
	if err := s.prepareExecutions(ctx); err != nil {
		return err
	}
	if err := s.prepareTicketSystems(ctx); err != nil {
		return err
	}
	if err := s.prepareCheckouts(ctx); err != nil {
		return err
	}
	if err := s.prepareQLockKeys(ctx); err != nil {
		return err
	}
	if err := s.prepareReportSchedules(ctx); err != nil {
		return err
	}
	if err := s.prepareSessions(ctx); err != nil {
		return err
	}
	return s.prepareAudit(ctx)
}

// multiQuery looks up several keys at once: n copies of a one-key query
// joined by UNION ALL, prepared once per n. (An IN list makes SQLite build
// an ephemeral index per call; BenchmarkRevealReads measured it about 8%
// slower.)
type multiQuery [maxIn + 1]*sql.Stmt

func (q *multiQuery) prepare(ctx context.Context, db *sql.DB, one string) error {
	for n := 1; n <= maxIn; n++ {
		st, err := db.PrepareContext(ctx, one+strings.Repeat(" UNION ALL "+one, n-1))
		if err != nil {
			return unavailable("prepare read statement", err)
		}
		q[n] = st
	}
	return nil
}

// dedup returns vals without repeats, copying only if it has any.
func dedup(vals []string) []string {
	for i := 1; i < len(vals); i++ {
		if slices.Contains(vals[:i], vals[i]) {
			out := make([]string, 0, len(vals))
			for _, v := range vals {
				if !slices.Contains(out, v) {
					out = append(out, v)
				}
			}
			return out
		}
	}
	return vals
}

// query runs the statement over vals in chunks, calling scan for each row.
func (q *multiQuery) query(ctx context.Context, vals []string, scan func(*sql.Rows) error) error {
	vals = dedup(vals)
	args := make([]any, 0, min(len(vals), maxIn))
	for len(vals) > 0 {
		n := min(len(vals), maxIn)
		args = args[:0]
		for _, v := range vals[:n] {
			args = append(args, v)
		}
		vals = vals[n:]
		rows, err := q[n].QueryContext(ctx, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			if err := scan(rows); err != nil {
				_ = rows.Close()
				return err
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
	}
	return nil
}

// --- encoding ---

// Times are stored as Unix nanoseconds; 0 stands for the zero time.
func fromTime(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func toTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// jsonOrNil encodes v, or returns nil (NULL) for an empty map or slice.
func jsonOrNil[T any](v T, empty bool) (any, error) {
	if empty {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

func decodeACL(raw sql.NullString) ([]escrow.ACE, error) {
	if !raw.Valid {
		return nil, nil
	}
	return decodeACLJSON(raw.String)
}

type scanner interface{ Scan(dest ...any) error }

func scanSecret(r scanner) (*escrow.Secret, error) {
	var (
		sec              escrow.Secret
		typ              string
		tags, acl, pol   sql.NullString
		rot, qlock       sql.NullString
		created, updated int64
		deleted          sql.NullInt64
	)
	if err := r.Scan(&sec.ID, &sec.Folder, &sec.Name, &typ, &sec.Description, &tags, &acl,
		&sec.CurrentVersion, &sec.Revision, &created, &sec.CreatedBy, &updated, &sec.UpdatedBy, &deleted, &pol,
		&rot, &sec.PendingVersion, &qlock); err != nil {
		return nil, err
	}
	sec.Type = escrow.SecretType(typ)
	sec.CreatedAt, sec.UpdatedAt = toTime(created), toTime(updated)
	if deleted.Valid {
		d := toTime(deleted.Int64)
		sec.DeletedAt = &d
	}
	var err error
	if tags.Valid {
		if sec.Tags, err = decodeTagsJSON(tags.String); err != nil {
			return nil, err
		}
	}
	if sec.ACL, err = decodeACL(acl); err != nil {
		return nil, err
	}
	if sec.Policy, err = decodePolicy(pol); err != nil {
		return nil, err
	}
	if sec.Rotation, err = decodeRotation(rot); err != nil {
		return nil, err
	}
	if sec.QLock, err = decodeQLock(qlock); err != nil {
		return nil, err
	}
	return &sec, nil
}

// decodeRotation reads a rotation column (NULL if none).
func decodeRotation(raw sql.NullString) (*escrow.RotationConfig, error) {
	if !raw.Valid {
		return nil, nil
	}
	var r escrow.RotationConfig
	if err := json.Unmarshal([]byte(raw.String), &r); err != nil {
		return nil, corrupt("rotation", err)
	}
	return &r, nil
}

// rotationArg encodes a rotation column.
func rotationArg(r *escrow.RotationConfig) (any, error) {
	if r == nil {
		return nil, nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode rotation: %w", err)
	}
	return string(b), nil
}

// decodeQLock reads a qlock column (NULL if the secret is not
// QuantumLocked).
func decodeQLock(raw sql.NullString) (*escrow.QLock, error) {
	if !raw.Valid {
		return nil, nil
	}
	var q escrow.QLock
	if err := json.Unmarshal([]byte(raw.String), &q); err != nil {
		return nil, corrupt("qlock", err)
	}
	return &q, nil
}

// qlockArg encodes a qlock column.
func qlockArg(q *escrow.QLock) (any, error) {
	if q == nil {
		return nil, nil
	}
	b, err := json.Marshal(q)
	if err != nil {
		return nil, fmt.Errorf("encode qlock: %w", err)
	}
	return string(b), nil
}

// decodePolicy reads a policy column (NULL if none).
func decodePolicy(raw sql.NullString) (*escrow.Policy, error) {
	if !raw.Valid {
		return nil, nil
	}
	var p escrow.Policy
	if err := json.Unmarshal([]byte(raw.String), &p); err != nil {
		return nil, fmt.Errorf("decode policy: %w", err)
	}
	return &p, nil
}

// policyArg encodes a policy column.
func policyArg(p *escrow.Policy) (any, error) {
	if p == nil {
		return nil, nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode policy: %w", err)
	}
	return string(b), nil
}

// secretArgs returns the column values of sec in the order of the insert
// and update statements: path, folder, name, ... deleted_at, policy,
// rotation, pending_version, qlock.
func secretArgs(sec *escrow.Secret) ([]any, error) {
	tags, err := jsonOrNil(sec.Tags, len(sec.Tags) == 0)
	if err != nil {
		return nil, fmt.Errorf("encode tags: %w", err)
	}
	acl, err := jsonOrNil(sec.ACL, len(sec.ACL) == 0)
	if err != nil {
		return nil, fmt.Errorf("encode acl: %w", err)
	}
	var deleted any
	if sec.DeletedAt != nil {
		deleted = fromTime(*sec.DeletedAt)
	}
	pol, err := policyArg(sec.Policy)
	if err != nil {
		return nil, err
	}
	rot, err := rotationArg(sec.Rotation)
	if err != nil {
		return nil, err
	}
	ql, err := qlockArg(sec.QLock)
	if err != nil {
		return nil, err
	}
	return []any{sec.Path(), sec.Folder, sec.Name, string(sec.Type), sec.Description, tags, acl,
		sec.CurrentVersion, sec.Revision, fromTime(sec.CreatedAt), sec.CreatedBy,
		fromTime(sec.UpdatedAt), sec.UpdatedBy, deleted, pol, rot, sec.PendingVersion, ql}, nil
}

// --- writes ---

func invalid(format string, args ...any) error {
	return escrow.Errorf(escrow.CodeInvalid, format, args...)
}

// CreateSecret stores sec, its first version and rec in one transaction.
func (s *Store) CreateSecret(ctx context.Context, sec *escrow.Secret, v *escrow.SecretVersion, rec *escrow.AuditRecord) error {
	switch {
	case sec == nil || v == nil || rec == nil:
		return invalid("create secret needs a secret, a version and an audit record")
	case sec.ID == "":
		return invalid("secret has no id")
	case sec.Revision != 1 || sec.CurrentVersion != 1 || v.Version != 1:
		return invalid("a new secret starts at revision 1 with version 1")
	case v.SecretID != "" && v.SecretID != sec.ID:
		return invalid("version belongs to another secret")
	}
	args, err := secretArgs(sec)
	if err != nil {
		return err
	}
	args = append([]any{sec.ID}, args...)
	a, err := encodeAudit(rec)
	if err != nil {
		return err
	}
	target := escrow.SecretTarget(sec.ID)
	return s.w.do(ctx, true, func(w *writer) error {
		if _, err := w.st.insSecret.ExecContext(w.ctx, args...); err != nil {
			return mapWriteErr("insert secret", err)
		}
		if err := w.insertVersion(sec.ID, v); err != nil {
			return err
		}
		if err := w.insertACL(target, sec.ACL); err != nil {
			return err
		}
		return w.insertAudit(a)
	})
}

// newVersionOf reports whether an update of sec may add version n: its
// current version, or a rotation's pending one (escrow.Store.UpdateSecret).
func newVersionOf(sec *escrow.Secret, n int) bool {
	return n == sec.CurrentVersion || (sec.PendingVersion != 0 && n == sec.PendingVersion)
}

// UpdateSecret replaces sec's metadata where the stored revision is
// prevRevision, adds v if not nil, and appends rec, in one transaction.
func (s *Store) UpdateSecret(ctx context.Context, sec *escrow.Secret, prevRevision int64, v *escrow.SecretVersion, rec *escrow.AuditRecord) error {
	switch {
	case sec == nil || rec == nil:
		return invalid("update secret needs a secret and an audit record")
	case sec.Revision != prevRevision+1:
		return invalid("revision must be the previous revision plus one")
	case v != nil && (!newVersionOf(sec, v.Version) || (v.SecretID != "" && v.SecretID != sec.ID)):
		return invalid("a new version must be the secret's current or pending version")
	}
	args, err := secretArgs(sec)
	if err != nil {
		return err
	}
	args = append(args, sec.ID, prevRevision)
	a, err := encodeAudit(rec)
	if err != nil {
		return err
	}
	target := escrow.SecretTarget(sec.ID)
	return s.w.do(ctx, true, func(w *writer) error {
		res, err := w.st.updSecret.ExecContext(w.ctx, args...)
		if err != nil {
			return mapWriteErr("update secret", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return unavailable("update secret", err)
		} else if n == 0 {
			var one int
			switch err := w.st.existsSecret.QueryRowContext(w.ctx, sec.ID).Scan(&one); {
			case err == sql.ErrNoRows:
				return escrow.ErrNotFound
			case err != nil:
				return unavailable("read secret", err)
			}
			return escrow.Errorf(escrow.CodeConflict, "secret was changed by someone else; reload and retry")
		}
		if v != nil {
			if err := w.insertVersion(sec.ID, v); err != nil {
				return err
			}
		}
		if _, err := w.st.delACL.ExecContext(w.ctx, target); err != nil {
			return mapWriteErr("delete acl index", err)
		}
		if err := w.insertACL(target, sec.ACL); err != nil {
			return err
		}
		return w.insertAudit(a)
	})
}

// PutFolder creates f (prevRevision 0) or replaces it where the stored
// revision is prevRevision, with rec, in one transaction.
func (s *Store) PutFolder(ctx context.Context, f *escrow.Folder, prevRevision int64, rec *escrow.AuditRecord) error {
	switch {
	case f == nil || rec == nil:
		return invalid("put folder needs a folder and an audit record")
	case f.Revision != prevRevision+1:
		return invalid("revision must be the previous revision plus one")
	}
	acl, err := jsonOrNil(f.ACL, len(f.ACL) == 0)
	if err != nil {
		return fmt.Errorf("encode acl: %w", err)
	}
	pol, err := policyArg(f.Policy)
	if err != nil {
		return err
	}
	a, err := encodeAudit(rec)
	if err != nil {
		return err
	}
	target := escrow.FolderTarget(f.Path)
	return s.w.do(ctx, true, func(w *writer) error {
		if prevRevision == 0 {
			if _, err := w.st.insFolder.ExecContext(w.ctx, f.Path, acl, f.Revision, f.UpdatedBy, pol); err != nil {
				return mapWriteErr("insert folder", err)
			}
		} else {
			res, err := w.st.updFolder.ExecContext(w.ctx, acl, f.Revision, f.UpdatedBy, pol, f.Path, prevRevision)
			if err != nil {
				return mapWriteErr("update folder", err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return unavailable("update folder", err)
			} else if n == 0 {
				return escrow.Errorf(escrow.CodeConflict, "folder was changed by someone else, or does not exist")
			}
			if _, err := w.st.delACL.ExecContext(w.ctx, target); err != nil {
				return mapWriteErr("delete acl index", err)
			}
		}
		if err := w.insertACL(target, f.ACL); err != nil {
			return err
		}
		return w.insertAudit(a)
	})
}

func (w *writer) insertVersion(id string, v *escrow.SecretVersion) error {
	_, err := w.st.insVersion.ExecContext(w.ctx, id, v.Version, fromTime(v.CreatedAt), v.CreatedBy, v.KeyID,
		nonNil(v.WrappedKey), nonNil(v.Ciphertext))
	if err != nil {
		return mapWriteErr("insert version", err)
	}
	return nil
}

// nonNil keeps an empty byte slice from becoming NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func (w *writer) insertACL(target string, acl []escrow.ACE) error {
	for _, a := range acl {
		if _, err := w.st.insACL.ExecContext(w.ctx, a.Principal, target, string(a.Permission)); err != nil {
			return mapWriteErr("insert acl index", err)
		}
	}
	return nil
}

// --- reads ---

// pointRead checks ctx, then returns a context without cancellation for a
// read that takes microseconds: database/sql and the driver each start a
// goroutine per query to watch a cancellable context, which measured several
// times the cost of the query itself.
func pointRead(ctx context.Context) (context.Context, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return context.Background(), nil
}

// GetSecret returns the secret with id, deleted or not.
func (s *Store) GetSecret(ctx context.Context, id string) (*escrow.Secret, error) {
	ctx, err := pointRead(ctx)
	if err != nil {
		return nil, err
	}
	sec, err := scanSecret(s.getSecret.QueryRowContext(ctx, id))
	if err != nil {
		return nil, mapReadErr("get secret", err)
	}
	return sec, nil
}

// GetSecretByPath returns the secret named name in folder.
func (s *Store) GetSecretByPath(ctx context.Context, folder, name string) (*escrow.Secret, error) {
	ctx, err := pointRead(ctx)
	if err != nil {
		return nil, err
	}
	p := (&escrow.Secret{Folder: folder, Name: name}).Path()
	// The folder check keeps ("/a", "b/c") from matching ("/a/b", "c").
	sec, err := scanSecret(s.getSecretByPath.QueryRowContext(ctx, p, folder))
	if err != nil {
		return nil, mapReadErr("get secret by path", err)
	}
	return sec, nil
}

// GetVersion returns one version with its ciphertext.
// GetVersionAndFolders is GetVersion and GetFolders: both are local reads
// here, so there is no round trip to save. See escrow.Store.
func (s *Store) GetVersionAndFolders(ctx context.Context, id string, version int, paths []string) (*escrow.SecretVersion, []escrow.Folder, error) {
	v, err := s.GetVersion(ctx, id, version)
	if err != nil {
		return nil, nil, err
	}
	folders, err := s.GetFolders(ctx, paths)
	if err != nil {
		return nil, nil, err
	}
	return v, folders, nil
}

func (s *Store) GetVersion(ctx context.Context, id string, version int) (*escrow.SecretVersion, error) {
	ctx, err := pointRead(ctx)
	if err != nil {
		return nil, err
	}
	v := &escrow.SecretVersion{SecretID: id, Version: version}
	var created int64
	err = s.getVersion.QueryRowContext(ctx, id, version).Scan(&created, &v.CreatedBy, &v.KeyID, &v.WrappedKey, &v.Ciphertext)
	if err != nil {
		return nil, mapReadErr("get version", err)
	}
	v.CreatedAt = toTime(created)
	return v, nil
}

// ListVersions returns every version of a secret, oldest first, without
// key material or ciphertext.
func (s *Store) ListVersions(ctx context.Context, id string) ([]*escrow.SecretVersion, error) {
	ctx, err := pointRead(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := s.listVersions.QueryContext(ctx, id)
	if err != nil {
		return nil, mapReadErr("list versions", err)
	}
	defer rows.Close()
	out := []*escrow.SecretVersion{}
	for rows.Next() {
		v := &escrow.SecretVersion{SecretID: id}
		var created int64
		if err := rows.Scan(&v.Version, &created, &v.CreatedBy, &v.KeyID); err != nil {
			return nil, mapReadErr("list versions", err)
		}
		v.CreatedAt = toTime(created)
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, mapReadErr("list versions", err)
	}
	return out, nil
}

// pageLimit applies the ports' default and cap.
func pageLimit(n int) int {
	switch {
	case n <= 0:
		return 100
	case n > 1000:
		return 1000
	}
	return n
}

// Cursors are base64url of a kind letter and the last key returned.
func encodeCursor(kind byte, key string) string {
	return base64.RawURLEncoding.EncodeToString(append([]byte{kind}, key...))
}

func decodeCursor(kind byte, c string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 2 || b[0] != kind || !utf8.Valid(b[1:]) {
		return "", false
	}
	return string(b[1:]), true
}

// ListSecrets returns a page of secrets matching q, ordered by path.
func (s *Store) ListSecrets(ctx context.Context, q escrow.SecretQuery) (escrow.SecretPage, error) {
	folder, err := escrow.CleanFolder(q.Folder)
	if err != nil {
		return escrow.SecretPage{}, err
	}
	after := ""
	if q.Cursor != "" {
		var ok bool
		if after, ok = decodeCursor('s', q.Cursor); !ok || !strings.HasPrefix(after, "/") {
			return escrow.SecretPage{}, escrow.Errorf(escrow.CodeInvalid, "malformed cursor")
		}
	}
	limit := pageLimit(q.Limit)
	var rows *sql.Rows
	if q.Recursive {
		// Everything below folder shares the prefix folder+"/"; "0" is the
		// byte after "/", so [prefix, prefix-with-"0") is exactly that subtree.
		prefix := folder + "/"
		if folder == "/" {
			prefix = "/"
		}
		upper := prefix[:len(prefix)-1] + "0"
		rows, err = s.listRange.QueryContext(ctx, max(after, prefix), upper, q.IncludeDeleted, limit+1)
	} else {
		rows, err = s.listFolder.QueryContext(ctx, folder, after, q.IncludeDeleted, limit+1)
	}
	if err != nil {
		return escrow.SecretPage{}, mapReadErr("list secrets", err)
	}
	defer rows.Close()
	page := escrow.SecretPage{Secrets: make([]*escrow.Secret, 0, min(limit, 16))}
	for rows.Next() {
		if len(page.Secrets) == limit {
			page.Next = encodeCursor('s', page.Secrets[limit-1].Path())
			break
		}
		sec, err := scanSecret(rows)
		if err != nil {
			return escrow.SecretPage{}, mapReadErr("list secrets", err)
		}
		page.Secrets = append(page.Secrets, sec)
	}
	if err := rows.Err(); err != nil {
		return escrow.SecretPage{}, mapReadErr("list secrets", err)
	}
	return page, nil
}

// GetFolders returns the folders that exist among paths.
func (s *Store) GetFolders(ctx context.Context, paths []string) ([]escrow.Folder, error) {
	ctx, err := pointRead(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]escrow.Folder, 0, len(paths))
	err = s.getFolders.query(ctx, paths, func(r *sql.Rows) error {
		var (
			f        escrow.Folder
			acl, pol sql.NullString
			err      error
		)
		if err := r.Scan(&f.Path, &acl, &f.Revision, &f.UpdatedBy, &pol); err != nil {
			return err
		}
		if f.ACL, err = decodeACL(acl); err != nil {
			return err
		}
		if f.Policy, err = decodePolicy(pol); err != nil {
			return err
		}
		out = append(out, f)
		return nil
	})
	if err != nil {
		return nil, mapReadErr("get folders", err)
	}
	return out, nil
}

// ListACLGrants returns every ACL index entry naming one of principals.
func (s *Store) ListACLGrants(ctx context.Context, principals []string) ([]escrow.ACLGrant, error) {
	ctx, err := pointRead(ctx)
	if err != nil {
		return nil, err
	}
	var out []escrow.ACLGrant
	err = s.listGrants.query(ctx, principals, func(r *sql.Rows) error {
		var g escrow.ACLGrant
		var perm string
		if err := r.Scan(&g.Principal, &g.Target, &perm); err != nil {
			return err
		}
		g.Permission = escrow.Permission(perm)
		out = append(out, g)
		return nil
	})
	if err != nil {
		return nil, mapReadErr("list acl grants", err)
	}
	return out, nil
}
