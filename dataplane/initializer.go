package dataplane

import (
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/envplane/envplane/drivers"
)

// fileName is the shape of a migration file: a positive version, an
// underscore, a name.
var fileName = regexp.MustCompile(`^([0-9]+)_([A-Za-z0-9_.-]+)\.sql$`)

// Initializer applies migrations to data-plane databases. Its fields are
// read-only after construction, so one Initializer serves every database
// concurrently.
//
// Migration files are plain SQL named NNNN_name.sql at the top of their
// file system; other files (README.md, .keep) are ignored. A file may hold
// several statements but no transaction control (BEGIN, COMMIT): the
// initializer wraps each migration in its own transaction.
type Initializer struct {
	// System holds envplane's data-plane migrations (migrations.DataPlane()).
	System fs.FS
	// App holds the app's migrations (os.DirFS of the configured directory);
	// nil means the app has none.
	App fs.FS
	// Now stamps applied_at; nil means time.Now.
	Now func() time.Time
}

// migration is a file to apply: its description and its SQL.
type migration struct {
	Migration
	sql string
}

// Apply brings the database up to date: it creates the ledger when absent,
// checks that the database belongs to owner (OwnerMismatchError otherwise),
// refuses drift (DriftError), applies pending system migrations, records the
// owner in the meta row, then applies pending app migrations, each in order and
// atomically with its ledger row. A failing migration stops the run with a
// MigrationError naming its file; those applied before it stay applied. An
// unknown dialect is drivers.ErrUnsupported. Idempotent: a second call applies
// nothing and returns the same SchemaVersion.
func (in *Initializer) Apply(ctx context.Context, db *sql.DB, dialect drivers.Dialect, owner Owner) (Result, error) {
	return in.ApplyTo(ctx, db, dialect, owner, 0)
}

// ApplyTo is Apply with the app's migrations applied only up to version
// (every one when version is 0 or less); system migrations are always
// applied. A fleet rollout uses it to move environments to one version.
func (in *Initializer) ApplyTo(ctx context.Context, db *sql.DB, dialect drivers.Dialect, owner Owner, version int64) (Result, error) {
	if owner.EnvironmentID == "" || owner.OrgID == "" {
		return Result{}, errors.New("cannot initialize schema: owner environment and organization are required")
	}
	exec, err := executorFor(dialect)
	if err != nil {
		return Result{}, err
	}
	system, app, err := in.load()
	if err != nil {
		return Result{}, err
	}
	target := app
	if version > 0 {
		target = slices.DeleteFunc(slices.Clone(app), func(m migration) bool { return m.Version > version })
	}
	if err := createLedger(ctx, db, dialect); err != nil {
		return Result{}, err
	}
	applied, err := readLedger(ctx, db)
	if err != nil {
		return Result{}, err
	}
	if problems, err := tampering(ctx, db, dialect, applied, system); err != nil {
		return Result{}, err
	} else if len(problems) > 0 {
		return Result{}, &TamperError{Problems: problems}
	}
	if drift := findDrift(applied, system, app); len(drift) > 0 {
		return Result{}, &DriftError{Drift: drift}
	}
	got, owned, err := readOwner(ctx, db, dialect)
	if err != nil {
		return Result{}, err
	}
	if owned && got != owner {
		return Result{}, &OwnerMismatchError{Want: owner, Got: got}
	}

	upToDate := len(pending(applied, system)) == 0 && len(pending(applied, target)) == 0
	var res Result
	run := func(ms []migration) error {
		for _, m := range pending(applied, ms) {
			m.AppliedAt = in.now().UTC()
			ran, err := exec.apply(ctx, db, dialect, m)
			if err != nil {
				return &MigrationError{Migration: m.Migration, Err: err}
			}
			if ran {
				res.Applied = append(res.Applied, m.Migration)
			}
		}
		return nil
	}
	if err := run(system); err != nil {
		return res, err
	}
	if err := secureSystemTables(ctx, db, dialect); err != nil {
		return res, err
	}
	if !owned {
		if err := claimOwner(ctx, db, dialect, owner, in.now().UTC()); err != nil {
			return res, err
		}
	}
	if err := run(target); err != nil {
		return res, err
	}
	if upToDate {
		// Nothing was pending, so the ledger read above is still the
		// truth: an up-to-date database costs no further round trip (each
		// is an HTTP request on Turso).
		res.SchemaVersion = schemaVersion(applied)
		return res, nil
	}
	after, err := readLedger(ctx, db)
	if err != nil {
		return res, err
	}
	res.SchemaVersion = schemaVersion(after)
	return res, nil
}

