package storetest

import (
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
)

func testOrganizations(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	o := &controlplane.Organization{ID: newID("org_"), Slug: "acme", Name: "Acme", Require2FA: true, MaxEnvironments: 7,
		MaxStorageMB: 512, CreatedAt: at(0), UpdatedAt: at(time.Second)}
	must(t, s.CreateOrganization(ctx, o))
	if want := at(0).Truncate(time.Microsecond); !o.CreatedAt.Equal(want) || o.CreatedAt.Location() != time.UTC {
		t.Errorf("CreateOrganization left CreatedAt %v, want it truncated to microseconds in UTC: %v", o.CreatedAt, want.UTC())
	}

	byID, err := s.GetOrganization(ctx, o.ID)
	must(t, err)
	same(t, "organization by id", o, byID)
	bySlug, err := s.GetOrganization(ctx, "acme")
	must(t, err)
	same(t, "organization by slug", o, bySlug)

	_, err = s.GetOrganization(ctx, "nope")
	wantCode(t, err, controlplane.ENOTFOUND)

	dup := &controlplane.Organization{ID: newID("org_"), Slug: "acme", Name: "Other", CreatedAt: at(0), UpdatedAt: at(0)}
	wantCode(t, s.CreateOrganization(ctx, dup), controlplane.ECONFLICT)
	sameID := &controlplane.Organization{ID: o.ID, Slug: "other", Name: "Other", CreatedAt: at(0), UpdatedAt: at(0)}
	wantCode(t, s.CreateOrganization(ctx, sameID), controlplane.ECONFLICT)

	// Update saves name, require_2fa, the quotas and updated_at, not the slug.
	o.Name, o.Require2FA, o.MaxEnvironments, o.MaxStorageMB, o.UpdatedAt = "Acme Corp", false, 3, 2048, at(time.Hour)
	o.Slug = "renamed"
	must(t, s.UpdateOrganization(ctx, o))
	got, err := s.GetOrganization(ctx, o.ID)
	must(t, err)
	o.Slug = "acme"
	same(t, "updated organization", o, got)
	wantCode(t, s.UpdateOrganization(ctx, &controlplane.Organization{ID: newID("org_"), Name: "x"}), controlplane.ENOTFOUND)

	b := newOrg(t, s, "beta")
	c := newOrg(t, s, "gamma")
	all, next, err := s.ListOrganizations(ctx, nil, controlplane.Page{})
	must(t, err)
	same(t, "all organizations", []string{o.ID, b.ID, c.ID}, ids(all, orgID))
	if next != "" {
		t.Errorf("single page has next cursor %q", next)
	}
	same(t, "listed organization", o, all[0])
	some, _, err := s.ListOrganizations(ctx, []string{c.ID, o.ID, newID("org_")}, controlplane.Page{})
	must(t, err)
	same(t, "organizations by ids", []string{o.ID, c.ID}, ids(some, orgID))
	none, _, err := s.ListOrganizations(ctx, []string{}, controlplane.Page{})
	must(t, err)
	if len(none) != 0 {
		t.Errorf("empty ids listed %d organizations, want none", len(none))
	}
}

// testDeleteOrganization checks that deleting an organization removes
// everything it owns, keeps its audit events, and touches no other organization.
func testDeleteOrganization(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	type owned struct {
		org  *controlplane.Organization
		env  *controlplane.Environment
		db   *controlplane.Database
		cred *controlplane.Credential
		key  *controlplane.APIKey
		op   *controlplane.Operation
		evt  *controlplane.AuditEvent
	}
	u := newUser(t, s, "shared@example.com")
	populate := func(slug string) owned {
		org := newOrg(t, s, slug)
		newMember(t, s, org, u, controlplane.OrgOwner)
		env := newEnv(t, s, org, "dev")
		db := newDatabase(t, s, env, "local")
		cred := newCredential(t, s, db, nil)
		key := &controlplane.APIKey{ID: newID("key_"), OrgID: org.ID, UserID: u.ID, Name: "k", Prefix: "ep_",
			Hash: newID("hash_"), CreatedAt: at(0)}
		must(t, s.CreateAPIKey(ctx, key))
		app := &controlplane.APIKey{ID: newID("key_"), OrgID: org.ID, EnvironmentID: env.ID, MaxScope: "readonly",
			Name: "app", Prefix: "ep_", Hash: newID("hash_"), CreatedAt: at(0)}
		must(t, s.CreateAPIKey(ctx, app))
		must(t, s.PutEnvironmentMember(ctx, &controlplane.EnvironmentMember{ID: newID("em_"), EnvironmentID: env.ID,
			OrgID: org.ID, UserID: u.ID, Role: controlplane.EnvAdmin, CreatedAt: at(0)}))
		op := newOperation(t, s, env, nil)
		evt := newEvent(t, s, org.ID)
		return owned{org, env, db, cred, key, op, evt}
	}
	a := populate("doomed")
	b := populate("survivor")

	must(t, s.DeleteOrganization(ctx, a.org.ID))

	_, err := s.GetOrganization(ctx, a.org.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
	_, err = s.GetOrgMembership(ctx, a.org.ID, u.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
	_, err = s.GetEnvironment(ctx, a.org.ID, a.env.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
	_, err = s.OrgOf(ctx, controlplane.KindEnvironment, a.env.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
	_, err = s.GetDatabase(ctx, a.db.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
	_, err = s.GetCredential(ctx, a.db.ID, a.cred.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
	_, err = s.GetAPIKeyByHash(ctx, a.key.Hash)
	wantCode(t, err, controlplane.ENOTFOUND)
	_, err = s.GetEnvironmentMember(ctx, a.env.ID, u.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
	_, err = s.GetOperation(ctx, a.org.ID, a.op.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
	_, err = s.OrgOf(ctx, controlplane.KindOperation, a.op.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
	counts, err := s.CountCredentialsByKey(ctx)
	must(t, err)
	same(t, "credentials left by key", map[string]int{"local:1": 1}, counts)

	events, _, err := s.ListAuditEvents(ctx, a.org.ID, controlplane.Page{})
	must(t, err)
	same(t, "audit events of the deleted organization", []string{a.evt.ID}, ids(events, eventID))

	// The user and the other organization are untouched.
	_, err = s.GetUser(ctx, u.ID)
	must(t, err)
	ms, err := s.ListUserMemberships(ctx, u.ID)
	must(t, err)
	if len(ms) != 1 || ms[0].OrgID != b.org.ID {
		t.Errorf("user memberships after delete = %v, want only %s", ms, b.org.ID)
	}
	_, err = s.GetEnvironment(ctx, b.org.ID, b.env.ID)
	must(t, err)
	_, err = s.GetCredential(ctx, b.db.ID, b.cred.ID)
	must(t, err)
	_, err = s.GetAPIKey(ctx, b.org.ID, b.key.ID)
	must(t, err)
	_, err = s.GetEnvironmentMember(ctx, b.env.ID, u.ID)
	must(t, err)
	_, err = s.GetOperation(ctx, b.org.ID, b.op.ID)
	must(t, err)

	wantCode(t, s.DeleteOrganization(ctx, a.org.ID), controlplane.ENOTFOUND)
	// The slug is free again.
	newOrg(t, s, "doomed")
}
