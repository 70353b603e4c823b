package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/envplane/envplane/controlplane"
)

const apiKeyColumns = `id, org_id, user_id, environment_id, max_scope, name, prefix, hash,
	created_at, last_used_at, expires_at, revoked_at`

func scanAPIKey(s scanner) (*controlplane.APIKey, error) {
	var k controlplane.APIKey
	var orgID, userID, envID, scope *string
	if err := s.Scan(&k.ID, &orgID, &userID, &envID, &scope, &k.Name, &k.Prefix, &k.Hash,
		tm(&k.CreatedAt), tmPtr(&k.LastUsedAt), tmPtr(&k.ExpiresAt), tmPtr(&k.RevokedAt)); err != nil {
		return nil, err
	}
	k.OrgID, k.UserID, k.EnvironmentID, k.MaxScope = deref(orgID), deref(userID), deref(envID), controlplane.Scope(deref(scope))
	return &k, nil
}

// CreateAPIKey inserts k, truncating its times to microseconds. ECONFLICT if
// the hash or id exists; ENOTFOUND if its organization, user or environment
// (which must be the organization's) is absent.
func (q *queries) CreateAPIKey(ctx context.Context, k *controlplane.APIKey) error {
	k.CreatedAt = utc(k.CreatedAt)
	k.LastUsedAt, k.ExpiresAt, k.RevokedAt = utcPtr(k.LastUsedAt), utcPtr(k.ExpiresAt), utcPtr(k.RevokedAt)
	_, err := q.db.ExecContext(ctx, `INSERT INTO api_keys (`+apiKeyColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		k.ID, nullString(k.OrgID), nullString(k.UserID), nullString(k.EnvironmentID), nullString(string(k.MaxScope)),
		k.Name, k.Prefix, k.Hash, k.CreatedAt, k.LastUsedAt, k.ExpiresAt, k.RevokedAt)
	if err != nil {
		return q.writeErr(err, "create api key", "api key exists", "organization, user or environment not found")
	}
	return nil
}

// GetAPIKeyByHash finds a key by the hash of its token, revoked or not. ENOTFOUND if absent.
func (q *queries) GetAPIKeyByHash(ctx context.Context, hash string) (*controlplane.APIKey, error) {
	k, err := scanAPIKey(q.db.QueryRowContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE hash = $1`, hash))
	if err != nil {
		return nil, readErr(err, "get api key", "api key not found")
	}
	return k, nil
}

// GetAPIKey finds a key of the organization. ENOTFOUND if absent or another organization's.
func (q *queries) GetAPIKey(ctx context.Context, orgID, id string) (*controlplane.APIKey, error) {
	k, err := scanAPIKey(q.db.QueryRowContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE org_id = $1 AND id = $2`, orgID, id))
	if err != nil {
		return nil, readErr(err, "get api key", "api key not found")
	}
	return k, nil
}

// ListAPIKeys lists the organization's keys by id, revoked ones included;
// userID, when set, restricts to that user's.
func (q *queries) ListAPIKeys(ctx context.Context, orgID, userID string, p controlplane.Page) ([]*controlplane.APIKey, string, error) {
	n := controlplane.PageLimit(p.Limit)
	var a args
	where := "org_id = " + a.add(orgID) + " AND id > " + a.add(p.Cursor)
	if userID != "" {
		where += " AND user_id = " + a.add(userID)
	}
	keys, err := queryAll(ctx, q.db, `SELECT `+apiKeyColumns+` FROM api_keys WHERE `+where+` ORDER BY id LIMIT `+a.add(n+1), a, scanAPIKey)
	if err != nil {
		return nil, "", fmt.Errorf("cannot list api keys: %w", err)
	}
	keys, next := cutPage(keys, n, func(k *controlplane.APIKey) string { return k.ID })
	return keys, next, nil
}

// RevokeAPIKey sets revoked_at, keeping an earlier revocation's time.
// ENOTFOUND if absent or another organization's.
func (q *queries) RevokeAPIKey(ctx context.Context, orgID, id string, at time.Time) error {
	tag, err := q.db.ExecContext(ctx, `UPDATE api_keys SET revoked_at = coalesce(revoked_at, $1) WHERE org_id = $2 AND id = $3`,
		utc(at), orgID, id)
	if err != nil {
		return fmt.Errorf("cannot revoke api key: %w", err)
	}
	return mustAffect(tag, "api key not found")
}

// TouchAPIKey sets last_used_at. Absent is not an error.
func (q *queries) TouchAPIKey(ctx context.Context, id string, at time.Time) error {
	if _, err := q.db.ExecContext(ctx, `UPDATE api_keys SET last_used_at = $1 WHERE id = $2`, utc(at), id); err != nil {
		return fmt.Errorf("cannot touch api key: %w", err)
	}
	return nil
}

// ListPlatformKeys lists the keys without an organization that are not revoked, by id.
func (q *queries) ListPlatformKeys(ctx context.Context) ([]*controlplane.APIKey, error) {
	keys, err := queryAll(ctx, q.db, `SELECT `+apiKeyColumns+` FROM api_keys
		WHERE org_id IS NULL AND revoked_at IS NULL ORDER BY id`, nil, scanAPIKey)
	if err != nil {
		return nil, fmt.Errorf("cannot list platform keys: %w", err)
	}
	return keys, nil
}
