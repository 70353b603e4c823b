package sqlstore

import (
	"context"
	"fmt"

	"github.com/envplane/envplane/controlplane"
)

// ListEnvironmentDatabases returns the databases of the environments, in one
// statement.
func (q *queries) ListEnvironmentDatabases(ctx context.Context, environmentIDs []string) ([]*controlplane.Database, error) {
	if len(environmentIDs) == 0 {
		return []*controlplane.Database{}, nil
	}
	var a args
	dbs, err := queryAll(ctx, q.db, `SELECT `+dbUsageColumns+` FROM environment_databases WHERE environment_id `+q.d.in(&a, environmentIDs),
		a, scanDatabaseUsage)
	if err != nil {
		return nil, fmt.Errorf("cannot list databases: %w", err)
	}
	return dbs, nil
}
