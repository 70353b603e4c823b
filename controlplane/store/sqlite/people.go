package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/envplane/envplane/controlplane"
)

// Sign-in records, sessions and invitations (adr/0023).

// PutUserAuth inserts or replaces the user's sign-in record; an enrolment
// (a new TOTP key id or cipher) restarts the last step at 0.
func (q *queries) PutUserAuth(ctx context.Context, a *controlplane.UserAuth) error {
	a.UpdatedAt = utc(a.UpdatedAt)
	a.TOTPConfirmedAt = utcPtr(a.TOTPConfirmedAt)
	_, err := q.db.ExecContext(ctx, `INSERT INTO user_auth (user_id, password_hash, totp_secret_cipher, totp_dek_cipher,
		totp_key_id, totp_confirmed_at, totp_last_step, updated_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?)
		ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash,
			totp_last_step = CASE WHEN user_auth.totp_secret_cipher IS excluded.totp_secret_cipher THEN user_auth.totp_last_step ELSE 0 END,
			totp_secret_cipher = excluded.totp_secret_cipher, totp_dek_cipher = excluded.totp_dek_cipher,
			totp_key_id = excluded.totp_key_id, totp_confirmed_at = excluded.totp_confirmed_at, updated_at = excluded.updated_at`,
		a.UserID, a.PasswordHash, nullBytes(a.TOTP.SecretCipher), nullBytes(a.TOTP.DEKCipher), a.TOTP.KeyID,
		nullMicros(a.TOTPConfirmedAt), micros(a.UpdatedAt))
	if err != nil {
		return writeErr(err, "put user auth", "user auth exists", "user not found")
	}
	return nil
}

// GetUserAuth finds the user's sign-in record. ENOTFOUND if none.
func (q *queries) GetUserAuth(ctx context.Context, userID string) (*controlplane.UserAuth, error) {
	a, err := scanUserAuth(q.db.QueryRowContext(ctx, `SELECT `+userAuthColumns+` FROM user_auth WHERE user_id = ?`, userID))
	if err != nil {
		return nil, readErr(err, "get user auth", "user has no sign-in record")
	}
	return a, nil
}

// AdvanceTOTPStep raises the last accepted step to step, only upwards.
func (q *queries) AdvanceTOTPStep(ctx context.Context, userID string, step int64) error {
	res, err := q.db.ExecContext(ctx, `UPDATE user_auth SET totp_last_step = ? WHERE user_id = ? AND totp_last_step < ?`, step, userID, step)
	if err != nil {
		return fmt.Errorf("cannot advance totp step: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n > 0 {
		return err
	}
	if _, err := q.GetUserAuth(ctx, userID); err != nil {
		return err
	}
	return controlplane.Errorf(controlplane.ECONFLICT, "the code was already used")
}

// ReplaceRecoveryCodes drops the user's codes and stores hashes as unused ones.
func (q *queries) ReplaceRecoveryCodes(ctx context.Context, userID string, hashes []string) error {
	if _, err := q.db.ExecContext(ctx, `DELETE FROM recovery_codes WHERE user_id = ?`, userID); err != nil {
		return fmt.Errorf("cannot replace recovery codes: %w", err)
	}
	for _, h := range hashes {
		if _, err := q.db.ExecContext(ctx, `INSERT INTO recovery_codes (user_id, hash) VALUES (?, ?)`, userID, h); err != nil {
			return writeErr(err, "replace recovery codes", "recovery code exists", "user not found")
		}
	}
	return nil
}

// UseRecoveryCode marks an unused code used. ENOTFOUND if there is none.
func (q *queries) UseRecoveryCode(ctx context.Context, userID, hash string, at time.Time) error {
	res, err := q.db.ExecContext(ctx, `UPDATE recovery_codes SET used_at = ? WHERE user_id = ? AND hash = ? AND used_at IS NULL`,
		micros(utc(at)), userID, hash)
	if err != nil {
		return fmt.Errorf("cannot use recovery code: %w", err)
	}
	return mustAffect(res, "use recovery code", "no such recovery code")
}

// CountRecoveryCodes counts the user's unused codes.
func (q *queries) CountRecoveryCodes(ctx context.Context, userID string) (int, error) {
	var n int
	if err := q.db.QueryRowContext(ctx, `SELECT count(*) FROM recovery_codes WHERE user_id = ? AND used_at IS NULL`, userID).Scan(&n); err != nil {
		return 0, fmt.Errorf("cannot count recovery codes: %w", err)
	}
	return n, nil
}

// RecordSignInFailure counts one failure under key, restarting a count
// whose last failure is before since.
func (q *queries) RecordSignInFailure(ctx context.Context, key string, at, since time.Time) (int, error) {
	var n int
	err := q.db.QueryRowContext(ctx, `INSERT INTO signin_failures (key, failures, last_failure_at) VALUES (?, 1, ?)
		ON CONFLICT (key) DO UPDATE SET
			failures = CASE WHEN signin_failures.last_failure_at < ? THEN 1 ELSE signin_failures.failures + 1 END,
			last_failure_at = excluded.last_failure_at
		RETURNING failures`, key, micros(utc(at)), micros(utc(since))).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("cannot record sign-in failure: %w", err)
	}
	return n, nil
}

