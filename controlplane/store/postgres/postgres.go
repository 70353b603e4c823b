// Package postgres implements controlplane.Store on PostgreSQL: the store
// for production and for more than one control-plane replica, which share
// background work through FOR UPDATE SKIP LOCKED leases. It is
// store/sqlstore in its PostgreSQL dialect, over a pgx pool through pgx's
// database/sql driver.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
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
	// locks holds Lock's connections (lock.go).
	locks *pgxpool.Pool
}

var _ controlplane.Store = (*Store)(nil)

// Open connects to the database at url and applies the pending control-plane
// migrations under a PostgreSQL advisory lock, so replicas starting together
// migrate once. Opening an up-to-date database changes nothing. It returns an
// error, never carrying a URL's password, when the server cannot be reached,
// when the URL's user is a superuser or has BYPASSRLS (row-level security
// would not hold it, adr/0027), when it may not read and write every table,
// or when a migration fails; the caller must Close the store. Every statement
// and transaction runs in the store scope its context carries
// (controlplane.WithOrgScope, WithPlatformScope); one without a scope sees no
// organization's rows. With MigrateAs, another user migrates (adr/0030).
//
// The pool is pgx's (sized by the URL's pool_max_conns, like any pgxpool):
// database/sql borrows a connection for each statement or transaction and
// gives it back, and each connection keeps its prepared statements (pgx's
// statement cache), so a hot query is parsed and planned once per
// connection.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.migrateURL != "" {
		if err := migrateAs(ctx, o.migrateURL, url); err != nil {
			return nil, err
		}
	}
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
	if o.migrateURL == "" {
		err = migrate(ctx, db, false)
	}
	if err == nil {
		err = requireRows(ctx, pool)
	}
	var locks *pgxpool.Pool
	if err == nil {
		locks, err = newLockPool(ctx, url)
	}
	if err != nil {
		_ = db.Close()
		pool.Close()
		return nil, err
	}
	return &Store{Store: sqlstore.New(db, sqlstore.Postgres(), o.store...), pool: pool, locks: locks}, nil
}

// An Option changes how Open opens the store.
type Option func(*options)

type options struct {
	migrateURL string
	store      []sqlstore.Option
}

// MigrateAs has the user of url (the tables' owner, or a superuser) apply
// the migrations and grant the database's runtime role, <database>_app, the
// rows of every table, creating the role and granting it to Open's user as
// needed (migrations/controlplane/roles/postgres.sql). Open's user then
// serves: it owns nothing, so it cannot alter or disable a policy (adr/0030).
func MigrateAs(url string) Option {
	return func(o *options) { o.migrateURL = url }
}

// migrateAs migrates the store at migrateURL as its user, then grants the
// runtime role to the user of serveURL.
func migrateAs(ctx context.Context, migrateURL, serveURL string) error {
	serve, err := pgxpool.ParseConfig(serveURL)
	if err != nil {
		return fmt.Errorf("cannot open store: %w", err)
	}
	pool, err := pgxpool.New(ctx, migrateURL)
	if err != nil {
		return fmt.Errorf("cannot open store as the migrating user: %w", err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("cannot reach store as the migrating user: %w", err)
	}
	var owner string
	if err := pool.QueryRow(ctx, `SELECT current_user`).Scan(&owner); err != nil {
		return fmt.Errorf("cannot read the migrating user: %w", err)
	}
	if owner == serve.ConnConfig.User {
		return fmt.Errorf("store_migrate_url's user %q is store_url's too: the serving user would own the tables; leave store_migrate_url empty to run as one user, or serve as another (adr/0030)", owner)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	if err := migrate(ctx, db, true); err != nil {
		return err
	}
	return grantRuntimeRole(ctx, pool, serve.ConnConfig.User)
}

// migrate runs goose under a session advisory lock, as the store's
// migrating user when asMigrator, else as its only user.
func migrate(ctx context.Context, db *sql.DB, asMigrator bool) error {
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
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42501" { // insufficient_privilege
			if asMigrator {
				return fmt.Errorf("cannot migrate store: %w (the migrating user may not change the schema: it must own the database, or be a superuser)", err)
			}
			return fmt.Errorf("cannot migrate store: %w (the store user may not change the schema: set store_migrate_url to the URL of the tables' owner, adr/0030)", err)
		}
		return fmt.Errorf("cannot migrate store: %w", err)
	}
	return nil
}

// Close closes the database/sql view, then the pool, waiting for
// connections in use to be released. Calling it twice is harmless.
func (s *Store) Close() error {
	err := s.Store.Close()
	s.locks.Close()
	s.pool.Close()
	return err
}
