package controlplane_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/drivers"
)

// The resources the tests touch: environment envA of organization orgA. The
// app key "on another environment" is bound to envB of the same organization.
const (
	orgA   = "org-a"
	orgB   = "org-b"
	envA   = "env-a"
	envB   = "env-b"
	member = "u-member"
)

// subjectKind is one kind of caller, in the column order of the grid below.
type subjectKind struct {
	name    string
	subject controlplane.Subject
}

func user(id, org string, platform bool, orgRole controlplane.OrgRole, envRole controlplane.EnvRole) controlplane.Subject {
	return controlplane.Subject{
		Principal: &controlplane.Principal{KeyID: "k-" + id, UserID: id, PlatformAdmin: platform, OrgID: org},
		OrgRole:   orgRole,
		EnvRole:   envRole,
	}
}

func app(env string, max drivers.Scope) controlplane.Subject {
	return controlplane.Subject{Principal: &controlplane.Principal{KeyID: "k-app", OrgID: orgA, EnvironmentID: env, MaxScope: max}}
}

// subjectKinds are the grid's columns. Roles are what the service would look
// up for orgA/envA, except for the other org's key, which is handed the
// strongest roles to prove that the key's organization binding wins.
func subjectKinds() []subjectKind {
	return []subjectKind{
		{"platform admin", user("u-platform", "", true, "", "")},
		{"owner", user("u-owner", orgA, false, controlplane.OrgOwner, "")},
		{"admin", user("u-admin", orgA, false, controlplane.OrgAdmin, "")},
		{"member env_admin", user(member, orgA, false, controlplane.OrgMember, controlplane.EnvAdmin)},
		{"member env_maker", user(member, orgA, false, controlplane.OrgMember, controlplane.EnvMaker)},
		{"member env_user", user(member, orgA, false, controlplane.OrgMember, controlplane.EnvUser)},
		{"member env_viewer", user(member, orgA, false, controlplane.OrgMember, controlplane.EnvViewer)},
		{"member no env role", user(member, orgA, false, controlplane.OrgMember, "")},
		{"non-member", user("u-outsider", orgA, false, "", "")},
		{"user key of another org", user(member, orgB, false, controlplane.OrgOwner, controlplane.EnvAdmin)},
		{"app key admin", app(envA, drivers.ScopeAdmin)},
		{"app key readwrite", app(envA, drivers.ScopeReadWrite)},
		{"app key readonly", app(envA, drivers.ScopeReadOnly)},
		{"app key on another env", app(envB, drivers.ScopeAdmin)},
	}
}

// orgRes is orgA itself; envRes is envA.
func orgRes() controlplane.Resource { return controlplane.Resource{OrgID: orgA} }
func envRes() controlplane.Resource { return controlplane.Resource{OrgID: orgA, EnvironmentID: envA} }

