package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

var _ escrow.RequestStore = (*Store)(nil)

// Filter bits, indexing requestStmts.list and .grants.
const (
	bySubject = 1 << iota // requester of a request, holder of a grant
	byTarget              // secret id
	byOpen                // a status (requests) or "not terminal" (grants)
)

type requestStmts struct {
	getRequest, getGrant, grantsFor *sql.Stmt
	list, grants                    [8]*sql.Stmt // by filter bits; grants[0] is unused
}

func (s *Store) prepareRequests(ctx context.Context) error {
	prep := func(q string) (*sql.Stmt, error) {
		st, err := s.rdb.PrepareContext(ctx, q)
		if err != nil {
			return nil, unavailable("prepare request query", err)
		}
		return st, nil
	}
	var err error
	if s.req.getRequest, err = prep("SELECT body FROM requests WHERE id = ?"); err != nil {
		return err
	}
	if s.req.getGrant, err = prep("SELECT body FROM grants WHERE id = ?"); err != nil {
		return err
	}
	if s.req.grantsFor, err = prep("SELECT body FROM grants WHERE subject = ? AND secret_id = ? AND end_at > ?"); err != nil {
		return err
	}
	if s.req.list[0], err = prep(listSQL("requests", nil)); err != nil {
		return err
	}
	for bits := 1; bits < 8; bits++ {
		// Requests: the open = 1 term lets a status-only query use the
		// partial index; a status alongside a requester or secret filters.
		var where []string
		if bits&bySubject != 0 {
			where = append(where, "requester = ?")
		}
		if bits&byTarget != 0 {
			where = append(where, "secret_id = ?")
		}
		if bits&byOpen != 0 {
			if bits == byOpen {
				where = append(where, "open = 1")
			}
			where = append(where, "status = ?")
		}
		if s.req.list[bits], err = prep(listSQL("requests", where)); err != nil {
			return err
		}

		where = where[:0]
		if bits&bySubject != 0 {
			where = append(where, "subject = ?")
		}
		if bits&byTarget != 0 {
			where = append(where, "secret_id = ?")
		}
		if bits&byOpen != 0 {
			where = append(where, "open = 1")
		}
		if s.req.grants[bits], err = prep(listSQL("grants", where)); err != nil {
			return err
		}
	}
	return nil
}

// listSQL selects a page, newest first, starting after the cursor's
// (created_at, id); the last two arguments are the cursor and the limit.
func listSQL(table string, where []string) string {
	where = append(where, "(created_at, id) < (?, ?)")
	return "SELECT body, created_at, id FROM " + table + " WHERE " + strings.Join(where, " AND ") +
		" ORDER BY created_at DESC, id DESC LIMIT ?"
}

// --- writes ---

// requestRow and grantRow are a request or grant encoded outside the
// writer, so that its transaction spends no time on JSON.
type requestRow struct {
	args []any // requester, secret_id, status, open, created_at, revision, body
	id   string
}

func encodeRequest(r *escrow.Request) (requestRow, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return requestRow{}, fmt.Errorf("encode request: %w", err)
	}
	return requestRow{id: r.ID, args: []any{r.Requester.Subject, r.SecretID, string(r.Status), openFlag(r.Status),
		fromTime(r.CreatedAt), r.Revision, b}}, nil
}

type grantRow struct {
	args []any // subject, secret_id, status, open, end_at, created_at, revision, body
	id   string
}

func encodeGrant(g *escrow.Grant) (grantRow, error) {
	b, err := json.Marshal(g)
	if err != nil {
		return grantRow{}, fmt.Errorf("encode grant: %w", err)
	}
	return grantRow{id: g.ID, args: []any{g.Subject, g.SecretID, string(g.Status), openFlag(g.Status),
		nanos(g.End), fromTime(g.CreatedAt), g.Revision, b}}, nil
}

// nanos is t in Unix nanoseconds, clamped to what an int64 holds (years
// 1678 to 2262), where UnixNano is undefined: a far end still sorts last and
// a zero since still means "any".
func nanos(t time.Time) int64 {
	switch {
	case t.Before(minNanos):
		return math.MinInt64
	case t.After(maxNanos):
		return math.MaxInt64
	}
	return t.UnixNano()
}

var (
	minNanos = time.Unix(0, math.MinInt64)
	maxNanos = time.Unix(0, math.MaxInt64)
)

func openFlag(s escrow.RequestStatus) int {
	if s.Terminal() {
		return 0
	}
	return 1
}

// CreateRequest stores r and rec in one transaction. See escrow.RequestStore.
func (s *Store) CreateRequest(ctx context.Context, r *escrow.Request, rec *escrow.AuditRecord) error {
	switch {
	case r == nil || rec == nil:
		return invalid("create request needs a request and an audit record")
	case r.ID == "":
		return invalid("request has no id")
	case r.Revision != 1:
		return invalid("a new request starts at revision 1")
	}
	row, err := encodeRequest(r)
	if err != nil {
		return err
	}
	a, err := encodeAudit(rec)
	if err != nil {
		return err
	}
	args := append([]any{row.id}, row.args...)
	return s.w.do(ctx, true, func(w *writer) error {
		if _, err := w.st.insRequest.ExecContext(w.ctx, args...); err != nil {
			return mapWriteErr("insert request", err)
		}
		return w.insertAudit(a)
	})
}

