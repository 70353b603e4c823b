package turso_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/drivertest"
	"github.com/envplane/envplane/drivers/turso"
	"github.com/envplane/envplane/drivers/turso/tursotest"
)

// Token checks in these tests happen at the Platform double's edge (Turso
// enforces them server-side; tursodb does not check tokens); reads and writes
// happen in real tursodb servers.

// clock is a settable clock shared by the double and the driver.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().Truncate(time.Second)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func create(t *testing.T, d *turso.Driver) drivers.Database {
	t.Helper()
	resp, err := d.CreateDatabase(context.Background(), drivers.CreateDatabaseRequest{Name: drivertest.NewDatabaseName(t)})
	if err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		if _, err := d.DropDatabase(context.Background(), drivers.DropDatabaseRequest{Database: resp.Database}); err != nil {
			t.Errorf("drop database: %v", err)
		}
	})
	return resp.Database
}

func issue(t *testing.T, d *turso.Driver, db drivers.Database, scope drivers.Scope, expires time.Time) drivers.Credential {
	t.Helper()
	resp, err := d.IssueCredential(context.Background(), drivers.IssueCredentialRequest{Database: db, Scope: scope, Slot: drivers.SlotA, ExpiresAt: expires})
	if err != nil {
		t.Fatalf("issue %s: %v", scope, err)
	}
	return resp.Credential
}

// opens reports whether the credential opens the database; any error other
// than ErrDenied fails the test.
func opens(t *testing.T, d *turso.Driver, db drivers.Database, c drivers.Credential) bool {
	t.Helper()
	resp, err := d.Open(context.Background(), drivers.OpenRequest{Database: db, Credential: c})
	if errors.Is(err, drivers.ErrDenied) {
		return false
	}
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer resp.DB.Close()
	if _, err := resp.DB.ExecContext(context.Background(), "SELECT 1"); err != nil {
		t.Fatalf("select 1 after a successful open: %v", err)
	}
	return true
}

func mustOpen(t *testing.T, d *turso.Driver, db drivers.Database, c drivers.Credential) drivers.OpenResponse {
	t.Helper()
	resp, err := d.Open(context.Background(), drivers.OpenRequest{Database: db, Credential: c})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { resp.DB.Close() })
	return resp
}