// TestAuthorizeGrid enumerates every action against every kind of subject.
// The expectations are written out by hand from DESIGN §9 and the
// authorization brief, one letter per column of subjectKinds:
// Y allowed, F EFORBIDDEN, N ENOTFOUND.
func TestAuthorizeGrid(t *testing.T) {
	grid := []struct {
		want   string
		name   string
		action controlplane.Action
		res    controlplane.Resource
	}{
		// PA OW AD EA EM EU EV MN NM XO AA AW AR AX
		{" Y  F  F  F  F  F  F  F  F  F  F  F  F  F", "org create", controlplane.ActOrgCreate, controlplane.Resource{}},
		{" Y  F  F  F  F  F  F  F  F  F  F  F  F  F", "keyring manage", controlplane.ActKeyringManage, controlplane.Resource{}},
		{" Y  F  F  F  F  F  F  F  F  F  F  F  F  F", "targets inspect", controlplane.ActTargetsInspect, controlplane.Resource{}},
		{" Y  F  F  F  F  F  F  F  F  F  F  F  F  F", "org quota", controlplane.ActOrgQuota, orgRes()},
		{" Y  Y  Y  Y  Y  Y  Y  Y  N  N  Y  Y  Y  Y", "org read", controlplane.ActOrgRead, orgRes()},
		{" Y  Y  F  F  F  F  F  F  N  N  F  F  F  F", "org update", controlplane.ActOrgUpdate, orgRes()},
		{" Y  Y  F  F  F  F  F  F  N  N  F  F  F  F", "org delete", controlplane.ActOrgDelete, orgRes()},
		{" Y  Y  F  F  F  F  F  F  N  N  F  F  F  F", "owner write", controlplane.ActOwnerWrite, orgRes()},
		{" Y  Y  Y  F  F  F  F  F  N  N  F  F  F  F", "member read", controlplane.ActMemberRead, orgRes()},
		{" Y  Y  Y  F  F  F  F  F  N  N  F  F  F  F", "member write", controlplane.ActMemberWrite, orgRes()},
		{" Y  Y  Y  Y  Y  Y  Y  Y  N  N  F  F  F  F", "own api key read", controlplane.ActAPIKeyRead, ownKey(member)},
		{" Y  Y  Y  Y  Y  Y  Y  Y  N  N  F  F  F  F", "own api key write", controlplane.ActAPIKeyWrite, ownKey(member)},
		{" Y  Y  Y  F  F  F  F  F  N  N  F  F  F  F", "other's api key read", controlplane.ActAPIKeyRead, ownKey("u-x")},
		{" Y  Y  Y  F  F  F  F  F  N  N  F  F  F  F", "other's api key write", controlplane.ActAPIKeyWrite, ownKey("u-x")},
		{" Y  Y  Y  F  F  F  F  F  N  N  F  F  F  F", "app's api key read", controlplane.ActAPIKeyRead, ownKey("")},
		{" Y  Y  Y  F  F  F  F  F  N  N  F  F  F  F", "app's api key write", controlplane.ActAPIKeyWrite, ownKey("")},
		{" Y  Y  Y  F  F  F  F  F  N  N  F  F  F  F", "audit read", controlplane.ActAuditRead, orgRes()},
		{" Y  Y  Y  F  F  F  F  F  N  N  F  F  F  F", "env create", controlplane.ActEnvCreate, orgRes()},
		{" Y  Y  Y  Y  Y  Y  Y  N  N  N  Y  Y  Y  N", "env read", controlplane.ActEnvRead, envRes()},
		{" Y  Y  Y  Y  F  F  F  N  N  N  F  F  F  N", "env update", controlplane.ActEnvUpdate, envRes()},
		{" Y  Y  Y  F  F  F  F  N  N  N  F  F  F  N", "env delete", controlplane.ActEnvDelete, envRes()},
		{" Y  Y  Y  F  F  F  F  N  N  N  F  F  F  N", "env suspend", controlplane.ActEnvSuspend, envRes()},
		{" Y  Y  Y  Y  F  F  F  N  N  N  Y  F  F  N", "connection admin", controlplane.ActConnAdmin, envRes()},
		{" Y  Y  Y  Y  Y  Y  F  N  N  N  Y  Y  F  N", "connection readwrite", controlplane.ActConnReadWrite, envRes()},
		{" Y  Y  Y  Y  Y  Y  Y  N  N  N  Y  Y  Y  N", "connection readonly", controlplane.ActConnReadOnly, envRes()},
		{" Y  Y  Y  Y  F  F  F  N  N  N  F  F  F  N", "credential read", controlplane.ActCredRead, envRes()},
		{" Y  Y  Y  Y  F  F  F  N  N  N  F  F  F  N", "credential rotate", controlplane.ActCredRotate, envRes()},
		{" Y  Y  Y  Y  F  F  F  N  N  N  F  F  F  N", "env member read", controlplane.ActEnvMemberRead, envRes()},
		{" Y  Y  Y  Y  F  F  F  N  N  N  F  F  F  N", "env member write", controlplane.ActEnvMemberWrite, envRes()},
		{" Y  Y  Y  Y  Y  Y  Y  N  N  N  F  F  F  N", "schema read", controlplane.ActSchemaRead, envRes()},
		{" Y  Y  Y  Y  Y  F  F  N  N  N  F  F  F  N", "schema migrate", controlplane.ActSchemaMigrate, envRes()},
		{" Y  Y  Y  Y  Y  Y  Y  N  N  N  Y  Y  Y  N", "operation read", controlplane.ActOperationRead, envRes()},
		{" Y  Y  Y  Y  Y  Y  Y  N  N  N  F  F  F  N", "usage read", controlplane.ActUsageRead, envRes()},
		{" Y  Y  Y  Y  Y  Y  Y  Y  N  N  F  F  F  F", "org usage read", controlplane.ActOrgUsageRead, orgRes()},
		{" Y  Y  Y  F  F  F  F  N  N  N  F  F  F  N", "env limit", controlplane.ActEnvLimit, envRes()},
		{" Y  Y  Y  F  F  F  F  N  N  N  F  F  F  N", "env reset", controlplane.ActEnvReset, envRes()},
		{" Y  Y  Y  F  F  F  F  F  N  N  F  F  F  F", "rollout", controlplane.ActRollout, orgRes()},
		{" Y  F  F  F  F  F  F  F  F  F  F  F  F  F", "platform rollout", controlplane.ActPlatformRollout, controlplane.Resource{}},
		{" F  F  F  F  F  F  F  F  F  F  F  F  F  F", "unknown action", controlplane.Action("org.nuke"), envRes()},
	}
	kinds := subjectKinds()
	covered := map[controlplane.Action]bool{}
	for _, row := range grid {
		covered[row.action] = true
		want := strings.Fields(row.want)
		if len(want) != len(kinds) {
			t.Fatalf("%s: grid row has %d columns, want %d", row.name, len(want), len(kinds))
		}
		for i, k := range kinds {
			t.Run(row.name+"/"+k.name, func(t *testing.T) {
				err := controlplane.Authorize(k.subject, row.action, row.res)
				assertOutcome(t, err, want[i], row.res)
			})
		}
	}
	for _, a := range allActions() {
		if !covered[a] {
			t.Errorf("action %q has no row in the grid", a)
		}
	}
}

