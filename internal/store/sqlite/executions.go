package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/escrow-pam/escrow/internal/asl"
	"github.com/escrow-pam/escrow/internal/escrow"
)

var _ asl.Store = (*executions)(nil)

// executions is the asl.Store of the embedded ASL runner, on the same
// database, writer and read pool as the rest of the Store, so that
// `escrow server -dev` resumes waiting executions after a restart.
type executions struct{ s *Store }

// Executions returns the persistence port of the embedded ASL runner
// (asl.Store) on this database. It stays usable until the Store is closed.
func (s *Store) Executions() asl.Store { return &executions{s: s} }

type execStmts struct {
	get, running, dueTimers, lookupToken *sql.Stmt
}

// The read queries, kept here so that tests can check their plans.
const (
	getExecSQL = "SELECT body FROM executions WHERE id = ?"
	// The status literal (not a parameter) lets SQLite use the partial
	// index of running executions.
	runningExecSQL = "SELECT id FROM executions WHERE status = 'RUNNING' ORDER BY id"
	dueTimersSQL   = `SELECT execution_id, frame, kind, due_at FROM execution_timers
		WHERE due <= ? ORDER BY due, execution_id, frame, kind LIMIT ?`
	lookupTokenSQL = "SELECT execution_id, frame, state FROM execution_tokens WHERE token = ?"
)

func (s *Store) prepareExecutions(ctx context.Context) error {
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&s.exe.get, getExecSQL},
		{&s.exe.running, runningExecSQL},
		{&s.exe.dueTimers, dueTimersSQL},
		{&s.exe.lookupToken, lookupTokenSQL},
	} {
		st, err := s.rdb.PrepareContext(ctx, p.sql)
		if err != nil {
			return unavailable("prepare execution query", err)
		}
		*p.dst = st
	}
	return nil
}

// --- writes ---

// execRow is an execution encoded outside the writer, so that its
// transaction spends no time on JSON.
type execRow struct {
	id      string
	status  string
	version int64 // the version stored with body
	body    []byte
	timers  [][]any // due, execution_id, frame, kind, due_at
	tokens  [][]any // token, execution_id, frame, state
}

// encodeExec encodes rec as it will be stored at version. Its timers and
// tokens must belong to it: an entry naming another execution would be
// left behind, or removed, by the wrong execution's writes.
func encodeExec(rec *asl.Record, version int64) (execRow, error) {
	if rec == nil || rec.ID == "" {
		return execRow{}, invalid("an execution needs an id")
	}
	row := execRow{id: rec.ID, status: string(rec.Status), version: version}
	for _, t := range rec.Timers {
		if t.ExecutionID != rec.ID {
			return execRow{}, invalid("a timer of execution %s names another execution", rec.ID)
		}
		at, err := t.Due.MarshalText()
		if err != nil {
			return execRow{}, invalid("timer due time of execution %s: %v", rec.ID, err)
		}
		row.timers = append(row.timers, []any{nanos(t.Due), rec.ID, t.Frame, string(t.Kind), string(at)})
	}
	for _, t := range rec.Tokens {
		if t.ExecutionID != rec.ID || t.Token == "" {
			return execRow{}, invalid("a task token of execution %s is empty or names another execution", rec.ID)
		}
		row.tokens = append(row.tokens, []any{t.Token, rec.ID, t.Frame, t.State})
	}
	cp := *rec
	cp.Version = version
	b, err := json.Marshal(&cp)
	if err != nil {
		return execRow{}, fmt.Errorf("encode execution: %w", err)
	}
	row.body = b
	return row, nil
}

// indexExec inserts the execution's timer and token rows. A token taken by
// another execution is a conflict: a token must never silently move.
func (w *writer) indexExec(row execRow) error {
	for _, args := range row.timers {
		if _, err := w.st.insExecTimer.ExecContext(w.ctx, args...); err != nil {
			return mapWriteErr("insert execution timer", err)
		}
	}
	for _, args := range row.tokens {
		if _, err := w.st.insExecToken.ExecContext(w.ctx, args...); err != nil {
			return mapWriteErr("insert task token", err)
		}
	}
	return nil
}

