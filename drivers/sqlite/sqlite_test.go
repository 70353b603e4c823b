package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/drivertest"
	"github.com/envplane/envplane/drivers/sqlite"
)

func newDriver(tb testing.TB, now func() time.Time) (*sqlite.Driver, string) {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "databases")
	d, err := sqlite.New(sqlite.Config{Dir: dir, Now: now})
	if err != nil {
		tb.Fatalf("new driver: %v", err)
	}
	return d, dir
}

func TestConformance(t *testing.T) {
	d, _ := newDriver(t, nil)
	drivertest.Run(t, drivertest.Harness{
		Driver:         d,
		OpenDSN:        func(dsn string) (*sql.DB, error) { return sql.Open("sqlite", dsn) },
		ChecksSecrets:  true,
		EnforcesExpiry: true,
		BacksUp:        true,
	})
}

func create(tb testing.TB, d *sqlite.Driver) drivers.Database {
	tb.Helper()
	resp, err := d.CreateDatabase(context.Background(), drivers.CreateDatabaseRequest{Name: drivertest.NewDatabaseName(tb)})
	if err != nil {
		tb.Fatalf("create: %v", err)
	}
	return resp.Database
}

func issue(tb testing.TB, d *sqlite.Driver, db drivers.Database, scope drivers.Scope, expires time.Time) drivers.Credential {
	tb.Helper()
	resp, err := d.IssueCredential(context.Background(), drivers.IssueCredentialRequest{Database: db, Scope: scope, Slot: drivers.SlotA, ExpiresAt: expires})
	if err != nil {
		tb.Fatalf("issue %s: %v", scope, err)
	}
	return resp.Credential
}

func open(tb testing.TB, d *sqlite.Driver, db drivers.Database, c drivers.Credential) *sql.DB {
	tb.Helper()
	resp, err := d.Open(context.Background(), drivers.OpenRequest{Database: db, Credential: c})
	if err != nil {
		tb.Fatalf("open %s: %v", c.Scope, err)
	}
	tb.Cleanup(func() { resp.DB.Close() })
	return resp.DB
}

func mode(tb testing.TB, path string) os.FileMode {
	tb.Helper()
	info, err := os.Stat(path)
	if err != nil {
		tb.Fatalf("stat: %v", err)
	}
	return info.Mode().Perm()
}

func TestFileModes(t *testing.T) {
	d, dir := newDriver(t, nil)
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("target dir mode %#o, want 0700", m)
	}
	db := create(t, d)
	admin := issue(t, d, db, drivers.ScopeAdmin, time.Time{})
	conn := open(t, d, db, admin)
	if _, err := conn.Exec("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatalf("write: %v", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < 2 {
		t.Fatalf("target dir holds %d files, want the database and its registry", len(entries))
	}
	for _, e := range entries {
		if m := mode(t, filepath.Join(dir, e.Name())); m != 0o600 {
			t.Errorf("%s has mode %#o, want 0600", e.Name(), m)
		}
	}
}

func TestNewRefusesSharedDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlite.New(sqlite.Config{Dir: dir}); err == nil {
		t.Fatal("New accepted a directory readable by others")
	}
	if _, err := sqlite.New(sqlite.Config{}); err == nil {
		t.Fatal("New accepted an empty dir")
	}
}

