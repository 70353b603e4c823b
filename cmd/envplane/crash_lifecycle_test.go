package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/dataplane"
	"github.com/envplane/envplane/dataplane/router/sqlopen"
)

// The lifecycle's crash cases (adr/0016): a restore into a new environment
// and in place, a reset, and a rollout's migration, killed before and
// after each of their steps. The environment's database is checked after
// the restart: it holds the old state or the new one, never a mix (row
// count of a test table, owner row, schema version and ledger), its
// credentials open it, and the operation ends succeeded (new state) or
// failed (old state).

// lifecycleSteps are the steps of each lifecycle operation, in order.
var lifecycleSteps = []struct {
	name  string
	kind  cp.OperationKind
	steps []string
}{
	{"restore_new", cp.OpRestore, []string{"create_database", "issue_credentials", "initialize_schema", "activate"}},
	{"restore_in_place", cp.OpRestore, []string{"backup_current", "restore_database", "verify_restore", "swap_database", "issue_credentials_restored", "drop_old_database"}},
	{"reset", cp.OpReset, []string{"stage_reset", "initialize_staged", "swap_reset", "drop_old_contents"}},
	{"migrate", cp.OpMigrate, []string{"migrate"}},
}

// Row counts of the marks table: what an environment holds before the
// operation (old) and what the backup or the reset source holds (new).
const (
	oldMarks = 3
	newMarks = 5
)

