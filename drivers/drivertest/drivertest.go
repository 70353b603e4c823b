// Package drivertest is the conformance suite every envplane driver must pass,
// against a real engine, plus the test-server helpers its callers need.
//
// A driver's test calls Run with a Harness:
//
//	func TestConformance(t *testing.T) {
//		drivertest.Run(t, drivertest.Harness{
//			Driver:  driver,
//			OpenDSN: func(dsn string) (*sql.DB, error) { return sql.Open("sqlite", dsn) },
//			EnforcesExpiry: true,
//		})
//	}
//
// Every property is its own subtest and creates its own databases, which it
// drops when it ends. Every error the suite sees, from the driver or from SQL
// run with a credential, is checked not to contain any secret the suite was
// given.
package drivertest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envplane/envplane/drivers"
)

// Harness tells the suite how to use a driver and which properties its engine
// can enforce. Every flag but RevokeInvalidatesAllSlots must be set to prove
// more; at its zero value a flag's property is skipped, never weakened.
type Harness struct {
	// Driver is the driver under test, configured against a real engine.
	Driver drivers.Driver

	// OpenDSN opens a Descriptor's DSN with the engine's ordinary client
	// (sql.Open("pgx", dsn), sql.Open("sqlite", dsn), ...). Required.
	OpenDSN func(dsn string) (*sql.DB, error)

	// Region is passed in every CreateDatabaseRequest; empty is fine for
	// drivers without placement.
	Region string

	// ChecksSecrets is true when the engine compares the secret itself, so a
	// wrong secret, or the old secret of a re-issued slot, is refused. It is
	// false on a PostgreSQL server whose pg_hba trusts every login (the test
	// server does): there only revocation and CONNECT rights can refuse.
	ChecksSecrets bool

	// EnforcesOwnership is true when the engine prevents a readwrite
	// credential from running DDL (DROP, ALTER) on objects the admin scope
	// created. PostgreSQL can; a SQLite file cannot.
	EnforcesOwnership bool

	// EnforcesExpiry is true when a credential whose ExpiresAt has passed is
	// rejected by the engine or the driver. (PostgreSQL's VALID UNTIL binds
	// password logins only, so a trusting server does not enforce it.)
	EnforcesExpiry bool

	// EndsSessionsOnRevoke is true when RevokeCredential and
	// SuspendDatabase also break pools opened with a credential before
	// (PostgreSQL terminates the backends). A SQLite file has no sessions
	// to end.
	EndsSessionsOnRevoke bool

	// RevokeInvalidatesAllSlots is true when the engine cannot revoke one
	// credential alone: revoking a slot may stop the database's other
	// credentials too (Turso invalidates every token of a database; the
	// control plane then re-issues the survivors). It is the one flag that proves less when
	// set: the suite still checks that the revoked slot stops working, but no
	// longer that the other slot survives the revoke.
	RevokeInvalidatesAllSlots bool

	// BacksUp is true for a driver that implements drivers.BackerUp: the
	// suite then checks that a copy restores to the rows it had, and that
	// a torn copy restores nothing.
	BacksUp bool
}

