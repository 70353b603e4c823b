package httpapi_test

import (
	"context"
	"database/sql"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/drivertest"
	pgdriver "github.com/envplane/envplane/drivers/postgres"
)

// appMigrations gives the harness's schema initializer an app migration
// directory holding files, and returns a function that adds more later (a
// new release of the app).
func appMigrations(t *testing.T, h *harness, files map[string]string) func(name, sql string) {
	t.Helper()
	dir := t.TempDir()
	add := func(name, sql string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(sql), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for name, sql := range files {
		add(name, sql)
	}
	h.svc.Schema.App = os.DirFS(dir)
	return add
}

// awaitRollout polls a rollout, taking up due rollouts as the background
// pass does, until done says it is where the test wants it.
func (h *harness) awaitRollout(t *testing.T, path string, done func(cp.RolloutView) bool) cp.RolloutView {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var v cp.RolloutView
		h.must(t, http.StatusOK, h.admin, "GET", path, nil).decode(t, &v)
		if done(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("rollout did not get there: %+v %+v", *v.Rollout, v.Counts)
		}
		if _, err := h.svc.AdvanceRollouts(context.Background()); err != nil {
			t.Fatalf("advance rollouts: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func finished(v cp.RolloutView) bool { return v.Rollout.FinishedAt != nil }

// items maps a rollout's environments by slug.
func items(v cp.RolloutView) map[string]*cp.RolloutItem {
	m := map[string]*cp.RolloutItem{}
	for _, it := range v.Environments {
		m[it.Environment] = it
	}
	return m
}

// schemaVersion reads an environment's schema version from its database.
func (h *harness) schemaVersion(t *testing.T, org, env string) int64 {
	t.Helper()
	var st cp.SchemaStatus
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/"+org+"/environments/"+env+"/schema", nil).decode(t, &st)
	return st.SchemaVersion
}

// execIn runs SQL in an environment's database with its readwrite
// credential, as an application could.
func (h *harness) execIn(t *testing.T, org, env, sqlDriver, stmt string) {
	t.Helper()
	if err := h.execAs(t, org, env, "readwrite", sqlDriver, stmt); err != nil {
		t.Fatalf("%s in %s: %v", stmt, env, err)
	}
}

// execAs runs SQL in an environment's database with the scope's credential.
func (h *harness) execAs(t *testing.T, org, env, scope, sqlDriver, stmt string) error {
	t.Helper()
	var conn cp.Connection
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/"+org+"/environments/"+env+"/connection?scope="+scope, nil).decode(t, &conn)
	db, err := sql.Open(sqlDriver, conn.DSN.Reveal())
	if err != nil {
		t.Fatalf("open %s: %v", env, err)
	}
	defer db.Close()
	_, err = db.Exec(stmt)
	return err
}

// TestRolloutWavesHaltAndContinue: on SQLite files, a rollout migrates
// environments in waves by type. One environment's migration fails (the
// table it creates already exists there): with halt, the waves after it are
// skipped and left at their version; the failed environment is left as it
// was. Environments whose ledger drifted or whose system tables were
// tampered with are skipped and reported, never migrated. With continue, the
// next rollout reports the failure and migrates the rest.
func TestRolloutWavesHaltAndContinue(t *testing.T) {
	h := newHarness(t)
	add := appMigrations(t, h, map[string]string{"0001_widgets.sql": "CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"})
	h.org(t, "acme")
	for _, e := range []struct{ slug, typ string }{
		{"dev", "development"}, {"drifted", "development"}, {"tampered", "development"},
		{"qa", "test"}, {"broken", "test"}, {"stage", "staging"}, {"prod", "production"},
	} {
		h.env(t, h.admin, "acme", e.slug, e.typ)
	}
	add("0002_gadgets.sql", "CREATE TABLE gadgets (id INTEGER PRIMARY KEY, label TEXT NOT NULL DEFAULT '');")
	h.execIn(t, "acme", "broken", "sqlite", "CREATE TABLE gadgets (id INTEGER PRIMARY KEY, size INTEGER)")
	h.execIn(t, "acme", "drifted", "sqlite", "UPDATE _envplane_migrations SET checksum = 'edited' WHERE namespace = 'app'")
	h.execIn(t, "acme", "tampered", "sqlite", "DELETE FROM _envplane_migrations WHERE namespace = 'system'")

	var v cp.RolloutView
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/rollouts", map[string]any{"version": 2, "parallelism": 2}).decode(t, &v)
	if v.Rollout.OnError != cp.OnErrorHalt || v.Counts.Total != 8 || v.Rollout.Status != cp.RolloutRunning {
		t.Fatalf("created: %+v %+v", *v.Rollout, v.Counts)
	}
	// Waves: development and default first, then test, staging, production.
	phase := map[string]int{}
	for _, it := range v.Environments {
		phase[it.Environment] = it.Phase
	}
	if phase["dev"] != 1 || phase["qa"] != 2 || phase["stage"] != 3 || phase["prod"] != 4 {
		t.Fatalf("phases: %v", phase)
	}
	path := "/v1/organizations/acme/rollouts/" + v.Rollout.ID
	v = h.awaitRollout(t, path, finished)
	got := items(v)
	if v.Rollout.Status != cp.RolloutFailed || !strings.Contains(v.Rollout.Error, "broken") {
		t.Fatalf("halted rollout: %+v", *v.Rollout)
	}
	for _, slug := range []string{"dev", "default", "qa"} {
		if it := got[slug]; it.Status != cp.ItemSucceeded || it.SchemaVersion != 2 || h.schemaVersion(t, "acme", slug) != 2 {
			t.Errorf("%s: %+v, want migrated to 2", slug, it)
		}
	}
	if it := got["drifted"]; it.Status != cp.ItemSkipped || !strings.Contains(it.Reason, "0001") {
		t.Errorf("drifted: %+v, want skipped naming the drifted migration", it)
	}
	if it := got["tampered"]; it.Status != cp.ItemSkipped || !strings.Contains(it.Reason, "changed outside envplane") {
		t.Errorf("tampered: %+v, want skipped as tampered", it)
	}
	if it := got["broken"]; it.Status != cp.ItemFailed || !strings.Contains(it.Reason, "0002_gadgets.sql") || it.OperationID == "" {
		t.Errorf("broken: %+v, want failed naming the file", it)
	}
	for _, slug := range []string{"stage", "prod"} {
		if it := got[slug]; it.Status != cp.ItemSkipped || !strings.Contains(it.Reason, "halted") || h.schemaVersion(t, "acme", slug) != 1 {
			t.Errorf("%s: %+v, want skipped by the halt and still at 1", slug, it)
		}
	}
	if h.schemaVersion(t, "acme", "broken") != 1 || h.schemaVersion(t, "acme", "drifted") != 1 {
		t.Error("the failed or drifted environment is not left at version 1")
	}
	// The failed environment's own table is as it was.
	h.execIn(t, "acme", "broken", "sqlite", "INSERT INTO gadgets (id, size) VALUES (1, 2)")
	var op cp.Operation
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/operations/"+got["broken"].OperationID, nil).decode(t, &op)
	if op.Kind != cp.OpMigrate || op.Status != cp.OpFailed {
		t.Errorf("the failed environment's operation: %+v", op)
	}

	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/rollouts", map[string]any{"on_error": "continue"}).decode(t, &v)
	if v.Rollout.Version != 2 {
		t.Fatalf("a rollout without version goes to the newest: %d", v.Rollout.Version)
	}
	v = h.awaitRollout(t, "/v1/organizations/acme/rollouts/"+v.Rollout.ID, finished)
	got = items(v)
	if v.Rollout.Status != cp.RolloutFailed || v.Counts.Failed != 1 || got["broken"].Status != cp.ItemFailed {
		t.Fatalf("continue: %+v %+v", *v.Rollout, v.Counts)
	}
	for _, slug := range []string{"stage", "prod"} {
		if it := got[slug]; it.Status != cp.ItemSucceeded || h.schemaVersion(t, "acme", slug) != 2 {
			t.Errorf("%s after continue: %+v", slug, it)
		}
	}
	var list cp.List[*cp.Rollout]
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/rollouts", nil).decode(t, &list)
	if len(list.Items) != 2 || list.Items[0].ID != v.Rollout.ID {
		t.Fatalf("list: %+v", list.Items)
	}
}

// TestRolloutCanaryPauseResumeCancel: the canary migrates alone; a pause
// between phases keeps the rollout unfinished, so a second rollout in the
// organization is 409; pause and resume are honoured, and cancelling skips
// what was not started.
func TestRolloutCanaryPauseResumeCancel(t *testing.T) {
	h := newHarness(t)
	add := appMigrations(t, h, map[string]string{"0001_widgets.sql": "CREATE TABLE widgets (id INTEGER PRIMARY KEY);"})
	h.org(t, "acme")
	for _, slug := range []string{"a", "b", "c"} {
		h.env(t, h.admin, "acme", slug, "development")
	}
	add("0002_more.sql", "CREATE TABLE more (id INTEGER PRIMARY KEY);")
	add("0003_most.sql", "CREATE TABLE most (id INTEGER PRIMARY KEY);")

	var v cp.RolloutView
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/rollouts",
		map[string]any{"version": 2, "canary": 1, "pause_seconds": 3600, "waves": [][]string{{"development"}}}).decode(t, &v)
	if v.Counts.Total != 3 || v.Environments[0].Phase != 0 || v.Environments[1].Phase != 1 {
		t.Fatalf("canary: %+v", v.Environments)
	}
	path := "/v1/organizations/acme/rollouts/" + v.Rollout.ID
	v = h.awaitRollout(t, path, func(v cp.RolloutView) bool { return v.Counts.Succeeded == 1 && v.Rollout.Phase == 1 })
	if v.Environments[0].Status != cp.ItemSucceeded || v.Counts.Pending != 2 || v.Rollout.FinishedAt != nil {
		t.Fatalf("after the canary: %+v", v.Environments)
	}
	wantProblem(t, h.do(t, h.admin, "POST", "/v1/organizations/acme/rollouts", map[string]any{"version": 2}), http.StatusConflict, cp.ECONFLICT, "")
	wantProblem(t, h.do(t, h.admin, "POST", "/v1/rollouts", map[string]any{"version": 2}), http.StatusConflict, cp.ECONFLICT, "")

	h.must(t, http.StatusOK, h.admin, "POST", path+"/pause", nil).decode(t, &v)
	if v.Rollout.Status != cp.RolloutPaused {
		t.Fatalf("pause: %+v", *v.Rollout)
	}
	// The wait between phases is over, but a paused rollout stays put.
	h.clock.Advance(2 * time.Hour)
	if n, err := h.svc.AdvanceRollouts(context.Background()); err != nil || n != 0 {
		t.Fatalf("a paused rollout was taken up: %d, %v", n, err)
	}
	h.must(t, http.StatusOK, h.admin, "POST", path+"/resume", nil)
	v = h.awaitRollout(t, path, finished)
	if v.Rollout.Status != cp.RolloutSucceeded || v.Counts.Succeeded != 3 || h.schemaVersion(t, "acme", "c") != 2 {
		t.Fatalf("resumed: %+v %+v", *v.Rollout, v.Counts)
	}
	wantProblem(t, h.do(t, h.admin, "POST", path+"/resume", nil), http.StatusConflict, cp.ECONFLICT, "")

	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/rollouts",
		map[string]any{"version": 3, "canary": 1, "pause_seconds": 3600}).decode(t, &v)
	path = "/v1/organizations/acme/rollouts/" + v.Rollout.ID
	h.awaitRollout(t, path, func(v cp.RolloutView) bool { return v.Counts.Succeeded == 1 && v.Rollout.Phase == 1 })
	h.must(t, http.StatusOK, h.admin, "POST", path+"/cancel", nil)
	v = h.awaitRollout(t, path, finished)
	if v.Rollout.Status != cp.RolloutCancelled || v.Counts.Skipped != 3 || v.Counts.Succeeded != 1 {
		t.Fatalf("cancelled: %+v %+v", *v.Rollout, v.Counts)
	}
	if h.schemaVersion(t, "acme", "c") != 2 {
		t.Fatal("a cancelled rollout migrated an environment it had not started")
	}
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/rollouts", map[string]any{"version": 3})
}

// TestRolloutBadInput: bad fields are 422 naming the field and create
// nothing; another organization's rollout is 404; app keys and members
// are 403; the platform-wide routes are the platform admin's.
func TestRolloutBadInput(t *testing.T) {
	h := newHarness(t)
	appMigrations(t, h, map[string]string{"0001_widgets.sql": "CREATE TABLE widgets (id INTEGER PRIMARY KEY);"})
	h.org(t, "acme")
	h.org(t, "other")
	for _, c := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"version": 2}, "version"},
		{map[string]any{"version": 0}, "version"},
		{map[string]any{"parallelism": 0}, "parallelism"},
		{map[string]any{"parallelism": -3}, "parallelism"},
		{map[string]any{"canary": -1}, "canary"},
		{map[string]any{"waves": [][]string{{"development"}, {"nightly"}}}, "waves"},
		{map[string]any{"waves": [][]string{}}, "waves"},
		{map[string]any{"on_error": "retry"}, "on_error"},
		{map[string]any{"pause_seconds": -1}, "pause_seconds"},
	} {
		wantProblem(t, h.do(t, h.admin, "POST", "/v1/organizations/acme/rollouts", c.body), http.StatusUnprocessableEntity, cp.EINVALID, c.field)
	}
	wantProblem(t, h.do(t, h.admin, "POST", "/v1/organizations/acme/rollouts", `{"version": "two"}`), http.StatusUnprocessableEntity, cp.EINVALID, "version")
	var list cp.List[*cp.Rollout]
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/rollouts", nil).decode(t, &list)
	if len(list.Items) != 0 {
		t.Fatalf("refused requests made rollouts: %+v", list.Items)
	}

	var v cp.RolloutView
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/other/rollouts", map[string]any{}).decode(t, &v)
	h.awaitRollout(t, "/v1/organizations/other/rollouts/"+v.Rollout.ID, finished)
	owner := h.member(t, "acme", "owner@acme.test", cp.OrgOwner)
	h.must(t, http.StatusNotFound, owner, "GET", "/v1/organizations/acme/rollouts/"+v.Rollout.ID, nil)
	h.must(t, http.StatusNotFound, owner, "POST", "/v1/organizations/acme/rollouts/"+v.Rollout.ID+"/cancel", nil)
	h.must(t, http.StatusNotFound, owner, "GET", "/v1/organizations/other/rollouts/"+v.Rollout.ID, nil)
	h.must(t, http.StatusNotFound, owner, "GET", "/v1/organizations/acme/rollouts/not-an-id", nil)
	h.must(t, http.StatusForbidden, owner, "POST", "/v1/rollouts", map[string]any{})
	h.must(t, http.StatusForbidden, owner, "GET", "/v1/rollouts/"+v.Rollout.ID, nil)

	member := h.member(t, "acme", "dev@acme.test", cp.OrgMember)
	h.must(t, http.StatusForbidden, member, "POST", "/v1/organizations/acme/rollouts", map[string]any{})
	var key cp.CreateAPIKeyResponse
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/api-keys", map[string]any{"name": "app", "environment": "default", "max_scope": "admin"}).decode(t, &key)
	h.must(t, http.StatusForbidden, key.Token, "POST", "/v1/organizations/acme/rollouts", map[string]any{})
	h.must(t, http.StatusForbidden, key.Token, "GET", "/v1/organizations/acme/rollouts", nil)

	// The platform admin rolls across every organization.
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/rollouts", map[string]any{"version": 1}).decode(t, &v)
	v = h.awaitRollout(t, "/v1/rollouts/"+v.Rollout.ID, finished)
	orgs := map[string]bool{}
	for _, it := range v.Environments {
		orgs[it.OrgID] = true
	}
	if v.Rollout.Status != cp.RolloutSucceeded || len(orgs) != 2 || v.Rollout.OrgID != "" {
		t.Fatalf("platform rollout: %+v %+v", *v.Rollout, v.Environments)
	}
	h.must(t, http.StatusNotFound, h.admin, "GET", "/v1/organizations/acme/rollouts/"+v.Rollout.ID, nil)
}

