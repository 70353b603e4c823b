package drivertest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/envplane/envplane/drivers"
)

// backerUp returns the driver's BackerUp; a harness that sets BacksUp
// promises one, so the suite fails without it.
func (s *suite) backerUp(tb testing.TB) drivers.BackerUp {
	tb.Helper()
	b, ok := s.h.Driver.(drivers.BackerUp)
	if !ok {
		tb.Fatalf("%s does not implement drivers.BackerUp, but the harness says BacksUp", s.h.Driver.Name())
	}
	return b
}

// filled creates a database whose test table holds rows 1..n, and returns
// it with its admin credential.
func (s *suite) filled(tb testing.TB, n int) (drivers.Database, drivers.Credential) {
	tb.Helper()
	db := s.create(tb)
	admin := s.issue(tb, db, drivers.ScopeAdmin, drivers.SlotA, time.Time{})
	conn := s.open(tb, db, admin)
	s.createTable(tb, conn.DB)
	for i := 1; i <= n; i++ {
		if err := s.insert(tb, conn.DB, conn.Dialect, i); err != nil {
			s.fail(tb, "insert", err)
		}
	}
	return db, admin
}

// restore restores copy under a fresh name, dropped when the test ends.
func (s *suite) restore(tb testing.TB, format string, copy []byte) (string, drivers.Database, error) {
	tb.Helper()
	name := NewDatabaseName(tb)
	tb.Cleanup(func() {
		_, err := s.h.Driver.DropDatabase(context.Background(), drivers.DropDatabaseRequest{Database: drivers.Database{Name: name}})
		s.check(tb, "drop restored database", err)
	})
	resp, err := s.backerUp(tb).RestoreDatabase(context.Background(), drivers.RestoreRequest{Name: name, Region: s.h.Region, Format: format, R: bytes.NewReader(copy)})
	s.check(tb, "restore", err)
	return name, resp.Database, err
}

func (s *suite) testBackupRestores(t *testing.T) {
	src, admin := s.filled(t, 3)
	var copy bytes.Buffer
	resp, err := s.backerUp(t).BackupDatabase(context.Background(), drivers.BackupRequest{Database: src, W: &copy})
	if err != nil {
		s.fail(t, "backup", err)
	}
	if resp.Format == "" || copy.Len() == 0 {
		t.Fatalf("backup: format %q, %d bytes", resp.Format, copy.Len())
	}
	if got := resp.Tables[table]; got != 3 {
		t.Errorf("backup counted %d rows in %s, want 3 (tables %v)", got, table, resp.Tables)
	}
	// A row written after the backup is not in the copy.
	after := s.open(t, src, admin)
	if err := s.insert(t, after.DB, after.Dialect, 4); err != nil {
		s.fail(t, "insert after backup", err)
	}

	_, db, err := s.restore(t, resp.Format, copy.Bytes())
	if err != nil {
		s.fail(t, "restore", err)
	}
	s.denied(t, db, admin, "the backed-up database's credential on its restored copy")
	own := s.issue(t, db, drivers.ScopeAdmin, drivers.SlotA, time.Time{})
	if n := s.count(t, s.open(t, db, own).DB); n != 3 {
		t.Errorf("restored database holds %d rows, want the copy's 3", n)
	}
	rw := s.issue(t, db, drivers.ScopeReadWrite, drivers.SlotA, time.Time{})
	conn := s.open(t, db, rw)
	if err := s.insert(t, conn.DB, conn.Dialect, 10); err != nil {
		t.Errorf("readwrite cannot write the restored table: %v", s.redacted(err))
	}

	// Restoring again under that name is success and reads nothing.
	again, err := s.backerUp(t).RestoreDatabase(context.Background(), drivers.RestoreRequest{Name: db.Name, Region: s.h.Region, Format: resp.Format, R: errReader{}})
	if err != nil {
		s.fail(t, "repeated restore", err)
	}
	if again.Database.Name != db.Name {
		t.Errorf("repeated restore names %q, want %q", again.Database.Name, db.Name)
	}
	if n := s.count(t, s.open(t, db, own).DB); n != 4 {
		t.Errorf("after a repeated restore the database holds %d rows, want its own 4", n)
	}
}

func (s *suite) testTornBackup(t *testing.T) {
	src, _ := s.filled(t, 50)
	var copy bytes.Buffer
	resp, err := s.backerUp(t).BackupDatabase(context.Background(), drivers.BackupRequest{Database: src, W: &copy})
	if err != nil {
		s.fail(t, "backup", err)
	}
	torn := copy.Bytes()[:copy.Len()/2]
	name, db, err := s.restore(t, resp.Format, torn)
	if err == nil {
		t.Fatalf("a copy cut in half restored into %s", db.Name)
	}
	_, err = s.h.Driver.IssueCredential(context.Background(), drivers.IssueCredentialRequest{Database: drivers.Database{Name: name}, Scope: drivers.ScopeAdmin, Slot: drivers.SlotA})
	if !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("a credential for the torn restore's database: %v, want ErrNotFound", s.redacted(err))
	}
}

func (s *suite) testBackupMissing(t *testing.T) {
	var copy bytes.Buffer
	_, err := s.backerUp(t).BackupDatabase(context.Background(), drivers.BackupRequest{Database: drivers.Database{Name: NewDatabaseName(t)}, W: &copy})
	s.check(t, "backup of a missing database", err)
	if !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("backup of a missing database: %v, want ErrNotFound", s.redacted(err))
	}
	_, err = s.backerUp(t).RestoreDatabase(context.Background(), drivers.RestoreRequest{Name: NewDatabaseName(t), Format: "no-such-format", R: strings.NewReader("x")})
	if !errors.Is(err, drivers.ErrUnsupported) {
		t.Errorf("restore of an unknown format: %v, want ErrUnsupported", s.redacted(err))
	}
}

// errReader fails every read: a restore that must not read its copy.
type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("the copy was read") }
