package httpapi_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/drivers"
)

// usageOf reads an environment's usage through the API.
func (h *harness) usageOf(tb testing.TB, org, env string) cp.EnvironmentUsage {
	tb.Helper()
	var u cp.EnvironmentUsage
	h.must(tb, http.StatusOK, h.admin, "GET", "/v1/organizations/"+org+"/environments/"+env+"/usage", nil).decode(tb, &u)
	return u
}

// sqlConn opens the environment's database with the scope's DSN from the router.
func (h *harness) sqlConn(tb testing.TB, sqlDriver, org, env string, scope drivers.Scope) *sql.DB {
	tb.Helper()
	var conn cp.Connection
	h.must(tb, http.StatusOK, h.admin, "GET", "/v1/organizations/"+org+"/environments/"+env+"/connection?scope="+string(scope), nil).decode(tb, &conn)
	db, err := sql.Open(sqlDriver, conn.DSN.Reveal())
	if err != nil {
		tb.Fatalf("open %s: %v", env, err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// Usage is measured by Tick on every driver — SQLite files, the real
// PostgreSQL server and Turso through its contract-checked double — never on
// a request; a pass measures what is due, and the organization's usage sums
// the environments per type.
func TestUsageMeasuredInBackground(t *testing.T) {
	ctx := context.Background()
	pg := sharedPostgres(t)
	clk := newClock()
	edge, _ := tursoTarget(t, clk)
	h := newHarness(t, withClock(clk), withTargets(&cp.Target{Name: "pg", Region: "local", Driver: pg}, edge))
	h.org(t, "acme")
	for _, e := range []struct{ slug, typ, target string }{
		{"lite", "development", "local"}, {"pg", "development", "pg"}, {"edge", "staging", "edge"},
	} {
		h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": e.slug, "type": e.typ, "target": e.target})
	}
	if _, err := h.sqlConn(t, "sqlite", "acme", "lite", drivers.ScopeAdmin).Exec("CREATE TABLE notes (body TEXT)"); err != nil {
		t.Fatal(err)
	}

	// Nothing measured yet: the request path does not measure.
	if u := h.usageOf(t, "acme", "lite"); u.Usage != nil || u.OverLimit {
		t.Fatalf("usage before any pass: %+v", u)
	}

	h.svc.Tick(ctx)
	lite, pgu, edgeu := h.usageOf(t, "acme", "lite"), h.usageOf(t, "acme", "pg"), h.usageOf(t, "acme", "edge")
	for _, u := range []cp.EnvironmentUsage{lite, pgu, edgeu} {
		if u.Usage == nil || u.Usage.SizeBytes <= 0 || !u.Usage.MeasuredAt.Equal(clk.Now()) {
			t.Fatalf("%s not measured at %v: %+v", u.Environment, clk.Now(), u.Usage)
		}
	}
	if lite.Usage.Tables == nil || *lite.Usage.Tables != 1 || lite.Usage.Connections != nil {
		t.Fatalf("sqlite usage: tables %v connections %v, want 1 table and no connection count", lite.Usage.Tables, lite.Usage.Connections)
	}
	if pgu.Usage.Tables == nil || *pgu.Usage.Tables != 0 || pgu.Usage.Connections == nil {
		t.Fatalf("postgres usage: tables %v connections %v, want 0 tables and a connection count", pgu.Usage.Tables, pgu.Usage.Connections)
	}
	if edgeu.Usage.Tables != nil || edgeu.Usage.Connections != nil {
		t.Fatalf("turso usage tells what Turso does not: %+v", edgeu.Usage)
	}

	// Nothing is due again before UsageInterval; then everything is.
	first := lite.Usage.MeasuredAt
	clk.Advance(h.svc.UsageInterval / 2)
	h.svc.Tick(ctx)
	if got := h.usageOf(t, "acme", "lite").Usage.MeasuredAt; !got.Equal(first) {
		t.Fatalf("measured again at %v before it was due", got)
	}
	clk.Advance(h.svc.UsageInterval)
	h.svc.Tick(ctx)
	if got := h.usageOf(t, "acme", "lite").Usage.MeasuredAt; !got.Equal(clk.Now()) {
		t.Fatalf("measured at %v, want %v once due", got, clk.Now())
	}

	var org cp.OrganizationUsage
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/usage", nil).decode(t, &org)
	byType := map[cp.EnvironmentType]*cp.UsageTotal{}
	var sum int64
	for _, tt := range org.Types {
		byType[tt.Type] = tt
		sum += tt.SizeBytes
	}
	dev, staging := byType[cp.TypeDevelopment], byType[cp.TypeStaging]
	lite, pgu = h.usageOf(t, "acme", "lite"), h.usageOf(t, "acme", "pg")
	if dev == nil || dev.Environments != 2 || dev.Measured != 2 || dev.SizeBytes != lite.Usage.SizeBytes+pgu.Usage.SizeBytes || dev.Tables != 1 {
		t.Fatalf("development total %+v, want lite and pg summed", dev)
	}
	if staging == nil || staging.Environments != 1 || byType[cp.TypeDefault] == nil || org.SizeBytes != sum {
		t.Fatalf("organization usage %+v", org)
	}

	// A member sees the sums of the environments they can see only; app
	// keys read no usage.
	viewer := h.member(t, "acme", "viewer@acme.test", cp.OrgMember)
	h.must(t, http.StatusOK, h.admin, "PUT", "/v1/organizations/acme/environments/edge/members/viewer@acme.test", map[string]any{"role": "env_viewer"})
	h.must(t, http.StatusOK, viewer, "GET", "/v1/organizations/acme/usage", nil).decode(t, &org)
	if len(org.Types) != 1 || org.Types[0].Type != cp.TypeStaging {
		t.Fatalf("a viewer of edge sees %+v", org.Types)
	}
	h.must(t, http.StatusOK, viewer, "GET", "/v1/organizations/acme/environments/edge/usage", nil)
	h.must(t, http.StatusNotFound, viewer, "GET", "/v1/organizations/acme/environments/lite/usage", nil)
}

// A SQLite environment that grows past its storage limit is flagged and
// audited once, and clears (audited once more) when it shrinks; the
// organization's gauges follow. Only owners and admins set the limit, within
// bounds, and bad input changes nothing.
func TestStorageLimitSQLite(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	h.org(t, "acme")
	h.org(t, "other")
	h.env(t, h.admin, "acme", "dev", "development")
	envAdmin := h.member(t, "acme", "lead@acme.test", cp.OrgMember)
	h.must(t, http.StatusOK, h.admin, "PUT", "/v1/organizations/acme/environments/dev/members/lead@acme.test", map[string]any{"role": "env_admin"})

	path := "/v1/organizations/acme/environments/dev"
	wantProblem(t, h.do(t, envAdmin, "PATCH", path, map[string]any{"storage_limit_mb": 1}), http.StatusForbidden, "forbidden", "")
	for _, bad := range []any{0, -1, cp.MaxStorageLimitMB + 1} {
		wantProblem(t, h.do(t, h.admin, "PATCH", path, map[string]any{"storage_limit_mb": bad, "name": "renamed"}), http.StatusUnprocessableEntity, "invalid", "storage_limit_mb")
	}
	for _, bad := range []string{`{"storage_limit_mb":"1"}`, `{"storage_limit_mb":1.5}`, `{"storage_limit_mb":1e30}`, `{"storage_limit_mb":[1]}`} {
		if r := h.do(t, h.admin, "PATCH", path, bad); r.status != http.StatusBadRequest && r.status != http.StatusUnprocessableEntity {
			t.Fatalf("%s: %d, want 400 or 422", bad, r.status)
		}
	}
	h.must(t, http.StatusNotFound, h.admin, "PATCH", "/v1/organizations/other/environments/dev", map[string]any{"storage_limit_mb": 1})
	// The organization's storage quota bounds an environment's limit.
	h.must(t, http.StatusOK, h.admin, "PATCH", "/v1/organizations/acme", map[string]any{"max_storage_mb": 50})
	wantProblem(t, h.do(t, h.admin, "PATCH", path, map[string]any{"storage_limit_mb": 51, "name": "renamed"}), http.StatusUnprocessableEntity, "invalid", "storage_limit_mb")
	if v := h.envView(t, "acme", "dev"); v.Name == "renamed" || v.Database.StorageLimitMB != 0 {
		t.Fatalf("refused updates changed the environment: %+v", v.Database)
	}

	var v cp.EnvironmentView
	h.must(t, http.StatusOK, h.admin, "PATCH", path, map[string]any{"storage_limit_mb": 1}).decode(t, &v)
	if v.Database.StorageLimitMB != 1 || v.Database.OverLimit {
		t.Fatalf("after setting the limit: %+v", v.Database)
	}
	admin := h.sqlConn(t, "sqlite", "acme", "dev", drivers.ScopeAdmin)
	if _, err := admin.Exec("CREATE TABLE blobs (b BLOB); INSERT INTO blobs VALUES (zeroblob(2 * 1024 * 1024))"); err != nil {
		t.Fatal(err)
	}
	h.svc.Tick(ctx)
	if u := h.usageOf(t, "acme", "dev"); !u.OverLimit || u.Usage.SizeBytes <= 1<<20 || u.StorageLimitMB != 1 {
		t.Fatalf("2 MiB under a 1 MiB limit: %+v", u)
	}
	if !h.envView(t, "acme", "dev").Database.OverLimit {
		t.Fatal("the environment does not show over_limit")
	}
	ev := h.auditEvent(t, "acme", "environment.over_limit")
	if ev == nil || ev.Actor != "system" || ev.Details["writes_limited"] != false {
		t.Fatalf("over-limit audit event: %+v", ev)
	}
	metrics := h.metrics(t)
	if !strings.Contains(metrics, `envplane_environments_over_limit{org="acme"} 1`) || !strings.Contains(metrics, `envplane_org_storage_bytes{org="acme"}`) {
		t.Fatalf("usage gauges missing:\n%s", grepLines(metrics, "envplane_"))
	}
	if strings.Contains(metrics, `env="`) || strings.Contains(metrics, `environment="`) {
		t.Fatal("a metric is labelled per environment")
	}

	// Still over at the next measurement: no second event.
	clk := h.clock
	clk.Advance(h.svc.UsageInterval)
	h.svc.Tick(ctx)
	if n := h.countActions(t, "acme", "environment.over_limit"); n != 1 {
		t.Fatalf("%d over-limit events, want 1 per crossing", n)
	}

	if _, err := admin.Exec("DELETE FROM blobs; VACUUM"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(h.svc.UsageInterval)
	h.svc.Tick(ctx)
	if u := h.usageOf(t, "acme", "dev"); u.OverLimit || u.Usage.SizeBytes > 1<<20 {
		t.Fatalf("after shrinking: %+v", u)
	}
	clk.Advance(h.svc.UsageInterval)
	h.svc.Tick(ctx)
	if n := h.countActions(t, "acme", "environment.under_limit"); n != 1 {
		t.Fatalf("%d under-limit events, want 1", n)
	}
	if !strings.Contains(h.metrics(t), `envplane_environments_over_limit{org="acme"} 0`) {
		t.Fatal("the over-limit gauge did not clear")
	}
}

// On a PostgreSQL control-plane store and target, an environment over its
// limit keeps reading but its readwrite credential can no longer write;
// raising the limit gives writes back at the next pass.
func TestStorageLimitPostgres(t *testing.T) {
	ctx := context.Background()
	pg := sharedPostgres(t)
	h := newHarness(t, withPostgresStore(), withTargets(&cp.Target{Name: "pg", Region: "local", Driver: pg}))
	h.org(t, "acme")
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "dev", "type": "development", "target": "pg"})
	if _, err := h.sqlConn(t, "pgx", "acme", "dev", drivers.ScopeAdmin).Exec("CREATE TABLE notes (body text)"); err != nil {
		t.Fatal(err)
	}
	rw := h.sqlConn(t, "pgx", "acme", "dev", drivers.ScopeReadWrite)
	write := func() error { _, err := rw.Exec("INSERT INTO notes VALUES ('x')"); return err }
	if err := write(); err != nil {
		t.Fatalf("readwrite cannot write under no limit: %v", err)
	}

	// An empty PostgreSQL database is several MiB: 1 MiB is exceeded.
	h.must(t, http.StatusOK, h.admin, "PATCH", "/v1/organizations/acme/environments/dev", map[string]any{"storage_limit_mb": 1})
	if err := write(); err != nil {
		t.Fatalf("writes refused before the pass applied the limit: %v", err)
	}
	h.svc.Tick(ctx)
	if u := h.usageOf(t, "acme", "dev"); !u.OverLimit {
		t.Fatalf("not over a 1 MiB limit: %+v", u)
	}
	if err := write(); err == nil || !strings.Contains(err.Error(), "42501") {
		t.Fatalf("readwrite wrote over the limit: %v", err)
	}
	var n int
	if err := rw.QueryRow("SELECT count(*) FROM notes").Scan(&n); err != nil || n != 2 {
		t.Fatalf("readwrite cannot read over the limit: %d, %v", n, err)
	}
	if ev := h.auditEvent(t, "acme", "environment.over_limit"); ev == nil || ev.Details["writes_limited"] != true {
		t.Fatalf("over-limit audit event: %+v", ev)
	}

	// Raising the limit makes the database due at once.
	h.must(t, http.StatusOK, h.admin, "PATCH", "/v1/organizations/acme/environments/dev", map[string]any{"storage_limit_mb": 1024})
	h.svc.Tick(ctx)
	if u := h.usageOf(t, "acme", "dev"); u.OverLimit {
		t.Fatalf("still over a 1 GiB limit: %+v", u)
	}
	if err := write(); err != nil {
		t.Fatalf("readwrite cannot write after the limit was lifted: %v", err)
	}
	if h.auditEvent(t, "acme", "environment.under_limit") == nil {
		t.Fatal("no under-limit audit event")
	}
}

// metrics returns the /metrics page.
func (h *harness) metrics(tb testing.TB) string {
	tb.Helper()
	resp, err := http.Get(h.srv.URL + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// usageProbe wraps a driver and counts, or fails, its usage measurements.
type usageProbe struct {
	drivers.Driver
	mu    sync.Mutex
	calls int
	down  bool
}

func (p *usageProbe) Usage(ctx context.Context, db drivers.Database) (drivers.Usage, error) {
	p.mu.Lock()
	p.calls++
	down := p.down
	p.mu.Unlock()
	if down {
		return drivers.Usage{}, fmt.Errorf("probe: %w", drivers.ErrUnavailable)
	}
	return p.Driver.(drivers.UsageReporter).Usage(ctx, db)
}

func (p *usageProbe) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

// A pass leaves a target alone once it answered unavailable, until its
// backoff ends, and measures its databases when it is back.
func TestUsageSkipsTargetsThatAreDown(t *testing.T) {
	ctx := context.Background()
	probe := &usageProbe{down: true}
	h := newHarness(t, withDriver(func(d drivers.Driver) drivers.Driver { probe.Driver = d; return probe }))
	h.org(t, "acme")
	h.env(t, h.admin, "acme", "dev", "development")

	h.svc.Tick(ctx)
	if n := probe.count(); n != 1 {
		t.Fatalf("%d measurements on a target that went down at the first, want 1", n)
	}
	h.svc.Tick(ctx)
	if n := probe.count(); n != 1 {
		t.Fatalf("a down target was measured again before its backoff ended (%d calls)", n)
	}
	if u := h.usageOf(t, "acme", "dev"); u.Usage != nil {
		t.Fatalf("usage recorded from a down target: %+v", u.Usage)
	}

	probe.mu.Lock()
	probe.down = false
	probe.mu.Unlock()
	h.clock.Advance(h.svc.UsageInterval)
	h.svc.Tick(ctx)
	if u := h.usageOf(t, "acme", "dev"); u.Usage == nil || u.Usage.SizeBytes <= 0 {
		t.Fatalf("not measured once the target is back: %+v", u)
	}
}
