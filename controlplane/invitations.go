package controlplane

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/envplane/envplane/drivers"
)

// InvitationPrefix starts every invitation token.
const InvitationPrefix = "epi_"

// Mail is one plain-text message. Body may carry a secret (an invitation
// link): a Mailer must not log it.
type Mail struct {
	To      string
	Subject string
	Body    string
}

// Mailer sends mail. Implementations: mail/smtp.
type Mailer interface {
	// Send delivers m, or returns why it could not; it never logs the body.
	Send(ctx context.Context, m Mail) error
}

// CreateInvitationRequest invites a person by email with an organization
// role and, optionally, environment roles.
type CreateInvitationRequest struct {
	Email        string                  `json:"email"`
	Role         OrgRole                 `json:"role"`
	Environments []InvitationEnvironment `json:"environments,omitempty"`
}

// Mail delivery outcomes of an invitation.
const (
	MailSent          = "sent"
	MailFailed        = "failed"
	MailNotConfigured = "not_configured"
)

// InvitationResponse is an invitation just made or resent, and what became
// of its mail. Link is set only when no mail server is configured: it is
// the one time the inviter sees it, to pass on.
type InvitationResponse struct {
	Invitation *Invitation `json:"invitation"`
	// Mail is sent, failed (the invitation is kept: resend it later) or
	// not_configured (Link carries the link instead).
	Mail string `json:"mail"`
	Link string `json:"link,omitempty"`
}

// AcceptInvitationRequest accepts an invitation: the password to set (or,
// for an account that has one, that password), and a display name for a
// new user.
type AcceptInvitationRequest struct {
	Password drivers.Secret `json:"password"`
	Name     string         `json:"name,omitempty"`
}

// AcceptInvitationResponse says who joined which organization with which role.
type AcceptInvitationResponse struct {
	UserID       string  `json:"user_id"`
	Email        string  `json:"email"`
	Organization string  `json:"organization"`
	Role         OrgRole `json:"role"`
}

// maxInvitationEnvironments bounds the environment roles of one invitation.
const maxInvitationEnvironments = 100

// CreateInvitation invites a person to the organization (owners and
// admins; an owner invitation only by owners) and mails them its link. An
// email already a member is ECONFLICT. Mail that cannot be sent leaves the
// invitation in place, answered with Mail "failed".
func (s *Service) CreateInvitation(ctx context.Context, p *Principal, orgRef string, req CreateInvitationRequest) (*InvitationResponse, error) {
	if err := checkText(req); err != nil {
		return nil, err
	}
	ctx, a, err := s.orgAccess(ctx, p, orgRef, ActMemberWrite)
	if err != nil {
		return nil, err
	}
	email := normalizeEmail(req.Email)
	var fields []FieldError
	if !validEmail(email) {
		fields = append(fields, FieldError{Field: "email", Message: "must be an email address"})
	}
	if !req.Role.Valid() {
		fields = append(fields, FieldError{Field: "role", Message: "must be owner, admin or member"})
	}
	if len(req.Environments) > maxInvitationEnvironments {
		fields = append(fields, FieldError{Field: "environments", Message: fmt.Sprintf("at most %d", maxInvitationEnvironments)})
	}
	envs := make([]InvitationEnvironment, 0, len(req.Environments))
	for i, e := range req.Environments {
		field := fmt.Sprintf("environments[%d]", i)
		if !e.Role.Valid() {
			fields = append(fields, FieldError{Field: field + ".role", Message: "must be env_admin, env_maker, env_user or env_viewer"})
		}
		if e.Environment == "" || !StorableText(e.Environment) {
			fields = append(fields, FieldError{Field: field + ".environment", Message: "no such environment"})
			continue
		}
		env, err := s.Store.GetEnvironment(ctx, a.org.ID, e.Environment)
		switch {
		case IsCode(err, ENOTFOUND):
			fields = append(fields, FieldError{Field: field + ".environment", Message: "no such environment"})
		case err != nil:
			return nil, err
		default:
			envs = append(envs, InvitationEnvironment{Environment: env.ID, Role: e.Role})
		}
	}
	if len(fields) > 0 {
		return nil, Invalid(fields...)
	}
	if req.Role == OrgOwner {
		if err := Authorize(a.subject, ActOwnerWrite, a.resource()); err != nil {
			return nil, err
		}
	}
	if u, err := s.Store.GetUserByEmail(ctx, email); err == nil {
		if _, err := s.Store.GetOrgMembership(ctx, a.org.ID, u.ID); err == nil {
			return nil, Errorf(ECONFLICT, "%s is already a member", email)
		} else if !IsCode(err, ENOTFOUND) {
			return nil, err
		}
	} else if !IsCode(err, ENOTFOUND) {
		return nil, err
	}
	token, err := newSecretToken(InvitationPrefix)
	if err != nil {
		return nil, err
	}
	now := s.Now()
	inv := &Invitation{
		ID: s.NewID("inv"), OrgID: a.org.ID, Email: email, Role: req.Role, Environments: envs, Hash: HashToken(token),
		InvitedBy: actor(p), CreatedAt: now, ExpiresAt: now.Add(s.People.InvitationTTL),
	}
	err = s.tx(ctx, func(q Queries) error {
		if err := q.CreateInvitation(ctx, inv); err != nil {
			return err
		}
		return s.audit(ctx, q, p, a.org.ID, "", "invitation.created", inv.ID, map[string]any{"email": email, "role": string(req.Role)})
	})
	if err != nil {
		return nil, err
	}
	return s.deliver(ctx, a.org, inv, token), nil
}

