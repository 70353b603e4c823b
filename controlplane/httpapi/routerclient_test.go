package httpapi_test

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/dataplane/router"
	"github.com/envplane/envplane/dataplane/router/sqlopen"
	"github.com/envplane/envplane/drivers"
)

// refresherTimer hands every wait of a pool's background refresher to the
// test: receiving the next wait means the refresher finished its round.
type refresherTimer struct {
	waits chan chan time.Time
}

func newRefresherTimer() *refresherTimer {
	return &refresherTimer{waits: make(chan chan time.Time, 64)}
}

func (r *refresherTimer) After(time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	r.waits <- ch
	return ch
}

// next returns the refresher's next wait.
func (r *refresherTimer) next(tb testing.TB) chan time.Time {
	tb.Helper()
	return <-r.waits
}

// credentialStatus returns the status of every credential of an environment by id.
func (h *harness) routerCredentialStatuses(tb testing.TB, org, env string) map[string]cp.CredentialStatus {
	tb.Helper()
	var list cp.List[*cp.Credential]
	h.must(tb, http.StatusOK, h.admin, "GET", "/v1/organizations/"+org+"/environments/"+env+"/credentials", nil).decode(tb, &list)
	out := map[string]cp.CredentialStatus{}
	for _, c := range list.Items {
		out[c.ID] = c.Status
	}
	return out
}

// insertNote writes through the pool's current *sql.DB.
func insertNote(tb testing.TB, p *router.Pool, body string) {
	tb.Helper()
	db, err := p.DB(context.Background())
	if err != nil {
		tb.Fatalf("pool DB: %v", err)
	}
	if _, err := db.Exec("INSERT INTO notes (body) VALUES (?)", body); err != nil {
		tb.Fatalf("insert %s: %v", body, err)
	}
}

// TestRouterClientFollowsRotation runs the router client against the real
// server: the pool writes with the active credential; after a rotation it
// keeps its pool until refresh_after, then moves to the new credential while
// the old pool stays usable; when the grace ends and the old credential is
// revoked, the old pool has drained and closed, and writes keep working.
func TestRouterClientFollowsRotation(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	env := h.env(t, h.admin, "acme", "dev", "development")
	ctx := context.Background()
	timer := newRefresherTimer()
	client := &router.Client{BaseURL: h.srv.URL, Token: drivers.Secret(h.admin), HTTPClient: h.srv.Client()}
	p, err := router.Open(ctx, client, router.Target{Org: "acme", Env: "dev"}, drivers.ScopeReadWrite, sqlopen.Connector, router.Options{Now: h.clock.Now, After: timer.After, Watch: router.WatchOff})
	if err != nil {
		t.Fatalf("open pool: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close pool: %v", err)
		}
	})
	timer.next(t)

	first := p.Connection()
	if first.EnvironmentID != env.ID || first.Driver != "sqlite" || first.Scope != drivers.ScopeReadWrite {
		t.Fatalf("resolved %+v", first)
	}
	if st := h.routerCredentialStatuses(t, "acme", "dev")[first.CredentialID]; st != cp.CredentialActive {
		t.Fatalf("the pool's credential is %q, want active", st)
	}
	old, err := p.DB(ctx)
	if err != nil {
		t.Fatalf("pool DB: %v", err)
	}
	if _, err := old.Exec("CREATE TABLE notes (body TEXT)"); err != nil {
		t.Fatalf("create: %v", err)
	}
	insertNote(t, p, "before rotation")

	var rot cp.CredentialsResponse
	h.must(t, http.StatusOK, h.admin, "POST", "/v1/organizations/acme/environments/dev/credentials/rotate",
		map[string]any{"scope": "readwrite", "grace_seconds": 600, "reason": "router client test"}).decode(t, &rot)
	if rot.Operation.Status != cp.OpSucceeded {
		t.Fatalf("rotation %s", rot.Operation.Status)
	}
	statuses := h.routerCredentialStatuses(t, "acme", "dev")
	if statuses[first.CredentialID] != cp.CredentialRotating {
		t.Fatalf("the old credential is %q after the rotation, want rotating", statuses[first.CredentialID])
	}

	// Until refresh_after the pool keeps its credential and asks nothing.
	insertNote(t, p, "rotated, not refreshed")
	if id := p.Connection().CredentialID; id != first.CredentialID {
		t.Fatalf("the pool moved to %s before refresh_after", id)
	}

	h.clock.Advance(first.RefreshAfter.Sub(h.clock.Now()))
	if db, err := p.DB(ctx); err != nil || db != old {
		t.Fatalf("DB at refresh_after: %v (same pool %v); want the current pool at once", err, db == old)
	}
	w := timer.next(t) // the refresher woke, refreshed and sleeps again
	second := p.Connection()
	if second.CredentialID == first.CredentialID {
		t.Fatalf("the pool still uses %s after refresh_after; stats %+v", first.CredentialID, p.Stats())
	}
	if st := h.routerCredentialStatuses(t, "acme", "dev")[second.CredentialID]; st != cp.CredentialActive {
		t.Fatalf("the pool moved to a credential that is %q, want active", st)
	}
	insertNote(t, p, "after refresh")
	if _, err := old.Exec("INSERT INTO notes (body) VALUES ('late writer on the old pool')"); err != nil {
		t.Fatalf("the old pool failed right after the swap: %v", err)
	}

	// The grace ends: the old credential is revoked, the old pool has drained.
	h.clock.Advance(601 * time.Second)
	if n, err := h.svc.RevokeDue(ctx); err != nil || n != 1 {
		t.Fatalf("revoke due: %d revoked, err %v; want 1", n, err)
	}
	if st := h.routerCredentialStatuses(t, "acme", "dev")[first.CredentialID]; st != cp.CredentialRevoked {
		t.Fatalf("the old credential is %q after the grace, want revoked", st)
	}
	w <- h.clock.Now()
	timer.next(t)
	if err := old.Ping(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("the old pool is still open after the drain (ping: %v)", err)
	}
	insertNote(t, p, "after the grace")
	db, err := p.DB(ctx)
	if err != nil {
		t.Fatalf("pool DB: %v", err)
	}
	var notes int
	if err := db.QueryRow("SELECT count(*) FROM notes").Scan(&notes); err != nil || notes != 5 {
		t.Fatalf("%d notes, err %v; want 5", notes, err)
	}
	st := p.Stats()
	if st.Swaps != 1 || st.Retired != 1 || st.Draining != 0 || st.LastError != nil || st.CredentialID != second.CredentialID {
		t.Errorf("stats %+v", st)
	}
	if strings.Contains(fmt.Sprintf("%v %+v %v %+v", p, p.Connection(), client, client), h.admin) {
		t.Error("printing the pool or the client shows the token")
	}
}

