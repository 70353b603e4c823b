package httpapi_test

import (
	"database/sql"
	"net/http"
	"testing"

	cp "github.com/envplane/envplane/controlplane"
)

// TestTamperedSystemTables: on the SQLite and Turso targets, where the
// engine cannot refuse it, an application's readwrite credential deletes the
// migration ledger of one environment and forges the owner row of another.
// Migrating either answers 409 tampered (never 500, never a migration run
// again), reading the schema reports what was found, and neither can be
// cloned.
func TestTamperedSystemTables(t *testing.T) {
	clk := newClock()
	edge, _ := tursoTarget(t, clk)
	h := newHarness(t, withClock(clk), withTargets(edge))
	h.org(t, "acme")
	for _, target := range []struct{ name, sqlDriver string }{{"local", "sqlite"}, {"edge", "libsql"}} {
		for _, tc := range []struct {
			slug, tamper string
		}{
			{"ledger", "DELETE FROM _envplane_migrations"},
			{"owner", "UPDATE _envplane_meta SET environment_id = 'env_forged', org_id = 'org_forged'"},
			// The ledger no longer reads as written (it answered 500).
			{"version", "UPDATE _envplane_migrations SET version = 'x' WHERE version = (SELECT max(version) FROM _envplane_migrations)"},
		} {
			t.Run(target.name+"/"+tc.slug, func(t *testing.T) {
				tamperedSystemTables(t, h, target.name, target.sqlDriver, target.name+"-"+tc.slug, tc.tamper)
			})
		}
	}
}

func tamperedSystemTables(t *testing.T, h *harness, target, sqlDriver, slug, tamper string) {
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": slug, "type": "development", "target": target})
	path := "/v1/organizations/acme/environments/" + slug
	h.must(t, http.StatusOK, h.admin, "POST", path+"/schema/migrate", nil)

	var conn cp.Connection
	h.must(t, http.StatusOK, h.admin, "GET", path+"/connection?scope=readwrite", nil).decode(t, &conn)
	db, err := sql.Open(sqlDriver, conn.DSN.Reveal())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(tamper); err != nil {
		t.Fatalf("tamper: %v", err)
	}
	ledger := func() int {
		var n int
		if err := db.QueryRow("SELECT count(*) FROM _envplane_migrations").Scan(&n); err != nil {
			t.Fatalf("count ledger rows: %v", err)
		}
		return n
	}
	before := ledger()

	wantProblem(t, h.do(t, h.admin, "POST", path+"/schema/migrate", nil), http.StatusConflict, cp.ETAMPERED, "")
	if after := ledger(); after != before {
		t.Fatalf("the refused migration changed the ledger: %d rows, then %d", before, after)
	}
	var st cp.SchemaStatus
	h.must(t, http.StatusOK, h.admin, "GET", path+"/schema", nil).decode(t, &st)
	if len(st.Tampered) == 0 {
		t.Fatalf("the schema status does not report the tampering: %+v", st)
	}
	clone := map[string]any{"slug": slug + "-copy", "type": "development", "from_environment": slug, "clone": "full"}
	wantProblem(t, h.do(t, h.admin, "POST", "/v1/organizations/acme/environments", clone), http.StatusConflict, cp.ETAMPERED, "")
	h.must(t, http.StatusNotFound, h.admin, "GET", "/v1/organizations/acme/environments/"+slug+"-copy", nil)
}
