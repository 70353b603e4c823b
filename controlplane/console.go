package controlplane

import "context"

// RevealConnection is ResolveConnection for a person who asked, in the
// console, to see an environment's secret: the same authorization (a scope
// above the caller's role is EFORBIDDEN, another organization ENOTFOUND),
// and a "connection.revealed" audit event naming the scope and the
// credential (never the secret), so every disclosure to a person is on record.
func (s *Service) RevealConnection(ctx context.Context, p *Principal, orgRef, envRef string, scope Scope) (*Connection, error) {
	c, err := s.ResolveConnection(ctx, p, orgRef, envRef, scope)
	if err != nil {
		return nil, err
	}
	ctx, a, err := s.envAccessByID(ctx, p, c.EnvironmentID, ActEnvRead)
	if err != nil {
		return nil, err
	}
	details := map[string]any{"scope": string(scope), "credential_id": c.CredentialID}
	if err := s.audit(ctx, s.Store, p, a.org.ID, a.env.ID, "connection.revealed", a.env.ID, details); err != nil {
		return nil, err
	}
	return c, nil
}