func count(t *testing.T, resp drivers.OpenResponse, table string) int {
	t.Helper()
	var n int
	if err := resp.DB.QueryRowContext(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

func TestTokenLifetimeFollowsExpiresAt(t *testing.T) {
	c := newClock()
	d, _ := newDriver(t, tursotest.PlatformOptions{DataPlane: true, Now: c.now})
	db := create(t, d)

	// 90s is rounded up to whole minutes, and the credential reports the
	// token's real end rather than the request.
	short := issue(t, d, db, drivers.ScopeReadWrite, c.now().Add(90*time.Second))
	if want := c.now().Add(2 * time.Minute); !short.ExpiresAt.Equal(want) {
		t.Errorf("credential expires at %v, want the token's %v", short.ExpiresAt, want)
	}
	cred := issue(t, d, db, drivers.ScopeReadWrite, c.now().Add(20*time.Minute))
	if !opens(t, d, db, cred) {
		t.Fatal("a fresh token is refused")
	}
	c.advance(19 * time.Minute)
	if !opens(t, d, db, cred) {
		t.Fatal("a token is refused a minute before it expires")
	}
	c.advance(2 * time.Minute)
	if opens(t, d, db, cred) {
		t.Fatal("an expired token still opens the database")
	}
	if _, err := d.IssueCredential(context.Background(), drivers.IssueCredentialRequest{
		Database: db, Scope: drivers.ScopeAdmin, Slot: drivers.SlotB, ExpiresAt: c.now().Add(-time.Second),
	}); err == nil {
		t.Error("issuing a credential that expired already succeeded")
	}
}

// TestRotationAgesOutTheOldToken is how rotation works on Turso: the new
// token is issued on the standby slot, the old one keeps working until its
// expiry (rotation interval + grace) and then stops by itself.
func TestRotationAgesOutTheOldToken(t *testing.T) {
	c := newClock()
	d, _ := newDriver(t, tursotest.PlatformOptions{DataPlane: true, Now: c.now})
	db := create(t, d)
	old := issue(t, d, db, drivers.ScopeReadOnly, c.now().Add(30*time.Minute))
	resp, err := d.IssueCredential(context.Background(), drivers.IssueCredentialRequest{
		Database: db, Scope: drivers.ScopeReadOnly, Slot: drivers.SlotB, ExpiresAt: c.now().Add(24 * time.Hour),
	})
	if err != nil {
		t.Fatalf("issue on the standby slot: %v", err)
	}
	next := resp.Credential
	if !opens(t, d, db, old) || !opens(t, d, db, next) {
		t.Fatal("during the grace period both tokens must work")
	}
	c.advance(31 * time.Minute)
	if opens(t, d, db, old) {
		t.Error("the rotated-out token works after its grace ended")
	}
	if !opens(t, d, db, next) {
		t.Error("the new token stopped working")
	}
}

// TestRevokeInvalidatesEveryTokenOfTheDatabase documents what RevokeCredential
// can do on Turso (adr/0005): every token of the database stops, other
// databases are untouched, and re-issued tokens work.
func TestRevokeInvalidatesEveryTokenOfTheDatabase(t *testing.T) {
	d, _ := newDriver(t, tursotest.PlatformOptions{DataPlane: true})
	a, b := create(t, d), create(t, d)
	adminA := issue(t, d, a, drivers.ScopeAdmin, time.Time{})
	roA := issue(t, d, a, drivers.ScopeReadOnly, time.Time{})
	adminB := issue(t, d, b, drivers.ScopeAdmin, time.Time{})
	if _, err := d.RevokeCredential(context.Background(), drivers.RevokeCredentialRequest{Database: a, Scope: drivers.ScopeReadOnly, Slot: drivers.SlotA}); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if opens(t, d, a, roA) || opens(t, d, a, adminA) {
		t.Error("a token of the revoked database still works")
	}
	if !opens(t, d, b, adminB) {
		t.Error("revoking in database A stopped a token of database B")
	}
	if !opens(t, d, a, issue(t, d, a, drivers.ScopeAdmin, time.Time{})) {
		t.Error("a token issued after the revoke does not work")
	}
	// The control plane learns this by type assertion, to re-issue the rest.
	var driver drivers.Driver = d
	if rc, ok := driver.(interface{ RevokesAllCredentials() bool }); !ok || !rc.RevokesAllCredentials() {
		t.Error("the driver does not announce that a revoke stops every credential of the database")
	}
}

func TestForgedAndStaleTokensAreDenied(t *testing.T) {
	d, _ := newDriver(t, tursotest.PlatformOptions{DataPlane: true})
	ctx := context.Background()
	db := create(t, d)
	cred := issue(t, d, db, drivers.ScopeAdmin, time.Time{})

	forged := cred
	s := cred.Secret.Reveal()
	forged.Secret = drivers.Secret(s[:len(s)-4] + "AAAA")
	if opens(t, d, db, forged) {
		t.Error("a token with a forged signature opens the database")
	}

	// The same name dropped and created again is another database: tokens of
	// the first one do not open it.
	if _, err := d.DropDatabase(ctx, drivers.DropDatabaseRequest{Database: db}); err != nil {
		t.Fatalf("drop: %v", err)
	}
	again, err := d.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: db.Name})
	if err != nil {
		t.Fatalf("create again: %v", err)
	}
	if opens(t, d, again.Database, cred) {
		t.Error("a token of the dropped database opens its successor")
	}
}

