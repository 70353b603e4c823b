package postgres_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/drivertest"
	"github.com/envplane/envplane/drivers/postgres"
)

// fixture is one test's driver, admin pool and name prefix. Every database
// and role the test makes starts with env_<prefix>, so the test can list
// exactly what it left behind and runs never collide.
type fixture struct {
	tb     testing.TB
	url    string
	driver *postgres.Driver
	admin  *pgxpool.Pool
	prefix string

	mu      sync.Mutex
	secrets []string
}

const lower = "abcdefghijklmnopqrstuvwxyz0123456789"

func randomLower(tb testing.TB, n int) string {
	tb.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatalf("random: %v", err)
	}
	for i := range b {
		b[i] = lower[int(b[i])%len(lower)]
	}
	return string(b)
}

// newFixture connects a driver to the server at adminURL, its Config changed
// by each option. At cleanup it drops whatever the test left under its
// prefix, after the test's own cleanups have run.
func newFixture(tb testing.TB, adminURL string, options ...func(*postgres.Config)) *fixture {
	tb.Helper()
	ctx := context.Background()
	f := &fixture{tb: tb, url: adminURL, prefix: randomLower(tb, 8)}
	admin, err := pgxpool.New(ctx, adminURL)
	if err != nil {
		tb.Fatalf("admin pool: %v", err)
	}
	f.admin = admin
	tb.Cleanup(func() {
		dbs, roles := f.leftovers()
		for _, db := range dbs {
			f.exec("DROP DATABASE IF EXISTS " + pgx.Identifier{db}.Sanitize() + " WITH (FORCE)")
		}
		for _, r := range roles {
			f.exec("DROP ROLE IF EXISTS " + pgx.Identifier{r}.Sanitize())
		}
		admin.Close()
	})
	cfg := postgres.Config{AdminURL: drivers.Secret(adminURL), AppSSLMode: "disable"}
	for _, o := range options {
		o(&cfg)
	}
	d, err := postgres.New(ctx, cfg)
	if err != nil {
		tb.Fatalf("new driver: %v", err)
	}
	tb.Cleanup(d.Close)
	f.driver = d
	return f
}

// name returns a new generated-shape database name under the fixture's prefix.
func (f *fixture) name() string {
	f.tb.Helper()
	return "env_" + f.prefix + randomLower(f.tb, 18)
}

// exec runs SQL as the admin and fails the test on error.
func (f *fixture) exec(sql string, args ...any) {
	f.tb.Helper()
	if _, err := f.admin.Exec(context.Background(), sql, args...); err != nil {
		f.tb.Fatalf("admin exec: %v", err)
	}
}

// leftovers lists the databases and roles under the fixture's prefix.
func (f *fixture) leftovers() (dbs, roles []string) {
	f.tb.Helper()
	ctx := context.Background()
	like := "env\\_" + f.prefix + "%"
	err := f.admin.QueryRow(ctx, `
		SELECT ARRAY(SELECT datname::text FROM pg_database WHERE datname LIKE $1 ORDER BY 1),
		       ARRAY(SELECT rolname::text FROM pg_roles WHERE rolname LIKE $1 ORDER BY 1)`,
		like).Scan(&dbs, &roles)
	if err != nil {
		f.tb.Fatalf("list leftovers: %v", err)
	}
	return dbs, roles
}

func (f *fixture) create() drivers.Database {
	f.tb.Helper()
	resp, err := f.driver.CreateDatabase(context.Background(), drivers.CreateDatabaseRequest{Name: f.name()})
	if err != nil {
		f.tb.Fatalf("create database: %v", err)
	}
	f.tb.Cleanup(func() {
		if _, err := f.driver.DropDatabase(context.Background(), drivers.DropDatabaseRequest{Database: resp.Database}); err != nil {
			f.tb.Errorf("drop database: %s", f.safe(err))
		}
	})
	return resp.Database
}

