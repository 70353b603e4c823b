package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/envplane/envplane/dataplane"
	"github.com/envplane/envplane/drivers"
)

// maxGrace bounds a rotation's grace period.
const maxGrace = 7 * 24 * time.Hour

// rotateParams is the input of a rotate operation, stored on it so a resumed
// operation does the same thing.
type rotateParams struct {
	Scopes []drivers.Scope `json:"scopes"`
	// From maps a scope to the credential being rotated away from.
	From  map[drivers.Scope]string `json:"from,omitempty"`
	Grace time.Duration            `json:"grace"`
	// Revoke lists credentials to revoke at once (emergency revocation).
	Revoke []string `json:"revoke,omitempty"`
	Reason string   `json:"reason,omitempty"`
}

// allRevoker is implemented by drivers whose RevokeCredential stops every
// credential of the database, not only the one named (Turso can only
// invalidate all tokens of a database).
type allRevoker interface {
	RevokesAllCredentials() bool
}

// revokesAll reports whether revoking one credential on t stops them all.
func revokesAll(t *Target) bool {
	r, ok := t.Driver.(allRevoker)
	return ok && r.RevokesAllCredentials()
}

// credentialExpiry returns when a credential issued now for env on t
// expires, or nil. On targets that cannot revoke one credential, a rotated
// credential can only age out, so their credentials always expire: after the
// type's TTL, or TokenTTL when the type has none.
func (s *Service) credentialExpiry(env *Environment, t *Target) *time.Time {
	ttl := s.CredentialTTL[env.Type]
	if ttl <= 0 && revokesAll(t) {
		ttl = s.TokenTTL
	}
	if ttl <= 0 {
		return nil
	}
	e := s.Now().Add(ttl)
	return &e
}

