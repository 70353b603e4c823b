package httpapi_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/keyring/chain"
	"github.com/envplane/envplane/controlplane/keyring/local"
	"github.com/envplane/envplane/controlplane/keyring/vault"
	"github.com/envplane/envplane/controlplane/keyring/vault/vaulttest"
	"github.com/envplane/envplane/drivers"
)

// vaultKeyring builds the vault keyring against a running dev server.
func vaultKeyring(tb testing.TB, addr, token string) *vault.Keyring {
	tb.Helper()
	kr, err := vault.New(context.Background(), vault.Config{Address: addr, Token: drivers.Secret(token), CreateKey: true, Timeout: 5 * time.Second})
	if err != nil {
		tb.Fatalf("vault keyring: %v", err)
	}
	tb.Cleanup(func() { kr.Close() })
	return kr
}

// withVault makes the harness's keyring a vault keyring on a dev server of
// its own, and returns that server.
func withVault(tb testing.TB) (harnessOption, *vaulttest.Server) {
	tb.Helper()
	srv := vaulttest.StartServer(tb)
	kr := vaultKeyring(tb, srv.URL, srv.Token)
	return withKeyring(func(string) cp.Keyring { return kr }), srv
}

// TestVaultKeyringEndToEnd: with the vault keyring, provisioning, rotation,
// resolution, clone and deletion work; every credential's data key is
// wrapped by Transit; the Vault token never reaches the log.
func TestVaultKeyringEndToEnd(t *testing.T) {
	opt, srv := withVault(t)
	h := newHarness(t, opt)
	h.org(t, "acme")
	dev := h.env(t, h.admin, "acme", "dev", "development")
	for _, c := range h.liveCredentials(t, dev.ID) {
		if !strings.HasPrefix(c.KMSKeyID, "vault:transit/envplane:v") {
			t.Fatalf("credential %s is wrapped under %q, not by Vault", c.ID, c.KMSKeyID)
		}
	}
	conn := h.resolveAs(t, h.admin, "readwrite")
	if !works(t, "sqlite", conn.DSN) {
		t.Fatal("the resolved DSN does not open the database")
	}
	var rot cp.CredentialsResponse
	h.must(t, http.StatusOK, h.admin, "POST", devPath+"/credentials/rotate", map[string]any{"scope": "readwrite", "grace_seconds": 60}).decode(t, &rot)
	if rot.Operation.Status != cp.OpSucceeded {
		t.Fatalf("rotation: %s %s", rot.Operation.Status, rot.Operation.Error)
	}
	if c := h.resolveAs(t, h.admin, "readwrite"); c.CredentialID == conn.CredentialID {
		t.Fatal("after a rotation the router hands out the old credential")
	}
	clone := h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments",
		map[string]any{"slug": "copy", "type": "preview", "from_environment": "dev", "clone": "full"}).environment(t)
	if clone.Status != cp.StatusActive {
		t.Fatalf("clone is %s", clone.Status)
	}
	h.must(t, http.StatusAccepted, h.admin, "DELETE", "/v1/organizations/acme/environments/copy", nil)
	h.svc.Wait()
	h.must(t, http.StatusNotFound, h.admin, "GET", "/v1/organizations/acme/environments/copy", nil)
	if strings.Contains(h.logs.String(), srv.Token) {
		t.Fatal("the Vault token appears in the server log")
	}
}

// keyCoverage reads the keyring's coverage through the API.
func (h *harness) keyCoverage(tb testing.TB, method, path string, body any) cp.KeyCoverage {
	tb.Helper()
	var cov cp.KeyCoverage
	h.must(tb, http.StatusOK, h.admin, method, path, body).decode(tb, &cov)
	return cov
}

