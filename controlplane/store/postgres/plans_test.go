package postgres

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/envplane/envplane/controlplane/keyring/local"
	"github.com/envplane/envplane/controlplane/scaletest"
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
	db    dbtx
	mu    sync.Mutex
	stmts []recorded
}

func (r *recorder) add(query string, args []any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stmts = append(r.stmts, recorded{query, args})
}

func (r *recorder) Exec(ctx context.Context, query string, args ...any) (pgconn.CommandTag, error) {
	r.add(query, args)
	return r.db.Exec(ctx, query, args...)
}

func (r *recorder) Query(ctx context.Context, query string, args ...any) (pgx.Rows, error) {
	r.add(query, args)
	return r.db.Query(ctx, query, args...)
}

func (r *recorder) QueryRow(ctx context.Context, query string, args ...any) pgx.Row {
	r.add(query, args)
	return r.db.QueryRow(ctx, query, args...)
}

// TestBackgroundPassesUseIndexes runs every background pass's store call
// on a seeded, analyzed store, takes the statements it sent, and checks
// their EXPLAIN with sequential scans discouraged (enable_seqscan off, so
// the plan is the one the registry gets once it is large): each names the
// index it must use, and none reads a per-environment table with a
// sequential scan.
func TestBackgroundPassesUseIndexes(t *testing.T) {
	ctx := t.Context()
	s, err := OpenPlatform(ctx, drivertest.NewPostgresStoreDatabase(t))
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
	if _, err := s.pool.Exec(ctx, "ANALYZE"); err != nil {
		t.Fatal(err)
	}
	for _, p := range storetest.Passes(now, "null", reg.Orgs[0].ID) {
		t.Run(p.Name, func(t *testing.T) {
			rec := &recorder{db: s.scoped}
			if err := p.Call(ctx, &queries{db: rec}); err != nil {
				t.Fatal(err)
			}
			if len(rec.stmts) == 0 {
				t.Fatal("the call sent no statement")
			}
			for _, st := range rec.stmts {
				plan := explain(t, s, st)
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

// explain returns the EXPLAIN of st with sequential scans discouraged.
func explain(t *testing.T, s *Store, st recorded) string {
	t.Helper()
	ctx := t.Context()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, setScope, s.scoped.scopeArgs(ctx)...); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(ctx, "EXPLAIN "+st.query, st.args...)
	if err != nil {
		t.Fatalf("explain %s: %v", st.query, err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("explain %s: %v", st.query, err)
	}
	return strings.Join(lines, "\n")
}
