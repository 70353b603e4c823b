package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/envplane/envplane/drivers"
)

var _ drivers.WriteLimiter = (*Driver)(nil)

// Usage returns the database's size on disk, the number of the
// application's tables (envplane's _envplane_* tables and the catalogs
// excepted) and the client sessions open on it, the measuring one excepted.
// It reads the size and sessions from the cluster first, so an absent
// database is ErrNotFound without a connection attempt, then counts the
// tables from inside the database.
func (d *Driver) Usage(ctx context.Context, db drivers.Database) (drivers.Usage, error) {
	if err := checkName(db.Name); err != nil {
		return drivers.Usage{}, err
	}
	var u drivers.Usage
	var conns, tables int64
	err := d.pool.QueryRow(ctx, `
		SELECT pg_database_size(oid),
		       (SELECT count(*) FROM pg_stat_activity a
		        WHERE a.datid = d.oid AND a.backend_type = 'client backend' AND a.pid <> pg_backend_pid())
		FROM pg_database d WHERE datname = $1`, db.Name).Scan(&u.SizeBytes, &conns)
	if err != nil {
		return drivers.Usage{}, wrap("cannot measure database", err)
	}
	err = d.inDatabase(ctx, db.Name, func(conn *pgx.Conn) error {
		return conn.QueryRow(ctx, `
			SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
			  AND n.nspname NOT LIKE 'pg\_%' AND c.relname NOT LIKE '\_envplane\_%'`).Scan(&tables)
	})
	if err != nil {
		return drivers.Usage{}, wrap("cannot count tables", err)
	}
	u.Tables, u.Connections = &tables, &conns
	return u, nil
}

// LimitWrites takes INSERT, UPDATE and DELETE on every table of the public
// schema, and TEMPORARY on the database, away from the readwrite scope's two
// roles, and keeps tables created later from granting them (default
// privileges); or gives them back, the _envplane_* system tables excepted,
// which readwrite never writes. Table privileges are checked at each
// statement, so open sessions are limited at once. The statements run in one
// transaction inside the database, under the database's lock, so a limit
// and a lift never interleave. Idempotent; ErrNotFound if the database is
// absent.
func (d *Driver) LimitWrites(ctx context.Context, req drivers.LimitWritesRequest) error {
	name := req.Database.Name
	if err := checkName(name); err != nil {
		return err
	}
	return d.exclusive(ctx, name, func(q querier) error {
		s, err := readState(ctx, q, name)
		if err != nil {
			return err
		}
		if !s.database || !s.ours(name) {
			return fmt.Errorf("postgres: database %s: %w", name, drivers.ErrNotFound)
		}
		return d.inDatabase(ctx, name, func(conn *pgx.Conn) error {
			if _, err := conn.Exec(ctx, limitStatements(name, req.Limited)); err != nil {
				return wrap("cannot change the write rights of "+name, err)
			}
			return nil
		})
	})
}

// limitStatements returns one transaction that limits (or lifts the limit
// on) the readwrite scope's writes in db.
func limitStatements(db string, limited bool) string {
	owner := ownerRole(db)
	admins := slotRoles(db, drivers.ScopeAdmin)
	creators := idents(owner, admins[0], admins[1])
	rw := idents(slotRoles(db, drivers.ScopeReadWrite)...)
	var stmts []string
	if limited {
		stmts = []string{
			"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public FROM " + rw,
			"ALTER DEFAULT PRIVILEGES FOR ROLE " + creators + " IN SCHEMA public REVOKE INSERT, UPDATE, DELETE ON TABLES FROM " + rw,
			"REVOKE TEMPORARY ON DATABASE " + ident(db) + " FROM " + rw,
		}
	} else {
		// The role names are ours and quoted here; format's %s takes them as they are.
		stmts = []string{
			`DO $$
DECLARE r record;
BEGIN
	FOR r IN
		SELECT c.oid::regclass AS rel FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
		  AND c.relname NOT LIKE '\_envplane\_%'
	LOOP
		EXECUTE pg_catalog.format('GRANT INSERT, UPDATE, DELETE ON %s TO ` + strings.ReplaceAll(rw, "'", "''") + `', r.rel);
	END LOOP;
END $$`,
			"ALTER DEFAULT PRIVILEGES FOR ROLE " + creators + " IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO " + rw,
			"GRANT TEMPORARY ON DATABASE " + ident(db) + " TO " + rw,
		}
	}
	return "BEGIN;\n" + strings.Join(stmts, ";\n") + ";\nCOMMIT;"
}
