package drivertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// PostgresAdminURLEnv names the variable that points tests at a PostgreSQL
// server with a role allowed to create databases and roles. Its default is the
// server this project's machines run.
const PostgresAdminURLEnv = "ENVPLANE_TEST_POSTGRES_URL"

const defaultPostgresAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// MissingServer stops a test that needs a server which is not there: with
// CI=true it fails, since CI must run every suite; elsewhere it skips, so a
// laptop without the server can still run the rest.
func MissingServer(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("required test server missing (CI=true): "+format, args...)
	}
	tb.Skipf("test server missing: "+format, args...)
}

// PostgresAdminURL returns the URL of the test PostgreSQL server's admin role,
// after checking that the server answers (MissingServer otherwise).
func PostgresAdminURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv(PostgresAdminURLEnv)
	if u == "" {
		u = defaultPostgresAdminURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		MissingServer(tb, "PostgreSQL at %s: %v", redactURL(u), err)
		return ""
	}
	defer conn.Close(ctx)
	if err := conn.Ping(ctx); err != nil {
		MissingServer(tb, "PostgreSQL at %s: %v", redactURL(u), err)
	}
	return u
}

// NewPostgresDatabase creates a fresh, uniquely named database on the test
// server, so runs never collide, drops it when the test ends, and returns its URL.
func NewPostgresDatabase(tb testing.TB) string {
	tb.Helper()
	admin := PostgresAdminURL(tb)
	name := "envplane_test_" + RandomSuffix(tb)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		tb.Fatalf("connect to test server: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		tb.Fatalf("create test database: %v", err)
	}
	tb.Cleanup(func() {
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			tb.Errorf("connect to drop test database: %v", err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			tb.Errorf("drop test database: %v", err)
		}
	})
	parsed, err := url.Parse(admin)
	if err != nil {
		tb.Fatalf("parse test server URL: %v", err)
	}
	parsed.Path = "/" + name
	return parsed.String()
}

// RandomSuffix returns 12 random lowercase hex characters, for names that
// must not collide across test runs.
func RandomSuffix(tb testing.TB) string {
	tb.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		tb.Fatalf("random: %v", err)
	}
	return hex.EncodeToString(b)
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

// PostgresStoreRole is the role that owns NewPostgresStoreDatabase's
// databases: it may log in and nothing more (no SUPERUSER, CREATEDB,
// CREATEROLE or BYPASSRLS), the least-privileged control-plane store
// user of ADR 0027, so row-level security holds it.
const PostgresStoreRole = "envplane_store_test"

// NewPostgresStoreDatabase is NewPostgresDatabase for the control-plane
// store: the database belongs to PostgresStoreRole, whose URL it returns.
// The role is created on first use, cluster-wide; test processes that
// race to create it all succeed.
func NewPostgresStoreDatabase(tb testing.TB) string {
	tb.Helper()
	admin := NewPostgresDatabase(tb)
	EnsurePostgresRole(tb, PostgresStoreRole, "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS")
	parsed, err := url.Parse(admin)
	if err != nil {
		tb.Fatalf("parse test database URL: %v", err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		tb.Fatalf("connect to test database: %v", err)
	}
	defer conn.Close(ctx)
	name := pgx.Identifier{parsed.Path[1:]}.Sanitize()
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+name+" OWNER TO "+pgx.Identifier{PostgresStoreRole}.Sanitize()); err != nil {
		tb.Fatalf("give the test database to the store role: %v", err)
	}
	parsed.User = url.UserPassword(PostgresStoreRole, PostgresStoreRole)
	return parsed.String()
}

// PostgresRuntimeRole is the login role that serves
// NewPostgresRuntimeStore's stores: it has no attribute at all and owns
// nothing; the migrating superuser grants it its database's runtime role
// (adr/0030).
const PostgresRuntimeRole = "envplane_store_runtime_test"

// NewPostgresRuntimeStore is NewPostgresDatabase for a store that migrates
// as one user and serves as another: it returns the URL that serves (as
// PostgresRuntimeRole) and the URL that migrates (as the test server's
// superuser, so the migrations create the database's runtime role,
// <database>_app). The runtime role is dropped with the database.
func NewPostgresRuntimeStore(tb testing.TB) (serveURL, migrateURL string) {
	tb.Helper()
	var app string
	// Registered before the database's own cleanup, so it runs after the
	// database is gone and nothing in it depends on the role.
	tb.Cleanup(func() {
		if app == "" {
			return
		}
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, PostgresAdminURL(tb))
		if err != nil {
			tb.Errorf("connect to drop role %s: %v", app, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{app}.Sanitize()); err != nil {
			tb.Errorf("drop role %s: %v", app, err)
		}
	})
	migrateURL = NewPostgresDatabase(tb)
	EnsurePostgresRole(tb, PostgresRuntimeRole, "LOGIN")
	parsed, err := url.Parse(migrateURL)
	if err != nil {
		tb.Fatalf("parse test database URL: %v", err)
	}
	app = parsed.Path[1:] + "_app"
	parsed.User = url.UserPassword(PostgresRuntimeRole, PostgresRuntimeRole)
	return parsed.String(), migrateURL
}

// EnsurePostgresRole creates the role with the attributes (CREATE ROLE's
// options; its password is its name) unless it exists. Roles are
// cluster-wide and outlive the test: tests that create the same role at
// once all succeed, and one that finds it made leaves it as it is.
func EnsurePostgresRole(tb testing.TB, role, attributes string) {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, PostgresAdminURL(tb))
	if err != nil {
		tb.Fatalf("connect to test server: %v", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, role).Scan(&exists); err != nil {
		tb.Fatalf("look up role %s: %v", role, err)
	}
	if exists {
		return
	}
	_, err = conn.Exec(ctx, "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+" "+attributes+" PASSWORD "+pgQuote(role))
	var pgErr *pgconn.PgError
	// 42710 duplicate_object, 23505 unique_violation: another test made it first.
	if err != nil && !(errors.As(err, &pgErr) && (pgErr.Code == "42710" || pgErr.Code == "23505")) {
		tb.Fatalf("create role %s: %v", role, err)
	}
}

// pgQuote quotes s as an SQL string literal.
func pgQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// PostgresAdminURLFor returns the URL of dbURL's database for the test
// server's admin, a superuser whom row-level security does not hold: tests
// inspect a store through it (adr/0027).
func PostgresAdminURLFor(tb testing.TB, dbURL string) string {
	tb.Helper()
	admin, err := url.Parse(PostgresAdminURL(tb))
	if err != nil {
		tb.Fatalf("parse admin URL: %v", err)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		tb.Fatalf("parse database URL: %v", err)
	}
	u.User = admin.User
	return u.String()
}

// Analyze returns a function that runs ANALYZE on the database at dbURL, as
// a user that may analyze its tables (their owner or a superuser): for
// bulk loads on the shared test server, which runs without autovacuum.
func Analyze(dbURL string) func(context.Context) error {
	return func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "ANALYZE")
		return err
	}
}
