package dataplane_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/envplane/envplane/dataplane"
	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/drivertest"
	"github.com/envplane/envplane/drivers/postgres"
)

// tamperCase is one change an app credential could make to the system
// tables on an engine that cannot refuse it, and what the initializer must
// find.
type tamperCase struct {
	name   string
	tamper string
	// apply is true when Apply, which knows nothing of the control plane's
	// records, must refuse by itself; Verify must refuse every case.
	apply bool
}

var tamperCases = []tamperCase{
	{"ledger emptied", "DELETE FROM _envplane_migrations", true},
	{"system row deleted", "DELETE FROM _envplane_migrations WHERE namespace = 'system'", true},
	{"system row altered", "UPDATE _envplane_migrations SET checksum = 'forged' WHERE namespace = 'system'", true},
	{"app rows deleted", "DELETE FROM _envplane_migrations WHERE namespace = 'app' AND version = 2", false},
	{"meta row deleted", "DELETE FROM _envplane_meta", false},
	{"row forged", "INSERT INTO _envplane_migrations VALUES ('app', 99, 'x', 'x', 'not a time')", false},
	// The database answers, but the ledger no longer reads: tampering, not
	// a failure of the connection (it answered 500 through the API).
	{"ledger column renamed", "ALTER TABLE _envplane_migrations RENAME COLUMN checksum TO sum", true},
}

// TestTamperingIsDetected: on every engine, a ledger or meta row changed
// behind the initializer's back is a TamperError (or, for a forged owner, an
// OwnerMismatchError), never a migration run again or a meta row claimed anew;
// Status reports it and nothing is applied.
func TestTamperingIsDetected(t *testing.T) {
	for _, tc := range tamperCases {
		t.Run(tc.name, func(t *testing.T) {
			forEachEngine(t, func(t *testing.T, e engine, db *sql.DB) {
				ctx := context.Background()
				dir := newAppDir(t, map[string]string{
					"0001_a.sql": "CREATE TABLE a (x INTEGER);",
					"0002_b.sql": "INSERT INTO a (x) VALUES (1);",
				})
				in := dir.initializer()
				res, err := in.Apply(ctx, db, e.dialect, ownerA)
				if err != nil {
					t.Fatalf("apply: %v", err)
				}
				want := dataplane.Expected{Owner: ownerA, SchemaVersion: res.SchemaVersion}
				if err := in.Verify(ctx, db, e.dialect, want); err != nil {
					t.Fatalf("verify of an untouched database: %v", err)
				}
				if _, err := db.ExecContext(ctx, tc.tamper); err != nil {
					t.Fatalf("tamper: %v", err)
				}

				var tampered *dataplane.TamperError
				if err := in.Verify(ctx, db, e.dialect, want); !errors.As(err, &tampered) || len(tampered.Problems) == 0 {
					t.Fatalf("verify after %q: %v, want a TamperError", tc.tamper, err)
				}
				if tc.apply {
					// The control plane verifies first; Apply alone
					// still refuses what the database itself shows.
					if _, err := in.Apply(ctx, db, e.dialect, ownerA); !errors.As(err, &tampered) {
						t.Fatalf("apply after %q: %v, want a TamperError", tc.tamper, err)
					}
					st, err := in.Status(ctx, db, e.dialect)
					if err != nil || len(st.Tampered) == 0 {
						t.Fatalf("status after %q: tampered %v, %v; want findings", tc.tamper, st.Tampered, err)
					}
				}
				if n := count(t, db, "SELECT count(*) FROM a"); n != 1 {
					t.Fatalf("table a holds %d rows after %q, want 1: a migration ran again", n, tc.tamper)
				}
			})
		})
	}
}

// TestForgedOwnerIsRefused: a meta row rewritten to name another
// environment is refused by Apply and Verify alike.
func TestForgedOwnerIsRefused(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, db *sql.DB) {
		ctx := context.Background()
		in := newAppDir(t, map[string]string{"0001_a.sql": "CREATE TABLE a (x INTEGER);"}).initializer()
		res, err := in.Apply(ctx, db, e.dialect, ownerA)
		if err != nil {
			t.Fatalf("apply: %v", err)
		}
		if _, err := db.ExecContext(ctx, "UPDATE _envplane_meta SET environment_id = 'env_forged'"); err != nil {
			t.Fatalf("forge: %v", err)
		}
		var mismatch *dataplane.OwnerMismatchError
		if err := in.Verify(ctx, db, e.dialect, dataplane.Expected{Owner: ownerA, SchemaVersion: res.SchemaVersion}); !errors.As(err, &mismatch) {
			t.Fatalf("verify: %v, want an OwnerMismatchError", err)
		}
		if _, err := in.Apply(ctx, db, e.dialect, ownerA); !errors.As(err, &mismatch) || mismatch.Got.EnvironmentID != "env_forged" {
			t.Fatalf("apply: %v, want an OwnerMismatchError naming env_forged", err)
		}
	})
}

