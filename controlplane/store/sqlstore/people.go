package sqlstore

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
// (a new TOTP cipher) restarts the last step at 0.
func (q *queries) PutUserAuth(ctx context.Context, a *controlplane.UserAuth) error {
	a.UpdatedAt = utc(a.UpdatedAt)
	a.TOTPConfirmedAt = utcPtr(a.TOTPConfirmedAt)
	_, err := q.db.ExecContext(ctx, `INSERT INTO user_auth (user_id, password_hash, totp_secret_cipher, totp_dek_cipher,
		totp_key_id, totp_confirmed_at, totp_last_step, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7)
		ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash,
			totp_last_step = CASE WHEN user_auth.totp_secret_cipher IS NOT DISTINCT FROM excluded.totp_secret_cipher THEN user_auth.totp_last_step ELSE 0 END,
			totp_secret_cipher = excluded.totp_secret_cipher, totp_dek_cipher = excluded.totp_dek_cipher,
			totp_key_id = excluded.totp_key_id, totp_confirmed_at = excluded.totp_confirmed_at, updated_at = excluded.updated_at`,
		a.UserID, a.PasswordHash, nullBytes(a.TOTP.SecretCipher), nullBytes(a.TOTP.DEKCipher), a.TOTP.KeyID,
		a.TOTPConfirmedAt, a.UpdatedAt)
	if err != nil {
		return q.writeErr(err, "put user auth", "user auth exists", "user not found")
	}
	return nil
}

// GetUserAuth finds the user's sign-in record. ENOTFOUND if none.
func (q *queries) GetUserAuth(ctx context.Context, userID string) (*controlplane.UserAuth, error) {
	a, err := scanUserAuth(q.db.QueryRowContext(ctx, `SELECT `+userAuthColumns+` FROM user_auth WHERE user_id = $1`, userID))
	if err != nil {
		return nil, readErr(err, "get user auth", "user has no sign-in record")
	}
	return a, nil
}

// AdvanceTOTPStep raises the last accepted step to step, only upwards.
func (q *queries) AdvanceTOTPStep(ctx context.Context, userID string, step int64) error {
	tag, err := q.db.ExecContext(ctx, `UPDATE user_auth SET totp_last_step = $1 WHERE user_id = $2 AND totp_last_step < $1`, step, userID)
	if err != nil {
		return fmt.Errorf("cannot advance totp step: %w", err)
	}
	if affected(tag) > 0 {
		return nil
	}
	if _, err := q.GetUserAuth(ctx, userID); err != nil {
		return err
	}
	return controlplane.Errorf(controlplane.ECONFLICT, "the code was already used")
}

// ReplaceRecoveryCodes drops the user's codes and stores hashes as unused ones.
func (q *queries) ReplaceRecoveryCodes(ctx context.Context, userID string, hashes []string) error {
	if _, err := q.db.ExecContext(ctx, `DELETE FROM recovery_codes WHERE user_id = $1`, userID); err != nil {
		return fmt.Errorf("cannot replace recovery codes: %w", err)
	}
	for _, h := range hashes {
		if _, err := q.db.ExecContext(ctx, `INSERT INTO recovery_codes (user_id, hash) VALUES ($1, $2)`, userID, h); err != nil {
			return q.writeErr(err, "replace recovery codes", "recovery code exists", "user not found")
		}
	}
	return nil
}

// UseRecoveryCode marks an unused code used. ENOTFOUND if there is none.
func (q *queries) UseRecoveryCode(ctx context.Context, userID, hash string, at time.Time) error {
	tag, err := q.db.ExecContext(ctx, `UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND hash = $3 AND used_at IS NULL`,
		utc(at), userID, hash)
	if err != nil {
		return fmt.Errorf("cannot use recovery code: %w", err)
	}
	return mustAffect(tag, "no such recovery code")
}

// CountRecoveryCodes counts the user's unused codes.
func (q *queries) CountRecoveryCodes(ctx context.Context, userID string) (int, error) {
	var n int
	if err := q.db.QueryRowContext(ctx, `SELECT count(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL`, userID).Scan(&n); err != nil {
		return 0, fmt.Errorf("cannot count recovery codes: %w", err)
	}
	return n, nil
}

