package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/envplane/envplane/controlplane"
)

const credColumns = `id, database_id, scope, slot, username, secret_cipher, dek_cipher, kms_key_id, status,
	issued_at, expires_at, rotated_from, revoked_at, promised_until`

func scanCredential(s scanner) (*controlplane.Credential, error) {
	var c controlplane.Credential
	var rotatedFrom *string
	if err := s.Scan(&c.ID, &c.DatabaseID, &c.Scope, &c.Slot, &c.Username, &c.SecretCipher, &c.DEKCipher, &c.KMSKeyID,
		&c.Status, tm(&c.IssuedAt), tmPtr(&c.ExpiresAt), &rotatedFrom, tmPtr(&c.RevokedAt), tmPtr(&c.PromisedUntil)); err != nil {
		return nil, err
	}
	c.RotatedFrom = deref(rotatedFrom)
	return &c, nil
}

// CreateCredential inserts c, truncating its times to microseconds.
// ECONFLICT if the id exists; ENOTFOUND if the database is absent; EINVALID
// for an unknown scope or status.
func (q *queries) CreateCredential(ctx context.Context, c *controlplane.Credential) error {
	c.IssuedAt, c.ExpiresAt, c.RevokedAt = utc(c.IssuedAt), utcPtr(c.ExpiresAt), utcPtr(c.RevokedAt)
	c.PromisedUntil = utcPtr(c.PromisedUntil)
	_, err := q.db.ExecContext(ctx, `INSERT INTO database_credentials (`+credColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
		c.ID, c.DatabaseID, string(c.Scope), string(c.Slot), c.Username, c.SecretCipher, c.DEKCipher, c.KMSKeyID,
		string(c.Status), c.IssuedAt, c.ExpiresAt, nullString(c.RotatedFrom), c.RevokedAt, c.PromisedUntil)
	if err != nil {
		return q.writeErr(err, "create credential", "credential exists", "database not found")
	}
	return nil
}

// GetCredential finds a credential of the database. ENOTFOUND if absent or another database's.
func (q *queries) GetCredential(ctx context.Context, databaseID, id string) (*controlplane.Credential, error) {
	c, err := scanCredential(q.db.QueryRowContext(ctx, `SELECT `+credColumns+` FROM database_credentials
		WHERE database_id = $1 AND id = $2`, databaseID, id))
	if err != nil {
		return nil, readErr(err, "get credential", "credential not found")
	}
	return c, nil
}

// credWhere returns the WHERE clause that selects f's credentials; its
// arguments go to a.
func credWhere(d Dialect, f controlplane.CredentialFilter, a *args) string {
	where := "database_id = " + a.add(f.DatabaseID)
	if f.Scope != "" {
		where += " AND scope = " + a.add(string(f.Scope))
	}
	if f.Statuses != nil {
		where += " AND status " + d.in(a, strs(f.Statuses))
	}
	if !f.IssuedSince.IsZero() {
		where += " AND issued_at >= " + a.add(utc(f.IssuedSince))
	}
	return where
}

// ListCredentials lists the database's credentials that f selects, newest
// issued first.
func (q *queries) ListCredentials(ctx context.Context, f controlplane.CredentialFilter) ([]*controlplane.Credential, error) {
	if f.Statuses != nil && len(f.Statuses) == 0 {
		return []*controlplane.Credential{}, nil
	}
	var a args
	where := credWhere(q.d, f, &a)
	creds, err := queryAll(ctx, q.db, `SELECT `+credColumns+` FROM database_credentials WHERE `+where+`
		ORDER BY issued_at DESC, id DESC`, a, scanCredential)
	if err != nil {
		return nil, fmt.Errorf("cannot list credentials: %w", err)
	}
	return creds, nil
}

// CountCredentials counts the database's credentials that f selects.
func (q *queries) CountCredentials(ctx context.Context, f controlplane.CredentialFilter) (int, error) {
	if f.Statuses != nil && len(f.Statuses) == 0 {
		return 0, nil
	}
	var a args
	where := credWhere(q.d, f, &a)
	var n int
	if err := q.db.QueryRowContext(ctx, `SELECT count(*) FROM database_credentials WHERE `+where, a...).Scan(&n); err != nil {
		return 0, fmt.Errorf("cannot count credentials: %w", err)
	}
	return n, nil
}

// PromiseCredential raises the credential's promised_until to until, never
// lowering it, while the credential is active. ECONFLICT if it is rotating
// or revoked; ENOTFOUND if absent or another database's. A transaction that
// changed the credential and has not ended holds its row: the promise waits
// for it, then sees the credential as that transaction left it, so a
// rotation that demotes the credential and then reads its promise either
// sees this one or makes it fail.
func (q *queries) PromiseCredential(ctx context.Context, databaseID, id string, until time.Time) error {
	tag, err := q.db.ExecContext(ctx, `UPDATE database_credentials SET promised_until = `+q.d.greatest()+`(coalesce(promised_until, $1), $1)
		WHERE database_id = $2 AND id = $3 AND status = 'active'`, utc(until), databaseID, id)
	if err != nil {
		return fmt.Errorf("cannot promise credential: %w", err)
	}
	if err := mustAffect(tag, "credential not found"); err != nil {
		if _, gerr := q.GetCredential(ctx, databaseID, id); gerr == nil {
			return controlplane.Errorf(controlplane.ECONFLICT, "the credential is no longer active")
		}
		return err
	}
	return nil
}

