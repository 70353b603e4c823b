package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/envplane/envplane/drivers"
)

var _ drivers.Suspender = (*Driver)(nil)

// SuspendDatabase marks the database suspended in its credential registry, so
// Open refuses every credential (ErrDenied) until ResumeDatabase, those
// issued meanwhile included. Credentials survive (CredentialsRevoked is
// false). Pools opened before keep working: a file has no sessions to end
// (adr/0007). An absent database is success; an invalid name is
// ErrUnsupported. Idempotent.
func (d *Driver) SuspendDatabase(ctx context.Context, req drivers.SuspendDatabaseRequest) (drivers.SuspendDatabaseResponse, error) {
	p, err := d.paths(req.Database.Name)
	if err != nil {
		return drivers.SuspendDatabaseResponse{}, err
	}
	if !exists(p.registry) {
		return drivers.SuspendDatabaseResponse{}, nil
	}
	err = withRegistry(p, func(reg *sql.DB) error {
		// Registries made before suspension existed lack the table.
		if _, err := reg.ExecContext(ctx, registrySchema); err != nil {
			return err
		}
		_, err := reg.ExecContext(ctx, `INSERT INTO suspension (id, suspended_at) VALUES (1, ?) ON CONFLICT (id) DO NOTHING`, d.now().UnixNano())
		return err
	})
	if err != nil {
		return drivers.SuspendDatabaseResponse{}, fmt.Errorf("cannot suspend %s: %w", p.name, err)
	}
	return drivers.SuspendDatabaseResponse{}, nil
}

// ResumeDatabase clears the registry's suspension mark: every credential the
// registry holds opens again, with its own secret and expiry. A registry
// holds only live credentials (RevokeCredential deletes), so req.Credentials
// adds nothing here. ErrNotFound when the database does not exist; an invalid
// name is ErrUnsupported. Idempotent.
func (d *Driver) ResumeDatabase(ctx context.Context, req drivers.ResumeDatabaseRequest) (drivers.ResumeDatabaseResponse, error) {
	p, err := d.paths(req.Database.Name)
	if err != nil {
		return drivers.ResumeDatabaseResponse{}, err
	}
	if !exists(p.db) || !exists(p.registry) {
		return drivers.ResumeDatabaseResponse{}, fmt.Errorf("database %s: %w", p.name, drivers.ErrNotFound)
	}
	err = withRegistry(p, func(reg *sql.DB) error {
		if _, err := reg.ExecContext(ctx, registrySchema); err != nil {
			return err
		}
		_, err := reg.ExecContext(ctx, `DELETE FROM suspension`)
		return err
	})
	if err != nil {
		return drivers.ResumeDatabaseResponse{}, fmt.Errorf("cannot resume %s: %w", p.name, err)
	}
	return drivers.ResumeDatabaseResponse{}, nil
}

// isSuspended reports whether the registry carries the suspension mark. A
// registry made before suspension existed has no table for it, and is not
// suspended.
func isSuspended(ctx context.Context, reg *sql.DB) (bool, error) {
	var n int
	err := reg.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'suspension'`).Scan(&n)
	if err != nil || n == 0 {
		return false, err
	}
	err = reg.QueryRowContext(ctx, `SELECT count(*) FROM suspension`).Scan(&n)
	return n > 0, err
}