// RecordSignInFailure counts one failure under key, restarting a count
// whose last failure is before since.
func (q *queries) RecordSignInFailure(ctx context.Context, key string, at, since time.Time) (int, error) {
	var n int
	err := q.db.QueryRowContext(ctx, `INSERT INTO signin_failures (key, failures, last_failure_at) VALUES ($1, 1, $2)
		ON CONFLICT (key) DO UPDATE SET
			failures = CASE WHEN signin_failures.last_failure_at < $3 THEN 1 ELSE signin_failures.failures + 1 END,
			last_failure_at = excluded.last_failure_at
		RETURNING failures`, key, utc(at), utc(since)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("cannot record sign-in failure: %w", err)
	}
	return n, nil
}

// GetSignInFailures returns key's count and last failure; 0 when none.
func (q *queries) GetSignInFailures(ctx context.Context, key string) (int, time.Time, error) {
	var n int
	var last time.Time
	err := q.db.QueryRowContext(ctx, `SELECT failures, last_failure_at FROM signin_failures WHERE key = $1`, key).Scan(&n, tm(&last))
	if errors.Is(err, sql.ErrNoRows) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("cannot get sign-in failures: %w", err)
	}
	return n, last, nil
}

// ClearSignInFailures forgets key's failures.
func (q *queries) ClearSignInFailures(ctx context.Context, key string) error {
	if _, err := q.db.ExecContext(ctx, `DELETE FROM signin_failures WHERE key = $1`, key); err != nil {
		return fmt.Errorf("cannot clear sign-in failures: %w", err)
	}
	return nil
}

// DeleteSignInFailuresBefore forgets counts whose last failure is before before.
func (q *queries) DeleteSignInFailuresBefore(ctx context.Context, before time.Time) (int, error) {
	tag, err := q.db.ExecContext(ctx, `DELETE FROM signin_failures WHERE last_failure_at < $1`, utc(before))
	if err != nil {
		return 0, fmt.Errorf("cannot prune sign-in failures: %w", err)
	}
	return int(affected(tag)), nil
}

// DeleteSessionsEnded removes revoked, expired and idle sessions.
func (q *queries) DeleteSessionsEnded(ctx context.Context, before, idleBefore time.Time) (int, error) {
	tag, err := q.db.ExecContext(ctx, `DELETE FROM sessions WHERE revoked_at < $1 OR expires_at < $1 OR last_seen_at < $2`, utc(before), utc(idleBefore))
	if err != nil {
		return 0, fmt.Errorf("cannot prune sessions: %w", err)
	}
	return int(affected(tag)), nil
}

const sessionColumns = `id, user_id, hash, org_id, environment_id, address, user_agent, created_at, last_seen_at, expires_at, revoked_at`

func scanSession(s scanner) (*controlplane.Session, error) {
	var v controlplane.Session
	var orgID *string
	if err := s.Scan(&v.ID, &v.UserID, &v.Hash, &orgID, &v.EnvironmentID, &v.Address, &v.UserAgent, tm(&v.CreatedAt), tm(&v.LastSeenAt), tm(&v.ExpiresAt), tmPtr(&v.RevokedAt)); err != nil {
		return nil, err
	}
	v.OrgID = deref(orgID)
	if v.OrgID == "" {
		// The organization was deleted: its environment went with it.
		v.EnvironmentID = ""
	}
	return &v, nil
}

// CreateSession inserts s, truncating its times.
func (q *queries) CreateSession(ctx context.Context, s *controlplane.Session) error {
	s.CreatedAt, s.LastSeenAt, s.ExpiresAt, s.RevokedAt = utc(s.CreatedAt), utc(s.LastSeenAt), utc(s.ExpiresAt), utcPtr(s.RevokedAt)
	_, err := q.db.ExecContext(ctx, `INSERT INTO sessions (`+sessionColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		s.ID, s.UserID, s.Hash, nullString(s.OrgID), s.EnvironmentID, s.Address, s.UserAgent,
		s.CreatedAt, s.LastSeenAt, s.ExpiresAt, s.RevokedAt)
	if err != nil {
		return q.writeErr(err, "create session", "session exists", "user or organization not found")
	}
	return nil
}

