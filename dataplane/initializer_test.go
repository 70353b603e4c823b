package dataplane_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/envplane/envplane/dataplane"
	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/drivertest"
	"github.com/envplane/envplane/drivers/sqlite"
	"github.com/envplane/envplane/migrations"
)

// engine is a real database to run the initializer on.
type engine struct {
	name    string
	dialect drivers.Dialect
	open    func(tb testing.TB) *sql.DB
}

func engines() []engine {
	return []engine{
		{"sqlite", drivers.DialectSQLite, openSQLite},
		{"postgres", drivers.DialectPostgres, openPostgres},
		// The libSQL executor's statement batch, run by a real SQLite engine:
		// libSQL speaks SQLite's SQL, so this checks the batch itself; the
		// Turso driver's tests cover the wire.
		{"libsql-batch-on-sqlite", drivers.DialectLibSQL, openSQLite},
	}
}

func openSQLite(tb testing.TB) *sql.DB {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "env.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		tb.Fatalf("open sqlite: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func openPostgres(tb testing.TB) *sql.DB {
	tb.Helper()
	db, err := sql.Open("pgx", drivertest.NewPostgresDatabase(tb))
	if err != nil {
		tb.Fatalf("open postgres: %v", err)
	}
	// Registered after NewPostgresDatabase's cleanup, so it runs first and
	// the database can be dropped.
	tb.Cleanup(func() { db.Close() })
	return db
}

// forEachEngine runs test on a fresh database of every engine.
func forEachEngine(t *testing.T, test func(t *testing.T, e engine, db *sql.DB)) {
	for _, e := range engines() {
		t.Run(e.name, func(t *testing.T) { test(t, e, e.open(t)) })
	}
}

// appDir is a directory of app migrations the test can edit.
type appDir string

func newAppDir(tb testing.TB, files map[string]string) appDir {
	tb.Helper()
	d := appDir(tb.TempDir())
	for name, body := range files {
		d.write(tb, name, body)
	}
	return d
}

func (d appDir) write(tb testing.TB, name, body string) {
	tb.Helper()
	if err := os.WriteFile(filepath.Join(string(d), name), []byte(body), 0o600); err != nil {
		tb.Fatal(err)
	}
}

func (d appDir) initializer() *dataplane.Initializer {
	return &dataplane.Initializer{System: migrations.DataPlane(), App: os.DirFS(string(d))}
}

var ownerA = dataplane.Owner{EnvironmentID: "env_a", OrgID: "org_1"}

func versions(ms []dataplane.Migration) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Namespace + "/" + m.File
	}
	return out
}

func count(tb testing.TB, db *sql.DB, query string) int {
	tb.Helper()
	var n int
	if err := db.QueryRow(query).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
	return n
}

func tableExists(tb testing.TB, db *sql.DB, d drivers.Dialect, table string) bool {
	tb.Helper()
	q := "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '" + table + "'"
	if d == drivers.DialectPostgres {
		q = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = '" + table + "'"
	}
	return count(tb, db, q) > 0
}