// TestRolloutAcrossDrivers: with the control plane on PostgreSQL, one
// rollout migrates real databases on all three targets — SQLite files, the
// PostgreSQL server and Turso (the contract-checked double with real
// tursodb). On each target one environment already holds a table the
// migration creates, so its migration fails; the migration's first
// statement is rolled back with it (each migration is one transaction),
// and the others are migrated.
func TestRolloutAcrossDrivers(t *testing.T) {
	ctx := context.Background()
	admin := drivertest.PostgresAdminURL(t)
	pg, err := pgdriver.New(ctx, pgdriver.Config{AdminURL: drivers.Secret(admin), AppSSLMode: "disable"})
	if err != nil {
		t.Fatalf("postgres driver: %v", err)
	}
	t.Cleanup(pg.Close)
	clk := newClock()
	edge, _ := tursoTarget(t, clk)
	h := newHarness(t, withClock(clk), withPostgresStore(), withTargets(&cp.Target{Name: "pg", Region: "local", Driver: pg}, edge))
	add := appMigrations(t, h, map[string]string{"0001_widgets.sql": "CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"})
	h.org(t, "acme")
	targets := []struct{ target, sqlDriver string }{{"local", "sqlite"}, {"pg", "pgx"}, {"edge", "libsql"}}
	for _, tc := range targets {
		for _, slug := range []string{tc.target + "-ok", tc.target + "-broken"} {
			h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": slug, "type": "development", "target": tc.target})
		}
		if err := h.execAs(t, "acme", tc.target+"-broken", "admin", tc.sqlDriver, "CREATE TABLE sprockets (id INTEGER PRIMARY KEY)"); err != nil {
			t.Fatalf("%s: %v", tc.target, err)
		}
	}
	add("0002_gadgets.sql", "CREATE TABLE gadgets (id INTEGER PRIMARY KEY);\nCREATE TABLE sprockets (id INTEGER PRIMARY KEY);")

	var v cp.RolloutView
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/rollouts", map[string]any{"on_error": "continue", "parallelism": 3}).decode(t, &v)
	v = h.awaitRollout(t, "/v1/organizations/acme/rollouts/"+v.Rollout.ID, finished)
	got := items(v)
	if v.Rollout.Status != cp.RolloutFailed || v.Counts.Failed != 3 || v.Counts.Succeeded != 4 {
		t.Fatalf("rollout: %+v %+v", *v.Rollout, v.Counts)
	}
	for _, tc := range targets {
		ok, broken := tc.target+"-ok", tc.target+"-broken"
		if it := got[ok]; it.Status != cp.ItemSucceeded || it.SchemaVersion != 2 || h.schemaVersion(t, "acme", ok) != 2 {
			t.Errorf("%s: %+v, want migrated to 2", ok, it)
		}
		if err := h.execAs(t, "acme", ok, "admin", tc.sqlDriver, "INSERT INTO gadgets (id) VALUES (1)"); err != nil {
			t.Errorf("%s: the migrated table is not there: %v", ok, err)
		}
		if it := got[broken]; it.Status != cp.ItemFailed || !strings.Contains(it.Reason, "0002_gadgets.sql") || h.schemaVersion(t, "acme", broken) != 1 {
			t.Errorf("%s: %+v, want failed and left at 1", broken, it)
		}
		if err := h.execAs(t, "acme", broken, "admin", tc.sqlDriver, "SELECT count(*) FROM gadgets"); err == nil {
			t.Errorf("%s: the failed migration's first statement was not rolled back", broken)
		}
	}
}

