package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/alexedwards/argon2id"

	"github.com/envplane/envplane/drivers"
)

// PeopleConfig tunes sign-in, sessions and invitations (adr/0023). Zero
// durations and counts take DefaultPeopleConfig's values where the service
// reads them.
type PeopleConfig struct {
	// SessionIdle ends a session not used for that long; SessionAbsolute
	// ends any session that long after sign-in.
	SessionIdle     time.Duration
	SessionAbsolute time.Duration
	// InvitationTTL is how long an invitation (or a resent one) stays valid.
	InvitationTTL time.Duration
	// MaxAccountFailures and MaxAddressFailures are the failed sign-ins,
	// per email and per client address, after which sign-in is refused
	// until Lockout has passed since the last failure.
	MaxAccountFailures int
	MaxAddressFailures int
	Lockout            time.Duration
	// Password is the argon2id cost; nil means argon2id.DefaultParams.
	Password *argon2id.Params
	// Mailer sends invitations; nil means invitation links are answered
	// to the inviter instead.
	Mailer Mailer
	// PublicURL is where people reach envplane, for invitation links.
	PublicURL string
	// TOTPIssuer names envplane in authenticator apps.
	TOTPIssuer string
}

// DefaultPeopleConfig returns the defaults: sessions idle out after 12
// hours and end after 7 days, invitations last 7 days, 5 failures per
// account or 50 per address lock sign-in for 15 minutes.
func DefaultPeopleConfig() PeopleConfig {
	return PeopleConfig{
		SessionIdle:        12 * time.Hour,
		SessionAbsolute:    7 * 24 * time.Hour,
		InvitationTTL:      7 * 24 * time.Hour,
		MaxAccountFailures: 5,
		MaxAddressFailures: 50,
		Lockout:            15 * time.Minute,
		PublicURL:          "http://127.0.0.1:8080",
		TOTPIssuer:         "envplane",
	}
}

// Password length bounds, in characters and bytes.
const (
	minPasswordChars = 12
	maxPasswordBytes = 1024
)

// checkPassword returns EINVALID naming field when pw is too short or too long.
func checkPassword(field string, pw drivers.Secret) error {
	if utf8.RuneCountInString(pw.Reveal()) < minPasswordChars || len(pw.Reveal()) > maxPasswordBytes {
		return Invalid(FieldError{Field: field, Message: fmt.Sprintf("must be %d characters to %d bytes", minPasswordChars, maxPasswordBytes)})
	}
	return nil
}

func (s *Service) passwordParams() *argon2id.Params {
	if s.People.Password != nil {
		return s.People.Password
	}
	return argon2id.DefaultParams
}

// hashPassword returns pw's argon2id hash in the PHC string format.
func (s *Service) hashPassword(pw drivers.Secret) (string, error) {
	h, err := argon2id.CreateHash(pw.Reveal(), s.passwordParams())
	if err != nil {
		return "", fmt.Errorf("cannot hash password: %w", err)
	}
	return h, nil
}

// passwordMatches reports whether pw matches hash. With no hash (no user,
// or no password set) it still spends one hash's time, so the answer's
// timing does not tell whether the account exists.
func (s *Service) passwordMatches(pw drivers.Secret, hash string) bool {
	if hash == "" {
		_, _ = s.hashPassword(pw)
		return false
	}
	ok, err := argon2id.ComparePasswordAndHash(pw.Reveal(), hash)
	return err == nil && ok
}

// setPassword stores a new password hash for the user through q, keeping
// the second factor.
func (s *Service) setPassword(ctx context.Context, q Queries, userID, hash string) error {
	a, err := q.GetUserAuth(ctx, userID)
	switch {
	case IsCode(err, ENOTFOUND):
		a = &UserAuth{UserID: userID}
	case err != nil:
		return err
	}
	a.PasswordHash, a.UpdatedAt = hash, s.Now()
	return q.PutUserAuth(ctx, a)
}

// newSecretToken returns prefix and 32 random bytes, base64url-encoded.
func newSecretToken(prefix string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// sameString compares two short strings in constant time.
func sameString(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// normalizeEmail is how emails are compared and stored.
func normalizeEmail(e string) string { return strings.ToLower(strings.TrimSpace(e)) }

// SetFirstPassword sets the password of the platform admin with email
// (default admin@envplane.local) when they have none, so the operator can
// sign in after bootstrap; set is false, and nothing changes, when they
// already have one (a password is changed by its owner, not by the
// machine). A user who is not a platform admin is EINVALID.
func (s *Service) SetFirstPassword(ctx context.Context, email string, pw drivers.Secret) (set bool, err error) {
	email = normalizeEmail(email)
	if email == "" {
		email = "admin@envplane.local"
	}
	if err := checkPassword("password", pw); err != nil {
		return false, err
	}
	u, err := s.Store.GetUserByEmail(ctx, email)
	if IsCode(err, ENOTFOUND) || (err == nil && !u.PlatformAdmin) {
		return false, Invalid(FieldError{Field: "email", Message: "is not a platform admin: bootstrap first"})
	}
	if err != nil {
		return false, err
	}
	hash, err := s.hashPassword(pw)
	if err != nil {
		return false, err
	}
	err = s.tx(ctx, func(q Queries) error {
		a, err := q.GetUserAuth(ctx, u.ID)
		if err == nil && a.PasswordHash != "" {
			return nil
		}
		if err != nil && !IsCode(err, ENOTFOUND) {
			return err
		}
		set = true
		if err := s.setPassword(ctx, q, u.ID, hash); err != nil {
			return err
		}
		return s.audit(ctx, q, Operator(), "", "", "user.password_set", u.ID, map[string]any{"email": email})
	})
	return set, err
}
