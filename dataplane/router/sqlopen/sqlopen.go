// Package sqlopen is the router's default Opener: it opens a *sql.DB for a
// connection the router handed out, with the database/sql driver that fits
// envplane's driver name (sqlite: modernc.org/sqlite, postgres: pgx's
// stdlib, turso: libsql-client-go). Importing it links those three drivers
// (and registers them with database/sql, which their packages do on import);
// applications that bring their own drivers give router.Open their own
// Opener and leave this package out.
//
// The pools it returns keep the DSN and its secret in a closure, never in a
// field: fmt walks a *sql.DB's fields, its connector's included, so a secret
// held in one would print with the pool.
package sqlopen

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
	"net/url"

	"github.com/jackc/pgx/v5"
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

// Open returns a pool on dsn for envplane's driver name; it does not connect
// (the router runs a query on it before using it). It returns an error
// wrapping drivers.ErrUnsupported for an unknown driver, and an error that
// never quotes dsn when dsn does not parse. It has no side effects, so repeating
// it is harmless (each call returns a new pool for the caller to close).
func Open(name string, dsn drivers.Secret) (*sql.DB, error) {
	var c driver.Connector
	var err error
	switch name {
	case "sqlite":
		c, err = sqliteConnector(dsn)
	case "postgres":
		c, err = postgresConnector(dsn)
	case "turso":
		c, err = tursoConnector(dsn)
	default:
		_, err = DriverName(name) // the one "unsupported driver" error
	}
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(hidden{inner: func() driver.Connector { return c }}), nil
}

func sqliteConnector(dsn drivers.Secret) (driver.Connector, error) {
	c, err := sqlite.NewConnector(dsn.Reveal())
	if err != nil {
		return nil, fmt.Errorf("sqlopen: the sqlite DSN does not parse")
	}
	return c, nil
}

func postgresConnector(dsn drivers.Secret) (driver.Connector, error) {
	cfg, err := pgx.ParseConfig(dsn.Reveal())
	if err != nil {
		return nil, fmt.Errorf("sqlopen: the postgres DSN does not parse")
	}
	return stdlib.GetConnector(*cfg), nil
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
		// With the token removed, the client's message names at most the URL.
		return nil, fmt.Errorf("sqlopen: the turso DSN is not one libsql accepts: %w", err)
	}
	return c, nil
}

// hidden is a connector that reaches the real one through a closure, which
// fmt prints as an address.
type hidden struct {
	inner func() driver.Connector
}

// Connect opens one connection with the real connector.
func (h hidden) Connect(ctx context.Context) (driver.Conn, error) { return h.inner().Connect(ctx) }

// Driver returns the real connector's driver.
func (h hidden) Driver() driver.Driver { return h.inner().Driver() }

// Close closes the real connector when it holds resources (sql.DB.Close calls it).
func (h hidden) Close() error {
	if c, ok := h.inner().(io.Closer); ok {
		return c.Close()
	}
	return nil
}