// Create stores rec with its timers and tokens in one transaction. See
// asl.Store.
func (e *executions) Create(ctx context.Context, rec *asl.Record) error {
	if rec == nil {
		return invalid("create execution needs a record")
	}
	row, err := encodeExec(rec, rec.Version)
	if err != nil {
		return err
	}
	return e.s.w.do(ctx, true, func(w *writer) error {
		if _, err := w.st.insExec.ExecContext(w.ctx, row.id, row.status, row.version, row.body); err != nil {
			return mapWriteErr("insert execution "+row.id, err) // a taken id is ErrConflict
		}
		return w.indexExec(row)
	})
}

// Update replaces rec at its Version, with its timers and tokens, in one
// transaction, then increments rec.Version. See asl.Store.
func (e *executions) Update(ctx context.Context, rec *asl.Record) error {
	if rec == nil {
		return invalid("update execution needs a record")
	}
	prev := rec.Version
	row, err := encodeExec(rec, prev+1)
	if err != nil {
		return err
	}
	err = e.s.w.do(ctx, true, func(w *writer) error {
		if err := w.update(w.st.updExec, w.st.hasExec, "execution", row.id,
			[]any{row.status, row.version, row.body, row.id, prev}); err != nil {
			return err
		}
		if _, err := w.st.delExecTimers.ExecContext(w.ctx, row.id); err != nil {
			return unavailable("delete execution timers", err)
		}
		if _, err := w.st.delExecTokens.ExecContext(w.ctx, row.id); err != nil {
			return unavailable("delete task tokens", err)
		}
		return w.indexExec(row)
	})
	if err != nil {
		return err
	}
	rec.Version = prev + 1
	return nil
}

// --- reads ---

// Get returns a fresh copy of an execution. See asl.Store.
func (e *executions) Get(ctx context.Context, id string) (*asl.Record, error) {
	ctx, err := pointRead(ctx)
	if err != nil {
		return nil, err
	}
	var raw []byte
	switch err := e.s.exe.get.QueryRowContext(ctx, id).Scan(&raw); {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("get execution %s: %w", id, escrow.ErrNotFound)
	case err != nil:
		return nil, mapReadErr("get execution", err)
	}
	rec := &asl.Record{}
	if err := json.Unmarshal(raw, rec); err != nil {
		return nil, corrupt("execution", err)
	}
	return rec, nil
}

// Running reads the partial index of running executions, in id order. See
// asl.Store.
func (e *executions) Running(ctx context.Context) ([]string, error) {
	rows, err := e.s.exe.running.QueryContext(ctx)
	if err != nil {
		return nil, mapReadErr("list running executions", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, mapReadErr("list running executions", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, mapReadErr("list running executions", err)
	}
	return ids, nil
}

// DueTimers reads the timers' due-time index, earliest first (then by
// execution, frame and kind); a limit of 0 or less means no limit. See
// asl.Store.
func (e *executions) DueTimers(ctx context.Context, now time.Time, limit int) ([]asl.Timer, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rows, err := e.s.exe.dueTimers.QueryContext(ctx, nanos(now), limit)
	if err != nil {
		return nil, mapReadErr("due timers", err)
	}
	defer rows.Close()
	var due []asl.Timer
	for rows.Next() {
		var (
			t    asl.Timer
			kind string
			at   string
		)
		if err := rows.Scan(&t.ExecutionID, &t.Frame, &kind, &at); err != nil {
			return nil, mapReadErr("due timers", err)
		}
		if err := t.Due.UnmarshalText([]byte(at)); err != nil {
			return nil, corrupt("timer", err)
		}
		// The key is clamped to the years int64 nanoseconds hold; beyond
		// them only the exact time tells whether the timer is due.
		if t.Due.After(now) {
			continue
		}
		t.Kind = asl.TimerKind(kind)
		due = append(due, t)
	}
	if err := rows.Err(); err != nil {
		return nil, mapReadErr("due timers", err)
	}
	return due, nil
}

// LookupToken reads the token's primary key. The token never appears in
// an error: it is a capability. See asl.Store.
func (e *executions) LookupToken(ctx context.Context, token string) (asl.Token, error) {
	ctx, err := pointRead(ctx)
	if err != nil {
		return asl.Token{}, err
	}
	t := asl.Token{Token: token}
	switch err := e.s.exe.lookupToken.QueryRowContext(ctx, token).Scan(&t.ExecutionID, &t.Frame, &t.State); {
	case errors.Is(err, sql.ErrNoRows):
		return asl.Token{}, fmt.Errorf("lookup task token: %w", escrow.ErrNotFound)
	case err != nil:
		return asl.Token{}, mapReadErr("lookup task token", err)
	}
	return t, nil
}