func ownKey(owner string) controlplane.Resource {
	return controlplane.Resource{OrgID: orgA, OwnerUserID: owner}
}

// allActions lists every declared action, so the grid cannot forget one.
func allActions() []controlplane.Action {
	return []controlplane.Action{
		controlplane.ActOrgCreate, controlplane.ActOrgRead, controlplane.ActOrgUpdate, controlplane.ActOrgDelete,
		controlplane.ActMemberRead, controlplane.ActMemberWrite, controlplane.ActAPIKeyRead, controlplane.ActAPIKeyWrite,
		controlplane.ActAuditRead, controlplane.ActEnvCreate, controlplane.ActEnvRead, controlplane.ActEnvUpdate,
		controlplane.ActEnvDelete, controlplane.ActEnvSuspend, controlplane.ActConnAdmin, controlplane.ActConnReadWrite,
		controlplane.ActConnReadOnly, controlplane.ActCredRead, controlplane.ActCredRotate, controlplane.ActEnvMemberRead,
		controlplane.ActEnvMemberWrite, controlplane.ActSchemaRead, controlplane.ActSchemaMigrate, controlplane.ActOperationRead,
		controlplane.ActOwnerWrite, controlplane.ActKeyringManage, controlplane.ActTargetsInspect, controlplane.ActOrgQuota,
		controlplane.ActUsageRead, controlplane.ActOrgUsageRead, controlplane.ActEnvLimit, controlplane.ActEnvReset,
		controlplane.ActRollout, controlplane.ActPlatformRollout,
	}
}

