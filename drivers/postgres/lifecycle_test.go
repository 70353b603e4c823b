package postgres_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/envplane/envplane/drivers"
)

func q(name string) string { return pgx.Identifier{name}.Sanitize() }

func expectedRoles(db string) []string {
	roles := []string{db + "_owner"}
	for _, s := range drivers.Scopes() {
		roles = append(roles, db+"_"+string(s)+"_a", db+"_"+string(s)+"_b")
	}
	slices.Sort(roles)
	return roles
}

// A process that dies part-way through CreateDatabase or DropDatabase leaves
// one of these states. Running the same call again finishes the job, and
// DropDatabase then leaves nothing: pg_database and pg_roles, listed by the
// test's prefix before and after, are both empty.
func TestCrashedStepsResume(t *testing.T) {
	for _, tc := range []struct {
		name  string
		crash func(f *fixture, db string)
	}{
		{"after the owner role, before the database", func(f *fixture, db string) {
			f.exec("CREATE ROLE " + q(db+"_owner") + " NOLOGIN")
			f.exec("CREATE ROLE " + q(db+"_admin_a") + " NOLOGIN")
		}},
		{"after CREATE DATABASE, before the login roles", func(f *fixture, db string) {
			f.exec("CREATE ROLE " + q(db+"_owner") + " NOLOGIN")
			f.exec("CREATE DATABASE " + q(db) + " TEMPLATE template0")
		}},
		{"after the roles, half-way through the grants", func(f *fixture, db string) {
			for _, r := range expectedRoles(db) {
				f.exec("CREATE ROLE " + q(r) + " NOLOGIN")
			}
			f.exec("CREATE DATABASE " + q(db) + " TEMPLATE template0")
			f.exec("GRANT CONNECT ON DATABASE " + q(db) + " TO " + q(db+"_readonly_a"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, serverURL(t))
			if dbs, roles := f.leftovers(); len(dbs)+len(roles) != 0 {
				t.Fatalf("before: %v %v under a fresh prefix", dbs, roles)
			}
			name := f.name()
			tc.crash(f, name)
			ctx := context.Background()
			resp, err := f.driver.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: name})
			if err != nil {
				t.Fatalf("create after the crash: %v", err)
			}
			dbs, roles := f.leftovers()
			if !slices.Equal(dbs, []string{name}) || !slices.Equal(roles, expectedRoles(name)) {
				t.Fatalf("after resuming: databases %v, roles %v", dbs, roles)
			}
			assertProvisioned(t, f, resp.Database)
			if _, err := f.driver.DropDatabase(ctx, drivers.DropDatabaseRequest{Database: resp.Database}); err != nil {
				t.Fatalf("drop: %v", err)
			}
			if dbs, roles := f.leftovers(); len(dbs)+len(roles) != 0 {
				t.Fatalf("after drop: databases %v, roles %v remain", dbs, roles)
			}
		})
	}
}

