package sqlstore

import (
	"context"
	"fmt"

	"github.com/envplane/envplane/controlplane"
)

const dbColumns = `id, environment_id, database_name, driver, target, region, url, storage_limit_mb,
	schema_version, provisioned_at, last_accessed_at, metadata`

func scanDatabase(s scanner) (*controlplane.Database, error) {
	var d controlplane.Database
	var metadata []byte
	if err := s.Scan(&d.ID, &d.EnvironmentID, &d.Name, &d.Driver, &d.Target, &d.Region, &d.URL, &d.StorageLimitMB,
		&d.SchemaVersion, tmPtr(&d.ProvisionedAt), tmPtr(&d.LastAccessedAt), &metadata); err != nil {
		return nil, err
	}
	m, err := decodeJSON[map[string]string](metadata)
	if err != nil {
		return nil, err
	}
	d.Metadata = m
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
	_, err = q.db.ExecContext(ctx, `INSERT INTO environment_databases (`+dbColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		d.ID, d.EnvironmentID, d.Name, d.Driver, d.Target, d.Region, d.URL, d.StorageLimitMB, d.SchemaVersion,
		d.ProvisionedAt, d.LastAccessedAt, metadata)
	if err != nil {
		return q.writeErr(err, "create database", "environment already has a database, or the name is taken", "environment not found")
	}
	return nil
}

// GetDatabase finds a database by id. ENOTFOUND if absent.
func (q *queries) GetDatabase(ctx context.Context, id string) (*controlplane.Database, error) {
	d, err := scanDatabaseUsage(q.db.QueryRowContext(ctx, `SELECT `+dbUsageColumns+` FROM environment_databases WHERE id = $1`, id))
	if err != nil {
		return nil, readErr(err, "get database", "database not found")
	}
	return d, nil
}

// GetEnvironmentDatabase finds the environment's database. ENOTFOUND if absent.
func (q *queries) GetEnvironmentDatabase(ctx context.Context, environmentID string) (*controlplane.Database, error) {
	d, err := scanDatabaseUsage(q.db.QueryRowContext(ctx, `SELECT `+dbUsageColumns+` FROM environment_databases WHERE environment_id = $1`, environmentID))
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
	tag, err := q.db.ExecContext(ctx, `UPDATE environment_databases SET url = $1, schema_version = $2, provisioned_at = $3,
		last_accessed_at = $4, metadata = $5 WHERE id = $6`,
		d.URL, d.SchemaVersion, d.ProvisionedAt, d.LastAccessedAt, metadata, d.ID)
	if err != nil {
		return fmt.Errorf("cannot update database: %w", err)
	}
	return mustAffect(tag, "database not found")
}

// CountDatabasesByTarget counts the databases of live environments per target,
// from org_target_usage (kept by triggers, migration 00009).
func (q *queries) CountDatabasesByTarget(ctx context.Context) (map[string]int, error) {
	counts, err := queryCounts(ctx, q.db, `SELECT target, CAST(sum(databases) AS BIGINT) FROM org_target_usage
		GROUP BY target HAVING sum(databases) > 0`)
	if err != nil {
		return nil, fmt.Errorf("cannot count databases: %w", err)
	}
	return counts, nil
}