func TestReadOnlyTokenCannotWrite(t *testing.T) {
	d, _ := newDriver(t, tursotest.PlatformOptions{DataPlane: true})
	ctx := context.Background()
	db := create(t, d)
	admin := mustOpen(t, d, db, issue(t, d, db, drivers.ScopeAdmin, time.Time{}))
	if _, err := admin.DB.ExecContext(ctx, "CREATE TABLE items (id INTEGER PRIMARY KEY)"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	ro := mustOpen(t, d, db, issue(t, d, db, drivers.ScopeReadOnly, time.Time{}))
	for _, q := range []string{
		"INSERT INTO items VALUES (1)",
		"PRAGMA query_only=0; INSERT INTO items VALUES (2)",
		"BEGIN; INSERT INTO items VALUES (3); COMMIT",
		"DROP TABLE items",
	} {
		if _, err := ro.DB.ExecContext(ctx, q); err == nil {
			t.Errorf("read-only %q succeeded", q)
		}
	}
	if n := count(t, admin, "items"); n != 0 {
		t.Errorf("items holds %d rows after read-only writes, want 0", n)
	}
	// The read-only session left nothing behind: full access still writes.
	if _, err := admin.DB.ExecContext(ctx, "INSERT INTO items VALUES (4)"); err != nil {
		t.Errorf("admin insert after read-only attempts: %v", err)
	}
}

func TestBeginCommitExecIsAtomic(t *testing.T) {
	d, _ := newDriver(t, tursotest.PlatformOptions{DataPlane: true})
	ctx := context.Background()
	db := create(t, d)
	rw := mustOpen(t, d, db, issue(t, d, db, drivers.ScopeReadWrite, time.Time{}))
	if _, err := rw.DB.ExecContext(ctx, "BEGIN; CREATE TABLE a (x); INSERT INTO a VALUES (1); INSERT INTO missing VALUES (1); COMMIT"); err == nil {
		t.Fatal("a batch with a failing statement succeeded")
	}
	var n int
	if err := rw.DB.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE name = 'a'").Scan(&n); err != nil {
		t.Fatalf("look for table a: %v", err)
	}
	if n != 0 {
		t.Fatal("the failed batch left table a behind")
	}
	if _, err := rw.DB.ExecContext(ctx, "BEGIN; CREATE TABLE a (x); INSERT INTO a VALUES (1); COMMIT"); err != nil {
		t.Fatalf("a good batch: %v", err)
	}
	if got := count(t, rw, "a"); got != 1 {
		t.Fatalf("a holds %d rows, want 1", got)
	}
}

func TestCreateAdoptsOnlyItsOwnGroupsDatabase(t *testing.T) {
	d, p := newDriver(t, tursotest.PlatformOptions{})
	ctx := context.Background()
	name := drivertest.NewDatabaseName(t)
	tname := strings.Replace(name, "_", "-", 1)
	p.AddForeignDatabase(tname, "someone-elses-group")
	_, err := d.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: name})
	if !errors.Is(err, drivers.ErrExists) {
		t.Fatalf("create over a foreign database: %v, want ErrExists", err)
	}
	_, err = d.DropDatabase(ctx, drivers.DropDatabaseRequest{Database: drivers.Database{Name: name}})
	if !errors.Is(err, drivers.ErrExists) {
		t.Fatalf("drop of a foreign database: %v, want ErrExists", err)
	}
	if !p.HasDatabase(tname) {
		t.Fatal("the driver deleted a database outside its group")
	}
}