// Status reports the applied, pending and drifted migrations and the schema
// version. It writes nothing, so a database never initialized reports every
// migration pending. An unknown dialect is drivers.ErrUnsupported.
func (in *Initializer) Status(ctx context.Context, db *sql.DB, dialect drivers.Dialect) (Status, error) {
	if _, err := executorFor(dialect); err != nil {
		return Status{}, err
	}
	system, app, err := in.load()
	if err != nil {
		return Status{}, err
	}
	var st Status
	var applied map[key]Migration
	// A system table that cannot be read as the initializer wrote it is a
	// finding of the status, not its failure.
	var unread []string
	found := func(err error) error {
		var te *TamperError
		if errors.As(err, &te) {
			unread = append(unread, te.Problems...)
			return nil
		}
		return err
	}
	if ok, err := tableExists(ctx, db, dialect, LedgerTable); err != nil {
		return Status{}, err
	} else if ok {
		if applied, err = readLedger(ctx, db); found(err) != nil {
			return Status{}, err
		}
	}
	for _, m := range applied {
		st.Applied = append(st.Applied, m)
	}
	sortMigrations(st.Applied)
	for _, m := range append(pending(applied, system), pending(applied, app)...) {
		st.Pending = append(st.Pending, m.Migration)
	}
	st.Drift = findDrift(applied, system, app)
	st.SchemaVersion = schemaVersion(applied)
	if st.Owner, _, err = readOwner(ctx, db, dialect); found(err) != nil {
		return Status{}, err
	}
	if st.Tampered, err = tampering(ctx, db, dialect, applied, system); found(err) != nil {
		return Status{}, err
	}
	st.Tampered = append(unread, st.Tampered...)
	return st, nil
}

// Verify checks a database that Apply initialized before against what the
// control plane recorded then: the meta row must name want.Owner, the ledger
// must hold at least want.SchemaVersion, and its system rows must match
// envplane's own migrations. It returns a *TamperError listing what does not
// hold, or an *OwnerMismatchError when the meta row names another owner; it
// writes nothing. An unknown dialect is drivers.ErrUnsupported.
func (in *Initializer) Verify(ctx context.Context, db *sql.DB, dialect drivers.Dialect, want Expected) error {
	if _, err := executorFor(dialect); err != nil {
		return err
	}
	system, _, err := in.load()
	if err != nil {
		return err
	}
	var applied map[key]Migration
	if ok, err := tableExists(ctx, db, dialect, LedgerTable); err != nil {
		return err
	} else if ok {
		if applied, err = readLedger(ctx, db); err != nil {
			return err
		}
	}
	problems, err := tampering(ctx, db, dialect, applied, system)
	if err != nil {
		return err
	}
	if applied == nil {
		problems = append(problems, "the "+LedgerTable+" table is gone")
	}
	if v := schemaVersion(applied); v < want.SchemaVersion {
		problems = append(problems, fmt.Sprintf("the ledger records app version %d, but version %d was applied: its rows were deleted", v, want.SchemaVersion))
	}
	got, owned, err := readOwner(ctx, db, dialect)
	if err != nil {
		return err
	}
	if !owned {
		problems = append(problems, "the "+MetaTable+" row is gone")
	}
	if len(problems) > 0 {
		return &TamperError{Problems: problems}
	}
	if got != want.Owner {
		return &OwnerMismatchError{Want: want.Owner, Got: got}
	}
	return nil
}

// AppVersions returns the versions of the configured app migrations, in
// order; none when the app has none. It fails when a file is malformed.
func (in *Initializer) AppVersions() ([]int64, error) {
	if in.App == nil {
		return nil, nil
	}
	app, err := loadDir(in.App, NamespaceApp)
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(app))
	for i, m := range app {
		out[i] = m.Version
	}
	return out, nil
}

func (in *Initializer) now() time.Time {
	if in.Now == nil {
		return time.Now()
	}
	return in.Now()
}

// load reads and checks both namespaces' files.
func (in *Initializer) load() (system, app []migration, err error) {
	if in.System == nil {
		return nil, nil, errors.New("cannot load migrations: the system migrations are not configured")
	}
	if system, err = loadDir(in.System, NamespaceSystem); err != nil {
		return nil, nil, err
	}
	if in.App != nil {
		if app, err = loadDir(in.App, NamespaceApp); err != nil {
			return nil, nil, err
		}
	}
	return system, app, nil
}

