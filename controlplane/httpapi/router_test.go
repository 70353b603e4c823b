package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/drivers"
)

const devPath = "/v1/organizations/acme/environments/dev"

// resolveAs resolves the dev environment's connection with token.
func (h *harness) resolveAs(tb testing.TB, token, scope string) cp.Connection {
	tb.Helper()
	var c cp.Connection
	h.must(tb, http.StatusOK, token, "GET", devPath+"/connection?scope="+scope, nil).decode(tb, &c)
	return c
}

// appKey makes an app key for env in org up to scope and returns its token and id.
func (h *harness) appKey(tb testing.TB, org, env, scope string) (token, id string) {
	tb.Helper()
	var k cp.CreateAPIKeyResponse
	h.must(tb, http.StatusCreated, h.admin, "POST", "/v1/organizations/"+org+"/api-keys", map[string]any{"name": "app-" + env, "environment": env, "max_scope": scope}).decode(tb, &k)
	return k.Token, k.ID
}

// storeCalls counts the store reads a resolve can make, and can make the
// store unreachable for them.
type storeCalls struct {
	cp.Store
	resolves, keys, promises atomic.Int64
	down                     atomic.Bool
}

var errStoreDown = errors.New("store unreachable (test)")

func (s *storeCalls) ResolveRoute(ctx context.Context, q cp.RouteQuery) (*cp.Route, error) {
	s.resolves.Add(1)
	if s.down.Load() {
		return nil, errStoreDown
	}
	return s.Store.ResolveRoute(ctx, q)
}

func (s *storeCalls) GetAPIKeyByHash(ctx context.Context, hash string) (*cp.APIKey, error) {
	s.keys.Add(1)
	if s.down.Load() {
		return nil, errStoreDown
	}
	return s.Store.GetAPIKeyByHash(ctx, hash)
}

func (s *storeCalls) PromiseCredential(ctx context.Context, dbID, id string, until time.Time) error {
	s.promises.Add(1)
	if s.down.Load() {
		return errStoreDown
	}
	return s.Store.PromiseCredential(ctx, dbID, id, until)
}

func (s *storeCalls) ListChanges(ctx context.Context, after int64, limit int) ([]*cp.Change, error) {
	if s.down.Load() {
		return nil, errStoreDown
	}
	return s.Store.ListChanges(ctx, after, limit)
}

// withStoreCalls puts a storeCalls in front of the harness's store.
func withStoreCalls(sc *storeCalls) harnessOption {
	return func(c *harnessConfig) { c.wrapStore = func(s cp.Store) cp.Store { sc.Store = s; return sc } }
}

// synced waits until the service read the change log after now, so its
// cache is trusted (Follow runs every ChangePoll).
func (h *harness) synced(tb testing.TB) {
	tb.Helper()
	if err := h.svc.SyncChanges(context.Background()); err != nil {
		tb.Fatalf("sync changes: %v", err)
	}
}

// TestRouterAnswersFromItsCache: a repeat resolve reads neither the store
// nor the keyring; the first one reads the store once for the route.
func TestRouterAnswersFromItsCache(t *testing.T) {
	sc := &storeCalls{}
	h := newHarness(t, withStoreCalls(sc))
	h.org(t, "acme")
	h.env(t, h.admin, "acme", "dev", "development")
	app, _ := h.appKey(t, "acme", "dev", "readwrite")
	h.synced(t)

	resolves, keys := sc.resolves.Load(), sc.keys.Load()
	first := h.resolveAs(t, app, "readwrite")
	if n := sc.resolves.Load() - resolves; n != 1 {
		t.Fatalf("a cold resolve read the route %d times, want 1", n)
	}
	if n := sc.keys.Load() - keys; n != 1 {
		t.Fatalf("a cold resolve read the key %d times, want 1", n)
	}
	for range 20 {
		if c := h.resolveAs(t, app, "readwrite"); c.CredentialID != first.CredentialID || c.Secret != first.Secret {
			t.Fatal("a cached answer differs from the first")
		}
	}
	if n := sc.resolves.Load() - resolves; n != 1 {
		t.Fatalf("21 resolves read the route %d times, want 1", n)
	}
	if n := sc.keys.Load() - keys; n != 1 {
		t.Fatalf("21 resolves read the key %d times, want 1", n)
	}
}