func TestApplyRunsEachMigrationOnceInVersionOrder(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, db *sql.DB) {
		ctx := context.Background()
		// Numeric order, not lexical: 10 needs the column that 2 adds.
		dir := newAppDir(t, map[string]string{
			"1_create_items.sql": "CREATE TABLE items (id INTEGER PRIMARY KEY, note TEXT NOT NULL);",
			"2_add_qty.sql":      "ALTER TABLE items ADD COLUMN qty INTEGER;",
			"10_seed.sql":        "INSERT INTO items (id, note, qty) VALUES (1, 'first', 2);\nINSERT INTO items (id, note, qty) VALUES (2, 'second', 3);",
			"README.md":          "not a migration",
		})
		in := dir.initializer()
		res, err := in.Apply(ctx, db, e.dialect, ownerA)
		if err != nil {
			t.Fatalf("apply: %v", err)
		}
		want := "system/0001_envplane_meta.sql app/1_create_items.sql app/2_add_qty.sql app/10_seed.sql"
		if got := strings.Join(versions(res.Applied), " "); got != want {
			t.Fatalf("applied %s, want %s", got, want)
		}
		if res.SchemaVersion != 10 {
			t.Fatalf("schema version %d, want 10", res.SchemaVersion)
		}

		again, err := in.Apply(ctx, db, e.dialect, ownerA)
		if err != nil {
			t.Fatalf("second apply: %v", err)
		}
		if len(again.Applied) != 0 || again.SchemaVersion != 10 {
			t.Fatalf("second apply ran %v, version %d; want nothing, 10", versions(again.Applied), again.SchemaVersion)
		}
		if n := count(t, db, "SELECT count(*) FROM items"); n != 2 {
			t.Fatalf("items holds %d rows, want 2: the seed ran more than once", n)
		}

		dir.write(t, "11_more.sql", "INSERT INTO items (id, note, qty) VALUES (3, 'third', 4);")
		third, err := in.Apply(ctx, db, e.dialect, ownerA)
		if err != nil {
			t.Fatalf("third apply: %v", err)
		}
		if got := strings.Join(versions(third.Applied), " "); got != "app/11_more.sql" || third.SchemaVersion != 11 {
			t.Fatalf("third apply ran %s, version %d; want app/11_more.sql, 11", got, third.SchemaVersion)
		}

		st, err := in.Status(ctx, db, e.dialect)
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		if len(st.Applied) != 5 || len(st.Pending) != 0 || len(st.Drift) != 0 || st.SchemaVersion != 11 || st.Owner != ownerA {
			t.Fatalf("status: %d applied, %d pending, %d drifted, version %d, owner %+v",
				len(st.Applied), len(st.Pending), len(st.Drift), st.SchemaVersion, st.Owner)
		}
		for _, m := range st.Applied {
			if m.AppliedAt.IsZero() || len(m.Checksum) != 64 {
				t.Errorf("ledger row %s/%d: applied_at %v, checksum %q", m.Namespace, m.Version, m.AppliedAt, m.Checksum)
			}
		}
	})
}

func TestStatusOfANewDatabaseWritesNothing(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, db *sql.DB) {
		in := newAppDir(t, map[string]string{"0001_a.sql": "CREATE TABLE a (x INTEGER);"}).initializer()
		st, err := in.Status(context.Background(), db, e.dialect)
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		if got := strings.Join(versions(st.Pending), " "); got != "system/0001_envplane_meta.sql app/0001_a.sql" {
			t.Fatalf("pending %s", got)
		}
		if len(st.Applied) != 0 || st.SchemaVersion != 0 || st.Owner != (dataplane.Owner{}) {
			t.Fatalf("a new database reports %d applied, version %d, owner %+v", len(st.Applied), st.SchemaVersion, st.Owner)
		}
		if tableExists(t, db, e.dialect, dataplane.LedgerTable) {
			t.Fatal("Status created the ledger")
		}
	})
}

func TestDriftIsReportedAndNothingIsApplied(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, db *sql.DB) {
		ctx := context.Background()
		dir := newAppDir(t, map[string]string{
			"0001_a.sql": "CREATE TABLE a (x INTEGER);",
			"0002_b.sql": "CREATE TABLE b (x INTEGER);",
		})
		in := dir.initializer()
		if _, err := in.Apply(ctx, db, e.dialect, ownerA); err != nil {
			t.Fatalf("apply: %v", err)
		}
		dir.write(t, "0002_b.sql", "CREATE TABLE b (x INTEGER, y INTEGER);")
		dir.write(t, "0003_c.sql", "CREATE TABLE c (x INTEGER);")

		st, err := in.Status(ctx, db, e.dialect)
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		if len(st.Drift) != 1 || st.Drift[0].Applied.Version != 2 || st.Drift[0].Applied.File != "0002_b.sql" ||
			st.Drift[0].FileChecksum == "" || st.Drift[0].FileChecksum == st.Drift[0].Applied.Checksum {
			t.Fatalf("drift %+v, want app/0002_b.sql with a new checksum", st.Drift)
		}

		_, err = in.Apply(ctx, db, e.dialect, ownerA)
		var drift *dataplane.DriftError
		if !errors.As(err, &drift) {
			t.Fatalf("apply over drift: %v, want a DriftError", err)
		}
		if len(drift.Drift) != 1 || !strings.Contains(err.Error(), "0002_b.sql") {
			t.Fatalf("drift error %q lists %d migrations", err, len(drift.Drift))
		}
		if tableExists(t, db, e.dialect, "c") {
			t.Fatal("apply ran a pending migration despite drift")
		}

		// A vanished file is drift too.
		if err := os.Remove(filepath.Join(string(dir), "0001_a.sql")); err != nil {
			t.Fatal(err)
		}
		st, err = in.Status(ctx, db, e.dialect)
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		if len(st.Drift) != 2 || st.Drift[0].Applied.Version != 1 || st.Drift[0].FileChecksum != "" {
			t.Fatalf("drift after removing 0001: %+v", st.Drift)
		}
	})
}

