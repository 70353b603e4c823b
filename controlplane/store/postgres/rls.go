package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/envplane/envplane/migrations"
)

// refuseBypass returns an error when the store's user is a superuser or
// has BYPASSRLS: row-level security would not apply to it, and every
// organization's rows would be one forgotten filter away.
func refuseBypass(ctx context.Context, pool *pgxpool.Pool) error {
	var user string
	var super, bypass bool
	var via *string
	// A role the user is a member of lends its attributes through SET ROLE.
	err := pool.QueryRow(ctx, `SELECT u.rolname, u.rolsuper, u.rolbypassrls,
			(SELECT min(r.rolname) FROM pg_roles r WHERE r.rolname <> u.rolname
				AND (r.rolsuper OR r.rolbypassrls) AND pg_has_role(u.oid, r.oid, 'MEMBER'))
		FROM pg_roles u WHERE u.rolname = current_user`).Scan(&user, &super, &bypass, &via)
	if err != nil {
		return fmt.Errorf("cannot read the store user's attributes: %w", err)
	}
	switch {
	case super:
		return fmt.Errorf("the store user %q is a superuser, so row-level security would not apply to it: connect as a role without SUPERUSER and BYPASSRLS (see README, \"Least-privileged store user\")", user)
	case bypass:
		return fmt.Errorf("the store user %q has BYPASSRLS, so row-level security would not apply to it: ALTER ROLE %s NOBYPASSRLS, or connect as another role (see README, \"Least-privileged store user\")", user, pgx.Identifier{user}.Sanitize())
	case via != nil:
		return fmt.Errorf("the store user %q is a member of %q, a superuser or BYPASSRLS role it could SET ROLE to, so row-level security would not hold it: REVOKE %s FROM %s (see README, \"Least-privileged store user\")",
			user, *via, pgx.Identifier{*via}.Sanitize(), pgx.Identifier{user}.Sanitize())
	}
	return nil
}

// runtimeRoleLock is the advisory lock key under which replicas starting
// together apply the runtime role's grants one at a time: concurrent GRANTs
// on one table fail with "tuple concurrently updated".
const runtimeRoleLock = 0x656e76706c616e65 // "envplane"

// grantRuntimeRole applies migrations.ControlPlanePostgresRoles as the
// pool's (migrating) user for the serving user runtime.
func grantRuntimeRole(ctx context.Context, pool *pgxpool.Pool, runtime string) error {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1), set_config('envplane.runtime_user', $2, true)`,
			int64(runtimeRoleLock), runtime); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, migrations.ControlPlanePostgresRoles())
		return err
	})
	if err != nil {
		return fmt.Errorf("cannot grant the store's runtime role: %w", withHint(err))
	}
	return nil
}

// requireRows returns an error naming the first table whose rows the
// store's user may not read and write (goose's: read), and the fix.
func requireRows(ctx context.Context, pool *pgxpool.Pool) error {
	var table, user, app string
	// has_table_privilege with a list is true if any one is held: ask for each.
	err := pool.QueryRow(ctx, `SELECT c.relname, current_user, current_database() || '_app'
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind = 'r' AND NOT CASE c.relname
			WHEN 'goose_db_version' THEN has_table_privilege(c.oid, 'SELECT')
			ELSE has_table_privilege(c.oid, 'SELECT') AND has_table_privilege(c.oid, 'INSERT')
				AND has_table_privilege(c.oid, 'UPDATE') AND has_table_privilege(c.oid, 'DELETE') END
		ORDER BY c.relname LIMIT 1`).Scan(&table, &user, &app)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("cannot read the store user's privileges: %w", err)
	}
	return fmt.Errorf("the store user %q may not read and write the table %s: set store_migrate_url to the URL of the tables' owner, whose start grants the role %s every table and this user the role, or as a superuser: GRANT %s TO %s (see README, \"Least-privileged store user\")",
		user, table, pgx.Identifier{app}.Sanitize(), pgx.Identifier{app}.Sanitize(), pgx.Identifier{user}.Sanitize())
}

// withHint appends a PostgreSQL error's hint, which says how to fix it, to
// the error.
func withHint(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Hint != "" {
		return fmt.Errorf("%w (%s)", err, pgErr.Hint)
	}
	return err
}
