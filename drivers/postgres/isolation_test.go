package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/envplane/envplane/drivers"
)

// Every credential of environment A, both slots of every scope, is refused
// by B's database: by the server itself (plain pgx, SQLSTATE 42501, no
// CONNECT privilege) and by the driver's Open (ErrDenied).
func TestCredentialsOfAnotherEnvironmentCannotConnect(t *testing.T) {
	f := newFixture(t, serverURL(t))
	a, b := f.create(), f.create()
	for _, scope := range drivers.Scopes() {
		for _, slot := range []drivers.Slot{drivers.SlotA, drivers.SlotB} {
			c := f.issue(a, scope, slot, time.Time{})
			if _, err := f.connect(a.Name, c); err != nil {
				t.Fatalf("%s/%s on its own database: %s", scope, slot, f.safe(err))
			}
			_, err := f.connect(b.Name, c)
			if err == nil {
				t.Fatalf("%s/%s of A connected to B", scope, slot)
			}
			if code := sqlState(err); code != "42501" {
				t.Errorf("%s/%s of A on B: SQLSTATE %q, want 42501 (no CONNECT privilege)", scope, slot, code)
			}
			if _, err := f.tryOpen(b, c); !errors.Is(err, drivers.ErrDenied) {
				t.Errorf("Open of B with A's %s/%s: %v, want ErrDenied", scope, slot, err != nil)
			}
		}
	}
}

// A table created with the admin credential, as a migration would, is owned
// by the owner role, readable and writable by readwrite (including its
// sequence) and readable by readonly, whichever slot created it.
func TestScopesOnTablesMigrationsCreate(t *testing.T) {
	f := newFixture(t, serverURL(t))
	db := f.create()
	adminA := f.open(db, f.issue(db, drivers.ScopeAdmin, drivers.SlotA, time.Time{}))
	adminB := f.open(db, f.issue(db, drivers.ScopeAdmin, drivers.SlotB, time.Time{}))
	rw := f.open(db, f.issue(db, drivers.ScopeReadWrite, drivers.SlotA, time.Time{}))
	ro := f.open(db, f.issue(db, drivers.ScopeReadOnly, drivers.SlotB, time.Time{}))
	ctx := context.Background()

	f.mustRun(adminA, "CREATE TABLE items (id bigserial PRIMARY KEY, note text NOT NULL)")
	var owner string
	if err := adminA.QueryRowContext(ctx, "SELECT tableowner FROM pg_tables WHERE tablename = 'items'").Scan(&owner); err != nil {
		t.Fatalf("table owner: %v", err)
	}
	if want := db.Name + "_owner"; owner != want {
		t.Fatalf("table created by admin_a is owned by %q, want %q", owner, want)
	}
	// The other admin slot can change what the first one created: a
	// rotation of the admin credential does not strand the schema.
	f.mustRun(adminB, "ALTER TABLE items ADD COLUMN extra int")

	f.mustRun(rw, "INSERT INTO items (note) VALUES ('one'), ('two')")
	f.mustRun(rw, "UPDATE items SET note = 'uno' WHERE note = 'one'")
	f.mustRun(rw, "DELETE FROM items WHERE note = 'two'")
	var n int
	if err := ro.QueryRowContext(ctx, "SELECT count(*) FROM items WHERE note = 'uno'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("readonly count: %d, %v; want 1, nil", n, err)
	}
	for _, q := range []string{
		"INSERT INTO items (note) VALUES ('ro')",
		"UPDATE items SET note = 'ro'",
		"DELETE FROM items",
		"CREATE TABLE ro_table (id int)",
		"CREATE TEMP TABLE ro_temp (id int)",
		"SELECT nextval('items_id_seq')",
	} {
		if err := f.run(ro, q); sqlState(err) != "42501" {
			t.Errorf("readonly %q: SQLSTATE %q, want 42501", q, sqlState(err))
		}
	}
}

// readwrite does DML only: it cannot drop the schema, create or alter
// tables, or create roles.
func TestReadWriteCannotRunDDL(t *testing.T) {
	f := newFixture(t, serverURL(t))
	db := f.create()
	admin := f.open(db, f.issue(db, drivers.ScopeAdmin, drivers.SlotA, time.Time{}))
	f.mustRun(admin, "CREATE TABLE items (id int)")
	rw := f.open(db, f.issue(db, drivers.ScopeReadWrite, drivers.SlotB, time.Time{}))
	for _, q := range []string{
		"DROP SCHEMA public CASCADE",
		"ALTER SCHEMA public RENAME TO hijacked",
		"CREATE TABLE rw_table (id int)",
		"ALTER TABLE items ADD COLUMN x int",
		"DROP TABLE items",
		"CREATE ROLE rw_made_role",
		"CREATE DATABASE rw_made_db",
	} {
		err := f.run(rw, q)
		if err == nil {
			t.Errorf("readwrite %q succeeded", q)
			continue
		}
		// Only 42501 proves a refusal on privilege; a syntax error would not.
		if sqlState(err) != "42501" {
			t.Errorf("readwrite %q: SQLSTATE %q, want 42501", q, sqlState(err))
		}
	}
}