// TestKeyRotationLive closes a key rotation (rotate, rewrap, retire) on
// each keyring through the API while another replica keeps resolving and
// the first keeps provisioning: no request answers 500, the other replica
// follows the new key version without a restart, the coverage says where
// every data key is at each step, and a data key under a retired version
// fails with a clear error.
func TestKeyRotationLive(t *testing.T) {
	for name, kind := range map[string]string{"local": "local", "vault": "vault"} {
		t.Run(name, func(t *testing.T) {
			var opts []harnessOption
			if kind == "vault" {
				opt, _ := withVault(t)
				opts = append(opts, opt)
			}
			a := newHarness(t, opts...)
			b := newHarness(t, append(opts, asReplicaOf(a))...)
			a.org(t, "acme")
			a.env(t, a.admin, "acme", "dev", "development")
			b.synced(t)
			before := a.keyCoverage(t, "GET", "/v1/keyring", nil)
			if !before.Complete() || before.Total == 0 {
				t.Fatalf("coverage before rotating: %+v", before)
			}
			old := a.credentials(t, a.envView(t, "acme", "dev").ID, cp.CredentialActive)[0]

			ctx, stop := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			var failures atomic.Int64
			var firstFailure atomic.Value
			record := func(r response, what string) {
				if r.status >= 500 {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, what+": "+r.shown())
				}
			}
			wg.Go(func() {
				for ctx.Err() == nil {
					record(b.do(t, a.admin, "GET", devPath+"/connection?scope=readwrite", nil), "resolve on the other replica")
					time.Sleep(5 * time.Millisecond)
				}
			})
			wg.Go(func() {
				for i := 0; ctx.Err() == nil; i++ {
					record(a.do(t, a.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "p" + strconv.Itoa(i), "type": "preview"}), "provisioning")
				}
			})

			rotated := a.keyCoverage(t, "POST", "/v1/keyring/rotate", nil)
			if rotated.CurrentKeyID == before.CurrentKeyID || rotated.Complete() {
				t.Fatalf("after rotate: %+v", rotated)
			}
			wantProblem(t, a.do(t, a.admin, "POST", "/v1/keyring/retire", map[string]any{"below": 2}), http.StatusConflict, cp.ECONFLICT, "")
			rewrapped := a.keyCoverage(t, "POST", "/v1/keyring/rewrap", nil)
			if rewrapped.CurrentKeyID != rotated.CurrentKeyID || rewrapped.Total == 0 {
				t.Fatalf("after rewrap: %+v", rewrapped)
			}
			stop()
			wg.Wait()
			// Provisioning that raced the rewrap may have wrapped under the
			// old version on a replica that had not noticed yet: rewrap again.
			rewrapped = a.keyCoverage(t, "POST", "/v1/keyring/rewrap", nil)
			if !rewrapped.Complete() {
				t.Fatalf("a second rewrap left credentials behind: %+v", rewrapped)
			}
			retired := a.keyCoverage(t, "POST", "/v1/keyring/retire", map[string]any{"below": 2})
			if !retired.Complete() {
				t.Fatalf("after retire: %+v", retired)
			}
			if n := failures.Load(); n > 0 {
				t.Fatalf("%d requests answered 5xx during the key rotation; first: %v", n, firstFailure.Load())
			}
			// The other replica reads credentials wrapped under the new version.
			b.synced(t)
			if c := b.resolveAs(t, a.admin, "readwrite"); c.CredentialID == "" {
				t.Fatal("the other replica does not resolve after the rotation")
			}
			// A data key wrapped under the retired version no longer opens.
			_, err := a.svc.Keyring.Unwrap(context.Background(), old.DEKCipher, old.KMSKeyID)
			if err == nil || !strings.Contains(err.Error(), "retired") && !strings.Contains(err.Error(), "unknown key version") {
				t.Fatalf("a data key under a retired version: %v, want an error naming the retired version", err)
			}
			for _, action := range []string{"keyring.rotated", "keyring.rewrapped", "keyring.retired"} {
				if !containsAudit(t, a, action) {
					t.Errorf("no %s audit event", action)
				}
			}
		})
	}
}

// containsAudit reports whether the platform's audit events (no
// organization) include action; they are read from the store.
func containsAudit(tb testing.TB, h *harness, action string) bool {
	tb.Helper()
	events, _, err := h.svc.Store.ListAuditEvents(cp.WithPlatformScope(context.Background()), "", cp.Page{Limit: cp.MaxPageLimit})
	if err != nil {
		tb.Fatalf("audit events: %v", err)
	}
	for _, e := range events {
		if e.Action == action {
			return true
		}
	}
	return false
}

// TestKeyringAPIIsThePlatformAdmins: owners and app keys get 403.
func TestKeyringAPIIsThePlatformAdmins(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	h.env(t, h.admin, "acme", "dev", "development")
	owner := h.member(t, "acme", "olga@example.com", cp.OrgOwner)
	app, _ := h.appKey(t, "acme", "dev", "admin")
	for _, token := range []string{owner, app} {
		wantProblem(t, h.do(t, token, "GET", "/v1/keyring", nil), http.StatusForbidden, cp.EFORBIDDEN, "")
		wantProblem(t, h.do(t, token, "POST", "/v1/keyring/rotate", nil), http.StatusForbidden, cp.EFORBIDDEN, "")
	}
	for _, below := range []any{0, 1, 99, "2"} {
		r := h.do(t, h.admin, "POST", "/v1/keyring/retire", map[string]any{"below": below})
		if r.status != http.StatusUnprocessableEntity {
			t.Errorf("retire below %v: %d, want 422", below, r.status)
		}
	}
}

