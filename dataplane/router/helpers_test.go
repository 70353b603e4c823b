package router_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"net"
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

// isWatch reports whether r was a watch (it asks to wait).
func (r seenRequest) isWatch() bool {
	q, _ := url.ParseQuery(r.query)
	return q.Has("wait")
}

// answer is what the router double answers next.
type answer struct {
	status      int
	contentType string
	body        []byte
	// credentialID is the credential a 200 answer names.
	credentialID string
	// hangup closes the connection without answering.
	hangup bool
}

// routerServer is the router client's peer: an httptest server that answers
// with what the test sets and records every request. By default it answers
// a watch at once, as a router that does not hold watches would; once
// holdWatches is called it holds them as the router does.
type routerServer struct {
	srv   *httptest.Server
	token string
	// watches receives every watch as it arrives.
	watches chan seenRequest

	mu       sync.Mutex
	next     answer
	requests []seenRequest
	holding  bool
	// releases counts releaseWatches calls.
	releases int
	// changed is closed (and replaced) whenever the answer changes or
	// held watches are released.
	changed chan struct{}
}

func newRouterServer(tb testing.TB) *routerServer {
	tb.Helper()
	s := &routerServer{
		token: "ep_test_" + strings.Repeat("k", 24), next: answer{status: http.StatusNotFound},
		watches: make(chan seenRequest, 1024), changed: make(chan struct{}),
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.srv.Close)
	return s
}

// holdWatches makes the double hold a watch that names the credential it
// would answer with until the answer changes (or releaseWatches), as the
// router holds it until another credential is active or the wait passed.
func (s *routerServer) holdWatches() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holding = true
}

// releaseWatches answers the watches held now with the unchanged
// connection, as the router does once the wait has passed; later ones are
// held again.
func (s *routerServer) releaseWatches() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releases++
	s.wake()
}

// wake wakes the held watches; s.mu is held.
func (s *routerServer) wake() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// down stops the double: the open connections close and new ones are
// refused, until up. Held watches are answered first: net/http's client
// sends a GET again on a new connection when its connection closes before
// an answer, and the server must not hold that one while it closes.
func (s *routerServer) down() {
	s.mu.Lock()
	holding := s.holding
	s.holding = false
	s.wake()
	s.mu.Unlock()
	s.srv.CloseClientConnections()
	s.srv.Close()
	s.mu.Lock()
	s.holding = holding
	s.mu.Unlock()
}

// up starts the double again on the address it had.
func (s *routerServer) up(tb testing.TB) {
	tb.Helper()
	l, err := net.Listen("tcp", s.srv.Listener.Addr().String())
	if err != nil {
		tb.Fatalf("listen again on the router's address: %v", err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	// Registered after the pool's cleanup, this runs before it, while the
	// pool may have a watch held.
	tb.Cleanup(s.down)
	s.srv = srv
}

func (s *routerServer) serve(w http.ResponseWriter, r *http.Request) {
	seen := seenRequest{
		method: r.Method, path: r.URL.Path, rawPath: r.URL.EscapedPath(), query: r.URL.RawQuery,
		auth: r.Header.Get("Authorization"), accept: r.Header.Get("Accept"),
	}
	s.mu.Lock()
	s.requests = append(s.requests, seen)
	releases := s.releases
	s.mu.Unlock()
	if seen.isWatch() {
		s.watches <- seen
	}
	after := r.URL.Query().Get("after")
	var a answer
	for {
		s.mu.Lock()
		a = s.next
		held := s.holding && s.releases == releases && seen.isWatch() && a.status == http.StatusOK && a.credentialID == after
		changed := s.changed
		s.mu.Unlock()
		if !held {
			break
		}
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		}
	}
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
	s.set(answer{status: http.StatusOK, contentType: "application/json", body: raw, credentialID: c.CredentialID})
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
	s.wake()
}

// seen returns the requests received so far.
func (s *routerServer) seen() []seenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seenRequest(nil), s.requests...)
}

// counts returns how many resolves and how many watches were received.
func (s *routerServer) counts() (resolves, watches int) {
	for _, r := range s.seen() {
		if r.isWatch() {
			watches++
		} else {
			resolves++
		}
	}
	return resolves, watches
}

// nextWatch returns the next watch the double receives.
func (s *routerServer) nextWatch(tb testing.TB) seenRequest {
	tb.Helper()
	return <-s.watches
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
// and every wait of the refresher (and of the watcher) is handed to the
// test, which fires it.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits chan wait
	// passed are waits take received while looking for another one.
	passed []wait
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
	return c.take(tb, func(wait) bool { return true })
}

// take returns the first wait, in the order they began, for which match
// holds, keeping the others for later calls: the refresher and the watcher
// wait on the same clock, and a test tells their waits apart by length.
func (c *fakeClock) take(tb testing.TB, match func(wait) bool) wait {
	tb.Helper()
	c.mu.Lock()
	for i, w := range c.passed {
		if match(w) {
			c.passed = append(c.passed[:i], c.passed[i+1:]...)
			c.mu.Unlock()
			return w
		}
	}
	c.mu.Unlock()
	for {
		w := <-c.waits
		if match(w) {
			return w
		}
		c.mu.Lock()
		c.passed = append(c.passed, w)
		c.mu.Unlock()
	}
}

// watchOptions are pool options on the fake clock with a watch, whose
// backoff lies between 1 s and 8 s; the refresh_after of the test's answers
// is an hour away, so the refresher's waits are longer.
func (c *fakeClock) watchOptions() router.Options {
	return router.Options{Now: c.Now, After: c.After, MinBackoff: time.Second, MaxBackoff: 8 * time.Second}
}

// watcherWait returns the watcher's next wait (a backoff of at most 8 s).
func (c *fakeClock) watcherWait(tb testing.TB) wait {
	tb.Helper()
	return c.take(tb, func(w wait) bool { return w.d <= 8*time.Second })
}

// fire ends w and returns the refresher's next wait, so the refresher's
// round (refresh when due, close drained pools) is over.
func (c *fakeClock) fire(tb testing.TB, w wait) wait {
	tb.Helper()
	w.fire <- c.Now()
	return c.next(tb)
}

// options are pool options on the fake clock, without a watch: every wait
// is then the refresher's.
func (c *fakeClock) options() router.Options {
	return router.Options{Now: c.Now, After: c.After, Watch: router.WatchOff}
}

// opener records the connectors it opens with sqlopen.Connector.
type opener struct {
	mu     sync.Mutex
	opened []string
}

func (o *opener) open(name string, dsn drivers.Secret) (driver.Connector, error) {
	o.mu.Lock()
	o.opened = append(o.opened, name)
	o.mu.Unlock()
	return sqlopen.Connector(name, dsn)
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
