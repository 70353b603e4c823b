// Package sqlite is the envplane driver for a SQLite target: one database file
// per environment in one directory, opened with modernc.org/sqlite (no cgo).
//
// A SQLite file has no authentication of its own, so the driver keeps, next to
// each database, a credential registry (another SQLite file, mode 0600) holding
// per scope and slot the SHA-256 of a random token and its expiry. Open checks
// a token against it, which makes revocation, rotation slots, expiry and
// environment isolation real at the driver boundary. Anyone with file-system
// access to the directory bypasses it; adr/0007-sqlite-target-credentials.md
// records that limit.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"time"

	// The pure-Go SQLite driver registers itself as "sqlite".
	_ "modernc.org/sqlite"

	"github.com/envplane/envplane/drivers"
)

// DriverName is what Name returns.
const DriverName = "sqlite"

// busyTimeout is how long a connection waits for another writer's lock, in
// milliseconds, before it reports SQLITE_BUSY.
const busyTimeout = 5000

var (
	_ drivers.Driver        = (*Driver)(nil)
	_ drivers.Cloner        = (*Driver)(nil)
	_ drivers.UsageReporter = (*Driver)(nil)
	_ drivers.HealthChecker = (*Driver)(nil)
)

// Config configures a SQLite target.
type Config struct {
	// Dir is the directory that holds the databases. It is created with mode
	// 0700 when absent; an existing one must not be open to group or others.
	Dir string
	// Now is the clock that expiry is checked against; nil means time.Now.
	Now func() time.Time
	// CrashPoint, when set, is called inside a database's creation at
	// "sqlite.create.registry_built" (the registry complete under its
	// temporary name) and "sqlite.create.registry_placed" (the registry in
	// place, the database file not yet), and inside a reset's swap at
	// "sqlite.reset.swapped" (the staged contents copied in, the staged
	// file not yet removed). Only crash tests set it.
	CrashPoint func(point string)
}

// Driver creates and opens SQLite databases in one directory. It is safe for
// concurrent use; several processes may share a directory, since every
// change goes through SQLite's own locking.
type Driver struct {
	dir   string
	now   func() time.Time
	crash func(point string)
}

// New returns a driver for cfg.Dir, creating the directory (mode 0700) when
// absent. It fails when Dir is empty, cannot be created, is not a directory or
// is accessible to group or others.
func New(cfg Config) (*Driver, error) {
	if cfg.Dir == "" {
		return nil, errors.New("sqlite target: dir is required")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("sqlite target: cannot resolve dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sqlite target: cannot create dir: %w", err)
	}
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("sqlite target: cannot stat dir: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("sqlite target: %s is not a directory", dir)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("sqlite target: dir %s has mode %#o; it must not be accessible to group or others (chmod 0700)", dir, perm)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	crash := cfg.CrashPoint
	if crash == nil {
		crash = func(string) {}
	}
	return &Driver{dir: dir, now: now, crash: crash}, nil
}

// Name returns "sqlite".
func (d *Driver) Name() string { return DriverName }

// CreateDatabase creates the database file (mode 0600) and its credential
// registry. A database of that name with its registry is ours and success; a
// file of that name without one is ErrExists. An invalid name is
// ErrUnsupported. Idempotent.
func (d *Driver) CreateDatabase(ctx context.Context, req drivers.CreateDatabaseRequest) (drivers.CreateDatabaseResponse, error) {
	p, err := d.paths(req.Name)
	if err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	if err := d.create(ctx, p, createEmpty); err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	return drivers.CreateDatabaseResponse{Database: d.database(p, req.Region)}, nil
}

// create makes the database at p: the registry first, so a database file
// never exists without the mark that it is ours, then the file, built by fill
// at a temporary path and renamed into place so a crash leaves no half-made
// database under the real name. A registry cut short by a crash is finished,
// so a create interrupted anywhere can be repeated.
func (d *Driver) create(ctx context.Context, p paths, fill func(tmp string) error) error {
	state, err := d.registry(ctx, p)
	if err != nil {
		return err
	}
	if exists(p.db) {
		if state != registryOurs {
			return fmt.Errorf("database %s: %w (not made by envplane)", p.name, drivers.ErrExists)
		}
		return nil
	}
	switch state {
	case registryForeign:
		return fmt.Errorf("database %s: %w (its registry names another database)", p.name, drivers.ErrExists)
	case registryAbsent, registryHalf:
		if err := d.initRegistry(ctx, p); err != nil {
			return err
		}
		d.crash("sqlite.create.registry_placed")
	}
	// A crash mid-fill may have left a journal that SQLite would replay into
	// a new file of the same name.
	tmp := p.db + ".tmp"
	for _, f := range sqliteFiles(tmp) {
		if err := removeIfExists(f); err != nil {
			return fmt.Errorf("cannot clear temporary file of %s: %w", p.name, err)
		}
	}
	if err := fill(tmp); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, p.db); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("cannot move database %s into place: %w", p.name, err)
	}
	return syncDir(d.dir)
}

