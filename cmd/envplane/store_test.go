package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envplane/envplane/drivers/drivertest"
)

// TestStoreMigrateURL: `envplane migrate` with store_migrate_url (here from
// a file) migrates as that user and grants store_url's user the runtime
// role, after which bootstrap serves as that user alone (adr/0030). On
// SQLite the key is an error, and the serving user cannot migrate an
// empty store.
func TestStoreMigrateURL(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("ENVPLANE_STORE_MIGRATE_URL", "postgres://owner@127.0.0.1:1/envplane")
	if _, _, err := envplane(t, dir, "migrate"); err == nil || !strings.Contains(err.Error(), "store_migrate_url applies only to a PostgreSQL store_url") {
		t.Fatalf("store_migrate_url on SQLite: %v, want an error naming it", err)
	}

	serveURL, migrateURL := drivertest.NewPostgresRuntimeStore(t)
	t.Setenv("ENVPLANE_STORE_URL", serveURL)
	t.Setenv("ENVPLANE_STORE_MIGRATE_URL", "")
	if _, _, err := envplane(t, dir, "migrate"); err == nil || !strings.Contains(err.Error(), "store_migrate_url") {
		t.Fatalf("migrating as the serving user: %v, want an error saying to set store_migrate_url", err)
	}
	file := filepath.Join(dir, "migrate-url")
	if err := os.WriteFile(file, []byte(migrateURL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ENVPLANE_STORE_MIGRATE_URL_FILE", file)
	if _, _, err := envplane(t, dir, "migrate"); err != nil {
		t.Fatalf("migrate as the owner: %v", err)
	}
	t.Setenv("ENVPLANE_STORE_MIGRATE_URL_FILE", "")
	out, _, err := envplane(t, dir, "bootstrap")
	if err != nil || strings.TrimSpace(out) == "" {
		t.Fatalf("bootstrap as the serving user alone: %v, printed %d bytes", err, len(out))
	}
}
