package drivertest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/envplane/envplane/drivers"
)

// resetter returns the driver's Resetter; every envplane driver must
// implement it, so the suite fails rather than skips without one.
func (s *suite) resetter(tb testing.TB) drivers.Resetter {
	tb.Helper()
	r, ok := s.h.Driver.(drivers.Resetter)
	if !ok {
		tb.Fatalf("%s does not implement drivers.Resetter: environments must be resettable", s.h.Driver.Name())
	}
	return r
}

// resetFixture is a database with a row of its own, an admin and a readwrite
// credential, and an application's pool opened from the readwrite
// descriptor's DSN before any reset.
type resetFixture struct {
	db    drivers.Database
	admin drivers.Credential
	rw    drivers.Credential
	ro    drivers.Credential
	app   *sql.DB
}

func (s *suite) resetFixture(tb testing.TB, ids ...int) resetFixture {
	tb.Helper()
	f := resetFixture{db: s.create(tb)}
	f.admin = s.issue(tb, f.db, drivers.ScopeAdmin, drivers.SlotA, time.Time{})
	f.rw = s.issue(tb, f.db, drivers.ScopeReadWrite, drivers.SlotA, time.Time{})
	f.ro = s.issue(tb, f.db, drivers.ScopeReadOnly, drivers.SlotA, time.Time{})
	admin := s.open(tb, f.db, f.admin)
	s.createTable(tb, admin.DB)
	for _, id := range ids {
		if err := s.insert(tb, admin.DB, admin.Dialect, id); err != nil {
			s.fail(tb, "insert", err)
		}
	}
	desc, err := s.h.Driver.Descriptor(context.Background(), drivers.DescriptorRequest{Database: f.db, Credential: f.rw})
	if err != nil {
		s.fail(tb, "descriptor", err)
	}
	f.app, err = s.h.OpenDSN(desc.DSN.Reveal())
	if err != nil {
		s.fail(tb, "open the descriptor's DSN", err)
	}
	tb.Cleanup(func() { f.app.Close() })
	if got := s.ids(tb, f.app); fmt.Sprint(got) != fmt.Sprint(ids) {
		tb.Fatalf("application pool reads ids %v before the reset, want %v", got, ids)
	}
	return f
}

// ids returns the table's ids in order, as an application would read them:
// a pool whose sessions a swap ended may fail a query or two while it
// reconnects (database/sql discards the broken connection), never more.
func (s *suite) ids(tb testing.TB, db *sql.DB) []int {
	tb.Helper()
	var err error
	for range 3 {
		var got []int
		if got, err = queryIDs(db); err == nil {
			return got
		}
	}
	s.fail(tb, "read ids", err)
	return nil
}

func queryIDs(db *sql.DB) ([]int, error) {
	rows, err := db.QueryContext(context.Background(), "SELECT id FROM "+table+" ORDER BY id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	got := []int{}
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		got = append(got, id)
	}
	return got, rows.Err()
}

func (s *suite) stageReset(tb testing.TB, req drivers.ResetRequest) {
	tb.Helper()
	if err := s.resetter(tb).StageReset(context.Background(), req); err != nil {
		s.fail(tb, "stage reset", err)
	}
}

func (s *suite) swapReset(tb testing.TB, req drivers.ResetRequest) {
	tb.Helper()
	if err := s.resetter(tb).SwapReset(context.Background(), req); err != nil {
		s.fail(tb, "swap reset", err)
	}
}

func (s *suite) openStaged(tb testing.TB, db drivers.Database, c drivers.Credential) drivers.OpenResponse {
	tb.Helper()
	resp, err := s.resetter(tb).OpenStaged(context.Background(), drivers.OpenRequest{Database: db, Credential: c})
	if err != nil {
		s.fail(tb, "open staged", err)
	}
	tb.Cleanup(func() { resp.DB.Close() })
	return resp
}

// testResetFromSource: a database reset from another one holds the source's
// rows, and nothing of its own, once swapped and not before; the staged copy
// opens with the database's own admin credential, and what the admin creates
// there is usable by readwrite afterwards; every credential, and an
// application's pool opened before, keep working on the new contents; the
// source's credentials still open the source and not the reset database;
// staging twice and swapping twice change nothing more.
func (s *suite) testResetFromSource(t *testing.T) {
	src := s.resetFixture(t, 1, 2)
	dst := s.resetFixture(t, 7)
	req := drivers.ResetRequest{Database: dst.db, Source: &src.db, Admin: dst.admin}
	s.stageReset(t, req)
	s.stageReset(t, req)
	if got := s.ids(t, dst.app); fmt.Sprint(got) != "[7]" {
		t.Fatalf("after staging the database reads ids %v, want [7] (nothing swapped yet)", got)
	}
	staged := s.openStaged(t, dst.db, dst.admin)
	if got := s.ids(t, staged.DB); fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("the staged copy reads ids %v, want the source's [1 2]", got)
	}
	// What the schema initializer does to a staged copy: create as admin.
	s.mustExec(t, staged.DB, "CREATE TABLE adopted (id INTEGER PRIMARY KEY)")
	staged.DB.Close()
	s.swapReset(t, req)
	s.swapReset(t, req)
	if got := s.ids(t, dst.app); fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("the application's pool reads ids %v after the swap, want [1 2]", got)
	}
	rw := s.open(t, dst.db, dst.rw)
	if err := s.insert(t, rw.DB, rw.Dialect, 3); err != nil {
		s.fail(t, "readwrite insert after reset", err)
	}
	s.mustExec(t, rw.DB, "INSERT INTO adopted (id) VALUES (1)")
	if _, err := dst.app.ExecContext(context.Background(), "INSERT INTO adopted (id) VALUES (2)"); err != nil {
		s.fail(t, "application write after reset", err)
	}
	s.works(t, dst.db, dst.ro, "readonly after reset")
	s.works(t, dst.db, dst.admin, "admin after reset")
	s.works(t, src.db, src.rw, "the source's readwrite after reset")
	s.denied(t, dst.db, src.rw, "the source's credential at the reset database")
	if got := s.ids(t, src.app); fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("the source reads ids %v after the reset, want [1 2]", got)
	}
	if err := s.resetter(t).DiscardReset(context.Background(), req); err != nil {
		s.fail(t, "discard after swap", err)
	}
	if got := s.ids(t, dst.app); fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("after discarding the leftovers the database reads ids %v, want [1 2 3]", got)
	}
}