// Run runs every conformance property against h as subtests of t. It fails
// t, never skips, when a property does not hold.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.Driver == nil {
		t.Fatal("drivertest: Harness.Driver is nil")
	}
	if h.OpenDSN == nil {
		t.Fatal("drivertest: Harness.OpenDSN is nil")
	}
	s := &suite{h: h}
	t.Run("Name", s.testName)
	t.Run("CreateIsIdempotent", s.testCreateIdempotent)
	t.Run("CreateRejectsInvalidNames", s.testCreateRejectsInvalidNames)
	t.Run("DropIsIdempotent", s.testDropIdempotent)
	t.Run("DroppedDatabaseCannotBeOpened", s.testDroppedCannotOpen)
	t.Run("IssueOnMissingDatabaseIsNotFound", s.testIssueMissing)
	t.Run("ScopesWork", s.testScopes)
	t.Run("ReadWriteCannotAlterAdminObjects", s.testOwnership)
	t.Run("CredentialOfAnotherDatabaseIsDenied", s.testCrossDatabase)
	t.Run("WrongSecretIsDenied", s.testWrongSecret)
	t.Run("ScopeMustMatchSecret", s.testScopeMismatch)
	t.Run("RevokedCredentialStopsWorking", s.testRevoke)
	t.Run("RevokeEndsSessions", s.testRevokeEndsSessions)
	t.Run("RotationSlots", s.testRotationSlots)
	t.Run("ReissueReplacesSlotSecret", s.testReissueReplaces)
	t.Run("ExpiredCredentialDoesNotWork", s.testExpired)
	t.Run("FutureExpiryWorks", s.testFutureExpiry)
	t.Run("Descriptor", s.testDescriptor)
	t.Run("DescriptorDoesNoIO", s.testDescriptorNoIO)
	t.Run("SecretsDoNotPrint", s.testSecretsDoNotPrint)
	t.Run("SuspendStopsEveryCredential", s.testSuspendStopsEveryCredential)
	t.Run("ResumeRestoresAccess", s.testResumeRestoresAccess)
	t.Run("IssueWhileSuspended", s.testIssueWhileSuspended)
	t.Run("SuspendMissingDatabase", s.testSuspendMissing)
	t.Run("ResetFromSource", s.testResetFromSource)
	t.Run("ResetToEmpty", s.testResetToEmpty)
	t.Run("ResetDiscarded", s.testResetDiscarded)
	t.Run("ResetLeftoversGoWithDrop", s.testResetLeftoversGoWithDrop)
	if h.BacksUp {
		t.Run("BackupRestoresItsRows", s.testBackupRestores)
		t.Run("TornBackupRestoresNothing", s.testTornBackup)
		t.Run("BackupOfMissingDatabase", s.testBackupMissing)
	}
}

// NewDatabaseName returns a fresh generated database name, "env_" and 26
// random lowercase base32 characters, the shape envplane gives every database.
func NewDatabaseName(tb testing.TB) string {
	tb.Helper()
	const alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
	b := make([]byte, 26)
	if _, err := rand.Read(b); err != nil {
		tb.Fatalf("random: %v", err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "env_" + string(b)
}

// suite carries the harness and every secret the driver has handed out, so
// that each error can be checked against all of them.
type suite struct {
	h Harness

	mu      sync.Mutex
	secrets []string
}

const table = "drivertest_items"

func (s *suite) remember(secret drivers.Secret) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets = append(s.secrets, secret.Reveal())
}

// leaks reports whether text contains any secret seen so far.
func (s *suite) leaks(text string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, secret := range s.secrets {
		if secret != "" && strings.Contains(text, secret) {
			return true
		}
	}
	return false
}

// check fails tb when err's message contains a secret. It never prints the
// message, since that would print the secret.
func (s *suite) check(tb testing.TB, what string, err error) {
	tb.Helper()
	if err != nil && s.leaks(err.Error()) {
		tb.Errorf("%s: the error message contains a credential secret", what)
	}
}

// fail reports an unexpected error; the message is printed only after the
// leak check, so a failure can never print a secret.
func (s *suite) fail(tb testing.TB, what string, err error) {
	tb.Helper()
	if s.leaks(err.Error()) {
		tb.Fatalf("%s: unexpected error (message withheld: it contains a credential secret)", what)
	}
	tb.Fatalf("%s: %v", what, err)
}

func (s *suite) create(tb testing.TB) drivers.Database {
	tb.Helper()
	ctx := context.Background()
	name := NewDatabaseName(tb)
	resp, err := s.h.Driver.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: name, Region: s.h.Region})
	if err != nil {
		s.fail(tb, "create database", err)
	}
	if resp.Database.Name != name {
		tb.Fatalf("create database: response names %q, want %q", resp.Database.Name, name)
	}
	tb.Cleanup(func() {
		_, err := s.h.Driver.DropDatabase(context.Background(), drivers.DropDatabaseRequest{Database: resp.Database})
		if err != nil {
			s.check(tb, "drop database at cleanup", err)
			tb.Errorf("drop database at cleanup: %v", s.redacted(err))
		}
	})
	return resp.Database
}

