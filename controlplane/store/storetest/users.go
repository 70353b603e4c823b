package storetest

import (
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
)

func testUsers(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	u := &controlplane.User{ID: newID("usr_"), Email: "Ada@Example.com", Name: "Ada", CreatedAt: at(0),
		DisabledAt: ptr(at(time.Minute))}
	must(t, s.CreateUser(ctx, u))
	admin := &controlplane.User{ID: newID("usr_"), Email: "root@example.com", Name: "Root", PlatformAdmin: true, CreatedAt: at(0)}
	must(t, s.CreateUser(ctx, admin))
	admin2 := &controlplane.User{ID: newID("usr_"), Email: "ops@example.com", Name: "Ops", PlatformAdmin: true, CreatedAt: at(0)}
	must(t, s.CreateUser(ctx, admin2))

	got, err := s.GetUser(ctx, u.ID)
	must(t, err)
	same(t, "user by id", u, got)
	got, err = s.GetUserByEmail(ctx, "ada@EXAMPLE.com")
	must(t, err)
	same(t, "user by email in another case", u, got)

	_, err = s.GetUser(ctx, newID("usr_"))
	wantCode(t, err, controlplane.ENOTFOUND)
	_, err = s.GetUserByEmail(ctx, "nobody@example.com")
	wantCode(t, err, controlplane.ENOTFOUND)

	dup := &controlplane.User{ID: newID("usr_"), Email: "ADA@example.COM", Name: "Impostor", CreatedAt: at(0)}
	wantCode(t, s.CreateUser(ctx, dup), controlplane.ECONFLICT)

	admins, err := s.ListPlatformAdmins(ctx)
	must(t, err)
	same(t, "platform admins", []*controlplane.User{admin, admin2}, admins)
}

