package httpapi_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/dataplane/router"
	"github.com/envplane/envplane/dataplane/router/sqlopen"
	"github.com/envplane/envplane/drivers"
)

// refusedWithin polls r's resolve as token until it answers status, and
// fails the test when that takes longer than limit from since.
func refusedWithin(t *testing.T, h *harness, token string, status int, since time.Time, limit time.Duration) {
	t.Helper()
	for {
		r := h.do(t, token, "GET", devPath+"/connection?scope=readwrite", nil)
		if r.status == status {
			t.Logf("the other replica answered %d %v after the change", status, time.Since(since).Round(time.Millisecond))
			return
		}
		if time.Since(since) > limit {
			t.Fatalf("the other replica still answers %d %v after the change, want %d within %v", r.status, time.Since(since).Round(time.Millisecond), status, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTwoReplicas: two replicas over one PostgreSQL store each answer from
// their own cache; a suspension or a key revocation made through one stops
// resolving on the other within a second (it reads the change log every
// 250 ms), and a resumption brings it back.
func TestTwoReplicas(t *testing.T) {
	a := newHarness(t, withPostgresStore())
	sc := &storeCalls{}
	b := newHarness(t, asReplicaOf(a), withStoreCalls(sc))
	a.org(t, "acme")
	a.env(t, a.admin, "acme", "dev", "development")
	app, appID := a.appKey(t, "acme", "dev", "readwrite")
	b.synced(t)

	want := b.resolveAs(t, app, "readwrite")
	reads := sc.resolves.Load()
	for range 5 {
		if c := b.resolveAs(t, app, "readwrite"); c.CredentialID != want.CredentialID {
			t.Fatal("replica B's answers changed without a change")
		}
	}
	if sc.resolves.Load() != reads {
		t.Fatal("replica B read the store for repeat resolves: its cache is not in use")
	}

	at := time.Now()
	a.must(t, http.StatusOK, a.admin, "POST", devPath+"/suspend", nil)
	refusedWithin(t, b, app, http.StatusLocked, at, time.Second)
	at = time.Now()
	a.must(t, http.StatusOK, a.admin, "POST", devPath+"/resume", nil)
	refusedWithin(t, b, app, http.StatusOK, at, time.Second)

	// A rotation through A: B hands out the new credential within a second.
	var rot cp.CredentialsResponse
	a.must(t, http.StatusOK, a.admin, "POST", devPath+"/credentials/rotate", map[string]any{"scope": "readwrite", "grace_seconds": 600}).decode(t, &rot)
	deadline := time.Now().Add(time.Second)
	for b.resolveAs(t, app, "readwrite").CredentialID == want.CredentialID {
		if time.Now().After(deadline) {
			t.Fatal("replica B still hands out the rotated credential a second after the rotation")
		}
		time.Sleep(20 * time.Millisecond)
	}

	at = time.Now()
	a.must(t, http.StatusNoContent, a.admin, "DELETE", "/v1/organizations/acme/api-keys/"+appID, nil)
	refusedWithin(t, b, app, http.StatusUnauthorized, at, time.Second)
}

// restartable serves a harness's API on a fixed loopback address that can
// go down and come back, as a control plane that restarts does.
type restartable struct {
	addr string
	h    http.Handler

	mu  sync.Mutex
	srv *httptest.Server
}

func newRestartable(t *testing.T, h http.Handler) *restartable {
	t.Helper()
	r := &restartable{h: h}
	r.up(t, "127.0.0.1:0")
	r.addr = r.srv.Listener.Addr().String()
	t.Cleanup(r.down)
	return r
}

func (r *restartable) up(t *testing.T, addr string) {
	t.Helper()
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(r.h)
	srv.Listener = ln
	srv.Start()
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
}

func (r *restartable) down() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv != nil {
		r.srv.CloseClientConnections()
		r.srv.Close()
		r.srv = nil
	}
}

// TestClientsRideOutAControlPlaneRestart: while the control plane is down,
// the router client keeps its pool and no query fails; once it is back, the
// client's watch reconnects and the next rotation reaches it.
func TestClientsRideOutAControlPlaneRestart(t *testing.T) {
	h := newHarness(t)
	h.svc.Schema.App = loadMigration()
	h.org(t, "acme")
	h.env(t, h.admin, "acme", "dev", "development")
	app, _ := h.appKey(t, "acme", "dev", "readwrite")
	front := newRestartable(t, h.srv.Config.Handler)
	ctx := context.Background()
	client := &router.Client{BaseURL: "http://" + front.addr, Token: drivers.Secret(app)}
	pool, err := router.Open(ctx, client, router.Target{Org: "acme", Env: "dev"}, drivers.ScopeReadWrite, sqlopen.Connector,
		router.Options{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, WatchWait: 5 * time.Second})
	if err != nil {
		t.Fatalf("open pool: %v", err)
	}
	t.Cleanup(func() { pool.Close() })
	l := &loader{pool: pool}
	load, stopLoad := context.WithCancel(ctx)
	wg := l.run(load, 2, 10*time.Millisecond)
	defer func() { stopLoad(); wg.Wait() }()

	first := pool.Connection().CredentialID
	front.down()
	time.Sleep(1500 * time.Millisecond)
	front.up(t, front.addr)
	// Give the watch time to come back (its backoff is at most 200 ms).
	time.Sleep(500 * time.Millisecond)
	h.must(t, http.StatusOK, h.admin, "POST", devPath+"/credentials/rotate", map[string]any{"scope": "readwrite", "grace_seconds": 600})
	deadline := time.Now().Add(5 * time.Second)
	for pool.Connection().CredentialID == first {
		if time.Now().After(deadline) {
			t.Fatalf("the client did not move to the rotated credential after the restart: %+v", pool.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopLoad()
	wg.Wait()
	if in, out := l.failuresBetween(time.Time{}, time.Now()); len(in)+len(out) > 0 {
		t.Fatalf("%d queries failed across the restart; first: %s", len(in), in[0].err)
	}
	if l.ok.Load() == 0 {
		t.Fatal("no query ran")
	}
	if st := pool.Stats(); st.WatchFailures == 0 {
		t.Fatal("the watch never noticed the control plane was down")
	}
}

// TestRevokedKeyIsTypedNotRetried: a client whose app key was revoked gets
// ErrUnauthorized from its pool, and stops asking the control plane.
func TestRevokedKeyIsTypedNotRetried(t *testing.T) {
	sc := &storeCalls{}
	h := newHarness(t, withStoreCalls(sc))
	h.org(t, "acme")
	h.env(t, h.admin, "acme", "dev", "development")
	app, appID := h.appKey(t, "acme", "dev", "readwrite")
	ctx := context.Background()
	client := &router.Client{BaseURL: h.srv.URL, Token: drivers.Secret(app)}
	pool, err := router.Open(ctx, client, router.Target{Org: "acme", Env: "dev"}, drivers.ScopeReadWrite, sqlopen.Connector,
		router.Options{MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, WatchWait: 2 * time.Second})
	if err != nil {
		t.Fatalf("open pool: %v", err)
	}
	t.Cleanup(func() { pool.Close() })
	h.must(t, http.StatusNoContent, h.admin, "DELETE", "/v1/organizations/acme/api-keys/"+appID, nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := pool.DB(ctx)
		if err != nil {
			if !errors.Is(err, router.ErrUnauthorized) {
				t.Fatalf("after its key was revoked the pool says %v, want ErrUnauthorized", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pool still hands out a database 5 s after its key was revoked")
		}
		time.Sleep(20 * time.Millisecond)
	}
	asked := sc.keys.Load()
	time.Sleep(500 * time.Millisecond)
	if n := sc.keys.Load() - asked; n > 0 {
		t.Fatalf("the pool went on asking with its revoked key (%d more requests)", n)
	}
}
