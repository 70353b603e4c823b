package httpapi_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/dataplane/router"
	"github.com/envplane/envplane/dataplane/router/sqlopen"
	"github.com/envplane/envplane/drivers"
)

// resetEnv is an environment of the reset tests and how to reach it.
type resetEnv struct {
	h         *harness
	org, slug string
	sqlDriver string
}

// db opens the environment's database with a scope's credential, as an
// application would from the connection answer.
func (e resetEnv) db(tb testing.TB, scope string) *sql.DB {
	tb.Helper()
	var conn cp.Connection
	e.h.must(tb, http.StatusOK, e.h.admin, "GET", "/v1/organizations/"+e.org+"/environments/"+e.slug+"/connection?scope="+scope, nil).decode(tb, &conn)
	db, err := sql.Open(e.sqlDriver, conn.DSN.Reveal())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func (e resetEnv) exec(tb testing.TB, scope, q string) {
	tb.Helper()
	if _, err := e.db(tb, scope).Exec(q); err != nil {
		tb.Fatalf("%s as %s: %s: %v", e.slug, scope, q, err)
	}
}

// notes returns the bodies in the notes table, in order.
func notes(tb testing.TB, db *sql.DB) (string, error) {
	tb.Helper()
	rows, err := db.Query("SELECT body FROM notes ORDER BY body")
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var b string
		if err := rows.Scan(&b); err != nil {
			return "", err
		}
		out = append(out, b)
	}
	return fmt.Sprint(out), rows.Err()
}

// reset posts a reset and waits for its operation; it returns the 202's body.
func (e resetEnv) reset(tb testing.TB, body map[string]any) cp.EnvironmentOperationResponse {
	tb.Helper()
	r := e.h.must(tb, http.StatusAccepted, e.h.admin, "POST", "/v1/organizations/"+e.org+"/environments/"+e.slug+"/reset", body)
	var out cp.EnvironmentOperationResponse
	r.decode(tb, &out)
	if out.Operation == nil || out.Environment == nil || out.Operation.Kind != cp.OpReset {
		tb.Fatalf("reset answered %s", r.body)
	}
	if loc := r.header.Get("Location"); loc != "/v1/operations/"+out.Operation.ID {
		tb.Fatalf("reset's Location is %q", loc)
	}
	e.h.svc.Wait()
	var op cp.Operation
	e.h.must(tb, http.StatusOK, e.h.admin, "GET", "/v1/operations/"+out.Operation.ID, nil).decode(tb, &op)
	if op.Status != cp.OpSucceeded {
		tb.Fatalf("reset operation %s at %s: %s", op.Status, op.Step, op.Error)
	}
	return out
}