func (s *suite) issue(tb testing.TB, db drivers.Database, scope drivers.Scope, slot drivers.Slot, expires time.Time) drivers.Credential {
	tb.Helper()
	resp, err := s.h.Driver.IssueCredential(context.Background(), drivers.IssueCredentialRequest{
		Database: db, Scope: scope, Slot: slot, ExpiresAt: expires,
	})
	if err != nil {
		s.fail(tb, fmt.Sprintf("issue %s/%s", scope, slot), err)
	}
	c := resp.Credential
	s.remember(c.Secret)
	if c.Secret.Reveal() == "" {
		tb.Fatalf("issue %s/%s: empty secret", scope, slot)
	}
	if c.Scope != scope || c.Slot != slot {
		tb.Fatalf("issue %s/%s: credential says %s/%s", scope, slot, c.Scope, c.Slot)
	}
	s.noSecretInFmt(tb, "IssueCredentialResponse", resp, c.Secret)
	return c
}

func (s *suite) revoke(tb testing.TB, db drivers.Database, c drivers.Credential) {
	tb.Helper()
	_, err := s.h.Driver.RevokeCredential(context.Background(), drivers.RevokeCredentialRequest{
		Database: db, Scope: c.Scope, Slot: c.Slot, Username: c.Username,
	})
	if err != nil {
		s.fail(tb, fmt.Sprintf("revoke %s/%s", c.Scope, c.Slot), err)
	}
}

// tryOpen opens a pool with the credential and returns the driver's error,
// checked for leaks. A pool it returns is closed when the test ends.
func (s *suite) tryOpen(tb testing.TB, db drivers.Database, c drivers.Credential) (drivers.OpenResponse, error) {
	tb.Helper()
	resp, err := s.h.Driver.Open(context.Background(), drivers.OpenRequest{Database: db, Credential: c})
	s.check(tb, "open", err)
	if err != nil {
		return resp, err
	}
	if resp.DB == nil {
		tb.Fatalf("open %s/%s: nil DB without error", c.Scope, c.Slot)
	}
	tb.Cleanup(func() { resp.DB.Close() })
	switch resp.Dialect {
	case drivers.DialectSQLite, drivers.DialectPostgres, drivers.DialectLibSQL:
	default:
		tb.Fatalf("open %s/%s: unknown dialect %q", c.Scope, c.Slot, resp.Dialect)
	}
	return resp, nil
}

func (s *suite) open(tb testing.TB, db drivers.Database, c drivers.Credential) drivers.OpenResponse {
	tb.Helper()
	resp, err := s.tryOpen(tb, db, c)
	if err != nil {
		s.fail(tb, fmt.Sprintf("open %s/%s", c.Scope, c.Slot), err)
	}
	return resp
}

// denied asserts that the credential cannot open the database and that the
// driver says so with ErrDenied, as the Open contract requires.
func (s *suite) denied(tb testing.TB, db drivers.Database, c drivers.Credential, why string) {
	tb.Helper()
	if _, err := s.tryOpen(tb, db, c); err == nil {
		tb.Fatalf("%s: Open succeeded, want ErrDenied", why)
	} else if !errors.Is(err, drivers.ErrDenied) {
		tb.Errorf("%s: Open error does not wrap ErrDenied: %v", why, s.redacted(err))
	}
}

func (s *suite) exec(tb testing.TB, db *sql.DB, query string, args ...any) error {
	tb.Helper()
	_, err := db.ExecContext(context.Background(), query, args...)
	s.check(tb, query, err)
	return err
}

func (s *suite) mustExec(tb testing.TB, db *sql.DB, query string, args ...any) {
	tb.Helper()
	if err := s.exec(tb, db, query, args...); err != nil {
		s.fail(tb, query, err)
	}
}

func (s *suite) count(tb testing.TB, db *sql.DB) int {
	tb.Helper()
	var n int
	err := db.QueryRowContext(context.Background(), "SELECT count(*) FROM "+table).Scan(&n)
	if err != nil {
		s.fail(tb, "count rows", err)
	}
	return n
}

func (s *suite) insert(tb testing.TB, db *sql.DB, d drivers.Dialect, id int) error {
	tb.Helper()
	q := fmt.Sprintf("INSERT INTO %s (id, note) VALUES (%s, %s)", table, d.Placeholder(1), d.Placeholder(2))
	return s.exec(tb, db, q, id, fmt.Sprintf("row %d", id))
}

