package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// crockford is escrow.NewID's alphabet, in byte order.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// auditRow is an audit record encoded for the audit table.
type auditRow struct {
	id, actor, action, secretID string
	ticket                      any // NULL when the record has none: the ticket index is partial
	record                      []byte
}

// encodeAudit encodes rec outside the writer, so that the writer's
// transaction spends no time on JSON.
func encodeAudit(rec *escrow.AuditRecord) (auditRow, error) {
	if rec == nil {
		return auditRow{}, invalid("audit record is missing")
	}
	if !validID(rec.ID) {
		return auditRow{}, invalid("audit record id %q is not an escrow ID", rec.ID)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return auditRow{}, fmt.Errorf("encode audit record: %w", err)
	}
	a := auditRow{id: rec.ID, actor: rec.Actor.Subject, action: rec.Action, secretID: rec.SecretID, record: b}
	if rec.Ticket != "" {
		a.ticket = rec.Ticket
	}
	return a, nil
}

// validID reports whether id has escrow.NewID's shape, which the time
// ranges and cursors below rely on.
func validID(id string) bool {
	if len(id) != 26 || id[0] > '7' { // 128 bits leave the first character 3 bits
		return false
	}
	for i := 0; i < len(id); i++ {
		if strings.IndexByte(crockford, id[i]) < 0 {
			return false
		}
	}
	return true
}

func (w *writer) insertAudit(a auditRow) error {
	if _, err := w.st.insAudit.ExecContext(w.ctx, a.id, a.actor, a.action, a.secretID, a.ticket, a.record); err != nil {
		return mapWriteErr("insert audit record", err)
	}
	return nil
}

// Append durably writes rec. Concurrent appends share one commit.
func (s *Store) Append(ctx context.Context, rec *escrow.AuditRecord) error {
	a, err := encodeAudit(rec)
	if err != nil {
		return err
	}
	return s.w.do(ctx, false, func(w *writer) error { return w.insertAudit(a) })
}

// Filter bits, indexing Store.audit.
const (
	byActor = 1 << iota
	bySecret
	byAction
	byTicket
)

func (s *Store) prepareAudit(ctx context.Context) error {
	for bits := range s.audit {
		st, err := s.rdb.PrepareContext(ctx, auditSQL(bits))
		if err != nil {
			return unavailable("prepare audit query", err)
		}
		s.audit[bits] = st
	}
	return nil
}

// auditSQL is the query of one combination of filter bits. Its arguments
// are the filters' values in bit order, then the id range and the limit.
func auditSQL(bits int) string {
	var where []string
	if bits&byActor != 0 {
		where = append(where, "actor = ?")
	}
	if bits&bySecret != 0 {
		where = append(where, "secret_id = ?")
	}
	if bits&byAction != 0 {
		where = append(where, "action = ?")
	}
	from := "audit"
	if bits&byTicket != 0 {
		// A ticket number is the most selective filter there is: walk its
		// index (preparing fails if SQLite cannot) and filter the rest.
		where = append(where, "ticket = ?")
		from = "audit INDEXED BY audit_ticket"
	}
	// IDs start with their millisecond, so an id range is a time range and
	// every query walks an (x, id) index backwards.
	where = append(where, "id >= ?", "id < ?")
	return "SELECT record FROM " + from + " WHERE " + strings.Join(where, " AND ") + " ORDER BY id DESC LIMIT ?"
}

// timePrefix returns the ID prefix (10 characters: 48 bits of
// milliseconds) of the first millisecond at or after t. Every record at or
// after t has an ID >= it, and every record before t an ID < it.
func timePrefix(t time.Time) string {
	ms := t.UnixMilli()
	if t.After(time.UnixMilli(ms)) {
		ms++
	}
	ms = min(max(ms, 0), 1<<48-1)
	var b [10]byte
	for i := 9; i >= 0; i-- {
		b[i] = crockford[ms&31]
		ms >>= 5
	}
	return string(b[:])
}

// QueryAudit returns a page of records matching q, newest first. Time
// bounds apply to the time in the record's ID, which escrow.NewAuditRecord
// makes equal to its Time.
func (s *Store) QueryAudit(ctx context.Context, q escrow.AuditQuery) (escrow.AuditPage, error) {
	lo, hi := "", "\x7f" // below and above every ID
	if !q.From.IsZero() {
		lo = timePrefix(q.From)
	}
	if !q.To.IsZero() {
		hi = timePrefix(q.To)
	}
	if q.Cursor != "" {
		last, ok := decodeCursor('a', q.Cursor)
		if !ok || !validID(last) {
			return escrow.AuditPage{}, escrow.Errorf(escrow.CodeInvalid, "malformed cursor")
		}
		hi = min(hi, last)
	}
	limit := pageLimit(q.Limit)

	bits := 0
	args := make([]any, 0, 7)
	if q.Actor != "" {
		bits |= byActor
		args = append(args, q.Actor)
	}
	if q.SecretID != "" {
		bits |= bySecret
		args = append(args, q.SecretID)
	}
	if q.Action != "" {
		bits |= byAction
		args = append(args, q.Action)
	}
	if q.Ticket != "" {
		bits |= byTicket
		args = append(args, q.Ticket)
	}
	args = append(args, lo, hi, limit+1)

	rows, err := s.audit[bits].QueryContext(ctx, args...)
	if err != nil {
		return escrow.AuditPage{}, mapReadErr("query audit", err)
	}
	defer rows.Close()
	page := escrow.AuditPage{Records: make([]*escrow.AuditRecord, 0, min(limit, 64))}
	var raw sql.RawBytes
	for rows.Next() {
		if len(page.Records) == limit {
			page.Next = encodeCursor('a', page.Records[limit-1].ID)
			break
		}
		if err := rows.Scan(&raw); err != nil {
			return escrow.AuditPage{}, mapReadErr("query audit", err)
		}
		rec, err := decodeAudit(raw)
		if err != nil {
			return escrow.AuditPage{}, escrow.Wrap(escrow.CodeInternal, fmt.Errorf("decode audit record: %w", err), "corrupt audit record")
		}
		page.Records = append(page.Records, rec)
	}
	if err := rows.Err(); err != nil {
		return escrow.AuditPage{}, mapReadErr("query audit", err)
	}
	return page, nil
}
