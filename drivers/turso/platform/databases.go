package platform

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/envplane/envplane/drivers"
)

// CreateDatabaseInput is the body of POST /v1/organizations/{org}/databases.
type CreateDatabaseInput struct {
	// Name may hold only lowercase letters, digits and dashes, at most 64 of them.
	Name string `json:"name"`
	// Group must already exist.
	Group string `json:"group"`
	// SizeLimit is a size with a unit ("256mb"); empty for none.
	SizeLimit string `json:"size_limit,omitempty"`
	// Seed makes the database a copy of another one.
	Seed *Seed `json:"seed,omitempty"`
}

// Seed names what a new database starts from.
type Seed struct {
	// Type is SeedDatabase to copy an existing database.
	Type string `json:"type"`
	// Name is the database copied when Type is SeedDatabase.
	Name string `json:"name,omitempty"`
	// Timestamp (RFC 3339) makes the copy the database as it was then, a
	// recovery point within the last 24 hours (30 days on the scaler plan).
	Timestamp string `json:"timestamp,omitempty"`
}

// SeedDatabase seeds a new database from an existing one.
const SeedDatabase = "database"

// Database is what Turso reports about a database. Fields the driver does not
// use are not decoded.
type Database struct {
	Name          string `json:"Name"`
	DbID          string `json:"DbId"`
	Hostname      string `json:"Hostname"`
	Group         string `json:"group"`
	PrimaryRegion string `json:"primaryRegion"`
}

// CreateDatabase creates a database. ErrExists when the name is taken (Turso's
// 409); not idempotent by itself, so callers look the database up on ErrExists.
func (c *Client) CreateDatabase(ctx context.Context, in CreateDatabaseInput) (Database, error) {
	var out struct {
		Database Database `json:"database"`
	}
	err := c.do(ctx, call{
		op:     "create database " + in.Name,
		method: http.MethodPost,
		path:   c.orgPath() + "/databases",
		body:   in,
	}, &out)
	return out.Database, err
}

// GetDatabase returns the named database, ErrNotFound when it does not exist.
func (c *Client) GetDatabase(ctx context.Context, name string) (Database, error) {
	var out struct {
		Database Database `json:"database"`
	}
	err := c.do(ctx, call{op: "get database " + name, method: http.MethodGet, path: c.databasePath(name)}, &out)
	return out.Database, err
}

// DeleteDatabase deletes the named database. Idempotent: an absent database is success.
func (c *Client) DeleteDatabase(ctx context.Context, name string) error {
	err := c.do(ctx, call{op: "delete database " + name, method: http.MethodDelete, path: c.databasePath(name)}, nil)
	if errors.Is(err, drivers.ErrNotFound) {
		return nil
	}
	return err
}

// Authorization is what a database token may do.
type Authorization string

// The two authorizations Turso issues.
const (
	FullAccess Authorization = "full-access"
	ReadOnly   Authorization = "read-only"
)

// TokenOptions shape a database token.
type TokenOptions struct {
	// Expiration is a duration such as "2w1d30m", or "never" (Turso's default) when empty.
	Expiration string
	// Authorization is FullAccess when empty.
	Authorization Authorization
}

// CreateDatabaseToken mints a token for the named database. ErrNotFound when
// the database does not exist. Each call mints a new token; earlier ones keep
// working until they expire or InvalidateDatabaseTokens runs.
func (c *Client) CreateDatabaseToken(ctx context.Context, name string, opts TokenOptions) (drivers.Secret, error) {
	q := url.Values{}
	if opts.Expiration != "" {
		q.Set("expiration", opts.Expiration)
	}
	if opts.Authorization != "" {
		q.Set("authorization", string(opts.Authorization))
	}
	var out struct {
		JWT drivers.Secret `json:"jwt"`
	}
	err := c.do(ctx, call{
		op:     "create token for database " + name,
		method: http.MethodPost,
		path:   c.databasePath(name) + "/auth/tokens",
		query:  q,
	}, &out)
	if err != nil {
		return "", err
	}
	if out.JWT == "" {
		return "", errors.New("create token for database " + name + ": turso answered without a token")
	}
	return out.JWT, nil
}

// InvalidateDatabaseTokens makes every token of the named database stop
// working. Idempotent; ErrNotFound when the database does not exist.
func (c *Client) InvalidateDatabaseTokens(ctx context.Context, name string) error {
	return c.do(ctx, call{
		op:     "invalidate tokens of database " + name,
		method: http.MethodPost,
		path:   c.databasePath(name) + "/auth/rotate",
	}, nil)
}

// Usage is a database's activity in the current period and its storage.
type Usage struct {
	RowsRead     int64 `json:"rows_read"`
	RowsWritten  int64 `json:"rows_written"`
	StorageBytes int64 `json:"storage_bytes"`
}

// DatabaseUsage returns the named database's total usage. ErrNotFound when absent.
func (c *Client) DatabaseUsage(ctx context.Context, name string) (Usage, error) {
	var out struct {
		Database struct {
			Total Usage `json:"total"`
		} `json:"database"`
	}
	err := c.do(ctx, call{op: "get usage of database " + name, method: http.MethodGet, path: c.databasePath(name) + "/usage"}, &out)
	return out.Database.Total, err
}

// ListLocations returns Turso's locations, code → name. It needs no
// organization, so it doubles as a cheap reachability and token check.
func (c *Client) ListLocations(ctx context.Context) (map[string]string, error) {
	var out struct {
		Locations map[string]string `json:"locations"`
	}
	err := c.do(ctx, call{op: "list locations", method: http.MethodGet, path: "/v1/locations"}, &out)
	return out.Locations, err
}
