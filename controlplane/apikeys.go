package controlplane

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/envplane/envplane/drivers"
)

// TokenPrefix starts every API token, so a leaked one is recognisable (and
// secret scanners can find it).
const TokenPrefix = "envp_"

// keyPrefixLen is how much of a token is kept in clear to tell keys apart.
const keyPrefixLen = len(TokenPrefix) + 8

// touchEvery limits last_used_at writes to one per key per interval: the
// router is a hot path and must not write on every call.
const touchEvery = time.Minute

// HashToken returns the stored form of a token: its SHA-256, hex-encoded.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Authenticate resolves a bearer token to its principal. A missing, unknown,
// revoked or expired token, or one of a disabled user, is EUNAUTHORIZED with
// one message for all, so callers learn nothing about which. A token seen
// recently is answered from this replica's cache until a change of its
// organization (a key revoked, a member removed) or its expiry; its use is
// recorded (last_used_at, at most once a minute) off the request's path.
// The returned principal is shared: callers must not change it.
func (s *Service) Authenticate(ctx context.Context, token string) (*Principal, error) {
	// A function, not a value: the hot path must not format an error it
	// does not return.
	denied := func() error { return Errorf(EUNAUTHORIZED, "invalid or missing API key") }
	if isSessionToken(token) {
		return s.authenticateSession(ctx, token, denied)
	}
	if !strings.HasPrefix(token, TokenPrefix) {
		return nil, denied()
	}
	hash := HashToken(token)
	now := s.Now()
	if s.cacheTrusted(now) {
		if e := s.cache.principal(hash, now); e != nil {
			s.touched(e, now)
			return e.p, nil
		}
	}
	epoch := s.cache.begin()
	// Authentication finds the key before any organization is known (ADR 0027).
	k, err := s.Store.GetAPIKeyByHash(WithPlatformScope(ctx), hash)
	if IsCode(err, ENOTFOUND) {
		return nil, denied()
	}
	if err != nil {
		return nil, storeUnavailable(err)
	}
	if k.RevokedAt != nil || (k.ExpiresAt != nil && !now.Before(*k.ExpiresAt)) {
		return nil, denied()
	}
	p := &Principal{KeyID: k.ID, UserID: k.UserID, OrgID: k.OrgID, EnvironmentID: k.EnvironmentID, MaxScope: k.MaxScope}
	if k.UserID != "" {
		u, err := s.Store.GetUser(ctx, k.UserID)
		if err != nil {
			return nil, storeUnavailable(err)
		}
		if u.DisabledAt != nil {
			return nil, denied()
		}
		p.Email = u.Email
		p.PlatformAdmin = u.PlatformAdmin && k.OrgID == ""
	}
	e := &principalEntry{p: p, entry: entry{orgID: k.OrgID, expires: k.ExpiresAt, epoch: epoch, filled: now}}
	if k.LastUsedAt != nil {
		e.touched.Store(k.LastUsedAt.UnixNano())
	}
	s.touched(e, now)
	s.cache.putPrincipal(hash, e)
	return p, nil
}

// touched records the key's use at now when the last record is older than
// touchEvery; the write happens at the next receipt flush.
func (s *Service) touched(e *principalEntry, now time.Time) {
	last := e.touched.Load()
	if now.UnixNano()-last < int64(touchEvery) || !e.touched.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	s.receipts.touch(e.p.KeyID, now)
}