func TestFailingMigrationLeavesNoTrace(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, db *sql.DB) {
		ctx := context.Background()
		dir := newAppDir(t, map[string]string{
			"0001_a.sql":      "CREATE TABLE a (x INTEGER);",
			"0002_broken.sql": "CREATE TABLE half (x INTEGER);\nINSERT INTO half (x) VALUES (1);\nINSERT INTO no_such_table (x) VALUES (1);",
			"0003_after.sql":  "CREATE TABLE after_broken (x INTEGER);",
		})
		in := dir.initializer()
		res, err := in.Apply(ctx, db, e.dialect, ownerA)
		var failed *dataplane.MigrationError
		if !errors.As(err, &failed) {
			t.Fatalf("apply: %v, want a MigrationError", err)
		}
		if failed.Migration.File != "0002_broken.sql" || !strings.Contains(err.Error(), "0002_broken.sql") {
			t.Fatalf("the error names %q: %v", failed.Migration.File, err)
		}
		if got := strings.Join(versions(res.Applied), " "); got != "system/0001_envplane_meta.sql app/0001_a.sql" {
			t.Fatalf("applied before the failure: %s", got)
		}
		if tableExists(t, db, e.dialect, "half") {
			t.Fatal("the failed migration's first statement survived")
		}
		if tableExists(t, db, e.dialect, "after_broken") {
			t.Fatal("a migration after the failed one ran")
		}
		st, err := in.Status(ctx, db, e.dialect)
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		if st.SchemaVersion != 1 || len(st.Pending) != 2 || st.Pending[0].Version != 2 {
			t.Fatalf("after the failure: version %d, pending %v", st.SchemaVersion, versions(st.Pending))
		}

		// Fixing a migration that never applied is not drift: it just runs.
		dir.write(t, "0002_broken.sql", "CREATE TABLE half (x INTEGER);")
		res, err = in.Apply(ctx, db, e.dialect, ownerA)
		if err != nil {
			t.Fatalf("apply after the fix: %v", err)
		}
		if res.SchemaVersion != 3 || len(res.Applied) != 2 {
			t.Fatalf("after the fix: version %d, applied %v", res.SchemaVersion, versions(res.Applied))
		}
	})
}

func TestDatabaseProvesWhoseItIs(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, db *sql.DB) {
		ctx := context.Background()
		dir := newAppDir(t, map[string]string{"0001_a.sql": "CREATE TABLE a (x INTEGER);"})
		in := dir.initializer()
		if _, err := in.Apply(ctx, db, e.dialect, ownerA); err != nil {
			t.Fatalf("apply: %v", err)
		}
		dir.write(t, "0002_b.sql", "CREATE TABLE b (x INTEGER);")
		for _, other := range []dataplane.Owner{
			{EnvironmentID: "env_b", OrgID: ownerA.OrgID},
			{EnvironmentID: ownerA.EnvironmentID, OrgID: "org_2"},
		} {
			_, err := in.Apply(ctx, db, e.dialect, other)
			var mismatch *dataplane.OwnerMismatchError
			if !errors.As(err, &mismatch) {
				t.Fatalf("apply as %+v: %v, want an OwnerMismatchError", other, err)
			}
			if mismatch.Got != ownerA || mismatch.Want != other {
				t.Fatalf("mismatch says got %+v want %+v", mismatch.Got, mismatch.Want)
			}
		}
		if tableExists(t, db, e.dialect, "b") {
			t.Fatal("a migration ran for the wrong owner")
		}
		if _, err := in.Apply(ctx, db, e.dialect, dataplane.Owner{}); err == nil {
			t.Fatal("apply with an empty owner succeeded")
		}
		st, err := in.Status(ctx, db, e.dialect)
		if err != nil || st.Owner != ownerA {
			t.Fatalf("status owner %+v, %v", st.Owner, err)
		}
	})
}