// TestReset resets a clone from its source and then to an empty schema, on
// the SQLite, PostgreSQL and Turso (double and tursodb) targets: the contents are replaced, the
// environment id, its credentials and its DSN stay, an application holding
// a router pool keeps working with the same credential, and the schema
// initializer finds the database whole (owner row, ledger, no drift).
func TestReset(t *testing.T) {
	ctx := context.Background()
	pg := sharedPostgres(t)
	clk := newClock()
	edge, _ := tursoTarget(t, clk)
	h := newHarness(t, withClock(clk), withTargets(&cp.Target{Name: "pg", Region: "local", Driver: pg}, edge))
	h.org(t, "acme")
	for _, c := range []struct{ target, sqlDriver string }{{"local", "sqlite"}, {"pg", "pgx"}, {"edge", "libsql"}} {
		t.Run(c.target, func(t *testing.T) {
			src := resetEnv{h, "acme", c.target + "-src", c.sqlDriver}
			child := resetEnv{h, "acme", c.target + "-child", c.sqlDriver}
			h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": src.slug, "type": "staging", "target": c.target})
			src.exec(t, "admin", "CREATE TABLE notes (body TEXT)")
			src.exec(t, "readwrite", "INSERT INTO notes VALUES ('a'), ('b')")
			before := h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": child.slug, "type": "preview", "from_environment": src.slug, "clone": "full"}).environment(t)
			child.exec(t, "readwrite", "INSERT INTO notes VALUES ('mine')")
			var conn cp.Connection
			h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments/"+child.slug+"/connection?scope=readwrite", nil).decode(t, &conn)
			creds := h.liveCredentials(t, before.ID)

			client := &router.Client{BaseURL: h.srv.URL, Token: drivers.Secret(h.admin), HTTPClient: h.srv.Client()}
			pool, err := router.Open(ctx, client, router.Target{Org: "acme", Env: child.slug}, drivers.ScopeReadWrite, sqlopen.Connector, router.Options{Now: h.clock.Now, Watch: router.WatchOff})
			if err != nil {
				t.Fatalf("open pool: %v", err)
			}
			t.Cleanup(func() { pool.Close() })
			app, err := pool.DB(ctx)
			if err != nil {
				t.Fatalf("pool DB: %v", err)
			}
			if got, err := notes(t, app); err != nil || got != "[a b mine]" {
				t.Fatalf("before the reset the app reads %s, %v", got, err)
			}

			// Reset to the source, which the clone operation recorded.
			out := child.reset(t, map[string]any{"mode": "full"})
			if out.Environment.ID != before.ID {
				t.Fatalf("the reset answered environment %s, want %s", out.Environment.ID, before.ID)
			}
			var got string
			for range 3 { // a PostgreSQL session ended by the swap fails once
				if got, err = notes(t, app); err == nil {
					break
				}
			}
			if got != "[a b]" {
				t.Fatalf("after the full reset the app's pool reads %s, %v; want [a b]", got, err)
			}
			if _, err := app.Exec("INSERT INTO notes VALUES ('after')"); err != nil {
				t.Fatalf("the app cannot write after the reset: %v", err)
			}
			if id := pool.Connection().CredentialID; id != conn.CredentialID {
				t.Errorf("the pool moved from credential %s to %s", conn.CredentialID, id)
			}
			var again cp.Connection
			h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments/"+child.slug+"/connection?scope=readwrite", nil).decode(t, &again)
			if again.DSN.Reveal() != conn.DSN.Reveal() || again.CredentialID != conn.CredentialID || again.EnvironmentID != before.ID {
				t.Errorf("the connection answer changed with the reset")
			}
			if after := h.liveCredentials(t, before.ID); len(after) != len(creds) {
				t.Errorf("%d live credentials after the reset, %d before", len(after), len(creds))
			}
			if got, _ := notes(t, src.db(t, "readonly")); got != "[a b]" {
				t.Errorf("the source holds %s after the reset", got)
			}
			var st cp.SchemaStatus
			h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments/"+child.slug+"/schema", nil).decode(t, &st)
			if len(st.Applied) == 0 || len(st.Drift) != 0 || len(st.Tampered) != 0 {
				t.Fatalf("schema after the full reset: %+v", st)
			}

			// Reset to an empty schema: no notes table, the system tables whole.
			child.reset(t, map[string]any{"mode": "schema"})
			for range 3 {
				if _, err = notes(t, app); err != nil && !sessionEnded(err) {
					break
				}
			}
			if err == nil {
				t.Fatal("after the schema reset the notes table is still there")
			}
			h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments/"+child.slug+"/schema", nil).decode(t, &st)
			if len(st.Applied) == 0 || len(st.Drift) != 0 || len(st.Tampered) != 0 || len(st.Pending) != 0 {
				t.Fatalf("schema after the schema reset: %+v", st)
			}
			h.must(t, http.StatusOK, h.admin, "POST", "/v1/organizations/acme/environments/"+child.slug+"/schema/migrate", nil)
			child.exec(t, "admin", "CREATE TABLE notes (body TEXT)")
			if _, err := app.Exec("INSERT INTO notes VALUES ('fresh')"); err != nil {
				t.Fatalf("the app cannot write after the schema reset: %v", err)
			}
			if ev := h.auditEvent(t, "acme", "environment.reset"); ev == nil || ev.EnvironmentID != before.ID {
				t.Errorf("no environment.reset audit event for %s: %+v", before.ID, ev)
			}
		})
	}
}

