// Package sqlopen is the router's default Opener (Connector): it opens a
// database/sql connector for a connection the router handed out, with the
// database/sql driver that fits envplane's driver name (sqlite:
// modernc.org/sqlite, postgres: pgx's stdlib, turso: libsql-client-go). Importing it links those three drivers
// (and registers them with database/sql, which their packages do on import);
// applications that bring their own drivers give router.Open their own
// Opener and leave this package out.
//
// The connectors it returns keep the DSN and its secret in a closure, never
// in a field: fmt walks a *sql.DB's fields, its connector's included, so a
// secret held in one would print with the pool.
package sqlopen

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/tursodatabase/libsql-client-go/libsql"
	"modernc.org/sqlite"

	"github.com/envplane/envplane/drivers"
)

// DriverName returns the database/sql driver name for envplane's driver
// name: "sqlite" for sqlite, "pgx" for postgres, "libsql" for turso. It
// returns an error wrapping drivers.ErrUnsupported for any other name.
func DriverName(name string) (string, error) {
	switch name {
	case "sqlite":
		return "sqlite", nil
	case "postgres":
		return "pgx", nil
	case "turso":
		return "libsql", nil
	}
	return "", fmt.Errorf("sqlopen: driver %q: %w", name, drivers.ErrUnsupported)
}

// Connector returns a connector on dsn for envplane's driver name; it does
// not connect. Every connection it opens reports the database's refusal of
// the credential as an error wrapping drivers.ErrDenied, which the router's
// Pool answers by resolving again: PostgreSQL's SQLSTATE 28P01 (wrong or
// expired password) and 28000 (role not permitted to log in, or no
// pg_hba entry); for libSQL an HTTP 401 or 403, which the client only meets
// at a statement: that statement reads as a bad connection (database/sql
// runs it again on a new one) and the connector's next dial is refused. SQLite files check no credential. It returns
// an error wrapping drivers.ErrUnsupported for an unknown driver, and an
// error that never quotes dsn when dsn does not parse; no error of its
// connectors quotes dsn or the secret in it. It has no side effects, so
// repeating it is harmless (each call returns a new connector).
func Connector(name string, dsn drivers.Secret) (driver.Connector, error) {
	switch name {
	case "sqlite":
		return sqliteConnector(dsn)
	case "postgres":
		return postgresConnector(dsn)
	case "turso":
		return tursoConnector(dsn)
	}
	_, err := DriverName(name) // the one "unsupported driver" error
	return nil, err
}

// Open returns a pool on dsn for envplane's driver name, built on
// Connector, for applications that use a connection directly rather than
// through router.Pool. It does not connect, returns Connector's errors, and
// has no side effects (each call returns a new pool for the caller to close).
func Open(name string, dsn drivers.Secret) (*sql.DB, error) {
	c, err := Connector(name, dsn)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(c), nil
}

func sqliteConnector(dsn drivers.Secret) (driver.Connector, error) {
	c, err := sqlite.NewConnector(dsn.Reveal())
	if err != nil {
		return nil, fmt.Errorf("sqlopen: the sqlite DSN does not parse")
	}
	return hidden{inner: func() driver.Connector { return c }, connect: c.Connect}, nil
}

func postgresConnector(dsn drivers.Secret) (driver.Connector, error) {
	cfg, err := pgx.ParseConfig(dsn.Reveal())
	if err != nil {
		return nil, fmt.Errorf("sqlopen: the postgres DSN does not parse")
	}
	c := stdlib.GetConnector(*cfg)
	connect := func(ctx context.Context) (driver.Conn, error) {
		conn, err := c.Connect(ctx)
		if err != nil {
			return nil, postgresError(err)
		}
		if sc, ok := conn.(*stdlib.Conn); ok {
			return pgConn{sc}, nil
		}
		return conn, nil
	}
	return hidden{inner: func() driver.Connector { return c }, connect: connect}, nil
}

