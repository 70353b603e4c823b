package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/envplane/envplane/controlplane"
)

const envColumns = `id, org_id, slug, name, description, type, region, target, is_default, is_protected,
	status, error, created_by, metadata, created_at, updated_at, deleted_at, expires_at, expiry_noticed_at`

func scanEnv(s scanner) (*controlplane.Environment, error) {
	var e controlplane.Environment
	var metadata []byte
	if err := s.Scan(&e.ID, &e.OrgID, &e.Slug, &e.Name, &e.Description, &e.Type, &e.Region, &e.Target,
		&e.IsDefault, &e.IsProtected, &e.Status, &e.Error, &e.CreatedBy, &metadata, tm(&e.CreatedAt), tm(&e.UpdatedAt), tmPtr(&e.DeletedAt),
		tmPtr(&e.ExpiresAt), tmPtr(&e.ExpiryNoticedAt)); err != nil {
		return nil, err
	}
	m, err := decodeJSON[map[string]string](metadata)
	if err != nil {
		return nil, err
	}
	e.Metadata = m
	return &e, nil
}

// CreateEnvironment inserts e, truncating its times to microseconds.
// ECONFLICT if a live environment of the organization has the slug, or e is
// a second live default; ENOTFOUND if the organization is absent.
func (q *queries) CreateEnvironment(ctx context.Context, e *controlplane.Environment) error {
	e.CreatedAt, e.UpdatedAt, e.DeletedAt = utc(e.CreatedAt), utc(e.UpdatedAt), utcPtr(e.DeletedAt)
	e.ExpiresAt, e.ExpiryNoticedAt = utcPtr(e.ExpiresAt), utcPtr(e.ExpiryNoticedAt)
	metadata, err := encodeJSON(e.Metadata)
	if err != nil {
		return err
	}
	_, err = q.db.ExecContext(ctx, `INSERT INTO environments (`+envColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`,
		e.ID, e.OrgID, e.Slug, e.Name, e.Description, string(e.Type), e.Region, e.Target, e.IsDefault, e.IsProtected,
		string(e.Status), e.Error, e.CreatedBy, metadata, e.CreatedAt, e.UpdatedAt, e.DeletedAt, e.ExpiresAt, e.ExpiryNoticedAt)
	if err != nil {
		return q.writeErr(err, "create environment",
			"environment slug is taken, or the organization already has a default environment", "organization not found")
	}
	return nil
}

// GetEnvironment finds a live environment of the organization by id or slug.
// ENOTFOUND if absent, deleted or another organization's.
func (q *queries) GetEnvironment(ctx context.Context, orgID, idOrSlug string) (*controlplane.Environment, error) {
	// Written as two conjunctions so the planner looks up the primary key
	// and the live-slug index (on SQLite, a multi-index OR) instead of
	// scanning the organization's environments.
	e, err := scanEnv(q.db.QueryRowContext(ctx, `SELECT `+envColumns+` FROM environments
		WHERE (id = $1 AND org_id = $2 OR org_id = $3 AND slug = $4) AND deleted_at IS NULL
		ORDER BY id = $1 DESC LIMIT 1`, idOrSlug, orgID, orgID, idOrSlug))
	if err != nil {
		return nil, readErr(err, "get environment", "environment not found")
	}
	return e, nil
}

// ListEnvironments lists one organization's environments by id, narrowed by
// f's type, status and target. EINVALID if f.OrgID is empty.
func (q *queries) ListEnvironments(ctx context.Context, f controlplane.EnvironmentFilter, p controlplane.Page) ([]*controlplane.Environment, string, error) {
	if f.OrgID == "" {
		return nil, "", controlplane.Errorf(controlplane.EINVALID, "environment filter needs an organization")
	}
	if f.IDs != nil && len(f.IDs) == 0 {
		return []*controlplane.Environment{}, "", nil
	}
	n := controlplane.PageLimit(p.Limit)
	var a args
	where := "org_id = " + a.add(f.OrgID) + " AND id > " + a.add(p.Cursor)
	if f.IDs != nil {
		where += " AND id " + q.d.in(&a, f.IDs)
	}
	if !f.IncludeDeleted {
		where += " AND deleted_at IS NULL"
	}
	for _, eq := range []struct{ column, value string }{{"type", string(f.Type)}, {"status", string(f.Status)}, {"target", f.Target}} {
		if eq.value != "" {
			where += " AND " + eq.column + " = " + a.add(eq.value)
		}
	}
	envs, err := queryAll(ctx, q.db, `SELECT `+envColumns+` FROM environments WHERE `+where+` ORDER BY id LIMIT `+a.add(n+1), a, scanEnv)
	if err != nil {
		return nil, "", fmt.Errorf("cannot list environments: %w", err)
	}
	envs, next := cutPage(envs, n, func(e *controlplane.Environment) string { return e.ID })
	return envs, next, nil
}

// UpdateEnvironment saves e's settings: name, description, is_protected,
// metadata, expires_at, expiry_noticed_at and updated_at, never its status.
// ENOTFOUND if absent or another organization's.
func (q *queries) UpdateEnvironment(ctx context.Context, e *controlplane.Environment) error {
	e.UpdatedAt = utc(e.UpdatedAt)
	e.ExpiresAt, e.ExpiryNoticedAt = utcPtr(e.ExpiresAt), utcPtr(e.ExpiryNoticedAt)
	metadata, err := encodeJSON(e.Metadata)
	if err != nil {
		return err
	}
	tag, err := q.db.ExecContext(ctx, `UPDATE environments SET name = $1, description = $2, is_protected = $3,
		metadata = $4, expires_at = $5, expiry_noticed_at = $6, updated_at = $7 WHERE org_id = $8 AND id = $9`,
		e.Name, e.Description, e.IsProtected, metadata, e.ExpiresAt, e.ExpiryNoticedAt, e.UpdatedAt, e.OrgID, e.ID)
	if err != nil {
		return q.writeErr(err, "update environment", "environment conflicts", "environment not found")
	}
	return mustAffect(tag, "environment not found")
}

// SetEnvironmentStatus saves status, error, updated_at and deleted_at while
// the stored status is one of from.
func (q *queries) SetEnvironmentStatus(ctx context.Context, e *controlplane.Environment, from ...controlplane.EnvironmentStatus) error {
	e.UpdatedAt, e.DeletedAt = utc(e.UpdatedAt), utcPtr(e.DeletedAt)
	a := args{string(e.Status), e.Error, e.UpdatedAt, e.DeletedAt, e.OrgID, e.ID}
	query := `UPDATE environments SET status = $1, error = $2, updated_at = $3, deleted_at = $4 WHERE org_id = $5 AND id = $6`
	if len(from) > 0 {
		query += ` AND status ` + q.d.in(&a, strs(from))
	}
	tag, err := q.db.ExecContext(ctx, query, a...)
	if err != nil {
		return q.writeErr(err, "set environment status", "environment slug is taken", "environment not found")
	}
	if err := mustAffect(tag, "environment not found"); err != nil {
		var exists bool
		if qerr := q.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM environments WHERE org_id = $1 AND id = $2)`, e.OrgID, e.ID).Scan(&exists); qerr != nil {
			return fmt.Errorf("cannot set environment status: %w", qerr)
		}
		if exists {
			return controlplane.Errorf(controlplane.ECONFLICT, "the environment's status changed meanwhile")
		}
		return err
	}
	return nil
}