func (s *suite) createTable(tb testing.TB, db *sql.DB) {
	tb.Helper()
	s.mustExec(tb, db, "CREATE TABLE "+table+" (id INTEGER PRIMARY KEY, note TEXT NOT NULL)")
}

// works asserts that the credential opens the database and can read.
func (s *suite) works(tb testing.TB, db drivers.Database, c drivers.Credential, why string) {
	tb.Helper()
	resp, err := s.tryOpen(tb, db, c)
	if err != nil {
		s.fail(tb, why+": open", err)
	}
	var one int
	err = resp.DB.QueryRowContext(context.Background(), "SELECT 1").Scan(&one)
	if err != nil {
		s.fail(tb, why+": select 1", err)
	}
}

func (s *suite) noSecretInFmt(tb testing.TB, what string, v any, secrets ...drivers.Secret) {
	tb.Helper()
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(verb, v)
		for _, secret := range secrets {
			if secret.Reveal() != "" && strings.Contains(out, secret.Reveal()) {
				tb.Errorf("%s printed with %s contains the secret", what, verb)
			}
		}
	}
}

// redacted returns err, or a stand-in when its message holds a secret, so
// failure messages can include driver errors safely.
func (s *suite) redacted(err error) any {
	if err != nil && s.leaks(err.Error()) {
		return "(message withheld: it contains a credential secret)"
	}
	return err
}

func (s *suite) testName(t *testing.T) {
	if s.h.Driver.Name() == "" {
		t.Fatal("Name() is empty")
	}
}

func (s *suite) testCreateIdempotent(t *testing.T) {
	ctx := context.Background()
	db := s.create(t)
	again, err := s.h.Driver.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: db.Name, Region: s.h.Region})
	if err != nil {
		s.fail(t, "second create of the same database", err)
	}
	if again.Database.Name != db.Name {
		t.Fatalf("second create names %q, want %q", again.Database.Name, db.Name)
	}
	// The database survived the second create: a credential opens it.
	admin := s.issue(t, db, drivers.ScopeAdmin, drivers.SlotA, time.Time{})
	rw := s.open(t, db, admin)
	s.createTable(t, rw.DB)
	if err := s.insert(t, rw.DB, rw.Dialect, 1); err != nil {
		s.fail(t, "insert", err)
	}
	if _, err := s.h.Driver.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: db.Name, Region: s.h.Region}); err != nil {
		s.fail(t, "third create of the same database", err)
	}
	if n := s.count(t, s.open(t, db, admin).DB); n != 1 {
		t.Fatalf("after a repeated create the table holds %d rows, want 1: create must not reset an existing database", n)
	}
}

func (s *suite) testCreateRejectsInvalidNames(t *testing.T) {
	for _, name := range []string{
		"",
		"../" + NewDatabaseName(t),
		NewDatabaseName(t) + "/x",
		"env_" + strings.Repeat("A", 26),
		"env_short",
		"env_abcdefghijklmnopqrstuvwxy'", // a quote where the 26th character goes
		"postgres",
	} {
		resp, err := s.h.Driver.CreateDatabase(context.Background(), drivers.CreateDatabaseRequest{Name: name, Region: s.h.Region})
		if err == nil {
			_, _ = s.h.Driver.DropDatabase(context.Background(), drivers.DropDatabaseRequest{Database: resp.Database})
			t.Errorf("CreateDatabase(%q) succeeded; names must be generated (env_ + 26 lowercase characters)", name)
		}
	}
}

