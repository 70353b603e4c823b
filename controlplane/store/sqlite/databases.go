package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/envplane/envplane/controlplane"
)

const dbColumns = `id, environment_id, database_name, driver, target, region, url, storage_limit_mb,
	schema_version, provisioned_at, last_accessed_at, metadata`

func scanDatabase(s scanner) (*controlplane.Database, error) {
	var d controlplane.Database
	var provisioned, accessed sql.NullInt64
	var metadata sql.NullString
	if err := s.Scan(&d.ID, &d.EnvironmentID, &d.Name, &d.Driver, &d.Target, &d.Region, &d.URL, &d.StorageLimitMB,
		&d.SchemaVersion, &provisioned, &accessed, &metadata); err != nil {
		return nil, err
	}
	m, err := decodeJSON[map[string]string](metadata)
	if err != nil {
		return nil, err
	}
	d.Metadata = m
	d.ProvisionedAt, d.LastAccessedAt = fromNullMicros(provisioned), fromNullMicros(accessed)
	return &d, nil
}

// CreateDatabase inserts d, truncating its times to microseconds. ECONFLICT
// if the environment has a database or the name is taken; ENOTFOUND if the
// environment is absent.
func (q *queries) CreateDatabase(ctx context.Context, d *controlplane.Database) error {
	d.ProvisionedAt, d.LastAccessedAt = utcPtr(d.ProvisionedAt), utcPtr(d.LastAccessedAt)
	metadata, err := encodeJSON(d.Metadata)
	if err != nil {
		return err
	}
	_, err = q.db.ExecContext(ctx, `INSERT INTO environment_databases (`+dbColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		d.ID, d.EnvironmentID, d.Name, d.Driver, d.Target, d.Region, d.URL, d.StorageLimitMB, d.SchemaVersion,
		nullMicros(d.ProvisionedAt), nullMicros(d.LastAccessedAt), metadata)
	if err != nil {
		return writeErr(err, "create database", "environment already has a database, or the name is taken", "environment not found")
	}
	return nil
}

// GetDatabase finds a database by id. ENOTFOUND if absent.
func (q *queries) GetDatabase(ctx context.Context, id string) (*controlplane.Database, error) {
	d, err := scanDatabaseUsage(q.db.QueryRowContext(ctx, `SELECT `+dbUsageColumns+` FROM environment_databases WHERE id = ?`, id))
	if err != nil {
		return nil, readErr(err, "get database", "database not found")
	}
	return d, nil
}

// GetEnvironmentDatabase finds the environment's database. ENOTFOUND if absent.
func (q *queries) GetEnvironmentDatabase(ctx context.Context, environmentID string) (*controlplane.Database, error) {
	d, err := scanDatabaseUsage(q.db.QueryRowContext(ctx, `SELECT `+dbUsageColumns+` FROM environment_databases WHERE environment_id = ?`, environmentID))
	if err != nil {
		return nil, readErr(err, "get database", "database not found")
	}
	return d, nil
}

// UpdateDatabase saves d's url, schema_version, provisioned_at,
// last_accessed_at and metadata. ENOTFOUND if absent.
func (q *queries) UpdateDatabase(ctx context.Context, d *controlplane.Database) error {
	d.ProvisionedAt, d.LastAccessedAt = utcPtr(d.ProvisionedAt), utcPtr(d.LastAccessedAt)
	metadata, err := encodeJSON(d.Metadata)
	if err != nil {
		return err
	}
	res, err := q.db.ExecContext(ctx, `UPDATE environment_databases SET url = ?, schema_version = ?, provisioned_at = ?,
		last_accessed_at = ?, metadata = ? WHERE id = ?`,
		d.URL, d.SchemaVersion, nullMicros(d.ProvisionedAt), nullMicros(d.LastAccessedAt), metadata, d.ID)
	if err != nil {
		return fmt.Errorf("cannot update database: %w", err)
	}
	return mustAffect(res, "update database", "database not found")
}

// CountDatabasesByTarget counts the databases of live environments per target,
// from org_target_usage (kept by triggers, migration 00009).
func (q *queries) CountDatabasesByTarget(ctx context.Context) (map[string]int, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT target, sum(databases) FROM org_target_usage
		GROUP BY target HAVING sum(databases) > 0`)
	if err != nil {
		return nil, fmt.Errorf("cannot count databases: %w", err)
	}
	return scanCounts(rows, "count databases")
}

// scanCounts reads (key, count) rows into a map and closes them.
func scanCounts(rows *sql.Rows, action string) (map[string]int, error) {
	defer rows.Close()
	counts := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			return nil, fmt.Errorf("cannot %s: %w", action, err)
		}
		counts[k] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot %s: %w", action, err)
	}
	return counts, nil
}
