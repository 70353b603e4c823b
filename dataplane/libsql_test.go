package dataplane_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"testing/fstest"
	"time"

	"github.com/envplane/envplane/dataplane"
	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/drivertest"
	"github.com/envplane/envplane/drivers/turso"
	"github.com/envplane/envplane/drivers/turso/tursotest"
	"github.com/envplane/envplane/migrations"
)

// The initializer on libSQL over the wire: a real tursodb (Hrana over HTTP, no
// interactive transactions) behind the Turso Platform double, reached through
// the Turso driver and libsql-client-go, as provisioning does.

// tursoTarget is a Turso driver on a fresh Platform double with a data plane.
type tursoTarget struct {
	driver *turso.Driver
}

func newTursoTarget(tb testing.TB) tursoTarget {
	tb.Helper()
	p := tursotest.NewPlatform(tb, tursotest.PlatformOptions{DataPlane: true})
	d, err := turso.New(turso.Config{
		Organization: p.Organization, Group: p.Group, BaseURL: p.URL, Token: p.Token,
		DatabaseURL: p.DatabaseURL,
	})
	if err != nil {
		tb.Fatalf("turso driver: %v", err)
	}
	return tursoTarget{driver: d}
}

// open creates a database and returns an admin pool on it, as provisioning
// hands the initializer.
func (tt tursoTarget) open(tb testing.TB) *sql.DB {
	tb.Helper()
	ctx := context.Background()
	created, err := tt.driver.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: drivertest.NewDatabaseName(tb)})
	if err != nil {
		tb.Fatalf("create database: %v", err)
	}
	issued, err := tt.driver.IssueCredential(ctx, drivers.IssueCredentialRequest{Database: created.Database, Scope: drivers.ScopeAdmin, Slot: drivers.SlotA})
	if err != nil {
		tb.Fatalf("issue credential: %v", err)
	}
	opened, err := tt.driver.Open(ctx, drivers.OpenRequest{Database: created.Database, Credential: issued.Credential})
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	if opened.Dialect != drivers.DialectLibSQL {
		tb.Fatalf("the Turso driver speaks %q, want libsql", opened.Dialect)
	}
	tb.Cleanup(func() { opened.DB.Close() })
	return opened.DB
}

func appFS(files map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for name, body := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(body)}
	}
	return fsys
}

func tursoCount(tb testing.TB, db *sql.DB, query string) int {
	tb.Helper()
	var n int
	if err := db.QueryRow(query).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
	return n
}