// assertOutcome checks err against Y, F or N; a denial must be an *Error
// whose message names none of the resource's ids.
func assertOutcome(tb testing.TB, err error, want string, res controlplane.Resource) {
	tb.Helper()
	if want == "Y" {
		if err != nil {
			tb.Fatalf("got %v, want allowed", err)
		}
		return
	}
	code := map[string]string{"F": controlplane.EFORBIDDEN, "N": controlplane.ENOTFOUND}[want]
	if code == "" {
		tb.Fatalf("bad grid letter %q", want)
	}
	var e *controlplane.Error
	if !errors.As(err, &e) {
		tb.Fatalf("got %v, want an *Error with %s", err, code)
	}
	if e.Code != code {
		tb.Fatalf("got %s (%q), want %s", e.Code, e.Message, code)
	}
	for _, id := range []string{res.OrgID, res.EnvironmentID, res.OwnerUserID, orgB, envB} {
		if id != "" && strings.Contains(err.Error(), id) {
			tb.Fatalf("message %q names %q", err.Error(), id)
		}
	}
}

// TestAuthorizeEdges covers the rules that the grid's realistic subjects do not reach.
func TestAuthorizeEdges(t *testing.T) {
	appWithRoles := app(envA, drivers.ScopeReadOnly)
	appWithRoles.OrgRole, appWithRoles.EnvRole = controlplane.OrgOwner, controlplane.EnvAdmin
	platformApp := app(envA, drivers.ScopeReadOnly)
	platformApp.Principal.PlatformAdmin = true
	unboundApp := app(envA, drivers.ScopeAdmin)
	unboundApp.Principal.OrgID = ""
	noScopeApp := app(envA, "")

	tests := []struct {
		name    string
		subject controlplane.Subject
		action  controlplane.Action
		res     controlplane.Resource
		want    string
	}{
		{"nil principal", controlplane.Subject{OrgRole: controlplane.OrgOwner}, controlplane.ActOrgRead, orgRes(), "F"},
		{"resource without org", user("u-platform", "", true, "", ""), controlplane.ActOrgRead, controlplane.Resource{}, "N"},
		{"env action without env", user("u-owner", orgA, false, controlplane.OrgOwner, ""), controlplane.ActEnvRead, orgRes(), "N"},
		{"platform admin in another org", user("u-platform", "", true, "", ""), controlplane.ActOrgDelete, controlplane.Resource{OrgID: orgB}, "Y"},
		{"platform admin's org-bound key elsewhere", user("u-platform", orgB, true, "", ""), controlplane.ActOrgRead, orgRes(), "N"},
		{"platform admin's org-bound key at home", user("u-platform", orgA, true, "", ""), controlplane.ActOrgDelete, orgRes(), "Y"},
		{"platform admin's org-bound key creates org", user("u-platform", orgB, true, "", ""), controlplane.ActOrgCreate, controlplane.Resource{}, "Y"},
		{"platform admin with member role", user("u-platform", "", true, controlplane.OrgMember, ""), controlplane.ActEnvDelete, envRes(), "Y"},
		{"unknown org role", user("u-x", orgA, false, "superuser", controlplane.EnvAdmin), controlplane.ActEnvRead, envRes(), "N"},
		{"unknown env role", user(member, orgA, false, controlplane.OrgMember, "env_god"), controlplane.ActEnvRead, envRes(), "N"},
		{"env role without org membership", user(member, orgA, false, "", controlplane.EnvAdmin), controlplane.ActConnReadOnly, envRes(), "N"},
		{"member with env role cannot create env", user(member, orgA, false, controlplane.OrgMember, controlplane.EnvAdmin), controlplane.ActEnvCreate, envRes(), "F"},
		{"app key not elevated by roles", appWithRoles, controlplane.ActConnAdmin, envRes(), "F"},
		{"app key not elevated by roles on org", appWithRoles, controlplane.ActOrgUpdate, orgRes(), "F"},
		{"app key cannot be platform admin", platformApp, controlplane.ActOrgCreate, controlplane.Resource{}, "F"},
		{"app key of another org", app(envA, drivers.ScopeAdmin), controlplane.ActOrgRead, controlplane.Resource{OrgID: orgB}, "N"},
		{"app key without org", unboundApp, controlplane.ActConnReadOnly, envRes(), "N"},
		{"userless key does not own userless keys", user("", orgA, false, controlplane.OrgMember, ""), controlplane.ActAPIKeyWrite, ownKey(""), "F"},
		{"app key without max scope", noScopeApp, controlplane.ActConnReadOnly, envRes(), "F"},
		{"app key without max scope reads env", noScopeApp, controlplane.ActEnvRead, envRes(), "Y"},
		{"app key on env of another org", app(envA, drivers.ScopeAdmin), controlplane.ActEnvRead, controlplane.Resource{OrgID: orgB, EnvironmentID: envA}, "N"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assertOutcome(t, controlplane.Authorize(tc.subject, tc.action, tc.res), tc.want, tc.res)
		})
	}
}