// sessionEnded reports whether err is a PostgreSQL session that the swap
// terminated (57P01) rather than the query's own failure.
func sessionEnded(err error) bool {
	for _, sign := range []string{"57P01", "terminating connection", "conn closed", "unexpected EOF"} {
		if strings.Contains(err.Error(), sign) {
			return true
		}
	}
	return false
}

// TestResetRefusals: each bad reset is a problem naming what is wrong, and
// none of them starts an operation or changes the database.
func TestResetRefusals(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	h.org(t, "other")
	owner := h.member(t, "acme", "owner@example.com", cp.OrgOwner)
	dev := resetEnv{h, "acme", "dev", "sqlite"}
	h.env(t, h.admin, "acme", "dev", "development")
	h.env(t, h.admin, "acme", "qa", "test")
	dev.exec(t, "admin", "CREATE TABLE notes (body TEXT)")
	dev.exec(t, "readwrite", "INSERT INTO notes VALUES ('kept')")
	prod := h.env(t, h.admin, "acme", "prod", "production")
	h.env(t, h.admin, "acme", "paused", "development")
	h.must(t, http.StatusOK, h.admin, "POST", "/v1/organizations/acme/environments/paused/suspend", nil)
	theirs := h.env(t, h.admin, "other", "theirs", "development")
	if !prod.IsProtected {
		t.Fatal("a production environment is not protected")
	}

	post := func(token, org, env string, body any) response {
		return h.do(t, token, "POST", "/v1/organizations/"+org+"/environments/"+env+"/reset", body)
	}
	for _, c := range []struct {
		name        string
		token, org  string
		env         string
		body        any
		status      int
		code, field string
	}{
		{"no mode", owner, "acme", "dev", map[string]any{"from_environment": "qa"}, 422, cp.EINVALID, "mode"},
		{"unknown mode", owner, "acme", "dev", map[string]any{"mode": "partial", "from_environment": "qa"}, 422, cp.EINVALID, "mode"},
		{"schema with a source", owner, "acme", "dev", map[string]any{"mode": "schema", "from_environment": "qa"}, 422, cp.EINVALID, "from_environment"},
		{"not a clone, no source", owner, "acme", "dev", map[string]any{"mode": "full"}, 422, cp.EINVALID, "from_environment"},
		{"itself", owner, "acme", "dev", map[string]any{"mode": "full", "from_environment": "dev"}, 422, cp.EINVALID, "from_environment"},
		{"unknown source", owner, "acme", "dev", map[string]any{"mode": "full", "from_environment": "nope"}, 404, cp.ENOTFOUND, ""},
		{"source of another organization by id", owner, "acme", "dev", map[string]any{"mode": "full", "from_environment": theirs.ID}, 404, cp.ENOTFOUND, ""},
		{"environment of another organization", owner, "other", "theirs", map[string]any{"mode": "schema"}, 404, cp.ENOTFOUND, ""},
		{"protected", owner, "acme", "prod", map[string]any{"mode": "schema"}, 409, cp.ECONFLICT, ""},
		{"suspended", owner, "acme", "paused", map[string]any{"mode": "schema"}, 409, cp.ECONFLICT, ""},
		{"suspended source", owner, "acme", "dev", map[string]any{"mode": "full", "from_environment": "paused"}, 423, cp.ELOCKED, ""},
		{"unknown field", owner, "acme", "dev", map[string]any{"mode": "schema", "force": true}, 422, cp.EINVALID, "force"},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantProblem(t, post(c.token, c.org, c.env, c.body), c.status, c.code, c.field)
		})
	}
	var ops cp.List[*cp.Operation]
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/operations?kind=reset", nil).decode(t, &ops)
	if len(ops.Items) != 0 {
		t.Errorf("refused resets left %d operations", len(ops.Items))
	}
	if got, err := notes(t, dev.db(t, "readonly")); err != nil || got != "[kept]" {
		t.Errorf("after the refusals dev holds %s, %v", got, err)
	}

	// A member who cannot see the environment gets 404, as for any change.
	member := h.member(t, "acme", "member@example.com", cp.OrgMember)
	wantProblem(t, post(member, "acme", "dev", map[string]any{"mode": "schema"}), 404, cp.ENOTFOUND, "")
	// A named source in the organization is copied, rows or none.
	dev.reset(t, map[string]any{"mode": "full", "from_environment": "qa"})
	if _, err := notes(t, dev.db(t, "readonly")); err == nil {
		t.Error("a reset from an environment without notes left the notes table")
	}
}

