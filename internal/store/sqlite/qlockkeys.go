package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Users' QuantumLock keys are kept whole as JSON (body), one row per
// subject, beside the revision every write is conditional on.

// getQLockKeysSQL reads any number of subjects in one statement: the
// subjects come as one JSON array, so neither the statement nor SQLite's
// limit on bound variables depends on how many there are. IN makes each
// key come back once, however often its subject is named.
const getQLockKeysSQL = `SELECT body FROM qlock_keys WHERE subject IN (SELECT value FROM json_each(?))`

func (s *Store) prepareQLockKeys(ctx context.Context) error {
	st, err := s.rdb.PrepareContext(ctx, getQLockKeysSQL)
	if err != nil {
		return unavailable("prepare qlock key query", err)
	}
	s.qlockKeys = st
	return nil
}

// PutQLockKey inserts k (prevRevision 0) or replaces it where the stored
// revision is prevRevision, with rec, in one transaction. The one writer
// runs racing puts one after another, so exactly one of those with the
// same prevRevision matches; the others are ErrConflict and leave no audit
// record. See escrow.QLockKeyStore.
func (s *Store) PutQLockKey(ctx context.Context, k *escrow.QLockKey, prevRevision int64, rec *escrow.AuditRecord) error {
	switch {
	case k == nil || rec == nil:
		return invalid("put qlock key needs a key and an audit record")
	case k.Subject == "":
		return invalid("qlock key has no subject")
	case prevRevision < 0 || k.Revision != prevRevision+1:
		return invalid("revision must be the previous revision plus one")
	}
	body, err := json.Marshal(k)
	if err != nil {
		return fmt.Errorf("encode qlock key: %w", err)
	}
	a, err := encodeAudit(rec)
	if err != nil {
		return err
	}
	return s.w.do(ctx, true, func(w *writer) error {
		if prevRevision == 0 {
			if _, err := w.st.insQLockKey.ExecContext(w.ctx, k.Subject, k.Revision, body); err != nil {
				return mapWriteErr("insert qlock key", err)
			}
		} else {
			res, err := w.st.updQLockKey.ExecContext(w.ctx, k.Revision, body, k.Subject, prevRevision)
			if err != nil {
				return mapWriteErr("update qlock key", err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return unavailable("update qlock key", err)
			} else if n == 0 {
				return escrow.Errorf(escrow.CodeConflict, "the QuantumLock key was changed by someone else, or does not exist; reload and retry")
			}
		}
		return w.insertAudit(a)
	})
}

// GetQLockKeys reads every subject's key in one query. See
// escrow.QLockKeyStore.
func (s *Store) GetQLockKeys(ctx context.Context, subjects []string) ([]*escrow.QLockKey, error) {
	out := []*escrow.QLockKey{}
	if len(subjects) == 0 {
		return out, nil
	}
	list, err := json.Marshal(subjects)
	if err != nil {
		return nil, fmt.Errorf("encode subjects: %w", err)
	}
	rows, err := s.qlockKeys.QueryContext(ctx, string(list))
	if err != nil {
		return nil, mapReadErr("get qlock keys", err)
	}
	defer rows.Close()
	var raw sql.RawBytes
	for rows.Next() {
		if err := rows.Scan(&raw); err != nil {
			return nil, mapReadErr("get qlock keys", err)
		}
		k := &escrow.QLockKey{}
		if err := json.Unmarshal(raw, k); err != nil {
			return nil, corrupt("qlock key", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, mapReadErr("get qlock keys", err)
	}
	return out, nil
}
