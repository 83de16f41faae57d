// Package sqlite is the embedded adapter of the escrow.Store and
// escrow.AuditLog ports, on SQLite through modernc.org/sqlite (pure Go). It
// backs `escrow server -dev` and passes store/storetest like store/dynamo.
//
// One writer connection, driven by one goroutine, commits every write
// together with its audit record, and groups concurrent writes into one
// durable (synchronous=FULL, WAL) transaction; a pool of query-only
// connections serves reads, which WAL lets run beside the writer.
//
// It must never let a change land without its audit record, never update or
// delete an audit row (triggers refuse it, whoever asks), and never put a
// secret value in an error.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/escrow-pam/escrow/internal/escrow"
)

var (
	_ escrow.Store               = (*Store)(nil)
	_ escrow.AuditLog            = (*Store)(nil)
	_ escrow.CheckoutStore       = (*Store)(nil)
	_ escrow.QLockKeyStore       = (*Store)(nil)
	_ escrow.ReportScheduleStore = (*Store)(nil)
	_ escrow.SessionStore        = (*Store)(nil)
)

// Store is the SQLite store. It is safe for concurrent use.
type Store struct {
	w   *writer
	wdb *sql.DB // one connection, owned by w
	rdb *sql.DB // query-only readers

	getSecret, getSecretByPath, getVersion, listVersions *sql.Stmt
	listFolder, listRange                                *sql.Stmt
	getFolders, listGrants                               multiQuery
	audit                                                [16]*sql.Stmt // by audit filter bits
	req                                                  requestStmts
	exe                                                  execStmts
	tsys                                                 ticketStmts
	co                                                   checkoutStmts
	qlockKeys                                            *sql.Stmt
	rsched                                               reportSchedStmts
	sess                                                 sessionStmts

	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the database at path with mode 0600,
// brings its schema up to date and starts the writer.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" || path == ":memory:" {
		return nil, escrow.Errorf(escrow.CodeInvalid, "sqlite store needs a file path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("create database directory: %w", err)
	}
	// Create the file ourselves so it is never readable by others; SQLite
	// gives the -wal and -shm files the database file's mode.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create database file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("create database file: %w", err)
	}
	if err := os.Chmod(abs, 0o600); err != nil {
		return nil, fmt.Errorf("restrict database file mode: %w", err)
	}

	s := &Store{}
	ok := false
	defer func() {
		if !ok {
			s.closeDBs()
		}
	}()

	// recursive_triggers makes INSERT OR REPLACE fire the audit table's
	// delete trigger on our own connections too (the insert trigger covers
	// other connections).
	s.wdb, err = sql.Open("sqlite", dsn(abs,
		"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)", "recursive_triggers(1)"))
	if err != nil {
		return nil, fmt.Errorf("open writer: %w", err)
	}
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	s.wdb.SetConnMaxLifetime(0)
	s.wdb.SetConnMaxIdleTime(0)
	conn, err := s.wdb.Conn(ctx)
	if err != nil {
		return nil, unavailable("open writer", err)
	}
	if err := migrate(ctx, conn); err != nil {
		_ = conn.Close()
		return nil, err
	}
	s.w, err = newWriter(ctx, conn)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}

	s.rdb, err = sql.Open("sqlite", dsn(abs, "busy_timeout(10000)", "query_only(1)"))
	if err != nil {
		return nil, fmt.Errorf("open readers: %w", err)
	}
	n := max(4, 2*runtime.GOMAXPROCS(0))
	s.rdb.SetMaxOpenConns(n)
	s.rdb.SetMaxIdleConns(n)
	s.rdb.SetConnMaxLifetime(0)
	s.rdb.SetConnMaxIdleTime(0)
	if err := s.prepareReads(ctx); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// Close stops accepting writes, commits every write already queued, and
// closes the database. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.w != nil {
			s.w.close()
		}
		s.closeErr = s.closeDBs()
	})
	return s.closeErr
}

