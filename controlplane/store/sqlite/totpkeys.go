package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/envplane/envplane/controlplane"
)

// Users' sealed TOTP secrets under key rotation (adr/0012, adr/0023).

const userAuthColumns = `user_id, password_hash, totp_secret_cipher, totp_dek_cipher, totp_key_id,
	totp_confirmed_at, totp_last_step, updated_at`

func scanUserAuth(s scanner) (*controlplane.UserAuth, error) {
	var a controlplane.UserAuth
	var confirmed sql.NullInt64
	var updated int64
	if err := s.Scan(&a.UserID, &a.PasswordHash, &a.TOTP.SecretCipher, &a.TOTP.DEKCipher, &a.TOTP.KeyID,
		&confirmed, &a.TOTPLastStep, &updated); err != nil {
		return nil, err
	}
	a.TOTPConfirmedAt, a.UpdatedAt = fromNullMicros(confirmed), fromMicros(updated)
	return &a, nil
}

// ListUserTOTPByKey lists up to limit sign-in records with a sealed TOTP
// secret whose data key is wrapped under a key other than notKeyID, by user id.
func (q *queries) ListUserTOTPByKey(ctx context.Context, notKeyID string, limit int) ([]*controlplane.UserAuth, error) {
	as, err := queryAll(ctx, q.db, `SELECT `+userAuthColumns+` FROM user_auth
		WHERE totp_key_id <> '' AND totp_key_id <> ? ORDER BY user_id LIMIT ?`,
		[]any{notKeyID, controlplane.PageLimit(limit)}, scanUserAuth)
	if err != nil {
		return nil, fmt.Errorf("cannot list totp secrets by key: %w", err)
	}
	return as, nil
}

// CountUserTOTPByKey counts the sealed TOTP secrets per totp_key_id.
func (q *queries) CountUserTOTPByKey(ctx context.Context) (map[string]int, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT totp_key_id, count(*) FROM user_auth
		WHERE totp_key_id <> '' GROUP BY totp_key_id`)
	if err != nil {
		return nil, fmt.Errorf("cannot count totp secrets: %w", err)
	}
	return scanCounts(rows, "count totp secrets")
}

// RewrapUserTOTP replaces the user's wrapped TOTP data key and key id with
// to's while the stored ones are from's.
func (q *queries) RewrapUserTOTP(ctx context.Context, userID string, from, to controlplane.Sealed) error {
	res, err := q.db.ExecContext(ctx, `UPDATE user_auth SET totp_dek_cipher = ?, totp_key_id = ?
		WHERE user_id = ? AND totp_key_id = ? AND totp_dek_cipher = ?`,
		to.DEKCipher, to.KeyID, userID, from.KeyID, from.DEKCipher)
	if err != nil {
		return writeErr(err, "rewrap totp secret", "user auth conflicts", "user not found")
	}
	if err := mustAffect(res, "rewrap totp secret", "user has no sign-in record"); err != nil {
		if _, gerr := q.GetUserAuth(ctx, userID); gerr == nil {
			return controlplane.Errorf(controlplane.ECONFLICT, "the TOTP secret's key changed meanwhile")
		}
		return err
	}
	return nil
}
