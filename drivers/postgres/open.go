package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/envplane/envplane/drivers"
)

// Open returns a database/sql pool (pgx stdlib) that logs in with the
// credential, after a ping proves it works. It connects to the admin URL's
// address, which is the one the control plane can reach; applications use
// the Descriptor's. A credential the server rejects (bad or revoked secret,
// expired, another database's role) returns ErrDenied; a database that does
// not exist, ErrNotFound; an unreachable server, ErrUnavailable.
func (d *Driver) Open(ctx context.Context, req drivers.OpenRequest) (drivers.OpenResponse, error) {
	if err := checkName(req.Database.Name); err != nil {
		return drivers.OpenResponse{}, err
	}
	return d.open(ctx, req.Database.Name, req)
}

// open is Open on the database object name, which holds req.Database's
// contents (itself, or its staged reset).
func (d *Driver) open(ctx context.Context, name string, req drivers.OpenRequest) (drivers.OpenResponse, error) {
	user, err := username(req.Database, req.Credential)
	if err != nil {
		return drivers.OpenResponse{}, err
	}
	cfg := d.pool.Config().ConnConfig.Copy()
	cfg.Database = name
	cfg.User = user
	cfg.Password = ""
	// The password reaches each connection attempt through a closure: a
	// config held by the pool would print with it (fmt walks *sql.DB's
	// connector), a closure prints as an address.
	secret := req.Credential.Secret
	db := stdlib.OpenDB(*cfg, stdlib.OptionBeforeConnect(func(_ context.Context, c *pgx.ConnConfig) error {
		c.Password = secret.Reveal()
		return nil
	}))
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42501" {
			// No CONNECT privilege: the role belongs to another database.
			return drivers.OpenResponse{}, fmt.Errorf("postgres: cannot open %s as %s: %w: %w", name, user, drivers.ErrDenied, err)
		}
		return drivers.OpenResponse{}, wrap("cannot open "+name+" as "+user, err)
	}
	return drivers.OpenResponse{DB: db, Dialect: drivers.DialectPostgres}, nil
}

// Descriptor returns what an application needs to reach the database with
// the credential: a postgres:// DSN with the password (a Secret), the same
// URL without it, and the parts. It does no I/O; an invalid name, scope or
// slot is an error.
func (d *Driver) Descriptor(_ context.Context, req drivers.DescriptorRequest) (drivers.Descriptor, error) {
	name := req.Database.Name
	if err := checkName(name); err != nil {
		return drivers.Descriptor{}, err
	}
	user, err := username(req.Database, req.Credential)
	if err != nil {
		return drivers.Descriptor{}, err
	}
	u := d.appURL(name, user)
	public := u.String()
	u.User = url.UserPassword(user, req.Credential.Secret.Reveal())
	return drivers.Descriptor{
		DSN:      drivers.Secret(u.String()),
		URL:      public,
		Host:     d.appHost,
		Port:     d.appPort,
		Database: name,
		Username: user,
		Params:   map[string]string{"sslmode": d.sslMode},
	}, nil
}

// username is the credential's role: its Username when set (the server
// decides whether it may enter the database), else the scope's slot role.
func username(db drivers.Database, c drivers.Credential) (string, error) {
	if c.Username != "" {
		return c.Username, nil
	}
	if err := checkScopeSlot(c.Scope, c.Slot); err != nil {
		return "", err
	}
	return loginRole(db.Name, c.Scope, c.Slot), nil
}
