package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
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
	var orgID, leaseOwner sql.NullString
	var waves string
	var created, updated, next int64
	var finished, leaseExpires sql.NullInt64
	if err := s.Scan(&r.ID, &orgID, &r.Version, &waves, &r.Parallelism, &r.Canary, &r.OnError, &r.PauseSeconds,
		&r.Status, &r.Phase, &r.Error, &r.CreatedBy, &created, &updated, &finished, &next, &leaseOwner, &leaseExpires); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(waves), &r.Waves); err != nil {
		return nil, fmt.Errorf("cannot decode rollout waves: %w", err)
	}
	r.OrgID, r.LeaseOwner = orgID.String, leaseOwner.String
	r.CreatedAt, r.UpdatedAt, r.NextAt = fromMicros(created), fromMicros(updated), fromMicros(next)
	r.FinishedAt, r.LeaseExpiresAt = fromNullMicros(finished), fromNullMicros(leaseExpires)
	return &r, nil
}

func scanRolloutItem(s scanner) (*controlplane.RolloutItem, error) {
	var it controlplane.RolloutItem
	var updated int64
	if err := s.Scan(&it.RolloutID, &it.EnvironmentID, &it.OrgID, &it.Environment, &it.Type, &it.Phase, &it.Position,
		&it.Status, &it.Reason, &it.OperationID, &it.SchemaVersion, &updated); err != nil {
		return nil, err
	}
	it.UpdatedAt = fromMicros(updated)
	return &it, nil
}

// CreateRollout inserts r and its items. ECONFLICT if r's scope has an unfinished rollout.
func (q *queries) CreateRollout(ctx context.Context, r *controlplane.Rollout, items []*controlplane.RolloutItem) error {
	r.CreatedAt, r.UpdatedAt, r.NextAt = utc(r.CreatedAt), utc(r.UpdatedAt), utc(r.NextAt)
	r.FinishedAt, r.LeaseExpiresAt = utcPtr(r.FinishedAt), utcPtr(r.LeaseExpiresAt)
	waves, err := json.Marshal(r.Waves)
	if err != nil {
		return fmt.Errorf("cannot encode rollout waves: %w", err)
	}
	_, err = q.db.ExecContext(ctx, `INSERT INTO rollouts (scope, `+rolloutColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		rolloutScope(r.OrgID), r.ID, nullString(r.OrgID), r.Version, string(waves), r.Parallelism, r.Canary, r.OnError,
		r.PauseSeconds, string(r.Status), r.Phase, r.Error, r.CreatedBy, micros(r.CreatedAt), micros(r.UpdatedAt),
		nullMicros(r.FinishedAt), micros(r.NextAt), nullString(r.LeaseOwner), nullMicros(r.LeaseExpiresAt))
	if err != nil {
		return writeErr(err, "create rollout", "an unfinished rollout exists", "organization not found")
	}
	for _, it := range items {
		it.UpdatedAt = utc(it.UpdatedAt)
		_, err := q.db.ExecContext(ctx, `INSERT INTO rollout_items (`+rolloutItemColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.ID, it.EnvironmentID, it.OrgID, it.Environment, string(it.Type), it.Phase, it.Position, string(it.Status),
			it.Reason, it.OperationID, it.SchemaVersion, micros(it.UpdatedAt))
		if err != nil {
			return writeErr(err, "create rollout item", "environment listed twice", "environment not found")
		}
	}
	return nil
}

// GetRollout finds a rollout of the scope. ENOTFOUND if absent or another's.
func (q *queries) GetRollout(ctx context.Context, orgID, id string) (*controlplane.Rollout, error) {
	r, err := scanRollout(q.db.QueryRowContext(ctx, `SELECT `+rolloutColumns+` FROM rollouts WHERE scope = ? AND id = ?`,
		rolloutScope(orgID), id))
	if err != nil {
		return nil, readErr(err, "get rollout", "rollout not found")
	}
	return r, nil
}

// ListRollouts lists the scope's rollouts, newest first.
func (q *queries) ListRollouts(ctx context.Context, orgID string, p controlplane.Page) ([]*controlplane.Rollout, string, error) {
	n := controlplane.PageLimit(p.Limit)
	where, args := "scope = ?", []any{rolloutScope(orgID)}
	if p.Cursor != "" {
		where += " AND id < ?"
		args = append(args, p.Cursor)
	}
	args = append(args, n+1)
	rs, err := queryAll(ctx, q.db, `SELECT `+rolloutColumns+` FROM rollouts WHERE `+where+` ORDER BY id DESC LIMIT ?`, args, scanRollout)
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
		query, args = `SELECT EXISTS (SELECT 1 FROM rollouts WHERE finished_at IS NULL AND scope IN (?, ?))`, []any{orgID, platformScope}
	}
	var busy bool
	if err := q.db.QueryRowContext(ctx, query, args...).Scan(&busy); err != nil {
		return false, fmt.Errorf("cannot look for unfinished rollouts: %w", err)
	}
	return busy, nil
}

// ListRolloutItems lists a rollout's items by position.
func (q *queries) ListRolloutItems(ctx context.Context, rolloutID string) ([]*controlplane.RolloutItem, error) {
	items, err := queryAll(ctx, q.db, `SELECT `+rolloutItemColumns+` FROM rollout_items WHERE rollout_id = ? ORDER BY position`,
		[]any{rolloutID}, scanRolloutItem)
	if err != nil {
		return nil, fmt.Errorf("cannot list rollout items: %w", err)
	}
	return items, nil
}

