package sqlstore

import (
	"context"
	"fmt"

	"github.com/envplane/envplane/controlplane"
)

const membershipSelect = `SELECT m.org_id, m.user_id, u.email, u.name, m.role, m.created_at
	FROM org_members m JOIN users u ON u.id = m.user_id`

func scanMembership(s scanner) (*controlplane.OrgMembership, error) {
	var m controlplane.OrgMembership
	if err := s.Scan(&m.OrgID, &m.UserID, &m.Email, &m.Name, &m.Role, tm(&m.CreatedAt)); err != nil {
		return nil, err
	}
	return &m, nil
}

// PutOrgMembership inserts the membership or updates its role; an update
// keeps the first created_at, which it writes back to m. ENOTFOUND if the
// organization or user is absent, EINVALID for an unknown role.
func (q *queries) PutOrgMembership(ctx context.Context, m *controlplane.OrgMembership) error {
	err := q.db.QueryRowContext(ctx, `INSERT INTO org_members (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role
		RETURNING created_at`, m.OrgID, m.UserID, string(m.Role), utc(m.CreatedAt)).Scan(tm(&m.CreatedAt))
	if err != nil {
		return q.writeErr(err, "put membership", "membership conflicts", "organization or user not found")
	}
	return nil
}

// GetOrgMembership finds the user's membership. ENOTFOUND if the user is not a member.
func (q *queries) GetOrgMembership(ctx context.Context, orgID, userID string) (*controlplane.OrgMembership, error) {
	m, err := scanMembership(q.db.QueryRowContext(ctx, membershipSelect+` WHERE m.org_id = $1 AND m.user_id = $2`, orgID, userID))
	if err != nil {
		return nil, readErr(err, "get membership", "membership not found")
	}
	return m, nil
}

// ListOrgMemberships lists the organization's members by user id; the cursor
// is a user id.
func (q *queries) ListOrgMemberships(ctx context.Context, orgID string, p controlplane.Page) ([]*controlplane.OrgMembership, string, error) {
	n := controlplane.PageLimit(p.Limit)
	ms, err := queryAll(ctx, q.db, membershipSelect+` WHERE m.org_id = $1 AND m.user_id > $2 ORDER BY m.user_id LIMIT $3`,
		[]any{orgID, p.Cursor, n + 1}, scanMembership)
	if err != nil {
		return nil, "", fmt.Errorf("cannot list memberships: %w", err)
	}
	ms, next := cutPage(ms, n, func(m *controlplane.OrgMembership) string { return m.UserID })
	return ms, next, nil
}

// ListUserMemberships lists every organization the user belongs to, by organization id.
func (q *queries) ListUserMemberships(ctx context.Context, userID string) ([]*controlplane.OrgMembership, error) {
	ms, err := queryAll(ctx, q.db, membershipSelect+` WHERE m.user_id = $1 ORDER BY m.org_id`, []any{userID}, scanMembership)
	if err != nil {
		return nil, fmt.Errorf("cannot list memberships: %w", err)
	}
	return ms, nil
}

// DeleteOrgMembership removes the membership and, through the schema's
// cascade, the user's environment roles in that organization. ENOTFOUND if absent.
func (q *queries) DeleteOrgMembership(ctx context.Context, orgID, userID string) error {
	tag, err := q.db.ExecContext(ctx, `DELETE FROM org_members WHERE org_id = $1 AND user_id = $2`, orgID, userID)
	if err != nil {
		return fmt.Errorf("cannot delete membership: %w", err)
	}
	return mustAffect(tag, "membership not found")
}

// CountOrgOwners counts the organization's owners.
func (q *queries) CountOrgOwners(ctx context.Context, orgID string) (int, error) {
	var n int
	// Locked (on PostgreSQL; SQLite's writer holds the whole database):
	// inside a transaction, concurrent removals of two owners count one
	// after the other, so the last owner cannot go twice.
	err := q.db.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM org_members
		WHERE org_id = $1 AND role = 'owner'`+q.d.forUpdate()+`) owners`, orgID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("cannot count owners: %w", err)
	}
	return n, nil
}
