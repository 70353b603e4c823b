package storetest

import (
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
)

func testEnvironmentMembers(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a, b := newOrg(t, s, "a"), newOrg(t, s, "b")
	u1, u2, outsider := newUser(t, s, "u1@example.com"), newUser(t, s, "u2@example.com"), newUser(t, s, "out@example.com")
	newMember(t, s, a, u1, controlplane.OrgMember)
	newMember(t, s, a, u2, controlplane.OrgMember)
	newMember(t, s, b, outsider, controlplane.OrgMember)
	e1, e2, eB := newEnv(t, s, a, "one"), newEnv(t, s, a, "two"), newEnv(t, s, b, "one")

	m := &controlplane.EnvironmentMember{ID: newID("em_"), EnvironmentID: e1.ID, OrgID: a.ID, UserID: u1.ID,
		Role: controlplane.EnvAdmin, CreatedAt: at(time.Minute)}
	must(t, s.PutEnvironmentMember(ctx, m))
	got, err := s.GetEnvironmentMember(ctx, e1.ID, u1.ID)
	must(t, err)
	want := *m
	want.Email = u1.Email
	same(t, "environment member", &want, got)

	// Putting again changes the role and keeps the first id and created_at.
	again := &controlplane.EnvironmentMember{ID: newID("em_"), EnvironmentID: e1.ID, OrgID: a.ID, UserID: u1.ID,
		Role: controlplane.EnvViewer, CreatedAt: at(time.Hour)}
	must(t, s.PutEnvironmentMember(ctx, again))
	if again.ID != m.ID || !again.CreatedAt.Equal(m.CreatedAt) {
		t.Errorf("PutEnvironmentMember on an existing role reported id %s created %v, want the first %s %v",
			again.ID, again.CreatedAt, m.ID, m.CreatedAt)
	}
	got, err = s.GetEnvironmentMember(ctx, e1.ID, u1.ID)
	must(t, err)
	want.Role = controlplane.EnvViewer
	same(t, "environment member after update", &want, got)

	m2 := &controlplane.EnvironmentMember{ID: newID("em_"), EnvironmentID: e1.ID, OrgID: a.ID, UserID: u2.ID,
		Role: controlplane.EnvUser, CreatedAt: at(0)}
	must(t, s.PutEnvironmentMember(ctx, m2))
	must(t, s.PutEnvironmentMember(ctx, &controlplane.EnvironmentMember{ID: newID("em_"), EnvironmentID: e2.ID, OrgID: a.ID,
		UserID: u1.ID, Role: controlplane.EnvMaker, CreatedAt: at(0)}))

	list, err := s.ListEnvironmentMembers(ctx, e1.ID)
	must(t, err)
	same(t, "members of e1", []string{m.ID, m2.ID}, ids(list, envMemberID))
	same(t, "listed member", &want, list[0])

	roles, err := s.ListUserEnvironmentRoles(ctx, a.ID, u1.ID)
	must(t, err)
	same(t, "roles of u1", map[string]controlplane.EnvRole{e1.ID: controlplane.EnvViewer, e2.ID: controlplane.EnvMaker}, roles)
	deleteEnv(t, s, e2)
	roles, err = s.ListUserEnvironmentRoles(ctx, a.ID, u1.ID)
	must(t, err)
	same(t, "roles of u1 without deleted environments", map[string]controlplane.EnvRole{e1.ID: controlplane.EnvViewer}, roles)
	roles, err = s.ListUserEnvironmentRoles(ctx, b.ID, u1.ID)
	must(t, err)
	if len(roles) != 0 {
		t.Errorf("roles of u1 in b = %v, want none", roles)
	}

	// A role needs the organization's environment and the user's membership in it.
	wantCode(t, s.PutEnvironmentMember(ctx, &controlplane.EnvironmentMember{ID: newID("em_"), EnvironmentID: e1.ID, OrgID: a.ID,
		UserID: outsider.ID, Role: controlplane.EnvUser, CreatedAt: at(0)}), controlplane.ENOTFOUND)
	wantCode(t, s.PutEnvironmentMember(ctx, &controlplane.EnvironmentMember{ID: newID("em_"), EnvironmentID: eB.ID, OrgID: a.ID,
		UserID: u1.ID, Role: controlplane.EnvUser, CreatedAt: at(0)}), controlplane.ENOTFOUND)
	wantCode(t, s.PutEnvironmentMember(ctx, &controlplane.EnvironmentMember{ID: newID("em_"), EnvironmentID: e1.ID, OrgID: a.ID,
		UserID: u2.ID, Role: "env_god", CreatedAt: at(0)}), controlplane.EINVALID)

	must(t, s.DeleteEnvironmentMember(ctx, e1.ID, u2.ID))
	_, err = s.GetEnvironmentMember(ctx, e1.ID, u2.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
	wantCode(t, s.DeleteEnvironmentMember(ctx, e1.ID, u2.ID), controlplane.ENOTFOUND)
	_, err = s.GetEnvironmentMember(ctx, e1.ID, u1.ID)
	must(t, err)
}
