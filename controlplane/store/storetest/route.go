package storetest

import (
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
)

// testResolveRoute checks that the one read of a resolve finds what the
// single-row reads find, and nothing another organization or a tombstone
// holds.
func testResolveRoute(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a, b := newOrg(t, s, "a"), newOrg(t, s, "b")
	member, admin, stranger := newUser(t, s, "member@example.com"), newUser(t, s, "admin@example.com"), newUser(t, s, "stranger@example.com")
	newMember(t, s, a, member, controlplane.OrgMember)
	newMember(t, s, a, admin, controlplane.OrgAdmin)
	newMember(t, s, b, stranger, controlplane.OrgOwner)

	prod := &controlplane.Environment{ID: newID("env_"), OrgID: a.ID, Slug: "prod", Name: "Production", Description: "live",
		Type: controlplane.TypeProduction, Region: "eu-west", Target: "pg-1", IsProtected: true, Status: controlplane.StatusActive,
		CreatedBy: member.ID, Metadata: map[string]string{"team": "core"}, CreatedAt: at(0), UpdatedAt: at(time.Second)}
	must(t, s.CreateEnvironment(ctx, prod))
	db := &controlplane.Database{ID: newID("db_"), EnvironmentID: prod.ID, Name: newID("env_"), Driver: "postgres", Target: "pg-1",
		Region: "eu-west", URL: "postgres://pg-1.internal:5432/x", StorageLimitMB: 512, SchemaVersion: 2,
		ProvisionedAt: ptr(at(time.Minute)), Metadata: map[string]string{"cluster": "blue"}}
	must(t, s.CreateDatabase(ctx, db))
	rw := func(status controlplane.CredentialStatus, issued time.Duration) *controlplane.Credential {
		return newCredential(t, s, db, func(c *controlplane.Credential) {
			c.Status, c.IssuedAt, c.ExpiresAt = status, at(issued), ptr(at(issued+30*24*time.Hour))
			if status == controlplane.CredentialRevoked {
				c.RevokedAt = ptr(at(issued + time.Hour))
			}
		})
	}
	rw(controlplane.CredentialActive, 0)
	// Issued at the same time as the newest: the id decides, as in ListCredentials.
	rw(controlplane.CredentialActive, time.Minute)
	newest := rw(controlplane.CredentialActive, time.Minute)
	newest.PromisedUntil = ptr(us(at(2 * time.Minute)))
	must(t, s.PromiseCredential(ctx, db.ID, newest.ID, *newest.PromisedUntil))
	rw(controlplane.CredentialActive, -time.Minute)
	// Newer, but not active, or of another scope.
	rw(controlplane.CredentialRotating, 2*time.Minute)
	rw(controlplane.CredentialRevoked, 3*time.Minute)
	readonly := newCredential(t, s, db, func(c *controlplane.Credential) { c.Scope, c.Slot, c.IssuedAt = "readonly", "b", at(4*time.Minute) })
	must(t, s.PutEnvironmentMember(ctx, &controlplane.EnvironmentMember{ID: newID("em_"), EnvironmentID: prod.ID, OrgID: a.ID,
		UserID: member.ID, Role: controlplane.EnvUser, CreatedAt: at(0)}))

	noDB := newEnv(t, s, a, "nodb")
	revokedOnly := newEnv(t, s, a, "revoked-only")
	revokedDB := newDatabase(t, s, revokedOnly, "local")
	newCredential(t, s, revokedDB, func(c *controlplane.Credential) {
		c.Status, c.RevokedAt = controlplane.CredentialRevoked, ptr(at(time.Hour))
	})
	// The member's role on another environment is not a role on prod.
	must(t, s.PutEnvironmentMember(ctx, &controlplane.EnvironmentMember{ID: newID("em_"), EnvironmentID: noDB.ID, OrgID: a.ID,
		UserID: admin.ID, Role: controlplane.EnvAdmin, CreatedAt: at(0)}))
	bProd := newEnv(t, s, b, "prod")
	gone := newEnv(t, s, a, "gone")
	deleteEnv(t, s, gone)

	list, err := s.ListCredentials(ctx, controlplane.CredentialFilter{DatabaseID: db.ID, Scope: "readwrite",
		Statuses: []controlplane.CredentialStatus{controlplane.CredentialActive}})
	must(t, err)
	if len(list) < 2 || list[0].ID != newest.ID || !list[1].IssuedAt.Equal(newest.IssuedAt) {
		t.Fatalf("fixture: want %s first among active readwrite credentials, tied with the second: %v", newest.ID, ids(list, credID))
	}

	full := &controlplane.Route{Org: a, Environment: prod, Database: db, Credential: newest,
		OrgRole: controlplane.OrgMember, EnvRole: controlplane.EnvUser}
	anonymous := *full
	anonymous.OrgRole, anonymous.EnvRole = "", ""
	for _, tc := range []struct {
		name string
		q    controlplane.RouteQuery
		want *controlplane.Route
	}{
		{"by slugs", controlplane.RouteQuery{OrgRef: "a", EnvRef: "prod", Scope: "readwrite", UserID: member.ID}, full},
		{"by ids", controlplane.RouteQuery{OrgRef: a.ID, EnvRef: prod.ID, Scope: "readwrite", UserID: member.ID}, full},
		{"by environment id alone", controlplane.RouteQuery{EnvRef: prod.ID, Scope: "readwrite", UserID: member.ID}, full},
		{"without a user", controlplane.RouteQuery{OrgRef: "a", EnvRef: "prod", Scope: "readwrite"}, &anonymous},
		{"for an org admin", controlplane.RouteQuery{OrgRef: "a", EnvRef: "prod", Scope: "readwrite", UserID: admin.ID},
			&controlplane.Route{Org: a, Environment: prod, Database: db, Credential: newest, OrgRole: controlplane.OrgAdmin}},
		{"for a stranger", controlplane.RouteQuery{OrgRef: "a", EnvRef: "prod", Scope: "readwrite", UserID: stranger.ID}, &anonymous},
		{"for an absent user", controlplane.RouteQuery{OrgRef: "a", EnvRef: "prod", Scope: "readwrite", UserID: newID("usr_")}, &anonymous},
		{"of another scope", controlplane.RouteQuery{OrgRef: "a", EnvRef: "prod", Scope: "readonly"},
			&controlplane.Route{Org: a, Environment: prod, Database: db, Credential: readonly}},
		{"of a scope without credential", controlplane.RouteQuery{OrgRef: "a", EnvRef: "prod", Scope: "admin"},
			&controlplane.Route{Org: a, Environment: prod, Database: db}},
		{"without database", controlplane.RouteQuery{OrgRef: a.ID, EnvRef: "nodb", Scope: "readwrite", UserID: admin.ID},
			&controlplane.Route{Org: a, Environment: noDB, OrgRole: controlplane.OrgAdmin, EnvRole: controlplane.EnvAdmin}},
		{"without active credential", controlplane.RouteQuery{OrgRef: "a", EnvRef: "revoked-only", Scope: "readwrite"},
			&controlplane.Route{Org: a, Environment: revokedOnly, Database: revokedDB}},
		{"the same slug in another organization", controlplane.RouteQuery{OrgRef: "b", EnvRef: "prod", Scope: "readwrite", UserID: stranger.ID},
			&controlplane.Route{Org: b, Environment: bProd, OrgRole: controlplane.OrgOwner}},
	} {
		got, err := s.ResolveRoute(ctx, tc.q)
		if err != nil {
			t.Errorf("ResolveRoute %s: %v", tc.name, err)
			continue
		}
		same(t, "route "+tc.name, tc.want, got)
	}

	// What a single-row read would not find, the route does not either.
	for _, tc := range []struct {
		name string
		q    controlplane.RouteQuery
	}{
		{"another organization's environment by id", controlplane.RouteQuery{OrgRef: "b", EnvRef: prod.ID}},
		{"another organization's environment by id, org by id", controlplane.RouteQuery{OrgRef: a.ID, EnvRef: bProd.ID}},
		{"an absent organization", controlplane.RouteQuery{OrgRef: "nope", EnvRef: "prod"}},
		{"an absent environment", controlplane.RouteQuery{OrgRef: "a", EnvRef: "staging"}},
		{"an environment slug without organization", controlplane.RouteQuery{EnvRef: "prod"}},
		{"an absent environment id without organization", controlplane.RouteQuery{EnvRef: newID("env_")}},
		{"a deleted environment by slug", controlplane.RouteQuery{OrgRef: "a", EnvRef: "gone"}},
		{"a deleted environment by id", controlplane.RouteQuery{OrgRef: a.ID, EnvRef: gone.ID}},
		{"a deleted environment by id alone", controlplane.RouteQuery{EnvRef: gone.ID}},
	} {
		tc.q.Scope = "readwrite"
		_, err := s.ResolveRoute(ctx, tc.q)
		if !controlplane.IsCode(err, controlplane.ENOTFOUND) {
			t.Errorf("ResolveRoute %s: got %v, want ENOTFOUND", tc.name, err)
		}
	}

	// A live environment that took a deleted one's slug is the one found.
	again := newEnv(t, s, a, "gone")
	got, err := s.ResolveRoute(ctx, controlplane.RouteQuery{OrgRef: "a", EnvRef: "gone", Scope: "readwrite"})
	must(t, err)
	same(t, "route to the slug's live environment", &controlplane.Route{Org: a, Environment: again}, got)

	// Inside a transaction, the route reads the transaction's writes.
	must(t, s.WithTx(ctx, func(q controlplane.Queries) error {
		c := newCredential(t, q, db, func(c *controlplane.Credential) { c.IssuedAt = at(time.Hour) })
		got, err := q.ResolveRoute(ctx, controlplane.RouteQuery{OrgRef: "a", EnvRef: "prod", Scope: "readwrite"})
		if err != nil {
			return err
		}
		if got.Credential == nil || got.Credential.ID != c.ID {
			t.Errorf("ResolveRoute in the transaction that issued %s chose %v", c.ID, got.Credential)
		}
		return nil
	}))
}