// TestRouterClientRefusals: the real server's refusals reach the router
// client as typed errors, and a refresh refused while the pool is open
// keeps the pool working.
func TestRouterClientRefusals(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	env := h.env(t, h.admin, "acme", "dev", "development")
	ctx := context.Background()
	client := &router.Client{BaseURL: h.srv.URL, Token: drivers.Secret(h.admin), HTTPClient: h.srv.Client()}

	byID, err := client.Resolve(ctx, router.Target{EnvironmentID: env.ID}, drivers.ScopeReadOnly)
	if err != nil || byID.EnvironmentID != env.ID || byID.Scope != drivers.ScopeReadOnly || byID.Organization != "acme" || byID.Environment != "dev" {
		t.Fatalf("resolve by id: %+v, %v", byID, err)
	}

	viewer := h.member(t, "acme", "viewer@example.com", cp.OrgMember)
	stranger := &router.Client{BaseURL: h.srv.URL, Token: drivers.Secret("ep_not_a_key"), HTTPClient: h.srv.Client()}
	for _, tc := range []struct {
		name   string
		client *router.Client
		target router.Target
		is     error
		code   string
	}{
		{"unknown key", stranger, router.Target{Org: "acme", Env: "dev"}, router.ErrUnauthorized, cp.EUNAUTHORIZED},
		{"member without an environment role", &router.Client{BaseURL: h.srv.URL, Token: drivers.Secret(viewer), HTTPClient: h.srv.Client()}, router.Target{Org: "acme", Env: "dev"}, router.ErrNotFound, cp.ENOTFOUND},
		{"no such environment", client, router.Target{Org: "acme", Env: "nope"}, router.ErrNotFound, cp.ENOTFOUND},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.client.Resolve(ctx, tc.target, drivers.ScopeReadWrite)
			var e *router.Error
			if !errors.As(err, &e) || e.Code != tc.code || !errors.Is(err, tc.is) {
				t.Fatalf("error %v, want %s", err, tc.code)
			}
			if strings.Contains(err.Error(), string(tc.client.Token)) {
				t.Error("the error shows the token")
			}
		})
	}

	p, err := router.Open(ctx, client, router.Target{Org: "acme", Env: "dev"}, drivers.ScopeAdmin, sqlopen.Connector, router.Options{Now: h.clock.Now, Watch: router.WatchOff})
	if err != nil {
		t.Fatalf("open pool: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	h.must(t, http.StatusOK, h.admin, "POST", "/v1/organizations/acme/environments/dev/suspend", nil)
	err = p.Refresh(ctx)
	var e *router.Error
	if !errors.As(err, &e) || e.Status != http.StatusLocked || e.Code != cp.ELOCKED || !errors.Is(err, router.ErrSuspended) {
		t.Fatalf("refresh of a suspended environment: %v, want 423 locked", err)
	}
	if !errors.Is(p.Stats().LastError, router.ErrSuspended) {
		t.Errorf("stats %+v", p.Stats())
	}
	db, err := p.DB(ctx)
	if err != nil {
		t.Fatalf("pool DB: %v", err)
	}
	if _, err := db.Exec("CREATE TABLE kept (x INTEGER)"); err != nil {
		t.Errorf("the pool stopped working when a refresh was refused: %v", err)
	}
	if _, err := router.Open(ctx, client, router.Target{Org: "acme", Env: "dev"}, drivers.ScopeAdmin, openerThatMustNotRun(t), router.Options{}); !errors.Is(err, router.ErrSuspended) {
		t.Errorf("open a suspended environment: %v, want ErrSuspended", err)
	}
}

// openerThatMustNotRun fails the test if a pool is opened.
func openerThatMustNotRun(tb testing.TB) router.Opener {
	tb.Helper()
	return func(string, drivers.Secret) (driver.Connector, error) {
		tb.Error("a pool was opened for a refused connection")
		return nil, errors.New("refused")
	}
}