func (s *Store) closeDBs() error {
	var errs []error
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	if s.w != nil {
		errs = append(errs, s.w.conn.Close())
	}
	if s.wdb != nil {
		errs = append(errs, s.wdb.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close sqlite store: %w", err)
	}
	return nil
}

// dsn builds a file: URI with the given PRAGMAs, escaping the path so that
// '?', '#' and '%' in it stay part of the name.
func dsn(path string, pragmas ...string) string {
	q := url.Values{}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: q.Encode()}
	return u.String()
}

// migrations bring the schema from user_version i to i+1. Append only;
// never edit one that has shipped.
var migrations = []string{`
CREATE TABLE secrets (
	id              TEXT PRIMARY KEY,
	path            TEXT NOT NULL UNIQUE, -- folder + "/" + name: unique, and the listing order
	folder          TEXT NOT NULL,
	name            TEXT NOT NULL,
	type            TEXT NOT NULL,
	description     TEXT NOT NULL,
	tags            TEXT,                 -- JSON object, NULL if none
	acl             TEXT,                 -- JSON array, NULL if none
	current_version INTEGER NOT NULL,
	revision        INTEGER NOT NULL,
	created_at      INTEGER NOT NULL,     -- Unix nanoseconds
	created_by      TEXT NOT NULL,
	updated_at      INTEGER NOT NULL,
	updated_by      TEXT NOT NULL,
	deleted_at      INTEGER               -- NULL unless soft-deleted
);
CREATE INDEX secrets_folder ON secrets(folder, path);

CREATE TABLE versions (
	secret_id   TEXT NOT NULL,
	version     INTEGER NOT NULL,
	created_at  INTEGER NOT NULL,
	created_by  TEXT NOT NULL,
	key_id      TEXT NOT NULL,
	wrapped_key BLOB NOT NULL,
	ciphertext  BLOB NOT NULL,
	PRIMARY KEY (secret_id, version)
);

CREATE TABLE folders (
	path       TEXT PRIMARY KEY,
	acl        TEXT,
	revision   INTEGER NOT NULL,
	updated_by TEXT NOT NULL
) WITHOUT ROWID;

-- The ACL index: one row per entry of a secret's or folder's ACL.
CREATE TABLE acl (
	principal  TEXT NOT NULL,
	target     TEXT NOT NULL, -- "secret:<id>" or "folder:<path>"
	permission TEXT NOT NULL,
	PRIMARY KEY (principal, target)
) WITHOUT ROWID;
CREATE INDEX acl_target ON acl(target);

-- The audit log: insert-only. The record is kept whole as JSON; the
-- columns beside it exist for the indexes. IDs are time-ordered, so id
-- ranges are time ranges.
CREATE TABLE audit (
	id        TEXT NOT NULL UNIQUE,
	actor     TEXT NOT NULL,
	action    TEXT NOT NULL,
	secret_id TEXT NOT NULL,
	record    BLOB NOT NULL
);
CREATE INDEX audit_actor ON audit(actor, id);
CREATE INDEX audit_secret ON audit(secret_id, id);
CREATE INDEX audit_action ON audit(action, id);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
-- INSERT OR REPLACE deletes without firing delete triggers unless
-- recursive_triggers is on, which other connections may not set.
CREATE TRIGGER audit_no_replace BEFORE INSERT ON audit
WHEN EXISTS (SELECT 1 FROM audit WHERE id = NEW.id)
BEGIN SELECT RAISE(ABORT, 'audit record exists'); END;
`, `
-- 2: policies (JSON) on secrets and folders.
ALTER TABLE secrets ADD COLUMN policy TEXT;
ALTER TABLE folders ADD COLUMN policy TEXT;
`, `
-- 3: access requests and grants. Each is kept whole as JSON (body); the
-- columns beside it exist for the indexes and the revision check. open is
-- 1 while the status is not terminal: the partial indexes on it keep the
-- "pending" and "open grants" lists small however many have ended.
CREATE TABLE requests (
	id         TEXT PRIMARY KEY,
	requester  TEXT NOT NULL,
	secret_id  TEXT NOT NULL,
	status     TEXT NOT NULL,
	open       INTEGER NOT NULL,
	created_at INTEGER NOT NULL, -- Unix nanoseconds
	revision   INTEGER NOT NULL,
	body       BLOB NOT NULL
);
CREATE INDEX requests_requester ON requests(requester, created_at, id);
CREATE INDEX requests_secret ON requests(secret_id, created_at, id);
CREATE INDEX requests_open ON requests(status, created_at, id) WHERE open = 1;

CREATE TABLE grants (
	id         TEXT PRIMARY KEY,
	subject    TEXT NOT NULL,
	secret_id  TEXT NOT NULL,
	status     TEXT NOT NULL,
	open       INTEGER NOT NULL,
	end_at     INTEGER NOT NULL, -- Unix nanoseconds
	created_at INTEGER NOT NULL,
	revision   INTEGER NOT NULL,
	body       BLOB NOT NULL
);
CREATE INDEX grants_holder ON grants(subject, secret_id, end_at);
CREATE INDEX grants_subject ON grants(subject, created_at, id);
CREATE INDEX grants_secret ON grants(secret_id, created_at, id);
CREATE INDEX grants_open ON grants(created_at, id) WHERE open = 1;
`, `
-- 4: every request, newest first (the admin's and auditor's view).
CREATE INDEX requests_created ON requests(created_at, id);
`, `
-- 5: executions of the embedded ASL runner (internal/asl). Each is kept
-- whole as JSON (body); its timers and task tokens are index rows that
-- every write replaces in the same transaction. The partial index lists
-- the running ones however many have ended.
CREATE TABLE executions (
	id      TEXT PRIMARY KEY,
	status  TEXT NOT NULL,
	version INTEGER NOT NULL,
	body    BLOB NOT NULL
);
CREATE INDEX executions_running ON executions(id) WHERE status = 'RUNNING';

CREATE TABLE execution_timers (
	due          INTEGER NOT NULL, -- Unix nanoseconds, clamped: the sort key
	execution_id TEXT NOT NULL,
	frame        INTEGER NOT NULL,
	kind         TEXT NOT NULL,
	due_at       TEXT NOT NULL     -- the exact due time (RFC 3339), returned as is
);
CREATE INDEX execution_timers_due ON execution_timers(due, execution_id, frame, kind, due_at);
CREATE INDEX execution_timers_exec ON execution_timers(execution_id);

CREATE TABLE execution_tokens (
	token        TEXT PRIMARY KEY,
	execution_id TEXT NOT NULL,
	frame        INTEGER NOT NULL,
	state        TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX execution_tokens_exec ON execution_tokens(execution_id);
`, `
-- 6: ticket system configurations, each kept whole as JSON (body), and
-- settings: named singletons such as the default ticket system.
CREATE TABLE ticket_systems (
	name     TEXT PRIMARY KEY,
	revision INTEGER NOT NULL,
	body     BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE settings (
	name  TEXT PRIMARY KEY,
	value TEXT NOT NULL
) WITHOUT ROWID;
`, `
-- 7: audit records by ticket number. Rows written before this migration
-- keep NULL (their ticket stays in the record). The index is partial: most
-- records carry no ticket, and "ticket = ?" implies NOT NULL.
ALTER TABLE audit ADD COLUMN ticket TEXT;
CREATE INDEX audit_ticket ON audit(ticket, id) WHERE ticket IS NOT NULL;
`, `
-- 8: checkout and rotation. A secret's rotation settings (JSON, NULL if
-- none) and its pending version (a rotation's new password, stored before
-- the target changes; 0 if none). Each secret's checkout slot is kept
-- whole as JSON (body); the columns beside it exist for the index and the
-- revision check. open is 1 while the status is not released: the partial
-- index lists the open slots, oldest update first, however many have been
-- released.
ALTER TABLE secrets ADD COLUMN rotation TEXT;
ALTER TABLE secrets ADD COLUMN pending_version INTEGER NOT NULL DEFAULT 0;

CREATE TABLE checkouts (
	secret_id  TEXT PRIMARY KEY,
	status     TEXT NOT NULL,
	open       INTEGER NOT NULL,
	updated_at INTEGER NOT NULL, -- Unix nanoseconds, clamped: the sort key
	revision   INTEGER NOT NULL,
	body       BLOB NOT NULL
);
CREATE INDEX checkouts_open ON checkouts(updated_at, secret_id) WHERE open = 1;
`, `
-- 9: QuantumLock. A secret's lock mark (JSON, NULL if not locked), and
-- users' QuantumLock keys, each kept whole as JSON (body) beside the
-- revision every write is conditional on. A rowid table, not WITHOUT
-- ROWID: a key row is a few KB (a public key and a sealed private key),
-- far above the size at which WITHOUT ROWID pays.
ALTER TABLE secrets ADD COLUMN qlock TEXT;

CREATE TABLE qlock_keys (
	subject  TEXT PRIMARY KEY,
	revision INTEGER NOT NULL,
	body     BLOB NOT NULL
);
`, `
-- 10: report schedules, each kept whole as JSON (body) beside the
-- revision every write is conditional on. WITHOUT ROWID: rows are small,
-- and the list reads them in name order straight off the primary key.
CREATE TABLE report_schedules (
	name     TEXT PRIMARY KEY,
	revision INTEGER NOT NULL,
	body     BLOB NOT NULL
) WITHOUT ROWID;
`, `
-- 11: web console sessions, each kept whole as JSON (body), keyed by the
-- hash of the cookie's ID. expires (Unix nanoseconds, clamped) is indexed
-- for the purge each new session runs. A rowid table: the index then
-- carries an 8-byte rowid rather than the 64-character hash.
CREATE TABLE sessions (
	id_hash TEXT PRIMARY KEY,
	expires INTEGER NOT NULL,
	body    BLOB NOT NULL
);
CREATE INDEX sessions_expires ON sessions(expires);
`}