func (s *suite) testDropIdempotent(t *testing.T) {
	ctx := context.Background()
	name := NewDatabaseName(t)
	resp, err := s.h.Driver.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: name, Region: s.h.Region})
	if err != nil {
		s.fail(t, "create", err)
	}
	for i := range 2 {
		if _, err := s.h.Driver.DropDatabase(ctx, drivers.DropDatabaseRequest{Database: resp.Database}); err != nil {
			s.fail(t, fmt.Sprintf("drop #%d", i+1), err)
		}
	}
	never := drivers.Database{Name: NewDatabaseName(t), Region: s.h.Region}
	if _, err := s.h.Driver.DropDatabase(ctx, drivers.DropDatabaseRequest{Database: never}); err != nil {
		s.fail(t, "drop of a database never created", err)
	}
	// The name is free again: creating it anew works.
	again, err := s.h.Driver.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: name, Region: s.h.Region})
	if err != nil {
		s.fail(t, "create after drop", err)
	}
	if _, err := s.h.Driver.DropDatabase(ctx, drivers.DropDatabaseRequest{Database: again.Database}); err != nil {
		s.fail(t, "final drop", err)
	}
}

func (s *suite) testDroppedCannotOpen(t *testing.T) {
	ctx := context.Background()
	name := NewDatabaseName(t)
	resp, err := s.h.Driver.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: name, Region: s.h.Region})
	if err != nil {
		s.fail(t, "create", err)
	}
	db := resp.Database
	admin := s.issue(t, db, drivers.ScopeAdmin, drivers.SlotA, time.Time{})
	ro := s.issue(t, db, drivers.ScopeReadOnly, drivers.SlotA, time.Time{})
	s.works(t, db, admin, "before drop")
	if _, err := s.h.Driver.DropDatabase(ctx, drivers.DropDatabaseRequest{Database: db}); err != nil {
		s.fail(t, "drop", err)
	}
	for _, c := range []drivers.Credential{admin, ro} {
		resp, err := s.tryOpen(t, db, c)
		if err == nil {
			_, qerr := resp.DB.ExecContext(ctx, "SELECT 1")
			s.check(t, "query after drop", qerr)
			t.Errorf("Open(%s) of a dropped database succeeded", c.Scope)
		}
	}
}

func (s *suite) testIssueMissing(t *testing.T) {
	never := drivers.Database{Name: NewDatabaseName(t), Region: s.h.Region}
	resp, err := s.h.Driver.IssueCredential(context.Background(), drivers.IssueCredentialRequest{
		Database: never, Scope: drivers.ScopeAdmin, Slot: drivers.SlotA,
	})
	if err == nil {
		s.remember(resp.Credential.Secret)
		t.Fatal("IssueCredential on a database never created succeeded, want ErrNotFound")
	}
	s.check(t, "issue on missing database", err)
	if !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("IssueCredential on a missing database: %v, want ErrNotFound", s.redacted(err))
	}
}

func (s *suite) testScopes(t *testing.T) {
	db := s.create(t)
	admin := s.issue(t, db, drivers.ScopeAdmin, drivers.SlotA, time.Time{})
	rw := s.issue(t, db, drivers.ScopeReadWrite, drivers.SlotA, time.Time{})
	ro := s.issue(t, db, drivers.ScopeReadOnly, drivers.SlotA, time.Time{})

	a := s.open(t, db, admin)
	s.createTable(t, a.DB)
	if err := s.insert(t, a.DB, a.Dialect, 1); err != nil {
		s.fail(t, "admin insert", err)
	}

	w := s.open(t, db, rw)
	if err := s.insert(t, w.DB, w.Dialect, 2); err != nil {
		s.fail(t, "readwrite insert into the admin's table", err)
	}
	q := fmt.Sprintf("UPDATE %s SET note = %s WHERE id = %s", table, w.Dialect.Placeholder(1), w.Dialect.Placeholder(2))
	s.mustExec(t, w.DB, q, "changed", 1)
	q = fmt.Sprintf("DELETE FROM %s WHERE id = %s", table, w.Dialect.Placeholder(1))
	s.mustExec(t, w.DB, q, 2)
	if err := s.insert(t, w.DB, w.Dialect, 3); err != nil {
		s.fail(t, "readwrite insert", err)
	}

	r := s.open(t, db, ro)
	if n := s.count(t, r.DB); n != 2 {
		t.Fatalf("readonly sees %d rows, want 2", n)
	}
	if err := s.insert(t, r.DB, r.Dialect, 4); err == nil {
		t.Error("readonly INSERT succeeded")
	}
	if err := s.exec(t, r.DB, "CREATE TABLE drivertest_readonly (id INTEGER)"); err == nil {
		t.Error("readonly CREATE TABLE succeeded")
	}
	if err := s.exec(t, r.DB, "DELETE FROM "+table); err == nil {
		t.Error("readonly DELETE succeeded")
	}
	if n := s.count(t, a.DB); n != 2 {
		t.Fatalf("after readonly's attempts the table holds %d rows, want 2", n)
	}
}