// invitationLink is where an invitation is accepted.
func (s *Service) invitationLink(token string) string {
	return strings.TrimRight(s.People.PublicURL, "/") + "/invitations/" + token
}

// deliver mails the invitation's link, or answers it when there is no
// mailer. A failure is logged without the link and answered as "failed".
func (s *Service) deliver(ctx context.Context, org *Organization, inv *Invitation, token string) *InvitationResponse {
	link := s.invitationLink(token)
	if s.People.Mailer == nil {
		return &InvitationResponse{Invitation: inv, Mail: MailNotConfigured, Link: link}
	}
	// A name is the organization's to choose; a header holds one line.
	name := strings.NewReplacer("\r", " ", "\n", " ").Replace(org.Name)
	m := Mail{
		To:      inv.Email,
		Subject: "You are invited to " + name + " on envplane",
		Body: fmt.Sprintf("You are invited to join the organization %s on envplane as %s.\n\n"+
			"Accept the invitation and set your password here:\n\n%s\n\n"+
			"or with the API: POST /v1/invitations/<token>/accept {\"password\": \"...\"}, the token being the link's last part.\n\n"+
			"The invitation expires at %s and works once.\n",
			name, inv.Role, link, inv.ExpiresAt.UTC().Format(time.RFC1123)),
	}
	if err := s.People.Mailer.Send(ctx, m); err != nil {
		s.Logger.Warn("cannot mail an invitation; it is kept and can be resent", "invitation", inv.ID, "err", err)
		return &InvitationResponse{Invitation: inv, Mail: MailFailed}
	}
	now := s.Now()
	if err := s.Store.MarkInvitationMailed(ctx, inv.ID, now); err != nil {
		s.Logger.Warn("cannot record an invitation's mail", "invitation", inv.ID, "err", err)
	} else {
		inv.MailSentAt = &now
	}
	return &InvitationResponse{Invitation: inv, Mail: MailSent}
}

// ListInvitations lists the organization's pending invitations (owners, admins).
func (s *Service) ListInvitations(ctx context.Context, p *Principal, orgRef string, page Page) ([]*Invitation, string, error) {
	if err := page.Check(); err != nil {
		return nil, "", err
	}
	ctx, a, err := s.orgAccess(ctx, p, orgRef, ActMemberRead)
	if err != nil {
		return nil, "", err
	}
	return s.Store.ListPendingInvitations(ctx, a.org.ID, s.Now(), page)
}