// TestVaultUnavailable: with Vault down, envplane serves: /readyz is ready
// but says no new secrets can be made, cached resolves keep answering,
// provisioning fails cleanly after its retries (503 from a cache miss,
// never 500); a revoked Vault token gives an error that names the keyring
// and never shows the token.
func TestVaultUnavailable(t *testing.T) {
	opt, srv := withVault(t)
	h := newHarness(t, opt)
	h.org(t, "acme")
	h.env(t, h.admin, "acme", "dev", "development")
	h.synced(t)
	cached := h.resolveAs(t, h.admin, "readwrite")

	srv.Stop()
	var ready cp.Readiness
	h.must(t, http.StatusOK, "", "GET", "/readyz", nil).decode(t, &ready)
	if ready.NewSecrets || ready.Keyring != "unavailable" {
		t.Fatalf("readyz with Vault down: %+v", ready)
	}
	if c := h.resolveAs(t, h.admin, "readwrite"); c.CredentialID != cached.CredentialID {
		t.Fatal("a cached resolve changed while Vault is down")
	}
	// A cache miss needs Vault: 503, not 500.
	wantProblem(t, h.do(t, h.admin, "GET", devPath+"/connection?scope=readonly", nil), http.StatusServiceUnavailable, cp.EUNAVAILABLE, "")
	r := h.do(t, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "late", "type": "development"})
	if r.status != http.StatusAccepted {
		t.Fatalf("provisioning with Vault down: %d %s", r.status, r.shown())
	}
	h.svc.Wait()
	v := h.envView(t, "acme", "late")
	if v.Status != cp.StatusFailed || !strings.Contains(v.Error, "keyring") {
		t.Fatalf("provisioning with Vault down ended %s %q, want failed naming the keyring", v.Status, v.Error)
	}
	if strings.Contains(h.logs.String(), srv.Token) {
		t.Fatal("the Vault token appears in the server log")
	}
}

// TestVaultRevokedToken: a token Vault revoked makes every keyring call fail
// with an error naming the keyring, never the token.
func TestVaultRevokedToken(t *testing.T) {
	srv := vaulttest.StartServer(t)
	child := srv.ChildToken(t)
	kr := vaultKeyring(t, srv.URL, child)
	if _, _, err := kr.Wrap(context.Background(), make([]byte, 32)); err != nil {
		t.Fatalf("wrap with a live token: %v", err)
	}
	srv.RevokeToken(t, child)
	_, _, err := kr.Wrap(context.Background(), make([]byte, 32))
	if err == nil || !strings.Contains(err.Error(), "vault keyring") || strings.Contains(err.Error(), child) {
		t.Fatalf("wrap with a revoked token: %v", err)
	}
}

// TestSwitchLocalToVault: a replica configured with vault, still reading
// the local keyring, opens every credential sealed locally, wraps new ones
// in Vault, and moves the old ones there with rewrap, while resolves on it
// never fail.
func TestSwitchLocalToVault(t *testing.T) {
	a := newHarness(t)
	a.org(t, "acme")
	a.env(t, a.admin, "acme", "dev", "development")
	srv := vaulttest.StartServer(t)
	vk := vaultKeyring(t, srv.URL, srv.Token)
	b := newHarness(t, asReplicaOf(a), withKeyring(func(dir string) cp.Keyring {
		lk, _, err := local.OpenFile(filepath.Join(dir, "master.key"))
		if err != nil {
			t.Fatalf("local keyring: %v", err)
		}
		ch, err := chain.New(vk, lk)
		if err != nil {
			t.Fatalf("chain: %v", err)
		}
		return ch
	}))
	b.synced(t)

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var failures atomic.Int64
	wg.Go(func() {
		for ctx.Err() == nil {
			if r := b.do(t, a.admin, "GET", devPath+"/connection?scope=readwrite", nil); r.status != http.StatusOK {
				failures.Add(1)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	b.env(t, a.admin, "acme", "fresh", "development")
	cov := b.keyCoverage(t, "POST", "/v1/keyring/rewrap", nil)
	stop()
	wg.Wait()
	if !cov.Complete() || !strings.HasPrefix(cov.CurrentKeyID, "vault:") {
		t.Fatalf("after the switch's rewrap: %+v", cov)
	}
	for id := range cov.ByKey {
		if strings.HasPrefix(id, "local:") {
			t.Fatalf("credentials left under %s", id)
		}
	}
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d resolves failed during the switch", n)
	}
	if !works(t, "sqlite", b.resolveAs(t, a.admin, "readwrite").DSN) {
		t.Fatal("after the switch the resolved credential does not open the database")
	}
}