// TestRouterCacheInvalidation: every change that affects an answer is seen
// by the next resolve on the same replica at once.
func TestRouterCacheInvalidation(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	h.env(t, h.admin, "acme", "dev", "development")
	h.synced(t)
	app, appID := h.appKey(t, "acme", "dev", "readwrite")
	member := h.member(t, "acme", "mia@example.com", cp.OrgMember)
	h.must(t, http.StatusOK, h.admin, "PUT", devPath+"/members/mia@example.com", map[string]any{"role": "env_admin"})

	// Rotation: the next resolve names the new credential.
	before := h.resolveAs(t, app, "readwrite")
	h.resolveAs(t, member, "admin")
	h.must(t, http.StatusOK, h.admin, "POST", devPath+"/credentials/rotate", map[string]any{"scope": "readwrite", "grace_seconds": 600})
	after := h.resolveAs(t, app, "readwrite")
	if after.CredentialID == before.CredentialID {
		t.Fatal("after a rotation the cache still answers the old credential")
	}

	// Emergency revocation of the active credential.
	h.must(t, http.StatusOK, h.admin, "POST", devPath+"/credentials/revoke", map[string]any{"credential_id": after.CredentialID, "reason": "leak"})
	if c := h.resolveAs(t, app, "readwrite"); c.CredentialID == after.CredentialID {
		t.Fatal("after an emergency revocation the cache still answers the revoked credential")
	}

	// A role change: env_admin demoted to env_viewer may no longer resolve admin.
	h.must(t, http.StatusOK, h.admin, "PUT", devPath+"/members/mia@example.com", map[string]any{"role": "env_viewer"})
	wantProblem(t, h.do(t, member, "GET", devPath+"/connection?scope=admin", nil), http.StatusForbidden, cp.EFORBIDDEN, "")
	h.must(t, http.StatusNoContent, h.admin, "DELETE", devPath+"/members/mia@example.com", nil)
	wantProblem(t, h.do(t, member, "GET", devPath+"/connection?scope=readonly", nil), http.StatusNotFound, cp.ENOTFOUND, "")

	// Suspension and resumption.
	h.resolveAs(t, app, "readwrite")
	h.must(t, http.StatusOK, h.admin, "POST", devPath+"/suspend", nil)
	wantProblem(t, h.do(t, app, "GET", devPath+"/connection?scope=readwrite", nil), http.StatusLocked, cp.ELOCKED, "")
	h.must(t, http.StatusOK, h.admin, "POST", devPath+"/resume", nil)
	h.resolveAs(t, app, "readwrite")

	// A revoked key stops authenticating at once.
	h.must(t, http.StatusNoContent, h.admin, "DELETE", "/v1/organizations/acme/api-keys/"+appID, nil)
	wantProblem(t, h.do(t, app, "GET", devPath+"/connection?scope=readwrite", nil), http.StatusUnauthorized, cp.EUNAUTHORIZED, "")

	// A removed member's keys stop at once too.
	h.must(t, http.StatusOK, h.admin, "PUT", devPath+"/members/mia@example.com", map[string]any{"role": "env_user"})
	h.resolveAs(t, member, "readwrite")
	h.must(t, http.StatusNoContent, h.admin, "DELETE", "/v1/organizations/acme/members/mia@example.com", nil)
	wantProblem(t, h.do(t, member, "GET", devPath+"/connection?scope=readwrite", nil), http.StatusUnauthorized, cp.EUNAUTHORIZED, "")

	// Deletion.
	owner := h.admin
	h.resolveAs(t, owner, "readonly")
	h.must(t, http.StatusAccepted, owner, "DELETE", devPath, nil)
	h.svc.Wait()
	wantProblem(t, h.do(t, owner, "GET", devPath+"/connection?scope=readonly", nil), http.StatusNotFound, cp.ENOTFOUND, "")
}

