package postgres_test

import (
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/store/postgres"
	"github.com/envplane/envplane/drivers/drivertest"
)

// TestRuntimeRole opens stores that migrate as a superuser and serve as a
// login role with no attribute (adr/0030), three at once: the migrations
// create <database>_app once, grant it to the serving user, and the serving
// user keeps the rows but cannot touch a policy, a table or goose's records.
func TestRuntimeRole(t *testing.T) {
	serveURL, migrateURL := drivertest.NewPostgresRuntimeStore(t)
	const replicas = 3
	stores := make([]*postgres.Store, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() { stores[i], errs[i] = postgres.Open(t.Context(), serveURL, postgres.MigrateAs(migrateURL)) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		t.Cleanup(func() { _ = stores[i].Close() })
	}
	wantEachMigrationOnce(t, migrateURL)
	// A replica may serve without migrating once the schema is current.
	servesOnly, err := postgres.Open(t.Context(), serveURL)
	must(t, err)
	must(t, servesOnly.Close())

	ctx := controlplane.WithOrgScope(t.Context(), "org_1")
	now := time.Now()
	must(t, stores[0].CreateOrganization(controlplane.WithPlatformScope(t.Context()),
		&controlplane.Organization{ID: "org_1", Slug: "acme", Name: "Acme", CreatedAt: now, UpdatedAt: now}))
	if _, err := stores[1].GetOrganization(ctx, "acme"); err != nil {
		t.Fatalf("the serving user cannot read its organization: %v", err)
	}

	admin := connect(t, migrateURL)
	app := databaseOf(t, migrateURL) + "_app"
	var login, super, bypass, member bool
	must(t, admin.QueryRow(t.Context(), `SELECT rolcanlogin, rolsuper, rolbypassrls, pg_has_role($2, rolname, 'MEMBER')
		FROM pg_roles WHERE rolname = $1`, app, drivertest.PostgresRuntimeRole).Scan(&login, &super, &bypass, &member))
	if login || super || bypass || !member {
		t.Errorf("role %s: login %v, superuser %v, bypassrls %v, granted to the serving user %v; want only the grant",
			app, login, super, bypass, member)
	}

	runtime := connect(t, serveURL)
	var rows int
	must(t, runtime.QueryRow(t.Context(), `SELECT count(*) FROM organizations`).Scan(&rows))
	if rows != 0 {
		t.Errorf("an unscoped query of the serving user saw %d organizations, want none", rows)
	}
	for _, stmt := range []string{
		`ALTER TABLE environments NO FORCE ROW LEVEL SECURITY`,
		`ALTER TABLE organizations DISABLE ROW LEVEL SECURITY`,
		`DROP POLICY org_scope ON organizations`,
		`CREATE POLICY everything ON organizations USING (true)`,
		`DROP TABLE audit_events`,
		`TRUNCATE changes`,
		`INSERT INTO goose_db_version (version_id, is_applied) VALUES (99999, true)`,
		`DELETE FROM goose_db_version`,
		`CREATE TABLE public.mine (id int)`,
	} {
		_, err := runtime.Exec(t.Context(), stmt)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("the serving user ran %s: %v, want insufficient_privilege (42501)", stmt, err)
		}
	}
}

