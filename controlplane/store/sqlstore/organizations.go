package sqlstore

import (
	"context"
	"fmt"

	"github.com/envplane/envplane/controlplane"
)

const orgColumns = `id, slug, name, require_2fa, max_environments, max_storage_mb, created_at, updated_at`

func scanOrg(s scanner) (*controlplane.Organization, error) {
	var o controlplane.Organization
	if err := s.Scan(&o.ID, &o.Slug, &o.Name, &o.Require2FA, &o.MaxEnvironments, &o.MaxStorageMB, tm(&o.CreatedAt), tm(&o.UpdatedAt)); err != nil {
		return nil, err
	}
	return &o, nil
}

// CreateOrganization inserts o, truncating its times to microseconds.
// ECONFLICT if the slug or id is taken.
func (q *queries) CreateOrganization(ctx context.Context, o *controlplane.Organization) error {
	o.CreatedAt, o.UpdatedAt = utc(o.CreatedAt), utc(o.UpdatedAt)
	_, err := q.db.ExecContext(ctx, `INSERT INTO organizations (`+orgColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		o.ID, o.Slug, o.Name, o.Require2FA, o.MaxEnvironments, o.MaxStorageMB, o.CreatedAt, o.UpdatedAt)
	if err != nil {
		return q.writeErr(err, "create organization", "organization slug is taken", "organization not found")
	}
	return nil
}

// GetOrganization finds an organization by id or slug. ENOTFOUND if absent.
func (q *queries) GetOrganization(ctx context.Context, idOrSlug string) (*controlplane.Organization, error) {
	o, err := scanOrg(q.db.QueryRowContext(ctx, `SELECT `+orgColumns+` FROM organizations
		WHERE id = $1 OR slug = $1 ORDER BY id = $1 DESC LIMIT 1`, idOrSlug))
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
	var a args
	where := "id > " + a.add(p.Cursor)
	if ids != nil {
		where += " AND id " + q.d.in(&a, ids)
	}
	orgs, err := queryAll(ctx, q.db, `SELECT `+orgColumns+` FROM organizations WHERE `+where+` ORDER BY id LIMIT `+a.add(n+1), a, scanOrg)
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
	tag, err := q.db.ExecContext(ctx, `UPDATE organizations SET name = $1, require_2fa = $2, max_environments = $3, max_storage_mb = $4, updated_at = $5
		WHERE id = $6`, o.Name, o.Require2FA, o.MaxEnvironments, o.MaxStorageMB, o.UpdatedAt, o.ID)
	if err != nil {
		return q.writeErr(err, "update organization", "organization conflicts", "organization not found")
	}
	return mustAffect(tag, "organization not found")
}

// DeleteOrganization removes the organization and, through the schema's
// cascades, everything it owns except its audit events. ENOTFOUND if absent.
func (q *queries) DeleteOrganization(ctx context.Context, id string) error {
	tag, err := q.db.ExecContext(ctx, `DELETE FROM organizations WHERE id = $1`, id)
	if err != nil {
		return q.writeErr(err, "delete organization", "organization is in use", "organization not found")
	}
	return mustAffect(tag, "organization not found")
}

// OrgOf returns the organization of a live environment or of an operation.
// ENOTFOUND if absent, EINVALID for an unknown kind.
func (q *queries) OrgOf(ctx context.Context, kind controlplane.ResourceKind, id string) (string, error) {
	var query string
	switch kind {
	case controlplane.KindEnvironment:
		query = `SELECT org_id FROM environments WHERE id = $1 AND deleted_at IS NULL`
	case controlplane.KindOperation:
		query = `SELECT org_id FROM operations WHERE id = $1`
	default:
		return "", controlplane.Errorf(controlplane.EINVALID, "unknown resource kind %q", kind)
	}
	var orgID string
	if err := q.db.QueryRowContext(ctx, query, id).Scan(&orgID); err != nil {
		return "", readErr(err, "find organization of "+string(kind), string(kind)+" not found")
	}
	return orgID, nil
}
