package sqlopen_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
