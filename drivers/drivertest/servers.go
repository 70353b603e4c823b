package drivertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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
