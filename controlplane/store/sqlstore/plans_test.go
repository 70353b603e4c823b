package sqlstore_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/keyring/local"
	"github.com/envplane/envplane/controlplane/scaletest"
	"github.com/envplane/envplane/controlplane/store/postgres"
	"github.com/envplane/envplane/controlplane/store/sqlite"
	"github.com/envplane/envplane/controlplane/store/sqlstore"
	"github.com/envplane/envplane/controlplane/store/storetest"
	"github.com/envplane/envplane/drivers/drivertest"
)

// recorded is one statement the store sent.
type recorded struct {
	query string
	args  []any
}

// recorder passes statements on to db and remembers them, so a test can
// EXPLAIN exactly what the store runs.
type recorder struct {
	db    sqlstore.Conn
	mu    sync.Mutex
	stmts []recorded
}

func (r *recorder) add(query string, args []any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stmts = append(r.stmts, recorded{query, args})
}

func (r *recorder) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	r.add(query, args)
	return r.db.ExecContext(ctx, query, args...)
}

func (r *recorder) QueryContext(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	r.add(query, args)
	return r.db.QueryContext(ctx, query, args...)
}

func (r *recorder) QueryRowContext(ctx context.Context, query string, args ...any) sqlstore.Row {
	r.add(query, args)
	return r.db.QueryRowContext(ctx, query, args...)
}