// After issuing on slot b, slot a keeps working (the rotating credential)
// until it is revoked; then it fails and b still works. Re-issuing a slot
// replaces its secret.
func TestRotationAlternatesSlots(t *testing.T) {
	f := newFixture(t, serverURL(t))
	db := f.create()
	a := f.issue(db, drivers.ScopeReadWrite, drivers.SlotA, time.Time{})
	f.open(db, a)
	b := f.issue(db, drivers.ScopeReadWrite, drivers.SlotB, time.Now().Add(time.Hour))
	if a.Username == b.Username {
		t.Fatalf("slots a and b share the user %q", a.Username)
	}
	f.open(db, a)
	f.open(db, b)
	f.revoke(db, a)
	if _, err := f.tryOpen(db, a); !errors.Is(err, drivers.ErrDenied) {
		t.Fatalf("revoked slot a: Open error is ErrDenied = false (err != nil: %v)", err != nil)
	}
	f.open(db, b)
	f.revoke(db, a) // absent login is success
}

// A revoke terminates the sessions the role already holds, and the server
// shows none left for it.
func TestRevokeTerminatesOpenSessions(t *testing.T) {
	f := newFixture(t, serverURL(t))
	db := f.create()
	c := f.issue(db, drivers.ScopeAdmin, drivers.SlotA, time.Time{})
	conn, err := f.connect(db.Name, c)
	if err != nil {
		t.Fatalf("connect: %s", f.safe(err))
	}
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("select before revoke: %v", err)
	}
	f.revoke(db, c)
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("a session opened before the revoke still answers")
	}
	var n int
	if err := f.admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usename = $1", c.Username).Scan(&n); err != nil {
		t.Fatalf("count sessions: %v", err)
	}
	if n != 0 {
		t.Fatalf("%d sessions of the revoked role remain", n)
	}
}

// Requests naming a role of another database, or an unknown scope or slot,
// are refused before any SQL runs.
func TestRequestsAreValidated(t *testing.T) {
	f := newFixture(t, serverURL(t))
	a, b := f.create(), f.create()
	ctx := context.Background()
	cb := f.issue(b, drivers.ScopeReadOnly, drivers.SlotA, time.Time{})
	_, err := f.driver.RevokeCredential(ctx, drivers.RevokeCredentialRequest{
		Database: a, Scope: drivers.ScopeReadOnly, Slot: drivers.SlotA, Username: cb.Username,
	})
	if err == nil {
		t.Error("revoke on A with B's username succeeded")
	}
	f.open(b, cb) // B's credential survived
	if _, err := f.driver.IssueCredential(ctx, drivers.IssueCredentialRequest{Database: a, Scope: "superuser", Slot: drivers.SlotA}); !errors.Is(err, drivers.ErrUnsupported) {
		t.Errorf("issue with scope superuser: %v, want ErrUnsupported", err)
	}
	if _, err := f.driver.IssueCredential(ctx, drivers.IssueCredentialRequest{Database: a, Scope: drivers.ScopeAdmin, Slot: "c"}); !errors.Is(err, drivers.ErrUnsupported) {
		t.Errorf("issue on slot c: %v, want ErrUnsupported", err)
	}
	if _, err := f.driver.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: `env_aaaaaaaaaaaaaaaaaaaaaaaaa"`}); err == nil {
		t.Error("create with a quote in the name succeeded")
	}
}

// Health answers for a live target and Usage measures a database, or says
// it is not there.
func TestHealthAndUsage(t *testing.T) {
	f := newFixture(t, serverURL(t))
	ctx := context.Background()
	if err := f.driver.Health(ctx); err != nil {
		t.Fatalf("health: %v", err)
	}
	db := f.create()
	u, err := f.driver.Usage(ctx, db)
	if err != nil {
		t.Fatalf("usage: %v", err)
	}
	if u.SizeBytes <= 0 {
		t.Fatalf("usage: %d bytes", u.SizeBytes)
	}
	if _, err := f.driver.Usage(ctx, drivers.Database{Name: f.name()}); !errors.Is(err, drivers.ErrNotFound) {
		t.Fatalf("usage of a missing database: %v, want ErrNotFound", err)
	}
}
