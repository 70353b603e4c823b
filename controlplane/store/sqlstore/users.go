package sqlstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/envplane/envplane/controlplane"
)

const userColumns = `id, email, name, platform_admin, created_at, disabled_at`

func scanUser(s scanner) (*controlplane.User, error) {
	var u controlplane.User
	if err := s.Scan(&u.ID, &u.Email, &u.Name, &u.PlatformAdmin, tm(&u.CreatedAt), tmPtr(&u.DisabledAt)); err != nil {
		return nil, err
	}
	return &u, nil
}

// emailKey is what makes two emails the same user.
func emailKey(email string) string { return strings.ToLower(email) }

// CreateUser inserts u, truncating its times to microseconds. ECONFLICT if
// the email (case-insensitively) or id is taken.
func (q *queries) CreateUser(ctx context.Context, u *controlplane.User) error {
	u.CreatedAt, u.DisabledAt = utc(u.CreatedAt), utcPtr(u.DisabledAt)
	_, err := q.db.ExecContext(ctx, `INSERT INTO users (id, email, email_key, name, platform_admin, created_at, disabled_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		u.ID, u.Email, emailKey(u.Email), u.Name, u.PlatformAdmin, u.CreatedAt, u.DisabledAt)
	if err != nil {
		return q.writeErr(err, "create user", "email is taken", "user not found")
	}
	return nil
}

// GetUser finds a user by id. ENOTFOUND if absent.
func (q *queries) GetUser(ctx context.Context, id string) (*controlplane.User, error) {
	u, err := scanUser(q.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	if err != nil {
		return nil, readErr(err, "get user", "user not found")
	}
	return u, nil
}

// GetUserByEmail finds a user by email, case-insensitively. ENOTFOUND if absent.
func (q *queries) GetUserByEmail(ctx context.Context, email string) (*controlplane.User, error) {
	u, err := scanUser(q.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE email_key = $1`, emailKey(email)))
	if err != nil {
		return nil, readErr(err, "get user", "user not found")
	}
	return u, nil
}

// ListPlatformAdmins lists users with PlatformAdmin set, by id.
func (q *queries) ListPlatformAdmins(ctx context.Context) ([]*controlplane.User, error) {
	users, err := queryAll(ctx, q.db, `SELECT `+userColumns+` FROM users WHERE platform_admin ORDER BY id`, nil, scanUser)
	if err != nil {
		return nil, fmt.Errorf("cannot list platform admins: %w", err)
	}
	return users, nil
}
