package httpapi_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/dataplane"
)

// envSQL runs SQL on an environment's database through the router.
type envSQL struct {
	h         *harness
	org       string
	sqlDriver string
}

func (e envSQL) open(tb testing.TB, env, scope string) *sql.DB {
	tb.Helper()
	var conn cp.Connection
	e.h.must(tb, http.StatusOK, e.h.admin, "GET", "/v1/organizations/"+e.org+"/environments/"+env+"/connection?scope="+scope, nil).decode(tb, &conn)
	db, err := sql.Open(e.sqlDriver, conn.DSN.Reveal())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func (e envSQL) exec(tb testing.TB, env, scope, q string) {
	tb.Helper()
	if _, err := e.open(tb, env, scope).ExecContext(context.Background(), q); err != nil {
		tb.Fatalf("%s on %s: %v", q, env, err)
	}
}

func (e envSQL) count(tb testing.TB, env string) int {
	tb.Helper()
	var n int
	if err := e.open(tb, env, "readonly").QueryRowContext(context.Background(), "SELECT count(*) FROM notes").Scan(&n); err != nil {
		tb.Fatalf("count notes of %s: %v", env, err)
	}
	return n
}

// backup takes a backup of env and returns it, completed.
func (h *harness) backup(tb testing.TB, org, env string) *cp.Backup {
	tb.Helper()
	var resp cp.BackupResponse
	h.must(tb, http.StatusCreated, h.admin, "POST", "/v1/organizations/"+org+"/environments/"+env+"/backups", nil, "Prefer", "wait=120").decode(tb, &resp)
	if resp.Backup.Status != cp.BackupCompleted || resp.Operation.Status != cp.OpSucceeded {
		tb.Fatalf("backup of %s: %s, operation %s (%s)", env, resp.Backup.Status, resp.Operation.Status, resp.Operation.Error)
	}
	return resp.Backup
}

func (h *harness) backupFile(id string) string {
	return filepath.Join(h.dataDir, "backups", id+".backup")
}

// TestBackupAndRestore backs up an environment on the SQLite, the
// PostgreSQL and the Turso targets and restores the backup into a new environment: the
// stored file is sealed (no plaintext of the database in it) and matches
// its recorded checksum, and the restored environment holds the rows of the
// moment of the backup, names itself, and works with its own credentials.
func TestBackupAndRestore(t *testing.T) {
	ctx := context.Background()
	pg := sharedPostgres(t)
	clk := newClock()
	edge, _ := tursoTarget(t, clk)
	h := newHarness(t, withClock(clk), withTargets(&cp.Target{Name: "pg", Region: "local", Driver: pg}, edge))
	h.org(t, "acme")
	for _, c := range []struct{ target, sqlDriver string }{{"local", "sqlite"}, {"pg", "pgx"}, {"edge", "libsql"}} {
		t.Run(c.target, func(t *testing.T) {
			e := envSQL{h: h, org: "acme", sqlDriver: c.sqlDriver}
			src := c.target + "-src"
			h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": src, "type": "staging", "target": c.target})
			e.exec(t, src, "admin", "CREATE TABLE notes (body TEXT)")
			e.exec(t, src, "readwrite", "INSERT INTO notes VALUES ('plaintext-marker-one'), ('plaintext-marker-two')")

			b := h.backup(t, "acme", src)
			if b.SizeBytes == 0 || len(b.SHA256) != 64 || b.KeyID == "" || b.Tables["notes"] != 2 {
				t.Fatalf("backup: size %d, sha256 %q, key %q, tables %v", b.SizeBytes, b.SHA256, b.KeyID, b.Tables)
			}
			stored, err := os.ReadFile(h.backupFile(b.ID))
			if err != nil {
				t.Fatalf("read backup file: %v", err)
			}
			sum := sha256.Sum256(stored)
			if hex.EncodeToString(sum[:]) != b.SHA256 || int64(len(stored)) != b.SizeBytes {
				t.Fatalf("the stored file's checksum or size is not the recorded one")
			}
			if bytes.Contains(stored, []byte("plaintext-marker")) {
				t.Fatal("the backup file holds the database's rows in plaintext")
			}

			// A row written after the backup is not restored.
			e.exec(t, src, "readwrite", "INSERT INTO notes VALUES ('three')")
			var list cp.List[*cp.Backup]
			h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments/"+src+"/backups", nil).decode(t, &list)
			if len(list.Items) != 1 || list.Items[0].ID != b.ID || list.Items[0].SHA256 != b.SHA256 || list.Items[0].SizeBytes != b.SizeBytes {
				t.Fatalf("backup list: %+v", list.Items)
			}

			into := c.target + "-restored"
			v := h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments/"+src+"/restore",
				map[string]any{"backup_id": b.ID, "into": into}).environment(t)
			if v.Status != cp.StatusActive || v.Target != c.target || v.Type != cp.TypeStaging {
				t.Fatalf("restored environment: %s on %s (%s): %s", v.Status, v.Target, v.Type, v.Error)
			}
			if n := e.count(t, into); n != 2 {
				t.Fatalf("restored environment holds %d notes, want the backup's 2", n)
			}
			if n := e.count(t, src); n != 3 {
				t.Fatalf("the source holds %d notes after the restore, want its own 3", n)
			}
			e.exec(t, into, "readwrite", "INSERT INTO notes VALUES ('four')")
			if n := e.count(t, src); n != 3 {
				t.Fatalf("a write to the restored environment reached the source")
			}
			var owner string
			if err := e.open(t, into, "readonly").QueryRowContext(ctx, "SELECT environment_id FROM "+dataplane.MetaTable).Scan(&owner); err != nil || owner != v.ID {
				t.Fatalf("the restored database names %q as its owner (%v), not its environment %s", owner, err, v.ID)
			}
			ev := h.auditEvent(t, "acme", "backup.completed")
			if ev == nil || ev.Details["sha256"] != b.SHA256 {
				t.Fatalf("no backup.completed audit event with the checksum: %+v", ev)
			}
		})
	}
}