// DropDatabase removes the database file, its journals and its credential
// registry, so every credential of it stops working. Absent is success; an
// invalid name is ErrUnsupported. Idempotent.
func (d *Driver) DropDatabase(_ context.Context, req drivers.DropDatabaseRequest) (drivers.DropDatabaseResponse, error) {
	p, err := d.paths(req.Database.Name)
	if err != nil {
		return drivers.DropDatabaseResponse{}, err
	}
	// The registry goes last: until then a retry still recognizes the
	// remains as ours.
	files := append(sqliteFiles(p.db), sqliteFiles(p.db+".tmp")...)
	files = append(files, sqliteFiles(p.registry+".tmp")...)
	files = append(files, sqliteFiles(stagedPath(p))...)
	for _, f := range append(files, sqliteFiles(p.registry)...) {
		if err := removeIfExists(f); err != nil {
			return drivers.DropDatabaseResponse{}, fmt.Errorf("cannot drop database %s: %w", p.name, err)
		}
	}
	return drivers.DropDatabaseResponse{}, syncDir(d.dir)
}

// Open checks the credential against the database's registry and returns a
// pool on the file: read-only (mode=ro) for the readonly scope, read-write
// otherwise. It returns ErrDenied for a wrong, revoked or expired secret,
// ErrNotFound when the database does not exist, ErrUnsupported for an invalid
// name, scope or slot.
func (d *Driver) Open(ctx context.Context, req drivers.OpenRequest) (drivers.OpenResponse, error) {
	p, err := d.paths(req.Database.Name)
	if err != nil {
		return drivers.OpenResponse{}, err
	}
	if err := checkScopeSlot(req.Credential.Scope, req.Credential.Slot); err != nil {
		return drivers.OpenResponse{}, err
	}
	if err := d.verify(ctx, p, req.Credential); err != nil {
		return drivers.OpenResponse{}, err
	}
	source := dsn(p.db, req.Credential.Scope)
	if req.Credential.Scope != drivers.ScopeReadOnly {
		// Writers take the write lock at BEGIN and wait for it there (busy
		// timeout), instead of failing when a read lock cannot be upgraded.
		source += "&_txlock=immediate"
	}
	db, err := sql.Open("sqlite", source)
	if err != nil {
		return drivers.OpenResponse{}, fmt.Errorf("cannot open database %s: %w", p.name, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		if !exists(p.db) {
			return drivers.OpenResponse{}, fmt.Errorf("database %s: %w", p.name, drivers.ErrNotFound)
		}
		return drivers.OpenResponse{}, fmt.Errorf("cannot open database %s: %w", p.name, err)
	}
	return drivers.OpenResponse{DB: db, Dialect: drivers.DialectSQLite}, nil
}

// Descriptor returns the file URI an application opens, read-only for the
// readonly scope. The DSN works verbatim with modernc.org/sqlite and with the
// sqlite3 command-line shell; it carries no secret, since a file has no
// authentication. It does no I/O; an invalid name, scope or slot is
// ErrUnsupported.
func (d *Driver) Descriptor(_ context.Context, req drivers.DescriptorRequest) (drivers.Descriptor, error) {
	p, err := d.paths(req.Database.Name)
	if err != nil {
		return drivers.Descriptor{}, err
	}
	if err := checkScopeSlot(req.Credential.Scope, req.Credential.Slot); err != nil {
		return drivers.Descriptor{}, err
	}
	s := dsn(p.db, req.Credential.Scope)
	return drivers.Descriptor{
		DSN:      drivers.Secret(s),
		URL:      s,
		Database: p.db,
		Username: req.Credential.Username,
		Params:   map[string]string{"mode": mode(req.Credential.Scope)},
	}, nil
}

// paths names the files of one database.
type paths struct {
	name     string
	db       string
	registry string
}

// paths validates name and returns its files under the target's directory.
func (d *Driver) paths(name string) (paths, error) {
	if !drivers.ValidDatabaseName(name) {
		return paths{}, fmt.Errorf("invalid database name %q (want env_ and 26 lowercase letters or digits): %w", name, drivers.ErrUnsupported)
	}
	return paths{
		name:     name,
		db:       filepath.Join(d.dir, name+".db"),
		registry: filepath.Join(d.dir, name+".credentials.db"),
	}, nil
}

func (d *Driver) database(p paths, region string) drivers.Database {
	return drivers.Database{Name: p.name, URL: fileURI(p.db), Region: region}
}

func checkScopeSlot(scope drivers.Scope, slot drivers.Slot) error {
	if !scope.Valid() {
		return fmt.Errorf("scope %q: %w", scope, drivers.ErrUnsupported)
	}
	if !slot.Valid() {
		return fmt.Errorf("slot %q: %w", slot, drivers.ErrUnsupported)
	}
	return nil
}

func mode(scope drivers.Scope) string {
	if scope == drivers.ScopeReadOnly {
		return "ro"
	}
	// rw, not rwc: a dropped database must not come back as an empty file.
	return "rw"
}

// fileURI returns path as a SQLite URI filename, escaping what a URI would
// misread (%, ?, #, spaces).
func fileURI(path string) string {
	return "file:" + (&url.URL{Path: filepath.ToSlash(path)}).EscapedPath()
}

func dsn(path string, scope drivers.Scope) string {
	return fmt.Sprintf("%s?mode=%s&_pragma=busy_timeout(%d)", fileURI(path), mode(scope), busyTimeout)
}

// createEmpty creates a zero-length file, which SQLite reads as an empty
// database, with mode 0600 so that the journals SQLite creates beside it get
// the same mode.
func createEmpty(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("cannot create database file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("cannot sync database file: %w", err)
	}
	return f.Close()
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// sqliteFiles lists a database file and the journals SQLite may keep beside it.
func sqliteFiles(path string) []string {
	return []string{path, path + "-journal", path + "-wal", path + "-shm"}
}

// syncDir makes renames and removals in dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cannot open target dir: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("cannot sync target dir: %w", err)
	}
	return nil
}