// postgresError marks the server's refusal of the credential with
// drivers.ErrDenied, by SQLSTATE. pgx's connect errors name the host, user
// and database, never the password.
func postgresError(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "28P01" || pe.Code == "28000") {
		return fmt.Errorf("sqlopen: postgres refused the credential (SQLSTATE %s): %w: %w", pe.Code, drivers.ErrDenied, err)
	}
	return err
}

// pgConn is a pgx connection whose statements, when the server ended its
// session before them (pg_terminate_backend, as revoking a rotated
// credential at grace end does to an idle pooled connection), read as bad
// connections: database/sql then runs them again on a new connection. An
// answer of 57P01 (admin_shutdown) or 57P02 (crash_shutdown) means the
// statement did not complete, so it did not commit. Every other method is
// pgx's own.
type pgConn struct{ *stdlib.Conn }

// terminated wraps a session-ended error with driver.ErrBadConn.
func terminated(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "57P01" || pe.Code == "57P02") {
		return fmt.Errorf("sqlopen: postgres ended the session (SQLSTATE %s): %w: %w", pe.Code, driver.ErrBadConn, err)
	}
	return err
}

// ExecContext runs a statement; see pgConn.
func (c pgConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	r, err := c.Conn.ExecContext(ctx, query, args)
	return r, terminated(err)
}

// QueryContext runs a query; see pgConn.
func (c pgConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	rows, err := c.Conn.QueryContext(ctx, query, args)
	return rows, terminated(err)
}

// tursoConnector takes the token out of the DSN's query (authToken, as the
// Turso driver's descriptor writes it) and gives it to the libsql client as
// an option, the one way the client accepts a token with a connector.
func tursoConnector(dsn drivers.Secret) (driver.Connector, error) {
	u, err := url.Parse(dsn.Reveal())
	if err != nil {
		return nil, fmt.Errorf("sqlopen: the turso DSN does not parse")
	}
	q := u.Query()
	token := drivers.Secret(q.Get("authToken"))
	q.Del("authToken")
	u.RawQuery = q.Encode()
	var opts []libsql.Option
	if token != "" {
		opts = append(opts, libsql.WithAuthToken(token.Reveal()))
	}
	c, err := libsql.NewConnector(u.String(), opts...)
	if err != nil {
		// The client's message quotes pieces of the DSN (an unknown query
		// parameter, the scheme), any of which may be a token written in
		// the wrong place: it is not passed on.
		return nil, errors.New("sqlopen: the turso DSN is not one libsql accepts: a libsql://, https:// or http:// URL with no query parameter libsql does not know")
	}
	// The HTTP client's Connect sends nothing, so a refused token shows in
	// the middle of a connection's statement. That statement did not run:
	// tursoConn reports it as a bad connection, which database/sql retries
	// on a new one, and marks the connector refused, so that the new dial
	// fails with drivers.ErrDenied and the router's Pool resolves again.
	refused := &atomic.Bool{}
	connect := func(ctx context.Context) (driver.Conn, error) {
		if refused.Load() {
			return nil, fmt.Errorf("sqlopen: libsql refused the token: %w", drivers.ErrDenied)
		}
		conn, err := c.Connect(ctx)
		if err != nil {
			return nil, tursoError(err, token, nil)
		}
		return &tursoConn{conn: conn, token: token, refused: refused}, nil
	}
	return hidden{inner: func() driver.Connector { return c }, connect: connect}, nil
}

