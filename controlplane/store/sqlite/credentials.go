package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/envplane/envplane/controlplane"
)

const credColumns = `id, database_id, scope, slot, username, secret_cipher, dek_cipher, kms_key_id, status,
	issued_at, expires_at, rotated_from, revoked_at, promised_until`

func scanCredential(s scanner) (*controlplane.Credential, error) {
	var c controlplane.Credential
	var issued int64
	var expires, revoked, promised sql.NullInt64
	var rotatedFrom sql.NullString
	if err := s.Scan(&c.ID, &c.DatabaseID, &c.Scope, &c.Slot, &c.Username, &c.SecretCipher, &c.DEKCipher, &c.KMSKeyID,
		&c.Status, &issued, &expires, &rotatedFrom, &revoked, &promised); err != nil {
		return nil, err
	}
	c.IssuedAt, c.ExpiresAt, c.RevokedAt = fromMicros(issued), fromNullMicros(expires), fromNullMicros(revoked)
	c.PromisedUntil = fromNullMicros(promised)
	c.RotatedFrom = rotatedFrom.String
	return &c, nil
}

// CreateCredential inserts c, truncating its times to microseconds.
// ECONFLICT if the id exists; ENOTFOUND if the database is absent; EINVALID
// for an unknown scope or status.
func (q *queries) CreateCredential(ctx context.Context, c *controlplane.Credential) error {
	c.IssuedAt, c.ExpiresAt, c.RevokedAt = utc(c.IssuedAt), utcPtr(c.ExpiresAt), utcPtr(c.RevokedAt)
	c.PromisedUntil = utcPtr(c.PromisedUntil)
	_, err := q.db.ExecContext(ctx, `INSERT INTO database_credentials (`+credColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.DatabaseID, string(c.Scope), string(c.Slot), c.Username, c.SecretCipher, c.DEKCipher, c.KMSKeyID,
		string(c.Status), micros(c.IssuedAt), nullMicros(c.ExpiresAt), nullString(c.RotatedFrom), nullMicros(c.RevokedAt),
		nullMicros(c.PromisedUntil))
	if err != nil {
		return writeErr(err, "create credential", "credential exists", "database not found")
	}
	return nil
}

// GetCredential finds a credential of the database. ENOTFOUND if absent or another database's.
func (q *queries) GetCredential(ctx context.Context, databaseID, id string) (*controlplane.Credential, error) {
	c, err := scanCredential(q.db.QueryRowContext(ctx, `SELECT `+credColumns+` FROM database_credentials
		WHERE database_id = ? AND id = ?`, databaseID, id))
	if err != nil {
		return nil, readErr(err, "get credential", "credential not found")
	}
	return c, nil
}

// credWhere returns the WHERE clause that selects f's credentials, and its
// arguments.
func credWhere(f controlplane.CredentialFilter) (string, []any) {
	where, args := "database_id = ?", []any{f.DatabaseID}
	if f.Scope != "" {
		where += " AND scope = ?"
		args = append(args, string(f.Scope))
	}
	if f.Statuses != nil {
		list, arg := inList(f.Statuses)
		where += " AND status IN " + list
		args = append(args, arg)
	}
	if !f.IssuedSince.IsZero() {
		where += " AND issued_at >= ?"
		args = append(args, micros(utc(f.IssuedSince)))
	}
	return where, args
}

// ListCredentials lists the database's credentials that f selects, newest
// issued first.
func (q *queries) ListCredentials(ctx context.Context, f controlplane.CredentialFilter) ([]*controlplane.Credential, error) {
	if f.Statuses != nil && len(f.Statuses) == 0 {
		return []*controlplane.Credential{}, nil
	}
	where, args := credWhere(f)
	creds, err := queryAll(ctx, q.db, `SELECT `+credColumns+` FROM database_credentials WHERE `+where+`
		ORDER BY issued_at DESC, id DESC`, args, scanCredential)
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
	where, args := credWhere(f)
	var n int
	if err := q.db.QueryRowContext(ctx, `SELECT count(*) FROM database_credentials WHERE `+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("cannot count credentials: %w", err)
	}
	return n, nil
}

