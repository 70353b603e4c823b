package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/envplane/envplane/drivers"
)

// copyAttempts bounds how often a full clone retries when a new session
// slips into the source between terminating its sessions and the copy.
const copyAttempts = 5

// CloneDatabase creates req.Name from req.Source with its own owner and login
// roles, as CreateDatabase would. A full clone copies the source with CREATE
// DATABASE … TEMPLATE, which needs the source idle: its sessions are
// terminated first. A schema-only clone restores `pg_dump --schema-only` of
// the source and returns ErrUnsupported when pg_dump or psql is not on PATH.
// Either way, the copy's objects are handed to the new owner and the source's
// roles keep nothing in it. ErrNotFound if the source is absent or not made
// by envplane. Idempotent like CreateDatabase.
func (d *Driver) CloneDatabase(ctx context.Context, req drivers.CloneDatabaseRequest) (drivers.CreateDatabaseResponse, error) {
	src := req.Source.Name
	if err := checkName(src); err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	if err := checkName(req.Name); err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	if src == req.Name {
		return drivers.CreateDatabaseResponse{}, errors.New("postgres: a database cannot be cloned onto itself")
	}
	s, err := readState(ctx, d.pool, src)
	if err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	if !s.database || !s.ours(src) {
		return drivers.CreateDatabaseResponse{}, fmt.Errorf("postgres: source database %s: %w", src, drivers.ErrNotFound)
	}
	err = d.exclusive(ctx, req.Name, func(q querier) error {
		if req.SchemaOnly {
			return d.cloneSchema(ctx, q, req.Name, src)
		}
		return d.create(ctx, q, req.Name, func(ctx context.Context) error {
			return copyDatabase(ctx, q, req.Name, src)
		}, disownStatements(src, req.Name))
	})
	if err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	return drivers.CreateDatabaseResponse{Database: d.database(req.Name, req.Region)}, nil
}

// copyDatabase creates name from the template src, terminating the source's
// sessions first, and retries while new ones keep it busy (55006).
func copyDatabase(ctx context.Context, q querier, name, src string) error {
	return whileBusy(ctx, q, "CREATE DATABASE "+ident(name)+" TEMPLATE "+ident(src)+" STRATEGY WAL_LOG", src)
}

// whileBusy ends the sessions on the databases named, then runs stmt,
// again up to copyAttempts times while a session that slipped in keeps one
// of them busy (55006). It returns stmt's last error.
func whileBusy(ctx context.Context, q querier, stmt string, databases ...string) error {
	var err error
	for range copyAttempts {
		_, err = q.Exec(ctx, `
			SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
			WHERE datname = ANY($1) AND pid <> pg_backend_pid()`, databases)
		if err != nil {
			return err
		}
		_, err = q.Exec(ctx, stmt)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "55006" {
			return err
		}
	}
	return err
}

// disownStatements hands what the source's roles own in a copy to the copy's
// owner and removes their privileges and default privileges from it, in one
// transaction, so the two environments share nothing and the source's roles
// can later be dropped. Idempotent: once done, the source's roles own nothing
// here. The order matters: on PostgreSQL 15 a DROP OWNED of the grantees
// after the REASSIGN OWNED fails ("could not find tuple for default ACL").
func disownStatements(src, name string) string {
	creators := idents(ownerRole(src), loginRole(src, drivers.ScopeAdmin, drivers.SlotA), loginRole(src, drivers.ScopeAdmin, drivers.SlotB))
	users := idents(append(slotRoles(src, drivers.ScopeReadWrite), slotRoles(src, drivers.ScopeReadOnly)...)...)
	// DROP OWNED also revokes privileges on shared objects, the source
	// database's CONNECT among them: give those back, or the source's own
	// credentials stop opening it.
	return strings.Join(append([]string{
		"DROP OWNED BY " + users,
		"REASSIGN OWNED BY " + creators + " TO " + ident(ownerRole(name)),
		"DROP OWNED BY " + creators,
	}, databaseGrants(src)...), ";\n")
}

// cloneSchema creates name like CreateDatabase and restores src's schema
// into it as the new owner, in one transaction that also records, as the
// database's comment, that the restore is done; a rerun finds the mark and
// does not restore twice.
func (d *Driver) cloneSchema(ctx context.Context, q querier, name, src string) error {
	pgDump, err := exec.LookPath("pg_dump")
	if err != nil {
		return fmt.Errorf("postgres: schema-only clone needs pg_dump: %w", drivers.ErrUnsupported)
	}
	psql, err := exec.LookPath("psql")
	if err != nil {
		return fmt.Errorf("postgres: schema-only clone needs psql: %w", drivers.ErrUnsupported)
	}
	if err := d.create(ctx, q, name, createEmpty(q, name)); err != nil {
		return err
	}
	mark := "envplane: schema restored from " + src
	var restored bool
	err = q.QueryRow(ctx, `
		SELECT coalesce(shobj_description(oid, 'pg_database') = $2, false)
		FROM pg_database WHERE datname = $1`, name, mark).Scan(&restored)
	if err != nil {
		return wrap("cannot read clone state of "+name, err)
	}
	if restored {
		return nil
	}
	env := d.libpqEnv()
	var dump, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, pgDump, "--schema-only", "--no-owner", "--no-privileges", "--dbname", src)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, &dump, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("postgres: pg_dump of %s failed: %v: %s", src, err, firstLine(stderr.String()))
	}
	var script bytes.Buffer
	fmt.Fprintf(&script, "SET ROLE %s;\n", ident(ownerRole(name)))
	script.Write(dump.Bytes())
	// mark is built from a validated name: no quote can occur in it.
	fmt.Fprintf(&script, "\nRESET ROLE;\nCOMMENT ON DATABASE %s IS '%s';\n", ident(name), mark)
	stderr.Reset()
	cmd = exec.CommandContext(ctx, psql, "--no-psqlrc", "--quiet", "--single-transaction",
		"--set", "ON_ERROR_STOP=1", "--dbname", name)
	cmd.Env, cmd.Stdin, cmd.Stderr = env, &script, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("postgres: schema restore into %s failed: %v: %s", name, err, firstLine(stderr.String()))
	}
	return nil
}

// libpqEnv describes the admin connection to pg_dump and psql through
// libpq's variables, so the password is not on a command line.
func (d *Driver) libpqEnv() []string {
	c := d.pool.Config().ConnConfig
	mode := "disable"
	if c.TLSConfig != nil {
		mode = "verify-full"
		if c.TLSConfig.InsecureSkipVerify {
			mode = "require"
		}
	}
	return []string{
		"PGHOST=" + c.Host,
		"PGPORT=" + strconv.Itoa(int(c.Port)),
		"PGUSER=" + c.User,
		"PGPASSWORD=" + c.Password,
		"PGSSLMODE=" + mode,
		"PGCONNECT_TIMEOUT=10",
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	const limit = 300
	if len(s) > limit {
		s = s[:limit]
	}
	return s
}
