package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/backupstore"
	"github.com/envplane/envplane/controlplane/httpapi"
	"github.com/envplane/envplane/controlplane/keyring/local"
	pgstore "github.com/envplane/envplane/controlplane/store/postgres"
	sqlitestore "github.com/envplane/envplane/controlplane/store/sqlite"
	"github.com/envplane/envplane/dataplane"
	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/drivertest"
	pgdriver "github.com/envplane/envplane/drivers/postgres"
	sqlitedriver "github.com/envplane/envplane/drivers/sqlite"
	"github.com/envplane/envplane/migrations"
)

// clock is a test clock the service reads; tests move it forward. A
// running clock (newRunningClock) also moves with real time.
type clock struct {
	mu      sync.Mutex
	now     time.Time
	running bool
	start   time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return c.now.Add(time.Since(c.start)).UTC()
	}
	return c.now
}

// newRunningClock returns a clock that follows real time from now on, for
// tests where grace periods and watches must pass on their own.
func newRunningClock() *clock {
	now := time.Now()
	return &clock{now: now.UTC(), running: true, start: now}
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness is a whole envplane on its embedded default: SQLite store, local
// keyring, SQLite target, real schema initializer, the real echo server.
type harness struct {
	svc     *cp.Service
	srv     *httptest.Server
	clock   *clock
	logs    *syncBuffer
	dataDir string
	// storeURL is the PostgreSQL store's URL; empty for SQLite.
	storeURL string
	admin    string
}

type harnessOption func(*harnessConfig)

type harnessConfig struct {
	wrap     func(drivers.Driver) drivers.Driver
	targets  []*cp.Target
	postgres bool
	clock    *clock
	// wrapStore, when set, puts something in front of the store (fault injection, counting).
	wrapStore func(cp.Store) cp.Store
	// keyring, when set, builds the keyring from the data directory
	// (default: the local key file there, followed while serving).
	keyring func(dir string) cp.Keyring
	// noCache turns the router's cache off (cold-path benchmarks).
	noCache bool
	// logLevel is the server log's level (default debug).
	logLevel slog.Level
	// keepDatabases skips dropping the server targets' databases at cleanup
	// (scale benchmarks whose databases were never created).
	keepDatabases bool
	// replicaOf, when set, makes this harness a second replica of that one:
	// the same PostgreSQL store, key file, SQLite target and admin token.
	replicaOf *harness
}

// asReplicaOf makes the harness another replica over first's store (which
// must be PostgreSQL), keyring and SQLite target, with a clock of its own.
func asReplicaOf(first *harness) harnessOption {
	return func(c *harnessConfig) { c.replicaOf = first }
}

// newClock returns a test clock that starts at the real time, so that
// servers which check expiry by their own clock (PostgreSQL's VALID UNTIL,
// tursodb's tokens) agree with it, and the suite passes on any date.
func newClock() *clock { return &clock{now: time.Now().UTC().Truncate(time.Second)} }

// withClock makes the harness read clk, for tests that give the same clock
// to targets they build themselves.
func withClock(clk *clock) harnessOption {
	return func(c *harnessConfig) { c.clock = clk }
}

// withPostgresStore keeps the control plane in a fresh database on the
// PostgreSQL server instead of SQLite.
func withPostgresStore() harnessOption {
	return func(c *harnessConfig) { c.postgres = true }
}

// withTargets adds targets beside the SQLite target "local".
func withTargets(ts ...*cp.Target) harnessOption {
	return func(c *harnessConfig) { c.targets = append(c.targets, ts...) }
}

// withDriver wraps the SQLite target's driver (fault injection).
func withDriver(wrap func(drivers.Driver) drivers.Driver) harnessOption {
	return func(c *harnessConfig) { c.wrap = wrap }
}

// withKeyring makes the harness use the keyring kr builds from its data directory.
func withKeyring(kr func(dir string) cp.Keyring) harnessOption {
	return func(c *harnessConfig) { c.keyring = kr }
}

// withoutCache turns the router's cache off, so every resolve reads the
// store and unseals with the keyring.
func withoutCache() harnessOption {
	return func(c *harnessConfig) { c.noCache = true }
}

// withoutDroppingDatabases skips dropping the targets' databases at cleanup.
func withoutDroppingDatabases() harnessOption {
	return func(c *harnessConfig) { c.keepDatabases = true }
}

// withLogLevel sets the server log's level (benchmarks log as serve does by default: info).
func withLogLevel(l slog.Level) harnessOption {
	return func(c *harnessConfig) { c.logLevel = l }
}

func newHarness(tb testing.TB, opts ...harnessOption) *harness {
	tb.Helper()
	// ENVPLANE_TEST_STORE=postgres runs every harness on the PostgreSQL
	// store (and so under row-level security, ADR 0027), not only the
	// tests that ask for it.
	hc := harnessConfig{logLevel: slog.LevelDebug, postgres: os.Getenv("ENVPLANE_TEST_STORE") == "postgres"}
	for _, o := range opts {
		o(&hc)
	}
	ctx := context.Background()
	dir := tb.TempDir()
	storeURL := ""
	if first := hc.replicaOf; first != nil {
		dir, storeURL = first.dataDir, first.storeURL
	} else if hc.postgres {
		storeURL = drivertest.NewPostgresStoreDatabase(tb)
	}
	var store cp.Store
	var err error
	if storeURL != "" {
		store, err = pgstore.Open(ctx, storeURL)
	} else {
		store, err = sqlitestore.Open(ctx, filepath.Join(dir, "controlplane.db"))
	}
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	if hc.wrapStore != nil {
		store = hc.wrapStore(store)
	}
	var kr cp.Keyring
	if hc.keyring != nil {
		kr = hc.keyring(dir)
	} else if kr, _, err = local.OpenFile(filepath.Join(dir, "master.key")); err != nil {
		tb.Fatalf("keyring: %v", err)
	}
	clk := hc.clock
	if clk == nil {
		clk = newClock()
	}
	var d drivers.Driver
	d, err = sqlitedriver.New(sqlitedriver.Config{Dir: filepath.Join(dir, "databases"), Now: clk.Now})
	if err != nil {
		tb.Fatalf("driver: %v", err)
	}
	if hc.wrap != nil {
		d = hc.wrap(d)
	}
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: hc.logLevel}))
	svc := cp.New(store, kr, append([]*cp.Target{{Name: "local", Region: "local", Driver: d}}, hc.targets...), "local")
	svc.Logger = logger
	svc.Now = clk.Now
	if hc.noCache {
		svc.ConfigureCache(0, cp.DefaultCacheTTL)
	}
	svc.Sleep = func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
	svc.Schema = &dataplane.Initializer{System: migrations.DataPlane(), Now: clk.Now}
	if svc.Backups, err = backupstore.NewDir(filepath.Join(dir, "backups")); err != nil {
		tb.Fatalf("backup store: %v", err)
	}
	reg := prometheus.NewRegistry()
	ops, err := httpapi.NewOperationMetrics(reg)
	if err != nil {
		tb.Fatalf("metrics: %v", err)
	}
	svc.Observer = ops
	srv, err := httpapi.NewServer(svc, logger, reg, httpapi.Options{})
	if err != nil {
		tb.Fatalf("server: %v", err)
	}
	ts := httptest.NewServer(srv)
	h := &harness{svc: svc, srv: ts, clock: clk, logs: logs, dataDir: dir, storeURL: storeURL}
	// As serve does: follow the change log (the cache answers only while it
	// does) and flush receipts.
	follow, stopFollow := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		svc.Follow(follow)
	}()
	tb.Cleanup(func() {
		// Watches first: the server's Close waits for the requests it serves.
		svc.CloseWatches()
		ts.Close()
		stopFollow()
		<-followed
		svc.Wait()
		if err := store.Close(); err != nil {
			tb.Errorf("close store: %v", err)
		}
	})
	if hc.replicaOf != nil {
		h.admin = hc.replicaOf.admin
		return h
	}
	if !hc.keepDatabases {
		tb.Cleanup(func() { dropServerDatabases(tb, svc) })
	}
	token, err := svc.Bootstrap(ctx, cp.BootstrapRequest{Email: "ops@example.com"})
	if err != nil || token == "" {
		tb.Fatalf("bootstrap: token issued=%v err=%v", token != "", err)
	}
	h.admin = token
	return h
}