// TestRestoreRefusesBadInput: bodies that name no backup, both, a bad slug
// or a point in time SQLite cannot give are 422 with the field; an
// in-place restore of a protected environment is 409; a backup of another
// environment or organization is 404; a backup file altered or cut short,
// or sealed under a retired key version, is refused with nothing made.
func TestRestoreRefusesBadInput(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	h.org(t, "other")
	h.env(t, h.admin, "acme", "dev", "development")
	h.env(t, h.admin, "acme", "prod", "production")
	h.env(t, h.admin, "acme", "test", "test")
	h.env(t, h.admin, "other", "dev", "development")
	e := envSQL{h: h, org: "acme", sqlDriver: "sqlite"}
	e.exec(t, "dev", "admin", "CREATE TABLE notes (body TEXT)")
	b := h.backup(t, "acme", "dev")
	foreign := h.backup(t, "other", "dev")
	sibling := h.backup(t, "acme", "test")
	restore := func(env string, body map[string]any) response {
		return h.do(t, h.admin, "POST", "/v1/organizations/acme/environments/"+env+"/restore", body)
	}
	envCount := func() int {
		var l cp.List[*cp.EnvironmentView]
		h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments", nil).decode(t, &l)
		return len(l.Items)
	}
	before := envCount()

	wantProblem(t, restore("dev", map[string]any{"into": "x"}), http.StatusUnprocessableEntity, cp.EINVALID, "backup_id")
	wantProblem(t, restore("dev", map[string]any{"backup_id": b.ID, "timestamp": "2026-01-01T00:00:00Z", "into": "x"}), http.StatusUnprocessableEntity, cp.EINVALID, "backup_id")
	wantProblem(t, restore("dev", map[string]any{"backup_id": b.ID, "into": "Not A Slug"}), http.StatusUnprocessableEntity, cp.EINVALID, "into")
	wantProblem(t, restore("dev", map[string]any{"backup_id": b.ID, "into": "x", "type": "galactic"}), http.StatusUnprocessableEntity, cp.EINVALID, "type")
	r := restore("dev", map[string]any{"timestamp": "2026-01-01T00:00:00Z", "into": "x"})
	wantProblem(t, r, http.StatusUnprocessableEntity, cp.EINVALID, "timestamp")
	if !strings.Contains(r.problem(t).Errors[0].Message, "backup_id") {
		t.Errorf("the timestamp refusal does not say what is possible: %s", r.shown())
	}
	wantProblem(t, restore("dev", map[string]any{"timestamp": "2026-01-01T00:00:00Z"}), http.StatusUnprocessableEntity, cp.EINVALID, "into")
	wantProblem(t, restore("dev", map[string]any{"backup_id": b.ID, "type": "test"}), http.StatusUnprocessableEntity, cp.EINVALID, "type")
	wantProblem(t, restore("prod", map[string]any{"backup_id": b.ID}), http.StatusConflict, cp.ECONFLICT, "")
	wantProblem(t, restore("dev", map[string]any{"backup_id": foreign.ID, "into": "x"}), http.StatusNotFound, cp.ENOTFOUND, "")
	wantProblem(t, restore("dev", map[string]any{"backup_id": sibling.ID, "into": "x"}), http.StatusNotFound, cp.ENOTFOUND, "")
	wantProblem(t, restore("dev", map[string]any{"backup_id": "bk_nosuchbackup", "into": "x"}), http.StatusNotFound, cp.ENOTFOUND, "")
	wantProblem(t, restore("dev", map[string]any{"backup_id": b.ID, "into": "dev"}), http.StatusConflict, cp.ECONFLICT, "into")

	// An owner of another organization sees neither its backups nor may take one.
	outsider := h.member(t, "other", "owner@other.example", cp.OrgOwner)
	wantProblem(t, h.do(t, outsider, "POST", "/v1/organizations/acme/environments/dev/backups", nil), http.StatusNotFound, cp.ENOTFOUND, "")
	wantProblem(t, h.do(t, outsider, "GET", "/v1/organizations/acme/environments/dev/backups", nil), http.StatusNotFound, cp.ENOTFOUND, "")

	// Damaged files: refused before anything is made.
	path := h.backupFile(b.ID)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x40
	for name, content := range map[string][]byte{"flipped": flipped, "truncated": good[:len(good)-100]} {
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		r := restore("dev", map[string]any{"backup_id": b.ID, "into": "from-" + name})
		wantProblem(t, r, http.StatusConflict, cp.ECONFLICT, "")
		if !strings.Contains(r.problem(t).Detail, "checksum") {
			t.Errorf("%s file: the refusal does not name the checksum: %s", name, r.shown())
		}
	}
	if n := envCount(); n != before {
		t.Fatalf("refused restores left %d environments, want %d", n, before)
	}
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}

	// A key version retired since the backup, behind envplane's back (a
	// retirement through envplane rewraps backups first, adr/0031): the
	// backup cannot be opened.
	h.retireFirstKeyBehindOurBack(t)
	r = restore("dev", map[string]any{"backup_id": b.ID, "into": "after-retire"})
	wantProblem(t, r, http.StatusConflict, cp.ECONFLICT, "")
	if !strings.Contains(r.problem(t).Detail, b.KeyID) {
		t.Errorf("the refusal does not name the retired key version %s: %s", b.KeyID, r.shown())
	}
	if n := envCount(); n != before {
		t.Fatalf("refused restores left %d environments, want %d", n, before)
	}
	// A backup taken now is sealed under the new version and restores.
	nb := h.backup(t, "acme", "dev")
	if nb.KeyID == b.KeyID {
		t.Fatalf("a new backup is sealed under the retired version %s", nb.KeyID)
	}
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments/dev/restore", map[string]any{"backup_id": nb.ID, "into": "after-retire"})
}

