package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/envplane/envplane/controlplane"
)

// dbUsageColumns are a database's columns with its last measurement and
// over-limit flag, in the order scanDatabaseUsage reads them.
const dbUsageColumns = dbColumns + `, usage_bytes, usage_tables, usage_connections, usage_measured_at, over_limit`

func scanDatabaseUsage(s scanner) (*controlplane.Database, error) {
	var d controlplane.Database
	var metadata []byte
	var bytes, tables, conns *int64
	var measured *time.Time
	if err := s.Scan(&d.ID, &d.EnvironmentID, &d.Name, &d.Driver, &d.Target, &d.Region, &d.URL, &d.StorageLimitMB,
		&d.SchemaVersion, tmPtr(&d.ProvisionedAt), tmPtr(&d.LastAccessedAt), &metadata, &bytes, &tables, &conns, tmPtr(&measured), &d.OverLimit); err != nil {
		return nil, err
	}
	m, err := decodeJSON[map[string]string](metadata)
	if err != nil {
		return nil, err
	}
	d.Metadata = m
	if measured != nil {
		d.Usage = &controlplane.Usage{Tables: tables, Connections: conns, MeasuredAt: *measured}
		if bytes != nil {
			d.Usage.SizeBytes = *bytes
		}
	}
	return &d, nil
}

// RecordUsage saves u as the database's last measurement. ENOTFOUND if absent.
func (q *queries) RecordUsage(ctx context.Context, databaseID string, u *controlplane.Usage) error {
	u.MeasuredAt = utc(u.MeasuredAt)
	tag, err := q.db.ExecContext(ctx, `UPDATE environment_databases SET usage_bytes = $1, usage_tables = $2,
		usage_connections = $3, usage_measured_at = $4 WHERE id = $5`,
		u.SizeBytes, u.Tables, u.Connections, u.MeasuredAt, databaseID)
	if err != nil {
		return fmt.Errorf("cannot record usage: %w", err)
	}
	return mustAffect(tag, "database not found")
}

// SetOverLimit sets the over-limit flag, only while it differs. ECONFLICT
// if it already is over; ENOTFOUND if absent.
func (q *queries) SetOverLimit(ctx context.Context, databaseID string, over bool) error {
	tag, err := q.db.ExecContext(ctx, `UPDATE environment_databases SET over_limit = $1 WHERE id = $2 AND over_limit <> $1`,
		over, databaseID)
	if err != nil {
		return fmt.Errorf("cannot set over-limit flag: %w", err)
	}
	if affected(tag) > 0 {
		return nil
	}
	if _, err := q.GetDatabase(ctx, databaseID); err != nil {
		return err
	}
	return controlplane.Errorf(controlplane.ECONFLICT, "the over-limit flag is already %v", over)
}

// SetStorageLimit saves storage_limit_mb and makes the usage due at due.
// ENOTFOUND if absent.
func (q *queries) SetStorageLimit(ctx context.Context, databaseID string, limitMB int, due time.Time) error {
	tag, err := q.db.ExecContext(ctx, `UPDATE environment_databases SET storage_limit_mb = $1, usage_due_at = $2 WHERE id = $3`,
		limitMB, utc(due), databaseID)
	if err != nil {
		return fmt.Errorf("cannot set storage limit: %w", err)
	}
	return mustAffect(tag, "database not found")
}

const usageSums = `count(d.usage_measured_at), CAST(coalesce(sum(d.usage_bytes), 0) AS BIGINT),
	CAST(coalesce(sum(d.usage_tables), 0) AS BIGINT), count(*) FILTER (WHERE d.over_limit)`

// SumUsage sums the organization's live environments' measurements per type.
func (q *queries) SumUsage(ctx context.Context, orgID string, envIDs []string) ([]*controlplane.UsageTotal, error) {
	var a args
	where := `e.org_id = ` + a.add(orgID) + ` AND e.deleted_at IS NULL`
	if envIDs != nil {
		where += ` AND e.id ` + q.d.in(&a, envIDs)
	}
	totals, err := queryAll(ctx, q.db, `SELECT e.type, count(*), `+usageSums+`
		FROM environments e LEFT JOIN environment_databases d ON d.environment_id = e.id
		WHERE `+where+` GROUP BY e.type ORDER BY e.type`, a, func(s scanner) (*controlplane.UsageTotal, error) {
		var t controlplane.UsageTotal
		return &t, s.Scan(&t.Type, &t.Environments, &t.Measured, &t.SizeBytes, &t.Tables, &t.OverLimit)
	})
	if err != nil {
		return nil, fmt.Errorf("cannot sum usage: %w", err)
	}
	return totals, nil
}

// SumUsageByOrg sums live environments' measurements per organization, from
// org_target_usage (kept by triggers, migration 00009): as many rows as
// organizations and targets, not environments.
func (q *queries) SumUsageByOrg(ctx context.Context) ([]*controlplane.OrgUsageTotal, error) {
	totals, err := queryAll(ctx, q.db, `SELECT o.slug, CAST(sum(u.usage_bytes) AS BIGINT), CAST(sum(u.over_limit) AS BIGINT)
		FROM org_target_usage u JOIN organizations o ON o.id = u.org_id
		GROUP BY o.slug HAVING sum(u.databases) > 0 ORDER BY o.slug`, nil, func(s scanner) (*controlplane.OrgUsageTotal, error) {
		var t controlplane.OrgUsageTotal
		return &t, s.Scan(&t.OrgSlug, &t.SizeBytes, &t.OverLimit)
	})
	if err != nil {
		return nil, fmt.Errorf("cannot sum usage by organization: %w", err)
	}
	return totals, nil
}
