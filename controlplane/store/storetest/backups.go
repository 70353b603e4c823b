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
	b.DEKCipher = []byte{0, 1, 2, 0xff}
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

// testBackupsByKey: rewraps list and count the completed backups by the
// key version of their data key, and move one only while its key is still
// the one they read.
func testBackupsByKey(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a, other := newOrg(t, s, "a"), newOrg(t, s, "b")
	var all []*controlplane.Backup
	for _, org := range []*controlplane.Organization{a, other} {
		e := newEnv(t, s, org, "dev")
		db := newDatabase(t, s, e, "local")
		for i, status := range []controlplane.BackupStatus{controlplane.BackupCompleted, controlplane.BackupCompleted, controlplane.BackupFailed, controlplane.BackupRunning} {
			b := newBackup(t, s, e, db, at(time.Duration(i)*time.Minute), status)
			b.KeyID, b.DEKCipher = "local:1", []byte("wrapped-1")
			if i == 1 {
				b.KeyID, b.DEKCipher = "local:2", []byte("wrapped-2")
			}
			must(t, s.UpdateBackup(ctx, b))
			all = append(all, b)
		}
	}
	counts, err := s.CountBackupsByKey(ctx)
	must(t, err)
	same(t, "completed backups by key", map[string]int{"local:1": 2, "local:2": 2}, counts)

	under1, err := s.ListBackupsByKey(ctx, "local:2", 10)
	must(t, err)
	same(t, "completed backups not under local:2", []string{all[0].ID, all[4].ID}, ids(under1, backupID))
	first, err := s.ListBackupsByKey(ctx, "local:2", 1)
	must(t, err)
	same(t, "a batch of one", []string{all[0].ID}, ids(first, backupID))

	moved := *under1[0]
	moved.KeyID, moved.DEKCipher = "local:2", []byte("rewrapped")
	must(t, s.RewrapBackup(ctx, &moved, "local:1"))
	got, err := s.GetBackup(ctx, moved.OrgID, moved.ID)
	must(t, err)
	same(t, "rewrapped key", "local:2", got.KeyID)
	same(t, "rewrapped data key", []byte("rewrapped"), got.DEKCipher)
	same(t, "what the rewrap left", under1[0].SHA256, got.SHA256)
	// Moved meanwhile: ECONFLICT; gone: ENOTFOUND; a failed backup is not moved.
	again := *under1[0]
	again.KeyID = "local:3"
	wantCode(t, s.RewrapBackup(ctx, &again, "local:1"), controlplane.ECONFLICT)
	must(t, s.DeleteBackup(ctx, under1[1].OrgID, under1[1].ID))
	gone := *under1[1]
	gone.KeyID = "local:2"
	wantCode(t, s.RewrapBackup(ctx, &gone, "local:1"), controlplane.ENOTFOUND)
	counts, err = s.CountBackupsByKey(ctx)
	must(t, err)
	same(t, "completed backups by key after the rewrap", map[string]int{"local:2": 3}, counts)
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
