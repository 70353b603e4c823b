package controlplane

import (
	"context"
	"fmt"
	"time"

	"github.com/envplane/envplane/dataplane"
	"github.com/envplane/envplane/drivers"
)

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
//
// It refuses (ETOOMANY) past the live-credential budget of the scope: a
// crash loop or a bug must not mint credentials without end.
func (s *Service) issue(ctx context.Context, env *Environment, db *Database, t *Target, scope drivers.Scope, slot drivers.Slot, rotatedFrom string, then ...func(q Queries) error) (*Credential, error) {
	if err := s.liveBudget(ctx, env, db, scope); err != nil {
		return nil, err
	}
	expires := s.credentialExpiry(env, t)
	req := drivers.IssueCredentialRequest{Database: db.DriverDatabase(), Scope: scope, Slot: slot}
	if expires != nil {
		req.ExpiresAt = *expires
	}
	unlock, err := s.lockSlot(ctx, db, scope, slot)
	if err != nil {
		return nil, err
	}
	resp, err := t.Driver.IssueCredential(ctx, req)
	unlock()
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
		return nil, keyringUnavailable(fmt.Errorf("cannot seal credential: %w", err))
	}
	c.SecretCipher, c.DEKCipher, c.KMSKeyID = sealed.SecretCipher, sealed.DEKCipher, sealed.KeyID
	err = s.tx(ctx, func(q Queries) error {
		if err := q.CreateCredential(ctx, c); err != nil {
			return err
		}
		for _, fn := range then {
			if err := fn(q); err != nil {
				return err
			}
		}
		return s.changed(ctx, q, env.OrgID)
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// lockSlot takes, for every replica, the lock of what db's slot of scope
// goes through on its target: a grace's end revoking the slot's role, and
// an issue giving the slot a new secret. On PostgreSQL a slot is one role,
// so a revocation that read its credential before a rotation (on this
// replica or another) reissued the slot would otherwise lock the new
// credential out; endGrace reads again under the lock (adr/0028).
func (s *Service) lockSlot(ctx context.Context, db *Database, scope drivers.Scope, slot drivers.Slot) (unlock func(), err error) {
	unlock, err = s.Store.Lock(ctx, "slot/"+db.ID+"/"+string(scope)+"/"+string(slot))
	if err != nil {
		return nil, fmt.Errorf("cannot lock the %s credential's slot %s: %w", scope, slot, err)
	}
	return unlock, nil
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
		return drivers.Credential{}, keyringUnavailable(err)
	}
	dc := drivers.Credential{Scope: c.Scope, Slot: c.Slot, Username: c.Username, Secret: secret}
	if c.ExpiresAt != nil {
		dc.ExpiresAt = *c.ExpiresAt
	}
	return dc, nil
}

// revoke makes one credential stop working and records it revoked.
func (s *Service) revoke(ctx context.Context, env *Environment, db *Database, t *Target, c *Credential) error {
	if c.Status == CredentialRevoked {
		return nil
	}
	if _, err := t.Driver.RevokeCredential(ctx, drivers.RevokeCredentialRequest{Database: db.DriverDatabase(), Scope: c.Scope, Slot: c.Slot, Username: c.Username}); err != nil {
		return fmt.Errorf("cannot revoke credential: %w", err)
	}
	now := s.Now()
	c.Status = CredentialRevoked
	c.RevokedAt = &now
	return s.tx(ctx, func(q Queries) error {
		if err := q.UpdateCredential(ctx, c); err != nil {
			return err
		}
		return s.changed(ctx, q, env.OrgID)
	})
}

// revokeAll revokes every credential of the database that is not revoked yet.
func (s *Service) revokeAll(ctx context.Context, env *Environment, db *Database, t *Target) error {
	cs, err := s.Store.ListCredentials(ctx, CredentialFilter{DatabaseID: db.ID, Statuses: []CredentialStatus{CredentialActive, CredentialRotating}})
	if err != nil {
		return err
	}
	for _, c := range cs {
		if err := s.revoke(ctx, env, db, t, c); err != nil {
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

// ListCredentials returns the environment's credentials' metadata, newest
// first (owner, admin, env_admin). Secrets never leave the store this way.
func (s *Service) ListCredentials(ctx context.Context, p *Principal, orgRef, envRef string) ([]*Credential, error) {
	ctx, a, err := s.envAccess(ctx, p, orgRef, envRef, ActCredRead)
	if err != nil {
		return nil, err
	}
	db, err := s.Store.GetEnvironmentDatabase(ctx, a.env.ID)
	if err != nil {
		return nil, err
	}
	return s.Store.ListCredentials(ctx, CredentialFilter{DatabaseID: db.ID})
}

// databaseOf returns the environment's database and the target that holds it.
func (s *Service) databaseOf(ctx context.Context, env *Environment) (*Database, *Target, error) {
	db, err := s.Store.GetEnvironmentDatabase(ctx, env.ID)
	if err != nil {
		return nil, nil, err
	}
	t, ok := s.Targets[db.Target]
	if !ok {
		return nil, nil, Errorf(EUNAVAILABLE, "the environment's target is not configured")
	}
	return db, t, nil
}
