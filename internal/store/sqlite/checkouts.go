package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Checkout slots are kept whole as JSON (body), one row per secret, beside
// the columns of the open-slots index and the revision check.

type checkoutStmts struct {
	get, listOpen *sql.Stmt
}

// listOpenSQL reads the partial index of open slots, oldest update first,
// after the cursor's (updated_at, secret_id).
const listOpenSQL = `SELECT body, updated_at, secret_id FROM checkouts
	WHERE open = 1 AND (updated_at, secret_id) > (?, ?) ORDER BY updated_at, secret_id LIMIT ?`

func (s *Store) prepareCheckouts(ctx context.Context) error {
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&s.co.get, "SELECT body FROM checkouts WHERE secret_id = ?"},
		{&s.co.listOpen, listOpenSQL},
	} {
		st, err := s.rdb.PrepareContext(ctx, p.sql)
		if err != nil {
			return unavailable("prepare checkout query", err)
		}
		*p.dst = st
	}
	return nil
}

// PutCheckout inserts c (prevRevision 0) or replaces it where the stored
// revision is prevRevision, with rec, in one transaction. The one writer
// runs racing puts one after another, so exactly one of those with the
// same prevRevision matches; the others are ErrConflict and leave no audit
// record. See escrow.CheckoutStore.
func (s *Store) PutCheckout(ctx context.Context, c *escrow.Checkout, prevRevision int64, rec *escrow.AuditRecord) error {
	switch {
	case c == nil || rec == nil:
		return invalid("put checkout needs a checkout and an audit record")
	case c.SecretID == "":
		return invalid("checkout has no secret id")
	case prevRevision < 0 || c.Revision != prevRevision+1:
		return invalid("revision must be the previous revision plus one")
	}
	body, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode checkout: %w", err)
	}
	open := 0
	if c.Open() {
		open = 1
	}
	a, err := encodeAudit(rec)
	if err != nil {
		return err
	}
	cols := []any{string(c.Status), open, nanos(c.UpdatedAt), c.Revision, body}
	return s.w.do(ctx, true, func(w *writer) error {
		if prevRevision == 0 {
			if _, err := w.st.insCheckout.ExecContext(w.ctx, append([]any{c.SecretID}, cols...)...); err != nil {
				return mapWriteErr("insert checkout", err)
			}
		} else {
			res, err := w.st.updCheckout.ExecContext(w.ctx, append(cols, c.SecretID, prevRevision)...)
			if err != nil {
				return mapWriteErr("update checkout", err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return unavailable("update checkout", err)
			} else if n == 0 {
				return escrow.Errorf(escrow.CodeConflict, "the checkout was changed by someone else; reload and retry")
			}
		}
		return w.insertAudit(a)
	})
}

// GetCheckout returns a secret's slot. See escrow.CheckoutStore.
func (s *Store) GetCheckout(ctx context.Context, secretID string) (*escrow.Checkout, error) {
	ctx, err := pointRead(ctx)
	if err != nil {
		return nil, err
	}
	var raw []byte
	if err := s.co.get.QueryRowContext(ctx, secretID).Scan(&raw); err != nil {
		return nil, mapReadErr("get checkout", err)
	}
	c := &escrow.Checkout{}
	if err := json.Unmarshal(raw, c); err != nil {
		return nil, corrupt("checkout", err)
	}
	return c, nil
}

// ListOpenCheckouts reads the checkouts_open partial index, oldest update
// first. See escrow.CheckoutStore.
func (s *Store) ListOpenCheckouts(ctx context.Context, cursor string, limit int) (escrow.CheckoutPage, error) {
	updated, id := int64(math.MinInt64), ""
	if cursor != "" {
		var err error
		if updated, id, err = listAfter('k', cursor); err != nil {
			return escrow.CheckoutPage{}, err
		}
	}
	limit = pageLimit(limit)
	page := escrow.CheckoutPage{Checkouts: []*escrow.Checkout{}}
	var err error
	page.Next, err = listPage(ctx, s.co.listOpen, []any{updated, id, limit + 1}, limit, 'k', func(raw []byte) error {
		c := &escrow.Checkout{}
		if err := json.Unmarshal(raw, c); err != nil {
			return corrupt("checkout", err)
		}
		page.Checkouts = append(page.Checkouts, c)
		return nil
	})
	if err != nil {
		return escrow.CheckoutPage{}, mapReadErr("list open checkouts", err)
	}
	return page, nil
}