func TestCreateRecordsTheDatabase(t *testing.T) {
	d, p := newDriver(t, tursotest.PlatformOptions{})
	ctx := context.Background()
	name := drivertest.NewDatabaseName(t)
	resp, err := d.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: name, Region: p.Location, StorageLimitMB: 512})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	db := resp.Database
	tname := strings.Replace(name, "_", "-", 1)
	if db.Name != name || db.Region != p.Location || db.URL != tname+"-"+p.Organization+".turso.io" {
		t.Errorf("database recorded as %+v", db)
	}
	if db.Metadata["turso_name"] != tname || db.Metadata["group"] != p.Group || db.Metadata["turso_id"] == "" {
		t.Errorf("metadata %v", db.Metadata)
	}
	if _, err := d.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: drivertest.NewDatabaseName(t), Region: "aws-us-east-1"}); !errors.Is(err, drivers.ErrUnsupported) {
		t.Errorf("create in another region: %v, want ErrUnsupported", err)
	}
}

func TestCreateRidesOutRateLimits(t *testing.T) {
	p := tursotest.NewPlatform(t, tursotest.PlatformOptions{})
	var waited []time.Duration
	d, err := turso.New(turso.Config{
		Organization: p.Organization, Group: p.Group, BaseURL: p.URL, Token: p.Token,
		Sleep: func(_ context.Context, d time.Duration) error { waited = append(waited, d); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	p.FailNext(2, tursotest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "2"})
	if _, err := d.CreateDatabase(context.Background(), drivers.CreateDatabaseRequest{Name: drivertest.NewDatabaseName(t)}); err != nil {
		t.Fatalf("create through two 429s: %v", err)
	}
	if len(waited) != 2 || waited[0] != 2*time.Second {
		t.Errorf("waited %v, want two Retry-After waits of 2s", waited)
	}
	p.FailNext(10, tursotest.Fault{Status: http.StatusInternalServerError})
	if _, err := d.CreateDatabase(context.Background(), drivers.CreateDatabaseRequest{Name: drivertest.NewDatabaseName(t)}); !errors.Is(err, drivers.ErrUnavailable) {
		t.Errorf("create while Turso fails: %v, want ErrUnavailable", err)
	}
}

func TestCloneCopiesTheSource(t *testing.T) {
	d, _ := newDriver(t, tursotest.PlatformOptions{DataPlane: true})
	ctx := context.Background()
	src := create(t, d)
	admin := mustOpen(t, d, src, issue(t, d, src, drivers.ScopeAdmin, time.Time{}))
	if _, err := admin.DB.ExecContext(ctx, "CREATE TABLE items (id INTEGER PRIMARY KEY); INSERT INTO items VALUES (1), (2)"); err != nil {
		t.Fatalf("fill source: %v", err)
	}
	req := drivers.CloneDatabaseRequest{Name: drivertest.NewDatabaseName(t), Source: src}
	resp, err := d.CloneDatabase(ctx, req)
	if err != nil {
		t.Fatalf("clone: %v", err)
	}
	clone := resp.Database
	t.Cleanup(func() { _, _ = d.DropDatabase(context.Background(), drivers.DropDatabaseRequest{Database: clone}) })
	if _, err := d.CloneDatabase(ctx, req); err != nil {
		t.Fatalf("second clone (idempotent): %v", err)
	}
	cloned := mustOpen(t, d, clone, issue(t, d, clone, drivers.ScopeAdmin, time.Time{}))
	if n := count(t, cloned, "items"); n != 2 {
		t.Fatalf("clone holds %d rows, want 2", n)
	}
	if _, err := cloned.DB.ExecContext(ctx, "INSERT INTO items VALUES (3)"); err != nil {
		t.Fatalf("write to clone: %v", err)
	}
	if n := count(t, admin, "items"); n != 2 {
		t.Errorf("source holds %d rows after a write to the clone, want 2", n)
	}

	if _, err := d.CloneDatabase(ctx, drivers.CloneDatabaseRequest{Name: drivertest.NewDatabaseName(t), Source: src, SchemaOnly: true}); !errors.Is(err, drivers.ErrUnsupported) {
		t.Errorf("schema-only clone: %v, want ErrUnsupported", err)
	}
	missing := drivers.Database{Name: drivertest.NewDatabaseName(t)}
	if _, err := d.CloneDatabase(ctx, drivers.CloneDatabaseRequest{Name: drivertest.NewDatabaseName(t), Source: missing}); !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("clone of a missing source: %v, want ErrNotFound", err)
	}
}

func TestUsageReportsStorage(t *testing.T) {
	d, _ := newDriver(t, tursotest.PlatformOptions{DataPlane: true})
	ctx := context.Background()
	db := create(t, d)
	admin := mustOpen(t, d, db, issue(t, d, db, drivers.ScopeAdmin, time.Time{}))
	if _, err := admin.DB.ExecContext(ctx, "CREATE TABLE blobs (b BLOB); INSERT INTO blobs VALUES (randomblob(100000))"); err != nil {
		t.Fatalf("fill: %v", err)
	}
	u, err := d.Usage(ctx, db)
	if err != nil {
		t.Fatalf("usage: %v", err)
	}
	if u.SizeBytes < 100000 {
		t.Errorf("usage reports %d bytes after writing 100000", u.SizeBytes)
	}
	// The Platform API's usage reports storage only: no tables, no sessions.
	if u.Tables != nil || u.Connections != nil {
		t.Errorf("usage claims tables %v and connections %v that Turso does not report", u.Tables, u.Connections)
	}
	if _, err := d.Usage(ctx, drivers.Database{Name: drivertest.NewDatabaseName(t)}); !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("usage of a missing database: %v, want ErrNotFound", err)
	}
}