// UpdateRolloutItem saves the item's outcome. ENOTFOUND if absent.
func (q *queries) UpdateRolloutItem(ctx context.Context, it *controlplane.RolloutItem) error {
	it.UpdatedAt = utc(it.UpdatedAt)
	res, err := q.db.ExecContext(ctx, `UPDATE rollout_items SET status = ?, reason = ?, operation_id = ?, schema_version = ?,
		updated_at = ? WHERE rollout_id = ? AND environment_id = ?`,
		string(it.Status), it.Reason, it.OperationID, it.SchemaVersion, micros(it.UpdatedAt), it.RolloutID, it.EnvironmentID)
	if err != nil {
		return writeErr(err, "update rollout item", "rollout item conflicts", "rollout item not found")
	}
	return mustAffect(res, "update rollout item", "rollout item not found")
}

// SetRolloutStatus saves r's status, error, finished_at and updated_at
// while the rollout is unfinished and its status one of from.
func (q *queries) SetRolloutStatus(ctx context.Context, r *controlplane.Rollout, from ...controlplane.RolloutStatus) error {
	r.UpdatedAt, r.FinishedAt = utc(r.UpdatedAt), utcPtr(r.FinishedAt)
	where, args := "scope = ? AND id = ? AND finished_at IS NULL", []any{rolloutScope(r.OrgID), r.ID}
	if len(from) > 0 {
		list, arg := inList(from)
		where += " AND status IN " + list
		args = append(args, arg)
	}
	res, err := q.db.ExecContext(ctx, `UPDATE rollouts SET status = ?, error = ?, finished_at = ?, updated_at = ?
		WHERE `+where, append([]any{string(r.Status), r.Error, nullMicros(r.FinishedAt), micros(r.UpdatedAt)}, args...)...)
	if err != nil {
		return writeErr(err, "set rollout status", "rollout conflicts", "rollout not found")
	}
	return q.rolloutChanged(ctx, res, "set rollout status", r.OrgID, r.ID, "the rollout's status changed meanwhile")
}

// ClaimRollouts leases due unfinished rollouts whose lease is free or
// expired. One UPDATE takes SQLite's write lock, so claimers are serialized.
func (q *queries) ClaimRollouts(ctx context.Context, owner string, now, until time.Time, limit int) ([]*controlplane.Rollout, error) {
	nowMicros := micros(utc(now))
	rs, err := queryAll(ctx, q.db, `UPDATE rollouts SET lease_owner = ?, lease_expires_at = ?
		WHERE id IN (
			SELECT id FROM rollouts
			WHERE finished_at IS NULL AND status <> 'paused' AND (next_at <= ? OR status = 'cancelled')
				AND (lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= ?)
			ORDER BY id LIMIT ?)
		RETURNING `+rolloutColumns, []any{owner, micros(utc(until)), nowMicros, nowMicros, controlplane.PageLimit(limit)}, scanRollout)
	if err != nil {
		return nil, fmt.Errorf("cannot claim rollouts: %w", err)
	}
	slices.SortFunc(rs, func(a, b *controlplane.Rollout) int { return strings.Compare(a.ID, b.ID) })
	return rs, nil
}

// RenewRolloutLease extends the lease owner holds on an unfinished rollout.
func (q *queries) RenewRolloutLease(ctx context.Context, id, owner string, until time.Time) error {
	res, err := q.db.ExecContext(ctx, `UPDATE rollouts SET lease_expires_at = ?
		WHERE id = ? AND lease_owner = ? AND finished_at IS NULL`, micros(utc(until)), id, owner)
	if err != nil {
		return fmt.Errorf("cannot renew rollout lease: %w", err)
	}
	return q.rolloutLeaseHeld(ctx, res, id)
}

// UpdateRolloutLease saves r's phase, next_at, lease and updated_at while
// r.LeaseOwner holds the lease.
func (q *queries) UpdateRolloutLease(ctx context.Context, r *controlplane.Rollout) error {
	r.UpdatedAt, r.NextAt, r.LeaseExpiresAt = utc(r.UpdatedAt), utc(r.NextAt), utcPtr(r.LeaseExpiresAt)
	res, err := q.db.ExecContext(ctx, `UPDATE rollouts SET phase = ?, next_at = ?, lease_expires_at = ?, updated_at = ?
		WHERE id = ? AND lease_owner = ?`,
		r.Phase, micros(r.NextAt), nullMicros(r.LeaseExpiresAt), micros(r.UpdatedAt), r.ID, r.LeaseOwner)
	if err != nil {
		return fmt.Errorf("cannot update rollout lease: %w", err)
	}
	return q.rolloutLeaseHeld(ctx, res, r.ID)
}

// rolloutLeaseHeld is nil when res changed the rollout, ENOTFOUND when it
// is absent and ECONFLICT when another owner holds it.
func (q *queries) rolloutLeaseHeld(ctx context.Context, res sql.Result, id string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("cannot update rollout lease: %w", err)
	}
	if n > 0 {
		return nil
	}
	var one int
	if err := q.db.QueryRowContext(ctx, `SELECT 1 FROM rollouts WHERE id = ?`, id).Scan(&one); err != nil {
		return readErr(err, "update rollout lease", "rollout not found")
	}
	return controlplane.Errorf(controlplane.ECONFLICT, "the rollout is leased by another owner")
}

// rolloutChanged is nil when res changed the rollout, ENOTFOUND when it
// is absent and ECONFLICT with conflict otherwise.
func (q *queries) rolloutChanged(ctx context.Context, res sql.Result, action, orgID, id, conflict string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("cannot %s: %w", action, err)
	}
	if n > 0 {
		return nil
	}
	if _, err := q.GetRollout(ctx, orgID, id); err != nil {
		return err
	}
	return controlplane.Errorf(controlplane.ECONFLICT, "%s", conflict)
}
