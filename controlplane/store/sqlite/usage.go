package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/envplane/envplane/controlplane"
)

// dbUsageColumns are a database's columns with its last measurement and
// over-limit flag, in the order scanDatabaseUsage reads them.
const dbUsageColumns = dbColumns + `, usage_bytes, usage_tables, usage_connections, usage_measured_at, over_limit`

func scanDatabaseUsage(s scanner) (*controlplane.Database, error) {
	var d controlplane.Database
	var provisioned, accessed, bytes, tables, conns, measured sql.NullInt64
	var metadata sql.NullString
	if err := s.Scan(&d.ID, &d.EnvironmentID, &d.Name, &d.Driver, &d.Target, &d.Region, &d.URL, &d.StorageLimitMB,
		&d.SchemaVersion, &provisioned, &accessed, &metadata, &bytes, &tables, &conns, &measured, &d.OverLimit); err != nil {
		return nil, err
	}
	m, err := decodeJSON[map[string]string](metadata)
	if err != nil {
		return nil, err
	}
	d.Metadata = m
	d.ProvisionedAt, d.LastAccessedAt = fromNullMicros(provisioned), fromNullMicros(accessed)
	if measured.Valid {
		d.Usage = &controlplane.Usage{SizeBytes: bytes.Int64, Tables: nullInt(tables), Connections: nullInt(conns), MeasuredAt: fromMicros(measured.Int64)}
	}
	return &d, nil
}

func nullInt(v sql.NullInt64) *int64 {
	if !v.Valid {
		return nil
	}
	return &v.Int64
}

// ClaimUsageDue returns up to limit databases due for measurement on the
// named targets, chosen longest due first and returned by id, and makes
// each due again at until.
func (q *queries) ClaimUsageDue(ctx context.Context, now, until time.Time, targets []string, limit int) ([]*controlplane.Database, error) {
	if len(targets) == 0 {
		return []*controlplane.Database{}, nil
	}
	list, arg := inList(targets)
	dbs, err := queryAll(ctx, q.db, `UPDATE environment_databases SET usage_due_at = ?
		WHERE id IN (SELECT d.id FROM environment_databases d JOIN environments e ON e.id = d.environment_id
			WHERE d.usage_due_at <= ? AND d.target IN `+list+` AND e.status IN ('active', 'suspended')
			ORDER BY d.usage_due_at, d.id LIMIT ?)
		RETURNING `+dbUsageColumns,
		[]any{micros(utc(until)), micros(utc(now)), arg, controlplane.PageLimit(limit)}, scanDatabaseUsage)
	if err != nil {
		return nil, fmt.Errorf("cannot claim usage measurements: %w", err)
	}
	slices.SortFunc(dbs, func(a, b *controlplane.Database) int { return strings.Compare(a.ID, b.ID) })
	return dbs, nil
}

// RecordUsage saves u as the database's last measurement. ENOTFOUND if absent.
func (q *queries) RecordUsage(ctx context.Context, databaseID string, u *controlplane.Usage) error {
	u.MeasuredAt = utc(u.MeasuredAt)
	res, err := q.db.ExecContext(ctx, `UPDATE environment_databases SET usage_bytes = ?, usage_tables = ?,
		usage_connections = ?, usage_measured_at = ? WHERE id = ?`,
		u.SizeBytes, u.Tables, u.Connections, micros(u.MeasuredAt), databaseID)
	if err != nil {
		return fmt.Errorf("cannot record usage: %w", err)
	}
	return mustAffect(res, "record usage", "database not found")
}

// SetOverLimit sets the over-limit flag, only while it differs. ECONFLICT
// if it already is over; ENOTFOUND if absent.
func (q *queries) SetOverLimit(ctx context.Context, databaseID string, over bool) error {
	res, err := q.db.ExecContext(ctx, `UPDATE environment_databases SET over_limit = ? WHERE id = ? AND over_limit <> ?`,
		over, databaseID, over)
	if err != nil {
		return fmt.Errorf("cannot set over-limit flag: %w", err)
	}
	if err := mustAffect(res, "set over-limit flag", "database not found"); err == nil {
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
	res, err := q.db.ExecContext(ctx, `UPDATE environment_databases SET storage_limit_mb = ?, usage_due_at = ? WHERE id = ?`,
		limitMB, micros(utc(due)), databaseID)
	if err != nil {
		return fmt.Errorf("cannot set storage limit: %w", err)
	}
	return mustAffect(res, "set storage limit", "database not found")
}

const usageSums = `count(d.usage_measured_at), coalesce(sum(d.usage_bytes), 0),
	coalesce(sum(d.usage_tables), 0), coalesce(sum(d.over_limit), 0)`

// SumUsage sums the organization's live environments' measurements per type.
func (q *queries) SumUsage(ctx context.Context, orgID string, envIDs []string) ([]*controlplane.UsageTotal, error) {
	where, args := `e.org_id = ? AND e.deleted_at IS NULL`, []any{orgID}
	if envIDs != nil {
		list, arg := inList(envIDs)
		where += ` AND e.id IN ` + list
		args = append(args, arg)
	}
	totals, err := queryAll(ctx, q.db, `SELECT e.type, count(*), `+usageSums+`
		FROM environments e LEFT JOIN environment_databases d ON d.environment_id = e.id
		WHERE `+where+` GROUP BY e.type ORDER BY e.type`, args, func(s scanner) (*controlplane.UsageTotal, error) {
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
	totals, err := queryAll(ctx, q.db, `SELECT o.slug, sum(u.usage_bytes), sum(u.over_limit)
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
