package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/escrow-pam/escrow/internal/escrow"
)

var _ escrow.TicketSystemStore = (*Store)(nil)

// settingTicketDefault is the settings row naming the default ticket
// system.
const settingTicketDefault = "ticket-default"

type ticketStmts struct {
	get, list, getSetting *sql.Stmt
}

func (s *Store) prepareTicketSystems(ctx context.Context) error {
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&s.tsys.get, "SELECT body FROM ticket_systems WHERE name = ?"},
		{&s.tsys.list, "SELECT body FROM ticket_systems ORDER BY name"},
		{&s.tsys.getSetting, "SELECT value FROM settings WHERE name = ?"},
	} {
		st, err := s.rdb.PrepareContext(ctx, p.sql)
		if err != nil {
			return unavailable("prepare ticket system query", err)
		}
		*p.dst = st
	}
	return nil
}

// PutTicketSystem inserts c (prevRevision 0) or replaces it where the
// stored revision is prevRevision, with rec, in one transaction. A missing
// system and a stale revision are both ErrConflict, as the port says. See
// escrow.TicketSystemStore.
func (s *Store) PutTicketSystem(ctx context.Context, c *escrow.TicketSystemConfig, prevRevision int64, rec *escrow.AuditRecord) error {
	switch {
	case c == nil || rec == nil:
		return invalid("put ticket system needs a configuration and an audit record")
	case c.Name == "":
		return invalid("ticket system has no name")
	case c.Revision != prevRevision+1:
		return invalid("revision must be the previous revision plus one")
	}
	body, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode ticket system: %w", err)
	}
	a, err := encodeAudit(rec)
	if err != nil {
		return err
	}
	return s.w.do(ctx, true, func(w *writer) error {
		if prevRevision == 0 {
			if _, err := w.st.insTicketSys.ExecContext(w.ctx, c.Name, c.Revision, body); err != nil {
				return mapWriteErr("insert ticket system", err)
			}
		} else {
			res, err := w.st.updTicketSys.ExecContext(w.ctx, c.Revision, body, c.Name, prevRevision)
			if err != nil {
				return mapWriteErr("update ticket system", err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return unavailable("update ticket system", err)
			} else if n == 0 {
				return escrow.Errorf(escrow.CodeConflict, "ticket system was changed by someone else, or does not exist")
			}
		}
		return w.insertAudit(a)
	})
}

// GetTicketSystem returns one configuration. See escrow.TicketSystemStore.
func (s *Store) GetTicketSystem(ctx context.Context, name string) (*escrow.TicketSystemConfig, error) {
	ctx, err := pointRead(ctx)
	if err != nil {
		return nil, err
	}
	var raw []byte
	if err := s.tsys.get.QueryRowContext(ctx, name).Scan(&raw); err != nil {
		return nil, mapReadErr("get ticket system", err)
	}
	c := &escrow.TicketSystemConfig{}
	if err := json.Unmarshal(raw, c); err != nil {
		return nil, corrupt("ticket system", err)
	}
	return c, nil
}

// ListTicketSystems returns every configuration, by name: a handful, so
// one unpaged read. See escrow.TicketSystemStore.
func (s *Store) ListTicketSystems(ctx context.Context) ([]*escrow.TicketSystemConfig, error) {
	rows, err := s.tsys.list.QueryContext(ctx)
	if err != nil {
		return nil, mapReadErr("list ticket systems", err)
	}
	defer rows.Close()
	out := []*escrow.TicketSystemConfig{}
	for rows.Next() {
		var raw sql.RawBytes
		if err := rows.Scan(&raw); err != nil {
			return nil, mapReadErr("list ticket systems", err)
		}
		c := &escrow.TicketSystemConfig{}
		if err := json.Unmarshal(raw, c); err != nil {
			return nil, corrupt("ticket system", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, mapReadErr("list ticket systems", err)
	}
	return out, nil
}

// SetDefaultTicketSystem writes (or, for "", deletes) the default's
// settings row with rec, in one transaction. It does not check that the
// system exists: that is the caller's rule to apply. See
// escrow.TicketSystemStore.
func (s *Store) SetDefaultTicketSystem(ctx context.Context, name string, rec *escrow.AuditRecord) error {
	a, err := encodeAudit(rec)
	if err != nil {
		return err
	}
	return s.w.do(ctx, true, func(w *writer) error {
		if name == "" {
			if _, err := w.st.delSetting.ExecContext(w.ctx, settingTicketDefault); err != nil {
				return mapWriteErr("clear default ticket system", err)
			}
		} else if _, err := w.st.putSetting.ExecContext(w.ctx, settingTicketDefault, name); err != nil {
			return mapWriteErr("set default ticket system", err)
		}
		return w.insertAudit(a)
	})
}

// DefaultTicketSystem returns the default's name, or "" if none. See
// escrow.TicketSystemStore.
func (s *Store) DefaultTicketSystem(ctx context.Context) (string, error) {
	ctx, err := pointRead(ctx)
	if err != nil {
		return "", err
	}
	var name string
	switch err := s.tsys.getSetting.QueryRowContext(ctx, settingTicketDefault).Scan(&name); {
	case err == sql.ErrNoRows:
		return "", nil
	case err != nil:
		return "", mapReadErr("get default ticket system", err)
	}
	return name, nil
}