func (s *suite) testOwnership(t *testing.T) {
	if !s.h.EnforcesOwnership {
		t.Skip("the engine cannot stop a readwrite credential from DDL on the admin's objects (Harness.EnforcesOwnership)")
	}
	db := s.create(t)
	admin := s.issue(t, db, drivers.ScopeAdmin, drivers.SlotA, time.Time{})
	rw := s.issue(t, db, drivers.ScopeReadWrite, drivers.SlotA, time.Time{})
	a := s.open(t, db, admin)
	s.createTable(t, a.DB)
	if err := s.insert(t, a.DB, a.Dialect, 1); err != nil {
		s.fail(t, "admin insert", err)
	}
	w := s.open(t, db, rw)
	if err := s.exec(t, w.DB, "ALTER TABLE "+table+" ADD COLUMN extra INTEGER"); err == nil {
		t.Error("readwrite ALTER TABLE on the admin's table succeeded")
	}
	if err := s.exec(t, w.DB, "DROP TABLE "+table); err == nil {
		t.Error("readwrite DROP TABLE on the admin's table succeeded")
	}
	if n := s.count(t, a.DB); n != 1 {
		t.Fatalf("the admin's table holds %d rows, want 1", n)
	}
}

func (s *suite) testCrossDatabase(t *testing.T) {
	dbA := s.create(t)
	dbB := s.create(t)
	for _, scope := range drivers.Scopes() {
		credA := s.issue(t, dbA, scope, drivers.SlotA, time.Time{})
		s.issue(t, dbB, scope, drivers.SlotA, time.Time{})
		s.works(t, dbA, credA, "own database")
		s.denied(t, dbB, credA, fmt.Sprintf("%s credential of A on B", scope))
	}
}

func (s *suite) testWrongSecret(t *testing.T) {
	if !s.h.ChecksSecrets {
		t.Skip("the engine does not compare secrets (Harness.ChecksSecrets)")
	}
	db := s.create(t)
	c := s.issue(t, db, drivers.ScopeReadWrite, drivers.SlotA, time.Time{})
	forged := c
	forged.Secret = drivers.Secret(strings.Repeat("x", len(c.Secret.Reveal())))
	s.denied(t, db, forged, "a forged secret")
	empty := c
	empty.Secret = ""
	s.denied(t, db, empty, "an empty secret")
}

func (s *suite) testScopeMismatch(t *testing.T) {
	// A readonly secret presented as admin must not open with admin powers.
	db := s.create(t)
	admin := s.issue(t, db, drivers.ScopeAdmin, drivers.SlotA, time.Time{})
	ro := s.issue(t, db, drivers.ScopeReadOnly, drivers.SlotA, time.Time{})
	a := s.open(t, db, admin)
	s.createTable(t, a.DB)
	claimed := ro
	claimed.Scope = drivers.ScopeAdmin
	resp, err := s.tryOpen(t, db, claimed)
	if err != nil {
		return // refused outright: fine
	}
	if err := s.insert(t, resp.DB, resp.Dialect, 1); err == nil {
		t.Fatal("a readonly secret presented as admin could write")
	}
}

func (s *suite) testRevoke(t *testing.T) {
	db := s.create(t)
	for _, scope := range drivers.Scopes() {
		c := s.issue(t, db, scope, drivers.SlotA, time.Time{})
		s.works(t, db, c, "before revoke")
		s.revoke(t, db, c)
		s.denied(t, db, c, fmt.Sprintf("revoked %s credential", scope))
		s.revoke(t, db, c) // twice is fine
		s.denied(t, db, c, fmt.Sprintf("%s credential revoked twice", scope))
	}
}

