package postgres_test

import (
	"context"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/envplane/envplane/drivers"
)

// A clone, full or schema-only, is a database of its own: its roles work on
// the copied tables, the source's credentials cannot enter it, and the
// source's roles keep nothing in it, so the source can be dropped afterwards
// and the clone still works. A second CloneDatabase changes nothing.
func TestCloneDatabase(t *testing.T) {
	for _, tc := range []struct {
		name       string
		schemaOnly bool
		rows       int
	}{
		{"full", false, 2},
		{"schema only", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.schemaOnly {
				if _, err := exec.LookPath("pg_dump"); err != nil {
					t.Skip("pg_dump is not installed; the driver answers ErrUnsupported")
				}
			}
			f := newFixture(t, serverURL(t))
			ctx := context.Background()
			src := f.create()
			srcAdmin := f.open(src, f.issue(src, drivers.ScopeAdmin, drivers.SlotA, time.Time{}))
			f.mustRun(srcAdmin, "CREATE TABLE items (id bigserial PRIMARY KEY, note text)")
			f.mustRun(srcAdmin, "INSERT INTO items (note) VALUES ('one'), ('two')")
			// A migration that gave up the owner role leaves an object owned
			// by the admin login itself; the clone must take that one too.
			f.mustRun(srcAdmin, "SET ROLE NONE; CREATE TABLE stray (id int); RESET ROLE")
			var strayOwner string
			if err := srcAdmin.QueryRowContext(ctx, "SELECT tableowner FROM pg_tables WHERE tablename = 'stray'").Scan(&strayOwner); err != nil || strayOwner != src.Name+"_admin_a" {
				t.Fatalf("stray is owned by %q (%v), want the admin login", strayOwner, err)
			}
			srcRO := f.issue(src, drivers.ScopeReadOnly, drivers.SlotA, time.Time{})
			srcAdmin.Close()

			req := drivers.CloneDatabaseRequest{Name: f.name(), Source: src, SchemaOnly: tc.schemaOnly}
			resp, err := f.driver.CloneDatabase(ctx, req)
			if err != nil {
				t.Fatalf("clone: %v", err)
			}
			clone := resp.Database
			t.Cleanup(func() { f.driver.DropDatabase(context.Background(), drivers.DropDatabaseRequest{Database: clone}) })
			if _, err := f.driver.CloneDatabase(ctx, req); err != nil {
				t.Fatalf("second clone: %v", err)
			}
			if _, err := f.connect(clone.Name, srcRO); sqlState(err) != "42501" {
				t.Fatalf("the source's readonly credential on the clone: SQLSTATE %q, want 42501", sqlState(err))
			}
			// Cloning takes nothing from the source: its credentials still open it.
			for _, c := range []drivers.Credential{srcRO, f.issue(src, drivers.ScopeAdmin, drivers.SlotA, time.Time{})} {
				db := f.open(src, c)
				f.mustRun(db, "SELECT count(*) FROM items")
				db.Close()
			}

			if _, err := f.driver.DropDatabase(ctx, drivers.DropDatabaseRequest{Database: src}); err != nil {
				t.Fatalf("drop the source after cloning it: %v", err)
			}
			dbs, roles := f.leftovers()
			if !slices.Equal(dbs, []string{clone.Name}) || !slices.Equal(roles, expectedRoles(clone.Name)) {
				t.Fatalf("after dropping the source: databases %v, roles %v", dbs, roles)
			}

			rw := f.open(clone, f.issue(clone, drivers.ScopeReadWrite, drivers.SlotB, time.Time{}))
			ro := f.open(clone, f.issue(clone, drivers.ScopeReadOnly, drivers.SlotB, time.Time{}))
			var n int
			if err := ro.QueryRowContext(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil {
				t.Fatalf("readonly count on the clone: %v", err)
			}
			if n != tc.rows {
				t.Fatalf("the clone holds %d rows, want %d", n, tc.rows)
			}
			f.mustRun(rw, "INSERT INTO items (note) VALUES ('three')")
			f.mustRun(rw, "INSERT INTO stray VALUES (1)")
			var owners string
			err = ro.QueryRowContext(ctx, "SELECT string_agg(DISTINCT tableowner::text, ',') FROM pg_tables WHERE schemaname = 'public'").Scan(&owners)
			if err != nil {
				t.Fatalf("table owners: %v", err)
			}
			if owners != clone.Name+"_owner" {
				t.Fatalf("the clone's tables are owned by %s", owners)
			}
		})
	}
}
