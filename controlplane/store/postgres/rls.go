package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// refuseBypass returns an error when the store's user is a superuser or
// has BYPASSRLS: row-level security would not apply to it, and every
// organization's rows would be one forgotten filter away.
func refuseBypass(ctx context.Context, pool *pgxpool.Pool) error {
	var user string
	var super, bypass bool
	err := pool.QueryRow(ctx, `SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user`).
		Scan(&user, &super, &bypass)
	if err != nil {
		return fmt.Errorf("cannot read the store user's attributes: %w", err)
	}
	switch {
	case super:
		return fmt.Errorf("the store user %q is a superuser, so row-level security would not apply to it: connect as a role without SUPERUSER and BYPASSRLS (see README, \"Least-privileged store user\")", user)
	case bypass:
		return fmt.Errorf("the store user %q has BYPASSRLS, so row-level security would not apply to it: ALTER ROLE %s NOBYPASSRLS, or connect as another role (see README, \"Least-privileged store user\")", user, pgx.Identifier{user}.Sanitize())
	}
	return nil
}
