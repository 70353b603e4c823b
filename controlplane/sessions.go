package controlplane

import (
	"context"
	"strings"
	"time"

	"github.com/envplane/envplane/drivers"
)

// SessionPrefix starts every session token, so a session is told from an
// API key (TokenPrefix) at a glance and by secret scanners.
const SessionPrefix = "eps_"

// SignInRequest signs a person in: email and password, and a TOTP code or
// a recovery code when the account has a second factor.
type SignInRequest struct {
	Email        string         `json:"email"`
	Password     drivers.Secret `json:"password"`
	TOTP         drivers.Secret `json:"totp,omitempty"`
	RecoveryCode drivers.Secret `json:"recovery_code,omitempty"`
}

// ClientInfo is where a request came from, as the HTTP layer saw it.
type ClientInfo struct {
	Address   string
	UserAgent string
}

// SignInResponse carries the session token, the only time it is shown.
type SignInResponse struct {
	Token   string   `json:"token"`
	Session *Session `json:"session"`
}

// SessionContextRequest sets a session's active organization and
// environment; both empty clears them.
type SessionContextRequest struct {
	Organization string `json:"organization"`
	Environment  string `json:"environment,omitempty"`
}

// signInDenied is the one answer to a wrong email, password or code.
func signInDenied() error {
	return Errorf(EUNAUTHORIZED, "invalid email, password or code")
}

// throttleKeys are the counters a sign-in attempt is judged by.
func throttleKeys(email, address string) (account, addr string) {
	return "account:" + email, "address:" + address
}

// locked returns ETOOMANY, with how long to wait, when key has reached max
// failures within the lockout period.
func (s *Service) locked(ctx context.Context, key string, max int, now time.Time) error {
	n, last, err := s.Store.GetSignInFailures(ctx, key)
	if err != nil {
		return storeUnavailable(err)
	}
	if until := last.Add(s.People.Lockout); n >= max && now.Before(until) {
		return Errorf(ETOOMANY, "too many failed sign-ins; try again later").After(until.Sub(now))
	}
	return nil
}

// SignIn checks the email, password and second factor and makes a
// session. A wrong email, password, TOTP code or recovery code is one
// EUNAUTHORIZED answer; a right password without the code an account with
// a second factor needs is ETOTP. After PeopleConfig.MaxAccountFailures
// failures for the email, or MaxAddressFailures from the address, every
// attempt is ETOOMANY until Lockout has passed since the last failure.
// Every success and failure is audited (never the password or code).
func (s *Service) SignIn(ctx context.Context, req SignInRequest, from ClientInfo) (*SignInResponse, error) {
	if err := checkText(req); err != nil {
		return nil, err
	}
	email := normalizeEmail(req.Email)
	var fields []FieldError
	if !validEmail(email) {
		// Bounded, so what counts failures and the audit log keep is too.
		fields = append(fields, FieldError{Field: "email", Message: "must be an email address"})
	}
	if req.Password == "" {
		fields = append(fields, FieldError{Field: "password", Message: "is required"})
	}
	if req.TOTP != "" && req.RecoveryCode != "" {
		fields = append(fields, FieldError{Field: "recovery_code", Message: "give either totp or recovery_code"})
	}
	if len(fields) > 0 {
		return nil, Invalid(fields...)
	}
	now := s.Now()
	accountKey, addrKey := throttleKeys(email, from.Address)
	fail := func(userID, reason string) error {
		if _, err := s.Store.RecordSignInFailure(ctx, accountKey, now, now.Add(-s.People.Lockout)); err != nil {
			return storeUnavailable(err)
		}
		if _, err := s.Store.RecordSignInFailure(ctx, addrKey, now, now.Add(-s.People.Lockout)); err != nil {
			return storeUnavailable(err)
		}
		if err := s.auditSignIn(ctx, userID, "session.signin_failed", "", map[string]any{"email": email, "address": from.Address, "reason": reason}); err != nil {
			return err
		}
		return signInDenied()
	}
	for _, l := range []struct {
		key string
		max int
	}{{accountKey, s.People.MaxAccountFailures}, {addrKey, s.People.MaxAddressFailures}} {
		if err := s.locked(ctx, l.key, l.max, now); err != nil {
			if IsCode(err, ETOOMANY) {
				if aerr := s.auditSignIn(ctx, "", "session.signin_failed", "", map[string]any{"email": email, "address": from.Address, "reason": "locked"}); aerr != nil {
					return nil, aerr
				}
			}
			return nil, err
		}
	}
	u, err := s.Store.GetUserByEmail(ctx, email)
	if err != nil && !IsCode(err, ENOTFOUND) {
		return nil, storeUnavailable(err)
	}
	var auth *UserAuth
	if u != nil {
		auth, err = s.Store.GetUserAuth(ctx, u.ID)
		if err != nil && !IsCode(err, ENOTFOUND) {
			return nil, storeUnavailable(err)
		}
	}
	hash := ""
	if auth != nil {
		hash = auth.PasswordHash
	}
	// Always one hash's work, whether the account exists or not.
	if !s.passwordMatches(req.Password, hash) {
		if u == nil {
			return nil, fail("", "unknown_email")
		}
		return nil, fail(u.ID, "password")
	}
	if u.DisabledAt != nil {
		return nil, fail(u.ID, "disabled")
	}
	factor := "none"
	if auth.HasSecondFactor() {
		switch {
		case req.TOTP != "":
			if err := s.useTOTP(ctx, auth, req.TOTP, now); err != nil {
				if IsCode(err, EUNAUTHORIZED) {
					return nil, fail(u.ID, "second_factor")
				}
				return nil, err
			}
			factor = "totp"
		case req.RecoveryCode != "":
			err := s.Store.UseRecoveryCode(ctx, u.ID, HashToken(normalizeRecoveryCode(req.RecoveryCode)), now)
			if IsCode(err, ENOTFOUND) {
				return nil, fail(u.ID, "second_factor")
			}
			if err != nil {
				return nil, storeUnavailable(err)
			}
			factor = "recovery_code"
		default:
			// Not counted: every sign-in of an enrolled account passes here
			// once, before the client asks for the code; audited all the same.
			if err := s.auditSignIn(ctx, u.ID, "session.signin_failed", "", map[string]any{"email": email, "address": from.Address, "reason": "second_factor_missing"}); err != nil {
				return nil, err
			}
			return nil, Errorf(ETOTP, "this account has a second factor: give totp (or recovery_code) with the password")
		}
	}
	if err := s.Store.ClearSignInFailures(ctx, accountKey); err != nil {
		return nil, storeUnavailable(err)
	}
	token, err := newSecretToken(SessionPrefix)
	if err != nil {
		return nil, err
	}
	sess := &Session{
		ID: s.NewID("ses"), UserID: u.ID, Hash: HashToken(token), Address: clip(from.Address, 100), UserAgent: clip(from.UserAgent, 300),
		CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(s.People.SessionAbsolute),
	}
	err = s.tx(ctx, func(q Queries) error {
		if err := q.CreateSession(ctx, sess); err != nil {
			return err
		}
		return s.audit(ctx, q, &Principal{UserID: u.ID}, "", "", "session.created", sess.ID,
			map[string]any{"email": email, "address": sess.Address, "user_agent": sess.UserAgent, "second_factor": factor})
	})
	if err != nil {
		return nil, err
	}
	return &SignInResponse{Token: token, Session: sess}, nil
}