func (s *suite) testRevokeEndsSessions(t *testing.T) {
	if !s.h.EndsSessionsOnRevoke {
		t.Skip("the engine keeps sessions opened before a revoke (Harness.EndsSessionsOnRevoke)")
	}
	db := s.create(t)
	c := s.issue(t, db, drivers.ScopeReadWrite, drivers.SlotA, time.Time{})
	resp := s.open(t, db, c)
	ctx := context.Background()
	conn, err := resp.DB.Conn(ctx)
	if err != nil {
		s.fail(t, "hold a connection", err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.ExecContext(ctx, "SELECT 1"); err != nil {
		s.fail(t, "query before revoke", err)
	}
	s.revoke(t, db, c)
	_, err = conn.ExecContext(ctx, "SELECT 1")
	s.check(t, "query on a held connection after revoke", err)
	if err == nil {
		t.Error("a connection opened before the revoke still works")
	}
	_, err = resp.DB.ExecContext(ctx, "SELECT 1")
	s.check(t, "query on the pool after revoke", err)
	if err == nil {
		t.Error("the pool opened before the revoke still works")
	}
}

func (s *suite) testRotationSlots(t *testing.T) {
	db := s.create(t)
	for _, scope := range drivers.Scopes() {
		a := s.issue(t, db, scope, drivers.SlotA, time.Time{})
		b := s.issue(t, db, scope, drivers.SlotB, time.Time{})
		if a.Secret.Reveal() == b.Secret.Reveal() {
			t.Fatalf("%s: slots a and b got the same secret", scope)
		}
		s.works(t, db, a, fmt.Sprintf("%s slot a while b is issued (rotating)", scope))
		s.works(t, db, b, fmt.Sprintf("%s slot b", scope))
		s.revoke(t, db, a)
		s.denied(t, db, a, fmt.Sprintf("%s slot a after its revoke", scope))
		if s.h.RevokeInvalidatesAllSlots {
			// The engine took b down with a; the control plane re-issues it.
			b = s.issue(t, db, scope, drivers.SlotB, time.Time{})
		}
		s.works(t, db, b, fmt.Sprintf("%s slot b after a's revoke", scope))
		// Rotate back onto a: a works again with a new secret, b until revoked.
		a2 := s.issue(t, db, scope, drivers.SlotA, time.Time{})
		s.works(t, db, a2, fmt.Sprintf("%s slot a re-issued", scope))
		s.works(t, db, b, fmt.Sprintf("%s slot b while a is re-issued", scope))
		if s.h.ChecksSecrets {
			s.denied(t, db, a, fmt.Sprintf("%s slot a's first secret after re-issue", scope))
		}
	}
}

func (s *suite) testReissueReplaces(t *testing.T) {
	db := s.create(t)
	first := s.issue(t, db, drivers.ScopeReadWrite, drivers.SlotA, time.Time{})
	s.works(t, db, first, "first secret")
	second := s.issue(t, db, drivers.ScopeReadWrite, drivers.SlotA, time.Time{})
	if first.Secret.Reveal() == second.Secret.Reveal() {
		t.Fatal("re-issuing a slot returned the same secret")
	}
	s.works(t, db, second, "second secret")
	if !s.h.ChecksSecrets {
		t.Skip("the engine does not compare secrets (Harness.ChecksSecrets): the replaced secret cannot be refused")
	}
	s.denied(t, db, first, "the slot's replaced secret")
}

func (s *suite) testExpired(t *testing.T) {
	if !s.h.EnforcesExpiry {
		t.Skip("the engine does not enforce credential expiry (Harness.EnforcesExpiry)")
	}
	db := s.create(t)
	past := time.Now().Add(-time.Hour)
	resp, err := s.h.Driver.IssueCredential(context.Background(), drivers.IssueCredentialRequest{
		Database: db, Scope: drivers.ScopeReadWrite, Slot: drivers.SlotA, ExpiresAt: past,
	})
	if err != nil {
		s.check(t, "issue expired", err)
		return // refusing to issue an already-expired credential is fine
	}
	s.remember(resp.Credential.Secret)
	s.denied(t, db, resp.Credential, "a credential that expired an hour ago")
}

func (s *suite) testFutureExpiry(t *testing.T) {
	db := s.create(t)
	c := s.issue(t, db, drivers.ScopeReadOnly, drivers.SlotB, time.Now().Add(time.Hour))
	s.works(t, db, c, "a credential that expires in an hour")
}

func (s *suite) testDescriptor(t *testing.T) {
	ctx := context.Background()
	db := s.create(t)
	admin := s.issue(t, db, drivers.ScopeAdmin, drivers.SlotA, time.Time{})
	a := s.open(t, db, admin)
	s.createTable(t, a.DB)
	if err := s.insert(t, a.DB, a.Dialect, 1); err != nil {
		s.fail(t, "admin insert", err)
	}
	for i, scope := range drivers.Scopes() {
		c := admin
		if scope != drivers.ScopeAdmin {
			c = s.issue(t, db, scope, drivers.SlotA, time.Time{})
		}
		d, err := s.h.Driver.Descriptor(ctx, drivers.DescriptorRequest{Database: db, Credential: c})
		if err != nil {
			s.fail(t, fmt.Sprintf("descriptor %s", scope), err)
		}
		if d.DSN.Reveal() == "" || d.URL == "" {
			t.Fatalf("descriptor %s: DSN or URL is empty", scope)
		}
		secret := c.Secret.Reveal()
		for field, v := range map[string]string{"URL": d.URL, "Host": d.Host, "Database": d.Database, "Username": d.Username} {
			if strings.Contains(v, secret) {
				t.Errorf("descriptor %s: %s contains the secret", scope, field)
			}
		}
		for k, v := range d.Params {
			if strings.Contains(k, secret) || strings.Contains(v, secret) {
				t.Errorf("descriptor %s: Params contain the secret", scope)
			}
		}
		s.noSecretInFmt(t, "Descriptor", d, c.Secret)

		pool, err := s.h.OpenDSN(d.DSN.Reveal())
		s.check(t, "open DSN", err)
		if err != nil {
			s.fail(t, fmt.Sprintf("open %s DSN with the engine's client", scope), err)
		}
		t.Cleanup(func() { pool.Close() })
		if n := s.count(t, pool); n < 1 {
			t.Fatalf("%s DSN sees %d rows, want at least 1", scope, n)
		}
		err = s.insert(t, pool, a.Dialect, 100+i)
		switch {
		case scope == drivers.ScopeReadOnly && err == nil:
			t.Error("the readonly DSN could INSERT")
		case scope != drivers.ScopeReadOnly && err != nil:
			s.fail(t, fmt.Sprintf("insert through the %s DSN", scope), err)
		}
	}
}

func (s *suite) testDescriptorNoIO(t *testing.T) {
	db := s.create(t)
	c := s.issue(t, db, drivers.ScopeReadWrite, drivers.SlotA, time.Time{})
	// A cancelled context makes any I/O fail; Descriptor must not need any.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d, err := s.h.Driver.Descriptor(ctx, drivers.DescriptorRequest{Database: db, Credential: c})
	if err != nil {
		s.fail(t, "descriptor with a cancelled context", err)
	}
	if d.DSN.Reveal() == "" {
		t.Fatal("descriptor with a cancelled context: empty DSN")
	}
}

func (s *suite) testSecretsDoNotPrint(t *testing.T) {
	db := s.create(t)
	c := s.issue(t, db, drivers.ScopeAdmin, drivers.SlotB, time.Now().Add(time.Hour))
	resp := s.open(t, db, c)
	d, err := s.h.Driver.Descriptor(context.Background(), drivers.DescriptorRequest{Database: db, Credential: c})
	if err != nil {
		s.fail(t, "descriptor", err)
	}
	for what, v := range map[string]any{
		"Credential":              c,
		"IssueCredentialResponse": drivers.IssueCredentialResponse{Credential: c},
		"OpenRequest":             drivers.OpenRequest{Database: db, Credential: c},
		"OpenResponse":            resp,
		"DescriptorRequest":       drivers.DescriptorRequest{Database: db, Credential: c},
		"Descriptor":              d,
		"Database":                db,
		"RevokeCredentialRequest": drivers.RevokeCredentialRequest{Database: db, Scope: c.Scope, Slot: c.Slot, Username: c.Username},
	} {
		s.noSecretInFmt(t, what, v, c.Secret)
	}
}
