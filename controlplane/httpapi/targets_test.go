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
	platform := tursotest.NewPlatform(t, tursotest.PlatformOptions{DataPlane: true})
	tu, err := turso.New(turso.Config{
		Organization: platform.Organization, Group: platform.Group, Location: platform.Location,
		BaseURL: platform.URL, Token: platform.Token, DatabaseURL: platform.DatabaseURL,
		Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
	})
	if err != nil {
		t.Fatalf("turso driver: %v", err)
	}
	h := newHarness(t, withTargets(
		&cp.Target{Name: "pg", Region: "local", Driver: pg},
		&cp.Target{Name: "edge", Region: platform.Location, Driver: tu},
	))
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
		var v cp.EnvironmentView
		h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": c.slug, "type": "development", "target": c.target}).decode(t, &v)
		if v.Status != cp.StatusActive || v.Database == nil || v.Database.Driver != c.driver || v.Target != c.target {
			t.Fatalf("%s: not active on %s: %+v", c.slug, c.target, v)
		}
		var conn cp.Connection
		h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments/"+c.slug+"/connection?scope=readwrite", nil).decode(t, &conn)
		db, err := sql.Open(c.sqlDriver, conn.DSN)
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