func testOrgMemberships(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a, b := newOrg(t, s, "a"), newOrg(t, s, "b")
	u1, u2, u3 := newUser(t, s, "u1@example.com"), newUser(t, s, "u2@example.com"), newUser(t, s, "u3@example.com")

	m := &controlplane.OrgMembership{OrgID: a.ID, UserID: u2.ID, Role: controlplane.OrgAdmin, CreatedAt: at(time.Minute)}
	must(t, s.PutOrgMembership(ctx, m))
	newMember(t, s, a, u1, controlplane.OrgOwner)
	newMember(t, s, a, u3, controlplane.OrgMember)
	newMember(t, s, b, u1, controlplane.OrgMember)

	got, err := s.GetOrgMembership(ctx, a.ID, u2.ID)
	must(t, err)
	same(t, "membership", &controlplane.OrgMembership{OrgID: a.ID, UserID: u2.ID, Email: u2.Email, Name: u2.Name,
		Role: controlplane.OrgAdmin, CreatedAt: us(at(time.Minute))}, got)

	// Putting again changes the role and keeps the first created_at.
	again := &controlplane.OrgMembership{OrgID: a.ID, UserID: u2.ID, Role: controlplane.OrgOwner, CreatedAt: at(time.Hour)}
	must(t, s.PutOrgMembership(ctx, again))
	if !again.CreatedAt.Equal(us(at(time.Minute))) {
		t.Errorf("PutOrgMembership on an existing membership reported CreatedAt %v, want the first %v", again.CreatedAt, at(time.Minute))
	}
	got, err = s.GetOrgMembership(ctx, a.ID, u2.ID)
	must(t, err)
	if got.Role != controlplane.OrgOwner || !got.CreatedAt.Equal(us(at(time.Minute))) {
		t.Errorf("membership after update = %+v, want role owner created at %v", got, at(time.Minute))
	}

	owners, err := s.CountOrgOwners(ctx, a.ID)
	must(t, err)
	if owners != 2 {
		t.Errorf("CountOrgOwners(a) = %d, want 2", owners)
	}
	owners, err = s.CountOrgOwners(ctx, b.ID)
	must(t, err)
	if owners != 0 {
		t.Errorf("CountOrgOwners(b) = %d, want 0", owners)
	}

	list, next, err := s.ListOrgMemberships(ctx, a.ID, controlplane.Page{})
	must(t, err)
	same(t, "members of a", sortedIDs(u1.ID, u2.ID, u3.ID), ids(list, memberUser))
	if next != "" {
		t.Errorf("single page has next cursor %q", next)
	}
	for _, m := range list {
		if m.Email == "" || m.Name == "" {
			t.Errorf("listed membership %+v lacks the user's email or name", m)
		}
	}
	mine, err := s.ListUserMemberships(ctx, u1.ID)
	must(t, err)
	same(t, "organizations of u1", sortedIDs(a.ID, b.ID), ids(mine, func(m *controlplane.OrgMembership) string { return m.OrgID }))

	_, err = s.GetOrgMembership(ctx, b.ID, u3.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
	wantCode(t, s.PutOrgMembership(ctx, &controlplane.OrgMembership{OrgID: a.ID, UserID: newID("usr_"),
		Role: controlplane.OrgMember, CreatedAt: at(0)}), controlplane.ENOTFOUND)
	wantCode(t, s.PutOrgMembership(ctx, &controlplane.OrgMembership{OrgID: newID("org_"), UserID: u3.ID,
		Role: controlplane.OrgMember, CreatedAt: at(0)}), controlplane.ENOTFOUND)
	wantCode(t, s.PutOrgMembership(ctx, &controlplane.OrgMembership{OrgID: b.ID, UserID: u3.ID,
		Role: "emperor", CreatedAt: at(0)}), controlplane.EINVALID)

	must(t, s.DeleteOrgMembership(ctx, a.ID, u2.ID))
	_, err = s.GetOrgMembership(ctx, a.ID, u2.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
	wantCode(t, s.DeleteOrgMembership(ctx, a.ID, u2.ID), controlplane.ENOTFOUND)
	owners, err = s.CountOrgOwners(ctx, a.ID)
	must(t, err)
	if owners != 1 {
		t.Errorf("CountOrgOwners(a) after removing an owner = %d, want 1", owners)
	}
}

func testDeleteOrgMembershipRemovesEnvironmentRoles(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a, b := newOrg(t, s, "a"), newOrg(t, s, "b")
	u, other := newUser(t, s, "u@example.com"), newUser(t, s, "other@example.com")
	newMember(t, s, a, u, controlplane.OrgMember)
	newMember(t, s, b, u, controlplane.OrgMember)
	newMember(t, s, a, other, controlplane.OrgMember)
	envA, envB := newEnv(t, s, a, "dev"), newEnv(t, s, b, "dev")
	for _, m := range []*controlplane.EnvironmentMember{
		{ID: newID("em_"), EnvironmentID: envA.ID, OrgID: a.ID, UserID: u.ID, Role: controlplane.EnvMaker, CreatedAt: at(0)},
		{ID: newID("em_"), EnvironmentID: envB.ID, OrgID: b.ID, UserID: u.ID, Role: controlplane.EnvUser, CreatedAt: at(0)},
		{ID: newID("em_"), EnvironmentID: envA.ID, OrgID: a.ID, UserID: other.ID, Role: controlplane.EnvViewer, CreatedAt: at(0)},
	} {
		must(t, s.PutEnvironmentMember(ctx, m))
	}

	must(t, s.DeleteOrgMembership(ctx, a.ID, u.ID))

	_, err := s.GetEnvironmentMember(ctx, envA.ID, u.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
	roles, err := s.ListUserEnvironmentRoles(ctx, a.ID, u.ID)
	must(t, err)
	if len(roles) != 0 {
		t.Errorf("environment roles in a after leaving it = %v, want none", roles)
	}
	roles, err = s.ListUserEnvironmentRoles(ctx, b.ID, u.ID)
	must(t, err)
	same(t, "environment roles in b", map[string]controlplane.EnvRole{envB.ID: controlplane.EnvUser}, roles)
	_, err = s.GetEnvironmentMember(ctx, envA.ID, other.ID)
	must(t, err)
}
