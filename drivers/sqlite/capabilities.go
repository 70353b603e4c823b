package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/envplane/envplane/drivers"
)

// CloneDatabase creates req.Name from req.Source: a full copy made with VACUUM
// INTO, or with SchemaOnly the source's tables, indexes, views and triggers
// without rows. The clone gets a registry of its own, so no credential of the
// source opens it. An existing clone made by envplane is success (it is not
// copied again); ErrNotFound when the source does not exist; ErrUnsupported for
// an invalid name. Idempotent.
func (d *Driver) CloneDatabase(ctx context.Context, req drivers.CloneDatabaseRequest) (drivers.CreateDatabaseResponse, error) {
	target, err := d.paths(req.Name)
	if err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	source, err := d.paths(req.Source.Name)
	if err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	if !exists(source.db) {
		return drivers.CreateDatabaseResponse{}, fmt.Errorf("clone source %s: %w", source.name, drivers.ErrNotFound)
	}
	fill := func(tmp string) error { return copyFull(ctx, source, tmp) }
	if req.SchemaOnly {
		fill = func(tmp string) error { return copySchema(ctx, source, tmp) }
	}
	if err := d.create(ctx, target, fill); err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	return drivers.CreateDatabaseResponse{Database: d.database(target, req.Region)}, nil
}

func copyFull(ctx context.Context, source paths, tmp string) error {
	// VACUUM INTO fills an empty file and keeps its mode, so the copy is 0600
	// from the start.
	if err := createEmpty(tmp); err != nil {
		return err
	}
	return copyFullTo(ctx, source, tmp)
}

func copySchema(ctx context.Context, source paths, tmp string) error {
	src, err := sql.Open("sqlite", dsn(source.db, drivers.ScopeReadOnly))
	if err != nil {
		return fmt.Errorf("cannot open clone source %s: %w", source.name, err)
	}
	defer src.Close()
	// Creation order (rowid) is an order in which every object's
	// dependencies already exist.
	rows, err := src.QueryContext(ctx, `
		SELECT type, name, sql FROM sqlite_schema
		WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\_%' ESCAPE '\'
		ORDER BY rowid`)
	if err != nil {
		return fmt.Errorf("cannot read schema of %s: %w", source.name, err)
	}
	type object struct{ kind, name, sql string }
	var objects []object
	for rows.Next() {
		var o object
		if err := rows.Scan(&o.kind, &o.name, &o.sql); err != nil {
			rows.Close()
			return fmt.Errorf("cannot read schema of %s: %w", source.name, err)
		}
		objects = append(objects, o)
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("cannot read schema of %s: %w", source.name, err)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot read schema of %s: %w", source.name, err)
	}

	if err := createEmpty(tmp); err != nil {
		return err
	}
	dst, err := sql.Open("sqlite", dsn(tmp, drivers.ScopeAdmin))
	if err != nil {
		return fmt.Errorf("cannot open clone: %w", err)
	}
	defer dst.Close()
	tx, err := dst.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cannot begin schema copy: %w", err)
	}
	defer tx.Rollback()
	for _, o := range objects {
		// A virtual table creates its shadow tables itself; they are listed
		// after it and must not be created twice.
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE name = ?`, o.name).Scan(&n); err != nil {
			return fmt.Errorf("cannot copy schema: %w", err)
		}
		if n > 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, o.sql); err != nil {
			return fmt.Errorf("cannot copy %s %s: %w", o.kind, o.name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cannot commit schema copy: %w", err)
	}
	return nil
}

// Usage returns the size of the database file and its write-ahead log, and
// the number of the application's tables (read through a read-only
// connection). SQLite has no server, so it tells no connections.
// ErrNotFound when the database does not exist; ErrUnsupported for an invalid
// name.
func (d *Driver) Usage(ctx context.Context, db drivers.Database) (drivers.Usage, error) {
	p, err := d.paths(db.Name)
	if err != nil {
		return drivers.Usage{}, err
	}
	info, err := os.Stat(p.db)
	if errors.Is(err, fs.ErrNotExist) {
		return drivers.Usage{}, fmt.Errorf("database %s: %w", p.name, drivers.ErrNotFound)
	}
	if err != nil {
		return drivers.Usage{}, fmt.Errorf("cannot measure %s: %w", p.name, err)
	}
	size := info.Size()
	if wal, err := os.Stat(p.db + "-wal"); err == nil {
		size += wal.Size()
	}
	tables, err := countTables(ctx, p)
	if err != nil {
		return drivers.Usage{}, err
	}
	return drivers.Usage{SizeBytes: size, Tables: &tables}, nil
}

// countTables counts the tables of the database that are neither SQLite's
// nor envplane's.
func countTables(ctx context.Context, p paths) (int64, error) {
	conn, err := sql.Open("sqlite", dsn(p.db, drivers.ScopeReadOnly))
	if err != nil {
		return 0, fmt.Errorf("cannot open %s: %w", p.name, err)
	}
	defer conn.Close()
	var n int64
	err = conn.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'table'
		AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name NOT LIKE '\_envplane\_%' ESCAPE '\'`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("cannot count tables of %s: %w", p.name, err)
	}
	return n, nil
}

// Health returns nil when a file can be created in the target's directory,
// an error wrapping ErrUnavailable otherwise.
func (d *Driver) Health(_ context.Context) error {
	f, err := os.CreateTemp(d.dir, ".health-*")
	if err != nil {
		return fmt.Errorf("sqlite target dir is not writable: %w: %w", drivers.ErrUnavailable, err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("sqlite target dir: cannot remove probe file: %w: %w", drivers.ErrUnavailable, err)
	}
	return nil
}