// GetSignInFailures returns key's count and last failure; 0 when none.
func (q *queries) GetSignInFailures(ctx context.Context, key string) (int, time.Time, error) {
	var n int
	var last int64
	err := q.db.QueryRowContext(ctx, `SELECT failures, last_failure_at FROM signin_failures WHERE key = ?`, key).Scan(&n, &last)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("cannot get sign-in failures: %w", err)
	}
	return n, fromMicros(last), nil
}

// ClearSignInFailures forgets key's failures.
func (q *queries) ClearSignInFailures(ctx context.Context, key string) error {
	if _, err := q.db.ExecContext(ctx, `DELETE FROM signin_failures WHERE key = ?`, key); err != nil {
		return fmt.Errorf("cannot clear sign-in failures: %w", err)
	}
	return nil
}

// DeleteSignInFailuresBefore forgets counts whose last failure is before before.
func (q *queries) DeleteSignInFailuresBefore(ctx context.Context, before time.Time) (int, error) {
	res, err := q.db.ExecContext(ctx, `DELETE FROM signin_failures WHERE last_failure_at < ?`, micros(utc(before)))
	if err != nil {
		return 0, fmt.Errorf("cannot prune sign-in failures: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// DeleteSessionsEnded removes revoked, expired and idle sessions.
func (q *queries) DeleteSessionsEnded(ctx context.Context, before, idleBefore time.Time) (int, error) {
	res, err := q.db.ExecContext(ctx, `DELETE FROM sessions WHERE revoked_at < ? OR expires_at < ? OR last_seen_at < ?`,
		micros(utc(before)), micros(utc(before)), micros(utc(idleBefore)))
	if err != nil {
		return 0, fmt.Errorf("cannot prune sessions: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

const sessionColumns = `id, user_id, hash, org_id, environment_id, address, user_agent, created_at, last_seen_at, expires_at, revoked_at`

func scanSession(s scanner) (*controlplane.Session, error) {
	var v controlplane.Session
	var orgID sql.NullString
	var created, seen, expires int64
	var revoked sql.NullInt64
	if err := s.Scan(&v.ID, &v.UserID, &v.Hash, &orgID, &v.EnvironmentID, &v.Address, &v.UserAgent, &created, &seen, &expires, &revoked); err != nil {
		return nil, err
	}
	v.OrgID = orgID.String
	if v.OrgID == "" {
		// The organization was deleted: its environment went with it.
		v.EnvironmentID = ""
	}
	v.CreatedAt, v.LastSeenAt, v.ExpiresAt, v.RevokedAt = fromMicros(created), fromMicros(seen), fromMicros(expires), fromNullMicros(revoked)
	return &v, nil
}

// CreateSession inserts s, truncating its times.
func (q *queries) CreateSession(ctx context.Context, s *controlplane.Session) error {
	s.CreatedAt, s.LastSeenAt, s.ExpiresAt, s.RevokedAt = utc(s.CreatedAt), utc(s.LastSeenAt), utc(s.ExpiresAt), utcPtr(s.RevokedAt)
	_, err := q.db.ExecContext(ctx, `INSERT INTO sessions (`+sessionColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		s.ID, s.UserID, s.Hash, nullString(s.OrgID), s.EnvironmentID, s.Address, s.UserAgent,
		micros(s.CreatedAt), micros(s.LastSeenAt), micros(s.ExpiresAt), nullMicros(s.RevokedAt))
	if err != nil {
		return writeErr(err, "create session", "session exists", "user or organization not found")
	}
	return nil
}

// GetSessionByHash finds a session by its token's hash. ENOTFOUND if absent.
func (q *queries) GetSessionByHash(ctx context.Context, hash string) (*controlplane.Session, error) {
	s, err := scanSession(q.db.QueryRowContext(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE hash = ?`, hash))
	if err != nil {
		return nil, readErr(err, "get session", "session not found")
	}
	return s, nil
}

// ListUserSessions lists the user's live sessions by id.
func (q *queries) ListUserSessions(ctx context.Context, userID string, now time.Time) ([]*controlplane.Session, error) {
	ss, err := queryAll(ctx, q.db, `SELECT `+sessionColumns+` FROM sessions
		WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ? ORDER BY id`, []any{userID, micros(utc(now))}, scanSession)
	if err != nil {
		return nil, fmt.Errorf("cannot list sessions: %w", err)
	}
	return ss, nil
}

// RevokeSession revokes one of the user's sessions.
func (q *queries) RevokeSession(ctx context.Context, userID, id string, at time.Time) error {
	res, err := q.db.ExecContext(ctx, `UPDATE sessions SET revoked_at = coalesce(revoked_at, ?) WHERE user_id = ? AND id = ?`,
		micros(utc(at)), userID, id)
	if err != nil {
		return fmt.Errorf("cannot revoke session: %w", err)
	}
	return mustAffect(res, "revoke session", "session not found")
}

// RevokeUserSessions revokes every live session of the user.
func (q *queries) RevokeUserSessions(ctx context.Context, userID string, at time.Time) (int, error) {
	res, err := q.db.ExecContext(ctx, `UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL`, micros(utc(at)), userID)
	if err != nil {
		return 0, fmt.Errorf("cannot revoke sessions: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// SetSessionContext saves the active organization and environment.
func (q *queries) SetSessionContext(ctx context.Context, id, orgID, environmentID string) error {
	res, err := q.db.ExecContext(ctx, `UPDATE sessions SET org_id = ?, environment_id = ? WHERE id = ?`, nullString(orgID), environmentID, id)
	if err != nil {
		return writeErr(err, "set session context", "session exists", "organization not found")
	}
	return mustAffect(res, "set session context", "session not found")
}

// TouchSession moves last_seen_at forward.
func (q *queries) TouchSession(ctx context.Context, id string, at time.Time) error {
	if _, err := q.db.ExecContext(ctx, `UPDATE sessions SET last_seen_at = max(last_seen_at, ?) WHERE id = ?`, micros(utc(at)), id); err != nil {
		return fmt.Errorf("cannot touch session: %w", err)
	}
	return nil
}

const invitationColumns = `id, org_id, email, role, environments, hash, invited_by, created_at, expires_at, mail_sent_at, accepted_at, accepted_by, revoked_at`

func scanInvitation(s scanner) (*controlplane.Invitation, error) {
	var v controlplane.Invitation
	var envs sql.NullString
	var created, expires int64
	var mailed, accepted, revoked sql.NullInt64
	if err := s.Scan(&v.ID, &v.OrgID, &v.Email, &v.Role, &envs, &v.Hash, &v.InvitedBy, &created, &expires, &mailed, &accepted, &v.AcceptedBy, &revoked); err != nil {
		return nil, err
	}
	if envs.Valid {
		if err := json.Unmarshal([]byte(envs.String), &v.Environments); err != nil {
			return nil, fmt.Errorf("cannot decode invitation environments: %w", err)
		}
	}
	v.CreatedAt, v.ExpiresAt = fromMicros(created), fromMicros(expires)
	v.MailSentAt, v.AcceptedAt, v.RevokedAt = fromNullMicros(mailed), fromNullMicros(accepted), fromNullMicros(revoked)
	return &v, nil
}

// CreateInvitation inserts i, truncating its times.
func (q *queries) CreateInvitation(ctx context.Context, i *controlplane.Invitation) error {
	i.CreatedAt, i.ExpiresAt = utc(i.CreatedAt), utc(i.ExpiresAt)
	i.MailSentAt, i.AcceptedAt, i.RevokedAt = utcPtr(i.MailSentAt), utcPtr(i.AcceptedAt), utcPtr(i.RevokedAt)
	var envs any
	if len(i.Environments) > 0 {
		b, err := json.Marshal(i.Environments)
		if err != nil {
			return fmt.Errorf("cannot encode invitation environments: %w", err)
		}
		envs = string(b)
	}
	_, err := q.db.ExecContext(ctx, `INSERT INTO invitations (`+invitationColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		i.ID, i.OrgID, i.Email, string(i.Role), envs, i.Hash, i.InvitedBy, micros(i.CreatedAt), micros(i.ExpiresAt),
		nullMicros(i.MailSentAt), nullMicros(i.AcceptedAt), i.AcceptedBy, nullMicros(i.RevokedAt))
	if err != nil {
		return writeErr(err, "create invitation", "invitation exists", "organization not found")
	}
	return nil
}

// GetInvitationByHash finds an invitation by its token's hash. ENOTFOUND if absent.
func (q *queries) GetInvitationByHash(ctx context.Context, hash string) (*controlplane.Invitation, error) {
	i, err := scanInvitation(q.db.QueryRowContext(ctx, `SELECT `+invitationColumns+` FROM invitations WHERE hash = ?`, hash))
	if err != nil {
		return nil, readErr(err, "get invitation", "invitation not found")
	}
	return i, nil
}

// GetInvitation finds an invitation of the organization. ENOTFOUND if absent.
func (q *queries) GetInvitation(ctx context.Context, orgID, id string) (*controlplane.Invitation, error) {
	i, err := scanInvitation(q.db.QueryRowContext(ctx, `SELECT `+invitationColumns+` FROM invitations WHERE org_id = ? AND id = ?`, orgID, id))
	if err != nil {
		return nil, readErr(err, "get invitation", "invitation not found")
	}
	return i, nil
}

// ListPendingInvitations lists the organization's pending invitations by id.
func (q *queries) ListPendingInvitations(ctx context.Context, orgID string, now time.Time, p controlplane.Page) ([]*controlplane.Invitation, string, error) {
	n := controlplane.PageLimit(p.Limit)
	is, err := queryAll(ctx, q.db, `SELECT `+invitationColumns+` FROM invitations
		WHERE org_id = ? AND id > ? AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > ? ORDER BY id LIMIT ?`,
		[]any{orgID, p.Cursor, micros(utc(now)), n + 1}, scanInvitation)
	if err != nil {
		return nil, "", fmt.Errorf("cannot list invitations: %w", err)
	}
	is, next := cutPage(is, n, func(i *controlplane.Invitation) string { return i.ID })
	return is, next, nil
}

// invitationSettled tells ENOTFOUND from ECONFLICT after a guarded update changed nothing.
func (q *queries) invitationSettled(ctx context.Context, where string, args ...any) error {
	var n int
	if err := q.db.QueryRowContext(ctx, `SELECT count(*) FROM invitations WHERE `+where, args...).Scan(&n); err != nil {
		return fmt.Errorf("cannot read invitation: %w", err)
	}
	if n == 0 {
		return controlplane.Errorf(controlplane.ENOTFOUND, "invitation not found")
	}
	return controlplane.Errorf(controlplane.ECONFLICT, "the invitation was already accepted or revoked")
}

// RenewInvitation gives a pending invitation a new hash and expiry.
func (q *queries) RenewInvitation(ctx context.Context, orgID, id, hash string, expiresAt time.Time) error {
	res, err := q.db.ExecContext(ctx, `UPDATE invitations SET hash = ?, expires_at = ?, mail_sent_at = NULL
		WHERE org_id = ? AND id = ? AND accepted_at IS NULL AND revoked_at IS NULL`, hash, micros(utc(expiresAt)), orgID, id)
	if err != nil {
		return writeErr(err, "renew invitation", "invitation exists", "invitation not found")
	}
	if n, err := res.RowsAffected(); err != nil || n > 0 {
		return err
	}
	return q.invitationSettled(ctx, "org_id = ? AND id = ?", orgID, id)
}

// MarkInvitationMailed sets mail_sent_at.
func (q *queries) MarkInvitationMailed(ctx context.Context, id string, at time.Time) error {
	if _, err := q.db.ExecContext(ctx, `UPDATE invitations SET mail_sent_at = ? WHERE id = ?`, micros(utc(at)), id); err != nil {
		return fmt.Errorf("cannot mark invitation mailed: %w", err)
	}
	return nil
}

// RevokeInvitation revokes an invitation not yet accepted.
func (q *queries) RevokeInvitation(ctx context.Context, orgID, id string, at time.Time) error {
	res, err := q.db.ExecContext(ctx, `UPDATE invitations SET revoked_at = coalesce(revoked_at, ?)
		WHERE org_id = ? AND id = ? AND accepted_at IS NULL`, micros(utc(at)), orgID, id)
	if err != nil {
		return fmt.Errorf("cannot revoke invitation: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n > 0 {
		return err
	}
	return q.invitationSettled(ctx, "org_id = ? AND id = ?", orgID, id)
}

// AcceptInvitation records the one acceptance of an invitation.
func (q *queries) AcceptInvitation(ctx context.Context, id, userID string, at time.Time) error {
	res, err := q.db.ExecContext(ctx, `UPDATE invitations SET accepted_at = ?, accepted_by = ?
		WHERE id = ? AND accepted_at IS NULL AND revoked_at IS NULL`, micros(utc(at)), userID, id)
	if err != nil {
		return fmt.Errorf("cannot accept invitation: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n > 0 {
		return err
	}
	return q.invitationSettled(ctx, "id = ?", id)
}
