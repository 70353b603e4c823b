package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/envplane/envplane/drivers"
)

// BackupFormat is the format of a SQLite driver's copies: a SQLite
// database file, as VACUUM INTO writes it.
const BackupFormat = "sqlite3"

var _ drivers.BackerUp = (*Driver)(nil)

// BackupDatabase writes a consistent copy of the database file to req.W:
// VACUUM INTO a temporary file next to it (a read transaction, so writers
// go on), streamed out and removed. ErrNotFound if the database is absent.
func (d *Driver) BackupDatabase(ctx context.Context, req drivers.BackupRequest) (drivers.BackupResponse, error) {
	p, err := d.paths(req.Database.Name)
	if err != nil {
		return drivers.BackupResponse{}, err
	}
	if !exists(p.db) {
		return drivers.BackupResponse{}, fmt.Errorf("database %s: %w", p.name, drivers.ErrNotFound)
	}
	tmp, err := os.CreateTemp(d.dir, p.name+".backup-*")
	if err != nil {
		return drivers.BackupResponse{}, fmt.Errorf("cannot make backup file of %s: %w", p.name, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := copyFullTo(ctx, p, tmp.Name()); err != nil {
		return drivers.BackupResponse{}, err
	}
	tables, err := countRows(ctx, tmp.Name())
	if err != nil {
		return drivers.BackupResponse{}, fmt.Errorf("cannot count rows of the backup of %s: %w", p.name, err)
	}
	if _, err := io.Copy(req.W, tmp); err != nil {
		return drivers.BackupResponse{}, fmt.Errorf("cannot write backup of %s: %w", p.name, err)
	}
	return drivers.BackupResponse{Format: BackupFormat, Tables: tables}, nil
}

// countRows counts the rows of every table of the database file at path.
func countRows(ctx context.Context, path string) (map[string]int64, error) {
	db, err := sql.Open("sqlite", dsn(path, drivers.ScopeReadOnly))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\'`)
	if err != nil {
		return nil, err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		names = append(names, n)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(names))
	for _, n := range names {
		var c int64
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM "`+strings.ReplaceAll(n, `"`, `""`)+`"`).Scan(&c); err != nil {
			return nil, err
		}
		out[n] = c
	}
	return out, nil
}

// copyFullTo writes a copy of p's database to the empty file tmp.
func copyFullTo(ctx context.Context, p paths, tmp string) error {
	src, err := sql.Open("sqlite", dsn(p.db, drivers.ScopeReadOnly))
	if err != nil {
		return fmt.Errorf("cannot open %s: %w", p.name, err)
	}
	defer src.Close()
	if _, err := src.ExecContext(ctx, `VACUUM INTO ?`, tmp); err != nil {
		return fmt.Errorf("cannot copy %s: %w", p.name, err)
	}
	return nil
}

// RestoreDatabase creates req.Name from a copy BackupDatabase wrote: the
// copy is written to the temporary file that create renames into place once
// SQLite's integrity check passed, so a torn or foreign copy never becomes
// the database. The new database gets a registry of its own.
func (d *Driver) RestoreDatabase(ctx context.Context, req drivers.RestoreRequest) (drivers.CreateDatabaseResponse, error) {
	if req.Format != BackupFormat {
		return drivers.CreateDatabaseResponse{}, fmt.Errorf("a %q copy cannot be restored on sqlite: %w", req.Format, drivers.ErrUnsupported)
	}
	p, err := d.paths(req.Name)
	if err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	fill := func(tmp string) error { return restoreFile(ctx, req.R, tmp) }
	if err := d.create(ctx, p, fill); err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	return drivers.CreateDatabaseResponse{Database: d.database(p, req.Region)}, nil
}

// restoreFile writes r to tmp (mode 0600) and checks that it is a sound
// SQLite database.
func restoreFile(ctx context.Context, r io.Reader, tmp string) error {
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("cannot create database file: %w", err)
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cannot write restored database: %w", err)
	}
	db, err := sql.Open("sqlite", dsn(tmp, drivers.ScopeReadOnly))
	if err != nil {
		return fmt.Errorf("cannot open restored database: %w", err)
	}
	defer db.Close()
	var verdict string
	if err := db.QueryRowContext(ctx, `PRAGMA quick_check`).Scan(&verdict); err != nil {
		return fmt.Errorf("restored database is not a SQLite database: %w", errors.Join(drivers.ErrUnsupported, err))
	}
	if verdict != "ok" {
		return fmt.Errorf("restored database fails its integrity check: %s: %w", verdict, drivers.ErrUnsupported)
	}
	return nil
}
