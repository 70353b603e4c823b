package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/envplane/envplane/drivers"
)

// Usage counts the application's tables and the open sessions; LimitWrites
// takes writes away from readwrite on every table, those created later
// included, while its open session reads on, and gives them back without
// opening envplane's system tables to it.
func TestUsageAndLimitWrites(t *testing.T) {
	f := newFixture(t, serverURL(t))
	ctx := context.Background()
	db := f.create()
	admin := f.open(db, f.issue(db, drivers.ScopeAdmin, drivers.SlotA, time.Time{}))
	f.mustRun(admin, "CREATE TABLE t (x int)")
	f.mustRun(admin, "CREATE TABLE _envplane_sys (x int)")
	f.mustRun(admin, "REVOKE ALL ON _envplane_sys FROM "+db.Name+"_readwrite_a, "+db.Name+"_readwrite_b")
	rw := f.open(db, f.issue(db, drivers.ScopeReadWrite, drivers.SlotA, time.Time{}))
	rw.SetMaxOpenConns(1)
	f.mustRun(rw, "INSERT INTO t VALUES (1)")

	u, err := f.driver.Usage(ctx, db)
	if err != nil {
		t.Fatalf("usage: %s", f.safe(err))
	}
	if u.SizeBytes <= 0 || u.Tables == nil || *u.Tables != 1 || u.Connections == nil || *u.Connections < 2 {
		t.Fatalf("usage = %d bytes, tables %v, connections %v; want 1 table and the two open sessions", u.SizeBytes, u.Tables, u.Connections)
	}

	limit := func(on bool) {
		t.Helper()
		for range 2 { // idempotent
			if err := f.driver.LimitWrites(ctx, drivers.LimitWritesRequest{Database: db, Limited: on}); err != nil {
				t.Fatalf("limit writes %v: %s", on, f.safe(err))
			}
		}
	}
	limit(true)
	f.mustRun(admin, "CREATE TABLE later (x int)")
	for _, stmt := range []string{"INSERT INTO t VALUES (2)", "UPDATE t SET x = 3", "DELETE FROM t", "INSERT INTO later VALUES (1)"} {
		if err := f.run(rw, stmt); sqlState(err) != "42501" {
			t.Fatalf("%s over the limit: %v, want insufficient_privilege", stmt, err)
		}
	}
	f.mustRun(rw, "SELECT x FROM t")

	limit(false)
	f.mustRun(rw, "INSERT INTO t VALUES (4)")
	f.mustRun(rw, "INSERT INTO later VALUES (5)")
	f.mustRun(admin, "CREATE TABLE after_lift (x int)")
	f.mustRun(rw, "INSERT INTO after_lift VALUES (6)")
	if err := f.run(rw, "INSERT INTO _envplane_sys VALUES (1)"); sqlState(err) != "42501" {
		t.Fatalf("readwrite writes a system table after the lift: %v", err)
	}

	err = f.driver.LimitWrites(ctx, drivers.LimitWritesRequest{Database: drivers.Database{Name: f.name()}, Limited: true})
	if !errors.Is(err, drivers.ErrNotFound) {
		t.Fatalf("limit writes of a missing database: %v, want ErrNotFound", err)
	}
}
