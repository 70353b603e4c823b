package sqlite_test

import (
	"database/sql"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the driver, for inspecting the file directly

	"github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/store/sqlite"
	"github.com/envplane/envplane/controlplane/store/storetest"
	"github.com/envplane/envplane/migrations"
)

// openStore opens a store on a new file in a temporary directory and closes
// it when the test ends.
func openStore(tb testing.TB, path string) *sqlite.Store {
	tb.Helper()
	s, err := sqlite.Open(tb.Context(), path)
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close store: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(tb testing.TB) controlplane.Store {
		return openStore(tb, filepath.Join(tb.TempDir(), "controlplane.db"))
	})
}

func TestFilesArePrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "controlplane.db")
	s := openStore(t, path)
	// A write makes sure the WAL file exists too.
	must(t, s.CreateUser(t.Context(), &controlplane.User{ID: "usr_1", Email: "a@example.com", Name: "A", CreatedAt: time.Now()}))
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatalf("stat %s: %v", filepath.Base(p), err)
		}
		if mode := info.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(p), mode)
		}
	}
}

func TestReopenKeepsDataAndSchema(t *testing.T) {
	// A path with URI syntax in it must still name a plain file.
	path := filepath.Join(t.TempDir(), "odd dir?x=1#frag", "control plane.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	first, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	org := &controlplane.Organization{ID: "org_1", Slug: "acme", Name: "Acme", CreatedAt: time.Now(), UpdatedAt: time.Now()}
	must(t, first.CreateOrganization(t.Context(), org))
	must(t, first.Close())

	second := openStore(t, path)
	got, err := second.GetOrganization(t.Context(), "acme")
	must(t, err)
	if !got.CreatedAt.Equal(org.CreatedAt) {
		t.Errorf("reopened organization created at %v, want %v", got.CreatedAt, org.CreatedAt)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the database is not at the path given: %v", err)
	}

	// Reopening applied no migration twice.
	files, err := fs.Glob(migrations.ControlPlaneSQLite(), "*.sql")
	must(t, err)
	var applied, distinct int
	must(t, openRaw(t, path).QueryRow(`SELECT count(*), count(DISTINCT version_id) FROM goose_db_version
		WHERE version_id > 0`).Scan(&applied, &distinct))
	if applied != len(files) || distinct != len(files) {
		t.Errorf("goose recorded %d migrations for %d versions, want each of the %d files once", applied, distinct, len(files))
	}
}

// TestAuditEventsAreAppendOnly goes around the store: even raw SQL cannot
// change or remove an audit event.
func TestAuditEventsAreAppendOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "controlplane.db")
	s := openStore(t, path)
	must(t, s.AppendAuditEvent(t.Context(), &controlplane.AuditEvent{ID: "evt_1", OrgID: "org_1", Actor: "usr_1",
		Action: "organization.create", CreatedAt: time.Now()}))
	db := openRaw(t, path)
	if _, err := db.Exec(`UPDATE audit_events SET actor = 'someone else'`); err == nil {
		t.Errorf("UPDATE of an audit event succeeded")
	}
	if _, err := db.Exec(`DELETE FROM audit_events`); err == nil {
		t.Errorf("DELETE of an audit event succeeded")
	}
	events, _, err := s.ListAuditEvents(t.Context(), "org_1", controlplane.Page{})
	must(t, err)
	if len(events) != 1 || events[0].Actor != "usr_1" {
		t.Errorf("audit events after tampering = %+v, want the original one", events)
	}
}

func TestOpenFailsWithoutDirectory(t *testing.T) {
	_, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "missing", "controlplane.db"))
	if err == nil {
		t.Fatal("Open succeeded in a directory that does not exist")
	}
}

func openRaw(tb testing.TB, path string) *sql.DB {
	tb.Helper()
	u := url.URL{Scheme: "file", Path: path, RawQuery: "_pragma=busy_timeout(5000)"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		tb.Fatalf("open raw: %v", err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatalf("unexpected error: %v", err)
	}
}

func BenchmarkStore(b *testing.B) {
	storetest.Benchmark(b, func(tb testing.TB) controlplane.Store {
		return openStore(tb, filepath.Join(tb.TempDir(), "controlplane.db"))
	})
}
