// Package postgres implements controlplane.Store on PostgreSQL: the store
// for production and for more than one control-plane replica, which share
// background work through FOR UPDATE SKIP LOCKED leases. It is
// store/sqlstore in its PostgreSQL dialect, over a pgx pool through pgx's
// database/sql driver.
package postgres

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/store/sqlstore"
	"github.com/envplane/envplane/migrations"
)

// Store is the PostgreSQL control-plane store. It is safe for concurrent use.
type Store struct {
	*sqlstore.Store
	pool *pgxpool.Pool
}

var _ controlplane.Store = (*Store)(nil)

// Open connects to the database at url and applies the pending control-plane
// migrations under a PostgreSQL advisory lock, so replicas starting together
// migrate once. Opening an up-to-date database changes nothing. It returns an
// error, never carrying the URL's password, when the server cannot be reached,
// when the URL's user is a superuser or has BYPASSRLS (row-level security
// would not hold it, adr/0027), or when a migration fails; the caller must
// Close the store. Every statement and transaction runs in the store scope
// its context carries (controlplane.WithOrgScope, WithPlatformScope); one
// without a scope sees no organization's rows.
//
// The pool is pgx's (sized by the URL's pool_max_conns, like any pgxpool):
// database/sql borrows a connection for each statement or transaction and
// gives it back, and each connection keeps its prepared statements (pgx's
// statement cache), so a hot query is parsed and planned once per
// connection.
func Open(ctx context.Context, url string) (*Store, error) {
	return open(ctx, url)
}

// open is Open with options for the store (the conformance suite's
// platform scope for unscoped calls, export_test.go).
func open(ctx context.Context, url string, opts ...sqlstore.Option) (*Store, error) {
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
	db := stdlib.OpenDBFromPool(pool)
	if err := migrate(ctx, db); err != nil {
		_ = db.Close()
		pool.Close()
		return nil, err
	}
	return &Store{Store: sqlstore.New(db, sqlstore.Postgres(), opts...), pool: pool}, nil
}

// migrate runs goose under a session advisory lock.
func migrate(ctx context.Context, db *sql.DB) error {
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

// Close closes the database/sql view, then the pool, waiting for
// connections in use to be released. Calling it twice is harmless.
func (s *Store) Close() error {
	err := s.Store.Close()
	s.pool.Close()
	return err
}