func (f *fixture) issue(db drivers.Database, scope drivers.Scope, slot drivers.Slot, expires time.Time) drivers.Credential {
	f.tb.Helper()
	resp, err := f.driver.IssueCredential(context.Background(), drivers.IssueCredentialRequest{
		Database: db, Scope: scope, Slot: slot, ExpiresAt: expires,
	})
	if err != nil {
		f.tb.Fatalf("issue %s/%s: %s", scope, slot, f.safe(err))
	}
	f.mu.Lock()
	f.secrets = append(f.secrets, resp.Credential.Secret.Reveal())
	f.mu.Unlock()
	return resp.Credential
}

func (f *fixture) revoke(db drivers.Database, c drivers.Credential) {
	f.tb.Helper()
	_, err := f.driver.RevokeCredential(context.Background(), drivers.RevokeCredentialRequest{
		Database: db, Scope: c.Scope, Slot: c.Slot, Username: c.Username,
	})
	if err != nil {
		f.tb.Fatalf("revoke %s/%s: %s", c.Scope, c.Slot, f.safe(err))
	}
}

// tryOpen opens db with the credential through the driver.
func (f *fixture) tryOpen(db drivers.Database, c drivers.Credential) (*sql.DB, error) {
	f.tb.Helper()
	resp, err := f.driver.Open(context.Background(), drivers.OpenRequest{Database: db, Credential: c})
	f.checkLeak("open", err)
	if err != nil {
		return nil, err
	}
	f.tb.Cleanup(func() { resp.DB.Close() })
	return resp.DB, nil
}

func (f *fixture) open(db drivers.Database, c drivers.Credential) *sql.DB {
	f.tb.Helper()
	pool, err := f.tryOpen(db, c)
	if err != nil {
		f.tb.Fatalf("open %s as %s/%s: %s", db.Name, c.Scope, c.Slot, f.safe(err))
	}
	return pool
}

// connect logs in with plain pgx, not through the driver, so a test sees
// what the server itself allows.
func (f *fixture) connect(dbName string, c drivers.Credential) (*pgx.Conn, error) {
	f.tb.Helper()
	cfg, err := pgx.ParseConfig(f.url)
	if err != nil {
		f.tb.Fatalf("parse admin URL: %v", err)
	}
	cfg.Database, cfg.User, cfg.Password = dbName, c.Username, c.Secret.Reveal()
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	f.checkLeak("connect", err)
	if err == nil {
		f.tb.Cleanup(func() { conn.Close(context.Background()) })
	}
	return conn, err
}

// run runs SQL on pool and returns the error after checking it for leaks.
func (f *fixture) run(pool *sql.DB, query string, args ...any) error {
	f.tb.Helper()
	_, err := pool.ExecContext(context.Background(), query, args...)
	f.checkLeak(query, err)
	return err
}

func (f *fixture) mustRun(pool *sql.DB, query string, args ...any) {
	f.tb.Helper()
	if err := f.run(pool, query, args...); err != nil {
		f.tb.Fatalf("%s: %s", query, f.safe(err))
	}
}

// leaks reports whether text holds any secret the fixture has issued.
func (f *fixture) leaks(text string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.secrets {
		if s != "" && strings.Contains(text, s) {
			return true
		}
	}
	return false
}

// checkLeak fails the test, without printing the message, when err holds a secret.
func (f *fixture) checkLeak(what string, err error) {
	f.tb.Helper()
	if err != nil && f.leaks(err.Error()) {
		f.tb.Errorf("%s: the error message contains a secret", what)
	}
}

// safe returns err's message unless it holds a secret.
func (f *fixture) safe(err error) string {
	if f.leaks(err.Error()) {
		return "(message withheld: it contains a secret)"
	}
	return err.Error()
}

// sqlState returns err's SQLSTATE, or "" when it has none.
func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// serverURL returns the admin URL of the shared test server.
func serverURL(tb testing.TB) string {
	tb.Helper()
	return drivertest.PostgresAdminURL(tb)
}
