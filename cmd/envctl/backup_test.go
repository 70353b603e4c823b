package main

import (
	"errors"
	"strings"
	"testing"

	cp "github.com/envplane/envplane/controlplane"
)

// TestBackupAndRestoreCommands takes a backup with envctl, lists it, and
// restores it into a new environment, against the real server.
func TestBackupAndRestoreCommands(t *testing.T) {
	url, adminToken := realAPI(t)
	admin := session{t, url, adminToken}
	admin.must("org", "create", "acme", "--name", "Acme")
	admin.must("env", "create", "dev", "--org", "acme")

	var b cp.Backup
	admin.json(&b, "backup", "create", "dev", "--org", "acme")
	if b.Status != cp.BackupCompleted || len(b.SHA256) != 64 || b.SizeBytes == 0 {
		t.Fatalf("backup create: %+v", b)
	}
	table := admin.must("backup", "list", "dev", "--org", "acme")
	if !strings.Contains(table, b.ID) || !strings.Contains(table, b.SHA256) {
		t.Fatalf("backup list does not show the backup and its checksum:\n%s", table)
	}

	var v cp.EnvironmentView
	admin.json(&v, "env", "restore", "dev", "--backup", b.ID, "--into", "dev-copy", "--org", "acme")
	if v.Slug != "dev-copy" || v.Status != cp.StatusActive {
		t.Fatalf("env restore: %s is %s (%s)", v.Slug, v.Status, v.Error)
	}

	// --into or --in-place, not neither nor both; a point in time on
	// SQLite is refused by name.
	for _, extra := range [][]string{nil, {"--into", "x", "--in-place"}} {
		argv := append([]string{"env", "restore", "dev", "--backup", b.ID, "--org", "acme"}, extra...)
		if _, _, err := admin.run(argv...); !errors.As(err, new(usageError)) {
			t.Fatalf("restore %v: %v, want a usage error", extra, err)
		}
	}
	admin.json(&v, "env", "restore", "dev", "--backup", b.ID, "--in-place", "--org", "acme")
	if v.Slug != "dev" || v.Status != cp.StatusActive {
		t.Fatalf("env restore --in-place: %s is %s (%s)", v.Slug, v.Status, v.Error)
	}
	_, stderr, err := admin.run("env", "restore", "dev", "--timestamp", "2026-01-02T15:04:05Z", "--into", "x", "--org", "acme")
	if err == nil || !strings.Contains(stderr, "timestamp") {
		t.Fatalf("restore to a point in time on SQLite: %v\n%s", err, stderr)
	}
}
