package postgres_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/envplane/envplane/controlplane/store/postgres"
	"github.com/envplane/envplane/drivers/drivertest"
)

// TestUsageTriggerKeepsToThePrimaryKey: a session that first writes
// databases while the registry is small caches org_target_usage_db's plan
// (plpgsql plans generically after five runs), and keeps it while the
// registry grows until ANALYZE replans, which never comes on a server
// without autovacuum. Its lookup of the environment must be one that only
// the primary key answers: with "AND deleted_at IS NULL" the partial index
// environments_live_slug matched it too, and the cached plan scanned every
// live environment for each database insert and usage update (adr/0024,
// migration 00013). auto_explain reports the trigger's plans to the client.
func TestUsageTriggerKeepsToThePrimaryKey(t *testing.T) {
	serveURL, migrateURL := drivertest.NewPostgresRuntimeStore(t)
	s, err := postgres.Open(t.Context(), serveURL, postgres.MigrateAs(migrateURL))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })

	cfg, err := pgx.ParseConfig(migrateURL)
	if err != nil {
		t.Fatal(err)
	}
	// pgconn calls OnNotice while it reads a statement's results, on the
	// goroutine that runs the statement.
	var plans []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { plans = append(plans, n.Message) }
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	exec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(t.Context(), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// As the serving user, under row-level security, in the platform
	// scope, as background passes and seeding write.
	exec("LOAD 'auto_explain'")
	exec("SET auto_explain.log_min_duration = 0")
	exec("SET auto_explain.log_nested_statements = on")
	exec("SET auto_explain.log_level = notice")
	exec("SET ROLE " + pgx.Identifier{drivertest.PostgresRuntimeRole}.Sanitize())
	exec("SELECT set_config('app.platform_scope', 'on', false)")
	exec(`INSERT INTO organizations (id, slug, name, created_at, updated_at)
		SELECT 'org' || i, 'o' || i, 'O', now(), now() FROM generate_series(1, 20) i`)
	exec(`INSERT INTO environments (id, org_id, slug, name, type, status, created_at, updated_at)
		SELECT 'env' || i, 'org' || (i % 20 + 1), 's' || i, 'n', 'development', 'active', now(), now() FROM generate_series(1, 10) i`)
	for i := 1; i <= 7; i++ {
		exec(fmt.Sprintf(`INSERT INTO environment_databases (id, environment_id, database_name, driver, target)
			VALUES ('db%d', 'env%[1]d', 'n%[1]d', 'null', 'null')`, i))
	}
	exec(`INSERT INTO environments (id, org_id, slug, name, type, status, created_at, updated_at)
		SELECT 'env' || i, 'org' || (i % 20 + 1), 's' || i, 'n', 'development', 'active', now(), now() FROM generate_series(11, 20000) i`)
	plans = nil
	exec(`INSERT INTO environment_databases (id, environment_id, database_name, driver, target, usage_bytes)
		VALUES ('db-late', 'env15000', 'n-late', 'null', 'null', 1)`)
	exec(`UPDATE environment_databases SET usage_bytes = 2 WHERE id = 'db-late'`)

	lookups := 0
	for _, p := range plans {
		if !strings.Contains(p, "FROM environments e WHERE e.id") {
			continue
		}
		lookups++
		if !strings.Contains(p, "environments_pkey") || strings.Contains(p, "environments_live_slug") {
			t.Errorf("a trigger's lookup of an environment is not by primary key:\n%s", p)
		}
	}
	// The insert's two triggers (environment_databases_org, and
	// org_target_usage_db) and the update's one.
	if lookups != 3 {
		t.Errorf("auto_explain reported %d lookups of the environment by triggers, want 3; plans:\n%s",
			lookups, strings.Join(plans, "\n---\n"))
	}
}