// UpdateCredential saves c's status, expires_at and revoked_at, never its
// ciphers (RewrapCredential) nor its promise (PromiseCredential), which a
// resolve may have raised since c was read. ENOTFOUND if absent or another
// database's.
func (q *queries) UpdateCredential(ctx context.Context, c *controlplane.Credential) error {
	c.ExpiresAt, c.RevokedAt = utcPtr(c.ExpiresAt), utcPtr(c.RevokedAt)
	tag, err := q.db.ExecContext(ctx, `UPDATE database_credentials SET status = $1, expires_at = $2, revoked_at = $3
		WHERE database_id = $4 AND id = $5`,
		string(c.Status), c.ExpiresAt, c.RevokedAt, c.DatabaseID, c.ID)
	if err != nil {
		return q.writeErr(err, "update credential", "credential conflicts", "credential not found")
	}
	return mustAffect(tag, "credential not found")
}

// RewrapCredential replaces the wrapped data key and key id while the stored
// key id is fromKeyID.
func (q *queries) RewrapCredential(ctx context.Context, c *controlplane.Credential, fromKeyID string) error {
	tag, err := q.db.ExecContext(ctx, `UPDATE database_credentials SET kms_key_id = $1, dek_cipher = $2
		WHERE database_id = $3 AND id = $4 AND kms_key_id = $5`, c.KMSKeyID, c.DEKCipher, c.DatabaseID, c.ID, fromKeyID)
	if err != nil {
		return q.writeErr(err, "rewrap credential", "credential conflicts", "credential not found")
	}
	if err := mustAffect(tag, "credential not found"); err != nil {
		if _, gerr := q.GetCredential(ctx, c.DatabaseID, c.ID); gerr == nil {
			return controlplane.Errorf(controlplane.ECONFLICT, "the credential's key changed meanwhile")
		}
		return err
	}
	return nil
}

// ListCredentialsDue lists up to limit rotating credentials whose grace ended
// at or before now, the longest overdue first.
func (q *queries) ListCredentialsDue(ctx context.Context, now time.Time, limit int) ([]*controlplane.Credential, error) {
	creds, err := queryAll(ctx, q.db, `SELECT `+credColumns+` FROM database_credentials
		WHERE status = 'rotating' AND expires_at <= $1 ORDER BY expires_at, id LIMIT $2`,
		[]any{utc(now), controlplane.PageLimit(limit)}, scanCredential)
	if err != nil {
		return nil, fmt.Errorf("cannot list due credentials: %w", err)
	}
	return creds, nil
}

// ListCredentialsExpiring lists up to limit active credentials that expire at
// or before before, soonest first.
func (q *queries) ListCredentialsExpiring(ctx context.Context, before time.Time, limit int) ([]*controlplane.Credential, error) {
	creds, err := queryAll(ctx, q.db, `SELECT `+credColumns+` FROM database_credentials
		WHERE status = 'active' AND expires_at <= $1 ORDER BY expires_at, id LIMIT $2`,
		[]any{utc(before), controlplane.PageLimit(limit)}, scanCredential)
	if err != nil {
		return nil, fmt.Errorf("cannot list expiring credentials: %w", err)
	}
	return creds, nil
}

// ListCredentialsByKey lists up to limit credentials, revoked ones excepted,
// whose data key is wrapped under a key other than notKeyID, by id.
func (q *queries) ListCredentialsByKey(ctx context.Context, notKeyID string, limit int) ([]*controlplane.Credential, error) {
	creds, err := queryAll(ctx, q.db, `SELECT `+credColumns+` FROM database_credentials
		WHERE status <> 'revoked' AND kms_key_id <> $1 ORDER BY id LIMIT $2`,
		[]any{notKeyID, controlplane.PageLimit(limit)}, scanCredential)
	if err != nil {
		return nil, fmt.Errorf("cannot list credentials by key: %w", err)
	}
	return creds, nil
}

// CountCredentialsByKey counts the credentials that are not revoked per kms_key_id.
func (q *queries) CountCredentialsByKey(ctx context.Context) (map[string]int, error) {
	counts, err := queryCounts(ctx, q.db, `SELECT kms_key_id, count(*) FROM database_credentials
		WHERE status <> 'revoked' GROUP BY kms_key_id`)
	if err != nil {
		return nil, fmt.Errorf("cannot count credentials: %w", err)
	}
	return counts, nil
}
