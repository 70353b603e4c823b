package sqlopen_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/envplane/envplane/dataplane/router/sqlopen"
	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/drivertest"
	"github.com/envplane/envplane/drivers/turso"
	"github.com/envplane/envplane/drivers/turso/tursotest"
)

// printed returns every way fmt shows v.
func printed(v any) string {
	return fmt.Sprintf("%v %+v %#v %s", v, v, v, v)
}

// open opens dsn with sqlopen and closes the pool when the test ends.
func open(tb testing.TB, driver string, dsn drivers.Secret) *sql.DB {
	tb.Helper()
	db, err := sqlopen.Open(driver, dsn)
	if err != nil {
		tb.Fatalf("open %s: %v", driver, err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// roundTrip writes a row and reads it back.
func roundTrip(tb testing.TB, db *sql.DB) {
	tb.Helper()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "CREATE TABLE probe (v TEXT)"); err != nil {
		tb.Fatalf("create: %v", err)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO probe (v) VALUES ('ok')"); err != nil {
		tb.Fatalf("insert: %v", err)
	}
	var v string
	if err := db.QueryRowContext(ctx, "SELECT v FROM probe").Scan(&v); err != nil || v != "ok" {
		tb.Fatalf("select: %q, %v", v, err)
	}
}

// TestDriverNames: envplane's driver names map to database/sql's.
func TestDriverNames(t *testing.T) {
	for in, want := range map[string]string{"sqlite": "sqlite", "postgres": "pgx", "turso": "libsql"} {
		if got, err := sqlopen.DriverName(in); err != nil || got != want {
			t.Errorf("DriverName(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := sqlopen.DriverName("mysql"); !errors.Is(err, drivers.ErrUnsupported) {
		t.Errorf("DriverName(mysql): %v, want ErrUnsupported", err)
	}
	if _, err := sqlopen.Open("mysql", "root:pw@/db"); !errors.Is(err, drivers.ErrUnsupported) {
		t.Errorf("Open(mysql): %v, want ErrUnsupported", err)
	}
}

// TestOpenSQLite: a SQLite file DSN opens with modernc.org/sqlite, and a
// read-only DSN cannot write.
func TestOpenSQLite(t *testing.T) {
	path := filepath.ToSlash(filepath.Join(t.TempDir(), "env.db"))
	roundTrip(t, open(t, "sqlite", drivers.Secret("file:"+path+"?mode=rwc")))
	ro := open(t, "sqlite", drivers.Secret("file:"+path+"?mode=ro"))
	if _, err := ro.Exec("INSERT INTO probe (v) VALUES ('no')"); err == nil {
		t.Error("a mode=ro DSN wrote")
	}
	if out := printed(ro); strings.Contains(out, path) {
		t.Error("printing the pool shows its DSN")
	}
}

// TestOpenPostgres: a postgres:// DSN opens with pgx on the real server, and
// the pool prints without the password the DSN carries.
func TestOpenPostgres(t *testing.T) {
	u, err := url.Parse(drivertest.NewPostgresDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	password := "pw-" + drivertest.RandomSuffix(t)
	u.User = url.UserPassword(u.User.Username(), password)
	db := open(t, "postgres", drivers.Secret(u.String()))
	roundTrip(t, db)
	if out := printed(db); strings.Contains(out, password) {
		t.Error("printing the pool shows the password")
	}
}

// TestPostgresSessionEndedIsRetried: a pooled connection whose session the
// server ended (pg_terminate_backend, as revoking a rotated credential does)
// is not the application's failure: the next statement runs on a new
// connection instead of answering 57P01.
func TestPostgresSessionEndedIsRetried(t *testing.T) {
	ctx := context.Background()
	dsn := drivertest.NewPostgresDatabase(t)
	db := open(t, "postgres", drivers.Secret(dsn))
	db.SetMaxOpenConns(1)
	var pid int
	if err := db.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatalf("first query: %v", err)
	}
	admin := open(t, "postgres", drivers.Secret(dsn))
	var ended bool
	if err := admin.QueryRowContext(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&ended); err != nil || !ended {
		t.Fatalf("terminate backend %d: %v, %v", pid, ended, err)
	}
	for _, stmt := range []string{"exec", "query"} {
		var err error
		if stmt == "exec" {
			_, err = db.ExecContext(ctx, "SELECT 1")
		} else {
			var again int
			err = db.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&again)
			if err == nil && again == pid {
				t.Fatalf("the statement ran on the ended session %d", pid)
			}
		}
		if err != nil {
			t.Fatalf("%s after the session was ended: %v, want it run on a new connection", stmt, err)
		}
		if stmt == "exec" {
			// End the new session too, for the query's turn.
			if err := db.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
				t.Fatal(err)
			}
			if _, err := admin.ExecContext(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestOpenTurso: a Turso DSN as the Turso driver's descriptor writes it
// opens with libsql, and the token inside reaches the database, which
// refuses another one.
func TestOpenTurso(t *testing.T) {
	ctx := context.Background()
	p := tursotest.NewPlatform(t, tursotest.PlatformOptions{DataPlane: true})
	d, err := turso.New(turso.Config{Organization: p.Organization, Group: p.Group, BaseURL: p.URL, Token: p.Token, DatabaseURL: p.DatabaseURL})
	if err != nil {
		t.Fatal(err)
	}
	created, err := d.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: drivertest.NewDatabaseName(t)})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	issued, err := d.IssueCredential(ctx, drivers.IssueCredentialRequest{Database: created.Database, Scope: drivers.ScopeAdmin, Slot: drivers.SlotA, ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	desc, err := d.Descriptor(ctx, drivers.DescriptorRequest{Database: created.Database, Credential: issued.Credential})
	if err != nil {
		t.Fatalf("descriptor: %v", err)
	}
	db := open(t, "turso", desc.DSN)
	roundTrip(t, db)
	token := issued.Credential.Secret.Reveal()
	if out := printed(db); strings.Contains(out, token) {
		t.Error("printing the pool shows the token")
	}

	// libsql's Ping sends nothing; a query does.
	wrong := open(t, "turso", drivers.Secret(desc.URL+"?authToken=not-a-token"))
	var one int
	if err := wrong.QueryRowContext(ctx, "SELECT 1").Scan(&one); err == nil {
		t.Error("a wrong token reached the database")
	} else if strings.Contains(printed(err), token) {
		t.Error("the refusal shows the right token")
	}
}

// TestOpenRefusesDSNsQuietly: a DSN that does not parse is refused with an
// error that does not quote it.
func TestOpenRefusesDSNsQuietly(t *testing.T) {
	secret := "pw-" + strings.Repeat("q", 16)
	for driver, dsn := range map[string]string{
		"postgres": "postgres://u:" + secret + "@host:notaport/db",
		"turso":    "libsql://host/%zz?authToken=" + secret,
		"sqlite":   "file:env.db?_pragma=%zz" + secret,
	} {
		db, err := sqlopen.Open(driver, drivers.Secret(dsn))
		if err == nil {
			db.Close()
			t.Errorf("%s: a DSN that does not parse opened", driver)
			continue
		}
		if strings.Contains(printed(err), secret) {
			t.Errorf("%s: the error %q quotes the DSN", driver, err)
		}
	}
}

// connectErr dials once with Connector(driver, dsn) and returns the error.
func connectErr(tb testing.TB, driver, dsn string) error {
	tb.Helper()
	c, err := sqlopen.Connector(driver, drivers.Secret(dsn))
	if err != nil {
		tb.Fatalf("connector %s: %v", driver, err)
	}
	conn, err := c.Connect(context.Background())
	if err == nil {
		conn.Close()
	}
	return err
}

// TestConnectorPostgresRefusals: on a server that checks passwords, a
// wrong password (28P01) and a role that may not log in (28000) are
// refused when a connection is dialed, with errors wrapping
// drivers.ErrDenied that keep the server's *pgconn.PgError and never show
// the password; a database that does not exist is not a refusal of the
// credential.
func TestConnectorPostgresRefusals(t *testing.T) {
	admin := drivertest.PasswordPostgresURL(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connect as admin: %v", err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	role := "envplane_sqlopen_" + drivertest.RandomSuffix(t)
	password := "pw-" + drivertest.RandomSuffix(t) + drivertest.RandomSuffix(t)
	ident := pgx.Identifier{role}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE ROLE "+ident+" LOGIN PASSWORD '"+password+"'"); err != nil {
		t.Fatalf("create role: %v", err)
	}
	t.Cleanup(func() { conn.Exec(ctx, "DROP ROLE IF EXISTS "+ident) })
	dsn := func(user, pw, database string) string {
		u, err := url.Parse(admin)
		if err != nil {
			t.Fatal(err)
		}
		u.User, u.Path = url.UserPassword(user, pw), "/"+database
		return u.String()
	}

	if err := connectErr(t, "postgres", dsn(role, password, "postgres")); err != nil {
		t.Fatalf("the right password: %v", err)
	}
	wrong := "wrong-" + password
	for _, tc := range []struct {
		name, dsn, code string
		setup           string
	}{
		{name: "wrong password", dsn: dsn(role, wrong, "postgres"), code: "28P01"},
		{name: "NOLOGIN", dsn: dsn(role, password, "postgres"), code: "28000", setup: "ALTER ROLE " + ident + " NOLOGIN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != "" {
				if _, err := conn.Exec(ctx, tc.setup); err != nil {
					t.Fatalf("%s: %v", tc.setup, err)
				}
			}
			err := connectErr(t, "postgres", tc.dsn)
			var pe *pgconn.PgError
			if !errors.Is(err, drivers.ErrDenied) || !errors.As(err, &pe) || pe.Code != tc.code {
				t.Fatalf("dial: %v, want ErrDenied with SQLSTATE %s", err, tc.code)
			}
			if out := printed(err); strings.Contains(out, password) || strings.Contains(out, wrong) {
				t.Error("the refusal shows the password")
			}
		})
	}

	if _, err := conn.Exec(ctx, "ALTER ROLE "+ident+" LOGIN"); err != nil {
		t.Fatal(err)
	}
	err = connectErr(t, "postgres", dsn(role, password, "envplane_no_such_"+drivertest.RandomSuffix(t)))
	if err == nil || errors.Is(err, drivers.ErrDenied) {
		t.Errorf("dial to a missing database: %v, want an error that is not ErrDenied", err)
	}
}

// TestConnectorTursoRefusals: a token the database refuses (wrong, or
// revoked) fails the first statement as a bad connection wrapping
// drivers.ErrDenied, after which the connector refuses to dial, so the
// router's pool resolves again and database/sql runs the statement again;
// no error shows a token. The right token runs its statement.
func TestConnectorTursoRefusals(t *testing.T) {
	ctx := context.Background()
	p := tursotest.NewPlatform(t, tursotest.PlatformOptions{DataPlane: true})
	d, err := turso.New(turso.Config{Organization: p.Organization, Group: p.Group, BaseURL: p.URL, Token: p.Token, DatabaseURL: p.DatabaseURL})
	if err != nil {
		t.Fatal(err)
	}
	created, err := d.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: drivertest.NewDatabaseName(t)})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	issued, err := d.IssueCredential(ctx, drivers.IssueCredentialRequest{Database: created.Database, Scope: drivers.ScopeReadWrite, Slot: drivers.SlotA, ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	desc, err := d.Descriptor(ctx, drivers.DescriptorRequest{Database: created.Database, Credential: issued.Credential})
	if err != nil {
		t.Fatalf("descriptor: %v", err)
	}
	token := issued.Credential.Secret.Reveal()
	if err := tursoStatementErr(t, desc.DSN.Reveal()); err != nil {
		t.Fatalf("the right token: %v", err)
	}

	wrong := "not-a-token-" + drivertest.RandomSuffix(t)
	err = tursoStatementErr(t, desc.URL+"?authToken="+wrong)
	if !errors.Is(err, drivers.ErrDenied) {
		t.Fatalf("a wrong token: %v, want ErrDenied", err)
	}
	if _, err := d.RevokeCredential(ctx, drivers.RevokeCredentialRequest{Database: created.Database, Scope: drivers.ScopeReadWrite, Slot: drivers.SlotA}); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	revoked := tursoStatementErr(t, desc.DSN.Reveal())
	if !errors.Is(revoked, drivers.ErrDenied) {
		t.Fatalf("a revoked token: %v, want ErrDenied", revoked)
	}
	if out := printed(err) + printed(revoked); strings.Contains(out, token) || strings.Contains(out, wrong) {
		t.Error("a refusal shows the token")
	}
}

// tursoStatementErr runs a statement on a new libSQL connection. A refused
// token fails it as a bad connection (database/sql runs it again on a new
// one) wrapping drivers.ErrDenied, and the connector then refuses to dial
// with drivers.ErrDenied; tursoStatementErr checks both and returns the
// statement's error.
func tursoStatementErr(tb testing.TB, dsn string) error {
	tb.Helper()
	c, err := sqlopen.Connector("turso", drivers.Secret(dsn))
	if err != nil {
		tb.Fatalf("connector: %v", err)
	}
	ctx := context.Background()
	conn, err := c.Connect(ctx)
	if err != nil {
		tb.Fatalf("a libSQL dial does I/O: %v", err)
	}
	defer conn.Close()
	_, err = conn.(driver.ExecerContext).ExecContext(ctx, "SELECT 1", nil)
	if err == nil {
		return nil
	}
	if errors.Is(err, drivers.ErrDenied) {
		if !errors.Is(err, driver.ErrBadConn) {
			tb.Errorf("a refused statement is not a bad connection: %v", err)
		}
		if _, derr := c.Connect(ctx); !errors.Is(derr, drivers.ErrDenied) {
			tb.Errorf("after a refused statement the connector dials again: %v", derr)
		}
	}
	return err
}

// TestConnectorUnsupported: Connector knows the same drivers as DriverName.
func TestConnectorUnsupported(t *testing.T) {
	if _, err := sqlopen.Connector("mysql", "root:pw@/db"); !errors.Is(err, drivers.ErrUnsupported) {
		t.Errorf("Connector(mysql): %v, want ErrUnsupported", err)
	}
}
