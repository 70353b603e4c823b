package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/envplane/envplane/controlplane"
)

const rolloutColumns = `id, org_id, version, waves, parallelism, canary, on_error, pause_seconds, status, phase, error,
	created_by, created_at, updated_at, finished_at, next_at, lease_owner, lease_expires_at`

const rolloutItemColumns = `rollout_id, environment_id, org_id, environment, type, phase, position, status, reason,
	operation_id, schema_version, updated_at`

// platformScope is the scope column of platform-wide rollouts.
const platformScope = "*"

func rolloutScope(orgID string) string {
	if orgID == "" {
		return platformScope
	}
	return orgID
}

func scanRollout(s scanner) (*controlplane.Rollout, error) {
	var r controlplane.Rollout
	var orgID, leaseOwner *string
	var waves []byte
	if err := s.Scan(&r.ID, &orgID, &r.Version, &waves, &r.Parallelism, &r.Canary, &r.OnError, &r.PauseSeconds,
		&r.Status, &r.Phase, &r.Error, &r.CreatedBy, tm(&r.CreatedAt), tm(&r.UpdatedAt), tmPtr(&r.FinishedAt), tm(&r.NextAt), &leaseOwner,
		tmPtr(&r.LeaseExpiresAt)); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(waves, &r.Waves); err != nil {
		return nil, fmt.Errorf("cannot decode rollout waves: %w", err)
	}
	r.OrgID, r.LeaseOwner = deref(orgID), deref(leaseOwner)
	return &r, nil
}

func scanRolloutItem(s scanner) (*controlplane.RolloutItem, error) {
	var it controlplane.RolloutItem
	if err := s.Scan(&it.RolloutID, &it.EnvironmentID, &it.OrgID, &it.Environment, &it.Type, &it.Phase, &it.Position,
		&it.Status, &it.Reason, &it.OperationID, &it.SchemaVersion, tm(&it.UpdatedAt)); err != nil {
		return nil, err
	}
	return &it, nil
}