// runLifecycleCrashes runs the lifecycle's crash cases on one driver's
// target, one kill at a time, with app migrations in a directory of its own
// (a rollout case adds the next one).
func runLifecycleCrashes(t *testing.T, bin string, tg crashTarget) {
	apps := t.TempDir()
	writeMigration := func(version int) {
		sql := fmt.Sprintf("CREATE TABLE gadgets%d (id INTEGER PRIMARY KEY);", version)
		if err := os.WriteFile(filepath.Join(apps, fmt.Sprintf("%04d_gadgets.sql", version)), []byte(sql), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeMigration(1)
	r := startCrashRun(t, bin, tg, "app_migrations: "+apps+"\n")
	started := time.Now()

	// src holds the new state: the reset source and the backup restored
	// into new environments. rip is restored in place from a backup of
	// its own new state; rst is reset from src.
	r.create("src")
	r.fillMarks("src", newMarks)
	srcBackup := r.backup("src")
	r.create("rip")
	r.fillMarks("rip", newMarks)
	ripBackup := r.backup("rip")
	r.trimMarks("rip")
	r.create("rst")
	r.fillMarks("rst", oldMarks)
	version := 1

	// request sends the request of a case, on slug; it may get no answer.
	request := func(name, slug string) {
		switch name {
		case "restore_new":
			r.send("POST", "/v1/organizations/acme/environments/src/restore", map[string]any{"backup_id": srcBackup.ID, "into": slug})
		case "restore_in_place":
			r.send("POST", "/v1/organizations/acme/environments/rip/restore", map[string]any{"backup_id": ripBackup.ID})
		case "reset":
			r.send("POST", "/v1/organizations/acme/environments/rst/reset", map[string]any{"mode": "full", "from_environment": "src"})
		case "migrate":
			// Parallelism 1: the kill finds one migration under way.
			body := map[string]any{"version": version, "parallelism": 1, "waves": [][]string{{"development"}}}
			if status, data, err := r.srv.do(r.token, "POST", "/v1/organizations/acme/rollouts", body); err == nil && status != http.StatusCreated {
				t.Fatalf("create rollout: %d %s, want 201 or no answer", status, data)
			}
		}
	}
	kills := 0
	kill := func(point, name string, kind cp.OperationKind) {
		slug := map[string]string{"restore_in_place": "rip", "reset": "rst", "migrate": "src"}[name]
		switch name {
		case "restore_new":
			slug = strings.ReplaceAll(fmt.Sprintf("rnew-%d-%s", kills, point), "_", "-")
			slug = strings.ReplaceAll(slug, ".", "-")
		case "migrate":
			version++
			writeMigration(version)
		}
		before := r.lifecycleState(slug)
		r.srv.stop(t)
		r.srv = r.start(point)
		request(name, slug)
		r.srv.waitKilled(t, point)
		r.srv = r.start("")
		kills++
		done := r.awaitOperation(kind, slug)
		r.checkLifecycle(point, name, slug, done, before, version)
	}
	for _, op := range lifecycleSteps {
		for _, step := range op.steps {
			for _, phase := range []string{"before", "after"} {
				kill(fmt.Sprintf("%s.%s.%s", op.kind, step, phase), op.name, op.kind)
			}
		}
	}
	for _, point := range tg.resetPoints {
		kill(point, "reset", cp.OpReset)
	}
	r.srv.stop(t)
	r.srv = nil
	r.checkOrphans("at the end")
	t.Logf("%s: %d kills in restores, resets and rollout migrations, each converged to the old state or the new one; %s", tg.name, kills, time.Since(started).Round(time.Second))
}

// openEnv opens the environment's database with the DSN of a credential
// the control plane hands out for scope.
func (r *crashRun) openEnv(slug, scope string) *sql.DB {
	r.t.Helper()
	var conn cp.Connection
	r.call(http.StatusOK, "GET", "/v1/organizations/acme/environments/"+slug+"/connection?scope="+scope, nil, &conn)
	db, err := sqlopen.Open(conn.Driver, conn.DSN)
	if err != nil {
		r.t.Fatalf("open %s (%s): %v", slug, scope, err)
	}
	return db
}

// exec runs statements on the environment's database with scope.
func (r *crashRun) exec(slug, scope string, stmts ...string) {
	r.t.Helper()
	db := r.openEnv(slug, scope)
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.ExecContext(context.Background(), s); err != nil {
			r.t.Fatalf("%s on %s: %v", s, slug, err)
		}
	}
}

// fillMarks makes the marks table of the environment hold n rows.
func (r *crashRun) fillMarks(slug string, n int) {
	r.t.Helper()
	r.exec(slug, "admin", "CREATE TABLE marks (n INTEGER NOT NULL)")
	for i := range n {
		r.exec(slug, "readwrite", fmt.Sprintf("INSERT INTO marks (n) VALUES (%d)", i))
	}
}

// trimMarks takes the environment from the new state back to the old one.
func (r *crashRun) trimMarks(slug string) {
	r.t.Helper()
	r.exec(slug, "readwrite", fmt.Sprintf("DELETE FROM marks WHERE n >= %d", oldMarks))
}

// backup takes a backup of the environment and returns it, completed.
func (r *crashRun) backup(slug string) *cp.Backup {
	r.t.Helper()
	var resp cp.BackupResponse
	status, data, err := r.srv.do(r.token, "POST", "/v1/organizations/acme/environments/"+slug+"/backups", nil, "Prefer", "wait=120")
	if err != nil || status != http.StatusCreated {
		r.t.Fatalf("backup of %s: %d %s, %v", slug, status, data, err)
	}
	if err := json.Unmarshal(data, &resp); err != nil || resp.Backup.Status != cp.BackupCompleted {
		r.t.Fatalf("backup of %s: %v, %s", slug, err, data)
	}
	return resp.Backup
}

// lifeState is what the lifecycle cases read of an environment.
type lifeState struct {
	exists   bool
	id       string
	database string
	marks    int
	owner    string
	version  int64
}

// lifecycleState reads the environment as the crash cases check it: its
// marks, its owner row, its schema as the control plane sees it (opened
// with its admin credential: no drift, nothing tampered) and as the
// database's ledger records it. It fails the test when the database is
// not whole.
func (r *crashRun) lifecycleState(slug string) lifeState {
	r.t.Helper()
	v := r.environment(slug)
	if v == nil {
		return lifeState{}
	}
	st := lifeState{exists: true, id: v.ID}
	if v.Status != cp.StatusActive {
		return st
	}
	st.database = v.Database.DatabaseName
	var schema cp.SchemaStatus
	r.call(http.StatusOK, "GET", "/v1/organizations/acme/environments/"+url.PathEscape(slug)+"/schema", nil, &schema)
	if len(schema.Drift) > 0 || len(schema.Tampered) > 0 || len(schema.Pending) > 1 {
		r.t.Errorf("%s: schema drift %v, tampered %v, pending %v", slug, schema.Drift, schema.Tampered, schema.Pending)
	}
	st.version = schema.SchemaVersion
	ctx := context.Background()
	for _, scope := range []string{"readonly", "readwrite", "admin"} {
		db := r.openEnv(slug, scope)
		err := db.QueryRowContext(ctx, "SELECT count(*) FROM marks").Scan(&st.marks)
		if err == nil && scope == "admin" {
			// The system tables are the admin's alone on PostgreSQL.
			err = db.QueryRowContext(ctx, "SELECT environment_id FROM "+dataplane.MetaTable).Scan(&st.owner)
		}
		db.Close()
		if err != nil {
			r.t.Fatalf("%s: read with its %s credential: %v", slug, scope, err)
		}
	}
	if st.owner != v.ID {
		r.t.Errorf("%s: the database names %q as its owner, not its environment %s", slug, st.owner, v.ID)
	}
	return st
}

// awaitOperation waits until the environment's newest operation of kind
// has ended, and returns it.
func (r *crashRun) awaitOperation(kind cp.OperationKind, slug string) *cp.Operation {
	r.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var page struct {
			Items []*cp.Operation `json:"items"`
		}
		r.call(http.StatusOK, "GET", "/v1/organizations/acme/operations?kind="+string(kind)+"&environment="+url.QueryEscape(slug)+"&limit=1", nil, &page)
		if len(page.Items) == 1 && page.Items[0].Status.Done() {
			return page.Items[0]
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: the %s operation did not end after the restart: %+v", slug, kind, page.Items)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkLifecycle checks the environment after the operation ended: a
// succeeded one left the new state, a failed one the old one, and the
// database is whole either way. It moves the environment back to the old
// state for the next case.
func (r *crashRun) checkLifecycle(point, name, slug string, op *cp.Operation, before lifeState, version int) {
	r.t.Helper()
	if op.Status == cp.OpFailed && op.Error == "" {
		r.t.Errorf("%s: operation failed without an error", point)
	}
	after := r.lifecycleState(slug)
	succeeded := op.Status == cp.OpSucceeded
	r.t.Logf("%s: operation %s; marks %d → %d, schema version %d → %d", point, op.Status, before.marks, after.marks, before.version, after.version)
	switch name {
	case "restore_new":
		switch {
		case succeeded && after.marks != newMarks:
			r.t.Errorf("%s: the restored environment holds %d marks, want the backup's %d", point, after.marks, newMarks)
		case succeeded && after.version != 1:
			r.t.Errorf("%s: the restored environment is at schema version %d, want the backup's 1", point, after.version)
		case !succeeded && after.database != "":
			r.t.Errorf("%s: a failed restore left the environment active on %s", point, after.database)
		}
		if after.exists {
			r.envID(slug) // remembers its database, checked for orphans
		}
	case "restore_in_place", "reset":
		want := oldMarks
		if succeeded {
			want = newMarks
		}
		switch {
		case after.marks != want:
			r.t.Errorf("%s: the environment holds %d marks after a %s %s, want %d (old %d, new %d)", point, after.marks, op.Status, name, want, oldMarks, newMarks)
		case after.id != before.id:
			r.t.Errorf("%s: the environment's id changed", point)
		case after.version != before.version:
			r.t.Errorf("%s: schema version %d, was %d", point, after.version, before.version)
		}
		if name == "restore_in_place" && succeeded == (after.database == before.database) {
			r.t.Errorf("%s: %s restore in place, database %s → %s", point, op.Status, before.database, after.database)
		}
		// Whatever database the environment had is checked as gone
		// once it is replaced.
		r.databases[fmt.Sprintf("%s@%d", slug, r.runs)] = after.database
		if after.marks == newMarks {
			r.trimMarks(slug)
		}
	case "migrate":
		want := before.version
		if succeeded {
			want = int64(version)
		}
		if after.version != want || after.marks != before.marks {
			r.t.Errorf("%s: %s migration left schema version %d and %d marks, want %d and %d", point, op.Status, after.version, after.marks, want, before.marks)
		}
		r.awaitRollout()
	}
	r.checkOrphans(point)
}

// awaitRollout waits until the organization's newest rollout has finished.
func (r *crashRun) awaitRollout() {
	r.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var page struct {
			Items []*cp.Rollout `json:"items"`
		}
		r.call(http.StatusOK, "GET", "/v1/organizations/acme/rollouts?limit=1", nil, &page)
		if len(page.Items) == 1 && page.Items[0].FinishedAt != nil {
			if page.Items[0].Status != cp.RolloutSucceeded {
				r.t.Errorf("rollout %s: %s", page.Items[0].Status, page.Items[0].Error)
			}
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("the rollout did not finish after the restart: %+v", page.Items)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
