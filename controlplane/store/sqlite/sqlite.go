// Package sqlite implements controlplane.Store on an embedded SQLite database
// (modernc.org/sqlite, no cgo): the control plane's default store when a
// single replica is enough.
//
// The database runs in WAL mode with foreign keys on and a busy timeout, and
// every transaction begins IMMEDIATE, so concurrent writers queue on the
// write lock instead of failing when a read turns into a write.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/pressly/goose/v3"
	sqlitedriver "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/migrations"
)

// busyTimeoutMillis is how long a writer waits for the write lock before
// giving up with SQLITE_BUSY.
const busyTimeoutMillis = 10000

// Store is the SQLite control-plane store. It is safe for concurrent use.
type Store struct {
	queries
	db    *sql.DB
	stmts *stmtCache
	// writer admits one transaction at a time: SQLite has one write lock,
	// and writers waiting in its busy handler sleep up to 100 ms between
	// tries, so a queue here hands the lock on at once (adr/0029).
	writer chan struct{}
}

var _ controlplane.Store = (*Store)(nil)

// Open opens the SQLite database at path, creating the file with mode 0600
// when it does not exist (its directory must), and applies the pending
// control-plane migrations. Opening an up-to-date database again changes
// nothing. It returns an error when the file cannot be created or opened or a
// migration fails; the caller must Close the store.
func Open(ctx context.Context, path string) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("cannot open store: %w", err)
	}
	// SQLite creates a missing file with the process umask's mode; create it
	// first so the control plane's secrets are never world-readable. The WAL
	// and shared-memory files inherit the database file's mode.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot open store: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("cannot open store: %w", err)
	}
	db, err := sql.Open("sqlite", dsn(abs))
	if err != nil {
		return nil, fmt.Errorf("cannot open store: %w", err)
	}
	if err := migrate(ctx, db); err != nil {
		_ = db.Close()
		return nil, err
	}
	stmts := newStmtCache(db)
	return &Store{queries: queries{db: cachedDB{stmts}}, db: db, stmts: stmts, writer: make(chan struct{}, 1)}, nil
}

// dsn builds a file: URI for path, so characters such as '?' and '#' in the
// path cannot be read as URI syntax.
func dsn(path string) string {
	q := url.Values{}
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "journal_mode(WAL)")
	// NORMAL: in WAL mode a commit survives the process's crash (kill -9)
	// and is made durable against power loss at the next checkpoint
	// (adr/0029).
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMillis))
	q.Set("_txlock", "immediate")
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: q.Encode()}
	return u.String()
}

func migrate(ctx context.Context, db *sql.DB) error {
	p, err := goose.NewProvider(goose.DialectSQLite3, db, migrations.ControlPlaneSQLite(),
		goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("cannot load store migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("cannot migrate store: %w", err)
	}
	return nil
}

// WithTx runs fn in one IMMEDIATE transaction: it commits when fn returns nil
// and rolls back when fn returns an error or panics. It returns fn's error
// unchanged, or the error of beginning or committing.
func (s *Store) WithTx(ctx context.Context, fn func(q controlplane.Queries) error) error {
	select {
	case s.writer <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("cannot begin transaction: %w", ctx.Err())
	}
	defer func() { <-s.writer }()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cannot begin transaction: %w", err)
	}
	// After a commit, Rollback does nothing; after a panic in fn, it undoes
	// fn's writes before the panic goes on.
	defer func() { _ = tx.Rollback() }()
	if err := fn(&queries{db: cachedTx{tx: tx, c: s.stmts}}); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cannot commit transaction: %w", err)
	}
	return nil
}

// Ping returns nil when the database answers a query.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("cannot reach store: %w", err)
	}
	return nil
}

// Close closes the database. Calling it twice is harmless.
func (s *Store) Close() error {
	if err := errors.Join(s.stmts.close(), s.db.Close()); err != nil {
		return fmt.Errorf("cannot close store: %w", err)
	}
	return nil
}

// dbtx is what queries need from *sql.DB and *sql.Tx alike.
type dbtx interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// queries implements controlplane.Queries on a connection pool or a transaction.
type queries struct {
	db dbtx
}

// writeErr translates a failed write into the domain's codes: a unique
// violation is ECONFLICT with the conflict message, a missing referenced row
// is ENOTFOUND with the missing message, a failed CHECK is EINVALID. Any other
// error is wrapped with the action.
func writeErr(err error, action, conflict, missing string) error {
	var se *sqlitedriver.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return &controlplane.Error{Code: controlplane.ECONFLICT, Message: conflict, Err: err}
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return &controlplane.Error{Code: controlplane.ENOTFOUND, Message: missing, Err: err}
		case sqlite3.SQLITE_CONSTRAINT_CHECK:
			return &controlplane.Error{Code: controlplane.EINVALID, Message: "invalid value", Err: err}
		}
	}
	return fmt.Errorf("cannot %s: %w", action, err)
}

// readErr translates a failed single-row read: no row is ENOTFOUND with the
// message; any other error is wrapped with the action.
func readErr(err error, action, missing string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return controlplane.Errorf(controlplane.ENOTFOUND, "%s", missing)
	}
	return fmt.Errorf("cannot %s: %w", action, err)
}

// mustAffect returns ENOTFOUND with the message when res changed no row.
func mustAffect(res sql.Result, action, missing string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("cannot %s: %w", action, err)
	}
	if n == 0 {
		return controlplane.Errorf(controlplane.ENOTFOUND, "%s", missing)
	}
	return nil
}