// TestRouterServesFromCacheWhileTheStoreIsDown: cached answers keep coming
// for MaxStale after the last read of the change log, then resolves fail
// with 503 (never 500) until the store is back.
func TestRouterServesFromCacheWhileTheStoreIsDown(t *testing.T) {
	sc := &storeCalls{}
	h := newHarness(t, withStoreCalls(sc))
	h.org(t, "acme")
	h.env(t, h.admin, "acme", "dev", "development")
	app, _ := h.appKey(t, "acme", "dev", "readwrite")
	h.synced(t)
	want := h.resolveAs(t, app, "readwrite")

	sc.down.Store(true)
	h.clock.Advance(h.svc.MaxStale / 2)
	if c := h.resolveAs(t, app, "readwrite"); c.CredentialID != want.CredentialID {
		t.Fatal("the cached answer changed while the store was down")
	}
	if c := h.resolveAs(t, app, "readwrite"); !c.RefreshAfter.After(h.clock.Now()) {
		t.Fatal("a cached answer hands out a refresh_after in the past")
	}
	h.clock.Advance(h.svc.MaxStale)
	wantProblem(t, h.do(t, app, "GET", devPath+"/connection?scope=readwrite", nil), http.StatusServiceUnavailable, cp.EUNAVAILABLE, "")

	sc.down.Store(false)
	h.synced(t)
	if c := h.resolveAs(t, app, "readwrite"); c.CredentialID != want.CredentialID {
		t.Fatal("after the store came back the answer changed")
	}
}

// TestRotationKeepsItsPromise: a rotation never revokes a credential before
// the refresh_after handed out for it; a shorter grace is stretched and the
// answer says so.
func TestRotationKeepsItsPromise(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	h.env(t, h.admin, "acme", "dev", "development")
	h.synced(t)
	held := h.resolveAs(t, h.admin, "readwrite")
	if max := h.clock.Now().Add(h.svc.RefreshWindow); held.RefreshAfter.After(max) || !held.RefreshAfter.After(h.clock.Now()) {
		t.Fatalf("refresh_after %v is not within the refresh window from now (%v)", held.RefreshAfter, max)
	}

	var rot cp.CredentialsResponse
	h.must(t, http.StatusOK, h.admin, "POST", devPath+"/credentials/rotate", map[string]any{"scope": "readwrite", "grace_seconds": 0}).decode(t, &rot)
	if rot.RevokeAfter == nil || !rot.GraceStretched {
		t.Fatalf("a zero grace over an outstanding refresh_after: revoke_after %v, stretched %v", rot.RevokeAfter, rot.GraceStretched)
	}
	if want := held.RefreshAfter.Add(h.svc.RevokeMargin); rot.RevokeAfter.Before(want) {
		t.Fatalf("revoke_after %v is before the promised refresh_after plus the margin (%v)", rot.RevokeAfter, want)
	}
	if st := h.credentialStatus(t, "acme", "dev", held.CredentialID); st != cp.CredentialRotating {
		t.Fatalf("the held credential is %s right after the rotation, want rotating", st)
	}
	if !works(t, "sqlite", held.DSN) {
		t.Fatal("the held credential stopped working before its revoke_after")
	}
	// Until revoke_after, the background pass leaves it alone and another
	// rotation is 409 naming when to come back.
	h.clock.Advance(rot.RevokeAfter.Sub(h.clock.Now()) - time.Second)
	if n, err := h.svc.RevokeDue(context.Background()); err != nil || n != 0 {
		t.Fatalf("before revoke_after: %d revoked, %v", n, err)
	}
	r := h.do(t, h.admin, "POST", devPath+"/credentials/rotate", map[string]any{"scope": "readwrite"})
	wantProblem(t, r, http.StatusConflict, cp.ECONFLICT, "")
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > 2 {
		t.Fatalf("Retry-After %q during the last second of a grace, want 1 or 2", r.header.Get("Retry-After"))
	}
	if p := r.problem(t); !strings.Contains(p.Detail, rot.RevokeAfter.UTC().Format(time.RFC3339)) {
		t.Fatalf("the detail does not name the end of the grace: %q", p.Detail)
	}
	h.clock.Advance(time.Second)
	if n, err := h.svc.RevokeDue(context.Background()); err != nil || n != 1 {
		t.Fatalf("at revoke_after: %d revoked, %v", n, err)
	}
	// A grace longer than the promise is kept as asked, not stretched.
	h.resolveAs(t, h.admin, "readwrite")
	var long cp.CredentialsResponse
	h.must(t, http.StatusOK, h.admin, "POST", devPath+"/credentials/rotate", map[string]any{"scope": "readwrite", "grace_seconds": 3600}).decode(t, &long)
	if long.GraceStretched || long.RevokeAfter == nil || !long.RevokeAfter.Equal(h.clock.Now().Add(time.Hour)) {
		t.Fatalf("an hour's grace: revoke_after %v (now %v), stretched %v", long.RevokeAfter, h.clock.Now(), long.GraceStretched)
	}
	if e := h.auditEvent(t, "acme", "credentials.rotated"); e == nil || e.Details["revoke_after"] == nil {
		t.Fatal("the rotation's audit event does not say when the old credential goes")
	}
}