// UpdateRequest replaces r at prevRevision, creates g if not nil, and
// appends rec, in one transaction. See escrow.RequestStore.
func (s *Store) UpdateRequest(ctx context.Context, r *escrow.Request, prevRevision int64, g *escrow.Grant, rec *escrow.AuditRecord) error {
	switch {
	case r == nil || rec == nil:
		return invalid("update request needs a request and an audit record")
	case r.Revision != prevRevision+1:
		return invalid("revision must be the previous revision plus one")
	case g != nil && (g.ID == "" || g.Revision != 1):
		return invalid("a new grant needs an id and starts at revision 1")
	}
	row, err := encodeRequest(r)
	if err != nil {
		return err
	}
	var grow grantRow
	if g != nil {
		if grow, err = encodeGrant(g); err != nil {
			return err
		}
	}
	a, err := encodeAudit(rec)
	if err != nil {
		return err
	}
	args := append(row.args, row.id, prevRevision)
	return s.w.do(ctx, true, func(w *writer) error {
		if err := w.update(w.st.updRequest, w.st.hasRequest, "request", row.id, args); err != nil {
			return err
		}
		if g != nil {
			if _, err := w.st.insGrant.ExecContext(w.ctx, append([]any{grow.id}, grow.args...)...); err != nil {
				return mapWriteErr("insert grant", err)
			}
		}
		return w.insertAudit(a)
	})
}

// UpdateGrant replaces g at prevRevision and appends rec in one
// transaction. See escrow.RequestStore.
func (s *Store) UpdateGrant(ctx context.Context, g *escrow.Grant, prevRevision int64, rec *escrow.AuditRecord) error {
	switch {
	case g == nil || rec == nil:
		return invalid("update grant needs a grant and an audit record")
	case g.Revision != prevRevision+1:
		return invalid("revision must be the previous revision plus one")
	}
	row, err := encodeGrant(g)
	if err != nil {
		return err
	}
	a, err := encodeAudit(rec)
	if err != nil {
		return err
	}
	args := append(row.args, row.id, prevRevision)
	return s.w.do(ctx, true, func(w *writer) error {
		if err := w.update(w.st.updGrant, w.st.hasGrant, "grant", row.id, args); err != nil {
			return err
		}
		return w.insertAudit(a)
	})
}

