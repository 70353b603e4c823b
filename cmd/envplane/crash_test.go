package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/drivers/drivertest"
	"github.com/envplane/envplane/drivers/turso/tursotest"
)

// sagaSteps are the steps of each operation kind, in order.
var sagaSteps = []struct {
	kind  cp.OperationKind
	steps []string
}{
	{cp.OpProvision, []string{"create_database", "issue_credentials", "initialize_schema", "activate"}},
	{cp.OpClone, []string{"create_database", "issue_credentials", "initialize_schema", "activate"}},
	{cp.OpDeprovision, []string{"revoke_credentials", "drop_database", "tombstone"}},
	{cp.OpRotate, []string{"rotate"}},
}

// finishedBy is the audit action that records an operation of each kind
// finished; "operation.failed" records any kind that failed.
var finishedBy = map[cp.OperationKind]string{
	cp.OpProvision:   "environment.provisioned",
	cp.OpClone:       "environment.provisioned",
	cp.OpDeprovision: "environment.deleted",
	cp.OpRotate:      "credentials.rotated",
}

// crashTarget is one driver under test: the YAML of its target, the
// environment the server needs, and a look at what exists on the target.
type crashTarget struct {
	name   string
	region string
	yaml   string
	env    []string
	// remains lists what the target still holds of the named databases:
	// files, databases and roles, Turso databases.
	remains func(t *testing.T, names []string) []string
	// others lists what the target holds that is not one of names (SQLite
	// files, Turso databases); nil where the target is shared (PostgreSQL).
	others func(t *testing.T, names []string) []string
	// cleanup removes what the test left on a shared target.
	cleanup func(t *testing.T, names []string)
	// points are the driver's own crash points, inside a database's creation.
	points []string
	// resetPoints are the driver's own crash points inside a reset's steps.
	resetPoints []string
	// open lists the named databases that anyone may connect to (where the
	// engine has such a grant).
	open func(t *testing.T, names []string) []string
}

// TestCrashConvergence runs the real `envplane serve`, built with -tags
// crashpoints, and kills it (SIGKILL, from inside, at the exact point) at
// every named crash point of provisioning, cloning, deletion and rotation
// on each driver; then it restarts the server and checks that the
// operation converged: the environment ends active (or failed, with its
// error) or deleted, nothing stays provisioning or deleting, every step
// ran to completion exactly once, and no database, role, file or token is
// left behind. Its lifecycle subtests kill restores, resets and rollout
// migrations the same way (crash_lifecycle_test.go).
func TestCrashConvergence(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the envplane binary")
	}
	bin := buildCrashBinary(t)
	targets := map[string]func(t *testing.T) crashTarget{"sqlite": sqliteCrashTarget, "postgres": postgresCrashTarget, "turso": tursoCrashTarget}
	for name, newTarget := range targets {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			runCrashPoints(t, bin, newTarget(t))
		})
	}
	// Restores, resets and rollout migrations on the engines that back up
	// and reset (Turso restores through its Platform API's seeds instead).
	t.Run("lifecycle", func(t *testing.T) {
		t.Parallel()
		for _, name := range []string{"sqlite", "postgres"} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				runLifecycleCrashes(t, bin, targets[name](t))
			})
		}
	})
}

// buildCrashBinary builds envplane with its crash points into a temporary directory.
func buildCrashBinary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "envplane")
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the crash binary: %v", err)
	}
	out, err := exec.Command(gobin, "build", "-tags", "crashpoints", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build -tags crashpoints: %v\n%s", err, out)
	}
	return bin
}