func TestInvalidNamesNeverTouchTheFileSystem(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "databases")
	d, err := sqlite.New(sqlite.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	valid := create(t, d)
	c := issue(t, d, valid, drivers.ScopeAdmin, time.Time{})
	for _, name := range []string{
		"../escape", "../" + valid.Name, valid.Name + "/../x", "/etc/passwd", "env_" + strings.Repeat("a", 25) + ".",
		"ENV_" + strings.Repeat("a", 26), valid.Name + ".credentials", "",
	} {
		db := drivers.Database{Name: name}
		checks := map[string]error{}
		_, checks["create"] = d.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: name})
		_, checks["drop"] = d.DropDatabase(ctx, drivers.DropDatabaseRequest{Database: db})
		_, checks["issue"] = d.IssueCredential(ctx, drivers.IssueCredentialRequest{Database: db, Scope: drivers.ScopeAdmin, Slot: drivers.SlotA})
		_, checks["revoke"] = d.RevokeCredential(ctx, drivers.RevokeCredentialRequest{Database: db, Scope: drivers.ScopeAdmin, Slot: drivers.SlotA})
		_, checks["open"] = d.Open(ctx, drivers.OpenRequest{Database: db, Credential: c})
		_, checks["descriptor"] = d.Descriptor(ctx, drivers.DescriptorRequest{Database: db, Credential: c})
		_, checks["usage"] = d.Usage(ctx, db)
		_, checks["clone to"] = d.CloneDatabase(ctx, drivers.CloneDatabaseRequest{Name: name, Source: valid})
		_, checks["clone from"] = d.CloneDatabase(ctx, drivers.CloneDatabaseRequest{Name: drivertest.NewDatabaseName(t), Source: db})
		for op, err := range checks {
			if !errors.Is(err, drivers.ErrUnsupported) {
				t.Errorf("%s(%q): %v, want ErrUnsupported", op, name, err)
			}
		}
	}
	// Nothing appeared outside the target's directory, and inside it only
	// the valid database's two files.
	rootEntries, _ := os.ReadDir(root)
	if len(rootEntries) != 1 {
		t.Errorf("the target's parent holds %d entries, want only the target dir", len(rootEntries))
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("the target dir holds %d entries, want 2", len(entries))
	}
	// The valid database was not dropped by "../<name>" or "<name>/../x".
	if _, err := d.Open(ctx, drivers.OpenRequest{Database: valid, Credential: c}); err != nil {
		t.Errorf("the valid database no longer opens: %v", err)
	}
}

