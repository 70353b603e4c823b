package controlplane

import "context"

// ListEnvironmentMembers lists the users with a role on the environment (owner, admin, env_admin).
func (s *Service) ListEnvironmentMembers(ctx context.Context, p *Principal, orgRef, envRef string) ([]*EnvironmentMember, error) {
	ctx, a, err := s.envAccess(ctx, p, orgRef, envRef, ActEnvMemberRead)
	if err != nil {
		return nil, err
	}
	return s.Store.ListEnvironmentMembers(ctx, a.env.ID)
}

// PutEnvironmentMember gives an organization member (by id or email) a role
// on the environment, replacing any role they had (owner, admin, env_admin).
// A user who is not a member of the organization is EINVALID.
func (s *Service) PutEnvironmentMember(ctx context.Context, p *Principal, orgRef, envRef, userRef string, req PutEnvironmentMemberRequest) (*EnvironmentMember, error) {
	if err := checkText(req); err != nil {
		return nil, err
	}
	ctx, a, err := s.envAccess(ctx, p, orgRef, envRef, ActEnvMemberWrite)
	if err != nil {
		return nil, err
	}
	if !req.Role.Valid() {
		return nil, Invalid(FieldError{Field: "role", Message: "must be env_admin, env_maker, env_user or env_viewer"})
	}
	var m *EnvironmentMember
	err = s.tx(ctx, func(q Queries) error {
		om, err := s.member(ctx, q, a.org.ID, userRef)
		if IsCode(err, ENOTFOUND) {
			return Invalid(FieldError{Field: "user", Message: "not a member of the organization"})
		}
		if err != nil {
			return err
		}
		m, err = q.GetEnvironmentMember(ctx, a.env.ID, om.UserID)
		switch {
		case IsCode(err, ENOTFOUND):
			m = &EnvironmentMember{ID: s.NewID("emb"), EnvironmentID: a.env.ID, OrgID: a.org.ID, UserID: om.UserID, CreatedAt: s.Now()}
		case err != nil:
			return err
		}
		m.Email = om.Email
		m.Role = req.Role
		if err := q.PutEnvironmentMember(ctx, m); err != nil {
			return err
		}
		return s.audit(ctx, q, p, a.org.ID, a.env.ID, "environment_member.set", om.UserID, map[string]any{"role": string(req.Role)})
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// RemoveEnvironmentMember removes a user's role on the environment (owner,
// admin, env_admin). ENOTFOUND if they had none.
func (s *Service) RemoveEnvironmentMember(ctx context.Context, p *Principal, orgRef, envRef, userRef string) error {
	ctx, a, err := s.envAccess(ctx, p, orgRef, envRef, ActEnvMemberWrite)
	if err != nil {
		return err
	}
	return s.tx(ctx, func(q Queries) error {
		om, err := s.member(ctx, q, a.org.ID, userRef)
		if err != nil {
			return err
		}
		if err := q.DeleteEnvironmentMember(ctx, a.env.ID, om.UserID); err != nil {
			return err
		}
		return s.audit(ctx, q, p, a.org.ID, a.env.ID, "environment_member.removed", om.UserID, nil)
	})
}
