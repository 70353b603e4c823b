package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/envplane/envplane/controlplane"
)

const envColumns = `id, org_id, slug, name, description, type, region, target, is_default, is_protected,
	status, error, created_by, metadata, created_at, updated_at, deleted_at, expires_at, expiry_noticed_at`

func scanEnv(s scanner) (*controlplane.Environment, error) {
	var e controlplane.Environment
	var metadata sql.NullString
	var created, updated int64
	var deleted, expires, noticed sql.NullInt64
	if err := s.Scan(&e.ID, &e.OrgID, &e.Slug, &e.Name, &e.Description, &e.Type, &e.Region, &e.Target,
		&e.IsDefault, &e.IsProtected, &e.Status, &e.Error, &e.CreatedBy, &metadata, &created, &updated, &deleted,
		&expires, &noticed); err != nil {
		return nil, err
	}
	m, err := decodeJSON[map[string]string](metadata)
	if err != nil {
		return nil, err
	}
	e.Metadata = m
	e.CreatedAt, e.UpdatedAt, e.DeletedAt = fromMicros(created), fromMicros(updated), fromNullMicros(deleted)
	e.ExpiresAt, e.ExpiryNoticedAt = fromNullMicros(expires), fromNullMicros(noticed)
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
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.ID, e.OrgID, e.Slug, e.Name, e.Description, string(e.Type), e.Region, e.Target, e.IsDefault, e.IsProtected,
		string(e.Status), e.Error, e.CreatedBy, metadata, micros(e.CreatedAt), micros(e.UpdatedAt), nullMicros(e.DeletedAt),
		nullMicros(e.ExpiresAt), nullMicros(e.ExpiryNoticedAt))
	if err != nil {
		return writeErr(err, "create environment",
			"environment slug is taken, or the organization already has a default environment", "organization not found")
	}
	return nil
}

// GetEnvironment finds a live environment of the organization by id or slug.
// ENOTFOUND if absent, deleted or another organization's.
func (q *queries) GetEnvironment(ctx context.Context, orgID, idOrSlug string) (*controlplane.Environment, error) {
	// Written as two conjunctions so SQLite looks up the primary key and the
	// live-slug index (a multi-index OR) instead of scanning the
	// organization's environments.
	e, err := scanEnv(q.db.QueryRowContext(ctx, `SELECT `+envColumns+` FROM environments
		WHERE (id = ? AND org_id = ? OR org_id = ? AND slug = ?) AND deleted_at IS NULL
		ORDER BY id = ? DESC LIMIT 1`,
		idOrSlug, orgID, orgID, idOrSlug, idOrSlug))
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
	where, args := "org_id = ? AND id > ?", []any{f.OrgID, p.Cursor}
	if f.IDs != nil {
		list, arg := inList(f.IDs)
		where += " AND id IN " + list
		args = append(args, arg)
	}
	if !f.IncludeDeleted {
		where += " AND deleted_at IS NULL"
	}
	for _, eq := range []struct{ column, value string }{{"type", string(f.Type)}, {"status", string(f.Status)}, {"target", f.Target}} {
		if eq.value != "" {
			where += " AND " + eq.column + " = ?"
			args = append(args, eq.value)
		}
	}
	args = append(args, n+1)
	envs, err := queryAll(ctx, q.db, `SELECT `+envColumns+` FROM environments WHERE `+where+` ORDER BY id LIMIT ?`, args, scanEnv)
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
	res, err := q.db.ExecContext(ctx, `UPDATE environments SET name = ?, description = ?, is_protected = ?,
		metadata = ?, expires_at = ?, expiry_noticed_at = ?, updated_at = ? WHERE org_id = ? AND id = ?`,
		e.Name, e.Description, e.IsProtected, metadata, nullMicros(e.ExpiresAt), nullMicros(e.ExpiryNoticedAt),
		micros(e.UpdatedAt), e.OrgID, e.ID)
	if err != nil {
		return writeErr(err, "update environment", "environment conflicts", "environment not found")
	}
	return mustAffect(res, "update environment", "environment not found")
}

// SetEnvironmentStatus saves status, error, updated_at and deleted_at while
// the stored status is one of from.
func (q *queries) SetEnvironmentStatus(ctx context.Context, e *controlplane.Environment, from ...controlplane.EnvironmentStatus) error {
	e.UpdatedAt, e.DeletedAt = utc(e.UpdatedAt), utcPtr(e.DeletedAt)
	query := `UPDATE environments SET status = ?, error = ?, updated_at = ?, deleted_at = ? WHERE org_id = ? AND id = ?`
	args := []any{string(e.Status), e.Error, micros(e.UpdatedAt), nullMicros(e.DeletedAt), e.OrgID, e.ID}
	if len(from) > 0 {
		list, arg := inList(from)
		query += ` AND status IN ` + list
		args = append(args, arg)
	}
	res, err := q.db.ExecContext(ctx, query, args...)
	if err != nil {
		return writeErr(err, "set environment status", "environment slug is taken", "environment not found")
	}
	if err := mustAffect(res, "set environment status", "environment not found"); err != nil {
		var exists int
		if qerr := q.db.QueryRowContext(ctx, `SELECT count(*) FROM environments WHERE org_id = ? AND id = ?`, e.OrgID, e.ID).Scan(&exists); qerr != nil {
			return fmt.Errorf("cannot set environment status: %w", qerr)
		}
		if exists > 0 {
			return controlplane.Errorf(controlplane.ECONFLICT, "the environment's status changed meanwhile")
		}
		return err
	}
	return nil
}

// CountEnvironments counts the organization's live environments.
func (q *queries) CountEnvironments(ctx context.Context, orgID string) (int, error) {
	var n int
	err := q.db.QueryRowContext(ctx, `SELECT count(*) FROM environments WHERE org_id = ? AND deleted_at IS NULL`, orgID).Scan(&n)
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
		WHERE expires_at IS NOT NULL AND deleted_at IS NULL AND expires_at <= ? AND status <> 'deleting'
		AND is_protected = 0 AND is_default = 0 AND type <> 'production'`+where+`
		ORDER BY expires_at, id LIMIT ?`,
		[]any{micros(utc(before)), controlplane.PageLimit(limit)}, scanEnv)
	if err != nil {
		return nil, fmt.Errorf("cannot list expiring environments: %w", err)
	}
	return envs, nil
}

// NoticeEnvironmentExpiry sets expiry_noticed_at to at if it is unset and
// the environment still expires at expiresAt; true if this call set it.
func (q *queries) NoticeEnvironmentExpiry(ctx context.Context, orgID, id string, expiresAt, at time.Time) (bool, error) {
	res, err := q.db.ExecContext(ctx, `UPDATE environments SET expiry_noticed_at = ?
		WHERE org_id = ? AND id = ? AND expires_at = ? AND expiry_noticed_at IS NULL`,
		micros(utc(at)), orgID, id, micros(utc(expiresAt)))
	if err != nil {
		return false, fmt.Errorf("cannot notice environment expiry: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("cannot notice environment expiry: %w", err)
	}
	return n == 1, nil
}