// CreateAPIKey makes a key and returns its token, the only time it is shown.
// With Environment set it is an app key bound to that environment up to
// MaxScope (owner, admin); otherwise a user key for User, by default the
// caller (owners and admins for anyone in the org, members for themselves).
func (s *Service) CreateAPIKey(ctx context.Context, p *Principal, ref string, req CreateAPIKeyRequest) (*CreateAPIKeyResponse, error) {
	if err := checkText(req); err != nil {
		return nil, err
	}
	ctx, a, err := s.orgAccess(ctx, p, ref, ActOrgRead)
	if err != nil {
		return nil, err
	}
	// A key of one's own is the least a key can be: who may not make that
	// (an app key) is EFORBIDDEN whatever the fields say.
	own := a.resource()
	own.OwnerUserID = p.UserID
	if err := Authorize(a.subject, ActAPIKeyWrite, own); err != nil {
		return nil, err
	}
	var fields []FieldError
	name := strings.TrimSpace(req.Name)
	if name == "" || len(name) > 200 {
		fields = append(fields, FieldError{Field: "name", Message: "must be 1 to 200 characters"})
	}
	if req.ExpiresAt != nil && !req.ExpiresAt.After(s.Now()) {
		fields = append(fields, FieldError{Field: "expires_at", Message: "must be in the future"})
	}
	if req.Environment != "" && req.User != "" {
		fields = append(fields, FieldError{Field: "user", Message: "an app key (environment set) has no user"})
	}
	if req.Environment == "" && req.MaxScope != "" {
		fields = append(fields, FieldError{Field: "max_scope", Message: "applies only to app keys (environment set)"})
	}
	if req.MaxScope != "" && !req.MaxScope.Valid() {
		fields = append(fields, FieldError{Field: "max_scope", Message: "must be admin, readwrite or readonly"})
	}
	if len(fields) > 0 {
		return nil, Invalid(fields...)
	}
	k := &APIKey{ID: s.NewID("key"), OrgID: a.org.ID, Name: name, CreatedAt: s.Now(), ExpiresAt: req.ExpiresAt}
	resp := &CreateAPIKeyResponse{ID: k.ID, Name: name, ExpiresAt: req.ExpiresAt}
	if req.Environment != "" {
		// An app key has no user: ActAPIKeyWrite on a key owned by no one is
		// for owners and admins only.
		if err := Authorize(a.subject, ActAPIKeyWrite, a.resource()); err != nil {
			return nil, err
		}
		env, err := s.Store.GetEnvironment(ctx, a.org.ID, req.Environment)
		if IsCode(err, ENOTFOUND) {
			return nil, Invalid(FieldError{Field: "environment", Message: "no such environment"})
		}
		if err != nil {
			return nil, err
		}
		k.EnvironmentID = env.ID
		k.MaxScope = req.MaxScope
		if k.MaxScope == "" {
			k.MaxScope = drivers.ScopeReadOnly
		}
		resp.Environment, resp.MaxScope = env.ID, k.MaxScope
	} else {
		owner, ownerRole := p.UserID, a.subject.OrgRole
		if req.User != "" {
			m, err := s.member(ctx, s.Store, a.org.ID, req.User)
			if IsCode(err, ENOTFOUND) {
				return nil, Invalid(FieldError{Field: "user", Message: "not a member of the organization"})
			}
			if err != nil {
				return nil, err
			}
			owner, ownerRole = m.UserID, m.Role
		}
		if owner == "" {
			return nil, Invalid(FieldError{Field: "user", Message: "required for a key made by an app key"})
		}
		r := a.resource()
		r.OwnerUserID = owner
		if err := Authorize(a.subject, ActAPIKeyWrite, r); err != nil {
			return nil, err
		}
		// A key acts as its user: minting an owner's key would make an
		// admin an owner.
		if owner != p.UserID && ownerRole == OrgOwner {
			if err := Authorize(a.subject, ActOwnerWrite, a.resource()); err != nil {
				return nil, err
			}
		}
		k.UserID = owner
		resp.User = owner
	}
	token, err := newSecretToken(TokenPrefix)
	if err != nil {
		return nil, err
	}
	k.Prefix, k.Hash = token[:keyPrefixLen], HashToken(token)
	err = s.tx(ctx, func(q Queries) error {
		if err := q.CreateAPIKey(ctx, k); err != nil {
			return err
		}
		return s.audit(ctx, q, p, a.org.ID, k.EnvironmentID, "api_key.created", k.ID, map[string]any{"name": k.Name, "prefix": k.Prefix})
	})
	if err != nil {
		return nil, err
	}
	resp.Token = token
	return resp, nil
}

// ListAPIKeys lists the organization's keys: all of them for owners and
// admins, a member's own otherwise.
func (s *Service) ListAPIKeys(ctx context.Context, p *Principal, ref string, page Page) ([]*APIKey, string, error) {
	if err := page.Check(); err != nil {
		return nil, "", err
	}
	ctx, a, err := s.orgAccess(ctx, p, ref, ActOrgRead)
	if err != nil {
		return nil, "", err
	}
	userID := ""
	if Authorize(a.subject, ActAPIKeyRead, a.resource()) != nil {
		r := a.resource()
		r.OwnerUserID = p.UserID
		if err := Authorize(a.subject, ActAPIKeyRead, r); err != nil {
			return nil, "", err
		}
		userID = p.UserID
	}
	return s.Store.ListAPIKeys(ctx, a.org.ID, userID, page)
}