// CountEnvironments counts the organization's live environments.
func (q *queries) CountEnvironments(ctx context.Context, orgID string) (int, error) {
	var n int
	// Locking the organization's row serializes concurrent reservations in
	// transactions, so the quota check and the insert agree. SQLite's
	// writer holds the whole database already.
	if lock := q.d.forUpdate(); lock != "" {
		if _, err := q.db.ExecContext(ctx, `SELECT 1 FROM organizations WHERE id = $1`+lock, orgID); err != nil {
			return 0, fmt.Errorf("cannot count environments: %w", err)
		}
	}
	err := q.db.QueryRowContext(ctx, `SELECT count(*) FROM environments WHERE org_id = $1 AND deleted_at IS NULL`, orgID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("cannot count environments: %w", err)
	}
	return n, nil
}

// ListEnvironmentsExpiring lists, across organizations, up to limit live
// environments not being deleted that expire at or before before, soonest
// first; only those without an expiry notice when unnoticed. Protected,
// default and production environments are never listed.
func (q *queries) ListEnvironmentsExpiring(ctx context.Context, before time.Time, unnoticed bool, limit int) ([]*controlplane.Environment, error) {
	where := ""
	if unnoticed {
		where = " AND expiry_noticed_at IS NULL"
	}
	envs, err := queryAll(ctx, q.db, `SELECT `+envColumns+` FROM environments
		WHERE expires_at IS NOT NULL AND deleted_at IS NULL AND expires_at <= $1 AND status <> 'deleting'
		AND NOT is_protected AND NOT is_default AND type <> 'production'`+where+`
		ORDER BY expires_at, id LIMIT $2`,
		[]any{utc(before), controlplane.PageLimit(limit)}, scanEnv)
	if err != nil {
		return nil, fmt.Errorf("cannot list expiring environments: %w", err)
	}
	return envs, nil
}

// NoticeEnvironmentExpiry sets expiry_noticed_at to at if it is unset and
// the environment still expires at expiresAt; true if this call set it.
func (q *queries) NoticeEnvironmentExpiry(ctx context.Context, orgID, id string, expiresAt, at time.Time) (bool, error) {
	tag, err := q.db.ExecContext(ctx, `UPDATE environments SET expiry_noticed_at = $1
		WHERE org_id = $2 AND id = $3 AND expires_at = $4 AND expiry_noticed_at IS NULL`,
		utc(at), orgID, id, utc(expiresAt))
	if err != nil {
		return false, fmt.Errorf("cannot notice environment expiry: %w", err)
	}
	return affected(tag) == 1, nil
}
