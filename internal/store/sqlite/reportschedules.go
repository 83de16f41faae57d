package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// Report schedules are kept whole as JSON (body), one row per name,
// beside the revision every write is conditional on.

type reportSchedStmts struct {
	get, list *sql.Stmt
}

func (s *Store) prepareReportSchedules(ctx context.Context) error {
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&s.rsched.get, "SELECT body FROM report_schedules WHERE name = ?"},
		// The primary key's order: no sort step.
		{&s.rsched.list, "SELECT body FROM report_schedules ORDER BY name"},
	} {
		st, err := s.rdb.PrepareContext(ctx, p.sql)
		if err != nil {
			return unavailable("prepare report schedule query", err)
		}
		*p.dst = st
	}
	return nil
}

// PutReportSchedule inserts rs (prevRevision 0) or replaces it where the
// stored revision is prevRevision, with rec, in one transaction. The one
// writer runs racing puts one after another, so exactly one of those with
// the same prevRevision matches; the others are ErrConflict and leave no
// audit record. A missing schedule and a stale revision are both
// ErrConflict, as the port says. See escrow.ReportScheduleStore.
func (s *Store) PutReportSchedule(ctx context.Context, rs *escrow.ReportSchedule, prevRevision int64, rec *escrow.AuditRecord) error {
	switch {
	case rs == nil || rec == nil:
		return invalid("put report schedule needs a schedule and an audit record")
	case rs.Name == "":
		return invalid("report schedule has no name")
	case prevRevision < 0 || rs.Revision != prevRevision+1:
		return invalid("revision must be the previous revision plus one")
	}
	body, err := json.Marshal(rs)
	if err != nil {
		return fmt.Errorf("encode report schedule: %w", err)
	}
	a, err := encodeAudit(rec)
	if err != nil {
		return err
	}
	return s.w.do(ctx, true, func(w *writer) error {
		if prevRevision == 0 {
			if _, err := w.st.insReportSched.ExecContext(w.ctx, rs.Name, rs.Revision, body); err != nil {
				return mapWriteErr("insert report schedule", err)
			}
		} else {
			res, err := w.st.updReportSched.ExecContext(w.ctx, rs.Revision, body, rs.Name, prevRevision)
			if err != nil {
				return mapWriteErr("update report schedule", err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return unavailable("update report schedule", err)
			} else if n == 0 {
				return escrow.Errorf(escrow.CodeConflict, "the report schedule was changed by someone else, or does not exist; reload and retry")
			}
		}
		return w.insertAudit(a)
	})
}

// GetReportSchedule returns one schedule. See escrow.ReportScheduleStore.
func (s *Store) GetReportSchedule(ctx context.Context, name string) (*escrow.ReportSchedule, error) {
	ctx, err := pointRead(ctx)
	if err != nil {
		return nil, err
	}
	var raw []byte
	if err := s.rsched.get.QueryRowContext(ctx, name).Scan(&raw); err != nil {
		return nil, mapReadErr("get report schedule", err)
	}
	rs := &escrow.ReportSchedule{}
	if err := json.Unmarshal(raw, rs); err != nil {
		return nil, corrupt("report schedule", err)
	}
	return rs, nil
}

// ListReportSchedules returns every schedule, by name: there are few, so
// one unpaged read of the primary key. See escrow.ReportScheduleStore.
func (s *Store) ListReportSchedules(ctx context.Context) ([]*escrow.ReportSchedule, error) {
	rows, err := s.rsched.list.QueryContext(ctx)
	if err != nil {
		return nil, mapReadErr("list report schedules", err)
	}
	defer rows.Close()
	out := []*escrow.ReportSchedule{}
	var raw sql.RawBytes
	for rows.Next() {
		if err := rows.Scan(&raw); err != nil {
			return nil, mapReadErr("list report schedules", err)
		}
		rs := &escrow.ReportSchedule{}
		if err := json.Unmarshal(raw, rs); err != nil {
			return nil, corrupt("report schedule", err)
		}
		out = append(out, rs)
	}
	if err := rows.Err(); err != nil {
		return nil, mapReadErr("list report schedules", err)
	}
	return out, nil
}

// DeleteReportSchedule removes name where its revision is prevRevision,
// with rec, in one transaction. When the delete matches no row, a read in
// the same transaction tells a missing schedule (ErrNotFound) from a
// stale revision (ErrConflict); either way rec is not kept. See
// escrow.ReportScheduleStore.
func (s *Store) DeleteReportSchedule(ctx context.Context, name string, prevRevision int64, rec *escrow.AuditRecord) error {
	switch {
	case rec == nil:
		return invalid("delete report schedule needs an audit record")
	case name == "":
		return invalid("name the report schedule to delete")
	case prevRevision < 1:
		return invalid("name the revision to delete")
	}
	a, err := encodeAudit(rec)
	if err != nil {
		return err
	}
	return s.w.do(ctx, true, func(w *writer) error {
		res, err := w.st.delReportSched.ExecContext(w.ctx, name, prevRevision)
		if err != nil {
			return mapWriteErr("delete report schedule", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return unavailable("delete report schedule", err)
		}
		if n == 0 {
			var one int
			switch err := w.st.hasReportSched.QueryRowContext(w.ctx, name).Scan(&one); {
			case err == sql.ErrNoRows:
				return fmt.Errorf("delete report schedule %s: %w", name, escrow.ErrNotFound)
			case err != nil:
				return unavailable("read report schedule", err)
			}
			return escrow.Errorf(escrow.CodeConflict, "the report schedule was changed by someone else; reload and retry")
		}
		return w.insertAudit(a)
	})
}