// TestGraceBounds: grace_seconds 0 with no outstanding refresh_after revokes
// at once; the maximum is accepted; one past it and negative ones are 422;
// a rotation whose grace has run out no longer blocks the next one.
func TestGraceBounds(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	h.env(t, h.admin, "acme", "dev", "development")
	rotate := devPath + "/credentials/rotate"

	// Nobody resolved admin: no promise, so grace 0 revokes at once.
	var rot cp.CredentialsResponse
	h.must(t, http.StatusOK, h.admin, "POST", rotate, map[string]any{"scope": "admin", "grace_seconds": 0}).decode(t, &rot)
	if rot.GraceStretched {
		t.Fatal("grace 0 without any holder was stretched")
	}
	for _, c := range rot.Credentials {
		if c.Scope == "admin" && c.Status == cp.CredentialRotating {
			t.Fatalf("admin credential %s is still rotating after grace 0 with no holder", c.ID)
		}
	}
	h.must(t, http.StatusOK, h.admin, "POST", rotate, map[string]any{"scope": "admin", "grace_seconds": 0})

	h.must(t, http.StatusOK, h.admin, "POST", rotate, map[string]any{"scope": "readonly", "grace_seconds": 604800}).decode(t, &rot)
	if rot.RevokeAfter == nil || !rot.RevokeAfter.Equal(h.clock.Now().Add(7*24*time.Hour)) {
		t.Fatalf("the longest grace: revoke_after %v", rot.RevokeAfter)
	}
	for _, g := range []any{604801, -1, 1 << 62, "10", 1.5} {
		wantProblem(t, h.do(t, h.admin, "POST", rotate, map[string]any{"scope": "readwrite", "grace_seconds": g}), http.StatusUnprocessableEntity, cp.EINVALID, "grace_seconds")
	}

	// A grace that ran out no longer blocks, even before the background pass revoked it.
	h.must(t, http.StatusOK, h.admin, "POST", rotate, map[string]any{"scope": "readwrite", "grace_seconds": 30})
	h.clock.Advance(31 * time.Second)
	h.must(t, http.StatusOK, h.admin, "POST", rotate, map[string]any{"scope": "readwrite", "grace_seconds": 30}).decode(t, &rot)
	n := 0
	for _, c := range rot.Credentials {
		if c.Scope == "readwrite" && c.Status == cp.CredentialRotating {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d readwrite credentials rotating after a rotation that followed an ended grace, want 1", n)
	}
}

// watch sends a watch request and returns the answer and how long it took.
func (h *harness) watch(tb testing.TB, token, query string) (response, time.Duration) {
	tb.Helper()
	start := time.Now()
	r := h.do(tb, token, "GET", devPath+"/connection?"+query, nil)
	return r, time.Since(start)
}

// TestWatch: a watch answers at once for an unknown or older credential,
// after wait with the same credential when nothing changes, as soon as a
// rotation lands, and with the refusal when the environment is suspended
// or the key revoked while it waits.
func TestWatch(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	h.env(t, h.admin, "acme", "dev", "development")
	app, appID := h.appKey(t, "acme", "dev", "readwrite")
	h.synced(t)
	cur := h.resolveAs(t, app, "readwrite")

	for _, after := range []string{"cred_unknown", "x"} {
		r, took := h.watch(t, app, "scope=readwrite&wait=30s&after="+after)
		var got cp.Connection
		if r.status != http.StatusOK || took > 10*time.Second {
			t.Fatalf("watch after %q: status %d after %v, want an answer at once", after, r.status, took)
		}
		r.decode(t, &got)
		if got.CredentialID != cur.CredentialID {
			t.Fatalf("watch after %q answered %s, want the current credential", after, got.CredentialID)
		}
	}
	r, took := h.watch(t, app, "scope=readwrite&wait=1&after="+cur.CredentialID)
	if r.status != http.StatusOK || took < time.Second {
		t.Fatalf("an unchanged watch: status %d after %v, want 200 after its wait", r.status, took)
	}

	// A rotation wakes the watch.
	type answer struct {
		r    response
		took time.Duration
	}
	watchAsync := func(after string) chan answer {
		ch := make(chan answer, 1)
		go func() {
			start := time.Now()
			req, _ := http.NewRequest("GET", h.srv.URL+devPath+"/connection?scope=readwrite&wait=50s&after="+after, nil)
			req.Header.Set("Authorization", "Bearer "+app)
			resp, err := h.srv.Client().Do(req)
			if err != nil {
				ch <- answer{r: response{status: -1, body: []byte(err.Error())}}
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			ch <- answer{r: response{status: resp.StatusCode, header: resp.Header, body: body}, took: time.Since(start)}
		}()
		return ch
	}
	waitFor := func(ch chan answer) answer {
		t.Helper()
		select {
		case a := <-ch:
			return a
		case <-time.After(40 * time.Second):
			t.Fatal("the watch did not answer after the change")
			return answer{}
		}
	}
	ch := watchAsync(cur.CredentialID)
	time.Sleep(200 * time.Millisecond)
	var rot cp.CredentialsResponse
	h.must(t, http.StatusOK, h.admin, "POST", devPath+"/credentials/rotate", map[string]any{"scope": "readwrite", "grace_seconds": 600}).decode(t, &rot)
	a := waitFor(ch)
	var moved cp.Connection
	if a.r.status != http.StatusOK {
		t.Fatalf("watch across a rotation: %d %s", a.r.status, a.r.shown())
	}
	a.r.decode(t, &moved)
	if moved.CredentialID == cur.CredentialID || h.credentialStatus(t, "acme", "dev", moved.CredentialID) != cp.CredentialActive {
		t.Fatal("the watch did not answer the new active credential")
	}

	// Suspension ends a watch with 423, a revoked key with 401.
	ch = watchAsync(moved.CredentialID)
	time.Sleep(200 * time.Millisecond)
	h.must(t, http.StatusOK, h.admin, "POST", devPath+"/suspend", nil)
	wantProblem(t, waitFor(ch).r, http.StatusLocked, cp.ELOCKED, "")
	h.must(t, http.StatusOK, h.admin, "POST", devPath+"/resume", nil)
	ch = watchAsync(moved.CredentialID)
	time.Sleep(200 * time.Millisecond)
	h.must(t, http.StatusNoContent, h.admin, "DELETE", "/v1/organizations/acme/api-keys/"+appID, nil)
	wantProblem(t, waitFor(ch).r, http.StatusUnauthorized, cp.EUNAUTHORIZED, "")

	// Bad watch parameters are 422 naming the parameter.
	for q, field := range map[string]string{
		"scope=readwrite&wait=0s&after=x":                           "wait",
		"scope=readwrite&wait=61s&after=x":                          "wait",
		"scope=readwrite&wait=soon&after=x":                         "wait",
		"scope=readwrite&after=x":                                   "after",
		"scope=root&wait=1s&after=x":                                "scope",
		"scope=readwrite&wait=1s&after=" + strings.Repeat("a", 101): "after",
	} {
		wantProblem(t, h.do(t, h.admin, "GET", devPath+"/connection?"+q, nil), http.StatusUnprocessableEntity, cp.EINVALID, field)
	}
}

// TestReceipts: every resolution is counted per key and credential;
// owners, admins and env_admins read them, filtered by time and credential.
func TestReceipts(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	h.env(t, h.admin, "acme", "dev", "development")
	h.org(t, "globex")
	app, appID := h.appKey(t, "acme", "dev", "readonly")
	h.synced(t)
	start := h.clock.Now()
	first := h.resolveAs(t, app, "readonly")
	for range 4 {
		h.resolveAs(t, app, "readonly")
	}
	h.resolveAs(t, h.admin, "admin")
	h.svc.FlushReceipts(context.Background())

	var list cp.List[*cp.Receipt]
	h.must(t, http.StatusOK, h.admin, "GET", devPath+"/receipts", nil).decode(t, &list)
	var appCount int64
	for _, r := range list.Items {
		if r.KeyID == appID {
			if r.CredentialID != first.CredentialID || r.Scope != drivers.ScopeReadOnly || r.UserID != "" || r.KeyVersion == "" || r.Replica != h.svc.LeaseOwner {
				t.Fatalf("the app key's receipt: %+v", r)
			}
			appCount += r.Count
		}
	}
	if appCount != 5 {
		t.Fatalf("the app key resolved 5 times, receipts count %d", appCount)
	}
	h.must(t, http.StatusOK, h.admin, "GET", devPath+"/receipts?credential="+first.CredentialID, nil).decode(t, &list)
	for _, r := range list.Items {
		if r.CredentialID != first.CredentialID {
			t.Fatalf("filtered by credential, got %s", r.CredentialID)
		}
	}
	since := start.Add(time.Hour).Format(time.RFC3339)
	h.must(t, http.StatusOK, h.admin, "GET", devPath+"/receipts?since="+since, nil).decode(t, &list)
	if len(list.Items) != 0 {
		t.Fatalf("receipts since an hour from now: %d", len(list.Items))
	}

	wantProblem(t, h.do(t, h.admin, "GET", devPath+"/receipts?since=yesterday", nil), http.StatusUnprocessableEntity, cp.EINVALID, "since")
	wantProblem(t, h.do(t, h.admin, "GET", devPath+"/receipts?since="+since+"&until="+start.Format(time.RFC3339), nil), http.StatusUnprocessableEntity, cp.EINVALID, "until")
	wantProblem(t, h.do(t, app, "GET", devPath+"/receipts", nil), http.StatusForbidden, cp.EFORBIDDEN, "")
	globex := h.member(t, "globex", "gus@example.com", cp.OrgOwner)
	wantProblem(t, h.do(t, globex, "GET", devPath+"/receipts", nil), http.StatusNotFound, cp.ENOTFOUND, "")
	viewer := h.member(t, "acme", "vic@example.com", cp.OrgMember)
	h.must(t, http.StatusOK, h.admin, "PUT", devPath+"/members/vic@example.com", map[string]any{"role": "env_viewer"})
	wantProblem(t, h.do(t, viewer, "GET", devPath+"/receipts", nil), http.StatusForbidden, cp.EFORBIDDEN, "")

	// Retention prunes them.
	h.clock.Advance(h.svc.ReceiptRetention + time.Hour)
	if r := h.svc.Tick(context.Background()); r.Pruned == 0 {
		t.Fatal("receipts past their retention were not pruned")
	}
	h.must(t, http.StatusOK, h.admin, "GET", devPath+"/receipts", nil).decode(t, &list)
	if len(list.Items) != 0 {
		t.Fatalf("%d receipts left after retention", len(list.Items))
	}
}

// TestIssuanceBudgets: past the hourly issuance cap a rotation is 429 with
// Retry-After and an audit event, and mints nothing; past the live cap a
// rotation's operation fails without a third live credential.
func TestIssuanceBudgets(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	dev := h.env(t, h.admin, "acme", "dev", "development")
	// Provisioning issued 3; two single-scope rotations fit a cap of 5.
	h.svc.MaxIssuedPerHour = 5
	rotate := devPath + "/credentials/rotate"
	h.must(t, http.StatusOK, h.admin, "POST", rotate, map[string]any{"scope": "admin", "grace_seconds": 0})
	h.must(t, http.StatusOK, h.admin, "POST", rotate, map[string]any{"scope": "admin", "grace_seconds": 0})
	before := len(h.credentials(t, dev.ID))
	r := h.do(t, h.admin, "POST", rotate, map[string]any{"scope": "admin", "grace_seconds": 0})
	wantProblem(t, r, http.StatusTooManyRequests, cp.ETOOMANY, "")
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 3000 || ra > 3600 {
		t.Fatalf("Retry-After %q, want about an hour", r.header.Get("Retry-After"))
	}
	wantProblem(t, h.do(t, h.admin, "POST", devPath+"/credentials/revoke", map[string]any{"reason": "x"}), http.StatusTooManyRequests, cp.ETOOMANY, "")
	if n := len(h.credentials(t, dev.ID)); n != before {
		t.Fatalf("a refused rotation minted %d credentials", n-before)
	}
	if e := h.auditEvent(t, "acme", "credentials.budget_exceeded"); e == nil || e.Details["budget"] != "rate" {
		t.Fatal("no audit event for the refused issuance")
	}
	h.clock.Advance(time.Hour + time.Second)
	h.must(t, http.StatusOK, h.admin, "POST", rotate, map[string]any{"scope": "admin", "grace_seconds": 0})

	// The live cap: with one live credential allowed, rotating with a grace
	// would make two.
	h.svc.MaxIssuedPerHour = 0
	h.svc.MaxLiveCredentials = 1
	var rot cp.CredentialsResponse
	h.must(t, http.StatusOK, h.admin, "POST", rotate, map[string]any{"scope": "readonly", "grace_seconds": 60}).decode(t, &rot)
	if rot.Operation.Status != cp.OpFailed || !strings.Contains(rot.Operation.Error, "live") {
		t.Fatalf("a rotation past the live cap: %s %q", rot.Operation.Status, rot.Operation.Error)
	}
	live := 0
	for _, c := range h.liveCredentials(t, dev.ID) {
		if c.Scope == "readonly" {
			live++
		}
	}
	if live != 1 {
		t.Fatalf("%d live readonly credentials past a cap of 1", live)
	}
	if e := h.auditEvent(t, "acme", "credentials.budget_exceeded"); e == nil || e.Details["budget"] != "live" {
		t.Fatal("no audit event for the live cap")
	}
}

// TestConnectionSecretsStayTyped: the control plane's Connection never
// prints its secret; only the HTTP answer carries it.
func TestConnectionSecretsStayTyped(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	h.env(t, h.admin, "acme", "dev", "development")
	conn, err := h.svc.ResolveConnection(context.Background(), mustPrincipal(t, h), "acme", "dev", drivers.ScopeReadWrite)
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	// A SQLite DSN carries no secret (a file has no authentication); the
	// credential's token is the secret.
	if conn.Secret.Reveal() == "" || conn.DSN.Reveal() == "" {
		t.Fatal("no secret or DSN")
	}
	for _, s := range []string{fmt.Sprintf("%v %+v %#v", conn, conn, conn), fmt.Sprintf("%v %+v %#v %s", *conn, *conn, *conn, conn.Secret)} {
		if strings.Contains(s, conn.Secret.Reveal()) {
			t.Fatal("printing a Connection shows its secret")
		}
	}
	wire := h.resolveAs(t, h.admin, "readwrite")
	if wire.Secret.Reveal() != conn.Secret.Reveal() || wire.DSN.Reveal() != conn.DSN.Reveal() {
		t.Fatal("the HTTP answer does not carry the secret and DSN in clear")
	}
}

func mustPrincipal(tb testing.TB, h *harness) *cp.Principal {
	tb.Helper()
	p, err := h.svc.Authenticate(context.Background(), h.admin)
	if err != nil {
		tb.Fatalf("authenticate: %v", err)
	}
	return p
}