// auditSignIn appends a platform audit event about a sign-in.
func (s *Service) auditSignIn(ctx context.Context, userID, action, target string, details map[string]any) error {
	var p *Principal
	if userID != "" {
		p = &Principal{UserID: userID}
	}
	return s.tx(ctx, func(q Queries) error { return s.audit(ctx, q, p, "", "", action, target, details) })
}

// clip cuts s to at most n bytes on a character boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// authenticateSession resolves a session token to its user's principal. A
// session unknown, revoked, past its absolute end or idle too long, or of a
// disabled user, is the one EUNAUTHORIZED answer. Sessions are not cached:
// a revocation takes effect on the next request. Use is recorded
// (last_seen_at, at most once a minute) with the receipts, off the
// request's path.
func (s *Service) authenticateSession(ctx context.Context, token string, denied func() error) (*Principal, error) {
	now := s.Now()
	sess, err := s.Store.GetSessionByHash(ctx, HashToken(token))
	if IsCode(err, ENOTFOUND) {
		return nil, denied()
	}
	if err != nil {
		return nil, storeUnavailable(err)
	}
	if sess.RevokedAt != nil || !now.Before(sess.ExpiresAt) || !now.Before(sess.LastSeenAt.Add(s.People.SessionIdle)) {
		return nil, denied()
	}
	u, err := s.Store.GetUser(ctx, sess.UserID)
	if err != nil {
		return nil, storeUnavailable(err)
	}
	if u.DisabledAt != nil {
		return nil, denied()
	}
	if now.Sub(sess.LastSeenAt) >= touchEvery {
		s.receipts.touchSession(sess.ID, now)
	}
	return &Principal{KeyID: sess.ID, SessionID: sess.ID, UserID: u.ID, Email: u.Email, PlatformAdmin: u.PlatformAdmin}, nil
}

// userPrincipal returns EFORBIDDEN unless p acts for a user.
func userPrincipal(p *Principal) error {
	switch {
	case p == nil:
		return Errorf(EUNAUTHORIZED, "authentication required")
	case p.UserID == "":
		return Errorf(EFORBIDDEN, "forbidden: only a user has sessions and sign-in factors")
	}
	return nil
}

// ListSessions lists the caller's live sessions, marking the one in use.
// Tokens are never shown.
func (s *Service) ListSessions(ctx context.Context, p *Principal) ([]*Session, error) {
	if err := userPrincipal(p); err != nil {
		return nil, err
	}
	ss, err := s.Store.ListUserSessions(ctx, p.UserID, s.Now())
	if err != nil {
		return nil, err
	}
	live := ss[:0]
	for _, x := range ss {
		if !s.Now().Before(x.LastSeenAt.Add(s.People.SessionIdle)) {
			continue
		}
		x.Current = x.ID == p.SessionID
		live = append(live, x)
	}
	return live, nil
}

