package storetest

import (
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
)

func testEnvironments(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a, b := newOrg(t, s, "a"), newOrg(t, s, "b")
	def := &controlplane.Environment{ID: newID("env_"), OrgID: a.ID, Slug: "default", Name: "Default",
		Type: controlplane.TypeDefault, IsDefault: true, Status: controlplane.StatusProvisioning, CreatedAt: at(0), UpdatedAt: at(0)}
	must(t, s.CreateEnvironment(ctx, def))
	e := &controlplane.Environment{ID: newID("env_"), OrgID: a.ID, Slug: "prod", Name: "Production", Description: "live traffic",
		Type: controlplane.TypeProduction, Region: "eu-west", Target: "pg-1", IsProtected: true,
		Status: controlplane.StatusActive, CreatedBy: "usr_x", Metadata: map[string]string{"team": "core", "tier": "1"},
		CreatedAt: at(0), UpdatedAt: at(time.Second)}
	must(t, s.CreateEnvironment(ctx, e))

	byID, err := s.GetEnvironment(ctx, a.ID, e.ID)
	must(t, err)
	same(t, "environment by id", e, byID)
	bySlug, err := s.GetEnvironment(ctx, a.ID, "prod")
	must(t, err)
	same(t, "environment by slug", e, bySlug)

	// Another organization's environment does not exist for a.
	_, err = s.GetEnvironment(ctx, b.ID, e.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
	_, err = s.GetEnvironment(ctx, b.ID, "prod")
	wantCode(t, err, controlplane.ENOTFOUND)
	_, err = s.GetEnvironment(ctx, a.ID, "staging")
	wantCode(t, err, controlplane.ENOTFOUND)

	wantCode(t, s.CreateEnvironment(ctx, &controlplane.Environment{ID: newID("env_"), OrgID: a.ID, Slug: "prod", Name: "again",
		Type: controlplane.TypeStaging, Status: controlplane.StatusActive, CreatedAt: at(0), UpdatedAt: at(0)}), controlplane.ECONFLICT)
	wantCode(t, s.CreateEnvironment(ctx, &controlplane.Environment{ID: newID("env_"), OrgID: a.ID, Slug: "default2", Name: "second default",
		Type: controlplane.TypeDefault, IsDefault: true, Status: controlplane.StatusActive, CreatedAt: at(0), UpdatedAt: at(0)}), controlplane.ECONFLICT)
	wantCode(t, s.CreateEnvironment(ctx, &controlplane.Environment{ID: newID("env_"), OrgID: newID("org_"), Slug: "x", Name: "orphan",
		Type: controlplane.TypeTest, Status: controlplane.StatusActive, CreatedAt: at(0), UpdatedAt: at(0)}), controlplane.ENOTFOUND)
	bProd := newEnv(t, s, b, "prod")

	// Update saves the settings only: not the slug, not the status.
	e.Name, e.Description, e.IsProtected = "Prod", "", false
	e.Metadata, e.UpdatedAt = nil, at(time.Hour)
	e.Slug, e.Status, e.Error = "renamed", controlplane.StatusFailed, "boom"
	must(t, s.UpdateEnvironment(ctx, e))
	got, err := s.GetEnvironment(ctx, a.ID, e.ID)
	must(t, err)
	e.Slug, e.Status, e.Error = "prod", controlplane.StatusActive, ""
	same(t, "updated environment", e, got)
	wrongOrg := *e
	wrongOrg.OrgID = b.ID
	wantCode(t, s.UpdateEnvironment(ctx, &wrongOrg), controlplane.ENOTFOUND)
	wantCode(t, s.SetEnvironmentStatus(ctx, &wrongOrg), controlplane.ENOTFOUND)
	absent := *e
	absent.ID = newID("env_")
	wantCode(t, s.UpdateEnvironment(ctx, &absent), controlplane.ENOTFOUND)
	wantCode(t, s.SetEnvironmentStatus(ctx, &absent, controlplane.StatusActive), controlplane.ENOTFOUND)

	// SetEnvironmentStatus changes the status only from the statuses given.
	moved := *e
	moved.Status, moved.Error, moved.UpdatedAt = controlplane.StatusFailed, "boom", at(2*time.Hour)
	wantCode(t, s.SetEnvironmentStatus(ctx, &moved, controlplane.StatusProvisioning, controlplane.StatusDeleting), controlplane.ECONFLICT)
	got, err = s.GetEnvironment(ctx, a.ID, e.ID)
	must(t, err)
	same(t, "environment after a refused status change", e, got)
	must(t, s.SetEnvironmentStatus(ctx, &moved, controlplane.StatusProvisioning, controlplane.StatusActive))
	got, err = s.GetEnvironment(ctx, a.ID, e.ID)
	must(t, err)
	same(t, "environment after a status change", &moved, got)
	e = &moved

	gone := newEnv(t, s, a, "gone")
	deleteEnv(t, s, gone)
	_, err = s.GetEnvironment(ctx, a.ID, gone.ID)
	wantCode(t, err, controlplane.ENOTFOUND)

	live, next, err := s.ListEnvironments(ctx, controlplane.EnvironmentFilter{OrgID: a.ID}, controlplane.Page{})
	must(t, err)
	same(t, "live environments of a", []string{def.ID, e.ID}, ids(live, envID))
	if next != "" {
		t.Errorf("single page has next cursor %q", next)
	}
	same(t, "listed environment", e, live[1])
	withDeleted, _, err := s.ListEnvironments(ctx, controlplane.EnvironmentFilter{OrgID: a.ID, IncludeDeleted: true}, controlplane.Page{})
	must(t, err)
	same(t, "environments of a with tombstones", []string{def.ID, e.ID, gone.ID}, ids(withDeleted, envID))
	same(t, "listed tombstone", gone, withDeleted[2])
	picked, _, err := s.ListEnvironments(ctx, controlplane.EnvironmentFilter{OrgID: a.ID, IDs: []string{e.ID, bProd.ID, gone.ID}}, controlplane.Page{})
	must(t, err)
	same(t, "environments of a by ids", []string{e.ID}, ids(picked, envID))
	none, _, err := s.ListEnvironments(ctx, controlplane.EnvironmentFilter{OrgID: a.ID, IDs: []string{}}, controlplane.Page{})
	must(t, err)
	if len(none) != 0 {
		t.Errorf("empty ids listed %d environments, want none", len(none))
	}
	_, _, err = s.ListEnvironments(ctx, controlplane.EnvironmentFilter{}, controlplane.Page{})
	wantCode(t, err, controlplane.EINVALID)

	n, err := s.CountEnvironments(ctx, a.ID)
	must(t, err)
	if n != 2 {
		t.Errorf("CountEnvironments(a) = %d, want 2 (tombstones excluded)", n)
	}

	org, err := s.OrgOf(ctx, controlplane.KindEnvironment, bProd.ID)
	must(t, err)
	if org != b.ID {
		t.Errorf("OrgOf(environment) = %q, want %q", org, b.ID)
	}
	_, err = s.OrgOf(ctx, controlplane.KindEnvironment, gone.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
	_, err = s.OrgOf(ctx, controlplane.KindEnvironment, newID("env_"))
	wantCode(t, err, controlplane.ENOTFOUND)
}

// testEnvironmentSlugReuse checks that a deleted environment frees its slug
// and that the slug then names the new environment.
func testEnvironmentSlugReuse(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a := newOrg(t, s, "a")
	old := newEnv(t, s, a, "preview-1")
	deleteEnv(t, s, old)
	fresh := newEnv(t, s, a, "preview-1")

	got, err := s.GetEnvironment(ctx, a.ID, "preview-1")
	must(t, err)
	if got.ID != fresh.ID {
		t.Errorf("slug names %s, want the new environment %s", got.ID, fresh.ID)
	}
	// Un-deleting the tombstone would give the slug to two live environments.
	old.DeletedAt, old.Status = nil, controlplane.StatusActive
	wantCode(t, s.SetEnvironmentStatus(ctx, old), controlplane.ECONFLICT)
	n, err := s.CountEnvironments(ctx, a.ID)
	must(t, err)
	if n != 1 {
		t.Errorf("CountEnvironments = %d, want 1", n)
	}
}