// TestRestoreIsVerified: a restored database whose rows do not match the
// backup's count is never activated; the restore fails and its database
// is dropped.
func TestRestoreIsVerified(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	h.env(t, h.admin, "acme", "dev", "development")
	e := envSQL{h: h, org: "acme", sqlDriver: "sqlite"}
	e.exec(t, "dev", "admin", "CREATE TABLE notes (body TEXT)")
	e.exec(t, "dev", "readwrite", "INSERT INTO notes VALUES ('a')")
	b := h.backup(t, "acme", "dev")
	stored, err := h.svc.Store.GetBackup(cp.WithPlatformScope(context.Background()), b.OrgID, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	stored.Tables["notes"] = 2
	if err := h.svc.Store.UpdateBackup(cp.WithPlatformScope(context.Background()), stored); err != nil {
		t.Fatal(err)
	}
	r := h.do(t, h.admin, "POST", "/v1/organizations/acme/environments/dev/restore", map[string]any{"backup_id": b.ID, "into": "restored"})
	v := r.environment(t)
	if v.Status != cp.StatusFailed || !strings.Contains(v.Error, "notes") {
		t.Fatalf("a restore that does not verify: %d, environment %s (%s)", r.status, v.Status, v.Error)
	}
	if files := h.databaseFiles(t, v.Database.DatabaseName); len(files) != 0 {
		t.Fatalf("the failed restore left %v", files)
	}
}

// TestScheduledBackupsAndRetention: Tick takes a backup of each active
// environment of a scheduled type once per interval, and keeps the
// configured count, the newest ones, files and rows alike.
func TestScheduledBackupsAndRetention(t *testing.T) {
	h := newHarness(t)
	h.svc.BackupSchedule = map[cp.EnvironmentType]time.Duration{cp.TypeProduction: time.Hour}
	h.svc.BackupRetention = map[cp.EnvironmentType]cp.BackupRetention{cp.TypeProduction: {Count: 2}}
	h.org(t, "acme")
	h.env(t, h.admin, "acme", "prod", "production")
	h.env(t, h.admin, "acme", "dev", "development")
	ctx := context.Background()
	backups := func(env string) []*cp.Backup {
		var l cp.List[*cp.Backup]
		h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments/"+env+"/backups", nil).decode(t, &l)
		return l.Items
	}

	var taken []string
	for i := range 3 {
		if r := h.svc.Tick(ctx); r.BackedUp != 1 {
			t.Fatalf("tick %d took %d backups, want 1", i, r.BackedUp)
		}
		if r := h.svc.Tick(ctx); r.BackedUp != 0 {
			t.Fatalf("a tick within the interval took %d backups", r.BackedUp)
		}
		bs := backups("prod")
		if bs[0].Trigger != cp.BackupScheduled || bs[0].Status != cp.BackupCompleted {
			t.Fatalf("scheduled backup: %s, %s", bs[0].Trigger, bs[0].Status)
		}
		taken = append(taken, bs[0].ID)
		h.clock.Advance(time.Hour + time.Minute)
	}
	if n := len(backups("dev")); n != 0 {
		t.Fatalf("an unscheduled type got %d backups", n)
	}
	bs := backups("prod")
	if len(bs) != 2 || bs[0].ID != taken[2] || bs[1].ID != taken[1] {
		t.Fatalf("retention kept %v, want the newest two of %v", ids(bs), taken)
	}
	if fileExists(h.backupFile(taken[0])) || !fileExists(h.backupFile(taken[1])) {
		t.Fatal("the pruned backup's file is still there, or a kept one's is gone")
	}
}

func ids(bs []*cp.Backup) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.ID
	}
	return out
}

