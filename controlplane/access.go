package controlplane

import "context"

// access is what a call resolved before it may touch anything: the
// organization (and environment) it names, as the caller may see them, and
// the subject that Authorize judges.
type access struct {
	org     *Organization
	env     *Environment
	subject Subject
}

// resource returns the authorization resource for a.
func (a *access) resource() Resource {
	r := Resource{OrgID: a.org.ID}
	if a.env != nil {
		r.EnvironmentID = a.env.ID
	}
	return r
}

// orgAccess resolves the organization named by ref (slug or id) for p and
// authorizes action on it. An organization p may not see is ENOTFOUND, exactly
// as one that does not exist. It returns ctx scoped to that organization
// (WithOrgScope): the caller makes every later store call with it.
func (s *Service) orgAccess(ctx context.Context, p *Principal, ref string, action Action) (context.Context, *access, error) {
	if p == nil {
		return ctx, nil, Errorf(EUNAUTHORIZED, "authentication required")
	}
	if !StorableText(ref) {
		// No slug or id holds such text; PostgreSQL would refuse to look.
		return ctx, nil, Errorf(ENOTFOUND, "organization not found")
	}
	org, err := s.Store.GetOrganization(resolveScope(ctx, p), ref)
	if err != nil {
		return ctx, nil, err
	}
	if p.OrgID != "" && p.OrgID != org.ID {
		return ctx, nil, Errorf(ENOTFOUND, "organization not found")
	}
	ctx = WithOrgScope(ctx, org.ID)
	a := &access{org: org, subject: Subject{Principal: p}}
	if p.UserID != "" {
		m, err := s.Store.GetOrgMembership(ctx, org.ID, p.UserID)
		switch {
		case err == nil:
			a.subject.OrgRole = m.Role
		case !IsCode(err, ENOTFOUND):
			return ctx, nil, err
		}
	}
	// An organization the caller cannot see is absent, whatever its policy;
	// one it can see refuses a user without the second factor it requires.
	authErr := Authorize(a.subject, action, a.resource())
	if IsCode(authErr, ENOTFOUND) {
		return ctx, nil, authErr
	}
	if err := s.requireSecondFactor(ctx, a.subject, org); err != nil {
		return ctx, nil, err
	}
	if authErr != nil {
		return ctx, nil, authErr
	}
	return ctx, a, nil
}

// requireSecondFactor returns ETWOFACTOR when org requires a second factor
// and the subject is a member (by session or user key alike) who has not
// enrolled one. The platform admin acting where it is no member, and app
// keys, have no membership the policy governs.
func (s *Service) requireSecondFactor(ctx context.Context, sub Subject, org *Organization) error {
	p := sub.Principal
	if !org.Require2FA || p.UserID == "" || !sub.OrgRole.Valid() {
		return nil
	}
	a, err := s.Store.GetUserAuth(ctx, p.UserID)
	if err != nil && !IsCode(err, ENOTFOUND) {
		return storeUnavailable(err)
	}
	if a.HasSecondFactor() {
		return nil
	}
	return Errorf(ETWOFACTOR, "the organization %s requires two-factor authentication: sign in (envctl login), enrol with POST /v1/users/me/totp (envctl totp enrol) and confirm with POST /v1/users/me/totp/confirm", org.Slug)
}

// envAccess resolves the organization and the live environment named by the
// refs for p and authorizes action on the environment. An environment p may
// not see is ENOTFOUND. It returns ctx scoped to the organization.
func (s *Service) envAccess(ctx context.Context, p *Principal, orgRef, envRef string, action Action) (context.Context, *access, error) {
	ctx, a, err := s.orgAccess(ctx, p, orgRef, ActOrgRead)
	if err != nil {
		return ctx, nil, err
	}
	if !StorableText(envRef) {
		return ctx, nil, Errorf(ENOTFOUND, "environment not found")
	}
	env, err := s.Store.GetEnvironment(ctx, a.org.ID, envRef)
	if err != nil {
		return ctx, nil, err
	}
	a.env = env
	if err := s.lookupEnvRole(ctx, a, env.ID); err != nil {
		return ctx, nil, err
	}
	if err := Authorize(a.subject, action, a.resource()); err != nil {
		return ctx, nil, err
	}
	return ctx, a, nil
}

// lookupEnvRole fills in the subject's role on the environment. Owners,
// admins and the platform admin see every environment, so only a member's
// role can change a decision, and only a member's is looked up.
func (s *Service) lookupEnvRole(ctx context.Context, a *access, envID string) error {
	p := a.subject.Principal
	if p.UserID == "" || a.subject.OrgRole != OrgMember || SeesAllEnvironments(a.subject) {
		return nil
	}
	m, err := s.Store.GetEnvironmentMember(ctx, envID, p.UserID)
	switch {
	case err == nil:
		a.subject.EnvRole = m.Role
	case !IsCode(err, ENOTFOUND):
		return err
	}
	return nil
}

// envAccessByID is envAccess for routes that name the environment by id only.
func (s *Service) envAccessByID(ctx context.Context, p *Principal, envID string, action Action) (context.Context, *access, error) {
	if p == nil {
		return ctx, nil, Errorf(EUNAUTHORIZED, "authentication required")
	}
	if !StorableText(envID) {
		return ctx, nil, Errorf(ENOTFOUND, "environment not found")
	}
	orgID := p.OrgID
	if orgID == "" {
		id, err := s.Store.OrgOf(resolveScope(ctx, p), KindEnvironment, envID)
		if err != nil {
			return ctx, nil, err
		}
		orgID = id
	}
	return s.envAccess(ctx, p, orgID, envID, action)
}

// resolveScope is the scope in which a reference is resolved to its
// organization, before any organization is known: a key bound to an
// organization looks only there; a user (who may belong to many) and the
// platform admin look in every organization, and Authorize then judges
// what they found. Only the organization's row (and, by id alone, which
// organization owns an environment or operation) is read in it.
func resolveScope(ctx context.Context, p *Principal) context.Context {
	if p.OrgID != "" {
		return WithOrgScope(ctx, p.OrgID)
	}
	return WithPlatformScope(ctx)
}