func TestHealth(t *testing.T) {
	d, p := newDriver(t, tursotest.PlatformOptions{})
	if err := d.Health(context.Background()); err != nil {
		t.Fatalf("health: %v", err)
	}
	for name, cfg := range map[string]turso.Config{
		"wrong API token":      {Organization: p.Organization, Group: p.Group, BaseURL: p.URL, Token: "wrong"},
		"location not offered": {Organization: p.Organization, Group: p.Group, BaseURL: p.URL, Token: p.Token, Location: "mars-1"},
		"API down":             {Organization: p.Organization, Group: p.Group, BaseURL: p.URL, Token: p.Token, MaxAttempts: 1},
	} {
		if name == "API down" {
			p.FailNext(1, tursotest.Fault{Status: http.StatusBadGateway})
		}
		bad, err := turso.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := bad.Health(context.Background()); !errors.Is(err, drivers.ErrUnavailable) {
			t.Errorf("%s: health %v, want ErrUnavailable", name, err)
		}
	}
}

func TestDescriptorForTurso(t *testing.T) {
	d, err := turso.New(turso.Config{Organization: "acme", Group: "envs", Token: "api-token"})
	if err != nil {
		t.Fatal(err)
	}
	db := drivers.Database{Name: "env_0123456789abcdefghjkmnpqrs", URL: "env-0123456789abcdefghjkmnpqrs-acme.turso.io"}
	cred := drivers.Credential{Scope: drivers.ScopeReadOnly, Slot: drivers.SlotA, Secret: "a.b+c/d"}
	desc, err := d.Descriptor(context.Background(), drivers.DescriptorRequest{Database: db, Credential: cred})
	if err != nil {
		t.Fatalf("descriptor: %v", err)
	}
	if want := "libsql://" + db.URL + "?authToken=a.b%2Bc%2Fd"; desc.DSN.Reveal() != want {
		t.Errorf("DSN %q, want %q", desc.DSN.Reveal(), want)
	}
	if desc.URL != "libsql://"+db.URL || desc.Host != db.URL || desc.Port != 443 || desc.Database != "env-0123456789abcdefghjkmnpqrs" {
		t.Errorf("descriptor parts %+v", desc)
	}
}

func TestNewRequiresConfiguration(t *testing.T) {
	for name, cfg := range map[string]turso.Config{
		"no group":        {Organization: "o", Token: "t"},
		"no organization": {Group: "g", Token: "t"},
		"no token":        {Organization: "o", Group: "g"},
	} {
		if _, err := turso.New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}