// TestTursoPointInTimeRestore restores a Turso environment as it was half
// an hour ago into a new environment (a seed with that timestamp, which the
// Platform double checks against the contract), and refuses a point
// outside the recovery window, naming it.
func TestTursoPointInTimeRestore(t *testing.T) {
	clk := newClock()
	edge, platform := tursoTarget(t, clk)
	h := newHarness(t, withClock(clk), withTargets(edge))
	h.org(t, "acme")
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "edge", "type": "development", "target": "edge"})
	e := envSQL{h: h, org: "acme", sqlDriver: "libsql"}
	e.exec(t, "edge", "admin", "CREATE TABLE notes (body TEXT)")
	e.exec(t, "edge", "readwrite", "INSERT INTO notes VALUES ('a')")
	clk.Advance(time.Hour)
	restore := func(body map[string]any) response {
		return h.do(t, h.admin, "POST", "/v1/organizations/acme/environments/edge/restore", body)
	}

	for name, at := range map[string]time.Time{"before the window": clk.Now().Add(-25 * time.Hour), "in the future": clk.Now().Add(time.Minute)} {
		r := restore(map[string]any{"timestamp": at, "into": "too-far"})
		wantProblem(t, r, http.StatusUnprocessableEntity, cp.EINVALID, "timestamp")
		if !strings.Contains(r.problem(t).Errors[0].Message, "24h") {
			t.Errorf("%s: the refusal does not name the window: %s", name, r.shown())
		}
	}

	at := clk.Now().Add(-30 * time.Minute).Truncate(time.Second)
	v := h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments/edge/restore",
		map[string]any{"timestamp": at, "into": "edge-then"}).environment(t)
	if v.Status != cp.StatusActive || v.Target != "edge" {
		t.Fatalf("point-in-time restore: %s on %s: %s", v.Status, v.Target, v.Error)
	}
	seeded := 0
	for _, name := range platform.Databases() {
		if _, branched, ok := platform.Parent(name); ok {
			seeded++
			if !branched.Equal(at) {
				t.Errorf("database %s was branched at %s, want %s", name, branched, at)
			}
		}
	}
	if seeded != 1 {
		t.Fatalf("%d seeded databases, want the restore's 1", seeded)
	}
	if n := e.count(t, "edge-then"); n != 1 {
		t.Fatalf("restored environment holds %d notes, want 1", n)
	}
	var owner string
	if err := e.open(t, "edge-then", "readonly").QueryRowContext(context.Background(), "SELECT environment_id FROM "+dataplane.MetaTable).Scan(&owner); err != nil || owner != v.ID {
		t.Fatalf("the restored database names %q as its owner (%v), not %s", owner, err, v.ID)
	}
}