func TestMalformedMigrationDirectories(t *testing.T) {
	db := openSQLite(t)
	for name, files := range map[string]map[string]string{
		"no version":        {"create.sql": "SELECT 1;"},
		"version zero":      {"0000_zero.sql": "SELECT 1;"},
		"repeated version":  {"1_a.sql": "SELECT 1;", "0001_b.sql": "SELECT 1;"},
		"space in the name": {"0001_a b.sql": "SELECT 1;"},
	} {
		in := newAppDir(t, files).initializer()
		if _, err := in.Apply(context.Background(), db, drivers.DialectSQLite, ownerA); err == nil {
			t.Errorf("%s: apply succeeded", name)
		}
	}
	if tableExists(t, db, drivers.DialectSQLite, dataplane.MetaTable) {
		t.Error("a malformed directory still let system migrations run")
	}
}

func TestUnknownDialectIsUnsupported(t *testing.T) {
	in := &dataplane.Initializer{System: migrations.DataPlane()}
	_, err := in.Apply(context.Background(), openSQLite(t), drivers.Dialect("oracle"), ownerA)
	if !errors.Is(err, drivers.ErrUnsupported) {
		t.Fatalf("apply: %v, want ErrUnsupported", err)
	}
}

func TestVersionsLiveInTheLedgerNotUserVersion(t *testing.T) {
	db := openSQLite(t)
	in := newAppDir(t, map[string]string{"0007_a.sql": "CREATE TABLE a (x INTEGER);"}).initializer()
	if _, err := in.Apply(context.Background(), db, drivers.DialectSQLite, ownerA); err != nil {
		t.Fatal(err)
	}
	if v := count(t, db, "PRAGMA user_version"); v != 0 {
		t.Fatalf("user_version is %d, want untouched 0", v)
	}
	if n := count(t, db, "SELECT count(*) FROM _envplane_migrations WHERE namespace = 'app' AND version = 7"); n != 1 {
		t.Fatalf("the ledger holds %d rows for app/7", n)
	}
}

func TestAppliedAtComesFromTheClock(t *testing.T) {
	at := time.Date(2031, 2, 3, 4, 5, 6, 7, time.UTC)
	db := openSQLite(t)
	in := &dataplane.Initializer{System: migrations.DataPlane(), Now: func() time.Time { return at }}
	if _, err := in.Apply(context.Background(), db, drivers.DialectSQLite, ownerA); err != nil {
		t.Fatal(err)
	}
	st, err := in.Status(context.Background(), db, drivers.DialectSQLite)
	if err != nil || len(st.Applied) != 1 || !st.Applied[0].AppliedAt.Equal(at) {
		t.Fatalf("status %+v, %v; want applied at %v", st.Applied, err, at)
	}
}

