package sqlstore_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/keyring/local"
	"github.com/envplane/envplane/controlplane/scaletest"
	"github.com/envplane/envplane/controlplane/store/postgres"
	"github.com/envplane/envplane/controlplane/store/sqlstore"
	"github.com/envplane/envplane/drivers/drivertest"
)

// orgTables are the tables row-level security guards, each with the
// expression naming a row's organization.
var orgTables = map[string]string{
	"organizations": "id", "org_members": "org_id", "environments": "org_id", "api_keys": "org_id",
	"environment_databases": "org_id", "database_credentials": "org_id", "environment_members": "org_id",
	"operations": "org_id", "audit_events": "org_id", "changes": "org_id", "router_receipts": "org_id",
	"backups": "org_id", "rollouts": "org_id", "rollout_items": "org_id", "invitations": "org_id",
}

// rlsStore opens a store as the least-privileged store user on a fresh
// database seeded with two organizations (two environments each, with
// their databases, credentials, members, keys and audit events).
func rlsStore(t *testing.T) (*postgres.Store, string, [2]string) {
	t.Helper()
	u := drivertest.NewPostgresStoreDatabase(t)
	s, err := postgres.Open(t.Context(), u)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	kr, _, err := local.EnsureFile(t.TempDir() + "/master.key")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := scaletest.Seed(t.Context(), s, kr, scaletest.Options{Environments: 4, PerOrg: 2, Now: time.Now(), Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(reg.Orgs) != 2 {
		t.Fatalf("seeded %d organizations, want 2", len(reg.Orgs))
	}
	return s, u, [2]string{reg.Orgs[0].ID, reg.Orgs[1].ID}
}

// orgsSeen runs a deliberately unscoped query (no organization filter)
// through the store's own statement path and returns the organizations of
// the rows it got back.
func orgsSeen(t *testing.T, db sqlstore.Conn, ctx context.Context, table, col string) map[string]int {
	t.Helper()
	rows, err := db.QueryContext(ctx, "SELECT coalesce("+col+", '') FROM "+table)
	if err != nil {
		t.Fatalf("%s: %v", table, err)
	}
	defer rows.Close()
	seen := map[string]int{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		seen[id]++
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", table, err)
	}
	return seen
}

// TestUnscopedQuerySeesNoOtherOrganization forgets the organization
// filter on purpose: in one organization's scope the query returns no row
// of the other, without a scope it returns nothing, and only the platform
// scope sees both.
func TestUnscopedQuerySeesNoOtherOrganization(t *testing.T) {
	s, _, orgs := rlsStore(t)
	a, b := orgs[0], orgs[1]
	ctx := t.Context()
	platform := map[string]map[string]int{}
	for table, col := range orgTables {
		platform[table] = orgsSeen(t, s.Pool(), controlplane.WithPlatformScope(ctx), table, col)
	}
	// The seed must have given both organizations rows where it writes
	// them, or the test below proves nothing.
	for _, table := range []string{"organizations", "org_members", "environments", "api_keys", "environment_databases", "database_credentials", "audit_events"} {
		if platform[table][a] == 0 || platform[table][b] == 0 {
			t.Fatalf("the platform scope sees %v in %s, want rows of both %s and %s", platform[table], table, a, b)
		}
	}
	for table, col := range orgTables {
		seen := orgsSeen(t, s.Pool(), controlplane.WithOrgScope(ctx, a), table, col)
		if table == "changes" {
			// A change for everyone names no organization; all may read it.
			delete(seen, "")
		}
		for org, n := range seen {
			if org != a {
				t.Errorf("scoped to %s, an unfiltered read of %s returned %d rows of %q", a, table, n, org)
			}
		}
		if seen[a] != platform[table][a] {
			t.Errorf("scoped to %s, %s shows %d of its rows, want all %d", a, table, seen[a], platform[table][a])
		}
		if seen := orgsSeen(t, s.Pool(), ctx, table, col); len(seen) != 0 && (table != "changes" || len(seen) > 1 || seen[""] == 0) {
			t.Errorf("without a scope, %s returned rows of %v, want none", table, seen)
		}
	}
	// The same holds inside a transaction.
	err := s.WithTx(controlplane.WithOrgScope(ctx, b), func(q controlplane.Queries) error {
		seen := orgsSeen(t, sqlstore.ConnOf(q), ctx, "environments", "org_id")
		if len(seen) != 1 || seen[b] == 0 {
			t.Errorf("a transaction scoped to %s sees environments of %v", b, seen)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A write for another organization is refused, not made.
	_, err = s.Pool().ExecContext(controlplane.WithOrgScope(ctx, a),
		`UPDATE environments SET name = 'taken over' WHERE org_id = $1`, b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetEnvironment(controlplane.WithOrgScope(ctx, a), b, "env-0"); !controlplane.IsCode(err, controlplane.ENOTFOUND) {
		t.Errorf("scoped to %s, another organization's environment is %v, want ENOTFOUND", a, err)
	}
	var renamed int
	if err := s.Pool().QueryRowContext(controlplane.WithPlatformScope(ctx), `SELECT count(*) FROM environments WHERE name = 'taken over'`).Scan(&renamed); err != nil {
		t.Fatal(err)
	}
	if renamed != 0 {
		t.Errorf("an update scoped to %s renamed %d environments of %s", a, renamed, b)
	}
	_, err = s.Pool().ExecContext(controlplane.WithOrgScope(ctx, a),
		`INSERT INTO audit_events (id, org_id, actor, action, created_at) VALUES ('evt_x', $1, 'x', 'x', now())`, b)
	if err == nil || !strings.Contains(err.Error(), "row-level security") {
		t.Errorf("an insert scoped to %s of a row of %s: %v, want refused by row-level security", a, b, err)
	}
}

// TestTransactionWithoutScopeSeesNothing connects as the store user
// around the store, as code that forgot SET LOCAL would: its transaction
// sees no organization's rows and cannot write one.
func TestTransactionWithoutScopeSeesNothing(t *testing.T) {
	_, u, orgs := rlsStore(t)
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	for table := range orgTables {
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		if n != 0 {
			t.Errorf("a transaction without SET LOCAL sees %d rows of %s, want none", n, table)
		}
	}
	tag, err := tx.Exec(ctx, `DELETE FROM environments WHERE org_id = $1`, orgs[0])
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != 0 {
		t.Errorf("a transaction without SET LOCAL deleted %d environments", tag.RowsAffected())
	}
	// SET LOCAL opens exactly one organization, for this transaction only.
	if _, err := tx.Exec(ctx, "SELECT set_config('app.current_org_id', $1, true)", orgs[0]); err != nil {
		t.Fatal(err)
	}
	var mine, theirs int
	if err := tx.QueryRow(ctx, `SELECT count(*) FILTER (WHERE org_id = $1), count(*) FILTER (WHERE org_id <> $1) FROM environments`, orgs[0]).Scan(&mine, &theirs); err != nil {
		t.Fatal(err)
	}
	if mine != 2 || theirs != 0 {
		t.Errorf("after SET LOCAL the transaction sees %d of its environments and %d of another's, want 2 and 0", mine, theirs)
	}
}

// TestScopeEndsWithItsStatement checks the claim the store relies on: the
// scope set in a statement's own transaction holds for that statement and
// is gone from the connection after it.
func TestScopeEndsWithItsStatement(t *testing.T) {
	u, err := url.Parse(drivertest.NewPostgresStoreDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("pool_max_conns", "1") // every statement on the same connection
	u.RawQuery = q.Encode()
	s, err := postgres.Open(t.Context(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	var during string
	if err := s.Pool().QueryRowContext(controlplane.WithOrgScope(ctx, "org_a"), `SELECT current_setting('app.current_org_id', true)`).Scan(&during); err != nil {
		t.Fatal(err)
	}
	if during != "org_a" {
		t.Errorf("during the statement the scope is %q, want org_a", during)
	}
	var after string
	if err := s.DB().QueryRowContext(ctx, `SELECT coalesce(current_setting('app.current_org_id', true), '')`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != "" {
		t.Errorf("after the statement its connection keeps the scope %q", after)
	}
}

// TestOpenRefusesBypass opens the store as users row-level security would
// not hold: Open refuses, saying why, and migrates nothing.
func TestOpenRefusesBypass(t *testing.T) {
	for _, c := range []struct {
		name, role, attrs, want string
	}{
		{"bypassrls", "envplane_bypass_test", "LOGIN NOSUPERUSER BYPASSRLS", "has BYPASSRLS"},
		{"superuser", "", "", "is a superuser"},
		// It could SET ROLE envplane_bypass_test.
		{"member of a bypassrls role", "envplane_bypass_member_test", "LOGIN NOSUPERUSER NOBYPASSRLS IN ROLE envplane_bypass_test", `is a member of "envplane_bypass_test"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			admin := drivertest.NewPostgresDatabase(t)
			u, err := url.Parse(admin)
			if err != nil {
				t.Fatal(err)
			}
			drivertest.EnsurePostgresRole(t, "envplane_bypass_test", "LOGIN NOSUPERUSER BYPASSRLS")
			if c.role != "" {
				drivertest.EnsurePostgresRole(t, c.role, c.attrs)
				u.User = url.UserPassword(c.role, c.role)
			}
			s, err := postgres.Open(t.Context(), u.String())
			if err == nil {
				_ = s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "row-level security") {
				t.Errorf("Open's error %q does not say the user %s", err, c.want)
			}
			if strings.Contains(err.Error(), c.role+"@") || (c.role != "" && strings.Contains(err.Error(), ":"+c.role)) {
				t.Errorf("Open's error reveals the password")
			}
			conn, err := pgx.Connect(t.Context(), admin)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			var tables int
			if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&tables); err != nil {
				t.Fatal(err)
			}
			if tables != 0 {
				t.Errorf("a refused Open left %d tables", tables)
			}
		})
	}
}