// TestRuntimeRoleNeedsItsGrants follows the least-privileged recipe on
// PostgreSQL 15, where CREATEROLE is nearly a superuser's: an owner that
// may not create roles migrates, and each missing step fails with the fix
// and changes nothing the next start cannot finish.
func TestRuntimeRoleNeedsItsGrants(t *testing.T) {
	serveURL, adminURL := drivertest.NewPostgresRuntimeStore(t)
	db := databaseOf(t, adminURL)
	app := db + "_app"
	drivertest.EnsurePostgresRole(t, drivertest.PostgresStoreRole, "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS")
	ownerURL := withUser(t, adminURL, drivertest.PostgresStoreRole)
	admin := connect(t, adminURL)
	_, err := admin.Exec(t.Context(), "ALTER DATABASE "+pgx.Identifier{db}.Sanitize()+" OWNER TO "+pgx.Identifier{drivertest.PostgresStoreRole}.Sanitize())
	must(t, err)

	// One user given twice would serve as the tables' owner.
	_, err = postgres.Open(t.Context(), ownerURL, postgres.MigrateAs(ownerURL))
	wantError(t, err, "is store_url's too", "leave store_migrate_url empty")
	// Serving without a migrating user, before anything was granted.
	_, err = postgres.Open(t.Context(), serveURL)
	wantError(t, err, "may not change the schema", "store_migrate_url")
	_, err = postgres.Open(t.Context(), serveURL, postgres.MigrateAs(ownerURL))
	wantError(t, err, "may not create it", "CREATE ROLE "+app+" NOLOGIN")
	// A role of that name that could log in is not a runtime role.
	_, err = admin.Exec(t.Context(), "CREATE ROLE "+pgx.Identifier{app}.Sanitize()+" LOGIN")
	must(t, err)
	_, err = postgres.Open(t.Context(), serveURL, postgres.MigrateAs(ownerURL))
	wantError(t, err, "more than a runtime role may have", "ALTER ROLE "+app+" NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB NOLOGIN")
	_, err = admin.Exec(t.Context(), "ALTER ROLE "+pgx.Identifier{app}.Sanitize()+" NOLOGIN")
	must(t, err)
	_, err = postgres.Open(t.Context(), serveURL, postgres.MigrateAs(ownerURL))
	wantError(t, err, "may not grant", "GRANT "+app+" TO "+drivertest.PostgresRuntimeRole)
	_, err = admin.Exec(t.Context(), "GRANT "+pgx.Identifier{app}.Sanitize()+" TO "+drivertest.PostgresRuntimeRole)
	must(t, err)
	s, err := postgres.Open(t.Context(), serveURL, postgres.MigrateAs(ownerURL))
	must(t, err)
	must(t, s.Ping(t.Context()))
	must(t, s.Close())
	wantEachMigrationOnce(t, adminURL)

	// A table the role lost stops the serving user at start; the next
	// start with the migrating user grants it again.
	owner := connect(t, ownerURL)
	_, err = owner.Exec(t.Context(), `REVOKE INSERT, UPDATE, DELETE ON environments FROM `+pgx.Identifier{app}.Sanitize())
	must(t, err)
	_, err = postgres.Open(t.Context(), serveURL)
	wantError(t, err, "may not read and write the table environments", "store_migrate_url")
	s, err = postgres.Open(t.Context(), serveURL, postgres.MigrateAs(ownerURL))
	must(t, err)
	must(t, s.Close())
}

// wantError fails unless err mentions what and fix, and no password.
func wantError(tb testing.TB, err error, what, fix string) {
	tb.Helper()
	switch {
	case err == nil:
		tb.Fatalf("opened, want an error saying %q", what)
	case !strings.Contains(err.Error(), what) || !strings.Contains(err.Error(), fix):
		tb.Fatalf("error %q does not say %q and %q", err, what, fix)
	case strings.Contains(err.Error(), drivertest.PostgresStoreRole+"@") || strings.Contains(err.Error(), ":"+drivertest.PostgresRuntimeRole):
		tb.Fatalf("error %q carries a URL's password", err)
	}
}

// databaseOf returns the database name in a URL.
func databaseOf(tb testing.TB, raw string) string {
	tb.Helper()
	u, err := url.Parse(raw)
	must(tb, err)
	return strings.TrimPrefix(u.Path, "/")
}

// withUser returns raw as user, whose password is its name.
func withUser(tb testing.TB, raw, user string) string {
	tb.Helper()
	u, err := url.Parse(raw)
	must(tb, err)
	u.User = url.UserPassword(user, user)
	return u.String()
}
