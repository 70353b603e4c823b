package httpapi_test

import (
	"context"
	"database/sql"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/tursodatabase/libsql-client-go/libsql"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/drivertest"
	pgdriver "github.com/envplane/envplane/drivers/postgres"
	"github.com/envplane/envplane/drivers/turso"
	"github.com/envplane/envplane/drivers/turso/tursotest"
)

// TestTargetsSideBySide provisions three environments of one organization on
// three targets — SQLite files, the real PostgreSQL server, and Turso through
// a contract-checked Platform double backed by real tursodb — then connects
// to each with the DSN the router hands out, and deletes them.
func TestTargetsSideBySide(t *testing.T) {
	ctx := context.Background()
	admin := drivertest.PostgresAdminURL(t)
	pg, err := pgdriver.New(ctx, pgdriver.Config{AdminURL: drivers.Secret(admin), AppSSLMode: "disable"})
	if err != nil {
		t.Fatalf("postgres driver: %v", err)
	}
	t.Cleanup(pg.Close)
	clk := newClock()
	edge, platform := tursoTarget(t, clk)
	h := newHarness(t, withClock(clk), withTargets(&cp.Target{Name: "pg", Region: "local", Driver: pg}, edge))
	h.svc.CredentialTTL[cp.TypeDevelopment] = 24 * time.Hour
	h.org(t, "acme")

	cases := []struct {
		slug, target, driver, sqlDriver string
	}{
		{"lite", "local", "sqlite", "sqlite"},
		{"pg", "pg", "postgres", "pgx"},
		{"edge", "edge", "turso", "libsql"},
	}
	for _, c := range cases {
		v := h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": c.slug, "type": "development", "target": c.target}).environment(t)
		if v.Status != cp.StatusActive || v.Database == nil || v.Database.Driver != c.driver || v.Target != c.target {
			t.Fatalf("%s: not active on %s: %+v", c.slug, c.target, v)
		}
		// Readonly: it may read whose the database is (on PostgreSQL
		// readwrite may not touch the system tables at all).
		var conn cp.Connection
		h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments/"+c.slug+"/connection?scope=readonly", nil).decode(t, &conn)
		db, err := sql.Open(c.sqlDriver, conn.DSN.Reveal())
		if err != nil {
			t.Fatalf("%s: open: %v", c.slug, err)
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO _envplane_meta_probe VALUES (1)"); err == nil {
			t.Fatalf("%s: a table that does not exist accepted an insert", c.slug)
		}
		var owner string
		if err := db.QueryRowContext(ctx, "SELECT environment_id FROM _envplane_meta").Scan(&owner); err != nil || owner != v.ID {
			t.Fatalf("%s: the database does not name its environment: %q, %v", c.slug, owner, err)
		}
		db.Close()
	}

	// Deleting an environment drops its database (and, on PostgreSQL, its roles).
	for _, c := range cases[1:] {
		var v cp.EnvironmentView
		h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments/"+c.slug, nil).decode(t, &v)
		h.must(t, http.StatusAccepted, h.admin, "DELETE", "/v1/organizations/acme/environments/"+c.slug, nil)
		h.svc.Wait()
		h.must(t, http.StatusNotFound, h.admin, "GET", "/v1/organizations/acme/environments/"+c.slug, nil)
		switch c.driver {
		case "postgres":
			conn, err := pgx.Connect(ctx, admin)
			if err != nil {
				t.Fatal(err)
			}
			var n int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", v.Database.DatabaseName).Scan(&n); err != nil || n != 0 {
				t.Errorf("pg database survives its environment: %d, %v", n, err)
			}
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname LIKE $1", v.Database.DatabaseName+"%").Scan(&n); err != nil || n != 0 {
				t.Errorf("pg roles survive their environment: %d, %v", n, err)
			}
			conn.Close(ctx)
		case "turso":
			if platform.HasDatabase(v.Database.DatabaseName) {
				t.Error("turso database survives its environment")
			}
		}
	}
}

// tursoTarget returns a target "edge" on a Turso Platform double whose
// databases are real tursodb servers.
func tursoTarget(t *testing.T, clk *clock) (*cp.Target, *tursotest.Platform) {
	t.Helper()
	platform := tursotest.NewPlatform(t, tursotest.PlatformOptions{DataPlane: true, Now: clk.Now})
	tu, err := turso.New(turso.Config{
		Organization: platform.Organization, Group: platform.Group, Location: platform.Location,
		BaseURL: platform.URL, Token: platform.Token, DatabaseURL: platform.DatabaseURL, Now: clk.Now,
		Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
	})
	if err != nil {
		t.Fatalf("turso driver: %v", err)
	}
	return &cp.Target{Name: "edge", Region: platform.Location, Driver: tu}, platform
}