// TestResetConverges stops a reset's process at each step, before and after
// the swap (its goroutine blocks there, as if the process had died, and its
// lease is not renewed), checks that the database holds the old contents or
// the new whole, that another reset is refused meanwhile, and lets another
// replica's reconciler finish it once the lease expires: the database then
// holds the new contents and nothing of the reset is left beside it.
func TestResetConverges(t *testing.T) {
	for _, c := range []struct {
		point   string
		swapped bool
	}{
		{"reset.stage_reset.after", false},
		{"reset.initialize_staged.after", false},
		{"reset.swap_reset.before", false},
		{"reset.swap_reset.after", true},
		{"reset.drop_old_contents.before", true},
	} {
		t.Run(c.point, func(t *testing.T) {
			h := newHarness(t)
			h.svc.Lease, h.svc.LeaseRenewal = time.Minute, time.Hour
			stopped, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			h.svc.CrashPoint = func(p string) {
				if p == c.point {
					once.Do(func() {
						close(stopped)
						<-release
					})
				}
			}
			t.Cleanup(func() {
				select {
				case <-release:
				default:
					close(release)
				}
			})
			h.org(t, "acme")
			src := resetEnv{h, "acme", "qa", "sqlite"}
			dev := resetEnv{h, "acme", "dev", "sqlite"}
			h.env(t, h.admin, "acme", "qa", "test")
			devView := h.env(t, h.admin, "acme", "dev", "development")
			src.exec(t, "admin", "CREATE TABLE notes (body TEXT)")
			src.exec(t, "readwrite", "INSERT INTO notes VALUES ('a'), ('b')")
			dev.exec(t, "admin", "CREATE TABLE notes (body TEXT)")
			dev.exec(t, "readwrite", "INSERT INTO notes VALUES ('old')")
			app := dev.db(t, "readwrite")

			var accepted cp.EnvironmentOperationResponse
			h.must(t, http.StatusAccepted, h.admin, "POST", "/v1/organizations/acme/environments/dev/reset", map[string]any{"mode": "full", "from_environment": "qa"}).decode(t, &accepted)
			select {
			case <-stopped:
			case <-time.After(30 * time.Second):
				t.Fatalf("the reset never reached %s", c.point)
			}
			want := "[old]"
			if c.swapped {
				want = "[a b]"
			}
			if got, err := notes(t, app); err != nil || got != want {
				t.Fatalf("stopped at %s the database holds %s, %v; want %s", c.point, got, err, want)
			}
			wantProblem(t, h.do(t, h.admin, "POST", "/v1/organizations/acme/environments/dev/reset", map[string]any{"mode": "schema"}), 409, cp.ECONFLICT, "")

			h.clock.Advance(2 * time.Minute)
			targets := make([]*cp.Target, 0, len(h.svc.Targets))
			for _, tg := range h.svc.Targets {
				targets = append(targets, tg)
			}
			other := cp.New(h.svc.Store, h.svc.Keyring, targets, h.svc.DefaultTarget)
			other.Now, other.Schema, other.Lease, other.LeaseOwner = h.clock.Now, h.svc.Schema, h.svc.Lease, "replica-2"
			other.Sleep = h.svc.Sleep
			if n, err := other.Reconcile(context.Background()); err != nil || n != 1 {
				t.Fatalf("the other replica resumed %d operations (err %v), want 1", n, err)
			}
			op, err := h.svc.Store.GetOperation(cp.WithPlatformScope(context.Background()), accepted.Operation.OrgID, accepted.Operation.ID)
			if err != nil || op.Status != cp.OpSucceeded {
				t.Fatalf("the resumed reset: %+v, %v", op, err)
			}
			// The stopped process wakes up and finds the operation taken.
			close(release)
			h.svc.Wait()
			if got, err := notes(t, app); err != nil || got != "[a b]" {
				t.Fatalf("after the resumed reset the database holds %s, %v; want [a b]", got, err)
			}
			db, err := h.svc.Store.GetEnvironmentDatabase(cp.WithPlatformScope(context.Background()), devView.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range h.databaseFiles(t, db.Name) {
				if strings.Contains(f, ".reset") {
					t.Errorf("the reset left %s behind", filepath.Base(f))
				}
			}
			var st cp.SchemaStatus
			h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments/dev/schema", nil).decode(t, &st)
			if len(st.Drift) != 0 || len(st.Tampered) != 0 {
				t.Fatalf("schema after the resumed reset: %+v", st)
			}
		})
	}
}

// TestResetKeepsWriteLimit: a PostgreSQL database over its storage limit,
// whose readwrite scope lost its write rights, does not get them back by
// being reset (the replacement is granted like a new database).
func TestResetKeepsWriteLimit(t *testing.T) {
	ctx := context.Background()
	pg := sharedPostgres(t)
	h := newHarness(t, withTargets(&cp.Target{Name: "pg", Region: "local", Driver: pg}))
	h.org(t, "acme")
	dev := resetEnv{h, "acme", "dev", "pgx"}
	qa := resetEnv{h, "acme", "qa", "pgx"}
	for _, e := range []resetEnv{dev, qa} {
		h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": e.slug, "type": "development", "target": "pg"})
		e.exec(t, "admin", "CREATE TABLE notes (body text)")
	}
	h.must(t, http.StatusOK, h.admin, "PATCH", "/v1/organizations/acme/environments/dev", map[string]any{"storage_limit_mb": 1})
	h.svc.Tick(ctx)
	if u := h.usageOf(t, "acme", "dev"); !u.OverLimit {
		t.Fatalf("not over a 1 MiB limit: %+v", u)
	}
	write := func() error { _, err := dev.db(t, "readwrite").Exec("INSERT INTO notes VALUES ('x')"); return err }
	if err := write(); err == nil {
		t.Fatal("readwrite wrote over the limit before the reset")
	}
	dev.reset(t, map[string]any{"mode": "full", "from_environment": "qa"})
	if err := write(); err == nil || !strings.Contains(err.Error(), "42501") {
		t.Fatalf("after the reset readwrite writes over the limit: %v", err)
	}
	if _, err := qa.db(t, "readwrite").Exec("INSERT INTO notes VALUES ('y')"); err != nil {
		t.Fatalf("the source lost its writes: %v", err)
	}
}

// TestResetIdempotencyKey: a reset retried with its Idempotency-Key replays
// the first answer instead of resetting twice; another body under the same
// key is 422.
func TestResetIdempotencyKey(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	h.env(t, h.admin, "acme", "dev", "development")
	path := "/v1/organizations/acme/environments/dev/reset"
	var first, again cp.EnvironmentOperationResponse
	h.must(t, http.StatusAccepted, h.admin, "POST", path, map[string]any{"mode": "schema"}, "Idempotency-Key", "reset-1").decode(t, &first)
	h.svc.Wait()
	h.must(t, http.StatusAccepted, h.admin, "POST", path, map[string]any{"mode": "schema"}, "Idempotency-Key", "reset-1").decode(t, &again)
	if again.Operation == nil || again.Operation.ID != first.Operation.ID {
		t.Fatalf("the retry answered operation %+v, want %s", again.Operation, first.Operation.ID)
	}
	wantProblem(t, h.do(t, h.admin, "POST", path, map[string]any{"mode": "full", "from_environment": "default"}, "Idempotency-Key", "reset-1"), 422, cp.EIDEMPOTENCY, "")
	var ops cp.List[*cp.Operation]
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/operations?kind=reset", nil).decode(t, &ops)
	if len(ops.Items) != 1 {
		t.Fatalf("%d reset operations after a retried request, want 1", len(ops.Items))
	}
}