// GetAPIKey returns one key's metadata (owners and admins; members their own).
func (s *Service) GetAPIKey(ctx context.Context, p *Principal, ref, id string) (*APIKey, error) {
	ctx, a, err := s.orgAccess(ctx, p, ref, ActOrgRead)
	if err != nil {
		return nil, err
	}
	if !StorableText(id) {
		return nil, Errorf(ENOTFOUND, "API key not found")
	}
	k, err := s.Store.GetAPIKey(ctx, a.org.ID, id)
	if err != nil {
		return nil, err
	}
	r := a.resource()
	r.OwnerUserID = k.UserID
	if err := Authorize(a.subject, ActAPIKeyRead, r); err != nil {
		return nil, err
	}
	return k, nil
}

// RevokeAPIKey revokes a key (owners and admins; members their own). Idempotent.
func (s *Service) RevokeAPIKey(ctx context.Context, p *Principal, ref, id string) error {
	ctx, a, err := s.orgAccess(ctx, p, ref, ActOrgRead)
	if err != nil {
		return err
	}
	if !StorableText(id) {
		return Errorf(ENOTFOUND, "API key not found")
	}
	k, err := s.Store.GetAPIKey(ctx, a.org.ID, id)
	if err != nil {
		return err
	}
	r := a.resource()
	r.OwnerUserID = k.UserID
	if err := Authorize(a.subject, ActAPIKeyWrite, r); err != nil {
		return err
	}
	return s.tx(ctx, func(q Queries) error {
		if err := q.RevokeAPIKey(ctx, a.org.ID, k.ID, s.Now()); err != nil {
			return err
		}
		return s.audit(ctx, q, p, a.org.ID, k.EnvironmentID, "api_key.revoked", k.ID, nil)
	})
}

// BootstrapRequest says who the first platform admin is and, optionally, the
// first organization to create for them.
type BootstrapRequest struct {
	Email string
	Org   string
}

// Bootstrap makes the platform admin and a platform key when none exists, and
// returns the key's token; when a live platform key exists it returns "" and
// changes nothing. With Org set it also creates that organization, owned by
// the admin, and provisions its default environment.
func (s *Service) Bootstrap(ctx context.Context, req BootstrapRequest) (string, error) {
	// Bootstrap is the operator's: it makes the platform admin and an organization (ADR 0027).
	ctx = WithPlatformScope(ctx)
	keys, err := s.Store.ListPlatformKeys(ctx)
	if err != nil {
		return "", err
	}
	if len(keys) > 0 {
		return "", nil
	}
	if err := checkText(req); err != nil {
		return "", err
	}
	email := normalizeEmail(req.Email)
	if email == "" {
		email = "admin@envplane.local"
	}
	if !validEmail(email) {
		return "", Invalid(FieldError{Field: "email", Message: "must be an email address"})
	}
	if req.Org != "" && !ValidSlug(req.Org) {
		return "", Invalid(FieldError{Field: "org", Message: "must match ^[a-z0-9][a-z0-9-]{0,62}$"})
	}
	token, err := newSecretToken(TokenPrefix)
	if err != nil {
		return "", err
	}
	var p *Principal
	err = s.tx(ctx, func(q Queries) error {
		u, err := q.GetUserByEmail(ctx, email)
		switch {
		case IsCode(err, ENOTFOUND):
			u = &User{ID: s.NewID("usr"), Email: email, Name: "Platform admin", PlatformAdmin: true, CreatedAt: s.Now()}
			if err := q.CreateUser(ctx, u); err != nil {
				return err
			}
		case err != nil:
			return err
		case !u.PlatformAdmin:
			// Promoting an existing user silently would hand an org member the platform.
			return Invalid(FieldError{Field: "email", Message: "belongs to a user who is not a platform admin"})
		}
		k := &APIKey{ID: s.NewID("key"), UserID: u.ID, Name: "bootstrap", Prefix: token[:keyPrefixLen], Hash: HashToken(token), CreatedAt: s.Now()}
		if err := q.CreateAPIKey(ctx, k); err != nil {
			return err
		}
		p = &Principal{KeyID: k.ID, UserID: u.ID, Email: u.Email, PlatformAdmin: true}
		return s.audit(ctx, q, p, "", "", "platform.bootstrapped", k.ID, map[string]any{"email": email})
	})
	if err != nil {
		return "", err
	}
	if req.Org != "" {
		if _, done, err := s.CreateOrganization(ctx, p, CreateOrganizationRequest{Slug: req.Org, Name: req.Org}); err != nil && !IsCode(err, ECONFLICT) {
			return "", err
		} else if done != nil {
			<-done
		}
	}
	return token, nil
}
