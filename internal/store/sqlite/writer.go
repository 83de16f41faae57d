package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/escrow-pam/escrow/internal/escrow"
)

// maxBatch bounds one group commit, so that a burst cannot hold the write
// lock (and its callers) for long.
const maxBatch = 256

// writer owns the one write connection. A single goroutine runs every
// write; writes that arrive while it commits are grouped into the next
// transaction, so one fsync serves many callers (group commit).
type writer struct {
	ctx  context.Context // the writer's own: a caller's cancellation must not abort a shared transaction
	conn *sql.Conn
	reqs chan *op
	done chan struct{}

	mu     sync.RWMutex // guards closed against sends on a closed reqs
	closed bool

	st writeStmts

	commits atomic.Int64 // transactions committed, for benchmarks' ops/commit
}

type writeStmts struct {
	begin, commit, rollback            *sql.Stmt
	savepoint, release, rollbackTo     *sql.Stmt
	insSecret, updSecret, existsSecret *sql.Stmt
	insVersion                         *sql.Stmt
	insFolder, updFolder               *sql.Stmt
	delACL, insACL                     *sql.Stmt
	insAudit                           *sql.Stmt
	insRequest, updRequest, hasRequest *sql.Stmt
	insGrant, updGrant, hasGrant       *sql.Stmt
	insExec, updExec, hasExec          *sql.Stmt
	delExecTimers, insExecTimer        *sql.Stmt
	delExecTokens, insExecToken        *sql.Stmt
	insTicketSys, updTicketSys         *sql.Stmt
	putSetting, delSetting             *sql.Stmt
	insCheckout, updCheckout           *sql.Stmt
	insQLockKey, updQLockKey           *sql.Stmt
	insReportSched, updReportSched     *sql.Stmt
	delReportSched, hasReportSched     *sql.Stmt
	insSession, delSession             *sql.Stmt
	purgeSessions                      *sql.Stmt
}

// op is one write: a function run inside the writer's transaction.
type op struct {
	run func(w *writer) error
	// multi ops run several statements and get a savepoint, so that a
	// failure undoes only their own part of a batch. A single statement is
	// undone by SQLite itself.
	multi bool
	state atomic.Int32
	res   chan error
}

const (
	opQueued int32 = iota
	opClaimed
	opAbandoned
)

var opPool = sync.Pool{New: func() any { return &op{res: make(chan error, 1)} }}

