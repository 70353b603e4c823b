package scaletest_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/keyring/local"
	"github.com/envplane/envplane/controlplane/scaletest"
	pgstore "github.com/envplane/envplane/controlplane/store/postgres"
	sqlitestore "github.com/envplane/envplane/controlplane/store/sqlite"
	"github.com/envplane/envplane/drivers/drivertest"
)

// stores opens a fresh store of each kind and a local keyring, and returns
// the PostgreSQL store's URL too.
func stores(tb testing.TB) (map[string]cp.Store, cp.Keyring, string) {
	tb.Helper()
	dir := tb.TempDir()
	kr, _, err := local.EnsureFile(filepath.Join(dir, "master.key"))
	if err != nil {
		tb.Fatal(err)
	}
	lite, err := sqlitestore.Open(context.Background(), filepath.Join(dir, "controlplane.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { lite.Close() })
	pgURL := drivertest.NewPostgresStoreDatabase(tb)
	pg, err := pgstore.Open(context.Background(), pgURL)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pg.Close() })
	return map[string]cp.Store{"sqlite": lite, "postgres": pg}, kr, pgURL
}

// TestSeed seeds 250 environments (three organizations, the last one
// partial) and reads them back as the service would: counts, the app key,
// and a credential that unseals.
func TestSeed(t *testing.T) {
	all, kr, _ := stores(t)
	for name, s := range all {
		t.Run(name, func(t *testing.T) {
			// The test reads the store directly, as the platform would.
			ctx := cp.WithPlatformScope(t.Context())
			reg, err := scaletest.Seed(ctx, s, kr, scaletest.Options{Environments: 250})
			if err != nil {
				t.Fatal(err)
			}
			if len(reg.Orgs) != 3 {
				t.Fatalf("%d organizations, want 3", len(reg.Orgs))
			}
			want := []int{100, 100, 50}
			for i, o := range reg.Orgs {
				n, err := s.CountEnvironments(ctx, o.ID)
				if err != nil {
					t.Fatal(err)
				}
				if n != want[i] || len(o.Envs) != want[i] {
					t.Errorf("organization %d: %d environments stored, %d returned, want %d", i, n, len(o.Envs), want[i])
				}
				ms, _, err := s.ListOrgMemberships(ctx, o.ID, cp.Page{})
				if err != nil || len(ms) != scaletest.MembersPerOrg {
					t.Errorf("organization %d: %d memberships (%v), want %d", i, len(ms), err, scaletest.MembersPerOrg)
				}
				key, err := s.GetAPIKeyByHash(ctx, cp.HashToken(o.AppToken))
				if err != nil || key.OrgID != o.ID || key.EnvironmentID == "" {
					t.Errorf("organization %d: app key %+v, %v", i, key, err)
				}
			}
			last := reg.Orgs[2]
			route, err := s.ResolveRoute(ctx, cp.RouteQuery{OrgRef: last.Slug, EnvRef: last.Envs[49], Scope: "readonly"})
			if err != nil {
				t.Fatal(err)
			}
			c := route.Credential
			if c == nil {
				t.Fatal("no readonly credential")
			}
			if _, err := cp.Unseal(ctx, kr, cp.Sealed{SecretCipher: c.SecretCipher, DEKCipher: c.DEKCipher, KeyID: c.KMSKeyID}, c.ID, c.DatabaseID); err != nil {
				t.Errorf("the seeded credential does not unseal: %v", err)
			}
			creds, err := s.CountCredentials(ctx, cp.CredentialFilter{DatabaseID: route.Database.ID})
			if err != nil || creds != scaletest.CredentialsPerEnv {
				t.Errorf("%d credentials (%v), want %d", creds, err, scaletest.CredentialsPerEnv)
			}
			ops, _, err := s.ListOperations(ctx, cp.OperationFilter{OrgID: last.ID, EnvironmentIDs: []string{route.Environment.ID}}, cp.Page{})
			if err != nil || len(ops) != 1 || ops[0].Status != cp.OpSucceeded {
				t.Errorf("operations %v, %v: want one succeeded provision", ops, err)
			}
			events, _, err := s.ListAuditEvents(ctx, last.ID, cp.Page{Limit: 500})
			if err != nil || len(events) != 50*scaletest.AuditPerEnv {
				t.Errorf("%d audit events (%v), want %d", len(events), err, 50*scaletest.AuditPerEnv)
			}
		})
	}
}

// TestSeedAnalyzes: Seed calls Options.Analyze after every AnalyzeEvery
// environments and at the end, stops at its error, and with
// drivertest.Analyze leaves PostgreSQL statistics of the seeded rows (the
// shared test server runs without autovacuum, so nothing else would).
func TestSeedAnalyzes(t *testing.T) {
	all, kr, pgURL := stores(t)
	calls := 0
	count := func(context.Context) error { calls++; return nil }
	// Five organizations of 50, analyzed every 100: after the second and
	// the fourth organization, and at the end.
	o := scaletest.Options{Environments: 250, PerOrg: 50, AnalyzeEvery: 100, Analyze: count, Prefix: "counted"}
	if _, err := scaletest.Seed(t.Context(), all["sqlite"], kr, o); err != nil {
		t.Fatal(err)
	}
	if calls != 3 {
		t.Errorf("Analyze called %d times, want 3", calls)
	}

	o.Prefix, o.Analyze = "failing", func(context.Context) error { return errors.New("no statistics today") }
	if _, err := scaletest.Seed(t.Context(), all["sqlite"], kr, o); err == nil || !strings.Contains(err.Error(), "analyzing the store: no statistics today") {
		t.Errorf("a failing Analyze gave %v, want it named", err)
	}

	if _, err := scaletest.Seed(t.Context(), all["postgres"], kr, scaletest.Options{Environments: 120, Analyze: drivertest.Analyze(pgURL)}); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var tuples float64
	if err := conn.QueryRow(t.Context(), "SELECT reltuples FROM pg_class WHERE oid = 'environments'::regclass").Scan(&tuples); err != nil {
		t.Fatal(err)
	}
	if tuples != 120 {
		t.Errorf("the planner estimates %v environments, want the 120 seeded (ANALYZE ran)", tuples)
	}
}

// BenchmarkSeed reports how long seeding SCALE_ENVS environments (default
// 10,000) takes on each store, and environments per second.
func BenchmarkSeed(b *testing.B) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("SCALE_ENVS")); err == nil && v > 0 {
		n = v
	}
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			var took float64
			for b.Loop() {
				b.StopTimer()
				all, kr, pgURL := stores(b)
				o := scaletest.Options{Environments: n}
				if name == "postgres" {
					o.Analyze = drivertest.Analyze(pgURL)
				}
				b.StartTimer()
				reg, err := scaletest.Seed(context.Background(), all[name], kr, o)
				if err != nil {
					b.Fatal(err)
				}
				took += reg.Took.Seconds()
			}
			b.ReportMetric(took/float64(b.N), "seed-s")
			b.ReportMetric(float64(n)*float64(b.N)/took, "envs/s")
		})
	}
}