// GetSessionByHash finds a session by its token's hash. ENOTFOUND if absent.
func (q *queries) GetSessionByHash(ctx context.Context, hash string) (*controlplane.Session, error) {
	s, err := scanSession(q.db.QueryRowContext(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE hash = $1`, hash))
	if err != nil {
		return nil, readErr(err, "get session", "session not found")
	}
	return s, nil
}

// ListUserSessions lists the user's live sessions by id.
func (q *queries) ListUserSessions(ctx context.Context, userID string, now time.Time) ([]*controlplane.Session, error) {
	ss, err := queryAll(ctx, q.db, `SELECT `+sessionColumns+` FROM sessions
		WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 ORDER BY id`, []any{userID, utc(now)}, scanSession)
	if err != nil {
		return nil, fmt.Errorf("cannot list sessions: %w", err)
	}
	return ss, nil
}

// RevokeSession revokes one of the user's sessions.
func (q *queries) RevokeSession(ctx context.Context, userID, id string, at time.Time) error {
	tag, err := q.db.ExecContext(ctx, `UPDATE sessions SET revoked_at = coalesce(revoked_at, $1) WHERE user_id = $2 AND id = $3`,
		utc(at), userID, id)
	if err != nil {
		return fmt.Errorf("cannot revoke session: %w", err)
	}
	return mustAffect(tag, "session not found")
}

// RevokeUserSessions revokes every live session of the user.
func (q *queries) RevokeUserSessions(ctx context.Context, userID string, at time.Time) (int, error) {
	tag, err := q.db.ExecContext(ctx, `UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL`, utc(at), userID)
	if err != nil {
		return 0, fmt.Errorf("cannot revoke sessions: %w", err)
	}
	return int(affected(tag)), nil
}

// SetSessionContext saves the active organization and environment.
func (q *queries) SetSessionContext(ctx context.Context, id, orgID, environmentID string) error {
	tag, err := q.db.ExecContext(ctx, `UPDATE sessions SET org_id = $1, environment_id = $2 WHERE id = $3`, nullString(orgID), environmentID, id)
	if err != nil {
		return q.writeErr(err, "set session context", "session exists", "organization not found")
	}
	return mustAffect(tag, "session not found")
}

// TouchSession moves last_seen_at forward.
func (q *queries) TouchSession(ctx context.Context, id string, at time.Time) error {
	if _, err := q.db.ExecContext(ctx, `UPDATE sessions SET last_seen_at = `+q.d.greatest()+`(last_seen_at, $1) WHERE id = $2`, utc(at), id); err != nil {
		return fmt.Errorf("cannot touch session: %w", err)
	}
	return nil
}

const invitationColumns = `id, org_id, email, role, environments, hash, invited_by, created_at, expires_at, mail_sent_at, accepted_at, accepted_by, revoked_at`

func scanInvitation(s scanner) (*controlplane.Invitation, error) {
	var v controlplane.Invitation
	var envs []byte
	if err := s.Scan(&v.ID, &v.OrgID, &v.Email, &v.Role, &envs, &v.Hash, &v.InvitedBy, tm(&v.CreatedAt), tm(&v.ExpiresAt), tmPtr(&v.MailSentAt), tmPtr(&v.AcceptedAt), &v.AcceptedBy, tmPtr(&v.RevokedAt)); err != nil {
		return nil, err
	}
	if envs != nil {
		if err := json.Unmarshal(envs, &v.Environments); err != nil {
			return nil, fmt.Errorf("cannot decode invitation environments: %w", err)
		}
	}
	return &v, nil
}

// CreateInvitation inserts i, truncating its times.
func (q *queries) CreateInvitation(ctx context.Context, i *controlplane.Invitation) error {
	i.CreatedAt, i.ExpiresAt = utc(i.CreatedAt), utc(i.ExpiresAt)
	i.MailSentAt, i.AcceptedAt, i.RevokedAt = utcPtr(i.MailSentAt), utcPtr(i.AcceptedAt), utcPtr(i.RevokedAt)
	var envs *string
	if len(i.Environments) > 0 {
		b, err := json.Marshal(i.Environments)
		if err != nil {
			return fmt.Errorf("cannot encode invitation environments: %w", err)
		}
		s := string(b)
		envs = &s
	}
	_, err := q.db.ExecContext(ctx, `INSERT INTO invitations (`+invitationColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		i.ID, i.OrgID, i.Email, string(i.Role), envs, i.Hash, i.InvitedBy, i.CreatedAt, i.ExpiresAt,
		i.MailSentAt, i.AcceptedAt, i.AcceptedBy, i.RevokedAt)
	if err != nil {
		return q.writeErr(err, "create invitation", "invitation exists", "organization not found")
	}
	return nil
}

// GetInvitationByHash finds an invitation by its token's hash. ENOTFOUND if absent.
func (q *queries) GetInvitationByHash(ctx context.Context, hash string) (*controlplane.Invitation, error) {
	i, err := scanInvitation(q.db.QueryRowContext(ctx, `SELECT `+invitationColumns+` FROM invitations WHERE hash = $1`, hash))
	if err != nil {
		return nil, readErr(err, "get invitation", "invitation not found")
	}
	return i, nil
}

// GetInvitation finds an invitation of the organization. ENOTFOUND if absent.
func (q *queries) GetInvitation(ctx context.Context, orgID, id string) (*controlplane.Invitation, error) {
	i, err := scanInvitation(q.db.QueryRowContext(ctx, `SELECT `+invitationColumns+` FROM invitations WHERE org_id = $1 AND id = $2`, orgID, id))
	if err != nil {
		return nil, readErr(err, "get invitation", "invitation not found")
	}
	return i, nil
}

// ListPendingInvitations lists the organization's pending invitations by id.
func (q *queries) ListPendingInvitations(ctx context.Context, orgID string, now time.Time, p controlplane.Page) ([]*controlplane.Invitation, string, error) {
	n := controlplane.PageLimit(p.Limit)
	is, err := queryAll(ctx, q.db, `SELECT `+invitationColumns+` FROM invitations
		WHERE org_id = $1 AND id > $2 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $3 ORDER BY id LIMIT $4`,
		[]any{orgID, p.Cursor, utc(now), n + 1}, scanInvitation)
	if err != nil {
		return nil, "", fmt.Errorf("cannot list invitations: %w", err)
	}
	is, next := cutPage(is, n, func(i *controlplane.Invitation) string { return i.ID })
	return is, next, nil
}

// invitationSettled tells ENOTFOUND from ECONFLICT after a guarded update changed nothing.
func (q *queries) invitationSettled(ctx context.Context, id string) error {
	var n int
	if err := q.db.QueryRowContext(ctx, `SELECT count(*) FROM invitations WHERE id = $1`, id).Scan(&n); err != nil {
		return fmt.Errorf("cannot read invitation: %w", err)
	}
	if n == 0 {
		return controlplane.Errorf(controlplane.ENOTFOUND, "invitation not found")
	}
	return controlplane.Errorf(controlplane.ECONFLICT, "the invitation was already accepted or revoked")
}

// RenewInvitation gives a pending invitation a new hash and expiry.
func (q *queries) RenewInvitation(ctx context.Context, orgID, id, hash string, expiresAt time.Time) error {
	tag, err := q.db.ExecContext(ctx, `UPDATE invitations SET hash = $1, expires_at = $2, mail_sent_at = NULL
		WHERE org_id = $3 AND id = $4 AND accepted_at IS NULL AND revoked_at IS NULL`, hash, utc(expiresAt), orgID, id)
	if err != nil {
		return q.writeErr(err, "renew invitation", "invitation exists", "invitation not found")
	}
	if affected(tag) > 0 {
		return nil
	}
	if _, err := q.GetInvitation(ctx, orgID, id); err != nil {
		return err
	}
	return q.invitationSettled(ctx, id)
}

// MarkInvitationMailed sets mail_sent_at.
func (q *queries) MarkInvitationMailed(ctx context.Context, id string, at time.Time) error {
	if _, err := q.db.ExecContext(ctx, `UPDATE invitations SET mail_sent_at = $1 WHERE id = $2`, utc(at), id); err != nil {
		return fmt.Errorf("cannot mark invitation mailed: %w", err)
	}
	return nil
}

// RevokeInvitation revokes an invitation not yet accepted.
func (q *queries) RevokeInvitation(ctx context.Context, orgID, id string, at time.Time) error {
	tag, err := q.db.ExecContext(ctx, `UPDATE invitations SET revoked_at = coalesce(revoked_at, $1)
		WHERE org_id = $2 AND id = $3 AND accepted_at IS NULL`, utc(at), orgID, id)
	if err != nil {
		return fmt.Errorf("cannot revoke invitation: %w", err)
	}
	if affected(tag) > 0 {
		return nil
	}
	if _, err := q.GetInvitation(ctx, orgID, id); err != nil {
		return err
	}
	return q.invitationSettled(ctx, id)
}

// AcceptInvitation records the one acceptance of an invitation.
func (q *queries) AcceptInvitation(ctx context.Context, id, userID string, at time.Time) error {
	tag, err := q.db.ExecContext(ctx, `UPDATE invitations SET accepted_at = $1, accepted_by = $2
		WHERE id = $3 AND accepted_at IS NULL AND revoked_at IS NULL`, utc(at), userID, id)
	if err != nil {
		return fmt.Errorf("cannot accept invitation: %w", err)
	}
	if affected(tag) > 0 {
		return nil
	}
	return q.invitationSettled(ctx, id)
}
