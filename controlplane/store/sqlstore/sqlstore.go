// Package sqlstore implements controlplane.Store once, over database/sql,
// for both control-plane engines: SQLite (modernc.org/sqlite) and
// PostgreSQL (pgx through its database/sql driver). A Dialect holds what the
// engines really do differently; everything else, every table's statements
// and scans, is written once with PostgreSQL's $n placeholders, which
// SQLite reads as the same numbered parameters.
//
// The packages store/sqlite and store/postgres open the database, migrate
// it and hand it to New; they are the store's entry points.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/envplane/envplane/controlplane"
)

// Store is a control-plane store over a database/sql pool. It is safe for
// concurrent use.
type Store struct {
	queries
	db    *sql.DB
	stmts *stmtCache // nil unless the dialect caches statements
	// writer admits one transaction at a time where the engine has one
	// write lock (SQLite): writers waiting in SQLite's busy handler sleep
	// up to 100 ms between tries, so a queue here hands the lock on at
	// once (adr/0029). nil where transactions run concurrently.
	writer chan struct{}
	// scope sets row-level security's scope in every transaction where
	// the engine has it (PostgreSQL, adr/0027); nil elsewhere.
	scope *scoper
	// locks are Lock's, within this process (locks.go).
	locks keyLocks
}

var _ controlplane.Store = (*Store)(nil)

// New returns the store over db, whose schema is migrated, in dialect d. The
// store owns db: Close closes it.
func New(db *sql.DB, d Dialect, opts ...Option) *Store {
	s := &Store{db: db}
	var conn Conn = sqlConn{db}
	if d.cachesStatements() {
		s.stmts = newStmtCache(db)
		conn = cachedDB{s.stmts}
	}
	if d.oneWriter() {
		s.writer = make(chan struct{}, 1)
	}
	if d.rowSecurity() {
		s.scope = &scoper{}
		conn = scopedDB{db: db, sc: s.scope, types: &typeMap{m: pgtype.NewMap()}}
	}
	for _, opt := range opts {
		opt(s)
	}
	s.queries = queries{db: conn, d: d}
	return s
}

// WithTx runs fn in one transaction: it commits when fn returns nil and
// rolls back when fn returns an error or panics. It returns fn's error
// unchanged, or the error of beginning or committing. The transaction is
// the dialect's: READ COMMITTED on PostgreSQL, IMMEDIATE on SQLite (the
// connection string sets it), so a read never has to turn into a write.
// On SQLite it first waits its turn behind the process's other
// transactions, or returns the context's error; on PostgreSQL it sets the
// context's store scope first (scope.go).
func (s *Store) WithTx(ctx context.Context, fn func(q controlplane.Queries) error) error {
	if s.writer != nil {
		select {
		case s.writer <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("cannot begin transaction: %w", ctx.Err())
		}
		defer func() { <-s.writer }()
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cannot begin transaction: %w", err)
	}
	// After a commit, Rollback does nothing; after a panic in fn, it undoes
	// fn's writes before the panic goes on.
	defer func() { _ = tx.Rollback() }()
	if s.scope != nil {
		if err := s.scope.set(ctx, tx); err != nil {
			return err
		}
	}
	var conn Conn = sqlConn{tx}
	if s.stmts != nil {
		conn = cachedTx{tx: tx, c: s.stmts}
	}
	if err := fn(&queries{db: conn, d: s.d}); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cannot commit transaction: %w", err)
	}
	return nil
}

// Ping returns nil when the database answers a query.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("cannot reach store: %w", err)
	}
	return nil
}

// Close closes the cached statements and the pool. Calling it twice is
// harmless.
func (s *Store) Close() error {
	var err error
	if s.stmts != nil {
		err = s.stmts.close()
	}
	if err := errors.Join(err, s.db.Close()); err != nil {
		return fmt.Errorf("cannot close store: %w", err)
	}
	return nil
}

// Conn is the one seam every statement of the store passes through: the
// pool (Store's own queries) or a transaction that WithTx began, possibly
// behind the statement cache. *sql.DB and *sql.Tx are Conns once their
// rows are seen as Rows and Row (see sqlConn).
type Conn interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) Row
}

// Rows are a statement's rows: *sql.Rows, or rows that also end the
// transaction their statement ran in when they are closed.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Columns() ([]string, error)
	Err() error
	Close() error
}

// Row is a statement's one row: *sql.Row, or a row that also ends the
// transaction its statement ran in when it is scanned.
type Row interface {
	Scan(dest ...any) error
}

// sqlConn is a *sql.DB or *sql.Tx as a Conn.
type sqlConn struct {
	c interface {
		ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
		QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
		QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	}
}

func (c sqlConn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return c.c.ExecContext(ctx, query, args...)
}

func (c sqlConn) QueryContext(ctx context.Context, query string, args ...any) (Rows, error) {
	rows, err := c.c.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return rows, nil
}

func (c sqlConn) QueryRowContext(ctx context.Context, query string, args ...any) Row {
	return c.c.QueryRowContext(ctx, query, args...)
}

// queries implements controlplane.Queries on a Conn.
type queries struct {
	db Conn
	d  Dialect
}

// writeErr translates a failed write into the domain's codes: a unique
// violation is ECONFLICT with the conflict message, a missing referenced row
// is ENOTFOUND with the missing message, a failed CHECK is EINVALID. Any other
// error is wrapped with the action.
func (q *queries) writeErr(err error, action, conflict, missing string) error {
	switch q.d.classify(err) {
	case uniqueViolation:
		return &controlplane.Error{Code: controlplane.ECONFLICT, Message: conflict, Err: err}
	case foreignKeyViolation:
		return &controlplane.Error{Code: controlplane.ENOTFOUND, Message: missing, Err: err}
	case checkViolation:
		return &controlplane.Error{Code: controlplane.EINVALID, Message: "invalid value", Err: err}
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

// affected is how many rows res changed. Neither driver fails to count
// (both take the count from the statement's completion), so an error
// counts as no row.
func affected(res sql.Result) int64 {
	n, err := res.RowsAffected()
	if err != nil {
		return 0
	}
	return n
}

// mustAffect returns ENOTFOUND with the message when res changed no row.
func mustAffect(res sql.Result, missing string) error {
	if affected(res) == 0 {
		return controlplane.Errorf(controlplane.ENOTFOUND, "%s", missing)
	}
	return nil
}

// args collects query arguments and names their placeholders.
type args []any

// add appends v and returns its placeholder, $n.
func (a *args) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}
