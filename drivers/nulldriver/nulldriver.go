// Package nulldriver is a drivers.Driver that creates nothing: every
// database "exists" and every credential "works" without any engine behind
// them. It lets scale tests and benchmarks fill the control plane's registry
// with many environments and resolve their connections, measuring the control
// plane alone. It is for tests only: no production command imports it.
package nulldriver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"

	"github.com/envplane/envplane/drivers"
)

// Name is the driver's name, as recorded on the databases it "creates".
const Name = "null"

// host is where the descriptors point: a name that never resolves (RFC 6761).
const host = "null.invalid"

// Driver creates nothing. The zero value is ready to use and safe for
// concurrent use.
type Driver struct{}

var _ drivers.Driver = Driver{}

// Name returns "null".
func (Driver) Name() string { return Name }

// CreateDatabase returns the database as if it had been created.
func (Driver) CreateDatabase(_ context.Context, req drivers.CreateDatabaseRequest) (drivers.CreateDatabaseResponse, error) {
	return drivers.CreateDatabaseResponse{Database: drivers.Database{Name: req.Name, URL: host + "/" + req.Name, Region: req.Region}}, nil
}

// DropDatabase succeeds: there is nothing to drop.
func (Driver) DropDatabase(context.Context, drivers.DropDatabaseRequest) (drivers.DropDatabaseResponse, error) {
	return drivers.DropDatabaseResponse{}, nil
}

// IssueCredential returns a random secret for the scope's slot user.
func (Driver) IssueCredential(_ context.Context, req drivers.IssueCredentialRequest) (drivers.IssueCredentialResponse, error) {
	return drivers.IssueCredentialResponse{Credential: drivers.Credential{
		Scope:     req.Scope,
		Slot:      req.Slot,
		Username:  Username(req.Database.Name, req.Scope, req.Slot),
		Secret:    NewSecret(),
		ExpiresAt: req.ExpiresAt,
	}}, nil
}

// RevokeCredential succeeds: there is nothing to revoke.
func (Driver) RevokeCredential(context.Context, drivers.RevokeCredentialRequest) (drivers.RevokeCredentialResponse, error) {
	return drivers.RevokeCredentialResponse{}, nil
}

// Open fails with drivers.ErrUnavailable: there is no database to connect to.
func (Driver) Open(context.Context, drivers.OpenRequest) (drivers.OpenResponse, error) {
	return drivers.OpenResponse{}, fmt.Errorf("%w: the null driver has no databases", drivers.ErrUnavailable)
}

// Descriptor returns a PostgreSQL-shaped descriptor pointing at
// null.invalid, with the credential's secret in the DSN as a real driver's.
func (Driver) Descriptor(_ context.Context, req drivers.DescriptorRequest) (drivers.Descriptor, error) {
	user := req.Credential.Username
	if user == "" {
		user = Username(req.Database.Name, req.Credential.Scope, req.Credential.Slot)
	}
	u := url.URL{Scheme: "postgres", Host: host + ":5432", Path: "/" + req.Database.Name, RawQuery: "sslmode=disable"}
	u.User = url.User(user)
	public := u.String()
	u.User = url.UserPassword(user, req.Credential.Secret.Reveal())
	return drivers.Descriptor{
		DSN:      drivers.Secret(u.String()),
		URL:      public,
		Host:     host,
		Port:     5432,
		Database: req.Database.Name,
		Username: user,
		Params:   map[string]string{"sslmode": "disable"},
	}, nil
}

// Username is the user name the driver gives a scope's slot of a database.
func Username(database string, scope drivers.Scope, slot drivers.Slot) string {
	return database + "_" + string(scope) + "_" + string(slot)
}

// NewSecret returns a random 32-character secret.
func NewSecret() drivers.Secret {
	b := make([]byte, 16)
	rand.Read(b) // cannot fail since Go 1.24
	return drivers.Secret(hex.EncodeToString(b))
}