// testResetToEmpty: an empty reset leaves no table of the old contents, and
// what the admin created in the staged database is there and readable by
// readonly.
func (s *suite) testResetToEmpty(t *testing.T) {
	dst := s.resetFixture(t, 7)
	req := drivers.ResetRequest{Database: dst.db, Admin: dst.admin}
	s.stageReset(t, req)
	staged := s.openStaged(t, dst.db, dst.admin)
	if _, err := queryIDs(staged.DB); err == nil {
		t.Fatal("the staged empty database has the old table")
	}
	s.mustExec(t, staged.DB, "CREATE TABLE adopted (id INTEGER PRIMARY KEY)")
	s.mustExec(t, staged.DB, "INSERT INTO adopted (id) VALUES (5)")
	staged.DB.Close()
	s.swapReset(t, req)
	// The application's pool reaches the new contents (after at most two
	// broken sessions) ...
	var id int
	var err error
	for range 3 {
		if err = dst.app.QueryRowContext(context.Background(), "SELECT id FROM adopted").Scan(&id); err == nil {
			break
		}
	}
	if err != nil || id != 5 {
		t.Fatalf("the application's pool reads adopted = %d, %v after the reset; want 5", id, s.redacted(err))
	}
	// ... where the old table is gone.
	if _, err := queryIDs(dst.app); err == nil {
		t.Fatal("after an empty reset the old table is still there")
	}
	ro := s.open(t, dst.db, dst.ro)
	if err := ro.DB.QueryRowContext(context.Background(), "SELECT id FROM adopted").Scan(&id); err != nil || id != 5 {
		t.Fatalf("readonly reads adopted = %d, %v after the reset; want 5", id, s.redacted(err))
	}
}

// testResetDiscarded: a staged reset that is discarded changes nothing; the
// staged database is gone, and a swap afterwards has nothing to do.
func (s *suite) testResetDiscarded(t *testing.T) {
	src := s.resetFixture(t, 1)
	dst := s.resetFixture(t, 7)
	req := drivers.ResetRequest{Database: dst.db, Source: &src.db, Admin: dst.admin}
	s.stageReset(t, req)
	r := s.resetter(t)
	ctx := context.Background()
	for range 2 {
		if err := r.DiscardReset(ctx, req); err != nil {
			s.fail(t, "discard", err)
		}
	}
	_, err := r.OpenStaged(ctx, drivers.OpenRequest{Database: dst.db, Credential: dst.admin})
	s.check(t, "open staged after discard", err)
	if !errors.Is(err, drivers.ErrNotFound) {
		t.Fatalf("open staged after discard: %v, want ErrNotFound", s.redacted(err))
	}
	s.swapReset(t, req)
	if got := s.ids(t, dst.app); fmt.Sprint(got) != "[7]" {
		t.Fatalf("after a discarded reset the database reads ids %v, want [7]", got)
	}
	missing := drivers.Database{Name: NewDatabaseName(t)}
	err = r.StageReset(ctx, drivers.ResetRequest{Database: missing})
	s.check(t, "stage reset of a missing database", err)
	if !errors.Is(err, drivers.ErrNotFound) {
		t.Fatalf("stage reset of a missing database: %v, want ErrNotFound", s.redacted(err))
	}
}

// testResetLeftoversGoWithDrop: dropping a database drops a reset staged
// beside it: the database made again under the same name has nothing staged.
func (s *suite) testResetLeftoversGoWithDrop(t *testing.T) {
	ctx := context.Background()
	name := NewDatabaseName(t)
	create := func() drivers.Database {
		resp, err := s.h.Driver.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: name, Region: s.h.Region})
		if err != nil {
			s.fail(t, "create database", err)
		}
		return resp.Database
	}
	drop := func(db drivers.Database) {
		if _, err := s.h.Driver.DropDatabase(ctx, drivers.DropDatabaseRequest{Database: db}); err != nil {
			s.fail(t, "drop database", err)
		}
	}
	db := create()
	t.Cleanup(func() {
		_, _ = s.h.Driver.DropDatabase(context.Background(), drivers.DropDatabaseRequest{Database: db})
	})
	admin := s.issue(t, db, drivers.ScopeAdmin, drivers.SlotA, time.Time{})
	s.stageReset(t, drivers.ResetRequest{Database: db, Admin: admin})
	drop(db)
	db = create()
	admin = s.issue(t, db, drivers.ScopeAdmin, drivers.SlotA, time.Time{})
	_, err := s.resetter(t).OpenStaged(ctx, drivers.OpenRequest{Database: db, Credential: admin})
	s.check(t, "open staged after drop", err)
	if !errors.Is(err, drivers.ErrNotFound) {
		t.Fatalf("a reset staged before the drop opens after it (err %v), want ErrNotFound", s.redacted(err))
	}
	drop(db)
}
