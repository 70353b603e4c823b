// Package dataplane runs on the databases that environments own: the schema
// initializer, which applies envplane's system migrations and then an app's own
// to every data-plane database, each exactly once, in order, recorded with a
// checksum in the database's own ledger.
//
// The package never imports the control plane; it talks to a *sql.DB that a
// driver opened and learns from drivers.Dialect how to talk to it.
package dataplane

import (
	"fmt"
	"strings"
	"time"
)

// Namespaces of the ledger: envplane's own migrations, then the app's.
const (
	NamespaceSystem = "system"
	NamespaceApp    = "app"
)

// LedgerTable is the table, in every data-plane database, that records which
// migrations ran. Versions live here, never in PRAGMA user_version (read-only
// on Turso, absent on PostgreSQL).
const LedgerTable = "_envplane_migrations"

// MetaTable holds the one row naming the environment and organization that own
// the database, so a database can prove whose it is. System migration 0001
// creates it; Apply fills it.
const MetaTable = "_envplane_meta"

// Owner names the environment and organization a database belongs to.
type Owner struct {
	EnvironmentID string
	OrgID         string
}

// Migration is one migration, as a file or as a ledger row.
type Migration struct {
	// Namespace is NamespaceSystem or NamespaceApp.
	Namespace string
	// Version is the number the file name starts with.
	Version int64
	// Name is the rest of the file name, without the version and ".sql".
	Name string
	// File is the file name ("0002_add_users.sql").
	File string
	// Checksum is the hex SHA-256 of the file's bytes (for a ledger row: of
	// the bytes that were applied).
	Checksum string
	// AppliedAt is when the migration was applied; zero when pending.
	AppliedAt time.Time
}

// Drift is an applied migration whose file no longer matches the ledger.
type Drift struct {
	// Applied is the ledger's record.
	Applied Migration
	// FileChecksum is the checksum of the file now; empty when the file is gone.
	FileChecksum string
}

// Result reports what Apply did.
type Result struct {
	// Applied lists the migrations this call applied, in order.
	Applied []Migration
	// SchemaVersion is the highest applied app migration version, 0 if none.
	SchemaVersion int64
}

// Status reports a database's migrations without changing anything.
type Status struct {
	// Applied lists the ledger's rows, system first, then app, by version.
	Applied []Migration
	// Pending lists migrations whose files exist and that have not run.
	Pending []Migration
	// Drift lists applied migrations whose file changed or disappeared.
	Drift []Drift
	// SchemaVersion is the highest applied app migration version, 0 if none.
	SchemaVersion int64
	// Owner is what the database's meta row says; zero before the first Apply.
	Owner Owner
	// Tampered lists what in the system objects was changed behind the
	// initializer's back (see TamperError); empty when nothing was.
	Tampered []string
}

// DriftError is returned by Apply when an applied migration's file changed
// (or vanished): nothing was applied. Find it with errors.As.
type DriftError struct {
	Drift []Drift
}

// Error lists the drifted migrations by file.
func (e *DriftError) Error() string {
	files := make([]string, len(e.Drift))
	for i, d := range e.Drift {
		files[i] = d.Applied.Namespace + "/" + d.Applied.File
		if d.FileChecksum == "" {
			files[i] += " (file missing)"
		}
	}
	return "schema drift: applied migrations changed: " + strings.Join(files, ", ")
}

// MigrationError is returned by Apply when one migration fails; it names the
// file. The migration left no ledger row and, on engines with transactional
// DDL, no effects. Find it with errors.As; Unwrap gives the engine's error.
type MigrationError struct {
	Migration Migration
	Err       error
}

// Error names the migration file and the engine's error.
func (e *MigrationError) Error() string {
	return fmt.Sprintf("migration %s/%s failed: %v", e.Migration.Namespace, e.Migration.File, e.Err)
}

// Unwrap returns the engine's error.
func (e *MigrationError) Unwrap() error { return e.Err }

// TamperError is returned when a database's system objects were changed by
// something other than the initializer: ledger rows deleted or altered, the
// meta row removed. Engines that cannot refuse an app's credential this
// (SQLite, libSQL) are checked on every run; on PostgreSQL apps hold no
// privilege on them. Nothing was applied. Find it with errors.As.
type TamperError struct {
	// Problems says what was found, one finding each, naming system
	// objects and migration files only.
	Problems []string
}

// Error lists the findings.
func (e *TamperError) Error() string {
	return "system objects tampered with: " + strings.Join(e.Problems, "; ")
}

// Expected is what the control plane recorded of a database after the last
// Apply that succeeded on it, kept where no credential of the database
// reaches, so that Verify can tell tampering from a database never
// initialized.
type Expected struct {
	// Owner is the environment and organization the meta row must name.
	Owner Owner
	// SchemaVersion is the app schema version that Apply reported; the
	// ledger can only have grown since.
	SchemaVersion int64
}

// OwnerMismatchError is returned by Apply when the database belongs to
// another environment or organization than the one asked for: nothing was
// applied. Find it with errors.As.
type OwnerMismatchError struct {
	Want, Got Owner
}

// Error names both owners (ids, not secrets).
func (e *OwnerMismatchError) Error() string {
	return fmt.Sprintf("database belongs to environment %s of organization %s, not environment %s of organization %s",
		e.Got.EnvironmentID, e.Got.OrgID, e.Want.EnvironmentID, e.Want.OrgID)
}