// TestRestoreInPlace restores an environment's own backup over it, on the
// SQLite, PostgreSQL and Turso targets (where the database, so its
// hostname, changes as on the others): same environment, the backup's rows, the
// state it had kept first as a pre_restore backup (which restores back),
// its old database dropped and the old credentials refused. A restore
// that fails before the swap leaves the environment on its old database.
func TestRestoreInPlace(t *testing.T) {
	ctx := context.Background()
	pg := sharedPostgres(t)
	clk := newClock()
	edge, platform := tursoTarget(t, clk)
	h := newHarness(t, withClock(clk), withTargets(&cp.Target{Name: "pg", Region: "local", Driver: pg}, edge))
	h.org(t, "acme")
	for _, c := range []struct{ target, sqlDriver string }{{"local", "sqlite"}, {"pg", "pgx"}, {"edge", "libsql"}} {
		t.Run(c.target, func(t *testing.T) {
			e := envSQL{h: h, org: "acme", sqlDriver: c.sqlDriver}
			env := c.target + "-app"
			v := h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": env, "type": "staging", "target": c.target}).environment(t)
			e.exec(t, env, "admin", "CREATE TABLE notes (body TEXT)")
			e.exec(t, env, "readwrite", "INSERT INTO notes VALUES ('a'), ('b')")
			b := h.backup(t, "acme", env)
			e.exec(t, env, "readwrite", "INSERT INTO notes VALUES ('c')")
			var before cp.Connection
			h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments/"+env+"/connection?scope=readonly", nil).decode(t, &before)
			oldName := v.Database.DatabaseName

			// A restore that does not verify fails before the swap.
			stored, err := h.svc.Store.GetBackup(cp.WithPlatformScope(ctx), b.OrgID, b.ID)
			if err != nil {
				t.Fatal(err)
			}
			stored.Tables["notes"] = 5
			if err := h.svc.Store.UpdateBackup(cp.WithPlatformScope(ctx), stored); err != nil {
				t.Fatal(err)
			}
			r := h.must(t, http.StatusAccepted, h.admin, "POST", "/v1/organizations/acme/environments/"+env+"/restore", map[string]any{"backup_id": b.ID})
			h.svc.Wait()
			var failed cp.EnvironmentOperationResponse
			r.decode(t, &failed)
			if op, err := h.svc.Store.GetOperation(cp.WithPlatformScope(ctx), failed.Operation.OrgID, failed.Operation.ID); err != nil || op.Status != cp.OpFailed {
				t.Fatalf("a restore that does not verify: %+v %v", op, err)
			}
			if now := h.envView(t, "acme", env); now.Status != cp.StatusActive || now.Database.DatabaseName != oldName {
				t.Fatalf("after a failed restore the environment is %s on %s, want active on %s", now.Status, now.Database.DatabaseName, oldName)
			}
			if n := e.count(t, env); n != 3 {
				t.Fatalf("after a failed restore the environment holds %d notes, want its own 3", n)
			}
			stored.Tables["notes"] = 2
			if err := h.svc.Store.UpdateBackup(cp.WithPlatformScope(ctx), stored); err != nil {
				t.Fatal(err)
			}

			var done cp.EnvironmentOperationResponse
			h.must(t, http.StatusOK, h.admin, "POST", "/v1/organizations/acme/environments/"+env+"/restore", map[string]any{"backup_id": b.ID}, "Prefer", "wait=120").decode(t, &done)
			if done.Environment.ID != v.ID || done.Environment.Status != cp.StatusActive || done.Environment.Database.DatabaseName == oldName {
				t.Fatalf("in-place restore: %s %s on %s", done.Environment.ID, done.Environment.Status, done.Environment.Database.DatabaseName)
			}
			if n := e.count(t, env); n != 2 {
				t.Fatalf("restored in place, the environment holds %d notes, want the backup's 2", n)
			}
			if works(t, c.sqlDriver, before.DSN) {
				t.Fatal("a credential of the old database still reads")
			}
			if c.target == "local" {
				if files := h.databaseFiles(t, oldName); len(files) != 0 {
					t.Fatalf("the old database is still there: %v", files)
				}
			}
			if c.target == "edge" {
				// Turso names are the generated names with a dash; a restore's
				// staged database is the new name's "-next".
				for _, name := range platform.Databases() {
					if name == strings.ReplaceAll(oldName, "_", "-") || strings.HasSuffix(name, "-next") {
						t.Fatalf("the old or a staged database is still there: %s of %v", name, platform.Databases())
					}
				}
			}
			var list cp.List[*cp.Backup]
			h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments/"+env+"/backups", nil).decode(t, &list)
			var pre *cp.Backup
			for _, x := range list.Items {
				if x.Trigger == cp.BackupPreRestore && x.Status == cp.BackupCompleted && x.Tables["notes"] == 3 {
					pre = x
				}
			}
			if pre == nil {
				t.Fatalf("no completed pre_restore backup of the 3 notes: %+v", list.Items)
			}
			// The state before the restore comes back from its backup.
			h.must(t, http.StatusOK, h.admin, "POST", "/v1/organizations/acme/environments/"+env+"/restore", map[string]any{"backup_id": pre.ID}, "Prefer", "wait=120")
			if n := e.count(t, env); n != 3 {
				t.Fatalf("restored from the pre_restore backup, the environment holds %d notes, want 3", n)
			}
		})
	}
}