// CreateRollout inserts r and its items.
// ECONFLICT if r's scope has an unfinished rollout.
func (q *queries) CreateRollout(ctx context.Context, r *controlplane.Rollout, items []*controlplane.RolloutItem) error {
	r.CreatedAt, r.UpdatedAt, r.NextAt = utc(r.CreatedAt), utc(r.UpdatedAt), utc(r.NextAt)
	r.FinishedAt, r.LeaseExpiresAt = utcPtr(r.FinishedAt), utcPtr(r.LeaseExpiresAt)
	waves, err := json.Marshal(r.Waves)
	if err != nil {
		return fmt.Errorf("cannot encode rollout waves: %w", err)
	}
	_, err = q.db.ExecContext(ctx, `INSERT INTO rollouts (scope, `+rolloutColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`,
		rolloutScope(r.OrgID), r.ID, nullString(r.OrgID), r.Version, string(waves), r.Parallelism, r.Canary, r.OnError,
		r.PauseSeconds, string(r.Status), r.Phase, r.Error, r.CreatedBy, r.CreatedAt, r.UpdatedAt, r.FinishedAt, r.NextAt,
		nullString(r.LeaseOwner), r.LeaseExpiresAt)
	if err != nil {
		return q.writeErr(err, "create rollout", "an unfinished rollout exists", "organization not found")
	}
	if len(items) == 0 {
		return nil
	}
	for _, it := range items {
		it.UpdatedAt = utc(it.UpdatedAt)
	}
	if err := q.d.insertRolloutItems(ctx, q, r.ID, items); err != nil {
		return q.writeErr(err, "create rollout items", "environment listed twice", "environment not found")
	}
	return nil
}

// GetRollout finds a rollout of the scope. ENOTFOUND if absent or another's.
func (q *queries) GetRollout(ctx context.Context, orgID, id string) (*controlplane.Rollout, error) {
	r, err := scanRollout(q.db.QueryRowContext(ctx, `SELECT `+rolloutColumns+` FROM rollouts WHERE scope = $1 AND id = $2`,
		rolloutScope(orgID), id))
	if err != nil {
		return nil, readErr(err, "get rollout", "rollout not found")
	}
	return r, nil
}

// ListRollouts lists the scope's rollouts, newest first.
func (q *queries) ListRollouts(ctx context.Context, orgID string, p controlplane.Page) ([]*controlplane.Rollout, string, error) {
	n := controlplane.PageLimit(p.Limit)
	var a args
	where := "scope = " + a.add(rolloutScope(orgID))
	if p.Cursor != "" {
		where += " AND id < " + a.add(p.Cursor)
	}
	rs, err := queryAll(ctx, q.db, `SELECT `+rolloutColumns+` FROM rollouts WHERE `+where+` ORDER BY id DESC LIMIT `+a.add(n+1), a, scanRollout)
	if err != nil {
		return nil, "", fmt.Errorf("cannot list rollouts: %w", err)
	}
	rs, next := cutPage(rs, n, func(r *controlplane.Rollout) string { return r.ID })
	return rs, next, nil
}

// HasUnfinishedRollout reports whether a rollout is unfinished: any, or
// with orgID set, the organization's or a platform-wide one.
func (q *queries) HasUnfinishedRollout(ctx context.Context, orgID string) (bool, error) {
	query, args := `SELECT EXISTS (SELECT 1 FROM rollouts WHERE finished_at IS NULL)`, []any{}
	if orgID != "" {
		query, args = `SELECT EXISTS (SELECT 1 FROM rollouts WHERE finished_at IS NULL AND scope IN ($1, $2))`, []any{orgID, platformScope}
	}
	var busy bool
	if err := q.db.QueryRowContext(ctx, query, args...).Scan(&busy); err != nil {
		return false, fmt.Errorf("cannot look for unfinished rollouts: %w", err)
	}
	return busy, nil
}

// ListRolloutItems lists a rollout's items by position.
func (q *queries) ListRolloutItems(ctx context.Context, rolloutID string) ([]*controlplane.RolloutItem, error) {
	items, err := queryAll(ctx, q.db, `SELECT `+rolloutItemColumns+` FROM rollout_items WHERE rollout_id = $1 ORDER BY position`,
		[]any{rolloutID}, scanRolloutItem)
	if err != nil {
		return nil, fmt.Errorf("cannot list rollout items: %w", err)
	}
	return items, nil
}

// UpdateRolloutItem saves the item's outcome. ENOTFOUND if absent.
func (q *queries) UpdateRolloutItem(ctx context.Context, it *controlplane.RolloutItem) error {
	it.UpdatedAt = utc(it.UpdatedAt)
	tag, err := q.db.ExecContext(ctx, `UPDATE rollout_items SET status = $1, reason = $2, operation_id = $3, schema_version = $4,
		updated_at = $5 WHERE rollout_id = $6 AND environment_id = $7`,
		string(it.Status), it.Reason, it.OperationID, it.SchemaVersion, it.UpdatedAt, it.RolloutID, it.EnvironmentID)
	if err != nil {
		return q.writeErr(err, "update rollout item", "rollout item conflicts", "rollout item not found")
	}
	return mustAffect(tag, "rollout item not found")
}

// SetRolloutStatus saves r's status, error, finished_at and updated_at
// while the rollout is unfinished and its status one of from.
func (q *queries) SetRolloutStatus(ctx context.Context, r *controlplane.Rollout, from ...controlplane.RolloutStatus) error {
	r.UpdatedAt, r.FinishedAt = utc(r.UpdatedAt), utcPtr(r.FinishedAt)
	var a args
	set := "status = " + a.add(string(r.Status)) + ", error = " + a.add(r.Error) + ", finished_at = " + a.add(r.FinishedAt) +
		", updated_at = " + a.add(r.UpdatedAt)
	where := "scope = " + a.add(rolloutScope(r.OrgID)) + " AND id = " + a.add(r.ID) + " AND finished_at IS NULL"
	if len(from) > 0 {
		where += " AND status " + q.d.in(&a, strs(from))
	}
	tag, err := q.db.ExecContext(ctx, `UPDATE rollouts SET `+set+` WHERE `+where, a...)
	if err != nil {
		return q.writeErr(err, "set rollout status", "rollout conflicts", "rollout not found")
	}
	if affected(tag) > 0 {
		return nil
	}
	if _, err := q.GetRollout(ctx, r.OrgID, r.ID); err != nil {
		return err
	}
	return controlplane.Errorf(controlplane.ECONFLICT, "the rollout's status changed meanwhile")
}

// RenewRolloutLease extends the lease owner holds on an unfinished rollout.
func (q *queries) RenewRolloutLease(ctx context.Context, id, owner string, until time.Time) error {
	tag, err := q.db.ExecContext(ctx, `UPDATE rollouts SET lease_expires_at = $1
		WHERE id = $2 AND lease_owner = $3 AND finished_at IS NULL`, utc(until), id, owner)
	if err != nil {
		return fmt.Errorf("cannot renew rollout lease: %w", err)
	}
	return q.rolloutLeaseHeld(ctx, tag, id)
}

// UpdateRolloutLease saves r's phase, next_at, lease and updated_at while
// r.LeaseOwner holds the lease.
func (q *queries) UpdateRolloutLease(ctx context.Context, r *controlplane.Rollout) error {
	r.UpdatedAt, r.NextAt, r.LeaseExpiresAt = utc(r.UpdatedAt), utc(r.NextAt), utcPtr(r.LeaseExpiresAt)
	tag, err := q.db.ExecContext(ctx, `UPDATE rollouts SET phase = $1, next_at = $2, lease_expires_at = $3, updated_at = $4
		WHERE id = $5 AND lease_owner = $6`, r.Phase, r.NextAt, r.LeaseExpiresAt, r.UpdatedAt, r.ID, r.LeaseOwner)
	if err != nil {
		return fmt.Errorf("cannot update rollout lease: %w", err)
	}
	return q.rolloutLeaseHeld(ctx, tag, r.ID)
}

// rolloutLeaseHeld is nil when tag changed the rollout, ENOTFOUND when it
// is absent and ECONFLICT when another owner holds it.
func (q *queries) rolloutLeaseHeld(ctx context.Context, tag sql.Result, id string) error {
	if affected(tag) > 0 {
		return nil
	}
	var one int
	if err := q.db.QueryRowContext(ctx, `SELECT 1 FROM rollouts WHERE id = $1`, id).Scan(&one); err != nil {
		return readErr(err, "update rollout lease", "rollout not found")
	}
	return controlplane.Errorf(controlplane.ECONFLICT, "the rollout is leased by another owner")
}
