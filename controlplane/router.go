package controlplane

import (
	"context"
	"encoding/json"
	"time"

	"github.com/envplane/envplane/drivers"
)

// refreshWindow bounds how long a client may cache a resolved connection: it
// re-resolves after this, or sooner when the credential expires, so rotation
// reaches every client well inside the grace period.
const refreshWindow = time.Minute

// ResolveConnection is the router: it returns what an application needs to
// connect to the environment with scope, using the newest active credential.
// A scope above the caller's role is EFORBIDDEN, a suspended environment
// ELOCKED, one not active yet ECONFLICT.
func (s *Service) ResolveConnection(ctx context.Context, p *Principal, orgRef, envRef string, scope Scope) (*Connection, error) {
	action, ok := ConnectionAction(scope)
	if !ok {
		return nil, Invalid(FieldError{Field: "scope", Message: "must be admin, readwrite or readonly"})
	}
	a, err := s.envAccess(ctx, p, orgRef, envRef, action)
	if err != nil {
		return nil, err
	}
	return s.connection(ctx, a, scope)
}

// ResolveConnectionByID is ResolveConnection for an environment named by id.
func (s *Service) ResolveConnectionByID(ctx context.Context, p *Principal, envID string, scope Scope) (*Connection, error) {
	action, ok := ConnectionAction(scope)
	if !ok {
		return nil, Invalid(FieldError{Field: "scope", Message: "must be admin, readwrite or readonly"})
	}
	a, err := s.envAccessByID(ctx, p, envID, action)
	if err != nil {
		return nil, err
	}
	return s.connection(ctx, a, scope)
}

