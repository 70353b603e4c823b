package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/drivertest"
	pgdriver "github.com/envplane/envplane/drivers/postgres"
)

// pgHarness is a harness with a PostgreSQL target "pg" and an organization
// with room for every environment a benchmark makes.
func pgHarness(b *testing.B) (*harness, string) {
	b.Helper()
	admin := drivertest.PostgresAdminURL(b)
	pg, err := pgdriver.New(context.Background(), pgdriver.Config{AdminURL: drivers.Secret(admin), AppSSLMode: "disable"})
	if err != nil {
		b.Fatalf("postgres driver: %v", err)
	}
	b.Cleanup(pg.Close)
	h := newHarness(b, withTargets(&cp.Target{Name: "pg", Region: "local", Driver: pg}))
	h.must(b, http.StatusCreated, h.admin, "POST", "/v1/organizations", map[string]any{"slug": "bench", "max_environments": 100000})
	return h, admin
}

// percentile returns the p-th percentile (0..100) of ds, in milliseconds.
func percentile(ds []time.Duration, p int) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s) - 1) * p / 100
	return float64(s[i].Microseconds()) / 1000
}

// BenchmarkPostgresProvisionVsFloor provisions PostgreSQL environments
// through the API (database, owner and six login roles, grants, three
// credentials sealed, schema initialized) and, in turns within the same
// iteration so load falls on both alike, the raw floor: CREATE DATABASE and
// the seven CREATE ROLE by plain SQL. It reports p50 and p95 of each and
// the ratio of the medians.
func BenchmarkPostgresProvisionVsFloor(b *testing.B) {
	h, admin := pgHarness(b)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close(ctx) })
	var api, floor []time.Duration
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		h.must(b, http.StatusCreated, h.admin, "POST", "/v1/organizations/bench/environments", map[string]any{"slug": fmt.Sprintf("e%d", i), "type": "development", "target": "pg"})
		api = append(api, time.Since(start))

		name := "env_floor" + drivertest.RandomSuffix(b)
		roles := []string{name + "_owner"}
		for _, scope := range []string{"admin", "readwrite", "readonly"} {
			roles = append(roles, name+"_"+scope+"_a", name+"_"+scope+"_b")
		}
		batch := &pgx.Batch{}
		for _, r := range roles {
			batch.Queue("CREATE ROLE " + pgx.Identifier{r}.Sanitize() + " NOLOGIN")
		}
		start = time.Now()
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0 STRATEGY WAL_LOG"); err != nil {
			b.Fatalf("floor: %v", err)
		}
		if err := conn.SendBatch(ctx, batch).Close(); err != nil {
			b.Fatalf("floor roles: %v", err)
		}
		floor = append(floor, time.Since(start))
		b.StopTimer()
		if _, err := conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			b.Fatal(err)
		}
		for _, r := range roles {
			if _, err := conn.Exec(ctx, "DROP ROLE "+pgx.Identifier{r}.Sanitize()); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
	}
	b.ReportMetric(percentile(api, 50), "api-p50-ms")
	b.ReportMetric(percentile(api, 95), "api-p95-ms")
	b.ReportMetric(percentile(floor, 50), "floor-p50-ms")
	b.ReportMetric(percentile(floor, 95), "floor-p95-ms")
	b.ReportMetric(percentile(api, 50)/percentile(floor, 50), "api/floor")
}

// BenchmarkPostgresProvision50Parallel4 creates 50 PostgreSQL environments
// through the API with 4 clients at a time.
func BenchmarkPostgresProvision50Parallel4(b *testing.B) {
	h, _ := pgHarness(b)
	for i := 0; b.Loop(); i++ {
		slugs := make(chan string, 50)
		for j := range 50 {
			slugs <- fmt.Sprintf("r%d-e%d", i, j)
		}
		close(slugs)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for slug := range slugs {
					r := h.do(b, h.admin, "POST", "/v1/organizations/bench/environments", map[string]any{"slug": slug, "type": "development", "target": "pg"})
					if r.status != http.StatusCreated {
						b.Errorf("%s: status %d: %s", slug, r.status, r.body)
					}
				}
			})
		}
		wg.Wait()
	}
	b.ReportMetric(50*float64(b.N)/b.Elapsed().Seconds(), "envs/s")
}

// BenchmarkPostgresRotate rotates every scope of a PostgreSQL environment
// through the API with no grace, then ends the grace, so each rotation finds
// its standby slot free.
func BenchmarkPostgresRotate(b *testing.B) {
	h, _ := pgHarness(b)
	h.must(b, http.StatusCreated, h.admin, "POST", "/v1/organizations/bench/environments", map[string]any{"slug": "rot", "type": "development", "target": "pg"})
	ctx := context.Background()
	for b.Loop() {
		h.must(b, http.StatusOK, h.admin, "POST", "/v1/organizations/bench/environments/rot/credentials/rotate", map[string]any{"scope": "all", "grace_seconds": 0})
		if _, err := h.svc.RevokeDue(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rotations/s")
}