func tursoHasTable(tb testing.TB, db *sql.DB, table string) bool {
	tb.Helper()
	return tursoCount(tb, db, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = '"+table+"'") > 0
}

var tursoOwner = dataplane.Owner{EnvironmentID: "env_turso", OrgID: "org_turso"}

func TestTursoApplyRecordsEveryMigrationOnce(t *testing.T) {
	ctx := context.Background()
	db := newTursoTarget(t).open(t)
	in := &dataplane.Initializer{System: migrations.DataPlane(), App: appFS(map[string]string{
		"0001_items.sql": "CREATE TABLE items (id INTEGER PRIMARY KEY, note TEXT NOT NULL);",
		"0002_seed.sql":  "INSERT INTO items (note) VALUES ('a;b'), ('it''s');\n-- a file may end with a comment",
		"0003_audit.sql": `CREATE TABLE audit (note TEXT);
CREATE TRIGGER items_audit AFTER INSERT ON items BEGIN
	INSERT INTO audit (note) VALUES (new.note);
END;`,
	})}
	res, err := in.Apply(ctx, db, drivers.DialectLibSQL, tursoOwner)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if res.SchemaVersion != 3 || len(res.Applied) != 4 {
		t.Fatalf("applied %d migrations up to version %d, want 4 up to 3", len(res.Applied), res.SchemaVersion)
	}
	if n := tursoCount(t, db, "SELECT count(*) FROM items WHERE note IN ('a;b', 'it''s')"); n != 2 {
		t.Errorf("items holds %d of the seeded rows, want 2", n)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO items (note) VALUES ('later')"); err != nil {
		t.Fatalf("insert: %v", err)
	}
	if n := tursoCount(t, db, "SELECT count(*) FROM audit"); n != 1 {
		t.Errorf("the trigger wrote %d audit rows, want 1", n)
	}
	if n := tursoCount(t, db, "SELECT count(*) FROM "+dataplane.LedgerTable); n != 4 {
		t.Errorf("the ledger holds %d rows, want 4", n)
	}
	if n := tursoCount(t, db, "PRAGMA user_version"); n != 0 {
		t.Errorf("user_version is %d: versions belong in the ledger", n)
	}

	again, err := in.Apply(ctx, db, drivers.DialectLibSQL, tursoOwner)
	if err != nil {
		t.Fatalf("second apply: %v", err)
	}
	if len(again.Applied) != 0 || again.SchemaVersion != 3 {
		t.Fatalf("second apply ran %d migrations, version %d", len(again.Applied), again.SchemaVersion)
	}
	st, err := in.Status(ctx, db, drivers.DialectLibSQL)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if st.Owner != tursoOwner || len(st.Pending) != 0 || len(st.Drift) != 0 {
		t.Fatalf("status: owner %+v, pending %d, drift %d", st.Owner, len(st.Pending), len(st.Drift))
	}
}

func TestTursoFailingMigrationLeavesNoTrace(t *testing.T) {
	ctx := context.Background()
	db := newTursoTarget(t).open(t)
	files := map[string]string{
		"0001_a.sql":      "CREATE TABLE a (x INTEGER);",
		"0002_broken.sql": "CREATE TABLE half (x INTEGER);\nINSERT INTO half (x) VALUES (1);\nINSERT INTO no_such_table (x) VALUES (1);",
		"0003_after.sql":  "CREATE TABLE after_broken (x INTEGER);",
	}
	in := &dataplane.Initializer{System: migrations.DataPlane(), App: appFS(files)}
	_, err := in.Apply(ctx, db, drivers.DialectLibSQL, tursoOwner)
	var failed *dataplane.MigrationError
	if !errors.As(err, &failed) || failed.Migration.File != "0002_broken.sql" {
		t.Fatalf("apply: %v, want a MigrationError for 0002_broken.sql", err)
	}
	if tursoHasTable(t, db, "half") || tursoHasTable(t, db, "after_broken") {
		t.Fatal("the failed migration, or one after it, left a table")
	}
	if n := tursoCount(t, db, "SELECT count(*) FROM "+dataplane.LedgerTable+" WHERE namespace = 'app'"); n != 1 {
		t.Fatalf("the ledger holds %d app rows, want 1", n)
	}
	// Nothing of the failed batch lingers on the connection: plain writes
	// still commit.
	if _, err := db.ExecContext(ctx, "INSERT INTO a (x) VALUES (1)"); err != nil {
		t.Fatalf("insert after the failure: %v", err)
	}
	files["0002_broken.sql"] = "CREATE TABLE half (x INTEGER);"
	in.App = appFS(files)
	res, err := in.Apply(ctx, db, drivers.DialectLibSQL, tursoOwner)
	if err != nil {
		t.Fatalf("apply after the fix: %v", err)
	}
	if res.SchemaVersion != 3 || len(res.Applied) != 2 {
		t.Fatalf("after the fix: version %d, %d applied", res.SchemaVersion, len(res.Applied))
	}
	if n := tursoCount(t, db, "SELECT count(*) FROM a"); n != 1 {
		t.Fatalf("a holds %d rows, want 1", n)
	}
}

// TestTursoConcurrentApplyRunsEachMigrationOnce: a fleet upgrade meeting a
// provisioning retry on one Turso database; both succeed and no migration
// runs twice, although libSQL has no lock to take.
func TestTursoConcurrentApplyRunsEachMigrationOnce(t *testing.T) {
	ctx := context.Background()
	db := newTursoTarget(t).open(t)
	in := &dataplane.Initializer{System: migrations.DataPlane(), App: appFS(map[string]string{
		"0001_a.sql": "CREATE TABLE a (x INTEGER);",
		"0002_b.sql": "INSERT INTO a (x) VALUES (1);",
		"0003_c.sql": "INSERT INTO a (x) VALUES (2);",
	})}
	const runners = 4
	errs := make(chan error, runners)
	for range runners {
		go func() {
			_, err := in.Apply(ctx, db, drivers.DialectLibSQL, tursoOwner)
			errs <- err
		}()
	}
	for range runners {
		if err := <-errs; err != nil {
			t.Errorf("concurrent apply: %v", err)
		}
	}
	if n := tursoCount(t, db, "SELECT count(*) FROM a"); n != 2 {
		t.Fatalf("a holds %d rows, want 2: a migration ran twice or not at all", n)
	}
}

// BenchmarkApplyTurso is the schema step of provisioning on Turso: the system
// migrations and a small app schema applied over Hrana to a new database.
// Creating the database is outside the measurement.
func BenchmarkApplyTurso(b *testing.B) {
	target := newTursoTarget(b)
	in := &dataplane.Initializer{System: migrations.DataPlane(), App: appFS(map[string]string{
		"0001_items.sql": "CREATE TABLE items (id INTEGER PRIMARY KEY, note TEXT NOT NULL);\nCREATE INDEX items_note ON items (note);",
		"0002_seed.sql":  "INSERT INTO items (note) VALUES ('first'), ('second');",
	}), Now: func() time.Time { return time.Unix(0, 0) }}
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		db := target.open(b)
		b.StartTimer()
		if _, err := in.Apply(ctx, db, drivers.DialectLibSQL, tursoOwner); err != nil {
			b.Fatal(err)
		}
	}
}