// TestRolloutTakeover: the replica driving a rollout dies right after it
// started one environment's migrate operation (both leased to it). Once
// the leases run out, the next background pass resumes that operation and
// takes the rollout over: the started environment is migrated by its
// operation (not by a second one) and the rest are started and migrated.
func TestRolloutTakeover(t *testing.T) {
	h := newHarness(t)
	add := appMigrations(t, h, map[string]string{"0001_widgets.sql": "CREATE TABLE widgets (id INTEGER PRIMARY KEY);"})
	org := h.org(t, "acme").Organization
	var envs []cp.EnvironmentView
	for _, slug := range []string{"a", "b", "c"} {
		envs = append(envs, h.env(t, h.admin, "acme", slug, "development"))
	}
	add("0002_more.sql", "CREATE TABLE more (id INTEGER PRIMARY KEY);")

	// What the dead replica wrote: the rollout leased to it, environment a
	// running with a migrate operation leased to it, b and c pending.
	ctx := context.Background()
	now := h.clock.Now()
	until := now.Add(h.svc.Lease)
	r := &cp.Rollout{ID: cp.NewID("ro"), OrgID: org.ID, Version: 2, Waves: [][]cp.EnvironmentType{{cp.TypeDevelopment}}, Parallelism: 2,
		OnError: cp.OnErrorHalt, Status: cp.RolloutRunning, Phase: 1, CreatedBy: "operator", CreatedAt: now, UpdatedAt: now, NextAt: now,
		LeaseOwner: "replica-dead", LeaseExpiresAt: &until}
	op := &cp.Operation{ID: cp.NewID("op"), OrgID: org.ID, EnvironmentID: envs[0].ID, Kind: cp.OpMigrate, Status: cp.OpRunning, Step: "migrate",
		Params: []byte(`{"rollout_id":"` + r.ID + `","version":2}`), LeaseOwner: "replica-dead", LeaseExpiresAt: &until, CreatedAt: now, UpdatedAt: now}
	var rows []*cp.RolloutItem
	for i, e := range envs {
		it := &cp.RolloutItem{RolloutID: r.ID, EnvironmentID: e.ID, OrgID: org.ID, Environment: e.Slug, Type: e.Type, Phase: 1, Position: i,
			Status: cp.ItemPending, UpdatedAt: now}
		if i == 0 {
			it.Status, it.OperationID = cp.ItemRunning, op.ID
		}
		rows = append(rows, it)
	}
	err := h.svc.Store.WithTx(cp.WithPlatformScope(ctx), func(q cp.Queries) error {
		if err := q.CreateRollout(ctx, r, rows); err != nil {
			return err
		}
		return q.CreateOperation(ctx, op)
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep := h.svc.Tick(ctx); rep.Resumed != 0 || rep.Rollouts != 0 {
		t.Fatalf("work under a live lease was taken: %+v", rep)
	}
	h.clock.Advance(h.svc.Lease)
	if rep := h.svc.Tick(ctx); rep.Resumed != 1 || rep.Rollouts != 1 {
		t.Fatalf("after the leases ran out: %+v", rep)
	}
	v := h.awaitRollout(t, "/v1/organizations/acme/rollouts/"+r.ID, finished)
	got := items(v)
	if v.Rollout.Status != cp.RolloutSucceeded || got["a"].OperationID != op.ID {
		t.Fatalf("taken over: %+v %+v", *v.Rollout, got["a"])
	}
	for _, slug := range []string{"a", "b", "c"} {
		if got[slug].Status != cp.ItemSucceeded || h.schemaVersion(t, "acme", slug) != 2 {
			t.Errorf("%s: %+v", slug, got[slug])
		}
	}
	var ops cp.List[*cp.Operation]
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/operations?kind=migrate&environment=a", nil).decode(t, &ops)
	if len(ops.Items) != 1 || ops.Items[0].Status != cp.OpSucceeded {
		t.Fatalf("environment a was migrated by %d operations, want its one: %+v", len(ops.Items), ops.Items)
	}
}
