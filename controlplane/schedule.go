package controlplane

import (
	"context"
	"fmt"
	"time"
)

// RotateDue starts the scheduled rotations: every active credential past
// three quarters of its life (issued to expiry) is rotated onto its standby
// slot with the default grace, one operation per environment, long before it
// would stop working. Environments that are busy (an operation running, a
// previous rotation still in grace) are left for the next pass. It returns
// how many rotations it started.
func (s *Service) RotateDue(ctx context.Context) (int, error) {
	now := s.Now()
	longest := s.TokenTTL
	for _, ttl := range s.CredentialTTL {
		longest = max(longest, ttl)
	}
	cs, err := s.Store.ListCredentialsExpiring(ctx, now.Add(longest/4), 100)
	if err != nil {
		return 0, fmt.Errorf("cannot list expiring credentials: %w", err)
	}
	due := map[string][]*Credential{}
	var order []string
	for _, c := range cs {
		life := c.ExpiresAt.Sub(c.IssuedAt)
		if now.Before(c.ExpiresAt.Add(-life / 4)) {
			continue
		}
		if _, seen := due[c.DatabaseID]; !seen {
			order = append(order, c.DatabaseID)
		}
		due[c.DatabaseID] = append(due[c.DatabaseID], c)
	}
	started := 0
	for _, dbID := range order {
		ok, err := s.rotateScheduled(ctx, dbID, due[dbID])
		if err != nil {
			s.Logger.Error("scheduled rotation failed to start", "database", dbID, "err", err)
			continue
		}
		if ok {
			started++
		}
	}
	return started, nil
}

// rotateScheduled starts one rotation of the database's due credentials and
// waits for it; ok is false when the environment was busy.
func (s *Service) rotateScheduled(ctx context.Context, dbID string, creds []*Credential) (bool, error) {
	db, err := s.Store.GetDatabase(ctx, dbID)
	if err != nil {
		return false, err
	}
	orgID, err := s.Store.OrgOf(ctx, KindEnvironment, db.EnvironmentID)
	if err != nil {
		return false, err
	}
	env, err := s.Store.GetEnvironment(ctx, orgID, db.EnvironmentID)
	if err != nil {
		return false, err
	}
	params := rotateParams{From: map[Scope]string{}, Grace: s.Grace, Reason: "scheduled: credential past three quarters of its life"}
	for _, c := range creds {
		params.Scopes = append(params.Scopes, c.Scope)
		params.From[c.Scope] = c.ID
	}
	op, done, err := s.startRotation(ctx, nil, &access{env: env}, "credentials.rotate_scheduled", func(db *Database) error {
		for _, c := range creds {
			rotating, err := s.Store.ListCredentials(ctx, CredentialFilter{DatabaseID: db.ID, Scope: c.Scope, Statuses: []CredentialStatus{CredentialRotating}})
			if err != nil {
				return err
			}
			if len(rotating) > 0 {
				return Errorf(ECONFLICT, "a previous rotation is still in its grace period")
			}
		}
		return nil
	}, &params)
	if IsCode(err, ECONFLICT) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	select {
	case <-done:
	case <-ctx.Done():
		return true, ctx.Err()
	case <-time.After(s.Lease):
		s.Logger.Warn("scheduled rotation still running", "operation", op.ID)
	}
	return true, nil
}