// PromiseCredential raises the credential's promised_until to until, never
// lowering it, while the credential is active. ECONFLICT if it is rotating
// or revoked; ENOTFOUND if absent or another database's. A transaction that
// demoted the credential holds the write lock until it ends: the promise
// waits for it, then finds the credential no longer active.
func (q *queries) PromiseCredential(ctx context.Context, databaseID, id string, until time.Time) error {
	until = utc(until)
	res, err := q.db.ExecContext(ctx, `UPDATE database_credentials SET promised_until = max(coalesce(promised_until, ?1), ?1)
		WHERE database_id = ?2 AND id = ?3 AND status = 'active'`, micros(until), databaseID, id)
	if err != nil {
		return fmt.Errorf("cannot promise credential: %w", err)
	}
	if err := mustAffect(res, "promise credential", "credential not found"); err != nil {
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
	res, err := q.db.ExecContext(ctx, `UPDATE database_credentials SET status = ?, expires_at = ?, revoked_at = ?
		WHERE database_id = ? AND id = ?`,
		string(c.Status), nullMicros(c.ExpiresAt), nullMicros(c.RevokedAt), c.DatabaseID, c.ID)
	if err != nil {
		return writeErr(err, "update credential", "credential conflicts", "credential not found")
	}
	return mustAffect(res, "update credential", "credential not found")
}

// RewrapCredential replaces the wrapped data key and key id while the stored
// key id is fromKeyID.
func (q *queries) RewrapCredential(ctx context.Context, c *controlplane.Credential, fromKeyID string) error {
	res, err := q.db.ExecContext(ctx, `UPDATE database_credentials SET kms_key_id = ?, dek_cipher = ?
		WHERE database_id = ? AND id = ? AND kms_key_id = ?`, c.KMSKeyID, c.DEKCipher, c.DatabaseID, c.ID, fromKeyID)
	if err != nil {
		return writeErr(err, "rewrap credential", "credential conflicts", "credential not found")
	}
	if err := mustAffect(res, "rewrap credential", "credential not found"); err != nil {
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
		WHERE status = 'rotating' AND expires_at <= ? ORDER BY expires_at, id LIMIT ?`,
		[]any{micros(utc(now)), controlplane.PageLimit(limit)}, scanCredential)
	if err != nil {
		return nil, fmt.Errorf("cannot list due credentials: %w", err)
	}
	return creds, nil
}

// ListCredentialsExpiring lists up to limit active credentials that expire at
// or before before, soonest first.
func (q *queries) ListCredentialsExpiring(ctx context.Context, before time.Time, limit int) ([]*controlplane.Credential, error) {
	creds, err := queryAll(ctx, q.db, `SELECT `+credColumns+` FROM database_credentials
		WHERE status = 'active' AND expires_at <= ? ORDER BY expires_at, id LIMIT ?`,
		[]any{micros(utc(before)), controlplane.PageLimit(limit)}, scanCredential)
	if err != nil {
		return nil, fmt.Errorf("cannot list expiring credentials: %w", err)
	}
	return creds, nil
}

// ListCredentialsByKey lists up to limit credentials, revoked ones excepted,
// whose data key is wrapped under a key other than notKeyID, by id.
func (q *queries) ListCredentialsByKey(ctx context.Context, notKeyID string, limit int) ([]*controlplane.Credential, error) {
	creds, err := queryAll(ctx, q.db, `SELECT `+credColumns+` FROM database_credentials
		WHERE status <> 'revoked' AND kms_key_id <> ? ORDER BY id LIMIT ?`,
		[]any{notKeyID, controlplane.PageLimit(limit)}, scanCredential)
	if err != nil {
		return nil, fmt.Errorf("cannot list credentials by key: %w", err)
	}
	return creds, nil
}

// CountCredentialsByKey counts the credentials that are not revoked per kms_key_id.
func (q *queries) CountCredentialsByKey(ctx context.Context) (map[string]int, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT kms_key_id, count(*) FROM database_credentials
		WHERE status <> 'revoked' GROUP BY kms_key_id`)
	if err != nil {
		return nil, fmt.Errorf("cannot count credentials: %w", err)
	}
	return scanCounts(rows, "count credentials")
}