// loadDir reads the migrations at the top of fsys, sorted by version. A .sql
// file with a malformed name, version 0 or a repeated version is an error, so
// a typo never silently skips a migration.
func loadDir(fsys fs.FS, namespace string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("cannot list %s migrations: %w", namespace, err)
	}
	var out []migration
	seen := map[int64]string{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		match := fileName.FindStringSubmatch(e.Name())
		if match == nil {
			return nil, fmt.Errorf("%s migration %s: the name must be NNNN_name.sql", namespace, e.Name())
		}
		version, err := strconv.ParseInt(match[1], 10, 64)
		if err != nil || version <= 0 {
			return nil, fmt.Errorf("%s migration %s: the version must be a positive number", namespace, e.Name())
		}
		if other, dup := seen[version]; dup {
			return nil, fmt.Errorf("%s migrations %s and %s share version %d", namespace, other, e.Name(), version)
		}
		seen[version] = e.Name()
		body, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("cannot read %s migration %s: %w", namespace, e.Name(), err)
		}
		sum := sha256.Sum256(body)
		out = append(out, migration{
			Migration: Migration{
				Namespace: namespace,
				Version:   version,
				Name:      match[2],
				File:      e.Name(),
				Checksum:  hex.EncodeToString(sum[:]),
			},
			sql: string(body),
		})
	}
	slices.SortFunc(out, func(a, b migration) int { return cmp.Compare(a.Version, b.Version) })
	return out, nil
}

// key identifies a migration in the ledger.
type key struct {
	namespace string
	version   int64
}

func keyOf(m Migration) key { return key{m.Namespace, m.Version} }

// pending returns the files of ms that the ledger does not hold, in order.
func pending(applied map[key]Migration, ms []migration) []migration {
	var out []migration
	for _, m := range ms {
		if _, ok := applied[keyOf(m.Migration)]; !ok {
			out = append(out, m)
		}
	}
	return out
}

// tampering returns what in the system objects something other than the
// initializer changed, judged from the database alone: a system ledger row
// whose checksum differs from envplane's embedded file (those files never
// change in place), a system row missing below one that is present, or the
// meta table present while the ledger does not record the migration that
// creates it (each migration and its ledger row commit together, so only a
// deletion parts them).
func tampering(ctx context.Context, db *sql.DB, d drivers.Dialect, applied map[key]Migration, system []migration) ([]string, error) {
	var out []string
	var top int64
	for k := range applied {
		if k.namespace == NamespaceSystem && k.version > top {
			top = k.version
		}
	}
	for _, m := range system {
		a, ok := applied[keyOf(m.Migration)]
		switch {
		case ok && a.Checksum != m.Checksum:
			out = append(out, "the ledger row of system/"+m.File+" was altered")
		case !ok && m.Version < top:
			out = append(out, "the ledger row of system/"+m.File+" was deleted")
		}
	}
	// The first system migration creates the meta table.
	if len(system) > 0 {
		if _, ok := applied[keyOf(system[0].Migration)]; !ok {
			exists, err := tableExists(ctx, db, d, MetaTable)
			if err != nil {
				return nil, err
			}
			if exists {
				// Another applier may have committed both between the
				// caller's read of the ledger and this look at the table:
				// read the ledger again before calling it deleted.
				now, err := readLedger(ctx, db)
				if err != nil {
					return nil, err
				}
				if _, ok := now[keyOf(system[0].Migration)]; !ok {
					out = append(out, MetaTable+" exists but the ledger does not record system/"+system[0].File+": its rows were deleted")
				}
			}
		}
	}
	return out, nil
}

// findDrift returns the applied migrations whose file now has another
// checksum or is gone, in ledger order.
func findDrift(applied map[key]Migration, system, app []migration) []Drift {
	files := map[key]migration{}
	for _, m := range append(slices.Clone(system), app...) {
		files[keyOf(m.Migration)] = m
	}
	var out []Drift
	for _, a := range applied {
		f, ok := files[keyOf(a)]
		if ok {
			a.File = f.File
		}
		switch {
		case !ok:
			out = append(out, Drift{Applied: a})
		case f.Checksum != a.Checksum:
			out = append(out, Drift{Applied: a, FileChecksum: f.Checksum})
		}
	}
	slices.SortFunc(out, func(x, y Drift) int { return compareMigrations(x.Applied, y.Applied) })
	return out
}

// compareMigrations orders system before app, then by version.
func compareMigrations(a, b Migration) int {
	rank := func(m Migration) int {
		if m.Namespace == NamespaceSystem {
			return 0
		}
		return 1
	}
	if c := cmp.Compare(rank(a), rank(b)); c != 0 {
		return c
	}
	return cmp.Compare(a.Version, b.Version)
}

func sortMigrations(ms []Migration) { slices.SortFunc(ms, compareMigrations) }

func schemaVersion(applied map[key]Migration) int64 {
	var v int64
	for k := range applied {
		if k.namespace == NamespaceApp && k.version > v {
			v = k.version
		}
	}
	return v
}