// TestThroughTheSQLiteDriver runs the initializer the way provisioning does:
// on a pool the driver opened with the admin credential, then reads the
// status through a readonly one.
func TestThroughTheSQLiteDriver(t *testing.T) {
	ctx := context.Background()
	d, err := sqlite.New(sqlite.Config{Dir: filepath.Join(t.TempDir(), "databases")})
	if err != nil {
		t.Fatal(err)
	}
	created, err := d.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: drivertest.NewDatabaseName(t)})
	if err != nil {
		t.Fatal(err)
	}
	pool := func(scope drivers.Scope) drivers.OpenResponse {
		c, err := d.IssueCredential(ctx, drivers.IssueCredentialRequest{Database: created.Database, Scope: scope, Slot: drivers.SlotA})
		if err != nil {
			t.Fatal(err)
		}
		conn, err := d.Open(ctx, drivers.OpenRequest{Database: created.Database, Credential: c.Credential})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.DB.Close() })
		return conn
	}
	dir := newAppDir(t, map[string]string{"0001_a.sql": "CREATE TABLE a (x INTEGER);"})
	in := dir.initializer()
	admin := pool(drivers.ScopeAdmin)
	if res, err := in.Apply(ctx, admin.DB, admin.Dialect, ownerA); err != nil || res.SchemaVersion != 1 {
		t.Fatalf("apply: version %d, %v", res.SchemaVersion, err)
	}
	ro := pool(drivers.ScopeReadOnly)
	st, err := in.Status(ctx, ro.DB, ro.Dialect)
	if err != nil || len(st.Applied) != 2 || st.Owner != ownerA {
		t.Fatalf("status through readonly: %+v, %v", st, err)
	}
	dir.write(t, "0002_b.sql", "CREATE TABLE b (x INTEGER);")
	if _, err := in.Apply(ctx, ro.DB, ro.Dialect, ownerA); err == nil {
		t.Fatal("apply of a pending migration through a readonly pool succeeded")
	}
	if st, err := in.Status(ctx, admin.DB, admin.Dialect); err != nil || len(st.Pending) != 1 {
		t.Fatalf("status after the refused apply: %+v, %v", st, err)
	}
}

// BenchmarkApplySQLite is the raw floor of provisioning's schema step: the
// system migrations applied to a new SQLite file.
func BenchmarkApplySQLite(b *testing.B) {
	in := &dataplane.Initializer{System: migrations.DataPlane()}
	dir := b.TempDir()
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		path := filepath.Join(dir, "env_"+strings.Repeat("0", 8)+strconv.Itoa(i)+".db")
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := in.Apply(ctx, db, drivers.DialectSQLite, ownerA); err != nil {
			b.Fatal(err)
		}
		db.Close()
	}
}

// TestConcurrentApplyRunsEachMigrationOnce: a fleet upgrade can meet a
// provisioning retry on one database; both must succeed without running a
// migration twice.
func TestConcurrentApplyRunsEachMigrationOnce(t *testing.T) {
	ctx := context.Background()
	d, err := sqlite.New(sqlite.Config{Dir: filepath.Join(t.TempDir(), "databases")})
	if err != nil {
		t.Fatal(err)
	}
	created, err := d.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: drivertest.NewDatabaseName(t)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.IssueCredential(ctx, drivers.IssueCredentialRequest{Database: created.Database, Scope: drivers.ScopeAdmin, Slot: drivers.SlotA})
	if err != nil {
		t.Fatal(err)
	}
	pg := engines()[1]
	for _, tc := range []struct {
		name    string
		dialect drivers.Dialect
		open    func(tb testing.TB) *sql.DB
	}{
		{"sqlite-driver-pools", drivers.DialectSQLite, func(tb testing.TB) *sql.DB {
			conn, err := d.Open(ctx, drivers.OpenRequest{Database: created.Database, Credential: c.Credential})
			if err != nil {
				tb.Fatal(err)
			}
			tb.Cleanup(func() { conn.DB.Close() })
			return conn.DB
		}},
		{"postgres", pg.dialect, pg.open},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := newAppDir(t, map[string]string{
				"0001_a.sql": "CREATE TABLE a (x INTEGER);",
				"0002_b.sql": "INSERT INTO a (x) VALUES (1);",
			}).initializer()
			first := tc.open(t)
			pools := []*sql.DB{first, first, first, first}
			if tc.dialect == drivers.DialectSQLite {
				pools[2], pools[3] = tc.open(t), tc.open(t)
			}
			errs := make(chan error, len(pools))
			for _, db := range pools {
				go func() {
					_, err := in.Apply(ctx, db, tc.dialect, ownerA)
					errs <- err
				}()
			}
			for range pools {
				if err := <-errs; err != nil {
					t.Errorf("concurrent apply: %v", err)
				}
			}
			if n := count(t, first, "SELECT count(*) FROM a"); n != 1 {
				t.Fatalf("a holds %d rows, want 1: a migration ran twice", n)
			}
		})
	}
}
