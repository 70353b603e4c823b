package httpapi_test

import (
	"net/http"
	"testing"

	cp "github.com/envplane/envplane/controlplane"
)

// TestTamperedSystemTables: on the SQLite target, where the engine cannot
// refuse it, an application's readwrite credential deletes the migration
// ledger of one environment and forges the owner row of another. Migrating
// either answers 409 tampered (never 500, never a migration run again),
// reading the schema reports what was found, and neither can be cloned.
func TestTamperedSystemTables(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	for _, tc := range []struct {
		slug, tamper string
	}{
		{"ledger", "DELETE FROM _envplane_migrations"},
		{"owner", "UPDATE _envplane_meta SET environment_id = 'env_forged', org_id = 'org_forged'"},
	} {
		t.Run(tc.slug, func(t *testing.T) {
			h.env(t, h.admin, "acme", tc.slug, "development")
			path := "/v1/organizations/acme/environments/" + tc.slug
			h.must(t, http.StatusOK, h.admin, "POST", path+"/schema/migrate", nil)

			var conn cp.Connection
			h.must(t, http.StatusOK, h.admin, "GET", path+"/connection?scope=readwrite", nil).decode(t, &conn)
			db := openDSN(t, conn.DSN)
			if _, err := db.Exec(tc.tamper); err != nil {
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
			clone := map[string]any{"slug": tc.slug + "-copy", "type": "development", "from_environment": tc.slug, "clone": "full"}
			wantProblem(t, h.do(t, h.admin, "POST", "/v1/organizations/acme/environments", clone), http.StatusConflict, cp.ETAMPERED, "")
			h.must(t, http.StatusNotFound, h.admin, "GET", "/v1/organizations/acme/environments/"+tc.slug+"-copy", nil)
		})
	}
}