func sqliteCrashTarget(t *testing.T) crashTarget {
	dir := filepath.Join(t.TempDir(), "databases")
	files := func(t *testing.T) []string {
		entries, err := os.ReadDir(dir)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		var out []string
		for _, e := range entries {
			out = append(out, e.Name())
		}
		return out
	}
	return crashTarget{
		name:        "sqlite",
		region:      "local",
		points:      []string{"sqlite.create.registry_built", "sqlite.create.registry_placed"},
		resetPoints: []string{"sqlite.reset.swapped"},
		yaml:        fmt.Sprintf("driver: sqlite\n    sqlite:\n      dir: %s\n", dir),
		remains: func(t *testing.T, names []string) []string {
			var out []string
			for _, f := range files(t) {
				if slices.Contains(names, databaseOfFile(f)) {
					out = append(out, f)
				}
			}
			return out
		},
		others: func(t *testing.T, names []string) []string {
			var out []string
			for _, f := range files(t) {
				base := databaseOfFile(f)
				// A live database is its file and its registry; a journal
				// beside either comes and goes with open connections.
				rest := strings.TrimPrefix(f, base)
				rest = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(rest, "-journal"), "-wal"), "-shm")
				if !slices.Contains(names, base) || (rest != ".db" && rest != ".credentials.db") {
					out = append(out, f)
				}
			}
			return out
		},
	}
}

// databaseOfFile is the database a SQLite target's file belongs to.
func databaseOfFile(f string) string {
	name, _, _ := strings.Cut(f, ".")
	return name
}

