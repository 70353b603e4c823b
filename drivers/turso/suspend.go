package turso

import (
	"context"
	"errors"
	"fmt"

	"github.com/envplane/envplane/drivers"
)

var _ drivers.Suspender = (*Driver)(nil)

// SuspendDatabase invalidates every token of the database through the
// Platform API (POST .../databases/{name}/auth/rotate), the one way Turso
// can stop credentials. Tokens cannot be brought back, so the response says
// CredentialsRevoked: the caller records them revoked and issues new ones on
// resume. An absent database is success; repeating it invalidates again,
// which changes nothing for tokens already invalid.
func (d *Driver) SuspendDatabase(ctx context.Context, req drivers.SuspendDatabaseRequest) (drivers.SuspendDatabaseResponse, error) {
	name, err := tursoName(req.Database.Name)
	if err != nil {
		return drivers.SuspendDatabaseResponse{}, err
	}
	if err := d.client.InvalidateDatabaseTokens(ctx, name); err != nil && !errors.Is(err, drivers.ErrNotFound) {
		return drivers.SuspendDatabaseResponse{}, fmt.Errorf("turso: %w", err)
	}
	return drivers.SuspendDatabaseResponse{CredentialsRevoked: true}, nil
}

// ResumeDatabase checks that the database still exists: Turso keeps no
// suspended state, and access comes back with the tokens the caller issues
// next. ErrNotFound when the database is absent. No side effects.
func (d *Driver) ResumeDatabase(ctx context.Context, req drivers.ResumeDatabaseRequest) (drivers.ResumeDatabaseResponse, error) {
	name, err := tursoName(req.Database.Name)
	if err != nil {
		return drivers.ResumeDatabaseResponse{}, err
	}
	if _, err := d.client.GetDatabase(ctx, name); err != nil {
		return drivers.ResumeDatabaseResponse{}, fmt.Errorf("turso: %w", err)
	}
	return drivers.ResumeDatabaseResponse{}, nil
}