// response is one API answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// environment returns the environment of a 201 or 202 answer to an
// environment change: {environment, operation}.
func (r response) environment(tb testing.TB) cp.EnvironmentView {
	tb.Helper()
	var body cp.EnvironmentOperationResponse
	r.decode(tb, &body)
	if body.Environment == nil || body.Operation == nil {
		tb.Fatalf("%d answer lacks the environment or the operation: %s", r.status, r.body)
	}
	return *body.Environment
}

// decode unmarshals the body into v.
func (r response) decode(tb testing.TB, v any) {
	tb.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		tb.Fatalf("decode %d answer: %v", r.status, err)
	}
}

// problem decodes a problem+json answer.
func (r response) problem(tb testing.TB) httpapi.Problem {
	tb.Helper()
	if ct := r.header.Get("Content-Type"); ct != httpapi.ProblemContentType {
		tb.Fatalf("content type %q, want %q (status %d)", ct, httpapi.ProblemContentType, r.status)
	}
	var p httpapi.Problem
	r.decode(tb, &p)
	return p
}

// do sends a request with token (none if empty) and a raw or JSON body.
func (h *harness) do(tb testing.TB, token, method, path string, body any, headers ...string) response {
	tb.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			tb.Fatalf("marshal: %v", err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, h.srv.URL+path, rd)
	if err != nil {
		tb.Fatalf("request: %v", err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: raw}
}

// must sends a request and fails the test unless the status is want.
func (h *harness) must(tb testing.TB, want int, token, method, path string, body any, headers ...string) response {
	tb.Helper()
	r := h.do(tb, token, method, path, body, headers...)
	if r.status != want {
		tb.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r
}

// org creates an organization as the platform admin and returns its slug.
func (h *harness) org(tb testing.TB, slug string) cp.CreateOrganizationResponse {
	tb.Helper()
	var resp cp.CreateOrganizationResponse
	h.must(tb, http.StatusCreated, h.admin, "POST", "/v1/organizations", map[string]any{"slug": slug, "name": slug}).decode(tb, &resp)
	return resp
}

// env creates an environment and waits for it to be active.
func (h *harness) env(tb testing.TB, token, org, slug, typ string) cp.EnvironmentView {
	tb.Helper()
	v := h.must(tb, http.StatusCreated, token, "POST", "/v1/organizations/"+org+"/environments", map[string]any{"slug": slug, "type": typ}).environment(tb)
	if v.Status != cp.StatusActive {
		tb.Fatalf("environment %s is %s, want active", slug, v.Status)
	}
	return v
}

// member adds a user to an org and returns a user key for them.
func (h *harness) member(tb testing.TB, org, email string, role cp.OrgRole) string {
	tb.Helper()
	h.must(tb, http.StatusCreated, h.admin, "POST", "/v1/organizations/"+org+"/members", map[string]any{"email": email, "role": role})
	var key cp.CreateAPIKeyResponse
	h.must(tb, http.StatusCreated, h.admin, "POST", "/v1/organizations/"+org+"/api-keys", map[string]any{"name": email, "user": email}).decode(tb, &key)
	return key.Token
}

// dropServerDatabases drops every database the test left on targets other
// than the SQLite one in its temporary directory: the PostgreSQL server and
// the Turso double outlive the test.
func dropServerDatabases(tb testing.TB, svc *cp.Service) {
	tb.Helper()
	ctx := context.Background()
	orgs, _, err := svc.Store.ListOrganizations(cp.WithPlatformScope(ctx), nil, cp.Page{Limit: cp.MaxPageLimit})
	if err != nil {
		tb.Errorf("cleanup: list organizations: %v", err)
		return
	}
	for _, org := range orgs {
		envs, _, err := svc.Store.ListEnvironments(cp.WithPlatformScope(ctx), cp.EnvironmentFilter{OrgID: org.ID, IncludeDeleted: true}, cp.Page{Limit: cp.MaxPageLimit})
		if err != nil {
			tb.Errorf("cleanup: list environments: %v", err)
			return
		}
		for _, env := range envs {
			db, err := svc.Store.GetEnvironmentDatabase(cp.WithPlatformScope(ctx), env.ID)
			if err != nil || db.Target == "local" {
				continue
			}
			if t, ok := svc.Targets[db.Target]; ok {
				if _, err := t.Driver.DropDatabase(ctx, drivers.DropDatabaseRequest{Database: db.DriverDatabase()}); err != nil {
					tb.Errorf("cleanup: drop %s: %v", db.Name, err)
				}
			}
		}
	}
}

// sharedPostgres is a PostgreSQL driver on the shared server (trust
// authentication: for tests where passwords do not matter), closed at the
// end of the test.
func sharedPostgres(tb testing.TB) *pgdriver.Driver {
	tb.Helper()
	pg, err := pgdriver.New(context.Background(), pgdriver.Config{AdminURL: drivers.Secret(drivertest.PostgresAdminURL(tb)), AppSSLMode: "disable"})
	if err != nil {
		tb.Fatalf("postgres driver: %v", err)
	}
	tb.Cleanup(pg.Close)
	return pg
}