func postgresCrashTarget(t *testing.T) crashTarget {
	admin := drivertest.PostgresAdminURL(t)
	return crashTarget{
		name:   "postgres",
		region: "local",
		points: []string{"postgres.create.database_made"},
		open: func(t *testing.T, names []string) []string {
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, admin)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname = ANY($1) AND has_database_privilege('public', datname, 'CONNECT')`, names)
			if err != nil {
				t.Fatal(err)
			}
			out, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			return out
		},
		yaml: "driver: postgres\n    postgres:\n      admin_url_env: CRASH_TEST_PG_ADMIN_URL\n      app_sslmode: disable\n",
		env:  []string{"CRASH_TEST_PG_ADMIN_URL=" + admin},
		remains: func(t *testing.T, names []string) []string {
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, admin)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			rows, err := conn.Query(ctx, `
				SELECT 'database ' || datname FROM pg_database WHERE datname = ANY($1)
				UNION ALL
				SELECT 'role ' || rolname FROM pg_roles r WHERE EXISTS (SELECT 1 FROM unnest($1::text[]) n WHERE starts_with(r.rolname, n))`, names)
			if err != nil {
				t.Fatal(err)
			}
			out, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			return out
		},
		cleanup: func(t *testing.T, names []string) {
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, admin)
			if err != nil {
				t.Errorf("cleanup: %v", err)
				return
			}
			defer conn.Close(ctx)
			for _, n := range names {
				if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{n}.Sanitize()+" WITH (FORCE)"); err != nil {
					t.Errorf("cleanup: %v", err)
				}
				rows, _ := conn.Query(ctx, "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY rolname DESC", n)
				roles, err := pgx.CollectRows(rows, pgx.RowTo[string])
				if err != nil {
					t.Errorf("cleanup: %v", err)
				}
				for _, role := range roles {
					if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize()); err != nil {
						t.Errorf("cleanup: %v", err)
					}
				}
			}
		},
	}
}

func tursoCrashTarget(t *testing.T) crashTarget {
	p := tursotest.NewPlatform(t, tursotest.PlatformOptions{DataPlane: true})
	turso := func(name string) string { return strings.Replace(name, "_", "-", 1) }
	return crashTarget{
		name:   "turso",
		region: p.Location,
		yaml: fmt.Sprintf("driver: turso\n    turso:\n      organization: %s\n      group: %s\n      location: %s\n      base_url: %s\n      token_env: CRASH_TEST_TURSO_TOKEN\n      database_url: %s\n",
			p.Organization, p.Group, p.Location, p.URL, p.Gateway()),
		env: []string{"CRASH_TEST_TURSO_TOKEN=" + p.Token.Reveal()},
		remains: func(t *testing.T, names []string) []string {
			var out []string
			for _, n := range names {
				if p.HasDatabase(turso(n)) {
					out = append(out, n)
				}
			}
			return out
		},
		others: func(t *testing.T, names []string) []string {
			var out []string
			for _, db := range p.Databases() {
				if !slices.ContainsFunc(names, func(n string) bool { return turso(n) == db }) {
					out = append(out, db)
				}
			}
			return out
		},
	}
}

// crashRun is the state of one driver's crash test.
type crashRun struct {
	t      *testing.T
	bin    string
	dir    string
	config string
	target crashTarget
	runs   int
	srv    *serveProcess
	token  string
	// databases maps every environment's slug to its database name.
	databases map[string]string
	// logs holds the log of every process that ran, for the step counts.
	logs []string
	// pending are the operations whose steps checkSteps counts.
	pending []stepCheck
	// lastList is the environments as last listed, for the final orphan
	// check once no server runs.
	lastList []*cp.EnvironmentView
	// orphans counts what the orphan checks found.
	orphans int
}

func runCrashPoints(t *testing.T, bin string, tg crashTarget) {
	r := startCrashRun(t, bin, tg, "")
	r.create("src")
	r.create("rot")
	var converge []converged
	rotations := 0
	for _, c := range crashCases(tg) {
		var request func()
		switch c.kind {
		case cp.OpProvision:
			request = func() {
				r.send("POST", "/v1/organizations/acme/environments", map[string]any{"slug": c.slug, "type": "development"})
			}
		case cp.OpClone:
			request = func() {
				r.send("POST", "/v1/organizations/acme/environments", map[string]any{"slug": c.slug, "type": "development", "from_environment": "src", "clone": "full"})
			}
		case cp.OpDeprovision:
			request = func() { r.send("DELETE", "/v1/organizations/acme/environments/"+c.slug, nil) }
		case cp.OpRotate:
			request = func() {
				r.send("POST", "/v1/organizations/acme/environments/"+c.slug+"/credentials/rotate", map[string]any{"scope": "all", "grace_seconds": 0, "reason": "crash test"})
			}
		}
		r.srv.stop(t)

		r.srv = r.start(c.point)
		request()
		killed := r.srv.waitKilled(t, c.point)

		r.srv = r.start("")
		done := 0
		if c.kind == cp.OpRotate {
			done = rotations
		}
		ev := r.awaitFinished(c.kind, c.slug, done)
		converge = append(converge, converged{c.point, time.Since(killed)})
		if c.kind == cp.OpRotate && ev.Action == finishedBy[cp.OpRotate] {
			rotations++
		}
		r.checkConverged(c.point, c.kind, c.steps, c.slug, ev)
	}
	r.srv.stop(t)
	r.srv = nil
	r.checkSteps()
	r.checkOrphans("at the end")
	slices.SortFunc(converge, func(a, b converged) int { return cmp.Compare(a.took, b.took) })
	slowest := converge[len(converge)-1]
	t.Logf("%s: %d kills, one at each crash point, orphans: %d; kill to converged (lease 1s, reconcile every 200ms, restart included): median %v, max %v (%s)",
		tg.name, len(converge), r.orphans, converge[len(converge)/2].took.Round(time.Millisecond), slowest.took.Round(time.Millisecond), slowest.point)
}

// startCrashRun writes the configuration of one driver's crash test (with
// extra appended at its top level), starts the server and makes the
// organization acme.
func startCrashRun(t *testing.T, bin string, tg crashTarget, extra string) *crashRun {
	r := &crashRun{t: t, bin: bin, dir: t.TempDir(), target: tg, databases: map[string]string{}}
	r.config = filepath.Join(r.dir, "envplane.yaml")
	yaml := fmt.Sprintf(`data_dir: %s
listen: 127.0.0.1:0
log_level: debug
default_target: t
reconcile_interval: 200ms
%soperations:
  lease: 1s
  lease_renewal: 250ms
targets:
  - name: t
    region: %s
    %s`, filepath.Join(r.dir, "data"), extra, tg.region, tg.yaml)
	if err := os.WriteFile(r.config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if tg.cleanup != nil {
			tg.cleanup(t, slices.Collect(maps.Values(r.databases)))
		}
	})
	t.Cleanup(func() {
		if r.srv != nil {
			r.srv.stop(t)
		}
	})
	r.srv = r.start("")
	token, err := os.ReadFile(filepath.Join(r.dir, "data", tokenFile))
	if err != nil {
		t.Fatalf("admin token: %v", err)
	}
	r.token = strings.TrimSpace(string(token))
	var org cp.CreateOrganizationResponse
	r.call(http.StatusCreated, "POST", "/v1/organizations", map[string]any{"slug": "acme", "name": "Acme"}, &org)
	r.databases["default"] = org.DefaultEnvironment.Database.DatabaseName
	return r
}

// crashCase is one kill: at point, in an operation of kind on the
// environment slug.
type crashCase struct {
	point string
	kind  cp.OperationKind
	steps []string
	slug  string
}

// crashCases are the kills of one driver's test: before and after each
// step of each kind, then at the driver's own points, in a provisioning.
// Deletions delete what the provisionings made; rotations rotate "rot".
func crashCases(tg crashTarget) []crashCase {
	var cases []crashCase
	for _, k := range sagaSteps {
		for i, step := range k.steps {
			for _, phase := range []string{"before", "after"} {
				c := crashCase{point: fmt.Sprintf("%s.%s.%s", k.kind, step, phase), kind: k.kind, steps: k.steps, slug: fmt.Sprintf("%s-%d-%s", k.kind, i, phase)}
				switch k.kind {
				case cp.OpDeprovision:
					c.slug = fmt.Sprintf("%s-%d-%s", cp.OpProvision, i, phase)
				case cp.OpRotate:
					c.slug = "rot"
				}
				cases = append(cases, c)
			}
		}
	}
	for i, point := range tg.points {
		cases = append(cases, crashCase{point: point, kind: cp.OpProvision, steps: sagaSteps[0].steps, slug: fmt.Sprintf("driver-%d", i)})
	}
	return cases
}

// converged is how long after the kill at point the operation was finished.
type converged struct {
	point string
	took  time.Duration
}

// start runs `envplane serve`, killed at crashAt when it is set, and waits
// until it serves.
func (r *crashRun) start(crashAt string) *serveProcess {
	r.t.Helper()
	r.runs++
	logPath := filepath.Join(r.dir, fmt.Sprintf("serve-%03d.log", r.runs))
	r.logs = append(r.logs, logPath)
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "ENVPLANE_") })
	env = append(env, r.target.env...)
	if crashAt != "" {
		env = append(env, "ENVPLANE_CRASH_AT="+crashAt)
	}
	return startServe(r.t, r.bin, r.config, logPath, env)
}

// call sends a request as the platform admin and decodes the answer into
// out; any status other than want fails the test.
func (r *crashRun) call(want int, method, path string, body, out any) {
	r.t.Helper()
	status, data, err := r.srv.do(r.token, method, path, body)
	if err != nil || status != want {
		r.t.Fatalf("%s %s: %d %s, %v; want %d", method, path, status, data, err, want)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			r.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// send sends the request that the server dies in. It may answer (202) or
// not (the point came first); an answer other than 202 fails the test.
func (r *crashRun) send(method, path string, body any) {
	r.t.Helper()
	status, data, err := r.srv.do(r.token, method, path, body, "Prefer", "wait=0")
	if err == nil && status != http.StatusAccepted {
		r.t.Fatalf("%s %s: %d %s, want 202 or no answer", method, path, status, data)
	}
}

// create makes an active environment and remembers its database.
func (r *crashRun) create(slug string) {
	r.t.Helper()
	body := map[string]any{"slug": slug, "type": "development"}
	var v cp.EnvironmentOperationResponse
	r.call(http.StatusCreated, "POST", "/v1/organizations/acme/environments", body, &v)
	r.databases[slug] = v.Environment.Database.DatabaseName
}

// environment returns the environment's view, or nil once it is deleted.
func (r *crashRun) environment(slug string) *cp.EnvironmentView {
	r.t.Helper()
	status, data, err := r.srv.do(r.token, "GET", "/v1/organizations/acme/environments/"+slug, nil)
	if err == nil && status == http.StatusNotFound {
		return nil
	}
	var v cp.EnvironmentView
	if err != nil || status != http.StatusOK || json.Unmarshal(data, &v) != nil {
		r.t.Fatalf("GET environment %s: %d %s, %v", slug, status, data, err)
	}
	return &v
}

// events returns the organization's audit events that finish operations
// on the environment (by id).
func (r *crashRun) events(envID string, kind cp.OperationKind) []*cp.AuditEvent {
	r.t.Helper()
	var page struct {
		Items []*cp.AuditEvent `json:"items"`
	}
	r.call(http.StatusOK, "GET", "/v1/organizations/acme/audit-events?limit=500", nil, &page)
	var out []*cp.AuditEvent
	for _, e := range page.Items {
		if e.EnvironmentID == envID && (e.Action == finishedBy[kind] || e.Action == "operation.failed") {
			out = append(out, e)
		}
	}
	return out
}

// awaitFinished waits until the environment's operation of kind is
// recorded finished (the audit event written with it), and returns that
// event. done is how many such events the environment had before.
func (r *crashRun) awaitFinished(kind cp.OperationKind, slug string, done int) *cp.AuditEvent {
	r.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		envID := r.envID(slug)
		if evs := r.events(envID, kind); len(evs) > done {
			if len(evs) != done+1 {
				r.t.Fatalf("%s: %d operations of kind %s finished, want 1", slug, len(evs)-done, kind)
			}
			if evs[0].Action != "operation.failed" {
				return evs[0]
			}
			// A failure is recorded before its clean-up: the operation
			// itself ends once that is done too.
			var op cp.Operation
			r.call(http.StatusOK, "GET", "/v1/operations/"+evs[0].Target, nil, &op)
			if op.Status.Done() {
				return evs[0]
			}
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: the %s operation did not finish after the restart; environment %+v", slug, kind, r.environment(slug))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// envID returns the environment's id, remembering its database the first
// time (an environment the crashed request made).
func (r *crashRun) envID(slug string) string {
	r.t.Helper()
	var list struct {
		Items []*cp.EnvironmentView `json:"items"`
	}
	r.call(http.StatusOK, "GET", "/v1/organizations/acme/environments?limit=200", nil, &list)
	for _, v := range list.Items {
		if v.Slug == slug {
			if _, ok := r.databases[slug]; !ok && v.Database != nil {
				r.databases[slug] = v.Database.DatabaseName
			}
			return v.ID
		}
	}
	// Deleted: its id is on its deletion event, found by database name.
	if ev := r.deletedEvent(slug); ev != nil {
		return ev.EnvironmentID
	}
	r.t.Fatalf("environment %s not found", slug)
	return ""
}

func (r *crashRun) deletedEvent(slug string) *cp.AuditEvent {
	var page struct {
		Items []*cp.AuditEvent `json:"items"`
	}
	r.call(http.StatusOK, "GET", "/v1/organizations/acme/audit-events?limit=500", nil, &page)
	for _, e := range page.Items {
		if e.Action == "environment.deleted" && e.Details["database"] == r.databases[slug] {
			return e
		}
	}
	return nil
}

// checkConverged checks the state after the operation of kind on slug
// finished with ev.
func (r *crashRun) checkConverged(point string, kind cp.OperationKind, steps []string, slug string, ev *cp.AuditEvent) {
	r.t.Helper()
	opID, _ := ev.Details["operation"].(string)
	if ev.Action == "operation.failed" {
		opID = ev.Target
	}
	var op cp.Operation
	r.call(http.StatusOK, "GET", "/v1/operations/"+opID, nil, &op)
	switch {
	case op.Status == cp.OpFailed && op.Error == "":
		r.t.Errorf("%s: operation failed without an error", point)
	case op.Status != cp.OpSucceeded && op.Status != cp.OpFailed:
		r.t.Errorf("%s: operation %s at %s after the restart", point, op.Status, op.Step)
	}
	v := r.environment(slug)
	switch {
	case kind == cp.OpDeprovision && op.Status == cp.OpSucceeded:
		if v != nil {
			r.t.Errorf("%s: deleted environment still answers, %s", point, v.Status)
		}
	case v == nil:
		r.t.Errorf("%s: environment %s vanished", point, slug)
	case v.Status == cp.StatusFailed:
		if v.Error == "" {
			r.t.Errorf("%s: environment failed without its error", point)
		}
	case v.Status != cp.StatusActive:
		r.t.Errorf("%s: environment %s, want active or failed", point, v.Status)
	default:
		r.checkCredentials(point, slug)
	}
	var list struct {
		Items []*cp.EnvironmentView `json:"items"`
	}
	r.call(http.StatusOK, "GET", "/v1/organizations/acme/environments?limit=200", nil, &list)
	for _, e := range list.Items {
		if e.Status == cp.StatusProvisioning || e.Status == cp.StatusDeleting {
			r.t.Errorf("%s: environment %s stays %s", point, e.Slug, e.Status)
		}
	}
	r.pending = append(r.pending, stepCheck{point: point, op: opID, steps: steps, succeeded: op.Status == cp.OpSucceeded})
	r.checkOrphans(point)
}

// checkCredentials: an active environment has one active credential per scope.
func (r *crashRun) checkCredentials(point, slug string) {
	r.t.Helper()
	var list struct {
		Items []*cp.Credential `json:"items"`
	}
	r.call(http.StatusOK, "GET", "/v1/organizations/acme/environments/"+slug+"/credentials", nil, &list)
	active := map[cp.Scope]int{}
	for _, c := range list.Items {
		if c.Status == cp.CredentialActive {
			active[c.Scope]++
		}
	}
	if active["admin"] != 1 || active["readwrite"] != 1 || active["readonly"] != 1 {
		r.t.Errorf("%s: active credentials of %s by scope: %v, want one each", point, slug, active)
	}
}

// checkOrphans: the target holds the databases of live environments and
// nothing of the others.
func (r *crashRun) checkOrphans(when string) {
	r.t.Helper()
	var list struct {
		Items []*cp.EnvironmentView `json:"items"`
	}
	var live, gone []string
	if r.srv != nil {
		r.call(http.StatusOK, "GET", "/v1/organizations/acme/environments?limit=200", nil, &list)
	} else {
		list.Items = r.lastList
	}
	r.lastList = list.Items
	for _, v := range list.Items {
		if v.Status == cp.StatusActive && v.Database != nil {
			live = append(live, v.Database.DatabaseName)
		}
	}
	for _, name := range r.databases {
		if !slices.Contains(live, name) {
			gone = append(gone, name)
		}
	}
	if left := r.target.remains(r.t, gone); len(left) > 0 {
		r.orphans += len(left)
		r.t.Errorf("%s: orphans of failed or deleted environments: %v", when, left)
	}
	held := r.target.remains(r.t, live)
	for _, name := range live {
		if !slices.ContainsFunc(held, func(s string) bool { return strings.Contains(s, name) }) {
			r.t.Errorf("%s: the database of a live environment is missing on the target", when)
		}
	}
	if r.target.open != nil {
		if open := r.target.open(r.t, live); len(open) > 0 {
			r.t.Errorf("%s: live databases open to PUBLIC: %v", when, open)
		}
	}
	if r.target.others != nil {
		if other := r.target.others(r.t, live); len(other) > 0 {
			r.orphans += len(other)
			r.t.Errorf("%s: the target holds what no live environment owns: %v", when, other)
		}
	}
}

// stepCheck is an operation whose steps are counted in the logs once the
// processes that ran it have stopped.
type stepCheck struct {
	point     string
	op        string
	steps     []string
	succeeded bool
}

// checkSteps: across every process that ran it, each step of a succeeded
// operation ran to completion exactly once. And no log holds a secret the
// processes were given.
func (r *crashRun) checkSteps() {
	r.t.Helper()
	secrets := []string{r.token}
	for _, kv := range r.target.env {
		if _, v, _ := strings.Cut(kv, "="); strings.Contains(kv, "TOKEN") && v != "" {
			secrets = append(secrets, v)
		}
	}
	done := map[string]map[string]int{}
	for _, path := range r.logs {
		readServeLog(r.t, path, secrets, func(line serveLogLine) {
			if line.Msg == "operation step failed" {
				r.t.Logf("retried: %s %s: %s", line.Operation, line.Step, line.Err)
			}
			if line.Msg != "operation step" || !line.OK {
				return
			}
			if done[line.Operation] == nil {
				done[line.Operation] = map[string]int{}
			}
			done[line.Operation][line.Step]++
		})
	}
	for _, c := range r.pending {
		if !c.succeeded {
			continue
		}
		for _, step := range c.steps {
			if n := done[c.op][step]; n != 1 {
				r.t.Errorf("%s: step %s completed %d times, want once", c.point, step, n)
			}
		}
	}
}

// serveLogLine is what the tests read of a line of serve's JSON log.
type serveLogLine struct {
	Msg       string `json:"msg"`
	Operation string `json:"operation"`
	Step      string `json:"step"`
	OK        bool   `json:"ok"`
	Err       string `json:"err"`
}

// readServeLog hands each JSON line of the log at path to fn, and fails
// the test for each line that holds one of secrets, naming the log only.
func readServeLog(t testing.TB, path string, secrets []string, fn func(serveLogLine)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		for _, secret := range secrets {
			if bytes.Contains(sc.Bytes(), []byte(secret)) {
				t.Errorf("%s logs a secret it was given", filepath.Base(path))
			}
		}
		var line serveLogLine
		if json.Unmarshal(sc.Bytes(), &line) == nil {
			fn(line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", filepath.Base(path), err)
	}
}

// serveProcess is one running `envplane serve`.
type serveProcess struct {
	cmd     *exec.Cmd
	url     string
	log     string
	exited  chan struct{}
	waitErr error
}

// startServe starts the binary and waits until it logs the address it serves on.
func startServe(t testing.TB, bin, config, logPath string, env []string) *serveProcess {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", config)
	cmd.Env = env
	cmd.Stdout = io.Discard
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start envplane: %v", err)
	}
	p := &serveProcess{cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	deadline := time.Now().Add(time.Minute)
	for p.url == "" {
		select {
		case <-p.exited:
			t.Fatalf("envplane exited before serving: %v\n%s", p.waitErr, tail(logPath))
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("envplane did not start serving\n%s", tail(logPath))
		}
		data, _ := os.ReadFile(logPath)
		for line := range strings.Lines(string(data)) {
			var l struct {
				Msg    string `json:"msg"`
				Listen string `json:"listen"`
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "envplane is serving" {
				p.url = "http://" + l.Listen
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

// do sends one request with the token.
func (p *serveProcess) do(token, method, path string, body any, headers ...string) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.url+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// waitKilled waits for the process to die of SIGKILL at point, and returns when.
func (p *serveProcess) waitKilled(t *testing.T, point string) time.Time {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(2 * time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.exited
		t.Fatalf("envplane never reached crash point %s\n%s", point, tail(p.log))
	}
	at := time.Now()
	var exit *exec.ExitError
	if !errors.As(p.waitErr, &exit) {
		t.Fatalf("envplane at %s: %v, want death by SIGKILL", point, p.waitErr)
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("envplane at %s: %v, want death by SIGKILL\n%s", point, p.waitErr, tail(p.log))
	}
	data, _ := os.ReadFile(p.log)
	if !bytes.Contains(data, []byte(`"msg":"crash point reached","point":"`+point+`"`)) {
		t.Fatalf("envplane died without logging crash point %s\n%s", point, tail(p.log))
	}
	return at
}

// stop ends the process with SIGTERM and waits for it.
func (p *serveProcess) stop(t testing.TB) {
	t.Helper()
	select {
	case <-p.exited:
		return
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("stop envplane: %v", err)
	}
	select {
	case <-p.exited:
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.exited
		t.Fatalf("envplane did not stop on SIGTERM\n%s", tail(p.log))
	}
	if p.waitErr != nil {
		t.Errorf("envplane stopped with %v\n%s", p.waitErr, tail(p.log))
	}
}

// tail is the end of a log, for a failure message (logs carry no secret).
func tail(path string) string {
	data, _ := os.ReadFile(path)
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}
