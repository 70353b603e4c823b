// Package migrations embeds envplane's versioned SQL: the control plane's
// schema for each store engine, and the system migrations that the schema
// initializer applies to every data-plane database before the app's own.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed controlplane/sqlite/*.sql controlplane/postgres/*.sql dataplane/*.sql
var files embed.FS

// ControlPlaneSQLite returns the control-plane migrations for the SQLite store.
func ControlPlaneSQLite() fs.FS { return sub("controlplane/sqlite") }

// ControlPlanePostgres returns the control-plane migrations for the PostgreSQL store.
func ControlPlanePostgres() fs.FS { return sub("controlplane/postgres") }

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
