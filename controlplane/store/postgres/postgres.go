// Package postgres implements controlplane.Store on PostgreSQL with
// jackc/pgx: the store for production and for more than one control-plane
// replica, which share background work through FOR UPDATE SKIP LOCKED leases.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/migrations"
)

// SQLSTATE codes the store translates into the domain's codes.
const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
	checkViolation      = "23514"
)

// Store is the PostgreSQL control-plane store. It is safe for concurrent use.
type Store struct {
	queries
	pool   *pgxpool.Pool
	scoped scopedPool
}

var _ controlplane.Store = (*Store)(nil)

// Open connects to the database at url and applies the pending control-plane
// migrations under a PostgreSQL advisory lock, so replicas starting together
// migrate once. Opening an up-to-date database changes nothing. It returns an
// error, never carrying the URL's password, when the server cannot be reached,
// when the URL's user is a superuser or has BYPASSRLS (row-level security
// would not hold it, ADR 0027), or when a migration fails; the caller must
// Close the store.
func Open(ctx context.Context, url string) (*Store, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("cannot open store: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("cannot reach store: %w", err)
	}
	if err := refuseBypass(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	scoped := scopedPool{pool: pool}
	return &Store{queries: queries{db: scoped}, pool: pool, scoped: scoped}, nil
}

// migrate runs goose over a database/sql view of the pool; closing that view
// leaves the pool open.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return fmt.Errorf("cannot lock store migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.ControlPlanePostgres(),
		goose.WithDisableGlobalRegistry(true), goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("cannot load store migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("cannot migrate store: %w", err)
	}
	return nil
}

// WithTx runs fn in one READ COMMITTED transaction scoped as ctx is
// (controlplane.WithOrgScope): it commits when fn returns nil and rolls back
// when fn returns an error or panics. It returns fn's error unchanged, or the
// error of beginning or committing.
func (s *Store) WithTx(ctx context.Context, fn func(q controlplane.Queries) error) error {
	tx, err := s.scoped.begin(ctx)
	if err != nil {
		return err
	}
	// After a commit, Rollback does nothing; after a panic in fn, it undoes
	// fn's writes before the panic goes on. A context cancelled by then
	// must not keep the rollback from reaching the server.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(&queries{db: tx}); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("cannot commit transaction: %w", err)
	}
	return nil
}

// Ping returns nil when the server answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("cannot reach store: %w", err)
	}
	return nil
}

// Close closes the pool, waiting for connections in use to be released.
// It always returns nil; calling it twice is harmless.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// dbtx is what queries need from scopedPool and pgx.Tx alike.
type dbtx interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// queries implements controlplane.Queries on a pool or a transaction.
type queries struct {
	db dbtx
}

// writeErr translates a failed write into the domain's codes: a unique
// violation is ECONFLICT with the conflict message, a missing referenced row
// is ENOTFOUND with the missing message, a failed CHECK is EINVALID. Any other
// error is wrapped with the action.
func writeErr(err error, action, conflict, missing string) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case uniqueViolation:
			return &controlplane.Error{Code: controlplane.ECONFLICT, Message: conflict, Err: err}
		case foreignKeyViolation:
			return &controlplane.Error{Code: controlplane.ENOTFOUND, Message: missing, Err: err}
		case checkViolation:
			return &controlplane.Error{Code: controlplane.EINVALID, Message: "invalid value", Err: err}
		}
	}
	return fmt.Errorf("cannot %s: %w", action, err)
}

// readErr translates a failed single-row read: no row is ENOTFOUND with the
// message; any other error is wrapped with the action.
func readErr(err error, action, missing string) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return controlplane.Errorf(controlplane.ENOTFOUND, "%s", missing)
	}
	return fmt.Errorf("cannot %s: %w", action, err)
}

// mustAffect returns ENOTFOUND with the message when tag changed no row.
func mustAffect(tag pgconn.CommandTag, missing string) error {
	if tag.RowsAffected() == 0 {
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
