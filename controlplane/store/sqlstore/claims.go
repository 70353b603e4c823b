package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/envplane/envplane/controlplane"
)

// The claims of background work: each is one UPDATE of the rows its
// candidate SELECT picks, and the dialect ends that SELECT (skipLocked). On
// PostgreSQL the candidates are locked FOR UPDATE SKIP LOCKED, so concurrent
// claimers, in this process or another replica, pass over each other's rows
// instead of waiting or sharing them; on SQLite the UPDATE takes the single
// write lock, so claimers are serialized and never get the same row.

// ClaimOperations leases to owner, until until, up to limit unfinished
// operations (oldest first) whose lease is free or expired at now and whose
// not_before has passed, and returns them by id.
func (q *queries) ClaimOperations(ctx context.Context, owner string, now, until time.Time, limit int) ([]*controlplane.Operation, error) {
	ops, err := queryAll(ctx, q.db, `UPDATE operations SET lease_owner = $1, lease_expires_at = $2
		WHERE id IN (
			SELECT id FROM operations
			WHERE status IN ('pending', 'running')
				AND (lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= $3)
				AND (not_before IS NULL OR not_before <= $3)
			ORDER BY id LIMIT $4`+q.d.skipLocked("")+`)
		RETURNING `+opColumns, []any{owner, utc(until), utc(now), controlplane.PageLimit(limit)}, scanOperation)
	if err != nil {
		return nil, fmt.Errorf("cannot claim operations: %w", err)
	}
	slices.SortFunc(ops, func(a, b *controlplane.Operation) int { return strings.Compare(a.ID, b.ID) })
	return ops, nil
}

// ClaimRollouts leases due unfinished rollouts whose lease is free or
// expired.
func (q *queries) ClaimRollouts(ctx context.Context, owner string, now, until time.Time, limit int) ([]*controlplane.Rollout, error) {
	rs, err := queryAll(ctx, q.db, `UPDATE rollouts SET lease_owner = $1, lease_expires_at = $2
		WHERE id IN (
			SELECT id FROM rollouts
			WHERE finished_at IS NULL AND status <> 'paused' AND (next_at <= $3 OR status = 'cancelled')
				AND (lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= $3)
			ORDER BY id LIMIT $4`+q.d.skipLocked("")+`)
		RETURNING `+rolloutColumns, []any{owner, utc(until), utc(now), controlplane.PageLimit(limit)}, scanRollout)
	if err != nil {
		return nil, fmt.Errorf("cannot claim rollouts: %w", err)
	}
	slices.SortFunc(rs, func(a, b *controlplane.Rollout) int { return strings.Compare(a.ID, b.ID) })
	return rs, nil
}

// ClaimUsageDue returns up to limit databases due for measurement on the
// named targets, chosen longest due first and returned by id, and makes
// each due again at until.
func (q *queries) ClaimUsageDue(ctx context.Context, now, until time.Time, targets []string, limit int) ([]*controlplane.Database, error) {
	if len(targets) == 0 {
		return []*controlplane.Database{}, nil
	}
	a := args{utc(until), utc(now)}
	targetIn := q.d.in(&a, targets)
	dbs, err := queryAll(ctx, q.db, `UPDATE environment_databases SET usage_due_at = $1
		WHERE id IN (SELECT d.id FROM environment_databases d JOIN environments e ON e.id = d.environment_id
			WHERE d.usage_due_at <= $2 AND d.target `+targetIn+` AND e.status IN ('active', 'suspended')
			ORDER BY d.usage_due_at, d.id LIMIT `+a.add(controlplane.PageLimit(limit))+q.d.skipLocked("d")+`)
		RETURNING `+dbUsageColumns, a, scanDatabaseUsage)
	if err != nil {
		return nil, fmt.Errorf("cannot claim usage measurements: %w", err)
	}
	slices.SortFunc(dbs, func(a, b *controlplane.Database) int { return strings.Compare(a.ID, b.ID) })
	return dbs, nil
}
