// Package migrations embeds envplane's versioned SQL: the control plane's
// schema for each store engine, and the system migrations that the schema
// initializer applies to every data-plane database before the app's own.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed controlplane/sqlite/*.sql controlplane/postgres/*.sql controlplane/roles/postgres.sql dataplane/*.sql
var files embed.FS

// ControlPlaneSQLite returns the control-plane migrations for the SQLite store.
func ControlPlaneSQLite() fs.FS { return sub("controlplane/sqlite") }

// ControlPlanePostgres returns the control-plane migrations for the PostgreSQL store.
func ControlPlanePostgres() fs.FS { return sub("controlplane/postgres") }

// ControlPlanePostgresRoles returns the SQL that grants a PostgreSQL store's
// runtime role its rows, applied by the migrating user after the migrations
// when the store migrates as one user and serves as another (adr/0030).
func ControlPlanePostgresRoles() string {
	b, err := files.ReadFile("controlplane/roles/postgres.sql")
	if err != nil {
		// The file is embedded above; reading it cannot fail.
		panic(err)
	}
	return string(b)
}

// DataPlane returns the system migrations applied to every environment database.
func DataPlane() fs.FS { return sub("dataplane") }

func sub(dir string) fs.FS {
	f, err := fs.Sub(files, dir)
	if err != nil {
		// fs.Sub fails only on an invalid path, which these constants are not.
		panic(err)
	}
	return f
}
