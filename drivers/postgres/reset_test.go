package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/postgres"
)

// stopped is what the crash point panics with: the process "dies" there.
type stopped struct{}

// stopAt returns a driver option whose crash point panics at point while
// *armed is true, and a call wrapper that turns that panic into true.
func stopAt(point string, armed *bool) (func(*postgres.Config), func(func() error) (bool, error)) {
	opt := func(c *postgres.Config) {
		c.CrashPoint = func(p string) {
			if p == point && *armed {
				panic(stopped{})
			}
		}
	}
	call := func(fn func() error) (died bool, err error) {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(stopped); !ok {
					panic(r)
				}
				died = true
			}
		}()
		return false, fn()
	}
	return opt, call
}

// TestResetStoppedHalfWay: a reset whose process dies after staging (before
// the grants) or after closing the database to new sessions (before the
// rename) converges either way: repeated, it swaps the new contents in;
// discarded, the database takes sessions again with its old contents. A
// database dropped with a reset left beside it leaves nothing.
func TestResetStoppedHalfWay(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		point  string
		finish bool // repeat the reset (true) or discard it
	}{
		{"postgres.reset.staged", true},
		{"postgres.reset.closed", true},
		{"postgres.reset.closed", false},
	} {
		name := tc.point + map[bool]string{true: "/repeated", false: "/discarded"}[tc.finish]
		t.Run(name, func(t *testing.T) {
			armed := true
			opt, call := stopAt(tc.point, &armed)
			f := newFixture(t, serverURL(t), opt)
			db := f.create()
			admin := f.issue(db, drivers.ScopeAdmin, drivers.SlotA, time.Time{})
			rw := f.issue(db, drivers.ScopeReadWrite, drivers.SlotA, time.Time{})
			conn, err := f.driver.Open(ctx, drivers.OpenRequest{Database: db, Credential: admin})
			if err != nil {
				t.Fatalf("open: %s", f.safe(err))
			}
			if _, err := conn.DB.Exec("CREATE TABLE old (x int); INSERT INTO old VALUES (1)"); err != nil {
				t.Fatal(err)
			}
			conn.DB.Close()
			req := drivers.ResetRequest{Database: db, Admin: admin}
			died, err := call(func() error {
				if err := f.driver.StageReset(ctx, req); err != nil {
					return err
				}
				return f.driver.SwapReset(ctx, req)
			})
			if !died {
				t.Fatalf("the reset did not reach %s (err %v)", tc.point, err)
			}
			armed = false
			if tc.finish {
				if tc.point == "postgres.reset.staged" {
					if err := f.driver.StageReset(ctx, req); err != nil {
						t.Fatalf("stage again: %s", f.safe(err))
					}
				}
				if err := f.driver.SwapReset(ctx, req); err != nil {
					t.Fatalf("swap again: %s", f.safe(err))
				}
			}
			if err := f.driver.DiscardReset(ctx, req); err != nil {
				t.Fatalf("discard: %s", f.safe(err))
			}
			app, err := f.driver.Open(ctx, drivers.OpenRequest{Database: db, Credential: rw})
			if err != nil {
				t.Fatalf("readwrite cannot open the database after the reset converged: %s", f.safe(err))
			}
			defer app.DB.Close()
			var x int
			err = app.DB.QueryRow("SELECT x FROM old").Scan(&x)
			if tc.finish && err == nil {
				t.Fatal("the repeated reset left the old contents")
			}
			if !tc.finish && (err != nil || x != 1) {
				t.Fatalf("the discarded reset changed the contents: %d, %v", x, err)
			}
			dbs, _ := f.leftovers()
			if len(dbs) != 1 || dbs[0] != db.Name {
				t.Fatalf("databases after the reset converged: %v, want only %s", dbs, db.Name)
			}
		})
	}
	t.Run("dropped with a reset staged", func(t *testing.T) {
		f := newFixture(t, serverURL(t))
		resp, err := f.driver.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: f.name()})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.driver.StageReset(ctx, drivers.ResetRequest{Database: resp.Database}); err != nil {
			t.Fatalf("stage: %s", f.safe(err))
		}
		if _, err := f.driver.DropDatabase(ctx, drivers.DropDatabaseRequest{Database: resp.Database}); err != nil {
			t.Fatalf("drop: %s", f.safe(err))
		}
		if dbs, roles := f.leftovers(); len(dbs)+len(roles) != 0 {
			t.Fatalf("after drop: databases %v, roles %v remain", dbs, roles)
		}
	})
}