// TestSQLiteBackgroundPassesUseIndexes runs every background pass's store call
// on a seeded store (as opened in production, never ANALYZEd), takes the
// statements it sent, and checks their EXPLAIN QUERY PLAN: each names the
// index it must use, and none reads a per-environment table whole except
// through a partial index of due work.
func TestSQLiteBackgroundPassesUseIndexes(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := sqlite.Open(ctx, filepath.Join(dir, "controlplane.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	kr, _, err := local.EnsureFile(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	reg, err := scaletest.Seed(ctx, s, kr, scaletest.Options{Environments: 1000, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range storetest.Passes(now, "null", reg.Orgs[0].ID) {
		t.Run(p.Name, func(t *testing.T) {
			rec := &recorder{db: s.Pool()}
			if err := p.Call(ctx, s.QueriesOn(rec)); err != nil {
				t.Fatal(err)
			}
			if len(rec.stmts) == 0 {
				t.Fatal("the call sent no statement")
			}
			for _, st := range rec.stmts {
				plan := explainSQLite(t, s.DB(), st)
				for _, idx := range p.Indexes {
					if !strings.Contains(plan, " "+idx+" ") && !strings.HasSuffix(plan, " "+idx) && !strings.Contains(plan, " "+idx+"\n") {
						t.Errorf("the plan does not use %s:\n%s\n%s", idx, st.query, plan)
					}
				}
				aliases := tableAliases(st.query)
				for line := range strings.Lines(plan) {
					if bad := wholeScan(strings.TrimSpace(line), aliases, p); bad != "" {
						t.Errorf("the plan reads %s whole:\n%s\n%s", bad, st.query, plan)
					}
				}
			}
		})
	}
}

// aliasPattern finds "FROM table alias" and "JOIN table alias".
var aliasPattern = regexp.MustCompile(`(?i)\b(?:FROM|JOIN)\s+(\w+)\s+(?:AS\s+)?(\w+)`)

// tableAliases maps the aliases a query gives its tables to the tables: plans
// name a table by its alias.
func tableAliases(query string) map[string]string {
	m := map[string]string{}
	for _, g := range aliasPattern.FindAllStringSubmatch(query, -1) {
		m[g[2]] = g[1]
	}
	return m
}

// wholeScan returns the large table a plan line reads whole ("SCAN t", or
// "SCAN t USING ... INDEX i" where i is not one of the pass's partial
// indexes), or "".
func wholeScan(line string, aliases map[string]string, p storetest.Pass) string {
	rest, ok := strings.CutPrefix(line, "SCAN ")
	if !ok {
		return ""
	}
	table, using, _ := strings.Cut(rest, " ")
	if t, ok := aliases[table]; ok {
		table = t
	}
	if !slices.Contains(storetest.LargeTables(), table) || slices.Contains(p.Whole, table) {
		return ""
	}
	for _, idx := range p.Indexes {
		if strings.Contains(using, "INDEX "+idx) {
			return ""
		}
	}
	return table
}

// explainSQLite returns the EXPLAIN QUERY PLAN of st, one detail per line.
func explainSQLite(t *testing.T, db *sql.DB, st recorded) string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+st.query, st.args...)
	if err != nil {
		t.Fatalf("explain %s: %v", st.query, err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		b.WriteString(detail + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestPostgresBackgroundPassesUseIndexes runs every background pass's store call
// on a seeded, analyzed store, takes the statements it sent, and checks
// their EXPLAIN with sequential scans discouraged (enable_seqscan off, so
// the plan is the one the registry gets once it is large): each names the
// index it must use, and none reads a per-environment table with a
// sequential scan.
func TestPostgresBackgroundPassesUseIndexes(t *testing.T) {
	// Background passes run in the platform scope (adr/0027).
	ctx := controlplane.WithPlatformScope(t.Context())
	s, err := postgres.Open(ctx, drivertest.NewPostgresStoreDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	kr, _, err := local.EnsureFile(t.TempDir() + "/master.key")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	reg, err := scaletest.Seed(ctx, s, kr, scaletest.Options{Environments: 1000, Now: now, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx, "ANALYZE"); err != nil {
		t.Fatal(err)
	}
	for _, p := range storetest.Passes(now, "null", reg.Orgs[0].ID) {
		t.Run(p.Name, func(t *testing.T) {
			rec := &recorder{db: s.Pool()}
			if err := p.Call(ctx, s.QueriesOn(rec)); err != nil {
				t.Fatal(err)
			}
			if len(rec.stmts) == 0 {
				t.Fatal("the call sent no statement")
			}
			for _, st := range rec.stmts {
				plan := explainPostgres(t, s.DB(), st)
				for _, idx := range p.Indexes {
					if !strings.Contains(plan, " using "+idx+" on ") && !strings.Contains(plan, "Bitmap Index Scan on "+idx+" ") {
						t.Errorf("the plan does not use %s:\n%s\n%s", idx, st.query, plan)
					}
				}
				for _, g := range seqScan.FindAllStringSubmatch(plan, -1) {
					if slices.Contains(storetest.LargeTables(), g[1]) && !slices.Contains(p.Whole, g[1]) {
						t.Errorf("the plan reads %s whole:\n%s\n%s", g[1], st.query, plan)
					}
				}
			}
		})
	}
}

// seqScan finds the tables a plan reads sequentially.
var seqScan = regexp.MustCompile(`Seq Scan on (\w+)`)

// explainPostgres returns the EXPLAIN of st with sequential scans
// discouraged.
func explainPostgres(t *testing.T, db *sql.DB, st recorded) string {
	t.Helper()
	ctx := t.Context()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, "SELECT set_config('app.platform_scope', 'on', true)"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.QueryContext(ctx, "EXPLAIN "+st.query, st.args...)
	if err != nil {
		t.Fatalf("explain %s: %v", st.query, err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatalf("explain %s: %v", st.query, err)
		}
		lines = append(lines, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("explain %s: %v", st.query, err)
	}
	return strings.Join(lines, "\n")
}

// TestSQLiteGetEnvironmentLooksUpBothIndexes checks the plan of the
// environment lookup every connection request makes: SQLite must look the
// id and the live slug up in their indexes (a multi-index OR), not read the
// organization's environments. Reusing one numbered parameter in both
// branches of the OR lets SQLite factor the organization out and scan it.
func TestSQLiteGetEnvironmentLooksUpBothIndexes(t *testing.T) {
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "controlplane.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := &recorder{db: s.Pool()}
	if _, err := s.QueriesOn(rec).GetEnvironment(t.Context(), "org_1", "dev"); !controlplane.IsCode(err, controlplane.ENOTFOUND) {
		t.Fatalf("GetEnvironment on an empty store: %v, want ENOTFOUND", err)
	}
	if len(rec.stmts) != 1 {
		t.Fatalf("GetEnvironment sent %d statements, want 1", len(rec.stmts))
	}
	plan := explainSQLite(t, s.DB(), rec.stmts[0])
	for _, want := range []string{"MULTI-INDEX OR", "environments_live_slug (org_id=? AND slug=?)"} {
		if !strings.Contains(plan, want) {
			t.Errorf("the plan lacks %q:\n%s\n%s", want, rec.stmts[0].query, plan)
		}
	}
}
