package httpapi_test

import (
	"context"
	"database/sql"
	"net/http"
	"testing"

	cp "github.com/envplane/envplane/controlplane"
)

// TestClone copies an environment's database, fully and schema-only, on the
// SQLite and PostgreSQL targets: the copy has the source's tables (and rows,
// for a full clone), names its own environment, and is independent.
func TestClone(t *testing.T) {
	ctx := context.Background()
	pg := sharedPostgres(t)
	h := newHarness(t, withTargets(&cp.Target{Name: "pg", Region: "local", Driver: pg}))
	h.org(t, "acme")
	for _, c := range []struct{ target, sqlDriver string }{{"local", "sqlite"}, {"pg", "pgx"}} {
		t.Run(c.target, func(t *testing.T) {
			src := c.target + "-src"
			h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": src, "type": "staging", "target": c.target})
			exec := func(env, scope, q string) error {
				var conn cp.Connection
				h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments/"+env+"/connection?scope="+scope, nil).decode(t, &conn)
				db, err := sql.Open(c.sqlDriver, conn.DSN.Reveal())
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				_, err = db.ExecContext(ctx, q)
				return err
			}
			count := func(env string) int {
				var conn cp.Connection
				h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments/"+env+"/connection?scope=readonly", nil).decode(t, &conn)
				db, err := sql.Open(c.sqlDriver, conn.DSN.Reveal())
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				var n int
				if err := db.QueryRowContext(ctx, "SELECT count(*) FROM notes").Scan(&n); err != nil {
					t.Fatalf("%s: count notes: %v", env, err)
				}
				return n
			}
			if err := exec(src, "admin", "CREATE TABLE notes (body TEXT)"); err != nil {
				t.Fatalf("create table: %v", err)
			}
			if err := exec(src, "readwrite", "INSERT INTO notes VALUES ('a'), ('b')"); err != nil {
				t.Fatalf("insert: %v", err)
			}
			r := h.do(t, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": c.target + "-prod", "type": "production", "target": c.target, "from_environment": src, "clone": "full"})
			if p := r.problem(t); r.status != http.StatusUnprocessableEntity || len(p.Errors) == 0 || p.Errors[0].Field != "type" {
				t.Fatalf("cloning into production: %d %s", r.status, r.body)
			}
			for _, mode := range []string{"full", "schema"} {
				slug := c.target + "-" + mode
				v := h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": slug, "type": "preview", "from_environment": src, "clone": mode}).environment(t)
				if v.Status != cp.StatusActive || v.Target != c.target {
					t.Fatalf("%s clone: %s on %s: %s", mode, v.Status, v.Target, v.Error)
				}
				want := 2
				if mode == "schema" {
					want = 0
				}
				if n := count(slug); n != want {
					t.Fatalf("%s clone holds %d notes, want %d", mode, n, want)
				}
				if err := exec(slug, "readwrite", "INSERT INTO notes VALUES ('c')"); err != nil {
					t.Fatalf("%s clone: its own readwrite credential cannot write: %v", mode, err)
				}
				if n := count(src); n != 2 {
					t.Fatalf("writing the %s clone changed its source: %d notes", mode, n)
				}
				var st cp.SchemaStatus
				h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments/"+slug+"/schema", nil).decode(t, &st)
				if len(st.Applied) == 0 || len(st.Drift) != 0 {
					t.Fatalf("%s clone's ledger: %+v", mode, st)
				}
			}
		})
	}
}