// works reports whether a router DSN still reads the database.
func works(t *testing.T, sqlDriver string, dsn drivers.Secret) bool {
	t.Helper()
	db, err := sql.Open(sqlDriver, dsn.Reveal())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer db.Close()
	var n int
	return db.QueryRowContext(context.Background(), "SELECT count(*) FROM _envplane_meta").Scan(&n) == nil
}

// TestTursoRotationAndEmergencyRevocation: Turso cannot revoke one token, so
// a rotated token ages out at its expiry instead of being revoked at the end
// of the grace (the active ones keep working), and an emergency revocation
// stops every token of the database and re-issues every scope.
func TestTursoRotationAndEmergencyRevocation(t *testing.T) {
	clk := newClock()
	edge, _ := tursoTarget(t, clk)
	h := newHarness(t, withClock(clk), withTargets(edge))
	h.org(t, "acme")
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "edge", "type": "development", "target": "edge"})
	resolve := func(scope string) cp.Connection {
		var c cp.Connection
		h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments/edge/connection?scope="+scope, nil).decode(t, &c)
		return c
	}
	first := resolve("readwrite")
	ro := resolve("readonly")
	if first.ExpiresAt == nil {
		t.Fatal("a Turso credential has no expiry, so a rotated one could never age out")
	}
	var rot cp.CredentialsResponse
	h.must(t, http.StatusOK, h.admin, "POST", "/v1/organizations/acme/environments/edge/credentials/rotate", map[string]any{"scope": "readwrite", "grace_seconds": 60}).decode(t, &rot)
	second := resolve("readwrite")
	if second.CredentialID == first.CredentialID || !works(t, "libsql", second.DSN) || !works(t, "libsql", first.DSN) {
		t.Fatal("after rotation the new and the old readwrite tokens must both work")
	}
	h.clock.Advance(rot.RevokeAfter.Sub(h.clock.Now()))
	if n, err := h.svc.RevokeDue(context.Background()); err != nil || n != 1 {
		t.Fatalf("grace end: %d, %v", n, err)
	}
	if h.credentialStatus(t, "acme", "edge", first.CredentialID) != cp.CredentialRevoked {
		t.Fatal("the rotated credential is not recorded revoked after its grace")
	}
	if !works(t, "libsql", second.DSN) || !works(t, "libsql", ro.DSN) {
		t.Fatal("ending a grace period on Turso stopped the active tokens")
	}

	var resp cp.CredentialsResponse
	h.must(t, http.StatusOK, h.admin, "POST", "/v1/organizations/acme/environments/edge/credentials/revoke", map[string]any{"credential_id": second.CredentialID, "reason": "leaked"}).decode(t, &resp)
	if resp.Operation.Status != cp.OpSucceeded {
		t.Fatalf("emergency revocation: %+v", resp.Operation)
	}
	if works(t, "libsql", second.DSN) || works(t, "libsql", ro.DSN) {
		t.Fatal("tokens issued before an emergency revocation still work")
	}
	for _, scope := range []string{"admin", "readwrite", "readonly"} {
		c := resolve(scope)
		if c.CredentialID == second.CredentialID || c.CredentialID == ro.CredentialID || !works(t, "libsql", c.DSN) {
			t.Fatalf("%s was not re-issued with a working token after the emergency revocation", scope)
		}
	}

	// A rotation without grace, of a credential nobody was handed: the old
	// token ends at once, by ageing out, not by invalidating the database's
	// tokens, which would take the new ones with it.
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "edge2", "type": "development", "target": "edge"})
	var zero cp.CredentialsResponse
	h.must(t, http.StatusOK, h.admin, "POST", "/v1/organizations/acme/environments/edge2/credentials/rotate", map[string]any{"scope": "readwrite", "grace_seconds": 0}).decode(t, &zero)
	if zero.Operation.Status != cp.OpSucceeded || zero.GraceStretched {
		t.Fatalf("rotation without grace: %s, stretched %v", zero.Operation.Status, zero.GraceStretched)
	}
	for _, scope := range []string{"readwrite", "readonly"} {
		var c cp.Connection
		h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments/edge2/connection?scope="+scope, nil).decode(t, &c)
		if !works(t, "libsql", c.DSN) {
			t.Fatalf("after a rotation without grace the active %s token does not work", scope)
		}
	}
}
