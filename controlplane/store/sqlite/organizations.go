package sqlite

import (
	"context"
	"fmt"

	"github.com/envplane/envplane/controlplane"
)

const orgColumns = `id, slug, name, require_2fa, max_environments, max_storage_mb, created_at, updated_at`

func scanOrg(s scanner) (*controlplane.Organization, error) {
	var o controlplane.Organization
	var created, updated int64
	if err := s.Scan(&o.ID, &o.Slug, &o.Name, &o.Require2FA, &o.MaxEnvironments, &o.MaxStorageMB, &created, &updated); err != nil {
		return nil, err
	}
	o.CreatedAt, o.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &o, nil
}

// CreateOrganization inserts o, truncating its times to microseconds.
// ECONFLICT if the slug or id is taken.
func (q *queries) CreateOrganization(ctx context.Context, o *controlplane.Organization) error {
	o.CreatedAt, o.UpdatedAt = utc(o.CreatedAt), utc(o.UpdatedAt)
	_, err := q.db.ExecContext(ctx, `INSERT INTO organizations (`+orgColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		o.ID, o.Slug, o.Name, o.Require2FA, o.MaxEnvironments, o.MaxStorageMB, micros(o.CreatedAt), micros(o.UpdatedAt))
	if err != nil {
		return writeErr(err, "create organization", "organization slug is taken", "organization not found")
	}
	return nil
}

// GetOrganization finds an organization by id or slug. ENOTFOUND if absent.
func (q *queries) GetOrganization(ctx context.Context, idOrSlug string) (*controlplane.Organization, error) {
	o, err := scanOrg(q.db.QueryRowContext(ctx, `SELECT `+orgColumns+` FROM organizations
		WHERE id = ? OR slug = ? ORDER BY id = ? DESC LIMIT 1`, idOrSlug, idOrSlug, idOrSlug))
	if err != nil {
		return nil, readErr(err, "get organization", "organization not found")
	}
	return o, nil
}

// ListOrganizations lists organizations by id; ids, when not nil, restricts
// the list to those.
func (q *queries) ListOrganizations(ctx context.Context, ids []string, p controlplane.Page) ([]*controlplane.Organization, string, error) {
	if ids != nil && len(ids) == 0 {
		return []*controlplane.Organization{}, "", nil
	}
	n := controlplane.PageLimit(p.Limit)
	where, args := "1 = 1", []any{}
	if ids != nil {
		list, arg := inList(ids)
		where += " AND id IN " + list
		args = append(args, arg)
	}
	if p.Cursor != "" {
		where += " AND id > ?"
		args = append(args, p.Cursor)
	}
	args = append(args, n+1)
	orgs, err := queryAll(ctx, q.db, `SELECT `+orgColumns+` FROM organizations WHERE `+where+` ORDER BY id LIMIT ?`, args, scanOrg)
	if err != nil {
		return nil, "", fmt.Errorf("cannot list organizations: %w", err)
	}
	orgs, next := cutPage(orgs, n, func(o *controlplane.Organization) string { return o.ID })
	return orgs, next, nil
}

// UpdateOrganization saves o's name, require_2fa, max_environments,
// max_storage_mb and updated_at. ENOTFOUND if absent.
func (q *queries) UpdateOrganization(ctx context.Context, o *controlplane.Organization) error {
	o.UpdatedAt = utc(o.UpdatedAt)
	res, err := q.db.ExecContext(ctx, `UPDATE organizations SET name = ?, require_2fa = ?, max_environments = ?, max_storage_mb = ?, updated_at = ?
		WHERE id = ?`, o.Name, o.Require2FA, o.MaxEnvironments, o.MaxStorageMB, micros(o.UpdatedAt), o.ID)
	if err != nil {
		return writeErr(err, "update organization", "organization conflicts", "organization not found")
	}
	return mustAffect(res, "update organization", "organization not found")
}

// DeleteOrganization removes the organization and, through the schema's
// cascades, everything it owns except its audit events. ENOTFOUND if absent.
func (q *queries) DeleteOrganization(ctx context.Context, id string) error {
	res, err := q.db.ExecContext(ctx, `DELETE FROM organizations WHERE id = ?`, id)
	if err != nil {
		return writeErr(err, "delete organization", "organization is in use", "organization not found")
	}
	return mustAffect(res, "delete organization", "organization not found")
}

// OrgOf returns the organization of a live environment or of an operation.
// ENOTFOUND if absent, EINVALID for an unknown kind.
func (q *queries) OrgOf(ctx context.Context, kind controlplane.ResourceKind, id string) (string, error) {
	var query string
	switch kind {
	case controlplane.KindEnvironment:
		query = `SELECT org_id FROM environments WHERE id = ? AND deleted_at IS NULL`
	case controlplane.KindOperation:
		query = `SELECT org_id FROM operations WHERE id = ?`
	default:
		return "", controlplane.Errorf(controlplane.EINVALID, "unknown resource kind %q", kind)
	}
	var orgID string
	if err := q.db.QueryRowContext(ctx, query, id).Scan(&orgID); err != nil {
		return "", readErr(err, "find organization of "+string(kind), string(kind)+" not found")
	}
	return orgID, nil
}
