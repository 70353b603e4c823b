package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/envplane/envplane/drivers"
)

var _ drivers.Resetter = (*Driver)(nil)

// A reset is staged as another database of the environment's roles
// (name_next), owned and granted like the database itself, and swapped in by
// renaming: the database becomes name_prev and the staged one takes its
// name, both renames in one transaction (adr/0020). Roles are cluster-wide,
// so every credential, and the DSN, which names the database, open the
// replacement; sessions on the old one are ended and the applications'
// pools reconnect to the new one.

// stagedName is where a reset of name is built; retiredName is where the
// old contents wait, after the swap, to be dropped. Both are longer than a
// generated name, so no environment's database can bear them.
func stagedName(name string) string  { return name + "_next" }
func retiredName(name string) string { return name + "_prev" }

// StageReset creates name_next, empty or as a copy of req.Source (CREATE
// DATABASE … TEMPLATE, which ends the source's sessions first, as a clone
// does), hands what the source's roles own in it to the database's owner,
// and grants the database's roles their privileges in it. An earlier
// name_next is dropped first. ErrNotFound when the database or the source
// is absent or not made by envplane.
func (d *Driver) StageReset(ctx context.Context, req drivers.ResetRequest) error {
	name := req.Database.Name
	if err := checkName(name); err != nil {
		return err
	}
	src := ""
	if req.Source != nil {
		src = req.Source.Name
		if err := checkName(src); err != nil {
			return err
		}
		if src == name {
			return errors.New("postgres: a database cannot be reset from itself")
		}
	}
	staged := stagedName(name)
	return d.exclusive(ctx, name, func(q querier) error {
		s, err := readState(ctx, q, name)
		if err != nil {
			return err
		}
		if !s.database || !s.ours(name) {
			return fmt.Errorf("postgres: database %s: %w", name, drivers.ErrNotFound)
		}
		if src != "" {
			ss, err := readState(ctx, q, src)
			if err != nil {
				return err
			}
			if !ss.database || !ss.ours(src) {
				return fmt.Errorf("postgres: reset source %s: %w", src, drivers.ErrNotFound)
			}
		}
		if err := dropDatabases(ctx, q, staged); err != nil {
			return err
		}
		var prepare []string
		if src == "" {
			err = createEmpty(q, staged)(ctx)
		} else {
			err = copyDatabase(ctx, q, staged, src)
			prepare = append(prepare, disownStatements(src, name))
		}
		if err != nil {
			return wrap("cannot create database "+staged, err)
		}
		d.crash("postgres.reset.staged")
		return d.inDatabase(ctx, staged, func(conn *pgx.Conn) error {
			for _, stmt := range append(prepare, grantStatementsOn(staged, name)) {
				if _, err := conn.Exec(ctx, stmt); err != nil {
					return wrap("cannot prepare "+staged, err)
				}
			}
			return nil
		})
	})
}

// OpenStaged opens name_next with a credential of the database, as Open
// would the database. ErrNotFound when nothing is staged.
func (d *Driver) OpenStaged(ctx context.Context, req drivers.OpenRequest) (drivers.OpenResponse, error) {
	if err := checkName(req.Database.Name); err != nil {
		return drivers.OpenResponse{}, err
	}
	return d.open(ctx, stagedName(req.Database.Name), req)
}

// SwapReset closes the database to new sessions, ends its sessions and the
// staged one's, and renames the database to name_prev and name_next to the
// database's name in one transaction, retrying while a session slips in
// (55006). A name_prev left by an earlier reset is dropped first. Nothing
// staged is success: the swap is done.
func (d *Driver) SwapReset(ctx context.Context, req drivers.ResetRequest) error {
	name := req.Database.Name
	if err := checkName(name); err != nil {
		return err
	}
	staged, retired := stagedName(name), retiredName(name)
	return d.exclusive(ctx, name, func(q querier) error {
		var live, next bool
		err := q.QueryRow(ctx, `
			SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1),
			       EXISTS (SELECT 1 FROM pg_database WHERE datname = $2)`, name, staged).Scan(&live, &next)
		if err != nil {
			return wrap("cannot read cluster state", err)
		}
		if !next {
			return nil
		}
		if err := dropDatabases(ctx, q, retired); err != nil {
			return err
		}
		swap := "ALTER DATABASE " + ident(staged) + " RENAME TO " + ident(name)
		if live {
			// The old database refuses new sessions from now on, so the
			// ones ended below cannot come back before the rename; it
			// stays closed once retired, and DiscardReset opens it again
			// if the reset is abandoned before the swap.
			if _, err := q.Exec(ctx, "ALTER DATABASE "+ident(name)+" WITH ALLOW_CONNECTIONS false"); err != nil {
				return wrap("cannot close database "+name, err)
			}
			d.crash("postgres.reset.closed")
			swap = "ALTER DATABASE " + ident(name) + " RENAME TO " + ident(retired) + ";\n" + swap
		}
		// One simple query: both renames commit together.
		if err := whileBusy(ctx, q, swap, name, staged); err != nil {
			return wrap("cannot swap "+staged+" in", err)
		}
		return nil
	})
}

// DiscardReset drops name_next and name_prev and lets the database accept
// sessions again (a swap abandoned after closing it). Absent is success.
func (d *Driver) DiscardReset(ctx context.Context, req drivers.ResetRequest) error {
	name := req.Database.Name
	if err := checkName(name); err != nil {
		return err
	}
	return d.exclusive(ctx, name, func(q querier) error {
		if err := dropDatabases(ctx, q, stagedName(name), retiredName(name)); err != nil {
			return err
		}
		s, err := readState(ctx, q, name)
		if err != nil {
			return err
		}
		if s.database && s.ours(name) {
			if _, err := q.Exec(ctx, "ALTER DATABASE "+ident(name)+" WITH ALLOW_CONNECTIONS true"); err != nil {
				return wrap("cannot open database "+name, err)
			}
		}
		return nil
	})
}
