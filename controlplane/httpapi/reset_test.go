package httpapi_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"strings"
	"testing"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/dataplane/router"
	"github.com/envplane/envplane/dataplane/router/sqlopen"
	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/drivertest"
	pgdriver "github.com/envplane/envplane/drivers/postgres"
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
// the SQLite and PostgreSQL targets: the contents are replaced, the
// environment id, its credentials and its DSN stay, an application holding
// a router pool keeps working with the same credential, and the schema
// initializer finds the database whole (owner row, ledger, no drift).
func TestReset(t *testing.T) {
	ctx := context.Background()
	pg, err := pgdriver.New(ctx, pgdriver.Config{AdminURL: drivers.Secret(drivertest.PostgresAdminURL(t)), AppSSLMode: "disable"})
	if err != nil {
		t.Fatalf("postgres driver: %v", err)
	}
	t.Cleanup(pg.Close)
	h := newHarness(t, withTargets(&cp.Target{Name: "pg", Region: "local", Driver: pg}))
	h.org(t, "acme")
	for _, c := range []struct{ target, sqlDriver string }{{"local", "sqlite"}, {"pg", "pgx"}} {
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
