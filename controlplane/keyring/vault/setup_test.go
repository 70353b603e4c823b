package vault_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/keyring/vault"
	"github.com/envplane/envplane/controlplane/keyring/vault/vaulttest"
	"github.com/envplane/envplane/drivers"
)

// clock is a test clock that moves only when told.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Unix(1_700_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// closedPort returns a loopback address nothing listens on (a port the
// kernel just handed out and that was closed again).
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// counter is a reverse proxy to target that counts the requests it passes,
// token renewals aside.
type counter struct {
	url string
	n   atomic.Int64
}

func countRequests(t *testing.T, target string) *counter {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	c := &counter{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The token's renewal runs in the background on its own clock.
		if r.URL.Path != "/v1/auth/token/renew-self" {
			c.n.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c.url = srv.URL
	return c
}

// allFail runs each operation of the keyring and fails the test unless every
// one fails with an error wrapping want and free of secrets.
func allFail(t *testing.T, kr *vault.Keyring, want error, secrets ...string) {
	t.Helper()
	ctx := context.Background()
	dek := dataKey(t)
	fake := []byte("vault:v1:AAAA")
	checks := map[string]error{}
	_, _, checks["Wrap"] = kr.Wrap(ctx, dek)
	_, checks["Unwrap"] = kr.Unwrap(ctx, fake, "vault:transit/envplane:v1")
	_, _, checks["Rewrap"] = kr.Rewrap(ctx, fake, "vault:transit/envplane:v1")
	_, checks["CurrentKeyID"] = kr.CurrentKeyID(ctx)
	_, checks["Rotate"] = kr.Rotate(ctx)
	checks["Retire"] = kr.Retire(ctx, 2)
	checks["Health"] = kr.Health(ctx)
	checks["Check"] = kr.Check(ctx)
	for op, err := range checks {
		if !errors.Is(err, want) {
			t.Errorf("%s = %v, want %v", op, err, want)
			continue
		}
		assertClean(t, err, secrets...)
	}
}

// issue 8: `envplane serve` starts while Vault is down, and the keyring
// works as soon as Vault answers, without a restart.
func TestNewWithVaultDownThenUp(t *testing.T) {
	addr := closedPort(t)
	token := vaulttest.NewRootToken()
	c := newClock()
	kr := newKeyring(t, vault.Config{
		Address: "http://" + addr, Token: drivers.Secret(token), CreateKey: true, MaxRetries: -1, Now: c.Now,
	})
	allFail(t, kr, vault.ErrUnavailable, token)
	err := kr.Health(context.Background())
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Health with Vault down = %v, want it to say the connection was refused", err)
	}
	t.Logf("Health with Vault down: %v", err)

	vaulttest.StartWith(t, vaulttest.Options{Addr: addr, RootToken: token})
	// Within a second of the last failed attempt, Vault is not asked.
	if _, _, err := kr.Wrap(context.Background(), dataKey(t)); !errors.Is(err, vault.ErrUnavailable) {
		t.Fatalf("Wrap before the next attempt is due = %v, want ErrUnavailable", err)
	}
	c.Add(vault.SetupRetryInterval)
	dek := dataKey(t)
	wrapped, keyID := wrap(t, kr, dek)
	if keyID != "vault:transit/envplane:v1" {
		t.Errorf("Wrap key id = %q, want the key created on first use at v1", keyID)
	}
	assertUnwraps(t, kr, wrapped, keyID, dek)
	if err := kr.Health(context.Background()); err != nil {
		t.Errorf("Health with Vault up = %v", err)
	}
	if err := kr.Check(context.Background()); err != nil {
		t.Errorf("Check with Vault up = %v", err)
	}
}

// A flood of calls while Vault is down costs Vault one login attempt per
// SetupRetryInterval.
func TestSetupAttemptsArePaced(t *testing.T) {
	var requests atomic.Int64
	sealed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"errors":["Vault is sealed"]}`))
	}))
	t.Cleanup(sealed.Close)
	c := newClock()
	token := "s.paced-token-value"
	kr := newKeyring(t, vault.Config{Address: sealed.URL, Token: drivers.Secret(token), MaxRetries: -1, Now: c.Now})

	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			_, _, err := kr.Wrap(context.Background(), dataKey(t))
			if !errors.Is(err, vault.ErrUnavailable) || !strings.Contains(err.Error(), "Vault is sealed") {
				t.Errorf("Wrap = %v, want ErrUnavailable saying Vault is sealed", err)
			}
		})
	}
	wg.Wait()
	allFail(t, kr, vault.ErrUnavailable, token)
	if n := requests.Load(); n != 1 {
		t.Errorf("calls while Vault is sealed sent %d requests, want 1", n)
	}
	c.Add(vault.SetupRetryInterval - time.Millisecond)
	allFail(t, kr, vault.ErrUnavailable, token)
	if n := requests.Load(); n != 1 {
		t.Errorf("requests before the interval passed = %d, want 1", n)
	}
	c.Add(time.Millisecond)
	allFail(t, kr, vault.ErrUnavailable, token)
	if n := requests.Load(); n != 2 {
		t.Errorf("requests once the interval passed = %d, want 2", n)
	}
}

func TestHealth(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	s.createKey(t)

	proxy := countRequests(t, s.addr)
	token := s.token(t, nil)
	kr := newKeyring(t, vault.Config{Address: proxy.url, Token: drivers.Secret(token), MaxRetries: -1})
	if n := proxy.n.Load(); n != 0 {
		t.Fatalf("New sent %d requests, want none", n)
	}
	var _ controlplane.KeyringHealth = kr
	if err := kr.Health(ctx); err != nil {
		t.Fatalf("first Health = %v", err)
	}
	for range 3 {
		before := proxy.n.Load()
		if err := kr.Health(ctx); err != nil {
			t.Fatalf("Health = %v", err)
		}
		if n := proxy.n.Load() - before; n != 1 {
			t.Errorf("Health sent %d requests, want 1", n)
		}
	}

	t.Run("revoked token", func(t *testing.T) {
		s.write(t, "auth/token/revoke", map[string]any{"token": token})
		err := kr.Health(ctx)
		if !errors.Is(err, vault.ErrDenied) || !strings.Contains(err.Error(), "transit/envplane") || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("Health with a revoked token = %v, want ErrDenied naming the key and revocation", err)
		}
		t.Logf("Health with a revoked token: %v", err)
		assertClean(t, err, token, s.root)
	})

	t.Run("sealed", func(t *testing.T) {
		root := newKeyring(t, vault.Config{Address: s.addr, Token: drivers.Secret(s.root), MaxRetries: -1})
		if err := root.Health(ctx); err != nil {
			t.Fatalf("Health before sealing = %v", err)
		}
		s.vs.Seal(t)
		err := root.Health(ctx)
		if !errors.Is(err, vault.ErrUnavailable) || !strings.Contains(err.Error(), "sealed") {
			t.Fatalf("Health with Vault sealed = %v, want ErrUnavailable saying sealed", err)
		}
		t.Logf("Health with Vault sealed: %v", err)
		assertClean(t, err, s.root)
	})
}

func TestOwnsAndVersion(t *testing.T) {
	// No Vault at all: Owns and Version call no one.
	kr := newKeyring(t, vault.Config{
		Address: "http://" + closedPort(t), Token: "s.unused", Mount: "kms/transit", Key: "app-keys",
	})
	var _ controlplane.KeyOwner = kr
	var _ controlplane.KeyManager = kr
	for _, tc := range []struct {
		keyID   string
		version int
		ok      bool
	}{
		{"vault:kms/transit/app-keys:v1", 1, true},
		{"vault:kms/transit/app-keys:v42", 42, true},
		{"vault:kms/transit/app-keys:v0", 0, false},
		{"vault:kms/transit/app-keys:v07", 0, false},
		{"vault:kms/transit/app-keys:v", 0, false},
		{"vault:kms/transit/app-keys:1", 0, false},
		{"vault:transit/app-keys:v1", 0, false},
		{"vault:kms/transit/other:v1", 0, false},
		{"vault:kms/transit/app-keys-2:v1", 0, false},
		{"local:1", 0, false},
		{"", 0, false},
	} {
		if got := kr.Owns(tc.keyID); got != tc.ok {
			t.Errorf("Owns(%q) = %v, want %v", tc.keyID, got, tc.ok)
		}
		if v, ok := kr.Version(tc.keyID); v != tc.version || ok != tc.ok {
			t.Errorf("Version(%q) = %d, %v; want %d, %v", tc.keyID, v, ok, tc.version, tc.ok)
		}
	}
}

func TestClosedKeyringRefuses(t *testing.T) {
	s := startServer(t)
	kr, err := vault.New(context.Background(), s.config())
	if err != nil {
		t.Fatal(err)
	}
	kr.Close()
	kr.Close() // idempotent
	if err := kr.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Check on a closed keyring = %v, want a refusal", err)
	}
}