// invitation resolves a pending-or-not invitation of the organization for a
// change by p (owners and admins; an owner invitation only by owners),
// and ctx scoped to the organization.
func (s *Service) invitation(ctx context.Context, p *Principal, orgRef, id string) (context.Context, *access, *Invitation, error) {
	ctx, a, err := s.orgAccess(ctx, p, orgRef, ActMemberWrite)
	if err != nil {
		return ctx, nil, nil, err
	}
	if !StorableText(id) {
		return ctx, nil, nil, Errorf(ENOTFOUND, "invitation not found")
	}
	inv, err := s.Store.GetInvitation(ctx, a.org.ID, id)
	if err != nil {
		return ctx, nil, nil, err
	}
	if inv.Role == OrgOwner {
		if err := Authorize(a.subject, ActOwnerWrite, a.resource()); err != nil {
			return ctx, nil, nil, err
		}
	}
	return ctx, a, inv, nil
}

// ResendInvitation gives a not yet accepted or revoked invitation a new
// link (the old one stops working) and a new expiry, and mails it again.
// An accepted or revoked invitation is EGONE.
func (s *Service) ResendInvitation(ctx context.Context, p *Principal, orgRef, id string) (*InvitationResponse, error) {
	ctx, a, inv, err := s.invitation(ctx, p, orgRef, id)
	if err != nil {
		return nil, err
	}
	token, err := newSecretToken(InvitationPrefix)
	if err != nil {
		return nil, err
	}
	expires := s.Now().Add(s.People.InvitationTTL)
	err = s.tx(ctx, func(q Queries) error {
		err := q.RenewInvitation(ctx, a.org.ID, inv.ID, HashToken(token), expires)
		if IsCode(err, ECONFLICT) {
			return Errorf(EGONE, "the invitation was accepted or revoked")
		}
		if err != nil {
			return err
		}
		return s.audit(ctx, q, p, a.org.ID, "", "invitation.resent", inv.ID, map[string]any{"email": inv.Email})
	})
	if err != nil {
		return nil, err
	}
	inv.ExpiresAt, inv.MailSentAt = expires, nil
	return s.deliver(ctx, a.org, inv, token), nil
}

// RevokeInvitation stops an invitation from being accepted. Idempotent;
// an accepted invitation is ECONFLICT.
func (s *Service) RevokeInvitation(ctx context.Context, p *Principal, orgRef, id string) error {
	ctx, a, inv, err := s.invitation(ctx, p, orgRef, id)
	if err != nil {
		return err
	}
	return s.tx(ctx, func(q Queries) error {
		if err := q.RevokeInvitation(ctx, a.org.ID, inv.ID, s.Now()); err != nil {
			return err
		}
		return s.audit(ctx, q, p, a.org.ID, "", "invitation.revoked", inv.ID, map[string]any{"email": inv.Email})
	})
}