func TestForeignFileIsNotAdopted(t *testing.T) {
	d, dir := newDriver(t, nil)
	name := drivertest.NewDatabaseName(t)
	path := filepath.Join(dir, name+".db")
	if err := os.WriteFile(path, []byte("not ours"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := d.CreateDatabase(context.Background(), drivers.CreateDatabaseRequest{Name: name})
	if !errors.Is(err, drivers.ErrExists) {
		t.Fatalf("create over a foreign file: %v, want ErrExists", err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "not ours" {
		t.Fatalf("the foreign file changed: %q, %v", got, err)
	}
}

func TestRegistryOfAnotherDatabaseDoesNotOpen(t *testing.T) {
	// Copying A's registry beside B must not make A's tokens open B.
	d, dir := newDriver(t, nil)
	a, b := create(t, d), create(t, d)
	ca := issue(t, d, a, drivers.ScopeAdmin, time.Time{})
	regA, err := os.ReadFile(filepath.Join(dir, a.Name+".credentials.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, b.Name+".credentials.db"), regA, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = d.Open(context.Background(), drivers.OpenRequest{Database: b, Credential: ca})
	if !errors.Is(err, drivers.ErrDenied) {
		t.Fatalf("A's token with A's registry copied beside B: %v, want ErrDenied", err)
	}
}

func TestExpiryFollowsTheClock(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	d, _ := newDriver(t, func() time.Time { return now })
	db := create(t, d)
	c := issue(t, d, db, drivers.ScopeReadWrite, now.Add(time.Minute))
	open(t, d, db, c)
	now = now.Add(time.Minute)
	if _, err := d.Open(context.Background(), drivers.OpenRequest{Database: db, Credential: c}); !errors.Is(err, drivers.ErrDenied) {
		t.Fatalf("open at expiry: %v, want ErrDenied", err)
	}
}

// sqlite3 runs the sqlite3 shell on dsn, verbatim.
func sqlite3(tb testing.TB, dsn, query string) (string, error) {
	tb.Helper()
	bin, err := exec.LookPath("sqlite3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatal("sqlite3 is not installed (CI=true)")
		}
		tb.Skip("sqlite3 is not installed")
	}
	out, err := exec.Command(bin, dsn, query).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func TestDescriptorWorksWithTheSQLite3Shell(t *testing.T) {
	root := filepath.Join(t.TempDir(), "dir with space%and?hash#")
	d, err := sqlite.New(sqlite.Config{Dir: root})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	db := create(t, d)
	admin := issue(t, d, db, drivers.ScopeAdmin, time.Time{})
	ro := issue(t, d, db, drivers.ScopeReadOnly, time.Time{})
	if _, err := open(t, d, db, admin).Exec("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	descriptor := func(c drivers.Credential) string {
		desc, err := d.Descriptor(ctx, drivers.DescriptorRequest{Database: db, Credential: c})
		if err != nil {
			t.Fatal(err)
		}
		return desc.DSN.Reveal()
	}

	out, err := sqlite3(t, descriptor(admin), "INSERT INTO t VALUES (2); SELECT count(*) FROM t;")
	if err != nil || out != "2" {
		t.Fatalf("sqlite3 with the admin DSN: %q, %v", out, err)
	}
	out, err = sqlite3(t, descriptor(ro), "SELECT count(*) FROM t;")
	if err != nil || out != "2" {
		t.Fatalf("sqlite3 with the readonly DSN: %q, %v", out, err)
	}
	out, err = sqlite3(t, descriptor(ro), "INSERT INTO t VALUES (3);")
	if err == nil || !strings.Contains(out, "readonly") {
		t.Fatalf("sqlite3 wrote through the readonly DSN: %q, %v", out, err)
	}
	// The shell wrote to the very file the driver manages.
	var n int
	if err := open(t, d, db, ro).QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 2 {
		t.Fatalf("driver sees %d rows (%v), want 2", n, err)
	}
}

func TestCloneFullAndSchemaOnly(t *testing.T) {
	d, dir := newDriver(t, nil)
	ctx := context.Background()
	src := create(t, d)
	srcAdmin := issue(t, d, src, drivers.ScopeAdmin, time.Time{})
	if _, err := open(t, d, src, srcAdmin).Exec(`
		CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, note TEXT);
		CREATE INDEX items_note ON items (note);
		CREATE VIEW notes AS SELECT note FROM items;
		INSERT INTO items (note) VALUES ('a'), ('b');`); err != nil {
		t.Fatal(err)
	}
	for _, schemaOnly := range []bool{false, true} {
		name := drivertest.NewDatabaseName(t)
		req := drivers.CloneDatabaseRequest{Name: name, Source: src, SchemaOnly: schemaOnly}
		resp, err := d.CloneDatabase(ctx, req)
		if err != nil {
			t.Fatalf("clone (schema only %v): %v", schemaOnly, err)
		}
		if _, err := d.CloneDatabase(ctx, req); err != nil {
			t.Fatalf("second clone (schema only %v): %v", schemaOnly, err)
		}
		clone := resp.Database
		if _, err := d.Open(ctx, drivers.OpenRequest{Database: clone, Credential: srcAdmin}); !errors.Is(err, drivers.ErrDenied) {
			t.Fatalf("the source's credential on the clone: %v, want ErrDenied", err)
		}
		conn := open(t, d, clone, issue(t, d, clone, drivers.ScopeReadOnly, time.Time{}))
		var rows, objects int
		if err := conn.QueryRow("SELECT count(*) FROM notes").Scan(&rows); err != nil {
			t.Fatalf("query the clone's view: %v", err)
		}
		if err := conn.QueryRow("SELECT count(*) FROM sqlite_schema WHERE name IN ('items', 'items_note', 'notes')").Scan(&objects); err != nil {
			t.Fatal(err)
		}
		want := 2
		if schemaOnly {
			want = 0
		}
		if rows != want || objects != 3 {
			t.Errorf("clone (schema only %v): %d rows and %d objects, want %d and 3", schemaOnly, rows, objects, want)
		}
		if m := mode(t, filepath.Join(dir, name+".db")); m != 0o600 {
			t.Errorf("clone file mode %#o, want 0600", m)
		}
	}
	_, err := d.CloneDatabase(ctx, drivers.CloneDatabaseRequest{Name: drivertest.NewDatabaseName(t), Source: drivers.Database{Name: drivertest.NewDatabaseName(t)}})
	if !errors.Is(err, drivers.ErrNotFound) {
		t.Fatalf("clone of a missing source: %v, want ErrNotFound", err)
	}
}

func TestUsageGrowsWithData(t *testing.T) {
	d, _ := newDriver(t, nil)
	ctx := context.Background()
	db := create(t, d)
	before, err := d.Usage(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	conn := open(t, d, db, issue(t, d, db, drivers.ScopeAdmin, time.Time{}))
	if _, err := conn.Exec("CREATE TABLE t (x BLOB); INSERT INTO t VALUES (zeroblob(100000))"); err != nil {
		t.Fatal(err)
	}
	after, err := d.Usage(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if after.SizeBytes < before.SizeBytes+100000 {
		t.Fatalf("usage went from %d to %d bytes after writing 100000", before.SizeBytes, after.SizeBytes)
	}
	// envplane's own tables are not the application's.
	if _, err := conn.Exec("CREATE TABLE _envplane_x (x)"); err != nil {
		t.Fatal(err)
	}
	if after, err = d.Usage(ctx, db); err != nil {
		t.Fatal(err)
	}
	if before.Tables == nil || *before.Tables != 0 || after.Tables == nil || *after.Tables != 1 {
		t.Fatalf("tables went from %v to %v, want 0 to 1", before.Tables, after.Tables)
	}
	if after.Connections != nil {
		t.Fatalf("connections = %d, but SQLite has no sessions to count", *after.Connections)
	}
	if _, err := d.Usage(ctx, drivers.Database{Name: drivertest.NewDatabaseName(t)}); !errors.Is(err, drivers.ErrNotFound) {
		t.Fatalf("usage of a missing database: %v, want ErrNotFound", err)
	}
}

func TestHealth(t *testing.T) {
	d, dir := newDriver(t, nil)
	if err := d.Health(context.Background()); err != nil {
		t.Fatalf("health of a writable dir: %v", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := d.Health(context.Background()); !errors.Is(err, drivers.ErrUnavailable) {
		t.Fatalf("health of a removed dir: %v, want ErrUnavailable", err)
	}
}

// TestHalfMadeRegistryIsResumed: a process killed while it made a registry
// (an earlier version created the file before its tables) left the registry
// half-made and no database file. Repeating the create finishes the job, and
// the database then works like any other.
func TestHalfMadeRegistryIsResumed(t *testing.T) {
	cases := map[string]func(t *testing.T, path string){
		"empty file": func(t *testing.T, path string) {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"tables without the name row": func(t *testing.T, path string) {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			reg, err := sql.Open("sqlite", "file:"+path+"?mode=rw")
			if err != nil {
				t.Fatal(err)
			}
			defer reg.Close()
			if _, err := reg.Exec(`CREATE TABLE registry (id INTEGER PRIMARY KEY CHECK (id = 1), name TEXT NOT NULL)`); err != nil {
				t.Fatal(err)
			}
		},
	}
	for what, halfMake := range cases {
		t.Run(what, func(t *testing.T) {
			d, dir := newDriver(t, nil)
			name := drivertest.NewDatabaseName(t)
			halfMake(t, filepath.Join(dir, name+".credentials.db"))
			resp, err := d.CreateDatabase(context.Background(), drivers.CreateDatabaseRequest{Name: name})
			if err != nil {
				t.Fatalf("create over a half-made registry: %v", err)
			}
			c := issue(t, d, resp.Database, drivers.ScopeAdmin, time.Time{})
			var n int
			if err := open(t, d, resp.Database, c).QueryRow(`SELECT count(*) FROM sqlite_master`).Scan(&n); err != nil {
				t.Fatalf("the resumed database does not open: %v", err)
			}
			if m := mode(t, filepath.Join(dir, name+".credentials.db")); m != 0o600 {
				t.Errorf("registry mode %o, want 600", m)
			}
			if _, err := d.DropDatabase(context.Background(), drivers.DropDatabaseRequest{Database: resp.Database}); err != nil {
				t.Fatal(err)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, name+"*")); len(left) != 0 {
				t.Errorf("files left after the drop: %v", left)
			}
		})
	}
}

// TestRegistryNamingAnotherDatabaseIsNotAdopted: a registry that names
// another database, with no database file beside it, is not ours to reuse.
func TestRegistryNamingAnotherDatabaseIsNotAdopted(t *testing.T) {
	d, dir := newDriver(t, nil)
	a := create(t, d)
	regA, err := os.ReadFile(filepath.Join(dir, a.Name+".credentials.db"))
	if err != nil {
		t.Fatal(err)
	}
	name := drivertest.NewDatabaseName(t)
	if err := os.WriteFile(filepath.Join(dir, name+".credentials.db"), regA, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateDatabase(context.Background(), drivers.CreateDatabaseRequest{Name: name}); !errors.Is(err, drivers.ErrExists) {
		t.Fatalf("create beside another database's registry: %v, want ErrExists", err)
	}
	if _, err := os.Stat(filepath.Join(dir, name+".db")); !os.IsNotExist(err) {
		t.Errorf("a database file was made beside a foreign registry: %v", err)
	}
}
