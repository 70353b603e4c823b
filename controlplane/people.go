package controlplane

import "time"

// People (adr/0023): how a person signs in (a password, a second factor),
// the sessions that sign-in makes, and the invitations that bring a person
// into an organization. Tokens and codes are stored only as SHA-256 hashes
// (HashToken), passwords as argon2id.

// UserAuth is how a user signs in: the password's argon2id hash ("" when
// none is set) and the TOTP second factor, whose secret is sealed like a
// credential. TOTPConfirmedAt is nil while an enrolment awaits its first
// code; TOTPLastStep is the last time step accepted, so a code is used once.
type UserAuth struct {
	UserID          string
	PasswordHash    string
	TOTP            Sealed
	TOTPConfirmedAt *time.Time
	TOTPLastStep    int64
	UpdatedAt       time.Time
}

// HasSecondFactor reports whether the user has a confirmed TOTP enrolment.
func (a *UserAuth) HasSecondFactor() bool { return a != nil && a.TOTPConfirmedAt != nil }

// Session is a signed-in user's bearer session. Only Hash is stored of its
// token. OrgID and EnvironmentID are its active organization and
// environment ("" when none is chosen).
type Session struct {
	ID            string     `json:"id"`
	UserID        string     `json:"user_id"`
	Hash          string     `json:"-"`
	OrgID         string     `json:"organization_id,omitempty"`
	EnvironmentID string     `json:"environment_id,omitempty"`
	Address       string     `json:"address"`
	UserAgent     string     `json:"user_agent"`
	CreatedAt     time.Time  `json:"created_at"`
	LastSeenAt    time.Time  `json:"last_seen_at"`
	ExpiresAt     time.Time  `json:"expires_at"`
	RevokedAt     *time.Time `json:"revoked_at,omitempty"`
	// Current marks, in a list, the session the caller is using.
	Current bool `json:"current,omitempty"`
}

// InvitationEnvironment is an environment role an invitation grants.
type InvitationEnvironment struct {
	Environment string  `json:"environment"`
	Role        EnvRole `json:"role"`
}

// Invitation asks a person, by email, to join an organization with a role
// and environment roles. It is single-use and expires; only Hash is stored
// of its token.
type Invitation struct {
	ID           string                  `json:"id"`
	OrgID        string                  `json:"organization_id"`
	Email        string                  `json:"email"`
	Role         OrgRole                 `json:"role"`
	Environments []InvitationEnvironment `json:"environments,omitempty"`
	Hash         string                  `json:"-"`
	InvitedBy    string                  `json:"invited_by"`
	CreatedAt    time.Time               `json:"created_at"`
	ExpiresAt    time.Time               `json:"expires_at"`
	MailSentAt   *time.Time              `json:"mail_sent_at,omitempty"`
	AcceptedAt   *time.Time              `json:"accepted_at,omitempty"`
	AcceptedBy   string                  `json:"accepted_by,omitempty"`
	RevokedAt    *time.Time              `json:"revoked_at,omitempty"`
}

// Pending reports whether the invitation can still be accepted at now.
func (i *Invitation) Pending(now time.Time) bool {
	return i.AcceptedAt == nil && i.RevokedAt == nil && now.Before(i.ExpiresAt)
}
