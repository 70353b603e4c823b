package sqlstore

import (
	"context"
	"fmt"

	"github.com/envplane/envplane/controlplane"
)

const envMemberSelect = `SELECT m.id, m.environment_id, m.org_id, m.user_id, u.email, m.role, m.created_at
	FROM environment_members m JOIN users u ON u.id = m.user_id`

func scanEnvMember(s scanner) (*controlplane.EnvironmentMember, error) {
	var m controlplane.EnvironmentMember
	if err := s.Scan(&m.ID, &m.EnvironmentID, &m.OrgID, &m.UserID, &m.Email, &m.Role, tm(&m.CreatedAt)); err != nil {
		return nil, err
	}
	return &m, nil
}

// PutEnvironmentMember inserts the user's role on the environment or updates
// it; an update keeps the first id and created_at, which it writes back to m.
// ENOTFOUND if the environment is not the organization's or the user is not
// a member of the organization; EINVALID for an unknown role.
func (q *queries) PutEnvironmentMember(ctx context.Context, m *controlplane.EnvironmentMember) error {
	err := q.db.QueryRowContext(ctx, `INSERT INTO environment_members (id, environment_id, org_id, user_id, role, created_at)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (environment_id, user_id) DO UPDATE SET role = excluded.role
		RETURNING id, created_at`,
		m.ID, m.EnvironmentID, m.OrgID, m.UserID, string(m.Role), utc(m.CreatedAt)).Scan(&m.ID, tm(&m.CreatedAt))
	if err != nil {
		return q.writeErr(err, "put environment member", "environment member exists",
			"environment or organization membership not found")
	}
	return nil
}

// GetEnvironmentMember finds the user's role on the environment. ENOTFOUND if none.
func (q *queries) GetEnvironmentMember(ctx context.Context, environmentID, userID string) (*controlplane.EnvironmentMember, error) {
	m, err := scanEnvMember(q.db.QueryRowContext(ctx, envMemberSelect+` WHERE m.environment_id = $1 AND m.user_id = $2`,
		environmentID, userID))
	if err != nil {
		return nil, readErr(err, "get environment member", "environment member not found")
	}
	return m, nil
}

// ListEnvironmentMembers lists the environment's members by id.
func (q *queries) ListEnvironmentMembers(ctx context.Context, environmentID string) ([]*controlplane.EnvironmentMember, error) {
	ms, err := queryAll(ctx, q.db, envMemberSelect+` WHERE m.environment_id = $1 ORDER BY m.id`, []any{environmentID}, scanEnvMember)
	if err != nil {
		return nil, fmt.Errorf("cannot list environment members: %w", err)
	}
	return ms, nil
}

// ListUserEnvironmentRoles maps the id of each live environment of the
// organization on which the user has a role to that role.
func (q *queries) ListUserEnvironmentRoles(ctx context.Context, orgID, userID string) (map[string]controlplane.EnvRole, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT m.environment_id, m.role FROM environment_members m
		JOIN environments e ON e.id = m.environment_id
		WHERE m.org_id = $1 AND m.user_id = $2 AND e.deleted_at IS NULL`, orgID, userID)
	if err != nil {
		return nil, fmt.Errorf("cannot list environment roles: %w", err)
	}
	roles := map[string]controlplane.EnvRole{}
	defer rows.Close()
	for rows.Next() {
		var envID, role string
		if err := rows.Scan(&envID, &role); err != nil {
			return nil, fmt.Errorf("cannot list environment roles: %w", err)
		}
		roles[envID] = controlplane.EnvRole(role)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot list environment roles: %w", err)
	}
	return roles, nil
}

// DeleteEnvironmentMember removes the user's role on the environment. ENOTFOUND if none.
func (q *queries) DeleteEnvironmentMember(ctx context.Context, environmentID, userID string) error {
	tag, err := q.db.ExecContext(ctx, `DELETE FROM environment_members WHERE environment_id = $1 AND user_id = $2`,
		environmentID, userID)
	if err != nil {
		return fmt.Errorf("cannot delete environment member: %w", err)
	}
	return mustAffect(tag, "environment member not found")
}