// migrate applies the migrations the database lacks, each in its own
// transaction with its user_version bump.
func migrate(ctx context.Context, conn *sql.Conn) error {
	var v int
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return unavailable("read schema version", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this program's %d", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		err := func() error {
			if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
				return err
			}
			if _, err := conn.ExecContext(ctx, migrations[i]); err != nil {
				_, _ = conn.ExecContext(ctx, "ROLLBACK")
				return err
			}
			if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
				_, _ = conn.ExecContext(ctx, "ROLLBACK")
				return err
			}
			_, err := conn.ExecContext(ctx, "COMMIT")
			return err
		}()
		if err != nil {
			return unavailable(fmt.Sprintf("migrate schema to version %d", i+1), err)
		}
	}
	return nil
}

// mapWriteErr translates a failed write: constraint violations (a taken
// id or path, an existing audit record) are conflicts; anything else means
// the store cannot be written.
func mapWriteErr(what string, err error) error {
	var se *msqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_TRIGGER:
			return escrow.Wrap(escrow.CodeConflict, fmt.Errorf("%s: %w", what, err), "already exists")
		}
	}
	return unavailable(what, err)
}

// unavailable wraps a storage failure; callers fail closed on it.
func unavailable(what string, err error) error {
	return escrow.Wrap(escrow.CodeUnavailable, fmt.Errorf("%s: %w", what, err), "store unavailable")
}

// mapReadErr translates a failed read.
func mapReadErr(what string, err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return escrow.ErrNotFound
	}
	var e *escrow.Error
	if errors.As(err, &e) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return unavailable(what, err)
}
