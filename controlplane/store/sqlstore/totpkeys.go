package sqlstore

import (
	"context"
	"fmt"

	"github.com/envplane/envplane/controlplane"
)

// Users' sealed TOTP secrets under key rotation (adr/0012, adr/0023).

const userAuthColumns = `user_id, password_hash, totp_secret_cipher, totp_dek_cipher, totp_key_id,
	totp_confirmed_at, totp_last_step, updated_at`

func scanUserAuth(s scanner) (*controlplane.UserAuth, error) {
	var a controlplane.UserAuth
	if err := s.Scan(&a.UserID, &a.PasswordHash, &a.TOTP.SecretCipher, &a.TOTP.DEKCipher, &a.TOTP.KeyID,
		tmPtr(&a.TOTPConfirmedAt), &a.TOTPLastStep, tm(&a.UpdatedAt)); err != nil {
		return nil, err
	}
	return &a, nil
}

// ListUserTOTPByKey lists up to limit sign-in records with a sealed TOTP
// secret whose data key is wrapped under a key other than notKeyID, by user id.
func (q *queries) ListUserTOTPByKey(ctx context.Context, notKeyID string, limit int) ([]*controlplane.UserAuth, error) {
	as, err := queryAll(ctx, q.db, `SELECT `+userAuthColumns+` FROM user_auth
		WHERE totp_key_id <> '' AND totp_key_id <> $1 ORDER BY user_id LIMIT $2`,
		[]any{notKeyID, controlplane.PageLimit(limit)}, scanUserAuth)
	if err != nil {
		return nil, fmt.Errorf("cannot list totp secrets by key: %w", err)
	}
	return as, nil
}

// CountUserTOTPByKey counts the sealed TOTP secrets per totp_key_id.
func (q *queries) CountUserTOTPByKey(ctx context.Context) (map[string]int, error) {
	counts, err := queryCounts(ctx, q.db, `SELECT totp_key_id, count(*) FROM user_auth
		WHERE totp_key_id <> '' GROUP BY totp_key_id`)
	if err != nil {
		return nil, fmt.Errorf("cannot count totp secrets: %w", err)
	}
	return counts, nil
}

// RewrapUserTOTP replaces the user's wrapped TOTP data key and key id with
// to's while the stored ones are from's.
func (q *queries) RewrapUserTOTP(ctx context.Context, userID string, from, to controlplane.Sealed) error {
	tag, err := q.db.ExecContext(ctx, `UPDATE user_auth SET totp_dek_cipher = $1, totp_key_id = $2
		WHERE user_id = $3 AND totp_key_id = $4 AND totp_dek_cipher = $5`,
		to.DEKCipher, to.KeyID, userID, from.KeyID, from.DEKCipher)
	if err != nil {
		return q.writeErr(err, "rewrap totp secret", "user auth conflicts", "user not found")
	}
	if err := mustAffect(tag, "user has no sign-in record"); err != nil {
		if _, gerr := q.GetUserAuth(ctx, userID); gerr == nil {
			return controlplane.Errorf(controlplane.ECONFLICT, "the TOTP secret's key changed meanwhile")
		}
		return err
	}
	return nil
}