// TestSystemTablesRefuseApps: on PostgreSQL, with passwords checked, the
// system tables belong to the database's owner role and its readwrite and
// readonly logins can neither change nor read the ledger, nor change the meta
// row; only readonly may read it. A database whose tables still carry the driver's default grants (one
// initialized before this rule) is repaired by the next Apply.
func TestSystemTablesRefuseApps(t *testing.T) {
	ctx := context.Background()
	d, err := postgres.New(ctx, postgres.Config{AdminURL: drivers.Secret(drivertest.PasswordPostgresURL(t)), AppSSLMode: "disable"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	created, err := d.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: drivertest.NewDatabaseName(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = d.DropDatabase(context.Background(), drivers.DropDatabaseRequest{Database: created.Database})
	})
	pool := func(scope drivers.Scope) *sql.DB {
		c, err := d.IssueCredential(ctx, drivers.IssueCredentialRequest{Database: created.Database, Scope: scope, Slot: drivers.SlotA})
		if err != nil {
			t.Fatal(err)
		}
		conn, err := d.Open(ctx, drivers.OpenRequest{Database: created.Database, Credential: c.Credential})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.DB.Close() })
		return conn.DB
	}
	admin, rw, ro := pool(drivers.ScopeAdmin), pool(drivers.ScopeReadWrite), pool(drivers.ScopeReadOnly)
	in := newAppDir(t, map[string]string{"0001_a.sql": "CREATE TABLE a (x INTEGER);"}).initializer()
	if _, err := in.Apply(ctx, admin, drivers.DialectPostgres, ownerA); err != nil {
		t.Fatalf("apply: %v", err)
	}

	var owners string
	if err := admin.QueryRow(`SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE tablename LIKE '\_envplane\_%'`).Scan(&owners); err != nil {
		t.Fatal(err)
	}
	if owners != created.Database.Name+"_owner" {
		t.Fatalf("the system tables belong to %q, want the owner role", owners)
	}

	refused := func(when string) {
		t.Helper()
		for _, c := range []struct {
			who string
			db  *sql.DB
			sql string
		}{
			{"readwrite", rw, "DELETE FROM _envplane_migrations"},
			{"readwrite", rw, "UPDATE _envplane_meta SET environment_id = 'env_forged'"},
			{"readwrite", rw, "INSERT INTO _envplane_migrations VALUES ('app', 99, 'x', 'x', 'x')"},
			{"readwrite", rw, "TRUNCATE _envplane_migrations"},
			{"readwrite", rw, "DROP TABLE _envplane_meta"},
			{"readwrite", rw, "SELECT count(*) FROM _envplane_migrations"},
			{"readonly", ro, "DELETE FROM _envplane_meta"},
			{"readonly", ro, "SELECT count(*) FROM _envplane_migrations"},
			{"readwrite", rw, "SELECT count(*) FROM _envplane_meta"},
		} {
			_, err := c.db.ExecContext(ctx, c.sql)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "42501" {
				t.Errorf("%s: %s as %s: %v, want a privilege error", when, c.sql, c.who, err)
			}
		}
		var owner string
		if err := ro.QueryRowContext(ctx, "SELECT environment_id FROM _envplane_meta").Scan(&owner); err != nil || owner != ownerA.EnvironmentID {
			t.Errorf("%s: readonly reads the meta row as %q, %v", when, owner, err)
		}
		// The app's own tables stay the app's.
		if _, err := rw.ExecContext(ctx, "INSERT INTO a (x) VALUES (1)"); err != nil {
			t.Errorf("%s: readwrite cannot write the app's table: %v", when, err)
		}
		if err := in.Verify(ctx, admin, drivers.DialectPostgres, dataplane.Expected{Owner: ownerA, SchemaVersion: 1}); err != nil {
			t.Errorf("%s: verify: %v", when, err)
		}
	}
	refused("after the first apply")

	// A database initialized before this rule: the driver's default grants are back.
	for _, grant := range []string{
		"GRANT SELECT, INSERT, UPDATE, DELETE ON _envplane_migrations, _envplane_meta TO " + created.Database.Name + "_readwrite_a",
		"GRANT SELECT ON _envplane_migrations, _envplane_meta TO " + created.Database.Name + "_readonly_a",
	} {
		if _, err := admin.ExecContext(ctx, grant); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rw.ExecContext(ctx, "SELECT count(*) FROM _envplane_migrations"); err != nil {
		t.Fatalf("the grant did not take: %v", err)
	}
	if _, err := in.Apply(ctx, admin, drivers.DialectPostgres, ownerA); err != nil {
		t.Fatalf("apply: %v", err)
	}
	refused("after the repairing apply")
}