// TestInPlaceRestoreConvergesAfterACrash stops the replica running an
// in-place restore at each point between its steps (its goroutine exits,
// as a killed process would, leaving the lease), and lets another
// replica's reconciler take the operation once the lease ran out: every
// time the environment ends on the backup's state, with working
// credentials, its old database dropped.
func TestInPlaceRestoreConvergesAfterACrash(t *testing.T) {
	ctx := context.Background()
	for _, point := range []string{
		"restore.backup_current.after",
		"restore.restore_database.after",
		"restore.verify_restore.after",
		"restore.swap_database.after",
		"restore.issue_credentials_restored.before",
		"restore.drop_old_database.before",
	} {
		t.Run(point, func(t *testing.T) {
			h := newHarness(t)
			h.svc.Lease, h.svc.LeaseRenewal = 2*time.Second, 500*time.Millisecond
			h.org(t, "acme")
			v := h.env(t, h.admin, "acme", "app", "staging")
			e := envSQL{h: h, org: "acme", sqlDriver: "sqlite"}
			e.exec(t, "app", "admin", "CREATE TABLE notes (body TEXT)")
			e.exec(t, "app", "readwrite", "INSERT INTO notes VALUES ('a')")
			b := h.backup(t, "acme", "app")
			e.exec(t, "app", "readwrite", "INSERT INTO notes VALUES ('b')")

			h.svc.CrashPoint = func(p string) {
				if p == point {
					runtime.Goexit()
				}
			}
			h.must(t, http.StatusAccepted, h.admin, "POST", "/v1/organizations/acme/environments/app/restore", map[string]any{"backup_id": b.ID}, "Prefer", "wait=0")
			h.svc.Wait()
			h.svc.Shutdown()
			h.clock.Advance(time.Minute)

			targets := make([]*cp.Target, 0, len(h.svc.Targets))
			for _, tg := range h.svc.Targets {
				targets = append(targets, tg)
			}
			other := cp.New(h.svc.Store, h.svc.Keyring, targets, h.svc.DefaultTarget)
			other.Now, other.Schema, other.Backups, other.LeaseOwner = h.clock.Now, h.svc.Schema, h.svc.Backups, "replica-2"
			other.Sleep = func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
			if n, err := other.Reconcile(ctx); err != nil || n != 1 {
				t.Fatalf("the other replica resumed %d operations (err %v), want the restore", n, err)
			}
			other.Wait()
			now := h.envView(t, "acme", "app")
			if now.Status != cp.StatusActive || now.Database.DatabaseName == v.Database.DatabaseName {
				ops, _, _ := h.svc.Store.ListOperations(cp.WithPlatformScope(ctx), cp.OperationFilter{OrgID: v.OrgID, Kind: cp.OpRestore}, cp.Page{})
				for _, op := range ops {
					t.Logf("operation %s: %s at %s: %s", op.ID, op.Status, op.Step, op.Error)
				}
				t.Fatalf("after the crash the environment is %s on %s", now.Status, now.Database.DatabaseName)
			}
			if n := e.count(t, "app"); n != 1 {
				t.Fatalf("after the crash the environment holds %d notes, want the backup's 1", n)
			}
			if files := h.databaseFiles(t, v.Database.DatabaseName); len(files) != 0 {
				t.Fatalf("the old database is still there: %v", files)
			}
		})
	}
}
