package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/envplane/envplane/drivers"
)

var _ drivers.Suspender = (*Driver)(nil)

// SuspendDatabase sets the database's six login roles NOLOGIN, keeping their
// passwords and VALID UNTIL for ResumeDatabase, then terminates their sessions
// and waits for them to end. Credentials survive (CredentialsRevoked is
// false). Roles that do not exist are skipped, so an absent database is
// success; repeating it changes nothing.
func (d *Driver) SuspendDatabase(ctx context.Context, req drivers.SuspendDatabaseRequest) (drivers.SuspendDatabaseResponse, error) {
	name := req.Database.Name
	if err := checkName(name); err != nil {
		return drivers.SuspendDatabaseResponse{}, err
	}
	logins := allRoles(name)[:6]
	err := d.exclusive(ctx, name, func(q querier) error {
		s, err := readState(ctx, q, name)
		if err != nil {
			return err
		}
		if s.database && !s.ours(name) {
			return fmt.Errorf("postgres: database %s: %w", name, drivers.ErrExists)
		}
		var b strings.Builder
		for _, r := range logins {
			if slices.Contains(s.roles, r) {
				fmt.Fprintf(&b, "ALTER ROLE %s WITH NOLOGIN;\n", ident(r))
			}
		}
		if b.Len() == 0 {
			return nil
		}
		// NOLOGIN first: from here no new session can start, so the
		// termination below cannot miss one.
		if _, err := q.Exec(ctx, b.String()); err != nil {
			return wrap("cannot suspend the roles of "+name, err)
		}
		return terminate(ctx, q, logins...)
	})
	if err != nil {
		return drivers.SuspendDatabaseResponse{}, err
	}
	return drivers.SuspendDatabaseResponse{}, nil
}

// ResumeDatabase gives LOGIN back to the roles of req.Credentials, which log
// in again with the passwords they had. Roles not named stay NOLOGIN. A
// username that is not the role of its scope and slot in this database is an
// error, so a request cannot reach another database's roles; an absent
// database is ErrNotFound. Idempotent.
func (d *Driver) ResumeDatabase(ctx context.Context, req drivers.ResumeDatabaseRequest) (drivers.ResumeDatabaseResponse, error) {
	name := req.Database.Name
	if err := checkName(name); err != nil {
		return drivers.ResumeDatabaseResponse{}, err
	}
	var b strings.Builder
	for _, c := range req.Credentials {
		if err := checkScopeSlot(c.Scope, c.Slot); err != nil {
			return drivers.ResumeDatabaseResponse{}, err
		}
		role := loginRole(name, c.Scope, c.Slot)
		if c.Username != "" && c.Username != role {
			return drivers.ResumeDatabaseResponse{}, fmt.Errorf("postgres: user %q is not the %s/%s role of %s", c.Username, c.Scope, c.Slot, name)
		}
		fmt.Fprintf(&b, "ALTER ROLE %s WITH LOGIN;\n", ident(role))
	}
	err := d.exclusive(ctx, name, func(q querier) error {
		s, err := readState(ctx, q, name)
		if err != nil {
			return err
		}
		if !s.database || !s.ours(name) {
			return fmt.Errorf("postgres: database %s: %w", name, drivers.ErrNotFound)
		}
		if b.Len() == 0 {
			return nil
		}
		if _, err := q.Exec(ctx, b.String()); err != nil {
			return wrap("cannot resume the roles of "+name, err)
		}
		return nil
	})
	if err != nil {
		return drivers.ResumeDatabaseResponse{}, err
	}
	return drivers.ResumeDatabaseResponse{}, nil
}
