package postgres

import (
	"context"
	"fmt"

	"github.com/envplane/envplane/controlplane"
)

const envColumns = `id, org_id, slug, name, description, type, region, target, is_default, is_protected,
	status, error, created_by, metadata, created_at, updated_at, deleted_at`

func scanEnv(s scanner) (*controlplane.Environment, error) {
	var e controlplane.Environment
	var metadata []byte
	if err := s.Scan(&e.ID, &e.OrgID, &e.Slug, &e.Name, &e.Description, &e.Type, &e.Region, &e.Target,
		&e.IsDefault, &e.IsProtected, &e.Status, &e.Error, &e.CreatedBy, &metadata, &e.CreatedAt, &e.UpdatedAt, &e.DeletedAt); err != nil {
		return nil, err
	}
	m, err := decodeJSON[map[string]string](metadata)
	if err != nil {
		return nil, err
	}
	e.Metadata = m
	e.CreatedAt, e.UpdatedAt, e.DeletedAt = e.CreatedAt.UTC(), e.UpdatedAt.UTC(), fromDBPtr(e.DeletedAt)
	return &e, nil
}

// CreateEnvironment inserts e, truncating its times to microseconds.
// ECONFLICT if a live environment of the organization has the slug, or e is
// a second live default; ENOTFOUND if the organization is absent.
func (q *queries) CreateEnvironment(ctx context.Context, e *controlplane.Environment) error {
	e.CreatedAt, e.UpdatedAt, e.DeletedAt = utc(e.CreatedAt), utc(e.UpdatedAt), utcPtr(e.DeletedAt)
	metadata, err := encodeJSON(e.Metadata)
	if err != nil {
		return err
	}
	_, err = q.db.Exec(ctx, `INSERT INTO environments (`+envColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`,
		e.ID, e.OrgID, e.Slug, e.Name, e.Description, string(e.Type), e.Region, e.Target, e.IsDefault, e.IsProtected,
		string(e.Status), e.Error, e.CreatedBy, metadata, e.CreatedAt, e.UpdatedAt, e.DeletedAt)
	if err != nil {
		return writeErr(err, "create environment",
			"environment slug is taken, or the organization already has a default environment", "organization not found")
	}
	return nil
}

// GetEnvironment finds a live environment of the organization by id or slug.
// ENOTFOUND if absent, deleted or another organization's.
func (q *queries) GetEnvironment(ctx context.Context, orgID, idOrSlug string) (*controlplane.Environment, error) {
	e, err := scanEnv(q.db.QueryRow(ctx, `SELECT `+envColumns+` FROM environments
		WHERE org_id = $1 AND (id = $2 OR slug = $2) AND deleted_at IS NULL ORDER BY id = $2 DESC LIMIT 1`, orgID, idOrSlug))
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
		where += " AND id = ANY(" + a.add(f.IDs) + ")"
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
// metadata and updated_at, never its status. ENOTFOUND if absent or another
// organization's.
func (q *queries) UpdateEnvironment(ctx context.Context, e *controlplane.Environment) error {
	e.UpdatedAt = utc(e.UpdatedAt)
	metadata, err := encodeJSON(e.Metadata)
	if err != nil {
		return err
	}
	tag, err := q.db.Exec(ctx, `UPDATE environments SET name = $1, description = $2, is_protected = $3,
		metadata = $4, updated_at = $5 WHERE org_id = $6 AND id = $7`,
		e.Name, e.Description, e.IsProtected, metadata, e.UpdatedAt, e.OrgID, e.ID)
	if err != nil {
		return writeErr(err, "update environment", "environment conflicts", "environment not found")
	}
	return mustAffect(tag, "environment not found")
}

// SetEnvironmentStatus saves status, error, updated_at and deleted_at while
// the stored status is one of from.
func (q *queries) SetEnvironmentStatus(ctx context.Context, e *controlplane.Environment, from ...controlplane.EnvironmentStatus) error {
	e.UpdatedAt, e.DeletedAt = utc(e.UpdatedAt), utcPtr(e.DeletedAt)
	statuses := make([]string, len(from))
	for i, f := range from {
		statuses[i] = string(f)
	}
	tag, err := q.db.Exec(ctx, `UPDATE environments SET status = $1, error = $2, updated_at = $3, deleted_at = $4
		WHERE org_id = $5 AND id = $6 AND (cardinality($7::text[]) = 0 OR status = ANY($7::text[]))`,
		string(e.Status), e.Error, e.UpdatedAt, e.DeletedAt, e.OrgID, e.ID, statuses)
	if err != nil {
		return writeErr(err, "set environment status", "environment slug is taken", "environment not found")
	}
	if err := mustAffect(tag, "environment not found"); err != nil {
		var exists bool
		if qerr := q.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM environments WHERE org_id = $1 AND id = $2)`, e.OrgID, e.ID).Scan(&exists); qerr != nil {
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
	// transactions, so the quota check and the insert agree.
	if _, err := q.db.Exec(ctx, `SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE`, orgID); err != nil {
		return 0, fmt.Errorf("cannot count environments: %w", err)
	}
	err := q.db.QueryRow(ctx, `SELECT count(*) FROM environments WHERE org_id = $1 AND deleted_at IS NULL`, orgID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("cannot count environments: %w", err)
	}
	return n, nil
}