func TestAuthorizeForbiddenMessageNamesRoles(t *testing.T) {
	err := controlplane.Authorize(user(member, orgA, false, controlplane.OrgMember, controlplane.EnvViewer), controlplane.ActConnReadWrite, envRes())
	if got, want := controlplane.ErrorMessage(err), "forbidden: requires owner, admin, env_admin, env_maker or env_user"; got != want {
		t.Fatalf("message %q, want %q", got, want)
	}
	err = controlplane.Authorize(user(member, orgA, false, controlplane.OrgMember, ""), controlplane.ActOrgUpdate, orgRes())
	if got, want := controlplane.ErrorMessage(err), "forbidden: requires owner"; got != want {
		t.Fatalf("message %q, want %q", got, want)
	}
}

func TestConnectionAction(t *testing.T) {
	tests := []struct {
		scope drivers.Scope
		want  controlplane.Action
		ok    bool
	}{
		{drivers.ScopeAdmin, controlplane.ActConnAdmin, true},
		{drivers.ScopeReadWrite, controlplane.ActConnReadWrite, true},
		{drivers.ScopeReadOnly, controlplane.ActConnReadOnly, true},
		{"", "", false},
		{"superuser", "", false},
		{"Admin", "", false},
	}
	for _, tc := range tests {
		got, ok := controlplane.ConnectionAction(tc.scope)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ConnectionAction(%q) = %q, %v; want %q, %v", tc.scope, got, ok, tc.want, tc.ok)
		}
	}
}

// TestVisible checks every subject kind against envA, an environment of
// another org, and a resource that names no environment.
func TestVisible(t *testing.T) {
	//           PA    OW    AD    EA    EM    EU    EV    MN     NM     XO     AA    AW    AR    AX
	onEnvA := []bool{true, true, true, true, true, true, true, false, false, false, true, true, true, false}
	// Keys bound to orgA do not reach orgB whatever roles are passed; the
	// platform key reaches every org, the key of orgB (an owner) its own.
	onOrgB := []bool{true, false, false, false, false, false, false, false, false, true, false, false, false, false}
	otherOrg := controlplane.Resource{OrgID: orgB, EnvironmentID: envA}
	for i, k := range subjectKinds() {
		if got := controlplane.Visible(k.subject, envRes()); got != onEnvA[i] {
			t.Errorf("%s: Visible(envA) = %v, want %v", k.name, got, onEnvA[i])
		}
		if got := controlplane.Visible(k.subject, otherOrg); got != onOrgB[i] {
			t.Errorf("%s: Visible(other org) = %v, want %v", k.name, got, onOrgB[i])
		}
		if controlplane.Visible(k.subject, orgRes()) {
			t.Errorf("%s: Visible(no environment) = true", k.name)
		}
	}
	if controlplane.Visible(controlplane.Subject{OrgRole: controlplane.OrgOwner}, envRes()) {
		t.Error("Visible without a principal = true")
	}
}

// TestSeesAllEnvironments: the platform admin, owners and admins see every
// environment; members, outsiders and app keys do not.
func TestSeesAllEnvironments(t *testing.T) {
	// PA OW AD EA EM EU EV MN NM XO AA AW AR AX
	want := strings.Fields("Y  Y  Y  N  N  N  N  N  N  Y  N  N  N  N")
	for i, k := range subjectKinds() {
		if got := controlplane.SeesAllEnvironments(k.subject); got != (want[i] == "Y") {
			t.Errorf("%s: SeesAllEnvironments = %v", k.name, got)
		}
	}
	if controlplane.SeesAllEnvironments(controlplane.Subject{}) {
		t.Error("a subject without a principal sees every environment")
	}
}
