// Package sqlite implements controlplane.Store on an embedded SQLite database
// (modernc.org/sqlite, no cgo): the control plane's default store when a
// single replica is enough. It is store/sqlstore in its SQLite dialect.
//
// The database runs in WAL mode with foreign keys on and a busy timeout, and
// every transaction begins IMMEDIATE, so concurrent writers queue on the
// write lock instead of failing when a read turns into a write.
package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/store/sqlstore"
	"github.com/envplane/envplane/migrations"
)

// busyTimeoutMillis is how long a writer waits for the write lock before
// giving up with SQLITE_BUSY.
const busyTimeoutMillis = 10000

// Store is the SQLite control-plane store: store/sqlstore in its SQLite
// dialect. It is safe for concurrent use.
type Store struct {
	*sqlstore.Store
}

var _ controlplane.Store = Store{}

// Open opens the SQLite database at path, creating the file with mode 0600
// when it does not exist (its directory must), and applies the pending
// control-plane migrations. Opening an up-to-date database again changes
// nothing. It returns an error when the file cannot be created or opened or a
// migration fails; the caller must Close the store.
func Open(ctx context.Context, path string) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("cannot open store: %w", err)
	}
	// SQLite creates a missing file with the process umask's mode; create it
	// first so the control plane's secrets are never world-readable. The WAL
	// and shared-memory files inherit the database file's mode.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot open store: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("cannot open store: %w", err)
	}
	db, err := sql.Open("sqlite", dsn(abs))
	if err != nil {
		return nil, fmt.Errorf("cannot open store: %w", err)
	}
	if err := migrate(ctx, db); err != nil {
		_ = db.Close()
		return nil, err
	}
	return &Store{sqlstore.New(db, sqlstore.SQLite())}, nil
}

// dsn builds a file: URI for path, so characters such as '?' and '#' in the
// path cannot be read as URI syntax.
func dsn(path string) string {
	q := url.Values{}
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "journal_mode(WAL)")
	// NORMAL: in WAL mode a commit survives the process's crash (kill -9)
	// and is made durable against power loss at the next checkpoint
	// (adr/0029).
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMillis))
	q.Set("_txlock", "immediate")
	// Timestamps are INTEGER microseconds since the epoch: the driver
	// writes a time.Time argument so (store/sqlstore reads them back).
	q.Set("_time_integer_format", "unix_micro")
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: q.Encode()}
	return u.String()
}

func migrate(ctx context.Context, db *sql.DB) error {
	p, err := goose.NewProvider(goose.DialectSQLite3, db, migrations.ControlPlaneSQLite(),
		goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("cannot load store migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("cannot migrate store: %w", err)
	}
	return nil
}
