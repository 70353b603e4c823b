package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	sqlite3 "modernc.org/sqlite"

	"github.com/envplane/envplane/drivers"
)

var _ drivers.Resetter = (*Driver)(nil)

// A reset is staged in a file beside the database (name.db.reset) and
// swapped in with SQLite's online backup API, which copies the staged file
// into the database file in one write transaction (adr/0020). Renaming the
// staged file over the database would not do: every connection open on the
// old file keeps reading and writing the unlinked inode, so applications
// holding a pool would stay on the old contents, and their writes be lost.
// The registry is a file of its own and is not touched: every secret keeps
// opening the database.

// stagedPath is where a reset of p is built.
func stagedPath(p paths) string { return p.db + ".reset" }

// StageReset builds the replacement in name.db.reset: an empty file, or a
// copy of req.Source made with VACUUM INTO. An earlier staged file is
// removed first. ErrNotFound when the database or the source is absent;
// ErrUnsupported for an invalid name.
func (d *Driver) StageReset(ctx context.Context, req drivers.ResetRequest) error {
	p, err := d.paths(req.Database.Name)
	if err != nil {
		return err
	}
	if !exists(p.db) {
		return fmt.Errorf("database %s: %w", p.name, drivers.ErrNotFound)
	}
	fill := createEmpty
	if req.Source != nil {
		source, err := d.paths(req.Source.Name)
		if err != nil {
			return err
		}
		if !exists(source.db) {
			return fmt.Errorf("reset source %s: %w", source.name, drivers.ErrNotFound)
		}
		fill = func(tmp string) error { return copyFull(ctx, source, tmp) }
	}
	if err := removeStaged(p); err != nil {
		return err
	}
	if err := fill(stagedPath(p)); err != nil {
		_ = removeStaged(p)
		return err
	}
	return nil
}

// OpenStaged checks the credential against the database's registry and
// opens the staged file with it. ErrNotFound when nothing is staged;
// ErrDenied for a credential the database would refuse.
func (d *Driver) OpenStaged(ctx context.Context, req drivers.OpenRequest) (drivers.OpenResponse, error) {
	p, err := d.paths(req.Database.Name)
	if err != nil {
		return drivers.OpenResponse{}, err
	}
	if err := checkScopeSlot(req.Credential.Scope, req.Credential.Slot); err != nil {
		return drivers.OpenResponse{}, err
	}
	if err := d.verify(ctx, p, req.Credential); err != nil {
		return drivers.OpenResponse{}, err
	}
	staged := stagedPath(p)
	if !exists(staged) {
		return drivers.OpenResponse{}, fmt.Errorf("staged reset of %s: %w", p.name, drivers.ErrNotFound)
	}
	db, err := sql.Open("sqlite", dsn(staged, req.Credential.Scope))
	if err != nil {
		return drivers.OpenResponse{}, fmt.Errorf("cannot open staged reset of %s: %w", p.name, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return drivers.OpenResponse{}, fmt.Errorf("cannot open staged reset of %s: %w", p.name, err)
	}
	return drivers.OpenResponse{DB: db, Dialect: drivers.DialectSQLite}, nil
}

// restorer is what modernc.org/sqlite's connection offers to copy another
// database file into its own.
type restorer interface {
	NewRestore(srcURI string) (*sqlite3.Backup, error)
}

// SwapReset copies the staged file into the database in one write
// transaction (waiting for other writers up to the busy timeout), then
// removes the staged file. Connections open on the database see the new
// contents from their next transaction on. Nothing staged is success.
func (d *Driver) SwapReset(ctx context.Context, req drivers.ResetRequest) error {
	p, err := d.paths(req.Database.Name)
	if err != nil {
		return err
	}
	staged := stagedPath(p)
	if !exists(staged) {
		return nil
	}
	if !exists(p.db) {
		return fmt.Errorf("database %s: %w", p.name, drivers.ErrNotFound)
	}
	db, err := sql.Open("sqlite", dsn(p.db, drivers.ScopeAdmin))
	if err != nil {
		return fmt.Errorf("cannot open database %s: %w", p.name, err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("cannot open database %s: %w", p.name, err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		r, ok := dc.(restorer)
		if !ok {
			return fmt.Errorf("sqlite connection cannot restore: %w", drivers.ErrUnsupported)
		}
		b, err := r.NewRestore(dsn(staged, drivers.ScopeReadOnly))
		if err != nil {
			return err
		}
		// One step copies every page: the destination changes in one
		// transaction, which a crash rolls back.
		_, stepErr := b.Step(-1)
		if err := b.Finish(); stepErr == nil {
			stepErr = err
		}
		return stepErr
	})
	if err != nil {
		return fmt.Errorf("cannot swap the reset of %s in: %w", p.name, err)
	}
	// Swapped in, still staged: a retry copies the same contents again.
	d.crash("sqlite.reset.swapped")
	return removeStaged(p)
}

// DiscardReset removes the staged file. SQLite keeps no old contents beside
// the database (the swap overwrote them in place). Absent is success.
func (d *Driver) DiscardReset(_ context.Context, req drivers.ResetRequest) error {
	p, err := d.paths(req.Database.Name)
	if err != nil {
		return err
	}
	return removeStaged(p)
}

func removeStaged(p paths) error {
	for _, f := range sqliteFiles(stagedPath(p)) {
		if err := removeIfExists(f); err != nil {
			return fmt.Errorf("cannot remove the staged reset of %s: %w", p.name, err)
		}
	}
	return nil
}
