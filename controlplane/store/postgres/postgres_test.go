package postgres_test

import (
	"context"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/store/postgres"
	"github.com/envplane/envplane/controlplane/store/storetest"
	"github.com/envplane/envplane/drivers/drivertest"
	"github.com/envplane/envplane/migrations"
)

// openStore opens a store on url and closes it when the test ends. A
// context without a store scope has the platform scope.
func openStore(tb testing.TB, url string, opts ...postgres.Option) *postgres.Store {
	tb.Helper()
	s, err := postgres.OpenPlatform(tb.Context(), url, opts...)
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close store: %v", err)
		}
	})
	return s
}

// TestConformance runs the suite as a serving user that owns nothing and
// holds only its database's runtime role (adr/0030), which proves the
// role's grants are all the store needs.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(tb testing.TB) controlplane.Store {
		serveURL, migrateURL := drivertest.NewPostgresRuntimeStore(tb)
		return openStore(tb, serveURL, postgres.MigrateAs(migrateURL))
	})
}

func TestReopenKeepsData(t *testing.T) {
	url := drivertest.NewPostgresStoreDatabase(t)
	first := openStore(t, url)
	org := &controlplane.Organization{ID: "org_1", Slug: "acme", Name: "Acme", CreatedAt: time.Now(), UpdatedAt: time.Now()}
	must(t, first.CreateOrganization(t.Context(), org))
	must(t, first.Close())

	second := openStore(t, url)
	got, err := second.GetOrganization(t.Context(), "acme")
	must(t, err)
	if !got.CreatedAt.Equal(org.CreatedAt) {
		t.Errorf("reopened organization created at %v, want %v", got.CreatedAt, org.CreatedAt)
	}
	wantEachMigrationOnce(t, url)
}

// TestConcurrentOpenMigratesOnce starts replicas together on an empty
// database: the advisory lock lets one migrate while the others wait.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	const replicas = 3
	url := drivertest.NewPostgresStoreDatabase(t)
	stores := make([]*postgres.Store, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() { stores[i], errs[i] = postgres.Open(t.Context(), url) })
	}
	wg.Wait()
	for i, s := range stores {
		if errs[i] != nil {
			t.Errorf("replica %d: %v", i, errs[i])
			continue
		}
		must(t, s.Ping(t.Context()))
		must(t, s.Close())
	}
	wantEachMigrationOnce(t, url)
}

// wantEachMigrationOnce fails unless goose recorded every embedded
// migration exactly once.
func wantEachMigrationOnce(tb testing.TB, url string) {
	tb.Helper()
	files, err := fs.Glob(migrations.ControlPlanePostgres(), "*.sql")
	must(tb, err)
	conn := connect(tb, url)
	var applied, distinct int
	must(tb, conn.QueryRow(tb.Context(), `SELECT count(*), count(DISTINCT version_id) FROM goose_db_version
		WHERE version_id > 0`).Scan(&applied, &distinct))
	if applied != len(files) || distinct != len(files) {
		tb.Errorf("goose recorded %d migrations for %d versions, want each of the %d files once", applied, distinct, len(files))
	}
}

// TestAuditEventsAreAppendOnly goes around the store: even raw SQL cannot
// change, remove or truncate an audit event.
func TestAuditEventsAreAppendOnly(t *testing.T) {
	url := drivertest.NewPostgresStoreDatabase(t)
	s := openStore(t, url)
	must(t, s.AppendAuditEvent(t.Context(), &controlplane.AuditEvent{ID: "evt_1", OrgID: "org_1", Actor: "usr_1",
		Action: "organization.create", CreatedAt: time.Now()}))
	// As a superuser, whom row-level security does not hold: the
	// trigger alone refuses.
	conn := connect(t, drivertest.PostgresAdminURLFor(t, url))
	for _, stmt := range []string{
		`UPDATE audit_events SET actor = 'someone else'`,
		`DELETE FROM audit_events`,
		`TRUNCATE audit_events`,
	} {
		if _, err := conn.Exec(t.Context(), stmt); err == nil {
			t.Errorf("%s succeeded", stmt)
		}
	}
	events, _, err := s.ListAuditEvents(t.Context(), "org_1", controlplane.Page{})
	must(t, err)
	if len(events) != 1 || events[0].Actor != "usr_1" {
		t.Errorf("audit events after tampering = %+v, want the original one", events)
	}
}

func TestOpenFailsOnUnreachableServer(t *testing.T) {
	// Port 1 on loopback refuses connections; the password must not leak into the error.
	_, err := postgres.Open(t.Context(), "postgres://envplane:hunter2-secret@127.0.0.1:1/envplane?sslmode=disable&connect_timeout=2")
	if err == nil {
		t.Fatal("Open succeeded against a closed port")
	}
	if strings.Contains(err.Error(), "hunter2-secret") {
		t.Errorf("Open's error reveals the password")
	}
}

func connect(tb testing.TB, url string) *pgx.Conn {
	tb.Helper()
	conn, err := pgx.Connect(tb.Context(), url)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatalf("unexpected error: %v", err)
	}
}

func BenchmarkStore(b *testing.B) {
	storetest.Benchmark(b, func(tb testing.TB) controlplane.Store {
		return openStore(tb, drivertest.NewPostgresStoreDatabase(tb))
	})
}