// RevokeSession ends one of the caller's sessions (signing out when it is
// the one in use). Another user's session is ENOTFOUND. Idempotent.
func (s *Service) RevokeSession(ctx context.Context, p *Principal, id string) error {
	if p == nil {
		return Errorf(EUNAUTHORIZED, "authentication required")
	}
	// An app key has no sessions: every id is someone else's.
	if p.UserID == "" || !StorableText(id) {
		return Errorf(ENOTFOUND, "session not found")
	}
	return s.tx(ctx, func(q Queries) error {
		if err := q.RevokeSession(ctx, p.UserID, id, s.Now()); err != nil {
			return err
		}
		return s.audit(ctx, q, p, "", "", "session.revoked", id, nil)
	})
}

// RevokeMemberSessions ends every session of a member of the organization
// (owners and admins; an owner's only by owners) and returns how many. A
// session is the user's in every organization, so the member is signed out
// everywhere. A user who is not a member is ENOTFOUND.
func (s *Service) RevokeMemberSessions(ctx context.Context, p *Principal, orgRef, userRef string) (int, error) {
	ctx, a, err := s.orgAccess(ctx, p, orgRef, ActMemberWrite)
	if err != nil {
		return 0, err
	}
	m, err := s.member(ctx, s.Store, a.org.ID, userRef)
	if err != nil {
		return 0, err
	}
	if m.Role == OrgOwner && m.UserID != p.UserID {
		if err := Authorize(a.subject, ActOwnerWrite, a.resource()); err != nil {
			return 0, err
		}
	}
	var n int
	err = s.tx(ctx, func(q Queries) error {
		n, err = q.RevokeUserSessions(ctx, m.UserID, s.Now())
		if err != nil {
			return err
		}
		return s.audit(ctx, q, p, a.org.ID, "", "member.sessions_revoked", m.UserID, map[string]any{"sessions": n})
	})
	return n, err
}

// SetSessionContext sets the calling session's active organization and
// environment, which must be ones the user may see (ENOTFOUND otherwise,
// as for any other organization's resource). Only sessions have one:
// API keys are EFORBIDDEN.
func (s *Service) SetSessionContext(ctx context.Context, p *Principal, req SessionContextRequest) (*Session, error) {
	if err := checkText(req); err != nil {
		return nil, err
	}
	if p == nil {
		return nil, Errorf(EUNAUTHORIZED, "authentication required")
	}
	if p.SessionID == "" {
		return nil, Errorf(EFORBIDDEN, "forbidden: only a session has an active organization; an API key is bound when it is made")
	}
	orgID, envID := "", ""
	switch {
	case req.Organization == "" && req.Environment != "":
		return nil, Invalid(FieldError{Field: "organization", Message: "is required with environment"})
	case req.Environment != "":
		_, a, err := s.envAccess(ctx, p, req.Organization, req.Environment, ActEnvRead)
		if err != nil {
			return nil, err
		}
		orgID, envID = a.org.ID, a.env.ID
	case req.Organization != "":
		_, a, err := s.orgAccess(ctx, p, req.Organization, ActOrgRead)
		if err != nil {
			return nil, err
		}
		orgID = a.org.ID
	}
	if orgID != "" {
		ctx = WithOrgScope(ctx, orgID)
	}
	err := s.tx(ctx, func(q Queries) error {
		if err := q.SetSessionContext(ctx, p.SessionID, orgID, envID); err != nil {
			return err
		}
		return s.audit(ctx, q, p, orgID, envID, "session.context_set", p.SessionID, nil)
	})
	if err != nil {
		return nil, err
	}
	sessions, err := s.ListSessions(ctx, p)
	if err != nil {
		return nil, err
	}
	for _, x := range sessions {
		if x.ID == p.SessionID {
			return x, nil
		}
	}
	return nil, Errorf(EUNAUTHORIZED, "the session ended")
}

// isSessionToken reports whether token looks like a session token.
func isSessionToken(token string) bool { return strings.HasPrefix(token, SessionPrefix) }

// prunePeople forgets sign-in failures that no longer lock anything and
// sessions that ended (a later request with their token is refused all the
// same: an absent session is an unknown one). Failures are logged.
func (s *Service) prunePeople(ctx context.Context) {
	// Platform-wide background work: every organization's rows (ADR 0027).
	ctx = WithPlatformScope(ctx)
	now := s.Now()
	if _, err := s.Store.DeleteSignInFailuresBefore(ctx, now.Add(-s.People.Lockout)); err != nil {
		s.Logger.Error("pruning sign-in failures failed", "err", err)
	}
	// Flushed uses first: a session's last use may still be in the buffer.
	if _, err := s.Store.DeleteSessionsEnded(ctx, now, now.Add(-s.People.SessionIdle-touchEvery)); err != nil {
		s.Logger.Error("pruning ended sessions failed", "err", err)
	}
}