// assertProvisioned checks what a finished CreateDatabase guarantees: PUBLIC
// cannot connect nor use the schema, the owner role owns the schema, and the
// scopes work on a table the admin creates.
func assertProvisioned(t *testing.T, f *fixture, db drivers.Database) {
	t.Helper()
	ctx := context.Background()
	var publicConnect bool
	var schemaOwner string
	err := f.admin.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
		               WHERE d.datname = $1 AND a.grantee = 0)`, db.Name).Scan(&publicConnect)
	if err != nil {
		t.Fatalf("read database ACL: %v", err)
	}
	if publicConnect {
		t.Error("PUBLIC keeps a privilege on the database")
	}
	c := f.issue(db, drivers.ScopeAdmin, drivers.SlotB, time.Time{})
	admin := f.open(db, c)
	err = admin.QueryRowContext(ctx, `SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'public'`).Scan(&schemaOwner)
	if err != nil {
		t.Fatalf("read schema owner: %v", err)
	}
	if schemaOwner != db.Name+"_owner" {
		t.Errorf("schema public is owned by %q", schemaOwner)
	}
	var publicUsage bool
	if err := admin.QueryRowContext(ctx, `
		SELECT EXISTS (SELECT 1 FROM pg_namespace n, aclexplode(n.nspacl) a
		               WHERE n.nspname = 'public' AND a.grantee = 0)`).Scan(&publicUsage); err != nil {
		t.Fatalf("read schema ACL: %v", err)
	}
	if publicUsage {
		t.Error("PUBLIC keeps a privilege on schema public")
	}
	f.mustRun(admin, "CREATE TABLE resumed (id serial PRIMARY KEY)")
	rw := f.open(db, f.issue(db, drivers.ScopeReadWrite, drivers.SlotA, time.Time{}))
	f.mustRun(rw, "INSERT INTO resumed DEFAULT VALUES")
	ro := f.open(db, f.issue(db, drivers.ScopeReadOnly, drivers.SlotA, time.Time{}))
	f.mustRun(ro, "SELECT * FROM resumed")
}

// Dropping a database with open sessions and issued credentials leaves no
// database and no role, and a second drop is success.
func TestDropLeavesNothing(t *testing.T) {
	f := newFixture(t, serverURL(t))
	ctx := context.Background()
	name := f.name()
	resp, err := f.driver.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: name})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	for _, s := range drivers.Scopes() {
		c := f.issue(resp.Database, s, drivers.SlotA, time.Time{})
		if _, err := f.connect(name, c); err != nil {
			t.Fatalf("connect %s: %s", s, f.safe(err))
		}
	}
	for range 2 {
		if _, err := f.driver.DropDatabase(ctx, drivers.DropDatabaseRequest{Database: resp.Database}); err != nil {
			t.Fatalf("drop: %v", err)
		}
		if dbs, roles := f.leftovers(); len(dbs)+len(roles) != 0 {
			t.Fatalf("after drop: databases %v, roles %v remain", dbs, roles)
		}
	}
	if _, err := f.driver.IssueCredential(ctx, drivers.IssueCredentialRequest{
		Database: resp.Database, Scope: drivers.ScopeAdmin, Slot: drivers.SlotA,
	}); !errors.Is(err, drivers.ErrNotFound) {
		t.Fatalf("issue on a dropped database: %v, want ErrNotFound", err)
	}
}

// A database of a generated-looking name that envplane did not make (no
// owner role) is neither adopted nor dropped.
func TestForeignDatabaseIsLeftAlone(t *testing.T) {
	f := newFixture(t, serverURL(t))
	name := f.name()
	f.exec("CREATE DATABASE " + q(name))
	ctx := context.Background()
	if _, err := f.driver.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: name}); !errors.Is(err, drivers.ErrExists) {
		t.Fatalf("create over a foreign database: %v, want ErrExists", err)
	}
	if _, err := f.driver.DropDatabase(ctx, drivers.DropDatabaseRequest{Database: drivers.Database{Name: name}}); !errors.Is(err, drivers.ErrExists) {
		t.Fatalf("drop of a foreign database: %v, want ErrExists", err)
	}
	dbs, roles := f.leftovers()
	if !slices.Equal(dbs, []string{name}) || len(roles) != 0 {
		t.Fatalf("after both calls: databases %v, roles %v; want the foreign database untouched and no roles", dbs, roles)
	}
}

// Two replicas resuming the same operation call CreateDatabase (then
// DropDatabase) for one name at once: every call succeeds and the result is
// the same as one call's.
func TestConcurrentCallsForOneDatabase(t *testing.T) {
	f := newFixture(t, serverURL(t))
	ctx := context.Background()
	name := f.name()
	const callers = 4
	run := func(call func() error) []error {
		errs := make([]error, callers)
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() { errs[i] = call() })
		}
		wg.Wait()
		return errs
	}
	for i, err := range run(func() error {
		_, err := f.driver.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: name})
		return err
	}) {
		if err != nil {
			t.Errorf("concurrent create #%d: %v", i, err)
		}
	}
	dbs, roles := f.leftovers()
	if !slices.Equal(dbs, []string{name}) || !slices.Equal(roles, expectedRoles(name)) {
		t.Fatalf("after concurrent creates: databases %v, roles %v", dbs, roles)
	}
	assertProvisioned(t, f, drivers.Database{Name: name})
	for i, err := range run(func() error {
		_, err := f.driver.DropDatabase(ctx, drivers.DropDatabaseRequest{Database: drivers.Database{Name: name}})
		return err
	}) {
		if err != nil {
			t.Errorf("concurrent drop #%d: %v", i, err)
		}
	}
	if dbs, roles := f.leftovers(); len(dbs)+len(roles) != 0 {
		t.Fatalf("after concurrent drops: databases %v, roles %v", dbs, roles)
	}
}