func (s *Service) connection(ctx context.Context, a *access, scope Scope) (*Connection, error) {
	env := a.env
	switch env.Status {
	case StatusActive:
	case StatusSuspended:
		return nil, Errorf(ELOCKED, "the environment is suspended")
	default:
		return nil, Errorf(ECONFLICT, "the environment is %s", env.Status)
	}
	db, t, err := s.databaseOf(ctx, env)
	if err != nil {
		return nil, err
	}
	c, err := s.activeCredential(ctx, db, scope)
	if err != nil {
		return nil, err
	}
	dc, err := s.driverCredential(ctx, c)
	if err != nil {
		return nil, err
	}
	d, err := t.Driver.Descriptor(ctx, drivers.DescriptorRequest{Database: db.DriverDatabase(), Credential: dc})
	if err != nil {
		return nil, Errorf(EUNAVAILABLE, "cannot describe the connection").Wrap(err)
	}
	now := s.Now()
	refresh := now.Add(refreshWindow)
	if c.ExpiresAt != nil {
		if half := now.Add(c.ExpiresAt.Sub(now) / 2); half.Before(refresh) {
			refresh = half
		}
	}
	return &Connection{
		EnvironmentID: env.ID,
		Organization:  a.org.Slug,
		Environment:   env.Slug,
		Driver:        db.Driver,
		Scope:         scope,
		DSN:           d.DSN.Reveal(),
		URL:           d.URL,
		Host:          d.Host,
		Port:          d.Port,
		Database:      d.Database,
		Username:      d.Username,
		Secret:        dc.Secret.Reveal(),
		CredentialID:  c.ID,
		ExpiresAt:     c.ExpiresAt,
		RefreshAfter:  refresh,
	}, nil
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

// ListCredentials returns the environment's credentials' metadata, newest
// first (owner, admin, env_admin). Secrets never leave the store this way.
func (s *Service) ListCredentials(ctx context.Context, p *Principal, orgRef, envRef string) ([]*Credential, error) {
	a, err := s.envAccess(ctx, p, orgRef, envRef, ActCredRead)
	if err != nil {
		return nil, err
	}
	db, err := s.Store.GetEnvironmentDatabase(ctx, a.env.ID)
	if err != nil {
		return nil, err
	}
	return s.Store.ListCredentials(ctx, CredentialFilter{DatabaseID: db.ID})
}

// RotateCredentials issues new credentials on the standby slots of the asked
// scopes; the old ones keep working for the grace period, then the
// background loop revokes them (owner, admin, env_admin). ECONFLICT while the
// environment is not active or suspended, while another operation runs, or
// while a standby slot still holds a credential in its grace.
func (s *Service) RotateCredentials(ctx context.Context, p *Principal, orgRef, envRef string, req RotateCredentialsRequest) (*Operation, <-chan struct{}, error) {
	a, err := s.envAccess(ctx, p, orgRef, envRef, ActCredRotate)
	if err != nil {
		return nil, nil, err
	}
	var fields []FieldError
	scopes := drivers.Scopes()
	switch sc := Scope(req.Scope); {
	case req.Scope == "" || req.Scope == "all":
	case sc.Valid():
		scopes = []Scope{sc}
	default:
		fields = append(fields, FieldError{Field: "scope", Message: "must be all, admin, readwrite or readonly"})
	}
	grace := s.Grace
	if req.GraceSeconds != nil {
		// Checked before multiplying: a huge value would overflow into a short grace.
		if n := *req.GraceSeconds; n < 0 || n > int(maxGrace/time.Second) {
			fields = append(fields, FieldError{Field: "grace_seconds", Message: "must be between 0 and 604800"})
		} else {
			grace = time.Duration(n) * time.Second
		}
	}
	if len(req.Reason) > 500 {
		fields = append(fields, FieldError{Field: "reason", Message: "must be at most 500 characters"})
	}
	if len(fields) > 0 {
		return nil, nil, Invalid(fields...)
	}
	params := rotateParams{Scopes: scopes, From: map[Scope]string{}, Grace: grace, Reason: req.Reason}
	return s.startRotation(ctx, p, a, "credentials.rotate_requested", func(db *Database) error {
		for _, sc := range scopes {
			cs, err := s.Store.ListCredentials(ctx, CredentialFilter{DatabaseID: db.ID, Scope: sc, Statuses: []CredentialStatus{CredentialActive, CredentialRotating}})
			if err != nil {
				return err
			}
			for _, c := range cs {
				switch c.Status {
				case CredentialRotating:
					return Errorf(ECONFLICT, "the %s credential rotated last is still in its grace period; wait for it to end or revoke it", sc)
				case CredentialActive:
					if _, seen := params.From[sc]; !seen {
						params.From[sc] = c.ID
					}
				}
			}
		}
		return nil
	}, &params)
}

// RevokeCredentials is emergency revocation (owner, admin, env_admin): the
// named credential, or every credential of the environment, stops working at
// once, and every scope left without an active credential gets a new one.
func (s *Service) RevokeCredentials(ctx context.Context, p *Principal, orgRef, envRef string, req RevokeCredentialsRequest) (*Operation, <-chan struct{}, error) {
	a, err := s.envAccess(ctx, p, orgRef, envRef, ActCredRotate)
	if err != nil {
		return nil, nil, err
	}
	reason := req.Reason
	if l := len(reason); l == 0 || l > 500 {
		return nil, nil, Invalid(FieldError{Field: "reason", Message: "is required, at most 500 characters"})
	}
	params := rotateParams{Reason: reason}
	return s.startRotation(ctx, p, a, "credentials.revoke_requested", func(db *Database) error {
		if req.CredentialID != "" {
			c, err := s.Store.GetCredential(ctx, db.ID, req.CredentialID)
			if IsCode(err, ENOTFOUND) {
				return Invalid(FieldError{Field: "credential_id", Message: "no such credential on this environment"})
			}
			if err != nil {
				return err
			}
			if c.Status == CredentialRevoked {
				return Errorf(ECONFLICT, "the credential is already revoked")
			}
			params.Revoke = []string{c.ID}
			return nil
		}
		cs, err := s.Store.ListCredentials(ctx, CredentialFilter{DatabaseID: db.ID, Statuses: []CredentialStatus{CredentialActive, CredentialRotating}})
		if err != nil {
			return err
		}
		for _, c := range cs {
			params.Revoke = append(params.Revoke, c.ID)
		}
		return nil
	}, &params)
}

// startRotation records a rotate operation whose parameters prepare fills in
// from the environment's database, and starts it.
func (s *Service) startRotation(ctx context.Context, p *Principal, a *access, action string, prepare func(db *Database) error, params *rotateParams) (*Operation, <-chan struct{}, error) {
	env := a.env
	if env.Status != StatusActive && env.Status != StatusSuspended {
		return nil, nil, Errorf(ECONFLICT, "the environment is %s", env.Status)
	}
	db, err := s.Store.GetEnvironmentDatabase(ctx, env.ID)
	if err != nil {
		return nil, nil, err
	}
	var op *Operation
	err = s.Store.WithTx(ctx, func(q Queries) error {
		if _, err := q.GetRunningOperation(ctx, env.ID); err == nil {
			return Errorf(ECONFLICT, "an operation is running on the environment")
		} else if !IsCode(err, ENOTFOUND) {
			return err
		}
		if err := prepare(db); err != nil {
			return err
		}
		raw, err := json.Marshal(params)
		if err != nil {
			return err
		}
		op = s.newOperation(env.OrgID, env.ID, OpRotate, stepRotate, raw)
		if err := q.CreateOperation(ctx, op); err != nil {
			return err
		}
		return s.audit(ctx, q, p, env.OrgID, env.ID, action, env.ID, map[string]any{"operation": op.ID, "reason": params.Reason})
	})
	if err != nil {
		return nil, nil, err
	}
	return op, s.start(op), nil
}

// CredentialsAfter returns the operation as stored and the environment's
// credentials' metadata, for rotate and revoke responses.
func (s *Service) CredentialsAfter(ctx context.Context, op *Operation) (*CredentialsResponse, error) {
	op, err := s.Store.GetOperation(ctx, op.OrgID, op.ID)
	if err != nil {
		return nil, err
	}
	db, err := s.Store.GetEnvironmentDatabase(ctx, op.EnvironmentID)
	if err != nil {
		return nil, err
	}
	cs, err := s.Store.ListCredentials(ctx, CredentialFilter{DatabaseID: db.ID})
	if err != nil {
		return nil, err
	}
	return &CredentialsResponse{Operation: op, Credentials: cs}, nil
}
