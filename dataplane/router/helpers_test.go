package router_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envplane/envplane/dataplane/router"
	"github.com/envplane/envplane/dataplane/router/sqlopen"
	"github.com/envplane/envplane/drivers"
)

// seenRequest is what the router double received.
type seenRequest struct {
	method, path, rawPath, query, auth, accept string
}

// answer is what the router double answers next.
type answer struct {
	status      int
	contentType string
	body        []byte
	// hangup closes the connection without answering.
	hangup bool
}

// routerServer is the router client's peer: an httptest server that answers
// with what the test sets and records every request.
type routerServer struct {
	srv   *httptest.Server
	token string

	mu       sync.Mutex
	next     answer
	requests []seenRequest
}

func newRouterServer(tb testing.TB) *routerServer {
	tb.Helper()
	s := &routerServer{token: "ep_test_" + strings.Repeat("k", 24), next: answer{status: http.StatusNotFound}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.srv.Close)
	return s
}

func (s *routerServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, seenRequest{
		method: r.Method, path: r.URL.Path, rawPath: r.URL.EscapedPath(), query: r.URL.RawQuery,
		auth: r.Header.Get("Authorization"), accept: r.Header.Get("Accept"),
	})
	a := s.next
	s.mu.Unlock()
	if a.hangup {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	if a.contentType != "" {
		w.Header().Set("Content-Type", a.contentType)
	}
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

// client returns a client of the double with its token.
func (s *routerServer) client() *router.Client {
	return &router.Client{BaseURL: s.srv.URL, Token: drivers.Secret(s.token), HTTPClient: s.srv.Client()}
}

// answerWith makes the double answer with a connection.
func (s *routerServer) answerWith(tb testing.TB, c wireConnection) {
	tb.Helper()
	raw, err := json.Marshal(c)
	if err != nil {
		tb.Fatalf("marshal connection: %v", err)
	}
	s.set(answer{status: http.StatusOK, contentType: "application/json", body: raw})
}

// answerProblem makes the double answer with a problem+json refusal.
func (s *routerServer) answerProblem(status int, code, detail string) {
	raw, _ := json.Marshal(map[string]any{
		"type": "https://envplane.dev/problems/" + code, "title": http.StatusText(status),
		"status": status, "detail": detail, "code": code,
	})
	s.set(answer{status: status, contentType: "application/problem+json", body: raw})
}

func (s *routerServer) set(a answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next = a
}

// seen returns the requests received so far.
func (s *routerServer) seen() []seenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seenRequest(nil), s.requests...)
}

// wireConnection is the control plane's JSON answer, written here as the
// control plane writes it (the data plane does not import it).
type wireConnection struct {
	EnvironmentID string     `json:"environment_id"`
	Organization  string     `json:"organization"`
	Environment   string     `json:"environment"`
	Driver        string     `json:"driver"`
	Scope         string     `json:"scope"`
	DSN           string     `json:"dsn"`
	URL           string     `json:"url"`
	Host          string     `json:"host,omitempty"`
	Port          int        `json:"port,omitempty"`
	Database      string     `json:"database"`
	Username      string     `json:"username,omitempty"`
	Secret        string     `json:"secret"`
	CredentialID  string     `json:"credential_id"`
	ExpiresAt     *time.Time `json:"expires_at,omitempty"`
	RefreshAfter  time.Time  `json:"refresh_after"`
}

// sqliteDSN returns the DSN of a SQLite file in dir, as the SQLite driver
// writes it, created if absent (mode=rwc) so the test needs no driver.
func sqliteDSN(path string) string {
	return "file:" + (&url.URL{Path: filepath.ToSlash(path)}).EscapedPath() + "?mode=rwc&_pragma=busy_timeout(10000)"
}

// sqliteConnection is a readwrite connection to the SQLite file at path with
// credential id, to refresh after refresh.
func sqliteConnection(path, id string, refresh time.Time) wireConnection {
	dsn := sqliteDSN(path)
	return wireConnection{
		EnvironmentID: "env_01", Organization: "acme", Environment: "dev", Driver: "sqlite",
		Scope: "readwrite", DSN: dsn, URL: dsn, Database: path, Username: "readwrite_a",
		Secret: "sqlite-token-" + id, CredentialID: id, RefreshAfter: refresh,
	}
}

// wait is one wait of the pool's background refresher.
type wait struct {
	d    time.Duration
	fire chan time.Time
}

// fakeClock is the pool's clock: time moves only when the test advances it,
// and every wait of the refresher is handed to the test, which fires it.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits chan wait
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC), waits: make(chan wait, 1024)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	w := wait{d: d, fire: make(chan time.Time, 1)}
	c.waits <- w
	return w.fire
}

// next returns the refresher's next wait: once it is there, the refresher
// has finished what it was doing and sleeps.
func (c *fakeClock) next(tb testing.TB) wait {
	tb.Helper()
	return <-c.waits
}

// fire ends w and returns the refresher's next wait, so the refresher's
// round (refresh when due, close drained pools) is over.
func (c *fakeClock) fire(tb testing.TB, w wait) wait {
	tb.Helper()
	w.fire <- c.Now()
	return c.next(tb)
}

// options are pool options on the fake clock.
func (c *fakeClock) options() router.Options {
	return router.Options{Now: c.Now, After: c.After}
}

// opener records the pools it opens with sqlopen.Open.
type opener struct {
	mu     sync.Mutex
	opened []string
}

func (o *opener) open(driver string, dsn drivers.Secret) (*sql.DB, error) {
	o.mu.Lock()
	o.opened = append(o.opened, driver)
	o.mu.Unlock()
	return sqlopen.Open(driver, dsn)
}

func (o *opener) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.opened)
}

// openPool opens a pool of the double's environment and closes it when the test ends.
func openPool(tb testing.TB, s *routerServer, o *opener, opts router.Options) *router.Pool {
	tb.Helper()
	p, err := router.Open(context.Background(), s.client(), router.Target{Org: "acme", Env: "dev"}, drivers.ScopeReadWrite, o.open, opts)
	if err != nil {
		tb.Fatalf("open pool: %v", err)
	}
	tb.Cleanup(func() {
		if err := p.Close(); err != nil {
			tb.Errorf("close pool: %v", err)
		}
	})
	return p
}

// current returns the pool's current *sql.DB.
func current(tb testing.TB, p *router.Pool) *sql.DB {
	tb.Helper()
	db, err := p.DB(context.Background())
	if err != nil {
		tb.Fatalf("pool DB: %v", err)
	}
	return db
}

// exec runs a statement on db.
func exec(tb testing.TB, db interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, query string, args ...any) {
	tb.Helper()
	if _, err := db.ExecContext(context.Background(), query, args...); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
}

// count returns the number of rows of table on db.
func count(tb testing.TB, db *sql.DB, table string) int {
	tb.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		tb.Fatalf("count %s: %v", table, err)
	}
	return n
}

// printed returns every way fmt shows the values.
func printed(values ...any) string {
	var b strings.Builder
	for _, v := range values {
		fmt.Fprintf(&b, "%v %+v %#v %s\n", v, v, v, v)
	}
	return b.String()
}