// AcceptInvitation accepts the invitation whose token is token. It creates
// the user (or links the one with the invitation's email), makes them a
// member with the invitation's role (an existing membership is kept: an
// invitation never demotes), gives the environment roles of environments
// that still exist, and sets the password. caller, when not nil, is the
// signed-in principal: one of another email is ECONFLICT. An account that
// already has a password keeps it: the request must give it, unless the
// caller is signed in as that user. An unknown token is ENOTFOUND; one
// accepted, revoked or expired is EGONE.
func (s *Service) AcceptInvitation(ctx context.Context, caller *Principal, token string, req AcceptInvitationRequest) (*AcceptInvitationResponse, error) {
	if err := checkText(req); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(token, InvitationPrefix) || !StorableText(token) {
		return nil, Errorf(ENOTFOUND, "invitation not found")
	}
	// The token names the invitation before any organization is known
	// (ADR 0027); the rest is done in the invitation's organization.
	inv, err := s.Store.GetInvitationByHash(WithPlatformScope(ctx), HashToken(token))
	if err != nil {
		return nil, err
	}
	ctx = WithOrgScope(ctx, inv.OrgID)
	now := s.Now()
	if !inv.Pending(now) {
		return nil, Errorf(EGONE, "the invitation was already accepted, was revoked or has expired; ask for a new one")
	}
	if caller != nil && (caller.UserID == "" || !strings.EqualFold(caller.Email, inv.Email)) {
		return nil, Errorf(ECONFLICT, "the invitation is for another email than the signed-in user's")
	}
	if len(req.Name) > 200 {
		return nil, Invalid(FieldError{Field: "name", Message: "must be at most 200 characters"})
	}
	u, err := s.Store.GetUserByEmail(ctx, inv.Email)
	if err != nil && !IsCode(err, ENOTFOUND) {
		return nil, err
	}
	var auth *UserAuth
	if u != nil {
		if u.DisabledAt != nil {
			return nil, Errorf(EFORBIDDEN, "forbidden: the account is disabled")
		}
		auth, err = s.Store.GetUserAuth(ctx, u.ID)
		if err != nil && !IsCode(err, ENOTFOUND) {
			return nil, err
		}
	}
	newHash := ""
	switch {
	case auth != nil && auth.PasswordHash != "":
		signedIn := caller != nil && caller.UserID == u.ID
		if !signedIn && !s.passwordMatches(req.Password, auth.PasswordHash) {
			return nil, Errorf(EUNAUTHORIZED, "this account has a password: sign in first, or give that password")
		}
	default:
		if err := checkPassword("password", req.Password); err != nil {
			return nil, err
		}
		if newHash, err = s.hashPassword(req.Password); err != nil {
			return nil, err
		}
	}
	org, err := s.Store.GetOrganization(ctx, inv.OrgID)
	if err != nil {
		return nil, err
	}
	resp := &AcceptInvitationResponse{Email: inv.Email, Organization: org.Slug, Role: inv.Role}
	err = s.tx(ctx, func(q Queries) error {
		if u == nil {
			name := strings.TrimSpace(req.Name)
			if name == "" {
				name, _, _ = strings.Cut(inv.Email, "@")
			}
			var err error
			if u, err = s.ensureUser(ctx, q, inv.Email, name); err != nil {
				return err
			}
		}
		resp.UserID = u.ID
		err := q.AcceptInvitation(ctx, inv.ID, u.ID, now)
		if IsCode(err, ECONFLICT) {
			return Errorf(EGONE, "the invitation was already accepted or was revoked")
		}
		if err != nil {
			return err
		}
		p := &Principal{UserID: u.ID, Email: u.Email}
		switch m, err := q.GetOrgMembership(ctx, org.ID, u.ID); {
		case IsCode(err, ENOTFOUND):
			if err := q.PutOrgMembership(ctx, &OrgMembership{OrgID: org.ID, UserID: u.ID, Role: inv.Role, CreatedAt: now}); err != nil {
				return err
			}
			if err := s.audit(ctx, q, p, org.ID, "", "member.added", u.ID, map[string]any{"role": string(inv.Role), "invitation": inv.ID}); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			resp.Role = m.Role
		}
		for _, e := range inv.Environments {
			env, err := q.GetEnvironment(ctx, org.ID, e.Environment)
			if IsCode(err, ENOTFOUND) {
				continue // deleted since the invitation
			}
			if err != nil {
				return err
			}
			em := &EnvironmentMember{ID: s.NewID("emb"), EnvironmentID: env.ID, OrgID: org.ID, UserID: u.ID, Role: e.Role, CreatedAt: now}
			if err := q.PutEnvironmentMember(ctx, em); err != nil {
				return err
			}
		}
		if newHash != "" {
			if err := s.setPassword(ctx, q, u.ID, newHash); err != nil {
				return err
			}
		}
		return s.audit(ctx, q, p, org.ID, "", "invitation.accepted", inv.ID, map[string]any{"email": inv.Email})
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}
