package controlplane

import (
	"context"
	"fmt"
	"strings"
)

// CreateOrganization creates an organization and reserves its default
// environment, whose provisioning starts at once; the returned channel closes
// when it finishes here. A caller with a user becomes the owner. Only the
// platform admin may do it (EFORBIDDEN otherwise); a taken slug is ECONFLICT.
func (s *Service) CreateOrganization(ctx context.Context, p *Principal, req CreateOrganizationRequest) (*CreateOrganizationResponse, <-chan struct{}, error) {
	if err := checkText(req); err != nil {
		return nil, nil, err
	}
	if p == nil {
		return nil, nil, Errorf(EUNAUTHORIZED, "authentication required")
	}
	if err := Authorize(Subject{Principal: p}, ActOrgCreate, Resource{}); err != nil {
		return nil, nil, err
	}
	var fields []FieldError
	if !ValidSlug(req.Slug) {
		fields = append(fields, FieldError{Field: "slug", Message: "must match ^[a-z0-9][a-z0-9-]{0,62}$"})
	}
	name := strings.TrimSpace(req.Name)
	if name == "" {
		name = req.Slug
	}
	if len(name) > 200 {
		fields = append(fields, FieldError{Field: "name", Message: "must be at most 200 characters"})
	}
	maxEnv, maxStorage := s.DefaultMaxEnvironments, s.DefaultMaxStorageMB
	if req.MaxEnvironments != nil {
		maxEnv = *req.MaxEnvironments
	}
	if req.MaxStorageMB != nil {
		maxStorage = *req.MaxStorageMB
	}
	fields = append(fields, checkQuotas(req.MaxEnvironments, req.MaxStorageMB)...)
	if len(fields) > 0 {
		return nil, nil, Invalid(fields...)
	}
	now := s.Now()
	org := &Organization{ID: s.NewID("org"), Slug: req.Slug, Name: name, MaxEnvironments: maxEnv, MaxStorageMB: maxStorage,
		CreatedAt: now, UpdatedAt: now}
	if req.Require2FA != nil {
		org.Require2FA = *req.Require2FA
	}
	// The new organization's rows are written in its own scope.
	ctx = WithOrgScope(ctx, org.ID)
	var res *reservation
	err := s.tx(ctx, func(q Queries) error {
		if err := q.CreateOrganization(ctx, org); err != nil {
			if IsCode(err, ECONFLICT) {
				return Invalid(FieldError{Field: "slug", Message: "is taken"}).withCode(ECONFLICT)
			}
			return err
		}
		if p.UserID != "" {
			if err := q.PutOrgMembership(ctx, &OrgMembership{OrgID: org.ID, UserID: p.UserID, Role: OrgOwner, CreatedAt: now}); err != nil {
				return err
			}
		}
		if err := s.audit(ctx, q, p, org.ID, "", "organization.created", org.ID, map[string]any{"slug": org.Slug}); err != nil {
			return err
		}
		r, err := s.reserve(ctx, q, p, org, CreateEnvironmentRequest{Slug: "default", Name: "Default", Type: TypeDefault}, true, nil)
		res = r
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	done := s.start(res.op)
	return &CreateOrganizationResponse{Organization: org, DefaultEnvironment: s.view(res.env, res.db), Operation: res.op}, done, nil
}

// ListOrganizations lists the organizations p may see: every one for the
// platform admin, the key's own otherwise.
func (s *Service) ListOrganizations(ctx context.Context, p *Principal, page Page) ([]*Organization, string, error) {
	if err := page.Check(); err != nil {
		return nil, "", err
	}
	if p == nil {
		return nil, "", Errorf(EUNAUTHORIZED, "authentication required")
	}
	if p.OrgID == "" && p.PlatformAdmin {
		// The platform admin's listing of every organization (ADR 0027).
		return s.Store.ListOrganizations(WithPlatformScope(ctx), nil, page)
	}
	if p.OrgID == "" {
		return nil, "", nil
	}
	ctx, _, err := s.orgAccess(ctx, p, p.OrgID, ActOrgRead)
	if IsCode(err, ENOTFOUND) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	return s.Store.ListOrganizations(ctx, []string{p.OrgID}, page)
}

// GetOrganization returns the organization named by ref (slug or id), ENOTFOUND if p may not see it.
func (s *Service) GetOrganization(ctx context.Context, p *Principal, ref string) (*Organization, error) {
	ctx, a, err := s.orgAccess(ctx, p, ref, ActOrgRead)
	if err != nil {
		return nil, err
	}
	return a.org, nil
}

// MaxStorageQuotaMB is the largest max_storage_mb an organization may have (16 TiB).
const MaxStorageQuotaMB = 16 << 20

// checkQuotas checks the quotas a request sets, when it sets them.
func checkQuotas(maxEnv, maxStorage *int) []FieldError {
	var fields []FieldError
	if maxEnv != nil && (*maxEnv < 1 || *maxEnv > 100000) {
		fields = append(fields, FieldError{Field: "max_environments", Message: "must be between 1 and 100000"})
	}
	if maxStorage != nil && (*maxStorage < 0 || *maxStorage > MaxStorageQuotaMB) {
		fields = append(fields, FieldError{Field: "max_storage_mb", Message: fmt.Sprintf("must be between 0 (no quota) and %d", MaxStorageQuotaMB)})
	}
	return fields
}

// UpdateOrganization changes an organization's name or 2FA requirement
// (owner) and its quotas (platform admin only: EFORBIDDEN for an owner, who
// reads them but does not set them).
func (s *Service) UpdateOrganization(ctx context.Context, p *Principal, ref string, req UpdateOrganizationRequest) (*Organization, error) {
	if err := checkText(req); err != nil {
		return nil, err
	}
	ctx, a, err := s.orgAccess(ctx, p, ref, ActOrgUpdate)
	if err != nil {
		return nil, err
	}
	if req.MaxEnvironments != nil || req.MaxStorageMB != nil {
		if err := Authorize(a.subject, ActOrgQuota, Resource{OrgID: a.org.ID}); err != nil {
			return nil, Errorf(EFORBIDDEN, "forbidden: quotas are set by the platform admin")
		}
	}
	org := a.org
	fields := checkQuotas(req.MaxEnvironments, req.MaxStorageMB)
	details := map[string]any{}
	if req.Name != nil {
		n := strings.TrimSpace(*req.Name)
		if n == "" || len(n) > 200 {
			fields = append(fields, FieldError{Field: "name", Message: "must be 1 to 200 characters"})
		}
		org.Name = n
	}
	if req.MaxEnvironments != nil && *req.MaxEnvironments != org.MaxEnvironments {
		org.MaxEnvironments = *req.MaxEnvironments
		details["max_environments"] = org.MaxEnvironments
	}
	if req.MaxStorageMB != nil && *req.MaxStorageMB != org.MaxStorageMB {
		org.MaxStorageMB = *req.MaxStorageMB
		details["max_storage_mb"] = org.MaxStorageMB
	}
	if req.Require2FA != nil {
		org.Require2FA = *req.Require2FA
	}
	if len(fields) > 0 {
		return nil, Invalid(fields...)
	}
	org.UpdatedAt = s.Now()
	err = s.tx(ctx, func(q Queries) error {
		if err := q.UpdateOrganization(ctx, org); err != nil {
			return err
		}
		return s.audit(ctx, q, p, org.ID, "", "organization.updated", org.ID, details)
	})
	if err != nil {
		return nil, err
	}
	return org, nil
}

// DeleteOrganization drops the default environment's database and deletes
// the organization (owner). ECONFLICT while environments other than the
// default exist, or while an operation runs.
func (s *Service) DeleteOrganization(ctx context.Context, p *Principal, ref string) error {
	ctx, a, err := s.orgAccess(ctx, p, ref, ActOrgDelete)
	if err != nil {
		return err
	}
	// First, under the organization's lock (CountEnvironments takes it),
	// check that only the default environment is left and mark it deleting:
	// from then on no reservation can add an environment whose database
	// the cascade below would orphan.
	var def *Environment
	err = s.tx(ctx, func(q Queries) error {
		if _, err := q.CountEnvironments(ctx, a.org.ID); err != nil {
			return err
		}
		envs, _, err := q.ListEnvironments(ctx, EnvironmentFilter{OrgID: a.org.ID}, Page{Limit: MaxPageLimit})
		if err != nil {
			return err
		}
		for _, e := range envs {
			if !e.IsDefault {
				return Errorf(ECONFLICT, "organization still has environments other than default")
			}
			def = e
		}
		if def == nil {
			return nil
		}
		if _, err := q.GetRunningOperation(ctx, def.ID); err == nil {
			return Errorf(ECONFLICT, "an operation is running on the default environment")
		} else if !IsCode(err, ENOTFOUND) {
			return err
		}
		from := def.Status
		def.Status, def.UpdatedAt = StatusDeleting, s.Now()
		return q.SetEnvironmentStatus(ctx, def, from)
	})
	if err != nil {
		return err
	}
	if def != nil {
		db, err := s.Store.GetEnvironmentDatabase(ctx, def.ID)
		if err != nil {
			return err
		}
		if t, ok := s.Targets[db.Target]; ok {
			if err := s.revokeAll(ctx, def, db, t); err != nil {
				return err
			}
			if _, err := t.Driver.DropDatabase(ctx, dropRequest(db)); err != nil {
				return Errorf(EUNAVAILABLE, "cannot drop the default environment's database; retry the deletion").Wrap(err)
			}
		}
	}
	return s.tx(ctx, func(q Queries) error {
		if err := q.DeleteOrganization(ctx, a.org.ID); err != nil {
			return err
		}
		return s.audit(ctx, q, p, a.org.ID, "", "organization.deleted", a.org.ID, map[string]any{"slug": a.org.Slug})
	})
}

// Me describes p: its user, and the organizations it may act in with its role in each.
func (s *Service) Me(ctx context.Context, p *Principal) (*Me, error) {
	if p == nil {
		return nil, Errorf(EUNAUTHORIZED, "authentication required")
	}
	me := &Me{KeyID: p.KeyID, PlatformAdmin: p.PlatformAdmin, EnvironmentID: p.EnvironmentID, MaxScope: p.MaxScope, Organizations: []MeMembership{}}
	if p.UserID != "" {
		u, err := s.Store.GetUser(ctx, p.UserID)
		if err != nil {
			return nil, err
		}
		me.User = u
	}
	if p.OrgID == "" {
		// A platform key: the organizations its user belongs to.
		if p.UserID == "" {
			return me, nil
		}
		// A user's own memberships, in whichever organizations (ADR 0027).
		ms, err := s.Store.ListUserMemberships(WithPlatformScope(ctx), p.UserID)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			org, err := s.Store.GetOrganization(WithOrgScope(ctx, m.OrgID), m.OrgID)
			if err != nil {
				return nil, err
			}
			me.Organizations = append(me.Organizations, MeMembership{ID: org.ID, Slug: org.Slug, Name: org.Name, Role: m.Role})
		}
		return me, nil
	}
	ctx = WithOrgScope(ctx, p.OrgID)
	org, err := s.Store.GetOrganization(ctx, p.OrgID)
	if err != nil {
		return nil, err
	}
	mm := MeMembership{ID: org.ID, Slug: org.Slug, Name: org.Name}
	if p.UserID != "" {
		m, err := s.Store.GetOrgMembership(ctx, org.ID, p.UserID)
		if IsCode(err, ENOTFOUND) {
			// A removed member's key reaches nothing; it names no organization.
			return me, nil
		}
		if err != nil {
			return nil, err
		}
		mm.Role = m.Role
	}
	me.Organizations = append(me.Organizations, mm)
	return me, nil
}

// ListMembers lists the organization's members (owner, admin).
func (s *Service) ListMembers(ctx context.Context, p *Principal, ref string, page Page) ([]*OrgMembership, string, error) {
	if err := page.Check(); err != nil {
		return nil, "", err
	}
	ctx, a, err := s.orgAccess(ctx, p, ref, ActMemberRead)
	if err != nil {
		return nil, "", err
	}
	return s.Store.ListOrgMemberships(ctx, a.org.ID, page)
}

// AddMember gives a user a role in the organization, creating the user for a
// new email (owner, admin). An existing member is ECONFLICT.
func (s *Service) AddMember(ctx context.Context, p *Principal, ref string, req AddMemberRequest) (*OrgMembership, error) {
	if err := checkText(req); err != nil {
		return nil, err
	}
	ctx, a, err := s.orgAccess(ctx, p, ref, ActMemberWrite)
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
	if len(fields) > 0 {
		return nil, Invalid(fields...)
	}
	if req.Role == OrgOwner {
		if err := Authorize(a.subject, ActOwnerWrite, a.resource()); err != nil {
			return nil, err
		}
	}
	var m *OrgMembership
	err = s.tx(ctx, func(q Queries) error {
		u, err := s.ensureUser(ctx, q, email, req.Name)
		if err != nil {
			return err
		}
		if _, err := q.GetOrgMembership(ctx, a.org.ID, u.ID); err == nil {
			return Errorf(ECONFLICT, "user is already a member")
		} else if !IsCode(err, ENOTFOUND) {
			return err
		}
		m = &OrgMembership{OrgID: a.org.ID, UserID: u.ID, Email: u.Email, Name: u.Name, Role: req.Role, CreatedAt: s.Now()}
		if err := q.PutOrgMembership(ctx, m); err != nil {
			return err
		}
		return s.audit(ctx, q, p, a.org.ID, "", "member.added", u.ID, map[string]any{"role": string(req.Role)})
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// ensureUser finds the user with the email or creates one.
func (s *Service) ensureUser(ctx context.Context, q Queries, email, name string) (*User, error) {
	u, err := q.GetUserByEmail(ctx, email)
	if err == nil {
		return u, nil
	}
	if !IsCode(err, ENOTFOUND) {
		return nil, err
	}
	u = &User{ID: s.NewID("usr"), Email: email, Name: strings.TrimSpace(name), CreatedAt: s.Now()}
	if err := q.CreateUser(ctx, u); err != nil {
		return nil, err
	}
	return u, nil
}

// validEmail is a deliberately small check: one @, something on both sides, no spaces.
func validEmail(e string) bool {
	at := strings.IndexByte(e, '@')
	return at > 0 && at == strings.LastIndexByte(e, '@') && at < len(e)-1 && !strings.ContainsAny(e, " \t\r\n") && len(e) <= 254
}

// member resolves a {user} path parameter (id or email) to a membership of the org.
func (s *Service) member(ctx context.Context, q Queries, orgID, ref string) (*OrgMembership, error) {
	if !StorableText(ref) {
		return nil, Errorf(ENOTFOUND, "member not found")
	}
	userID := ref
	if strings.Contains(ref, "@") {
		u, err := q.GetUserByEmail(ctx, strings.ToLower(ref))
		if err != nil {
			return nil, err
		}
		userID = u.ID
	}
	return q.GetOrgMembership(ctx, orgID, userID)
}

// UpdateMember changes a member's role (owner, admin). Demoting the last
// owner is ECONFLICT; only owners change owners.
func (s *Service) UpdateMember(ctx context.Context, p *Principal, ref, userRef string, req UpdateMemberRequest) (*OrgMembership, error) {
	if err := checkText(req); err != nil {
		return nil, err
	}
	ctx, a, err := s.orgAccess(ctx, p, ref, ActMemberWrite)
	if err != nil {
		return nil, err
	}
	if !req.Role.Valid() {
		return nil, Invalid(FieldError{Field: "role", Message: "must be owner, admin or member"})
	}
	var m *OrgMembership
	err = s.tx(ctx, func(q Queries) error {
		var err error
		m, err = s.member(ctx, q, a.org.ID, userRef)
		if err != nil {
			return err
		}
		if m.Role == OrgOwner || req.Role == OrgOwner {
			if err := Authorize(a.subject, ActOwnerWrite, a.resource()); err != nil {
				return err
			}
		}
		if m.Role == OrgOwner && req.Role != OrgOwner {
			if err := s.keepAnOwner(ctx, q, a.org.ID); err != nil {
				return err
			}
		}
		m.Role = req.Role
		if err := q.PutOrgMembership(ctx, m); err != nil {
			return err
		}
		return s.audit(ctx, q, p, a.org.ID, "", "member.updated", m.UserID, map[string]any{"role": string(req.Role)})
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// RemoveMember removes a member and their environment roles (owner, admin).
// Removing the last owner is ECONFLICT.
func (s *Service) RemoveMember(ctx context.Context, p *Principal, ref, userRef string) error {
	ctx, a, err := s.orgAccess(ctx, p, ref, ActMemberWrite)
	if err != nil {
		return err
	}
	return s.tx(ctx, func(q Queries) error {
		m, err := s.member(ctx, q, a.org.ID, userRef)
		if err != nil {
			return err
		}
		if m.Role == OrgOwner {
			if err := Authorize(a.subject, ActOwnerWrite, a.resource()); err != nil {
				return err
			}
			if err := s.keepAnOwner(ctx, q, a.org.ID); err != nil {
				return err
			}
		}
		if err := q.DeleteOrgMembership(ctx, a.org.ID, m.UserID); err != nil {
			return err
		}
		// Their keys of this organization go with them: re-adding the user
		// later must not bring old, possibly leaked, keys back to life.
		revoked, err := s.revokeUserKeys(ctx, q, a.org.ID, m.UserID)
		if err != nil {
			return err
		}
		return s.audit(ctx, q, p, a.org.ID, "", "member.removed", m.UserID, map[string]any{"revoked_keys": revoked})
	})
}

// revokeUserKeys revokes every live key of the user in the organization and
// returns how many.
func (s *Service) revokeUserKeys(ctx context.Context, q Queries, orgID, userID string) (int, error) {
	n := 0
	page := Page{Limit: MaxPageLimit}
	for {
		keys, next, err := q.ListAPIKeys(ctx, orgID, userID, page)
		if err != nil {
			return n, err
		}
		for _, k := range keys {
			if k.RevokedAt != nil {
				continue
			}
			if err := q.RevokeAPIKey(ctx, orgID, k.ID, s.Now()); err != nil {
				return n, err
			}
			n++
		}
		if next == "" {
			return n, nil
		}
		page.Cursor = next
	}
}

// keepAnOwner refuses a change that would leave the organization without an owner.
func (s *Service) keepAnOwner(ctx context.Context, q Queries, orgID string) error {
	n, err := q.CountOrgOwners(ctx, orgID)
	if err != nil {
		return err
	}
	if n <= 1 {
		return Errorf(ECONFLICT, "the organization must keep at least one owner")
	}
	return nil
}

// ListAuditEvents lists the organization's audit events, newest first (owner, admin).
func (s *Service) ListAuditEvents(ctx context.Context, p *Principal, ref string, page Page) ([]*AuditEvent, string, error) {
	if err := page.Check(); err != nil {
		return nil, "", err
	}
	ctx, a, err := s.orgAccess(ctx, p, ref, ActAuditRead)
	if err != nil {
		return nil, "", err
	}
	return s.Store.ListAuditEvents(ctx, a.org.ID, page)
}