// update runs a revision-conditional UPDATE; when it matches no row, the
// existence check tells a missing row (ErrNotFound) from a stale revision
// (ErrConflict).
func (w *writer) update(upd, has *sql.Stmt, what, id string, args []any) error {
	res, err := upd.ExecContext(w.ctx, args...)
	if err != nil {
		return mapWriteErr("update "+what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return unavailable("update "+what, err)
	}
	if n > 0 {
		return nil
	}
	var one int
	switch err := has.QueryRowContext(w.ctx, id).Scan(&one); {
	case err == sql.ErrNoRows:
		return fmt.Errorf("update %s %s: %w", what, id, escrow.ErrNotFound)
	case err != nil:
		return unavailable("read "+what, err)
	}
	return escrow.Errorf(escrow.CodeConflict, "%s was changed by someone else; reload and retry", what)
}

// --- reads ---

func corrupt(what string, err error) error {
	return escrow.Wrap(escrow.CodeInternal, fmt.Errorf("decode %s: %w", what, err), "corrupt record")
}

// GetRequest returns one request. See escrow.RequestStore.
func (s *Store) GetRequest(ctx context.Context, id string) (*escrow.Request, error) {
	ctx, err := pointRead(ctx)
	if err != nil {
		return nil, err
	}
	var raw []byte
	if err := s.req.getRequest.QueryRowContext(ctx, id).Scan(&raw); err != nil {
		return nil, mapReadErr("get request", err)
	}
	r := &escrow.Request{}
	if err := json.Unmarshal(raw, r); err != nil {
		return nil, corrupt("request", err)
	}
	return r, nil
}

// GetGrant returns one grant. See escrow.RequestStore.
func (s *Store) GetGrant(ctx context.Context, id string) (*escrow.Grant, error) {
	ctx, err := pointRead(ctx)
	if err != nil {
		return nil, err
	}
	var raw []byte
	if err := s.req.getGrant.QueryRowContext(ctx, id).Scan(&raw); err != nil {
		return nil, mapReadErr("get grant", err)
	}
	g := &escrow.Grant{}
	if err := json.Unmarshal(raw, g); err != nil {
		return nil, corrupt("grant", err)
	}
	return g, nil
}

// GrantsFor reads the grants_holder index: subject and secret, then End.
// See escrow.RequestStore.
func (s *Store) GrantsFor(ctx context.Context, secretID, subject string, since time.Time) ([]*escrow.Grant, error) {
	ctx, err := pointRead(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := s.req.grantsFor.QueryContext(ctx, subject, secretID, nanos(since))
	if err != nil {
		return nil, mapReadErr("grants for", err)
	}
	defer rows.Close()
	out := []*escrow.Grant{}
	for rows.Next() {
		var raw sql.RawBytes
		if err := rows.Scan(&raw); err != nil {
			return nil, mapReadErr("grants for", err)
		}
		g := &escrow.Grant{}
		if err := json.Unmarshal(raw, g); err != nil {
			return nil, corrupt("grant", err)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, mapReadErr("grants for", err)
	}
	return out, nil
}

// Cursors of request and grant lists: the kind letter, then the last
// row's created_at and id.
func listCursor(kind byte, created int64, id string) string {
	return encodeCursor(kind, strconv.FormatInt(created, 10)+" "+id)
}

// listAfter decodes a cursor, or returns the start of a first page.
func listAfter(kind byte, c string) (int64, string, error) {
	if c == "" {
		return math.MaxInt64, "", nil
	}
	v, ok := decodeCursor(kind, c)
	if !ok {
		return 0, "", escrow.Errorf(escrow.CodeInvalid, "malformed cursor")
	}
	ts, id, ok := strings.Cut(v, " ")
	created, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil || id == "" {
		return 0, "", escrow.Errorf(escrow.CodeInvalid, "malformed cursor")
	}
	return created, id, nil
}

// listPage runs a list statement and decodes up to limit rows with dec,
// returning the cursor of the next page ("" on the last).
func listPage(ctx context.Context, st *sql.Stmt, args []any, limit int, kind byte, dec func([]byte) error) (string, error) {
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var (
		n       int
		created int64
		id      string
		raw     sql.RawBytes
	)
	for rows.Next() {
		if n == limit {
			return listCursor(kind, created, id), nil
		}
		if err := rows.Scan(&raw, &created, &id); err != nil {
			return "", err
		}
		if err := dec(raw); err != nil {
			return "", err
		}
		n++
	}
	return "", rows.Err()
}

// ListRequests picks the requester, secret or open-status index (SQLite
// chooses among them by the filters given), or with no filter the index of
// all requests. A status-only query reads the partial index of
// non-terminal requests, so it accepts only a non-terminal status. See
// escrow.RequestStore.
func (s *Store) ListRequests(ctx context.Context, q escrow.RequestQuery) (escrow.RequestPage, error) {
	created, id, err := listAfter('r', q.Cursor)
	if err != nil {
		return escrow.RequestPage{}, err
	}
	bits := 0
	var args []any
	if q.Requester != "" {
		bits |= bySubject
		args = append(args, q.Requester)
	}
	if q.SecretID != "" {
		bits |= byTarget
		args = append(args, q.SecretID)
	}
	if q.Status != "" {
		bits |= byOpen
		args = append(args, string(q.Status))
	}
	if bits == byOpen && q.Status.Terminal() {
		return escrow.RequestPage{}, escrow.Errorf(escrow.CodeInvalid,
			"requests that are %s can be listed by requester or secret only", q.Status)
	}
	limit := pageLimit(q.Limit)
	args = append(args, created, id, limit+1)
	page := escrow.RequestPage{Requests: []*escrow.Request{}}
	page.Next, err = listPage(ctx, s.req.list[bits], args, limit, 'r', func(raw []byte) error {
		r := &escrow.Request{}
		if err := json.Unmarshal(raw, r); err != nil {
			return corrupt("request", err)
		}
		page.Requests = append(page.Requests, r)
		return nil
	})
	if err != nil {
		return escrow.RequestPage{}, mapReadErr("list requests", err)
	}
	return page, nil
}

// ListGrants picks the subject, secret or open-grants index. See
// escrow.RequestStore.
func (s *Store) ListGrants(ctx context.Context, q escrow.GrantQuery) (escrow.GrantPage, error) {
	created, id, err := listAfter('g', q.Cursor)
	if err != nil {
		return escrow.GrantPage{}, err
	}
	bits := 0
	var args []any
	if q.Subject != "" {
		bits |= bySubject
		args = append(args, q.Subject)
	}
	if q.SecretID != "" {
		bits |= byTarget
		args = append(args, q.SecretID)
	}
	if q.Open {
		bits |= byOpen
	}
	if bits == 0 {
		return escrow.GrantPage{}, escrow.Errorf(escrow.CodeInvalid, "list grants by subject, secret or open")
	}
	limit := pageLimit(q.Limit)
	args = append(args, created, id, limit+1)
	page := escrow.GrantPage{Grants: []*escrow.Grant{}}
	page.Next, err = listPage(ctx, s.req.grants[bits], args, limit, 'g', func(raw []byte) error {
		g := &escrow.Grant{}
		if err := json.Unmarshal(raw, g); err != nil {
			return corrupt("grant", err)
		}
		page.Grants = append(page.Grants, g)
		return nil
	})
	if err != nil {
		return escrow.GrantPage{}, mapReadErr("list grants", err)
	}
	return page, nil
}