// issue makes a new credential for scope in slot through the driver, seals it
// and stores it active. then, if not nil, runs in the same transaction as the
// insert (rotation demotes the old credential there, so the store never shows
// two actives of one scope).
func (s *Service) issue(ctx context.Context, env *Environment, db *Database, t *Target, scope drivers.Scope, slot drivers.Slot, rotatedFrom string, then ...func(q Queries) error) (*Credential, error) {
	expires := s.credentialExpiry(env, t)
	req := drivers.IssueCredentialRequest{Database: db.DriverDatabase(), Scope: scope, Slot: slot}
	if expires != nil {
		req.ExpiresAt = *expires
	}
	resp, err := t.Driver.IssueCredential(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("cannot issue %s credential: %w", scope, err)
	}
	c := &Credential{
		ID:          s.NewID("cred"),
		DatabaseID:  db.ID,
		Scope:       scope,
		Slot:        slot,
		Username:    resp.Credential.Username,
		Status:      CredentialActive,
		IssuedAt:    s.Now(),
		ExpiresAt:   expires,
		RotatedFrom: rotatedFrom,
	}
	if !resp.Credential.ExpiresAt.IsZero() {
		e := resp.Credential.ExpiresAt.UTC()
		c.ExpiresAt = &e
	}
	sealed, err := Seal(ctx, s.Keyring, resp.Credential.Secret, c.ID, db.ID)
	if err != nil {
		return nil, fmt.Errorf("cannot seal credential: %w", err)
	}
	c.SecretCipher, c.DEKCipher, c.KMSKeyID = sealed.SecretCipher, sealed.DEKCipher, sealed.KeyID
	err = s.Store.WithTx(ctx, func(q Queries) error {
		if err := q.CreateCredential(ctx, c); err != nil {
			return err
		}
		for _, fn := range then {
			if err := fn(q); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// secret opens a stored credential.
func (s *Service) secret(ctx context.Context, c *Credential) (drivers.Secret, error) {
	return Unseal(ctx, s.Keyring, Sealed{SecretCipher: c.SecretCipher, DEKCipher: c.DEKCipher, KeyID: c.KMSKeyID}, c.ID, c.DatabaseID)
}

// activeCredential returns the newest active credential of a scope.
func (s *Service) activeCredential(ctx context.Context, db *Database, scope drivers.Scope) (*Credential, error) {
	cs, err := s.Store.ListCredentials(ctx, CredentialFilter{DatabaseID: db.ID, Scope: scope, Statuses: []CredentialStatus{CredentialActive}})
	if err != nil {
		return nil, err
	}
	if len(cs) == 0 {
		return nil, Errorf(EUNAVAILABLE, "no active %s credential", scope)
	}
	return cs[0], nil
}

// driverCredential returns the credential as the driver takes it, secret opened.
func (s *Service) driverCredential(ctx context.Context, c *Credential) (drivers.Credential, error) {
	secret, err := s.secret(ctx, c)
	if err != nil {
		return drivers.Credential{}, err
	}
	dc := drivers.Credential{Scope: c.Scope, Slot: c.Slot, Username: c.Username, Secret: secret}
	if c.ExpiresAt != nil {
		dc.ExpiresAt = *c.ExpiresAt
	}
	return dc, nil
}

// revoke makes one credential stop working and records it revoked.
func (s *Service) revoke(ctx context.Context, db *Database, t *Target, c *Credential) error {
	if c.Status == CredentialRevoked {
		return nil
	}
	if _, err := t.Driver.RevokeCredential(ctx, drivers.RevokeCredentialRequest{Database: db.DriverDatabase(), Scope: c.Scope, Slot: c.Slot, Username: c.Username}); err != nil {
		return fmt.Errorf("cannot revoke credential: %w", err)
	}
	now := s.Now()
	c.Status = CredentialRevoked
	c.RevokedAt = &now
	return s.Store.UpdateCredential(ctx, c)
}

// revokeAll revokes every credential of the database that is not revoked yet.
func (s *Service) revokeAll(ctx context.Context, db *Database, t *Target) error {
	cs, err := s.Store.ListCredentials(ctx, CredentialFilter{DatabaseID: db.ID, Statuses: []CredentialStatus{CredentialActive, CredentialRotating}})
	if err != nil {
		return err
	}
	for _, c := range cs {
		if err := s.revoke(ctx, db, t, c); err != nil {
			return err
		}
	}
	return nil
}

// initializeSchema runs the schema initializer through the admin credential
// and returns the schema version.
func (s *Service) initializeSchema(ctx context.Context, env *Environment, db *Database, t *Target) (int64, error) {
	conn, err := s.openAdmin(ctx, db, t)
	if err != nil {
		return 0, err
	}
	defer conn.DB.Close()
	res, err := s.Schema.Apply(ctx, conn.DB, conn.Dialect, dataplane.Owner{EnvironmentID: env.ID, OrgID: env.OrgID})
	if err != nil {
		return 0, fmt.Errorf("cannot initialize schema: %w", err)
	}
	return res.SchemaVersion, nil
}

// openAdmin opens the database with its active admin credential.
func (s *Service) openAdmin(ctx context.Context, db *Database, t *Target) (drivers.OpenResponse, error) {
	c, err := s.activeCredential(ctx, db, drivers.ScopeAdmin)
	if err != nil {
		return drivers.OpenResponse{}, err
	}
	dc, err := s.driverCredential(ctx, c)
	if err != nil {
		return drivers.OpenResponse{}, err
	}
	conn, err := t.Driver.Open(ctx, drivers.OpenRequest{Database: db.DriverDatabase(), Credential: dc})
	if err != nil {
		return drivers.OpenResponse{}, fmt.Errorf("cannot open database: %w", err)
	}
	return conn, nil
}

// rotateStep runs a rotate operation: emergency revocations first, then a new
// credential on the standby slot of every scope asked for, and finally an
// active credential for any scope left without one. Each part checks what is
// already done, so a resumed operation converges.
func (s *Service) rotateStep(ctx context.Context, op *Operation) error {
	env, db, t, err := s.envAndDatabase(ctx, op)
	if err != nil {
		return err
	}
	var params rotateParams
	if err := json.Unmarshal(op.Params, &params); err != nil {
		return fmt.Errorf("cannot read rotate parameters: %w", err)
	}
	for _, id := range params.Revoke {
		c, err := s.Store.GetCredential(ctx, db.ID, id)
		if err != nil {
			return err
		}
		if err := s.revoke(ctx, db, t, c); err != nil {
			return err
		}
	}
	if len(params.Revoke) > 0 && revokesAll(t) {
		// The engine stopped every credential of the database: record them
		// revoked, so the loop below re-issues every scope. Only those from
		// before this operation: a retried step must not mark the ones it
		// issued in an earlier attempt, which still work.
		if err := s.markAllRevoked(ctx, db, op.CreatedAt); err != nil {
			return err
		}
	}
	for _, scope := range params.Scopes {
		from := params.From[scope]
		if from == "" {
			continue
		}
		old, err := s.Store.GetCredential(ctx, db.ID, from)
		if err != nil {
			return err
		}
		if old.Status != CredentialActive {
			continue
		}
		graceEnd := s.Now().Add(params.Grace)
		if old.ExpiresAt != nil && old.ExpiresAt.Before(graceEnd) {
			graceEnd = *old.ExpiresAt
		}
		_, err = s.issue(ctx, env, db, t, scope, old.Slot.Other(), old.ID, func(q Queries) error {
			old.Status = CredentialRotating
			old.ExpiresAt = &graceEnd
			return q.UpdateCredential(ctx, old)
		})
		if err != nil {
			return err
		}
		// Without a grace the old credential ends now, not at the
		// background loop's next tick, and does not block the next rotation.
		if params.Grace <= 0 {
			if err := s.revoke(ctx, db, t, old); err != nil {
				return err
			}
		}
	}
	for _, scope := range drivers.Scopes() {
		if _, err := s.activeCredential(ctx, db, scope); err == nil {
			continue
		} else if !IsCode(err, EUNAVAILABLE) {
			return err
		}
		slot, from, err := s.reissueSlot(ctx, db, scope)
		if err != nil {
			return err
		}
		if _, err := s.issue(ctx, env, db, t, scope, slot, from); err != nil {
			return err
		}
	}
	return s.complete(ctx, op, func(q Queries) error {
		action := "credentials.rotated"
		if len(params.Revoke) > 0 {
			action = "credentials.revoked"
		}
		return s.audit(ctx, q, nil, env.OrgID, env.ID, action, env.ID, map[string]any{"operation": op.ID, "reason": params.Reason})
	})
}

// markAllRevoked records every live credential of the database issued
// before before revoked, without asking the driver (it already stopped them).
func (s *Service) markAllRevoked(ctx context.Context, db *Database, before time.Time) error {
	cs, err := s.Store.ListCredentials(ctx, CredentialFilter{DatabaseID: db.ID, Statuses: []CredentialStatus{CredentialActive, CredentialRotating}})
	if err != nil {
		return err
	}
	now := s.Now()
	for _, c := range cs {
		if !c.IssuedAt.Before(before) {
			continue
		}
		c.Status = CredentialRevoked
		c.RevokedAt = &now
		if err := s.Store.UpdateCredential(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// reissueSlot picks the slot for a scope that has no active credential: the
// one its newest credential did not use, so a rotating credential in grace
// keeps its slot.
func (s *Service) reissueSlot(ctx context.Context, db *Database, scope drivers.Scope) (drivers.Slot, string, error) {
	cs, err := s.Store.ListCredentials(ctx, CredentialFilter{DatabaseID: db.ID, Scope: scope})
	if err != nil {
		return "", "", err
	}
	if len(cs) == 0 {
		return drivers.SlotA, "", nil
	}
	newest := cs[0]
	if newest.Status == CredentialRevoked {
		return newest.Slot, newest.ID, nil
	}
	return newest.Slot.Other(), newest.ID, nil
}

// RevokeDue revokes rotating credentials whose grace has ended. It returns
// how many it revoked; a failure on one is logged and the rest go on.
func (s *Service) RevokeDue(ctx context.Context) (int, error) {
	cs, err := s.Store.ListCredentialsDue(ctx, s.Now(), 100)
	if err != nil {
		return 0, fmt.Errorf("cannot list credentials due: %w", err)
	}
	n := 0
	for _, c := range cs {
		db, err := s.Store.GetDatabase(ctx, c.DatabaseID)
		if err != nil {
			return n, err
		}
		t, ok := s.Targets[db.Target]
		if !ok {
			s.Logger.Error("credential on unconfigured target", "credential", c.ID, "target", db.Target)
			continue
		}
		agedOut := revokesAll(t)
		if agedOut {
			// Revoking would stop the active credentials too: the rotated
			// one ages out at its own expiry (adr/0005).
			now := s.Now()
			c.Status, c.RevokedAt = CredentialRevoked, &now
			err = s.Store.UpdateCredential(ctx, c)
		} else {
			err = s.revoke(ctx, db, t, c)
		}
		if err != nil {
			s.Logger.Error("cannot revoke credential after grace", "credential", c.ID, "err", err)
			continue
		}
		orgID, err := s.Store.OrgOf(ctx, KindEnvironment, db.EnvironmentID)
		if err != nil {
			return n, err
		}
		if err := s.audit(ctx, s.Store, nil, orgID, db.EnvironmentID, "credential.grace_ended", c.ID, map[string]any{"scope": string(c.Scope), "slot": string(c.Slot), "aged_out": agedOut}); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
