package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
)

func newBackup(tb testing.TB, q controlplane.Queries, e *controlplane.Environment, d *controlplane.Database, created time.Time, status controlplane.BackupStatus) *controlplane.Backup {
	tb.Helper()
	b := &controlplane.Backup{ID: newID("bk_"), OrgID: e.OrgID, EnvironmentID: e.ID, DatabaseID: d.ID, Driver: "sqlite",
		Trigger: controlplane.BackupManual, Status: status, OperationID: newID("op_"), CreatedAt: created}
	must(tb, q.CreateBackup(tb.Context(), b))
	return b
}

func backupID(b *controlplane.Backup) string { return b.ID }

func testBackups(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a, other := newOrg(t, s, "a"), newOrg(t, s, "b")
	dev := newEnv(t, s, a, "dev")
	db := newDatabase(t, s, dev, "local")
	b := newBackup(t, s, dev, db, at(time.Minute).Add(123*time.Nanosecond), controlplane.BackupRunning)
	same(t, "created at, truncated", us(at(time.Minute).Add(123*time.Nanosecond)).UTC(), b.CreatedAt)

	// What the operation learnt reads back as written.
	done := at(2 * time.Minute)
	b.Status, b.Format, b.SizeBytes, b.SHA256, b.KeyID = controlplane.BackupCompleted, "sqlite3", 4096, "ab12", "local:1"
	b.SchemaVersion, b.Tables, b.CompletedAt = 7, map[string]int64{"items": 3, "_envplane_meta": 1}, &done
	must(t, s.UpdateBackup(ctx, b))
	got, err := s.GetBackup(ctx, a.ID, b.ID)
	must(t, err)
	same(t, "backup", b, got)

	// Another organization's backup is not found, nor an absent one.
	_, err = s.GetBackup(ctx, other.ID, b.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
	missing := *b
	missing.ID = newID("bk_")
	wantCode(t, s.UpdateBackup(ctx, &missing), controlplane.ENOTFOUND)
	wrong := *b
	wrong.ID, wrong.OrgID = newID("bk_"), other.ID
	wantCode(t, s.CreateBackup(ctx, &wrong), controlplane.ENOTFOUND)

	// Lists are newest first, per environment, paged.
	staging := newEnv(t, s, a, "staging")
	newBackup(t, s, staging, newDatabase(t, s, staging, "local"), at(time.Minute), controlplane.BackupCompleted)
	var want []string
	for i := range 5 {
		want = append(want, newBackup(t, s, dev, db, at(time.Duration(i)*time.Hour), controlplane.BackupCompleted).ID)
	}
	want = append(want, b.ID)
	slices.Sort(want)
	slices.Reverse(want)
	got2 := collectPages(t, 2, func(p controlplane.Page) ([]*controlplane.Backup, string, error) {
		return s.ListBackups(ctx, controlplane.BackupFilter{OrgID: a.ID, EnvironmentID: dev.ID}, p)
	}, backupID)
	same(t, "dev's backups", want, got2)
	_, _, err = s.ListBackups(ctx, controlplane.BackupFilter{}, controlplane.Page{})
	wantCode(t, err, controlplane.EINVALID)

	// An in-place restore points the environment at another database.
	db.Name, db.URL, db.Metadata = "env_renamedrenamedrenamedrenam", "file:/x", map[string]string{"k": "v"}
	must(t, s.RenameDatabase(ctx, db))
	gotDB, err := s.GetEnvironmentDatabase(ctx, dev.ID)
	must(t, err)
	same(t, "renamed database", []string{db.Name, db.URL, "v"}, []string{gotDB.Name, gotDB.URL, gotDB.Metadata["k"]})
	stagingDB, err := s.GetEnvironmentDatabase(ctx, staging.ID)
	must(t, err)
	stagingDB.Name = db.Name
	wantCode(t, s.RenameDatabase(ctx, stagingDB), controlplane.ECONFLICT)

	must(t, s.DeleteBackup(ctx, a.ID, b.ID))
	must(t, s.DeleteBackup(ctx, a.ID, b.ID))
	_, err = s.GetBackup(ctx, a.ID, b.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
}

func testBackupsDue(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a := newOrg(t, s, "a")
	recent, old, never, failedOnly := newEnv(t, s, a, "recent"), newEnv(t, s, a, "old"), newEnv(t, s, a, "never"), newEnv(t, s, a, "failed")
	gone := newEnv(t, s, a, "gone")
	newBackup(t, s, recent, newDatabase(t, s, recent, "local"), at(50*time.Minute), controlplane.BackupRunning)
	newBackup(t, s, old, newDatabase(t, s, old, "local"), at(10*time.Minute), controlplane.BackupCompleted)
	newBackup(t, s, failedOnly, newDatabase(t, s, failedOnly, "local"), at(50*time.Minute), controlplane.BackupFailed)
	deleteEnv(t, s, gone)

	local := []string{"local"}
	due, err := s.ListBackupsDue(ctx, controlplane.TypeDevelopment, local, at(30*time.Minute), 10)
	must(t, err)
	// The longest waiting first: never backed up (a failed backup does
	// not count), by id, then the oldest backup.
	same(t, "due", append(sortedIDs(never.ID, failedOnly.ID), old.ID), ids(due, envID))
	due, err = s.ListBackupsDue(ctx, controlplane.TypeProduction, local, at(30*time.Minute), 10)
	must(t, err)
	same(t, "due of another type", []string{}, ids(due, envID))
	due, err = s.ListBackupsDue(ctx, controlplane.TypeDevelopment, []string{"elsewhere"}, at(30*time.Minute), 10)
	must(t, err)
	same(t, "due on another target", []string{}, ids(due, envID))
	due, err = s.ListBackupsDue(ctx, controlplane.TypeDevelopment, nil, at(30*time.Minute), 10)
	must(t, err)
	same(t, "due on no target", []string{}, ids(due, envID))
	due, err = s.ListBackupsDue(ctx, controlplane.TypeDevelopment, local, at(30*time.Minute), 1)
	must(t, err)
	same(t, "due up to the limit", 1, len(due))
}