// tursoError marks an HTTP 401 or 403 answer with drivers.ErrDenied and
// makes sure no error quotes the token. libsql-client-go has no typed error
// for an HTTP status: it formats every non-200 answer as "error code 401:
// <body>" (then wraps that as "failed to execute SQL:\n…"), and that prefix
// is the only place the status appears, so it is what is matched here, on
// each error of the chain: the one exception to classifying by type. The
// refusal's own text (the server's body) is not passed on.
//
// When refused is not nil, a refusal also sets it and wraps
// driver.ErrBadConn: the statement did not run and may run again on a new
// connection.
func tursoError(err error, token drivers.Secret, refused *atomic.Bool) error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		for _, status := range []string{"401", "403"} {
			if !strings.HasPrefix(e.Error(), "error code "+status+":") {
				continue
			}
			if refused == nil {
				return fmt.Errorf("sqlopen: libsql refused the token (HTTP %s): %w", status, drivers.ErrDenied)
			}
			refused.Store(true)
			return fmt.Errorf("sqlopen: libsql refused the token (HTTP %s): %w: %w", status, drivers.ErrDenied, driver.ErrBadConn)
		}
	}
	if msg, t := err.Error(), token.Reveal(); t != "" && strings.Contains(msg, t) {
		return fmt.Errorf("sqlopen: libsql: %s", strings.ReplaceAll(msg, t, drivers.Secret(t).String()))
	}
	return fmt.Errorf("sqlopen: libsql: %w", err)
}

// tursoConn is a libsql connection whose refusals of the token mark its
// connector refused and read as bad connections (see tursoConnector). It
// has the methods libsql's HTTP connection has. A statement prepared
// explicitly runs on libsql's connection directly, so its refusal is an
// ordinary error.
type tursoConn struct {
	conn    driver.Conn
	token   drivers.Secret
	refused *atomic.Bool
}

var (
	_ driver.ExecerContext      = (*tursoConn)(nil)
	_ driver.QueryerContext     = (*tursoConn)(nil)
	_ driver.ConnPrepareContext = (*tursoConn)(nil)
	_ driver.ConnBeginTx        = (*tursoConn)(nil)
	_ driver.SessionResetter    = (*tursoConn)(nil)
)

func (c *tursoConn) fail(err error) error {
	if err == nil {
		return nil
	}
	return tursoError(err, c.token, c.refused)
}

// Prepare prepares query on the libsql connection.
func (c *tursoConn) Prepare(query string) (driver.Stmt, error) {
	st, err := c.conn.Prepare(query)
	return st, c.fail(err)
}

// PrepareContext prepares query on the libsql connection.
func (c *tursoConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if p, ok := c.conn.(driver.ConnPrepareContext); ok {
		st, err := p.PrepareContext(ctx, query)
		return st, c.fail(err)
	}
	return c.Prepare(query)
}

// Close closes the libsql connection.
func (c *tursoConn) Close() error { return c.conn.Close() }

// Begin starts a transaction.
func (c *tursoConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

// BeginTx starts a transaction (libsql sends BEGIN).
func (c *tursoConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	b, ok := c.conn.(driver.ConnBeginTx)
	if !ok {
		return nil, errors.New("sqlopen: libsql connection cannot begin a transaction with options")
	}
	tx, err := b.BeginTx(ctx, opts)
	return tx, c.fail(err)
}

// ExecContext runs a statement.
func (c *tursoConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := c.conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	r, err := e.ExecContext(ctx, query, args)
	return r, c.fail(err)
}

// QueryContext runs a query.
func (c *tursoConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := c.conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	rows, err := q.QueryContext(ctx, query, args)
	return rows, c.fail(err)
}

// ResetSession ends the connection's stream before it is reused.
func (c *tursoConn) ResetSession(ctx context.Context) error {
	if r, ok := c.conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

// hidden is a connector that reaches the real one through closures, which
// fmt prints as addresses.
type hidden struct {
	inner   func() driver.Connector
	connect func(context.Context) (driver.Conn, error)
}

var (
	_ driver.Connector = hidden{}
	_ io.Closer        = hidden{}
)

// Connect opens one connection with the real connector; a refused
// credential is an error wrapping drivers.ErrDenied.
func (h hidden) Connect(ctx context.Context) (driver.Conn, error) { return h.connect(ctx) }

// Driver returns the real connector's driver.
func (h hidden) Driver() driver.Driver { return h.inner().Driver() }

// Close closes the real connector when it holds resources (sql.DB.Close calls it).
func (h hidden) Close() error {
	if c, ok := h.inner().(io.Closer); ok {
		return c.Close()
	}
	return nil
}
