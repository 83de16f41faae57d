package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Sessions are kept whole as JSON (body), one row per id hash, beside
// expires (Unix nanoseconds, clamped), which the purge reads through its
// index.

// sessionGrace is how long past its Expires a session stays, so that a
// stale cookie still finds its session (which the caller sees expired)
// for a while. store/dynamo's TTL uses the same.
const sessionGrace = 24 * time.Hour

// sessionPurgeBatch bounds the expired sessions one create deletes, so that
// a backlog (the first login after a long idle) cannot hold the group
// commit; every login purges up to this many and adds one, so the purge
// keeps up.
const sessionPurgeBatch = 100

// purgeSessionsSQL deletes up to sessionPurgeBatch sessions that expired
// before its parameter, the oldest first, off the expires index.
var purgeSessionsSQL = fmt.Sprintf(`DELETE FROM sessions WHERE rowid IN
	(SELECT rowid FROM sessions WHERE expires < ? ORDER BY expires LIMIT %d)`, sessionPurgeBatch)

type sessionStmts struct {
	get *sql.Stmt
}

func (s *Store) prepareSessions(ctx context.Context) error {
	st, err := s.rdb.PrepareContext(ctx, "SELECT body FROM sessions WHERE id_hash = ?")
	if err != nil {
		return unavailable("prepare session query", err)
	}
	s.sess.get = st
	return nil
}

// CreateSession inserts sess with rec in one transaction, after deleting
// sessions that expired more than sessionGrace before rec.Time (the
// write's own clock; the store keeps none). A taken id hash is
// ErrConflict and leaves neither the session, nor rec, nor the purge. See
// escrow.SessionStore.
func (s *Store) CreateSession(ctx context.Context, sess *escrow.Session, rec *escrow.AuditRecord) error {
	switch {
	case sess == nil || rec == nil:
		return invalid("create session needs a session and an audit record")
	case sess.IDHash == "":
		return invalid("session has no id hash")
	case sess.Expires.IsZero():
		return invalid("session has no expiry")
	}
	body, err := json.Marshal(sess)
	if err != nil {
		return fmt.Errorf("encode session: %w", err)
	}
	a, err := encodeAudit(rec)
	if err != nil {
		return err
	}
	// A zero rec.Time clamps to the smallest time: nothing is purged.
	purgeBefore := nanos(rec.Time.Add(-sessionGrace))
	return s.w.do(ctx, true, func(w *writer) error {
		if _, err := w.st.purgeSessions.ExecContext(w.ctx, purgeBefore); err != nil {
			return unavailable("purge expired sessions", err)
		}
		if _, err := w.st.insSession.ExecContext(w.ctx, sess.IDHash, nanos(sess.Expires), body); err != nil {
			return mapWriteErr("insert session", err)
		}
		return w.insertAudit(a)
	})
}

// GetSession returns the session keyed by idHash, expired or not. See
// escrow.SessionStore.
func (s *Store) GetSession(ctx context.Context, idHash string) (*escrow.Session, error) {
	ctx, err := pointRead(ctx)
	if err != nil {
		return nil, err
	}
	var raw []byte
	if err := s.sess.get.QueryRowContext(ctx, idHash).Scan(&raw); err != nil {
		return nil, mapReadErr("get session", err)
	}
	sess := &escrow.Session{}
	if err := json.Unmarshal(raw, sess); err != nil {
		return nil, corrupt("session", err)
	}
	return sess, nil
}

// DeleteSession removes the session keyed by idHash with rec, in one
// transaction; if there is none, it is ErrNotFound and rec is not kept.
// See escrow.SessionStore.
func (s *Store) DeleteSession(ctx context.Context, idHash string, rec *escrow.AuditRecord) error {
	if rec == nil {
		return invalid("delete session needs an audit record")
	}
	a, err := encodeAudit(rec)
	if err != nil {
		return err
	}
	return s.w.do(ctx, true, func(w *writer) error {
		res, err := w.st.delSession.ExecContext(w.ctx, idHash)
		if err != nil {
			return mapWriteErr("delete session", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return unavailable("delete session", err)
		}
		if n == 0 {
			// The hash stays out of errors: it names a user's live session.
			return fmt.Errorf("delete session: %w", escrow.ErrNotFound)
		}
		return w.insertAudit(a)
	})
}
