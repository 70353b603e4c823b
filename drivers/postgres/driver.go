// Package postgres is envplane's PostgreSQL driver: one database per
// environment on a PostgreSQL cluster, a NOLOGIN owner role that owns its
// public schema, and per scope two login roles that alternate on rotation.
//
// The driver connects with an admin role that may create databases and roles
// (a superuser, or a CREATEDB CREATEROLE role that is a member of
// pg_signal_backend). Secrets never reach the server in clear: passwords are
// sent as SCRAM-SHA-256 verifiers computed here.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/envplane/envplane/drivers"
)

// Config is what a PostgreSQL target needs. Only AdminURL is required.
type Config struct {
	// AdminURL is a postgres:// URL of a role allowed to CREATE DATABASE and
	// CREATE ROLE. It is a secret: it is never logged nor put in an error.
	AdminURL drivers.Secret
	// AppHost is the host applications connect to; empty means the admin URL's host.
	AppHost string
	// AppPort is the port applications connect to; zero means the admin URL's port.
	AppPort int
	// AppSSLMode is the sslmode put in descriptors; empty means "require".
	AppSSLMode string
	// MaxAdminConns bounds the admin pool; zero means pgxpool's default.
	MaxAdminConns int32
	// SCRAMIterations is the PBKDF2 iteration count of the verifiers sent to
	// the server; zero means 4096, PostgreSQL's default. Secrets are 256
	// random bits, so stretching adds no strength; the server spends one
	// PBKDF2 per password change and clients one per login (ADR 0004).
	SCRAMIterations int
	// CrashPoint, when set, is called at "postgres.create.database_made":
	// the database exists, its grants are not applied yet (it is still open
	// to PUBLIC); at "postgres.reset.staged": a reset's staged database
	// exists, its grants are not applied yet; and at "postgres.reset.closed":
	// a reset's swap closed the database to new sessions and has not
	// renamed yet. Only crash tests set it.
	CrashPoint func(point string)
	// BinDir is the directory of pg_dump and pg_restore, which backups
	// and restores run (e.g. /usr/lib/postgresql/16/bin); empty means PATH.
	BinDir string
}

// Driver is the PostgreSQL implementation of drivers.Driver. It is safe for
// concurrent use; Close releases its admin pool.
type Driver struct {
	pool       *pgxpool.Pool
	appHost    string
	appPort    int
	sslMode    string
	iterations int
	crash      func(point string)
	binDir     string
}

var (
	_ drivers.Driver        = (*Driver)(nil)
	_ drivers.Cloner        = (*Driver)(nil)
	_ drivers.UsageReporter = (*Driver)(nil)
	_ drivers.HealthChecker = (*Driver)(nil)
)

// validSSLMode reports whether mode is one of libpq's sslmode values.
func validSSLMode(mode string) bool {
	switch mode {
	case "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
		return true
	}
	return false
}

// New returns a driver for the target cfg describes. It does no I/O: a
// target that is down at start is reported by Health and by each operation
// (ErrUnavailable), not here. It fails when cfg is malformed; the error never
// quotes AdminURL.
func New(ctx context.Context, cfg Config) (*Driver, error) {
	if cfg.AdminURL.Reveal() == "" {
		return nil, errors.New("postgres: admin URL is required")
	}
	// The parse error would quote the URL (pgx redacts the password only on
	// a best-effort basis), so it is not passed on.
	pc, err := pgxpool.ParseConfig(cfg.AdminURL.Reveal())
	if err != nil {
		return nil, errors.New("postgres: cannot parse admin URL")
	}
	if cfg.MaxAdminConns > 0 {
		pc.MaxConns = cfg.MaxAdminConns
	}
	d := &Driver{appHost: cfg.AppHost, appPort: cfg.AppPort, sslMode: cfg.AppSSLMode, iterations: cfg.SCRAMIterations, crash: cfg.CrashPoint, binDir: cfg.BinDir}
	if d.crash == nil {
		d.crash = func(string) {}
	}
	if d.iterations == 0 {
		d.iterations = defaultSCRAMIterations
	}
	if d.iterations < 1 {
		return nil, fmt.Errorf("postgres: SCRAM iterations %d must be positive", d.iterations)
	}
	if d.appHost == "" {
		d.appHost = pc.ConnConfig.Host
	}
	if d.appPort == 0 {
		d.appPort = int(pc.ConnConfig.Port)
	}
	if d.sslMode == "" {
		d.sslMode = "require"
	}
	if !validSSLMode(d.sslMode) {
		return nil, fmt.Errorf("postgres: unknown app sslmode %q", d.sslMode)
	}
	if d.appPort <= 0 || d.appPort > 65535 {
		return nil, fmt.Errorf("postgres: app port %d out of range", d.appPort)
	}
	d.pool, err = pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: cannot create admin pool: %w", err)
	}
	return d, nil
}

// Name returns "postgres".
func (d *Driver) Name() string { return "postgres" }

// Close closes the admin pool. Pools returned by Open are the caller's.
func (d *Driver) Close() { d.pool.Close() }

// Health pings the target with the admin role; it returns an error wrapping
// ErrUnavailable when the server does not answer.
func (d *Driver) Health(ctx context.Context) error {
	if err := d.pool.Ping(ctx); err != nil {
		return wrap("cannot reach target", err)
	}
	return nil
}

// appURL is where applications find the database, without credentials.
func (d *Driver) appURL(name, user string) *url.URL {
	u := &url.URL{
		Scheme:   "postgres",
		Host:     net.JoinHostPort(d.appHost, strconv.Itoa(d.appPort)),
		Path:     "/" + name,
		RawQuery: url.Values{"sslmode": {d.sslMode}}.Encode(),
	}
	if user != "" {
		u.User = url.User(user)
	}
	return u
}
