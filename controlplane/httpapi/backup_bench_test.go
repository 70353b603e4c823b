package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/drivers"
)

// benchDatabaseMB is the size of the database the backup benchmarks copy.
const benchDatabaseMB = 100

// fillSQL fills a table "blobs" with about benchDatabaseMB of random,
// incompressible bytes, per engine.
var fillSQL = map[string][]string{
	"sqlite": {
		"CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL)",
		fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d)
			INSERT INTO blobs SELECT i, randomblob(65536) FROM n`, benchDatabaseMB*16),
	},
	"pgx": {
		"CREATE TABLE blobs (id integer PRIMARY KEY, data bytea NOT NULL)",
		// Stored as is (no TOAST compression): random bytes would not shrink.
		"ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTERNAL",
		fmt.Sprintf(`INSERT INTO blobs SELECT i, (SELECT string_agg(uuid_send(gen_random_uuid()), ''::bytea) FROM generate_series(1, 4096) WHERE i > 0)
			FROM generate_series(1, %d) AS i`, benchDatabaseMB*16),
	},
}

// BenchmarkBackupRestore100MB takes a backup of a 100 MB database through
// the API (the engine's copy, sealed in chunks, checksummed and stored)
// and restores it into a new environment (checked against its checksum,
// opened, restored, verified), on the SQLite and the PostgreSQL targets.
// Throughput (MB/s) is of the database's size as the engine reports it.
func BenchmarkBackupRestore100MB(b *testing.B) {
	h, _ := pgHarness(b)
	ctx := context.Background()
	for _, c := range []struct{ target, sqlDriver string }{{"local", "sqlite"}, {"pg", "pgx"}} {
		b.Run(c.target, func(b *testing.B) {
			src := "big-" + c.target
			v := h.must(b, http.StatusCreated, h.admin, "POST", "/v1/organizations/bench/environments", map[string]any{"slug": src, "type": "staging", "target": c.target}).environment(b)
			e := envSQL{h: h, org: "bench", sqlDriver: c.sqlDriver}
			db := e.open(b, src, "admin")
			for _, q := range fillSQL[c.sqlDriver] {
				if _, err := db.ExecContext(ctx, q); err != nil {
					b.Fatalf("fill: %v", err)
				}
			}
			size := databaseSize(b, h, v.ID)
			b.Logf("%s database: %.1f MB", c.target, float64(size)/1e6)

			var backup *cp.Backup
			b.Run("backup", func(b *testing.B) {
				b.SetBytes(size)
				for b.Loop() {
					backup = h.backup(b, "bench", src)
				}
				b.ReportMetric(float64(backup.SizeBytes)/1e6, "stored-MB")
			})
			b.Run("restore", func(b *testing.B) {
				b.SetBytes(size)
				n := 0
				for b.Loop() {
					n++
					into := fmt.Sprintf("%s-r%d", src, n)
					r := h.must(b, http.StatusCreated, h.admin, "POST", "/v1/organizations/bench/environments/"+src+"/restore",
						map[string]any{"backup_id": backup.ID, "into": into}, "Prefer", "wait=120")
					if v := r.environment(b); v.Status != cp.StatusActive {
						b.Fatalf("restore: %s (%s)", v.Status, v.Error)
					}
				}
			})
		})
	}
}

// databaseSize measures an environment's database through its target.
func databaseSize(tb testing.TB, h *harness, envID string) int64 {
	tb.Helper()
	db, err := h.svc.Store.GetEnvironmentDatabase(cp.WithPlatformScope(context.Background()), envID)
	if err != nil {
		tb.Fatal(err)
	}
	u, err := h.svc.Targets[db.Target].Driver.(drivers.UsageReporter).Usage(context.Background(), db.DriverDatabase())
	if err != nil {
		tb.Fatalf("usage: %v", err)
	}
	return u.SizeBytes
}
