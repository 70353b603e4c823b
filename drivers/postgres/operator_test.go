package postgres_test

import (
	"context"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/postgres"
)

// The driver works with an admin role that is not a superuser: CREATEDB,
// CREATEROLE and pg_signal_backend are enough to provision, rotate and drop,
// and nothing is left behind.
func TestNonSuperuserAdminRole(t *testing.T) {
	f := newFixture(t, serverURL(t))
	ctx := context.Background()
	operator := "env_" + f.prefix + "_operator"
	password := randomLower(t, 32)
	f.exec("CREATE ROLE " + q(operator) + " LOGIN CREATEDB CREATEROLE PASSWORD '" + password + "'")
	f.exec("GRANT pg_signal_backend TO " + q(operator))
	u, err := url.Parse(f.url)
	if err != nil {
		t.Fatalf("parse admin URL: %v", err)
	}
	u.User = url.UserPassword(operator, password)
	d, err := postgres.New(ctx, postgres.Config{AdminURL: drivers.Secret(u.String()), AppSSLMode: "disable"})
	if err != nil {
		t.Fatalf("new driver: %v", err)
	}
	t.Cleanup(d.Close)
	op := &fixture{tb: t, url: u.String(), driver: d, admin: f.admin, prefix: f.prefix}

	db := op.create()
	admin := op.open(db, op.issue(db, drivers.ScopeAdmin, drivers.SlotA, time.Time{}))
	op.mustRun(admin, "CREATE TABLE items (id serial PRIMARY KEY)")
	rw := op.issue(db, drivers.ScopeReadWrite, drivers.SlotA, time.Time{})
	op.mustRun(op.open(db, rw), "INSERT INTO items DEFAULT VALUES")
	op.mustRun(op.open(db, op.issue(db, drivers.ScopeReadOnly, drivers.SlotA, time.Time{})), "SELECT * FROM items")
	held := op.open(db, rw)
	op.revoke(db, rw)
	if err := op.run(held, "SELECT 1"); err == nil {
		t.Fatal("a session of the revoked role survived a non-superuser revoke")
	}
	if _, err := d.DropDatabase(ctx, drivers.DropDatabaseRequest{Database: db}); err != nil {
		t.Fatalf("drop: %v", err)
	}
	dbs, roles := f.leftovers()
	if len(dbs) != 0 || !slices.Equal(roles, []string{operator}) {
		t.Fatalf("after drop: databases %v, roles %v; want only the operator role", dbs, roles)
	}
}