func newWriter(ctx context.Context, conn *sql.Conn) (*writer, error) {
	w := &writer{
		ctx:  context.WithoutCancel(ctx),
		conn: conn,
		reqs: make(chan *op, 4*maxBatch),
		done: make(chan struct{}),
	}
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&w.st.begin, "BEGIN IMMEDIATE"},
		{&w.st.commit, "COMMIT"},
		{&w.st.rollback, "ROLLBACK"},
		{&w.st.savepoint, "SAVEPOINT op"},
		{&w.st.release, "RELEASE op"},
		{&w.st.rollbackTo, "ROLLBACK TO op"},
		{&w.st.insSecret, `INSERT INTO secrets (id, path, folder, name, type, description, tags, acl,
			current_version, revision, created_at, created_by, updated_at, updated_by, deleted_at, policy,
			rotation, pending_version, qlock)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},
		{&w.st.updSecret, `UPDATE secrets SET path = ?, folder = ?, name = ?, type = ?, description = ?,
			tags = ?, acl = ?, current_version = ?, revision = ?, created_at = ?, created_by = ?,
			updated_at = ?, updated_by = ?, deleted_at = ?, policy = ?, rotation = ?, pending_version = ?,
			qlock = ? WHERE id = ? AND revision = ?`},
		{&w.st.existsSecret, "SELECT 1 FROM secrets WHERE id = ?"},
		{&w.st.insVersion, `INSERT INTO versions (secret_id, version, created_at, created_by, key_id, wrapped_key, ciphertext)
			VALUES (?, ?, ?, ?, ?, ?, ?)`},
		{&w.st.insFolder, "INSERT INTO folders (path, acl, revision, updated_by, policy) VALUES (?, ?, ?, ?, ?)"},
		{&w.st.updFolder, "UPDATE folders SET acl = ?, revision = ?, updated_by = ?, policy = ? WHERE path = ? AND revision = ?"},
		{&w.st.delACL, "DELETE FROM acl WHERE target = ?"},
		{&w.st.insACL, "INSERT INTO acl (principal, target, permission) VALUES (?, ?, ?)"},
		{&w.st.insAudit, "INSERT INTO audit (id, actor, action, secret_id, ticket, record) VALUES (?, ?, ?, ?, ?, ?)"},
		{&w.st.insRequest, `INSERT INTO requests (id, requester, secret_id, status, open, created_at, revision, body)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`},
		{&w.st.updRequest, `UPDATE requests SET requester = ?, secret_id = ?, status = ?, open = ?, created_at = ?,
			revision = ?, body = ? WHERE id = ? AND revision = ?`},
		{&w.st.hasRequest, "SELECT 1 FROM requests WHERE id = ?"},
		{&w.st.insGrant, `INSERT INTO grants (id, subject, secret_id, status, open, end_at, created_at, revision, body)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`},
		{&w.st.updGrant, `UPDATE grants SET subject = ?, secret_id = ?, status = ?, open = ?, end_at = ?, created_at = ?,
			revision = ?, body = ? WHERE id = ? AND revision = ?`},
		{&w.st.hasGrant, "SELECT 1 FROM grants WHERE id = ?"},
		{&w.st.insExec, "INSERT INTO executions (id, status, version, body) VALUES (?, ?, ?, ?)"},
		{&w.st.updExec, "UPDATE executions SET status = ?, version = ?, body = ? WHERE id = ? AND version = ?"},
		{&w.st.hasExec, "SELECT 1 FROM executions WHERE id = ?"},
		{&w.st.delExecTimers, "DELETE FROM execution_timers WHERE execution_id = ?"},
		{&w.st.insExecTimer, "INSERT INTO execution_timers (due, execution_id, frame, kind, due_at) VALUES (?, ?, ?, ?, ?)"},
		{&w.st.delExecTokens, "DELETE FROM execution_tokens WHERE execution_id = ?"},
		{&w.st.insExecToken, "INSERT INTO execution_tokens (token, execution_id, frame, state) VALUES (?, ?, ?, ?)"},
		{&w.st.insTicketSys, "INSERT INTO ticket_systems (name, revision, body) VALUES (?, ?, ?)"},
		{&w.st.updTicketSys, "UPDATE ticket_systems SET revision = ?, body = ? WHERE name = ? AND revision = ?"},
		{&w.st.putSetting, "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = ?2"},
		{&w.st.delSetting, "DELETE FROM settings WHERE name = ?"},
		{&w.st.insCheckout, `INSERT INTO checkouts (secret_id, status, open, updated_at, revision, body)
			VALUES (?, ?, ?, ?, ?, ?)`},
		{&w.st.updCheckout, `UPDATE checkouts SET status = ?, open = ?, updated_at = ?, revision = ?, body = ?
			WHERE secret_id = ? AND revision = ?`},
		{&w.st.insQLockKey, "INSERT INTO qlock_keys (subject, revision, body) VALUES (?, ?, ?)"},
		{&w.st.updQLockKey, "UPDATE qlock_keys SET revision = ?, body = ? WHERE subject = ? AND revision = ?"},
		{&w.st.insReportSched, "INSERT INTO report_schedules (name, revision, body) VALUES (?, ?, ?)"},
		{&w.st.updReportSched, "UPDATE report_schedules SET revision = ?, body = ? WHERE name = ? AND revision = ?"},
		{&w.st.delReportSched, "DELETE FROM report_schedules WHERE name = ? AND revision = ?"},
		{&w.st.hasReportSched, "SELECT 1 FROM report_schedules WHERE name = ?"},
		{&w.st.insSession, "INSERT INTO sessions (id_hash, expires, body) VALUES (?, ?, ?)"},
		{&w.st.delSession, "DELETE FROM sessions WHERE id_hash = ?"},
		{&w.st.purgeSessions, purgeSessionsSQL},
	} {
		st, err := conn.PrepareContext(ctx, p.sql)
		if err != nil {
			return nil, unavailable("prepare write statement", err)
		}
		*p.dst = st
	}
	go w.loop()
	return w, nil
}

// do queues run and waits for its result. Once the writer has claimed the
// op, do waits for it even if ctx ends, so that a caller never reports a
// failure for a write that then commits.
func (w *writer) do(ctx context.Context, multi bool, run func(w *writer) error) error {
	o := opPool.Get().(*op)
	o.run, o.multi = run, multi
	o.state.Store(opQueued)

	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		opPool.Put(o)
		return escrow.Wrap(escrow.CodeUnavailable, errors.New("sqlite store is closed"), "store unavailable")
	}
	select {
	case w.reqs <- o:
	case <-ctx.Done():
		w.mu.RUnlock()
		opPool.Put(o)
		return ctx.Err()
	}
	w.mu.RUnlock()

	select {
	case err := <-o.res:
		o.run = nil
		opPool.Put(o)
		return err
	case <-ctx.Done():
		if o.state.CompareAndSwap(opQueued, opAbandoned) {
			return ctx.Err() // the writer will skip it; o stays out of the pool
		}
		err := <-o.res
		o.run = nil
		opPool.Put(o)
		return err
	}
}

// close stops accepting ops and waits until every queued op is done.
func (w *writer) close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.reqs)
	}
	w.mu.Unlock()
	<-w.done
}

func (w *writer) loop() {
	defer close(w.done)
	batch := make([]*op, 0, maxBatch)
	errs := make([]error, 0, maxBatch)
	for {
		o, ok := <-w.reqs
		if !ok {
			return
		}
		batch = append(batch[:0], o)
	drain:
		for len(batch) < maxBatch {
			select {
			case o, ok := <-w.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, o)
			default:
				break drain
			}
		}
		live := batch[:0]
		for _, o := range batch {
			if o.state.CompareAndSwap(opQueued, opClaimed) {
				live = append(live, o)
			}
		}
		errs = w.commitBatch(live, errs[:0])
		for i, o := range live {
			o.res <- errs[i]
		}
		clear(batch) // drop references for the GC
	}
}

// commitBatch runs ops in one transaction and returns each one's result. An
// op's expected failure (conflict, not found) undoes only that op. Any
// other failure, or a failed commit, rolls back the whole batch, which is
// then retried one op per transaction so that each caller gets its own
// result.
func (w *writer) commitBatch(ops []*op, errs []error) []error {
	switch len(ops) {
	case 0:
		return errs
	case 1:
		return append(errs, w.commitOne(ops[0]))
	}
	if err := w.exec(w.st.begin); err != nil {
		return w.oneByOne(ops, errs)
	}
	for _, o := range ops {
		err := w.runInBatch(o)
		if err != nil && !expected(err) {
			w.abort()
			return w.oneByOne(ops, errs[:0])
		}
		errs = append(errs, err)
	}
	if err := w.exec(w.st.commit); err != nil {
		w.abort()
		return w.oneByOne(ops, errs[:0])
	}
	w.commits.Add(1)
	return errs
}

func (w *writer) runInBatch(o *op) error {
	if !o.multi {
		return o.run(w)
	}
	if err := w.exec(w.st.savepoint); err != nil {
		return unavailable("savepoint", err)
	}
	err := o.run(w)
	if err != nil {
		if rerr := w.exec(w.st.rollbackTo); rerr != nil {
			return unavailable("rollback to savepoint", rerr)
		}
	}
	if rerr := w.exec(w.st.release); rerr != nil {
		return unavailable("release savepoint", rerr)
	}
	return err
}

func (w *writer) oneByOne(ops []*op, errs []error) []error {
	for _, o := range ops {
		errs = append(errs, w.commitOne(o))
	}
	return errs
}

// commitOne runs o in its own transaction.
func (w *writer) commitOne(o *op) error {
	if err := w.exec(w.st.begin); err != nil {
		w.abort() // a transaction left open by a failure would block every later BEGIN
		return unavailable("begin", err)
	}
	if err := o.run(w); err != nil {
		w.abort()
		return err
	}
	if err := w.exec(w.st.commit); err != nil {
		w.abort()
		return unavailable("commit", err)
	}
	w.commits.Add(1)
	return nil
}

// abort rolls back; an error only means SQLite already did.
func (w *writer) abort() { _ = w.exec(w.st.rollback) }

func (w *writer) exec(st *sql.Stmt, args ...any) error {
	_, err := st.ExecContext(w.ctx, args...)
	return err
}

// expected reports whether err is an op's own outcome rather than a failure
// of the store.
func expected(err error) bool {
	switch escrow.ErrorCode(err) {
	case escrow.CodeConflict, escrow.CodeNotFound, escrow.CodeInvalid:
		return true
	}
	return false
}
