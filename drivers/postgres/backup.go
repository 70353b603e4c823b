package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"

	"github.com/jackc/pgx/v5"

	"github.com/envplane/envplane/drivers"
)

// BackupFormat is the format of a PostgreSQL driver's copies: pg_dump's
// custom format, without owners or privileges (a restore hands every
// object to the new database's own roles).
const BackupFormat = "pg_dump-custom"

// restoredMark is the comment RestoreDatabase puts on a database once its
// restore committed.
const restoredMark = "envplane: restored from a backup"

var _ drivers.BackerUp = (*Driver)(nil)

// tool returns the path of one of PostgreSQL's client programs: in BinDir
// when it is set, else on PATH. ErrUnsupported when it is missing.
func (d *Driver) tool(name string) (string, error) {
	if d.binDir != "" {
		name = filepath.Join(d.binDir, name)
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("postgres: backups need %s (set the target's bin_dir): %w", filepath.Base(name), drivers.ErrUnsupported)
	}
	return p, nil
}

// BackupDatabase streams `pg_dump --format=custom` of the database to
// req.W: one snapshot, so the copy is consistent while the database stays
// in use. ErrNotFound if the database is absent or not made by envplane;
// ErrUnsupported when pg_dump is missing.
func (d *Driver) BackupDatabase(ctx context.Context, req drivers.BackupRequest) (drivers.BackupResponse, error) {
	name := req.Database.Name
	if err := checkName(name); err != nil {
		return drivers.BackupResponse{}, err
	}
	pgDump, err := d.tool("pg_dump")
	if err != nil {
		return drivers.BackupResponse{}, err
	}
	s, err := readState(ctx, d.pool, name)
	if err != nil {
		return drivers.BackupResponse{}, err
	}
	if !s.database || !s.ours(name) {
		return drivers.BackupResponse{}, fmt.Errorf("postgres: database %s: %w", name, drivers.ErrNotFound)
	}
	var tables map[string]int64
	err = d.inDatabase(ctx, name, func(conn *pgx.Conn) error {
		// The rows are counted, and pg_dump reads, in one exported
		// snapshot: the counts are the copy's.
		tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return wrap("cannot begin backup of "+name, err)
		}
		defer tx.Rollback(context.WithoutCancel(ctx))
		var snapshot string
		if err := tx.QueryRow(ctx, `SELECT pg_export_snapshot()`).Scan(&snapshot); err != nil {
			return wrap("cannot export snapshot of "+name, err)
		}
		if tables, err = countRows(ctx, tx); err != nil {
			return wrap("cannot count rows of "+name, err)
		}
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, pgDump, "--format=custom", "--no-owner", "--no-privileges", "--snapshot", snapshot, "--dbname", name)
		cmd.Env, cmd.Stdout, cmd.Stderr = d.libpqEnv(), req.W, &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("postgres: pg_dump of %s failed: %v: %s", name, err, firstLine(stderr.String()))
		}
		return nil
	})
	if err != nil {
		return drivers.BackupResponse{}, err
	}
	return drivers.BackupResponse{Format: BackupFormat, Tables: tables}, nil
}

// countRows counts the rows of every table in the database's public schema.
func countRows(ctx context.Context, tx pgx.Tx) (map[string]int64, error) {
	rows, err := tx.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = 'public'`)
	if err != nil {
		return nil, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(names))
	for _, n := range names {
		var c int64
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{"public", n}.Sanitize()).Scan(&c); err != nil {
			return nil, err
		}
		out[n] = c
	}
	return out, nil
}

// RestoreDatabase creates req.Name like CreateDatabase and restores the
// copy into it with `pg_restore --single-transaction` as the new owner,
// then marks the database restored (its comment). A database found
// without the mark is a restore that did not finish: it is dropped and
// made again, so a retry never restores twice. ErrUnsupported when
// pg_restore is missing or the format is not pg_dump's custom one.
func (d *Driver) RestoreDatabase(ctx context.Context, req drivers.RestoreRequest) (drivers.CreateDatabaseResponse, error) {
	if req.Format != BackupFormat {
		return drivers.CreateDatabaseResponse{}, fmt.Errorf("postgres: a %q copy cannot be restored: %w", req.Format, drivers.ErrUnsupported)
	}
	name := req.Name
	if err := checkName(name); err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	pgRestore, err := d.tool("pg_restore")
	if err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	err = d.exclusive(ctx, name, func(q querier) error {
		var mark *string
		err := q.QueryRow(ctx, `SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1`, name).Scan(&mark)
		switch {
		case err == nil && mark != nil && *mark == restoredMark:
			return nil
		case err == nil:
			// Made but not restored to the end: start again.
			if _, err := q.Exec(ctx, "DROP DATABASE "+ident(name)+" WITH (FORCE)"); err != nil {
				return wrap("cannot drop unfinished restore "+name, err)
			}
		case !errors.Is(err, pgx.ErrNoRows):
			return wrap("cannot read restore state of "+name, err)
		}
		if err := d.create(ctx, q, name, createEmpty(q, name)); err != nil {
			return err
		}
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, pgRestore, "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error",
			"--role", ownerRole(name), "--dbname", name)
		cmd.Env, cmd.Stdin, cmd.Stderr = d.libpqEnv(), io.NopCloser(req.R), &stderr
		if err := cmd.Run(); err != nil {
			// Nothing half-restored stays behind to be opened; a drop that
			// fails here is done by the retry (the mark is missing).
			_, _ = q.Exec(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)")
			return fmt.Errorf("postgres: pg_restore into %s failed: %v: %s", name, err, firstLine(stderr.String()))
		}
		// Tables the restore made get the scopes' privileges as a clone's do.
		if err := d.create(ctx, q, name, createEmpty(q, name)); err != nil {
			return err
		}
		// The mark is built from constants: no quote can occur in it.
		if _, err := q.Exec(ctx, "COMMENT ON DATABASE "+ident(name)+" IS '"+restoredMark+"'"); err != nil {
			return wrap("cannot mark "+name+" restored", err)
		}
		return nil
	})
	if err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	return drivers.CreateDatabaseResponse{Database: d.database(name, req.Region)}, nil
}
