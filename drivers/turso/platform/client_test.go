package platform_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/turso/platform"
	"github.com/envplane/envplane/drivers/turso/tursotest"
)

// sleeps records the waits between attempts instead of waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(_ context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
	return nil
}

func (s *sleeps) got() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// newClient returns a client of a fresh Platform double (API only) that
// records its sleeps and backs off by exactly the ceiling (no jitter).
func newClient(t *testing.T, tweak func(*platform.Config)) (*platform.Client, *tursotest.Platform, *sleeps) {
	t.Helper()
	p := tursotest.NewPlatform(t, tursotest.PlatformOptions{})
	s := &sleeps{}
	cfg := platform.Config{
		BaseURL:      p.URL,
		Organization: p.Organization,
		Token:        p.Token,
		Sleep:        s.sleep,
		Jitter:       func(d time.Duration) time.Duration { return d },
	}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := platform.New(cfg)
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	return c, p, s
}

func TestDatabaseLifecycle(t *testing.T) {
	ctx := context.Background()
	c, p, _ := newClient(t, nil)
	created, err := c.CreateDatabase(ctx, platform.CreateDatabaseInput{Name: "env-one", Group: p.Group, SizeLimit: "256mb"})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if created.Name != "env-one" || created.Hostname == "" || created.DbID == "" {
		t.Fatalf("create answered %+v, want name, hostname and id", created)
	}
	got, err := c.GetDatabase(ctx, "env-one")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.Hostname != created.Hostname || got.DbID != created.DbID || got.Group != p.Group || got.PrimaryRegion != p.Location {
		t.Fatalf("get answered %+v, created %+v", got, created)
	}
	if _, err := c.CreateDatabase(ctx, platform.CreateDatabaseInput{Name: "env-one", Group: p.Group}); !errors.Is(err, drivers.ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	if err := c.DeleteDatabase(ctx, "env-one"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := c.GetDatabase(ctx, "env-one"); !errors.Is(err, drivers.ErrNotFound) {
		t.Fatalf("get after delete: %v, want ErrNotFound", err)
	}
	if err := c.DeleteDatabase(ctx, "env-one"); err != nil {
		t.Fatalf("delete of an absent database: %v, want success", err)
	}
	if err := c.InvalidateDatabaseTokens(ctx, "env-one"); !errors.Is(err, drivers.ErrNotFound) {
		t.Fatalf("invalidate on an absent database: %v, want ErrNotFound", err)
	}
	if _, err := c.CreateDatabaseToken(ctx, "env-one", platform.TokenOptions{}); !errors.Is(err, drivers.ErrNotFound) {
		t.Fatalf("token for an absent database: %v, want ErrNotFound", err)
	}
}

func TestSeedFromDatabase(t *testing.T) {
	ctx := context.Background()
	c, p, _ := newClient(t, nil)
	if _, err := c.CreateDatabase(ctx, platform.CreateDatabaseInput{Name: "env-src", Group: p.Group}); err != nil {
		t.Fatalf("create source: %v", err)
	}
	clone, err := c.CreateDatabase(ctx, platform.CreateDatabaseInput{
		Name: "env-clone", Group: p.Group, Seed: &platform.Seed{Type: platform.SeedDatabase, Name: "env-src"},
	})
	if err != nil {
		t.Fatalf("create seeded: %v", err)
	}
	if clone.Name != "env-clone" {
		t.Fatalf("seeded database is named %q", clone.Name)
	}
}

// claims decodes a token's payload; the double's tokens are JWTs like Turso's.
func claims(t *testing.T, token drivers.Secret) map[string]any {
	t.Helper()
	parts := strings.Split(token.Reveal(), ".")
	if len(parts) != 3 {
		t.Fatalf("token is not a JWT (%d parts)", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("token payload: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatalf("token claims: %v", err)
	}
	return m
}

func TestTokenOptionsReachTurso(t *testing.T) {
	ctx := context.Background()
	c, p, _ := newClient(t, nil)
	if _, err := c.CreateDatabase(ctx, platform.CreateDatabaseInput{Name: "env-tok", Group: p.Group}); err != nil {
		t.Fatalf("create: %v", err)
	}
	ro, err := c.CreateDatabaseToken(ctx, "env-tok", platform.TokenOptions{Expiration: "1d2h3m", Authorization: platform.ReadOnly})
	if err != nil {
		t.Fatalf("read-only token: %v", err)
	}
	cl := claims(t, ro)
	if cl["a"] != "ro" {
		t.Errorf("read-only token has access %v, want ro", cl["a"])
	}
	iat, _ := cl["iat"].(float64)
	exp, _ := cl["exp"].(float64)
	if want := (26*time.Hour + 3*time.Minute).Seconds(); exp-iat != want {
		t.Errorf("token lives %vs, want %vs", exp-iat, want)
	}
	full, err := c.CreateDatabaseToken(ctx, "env-tok", platform.TokenOptions{})
	if err != nil {
		t.Fatalf("default token: %v", err)
	}
	if cl := claims(t, full); cl["a"] != "rw" || cl["exp"] != nil {
		t.Errorf("default token claims a=%v exp=%v, want full access that never expires", cl["a"], cl["exp"])
	}
	if _, err := c.CreateDatabaseToken(ctx, "env-tok", platform.TokenOptions{Expiration: "soon"}); err == nil || errors.Is(err, drivers.ErrUnavailable) {
		t.Errorf("malformed expiration: %v, want a plain 400 error", err)
	}
}

func TestRetriesTooManyRequestsHonouringRetryAfter(t *testing.T) {
	c, p, s := newClient(t, nil)
	p.FailNext(2, tursotest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "7"})
	locations, err := c.ListLocations(context.Background())
	if err != nil {
		t.Fatalf("list locations: %v", err)
	}
	if _, ok := locations[p.Location]; !ok {
		t.Errorf("locations %v lack %s", locations, p.Location)
	}
	if got := s.got(); len(got) != 2 || got[0] != 7*time.Second || got[1] != 7*time.Second {
		t.Errorf("waited %v, want [7s 7s] from Retry-After", got)
	}
	if n := p.Requests(); n != 3 {
		t.Errorf("double received %d requests, want 3", n)
	}
}

func TestRetryAfterAsHTTPDate(t *testing.T) {
	now := time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)
	c, p, s := newClient(t, func(cfg *platform.Config) { cfg.Now = func() time.Time { return now } })
	p.FailNext(1, tursotest.Fault{Status: http.StatusServiceUnavailable, RetryAfter: now.Add(12 * time.Second).Format(http.TimeFormat)})
	if _, err := c.ListLocations(context.Background()); err != nil {
		t.Fatalf("list locations: %v", err)
	}
	if got := s.got(); len(got) != 1 || got[0] != 12*time.Second {
		t.Errorf("waited %v, want [12s]", got)
	}
}

func TestRetriesServerErrorsWithExponentialBackoff(t *testing.T) {
	c, p, s := newClient(t, func(cfg *platform.Config) {
		cfg.MinBackoff = 100 * time.Millisecond
		cfg.MaxBackoff = 300 * time.Millisecond
		cfg.MaxAttempts = 5
	})
	p.FailNext(4, tursotest.Fault{Status: http.StatusInternalServerError})
	if _, err := c.ListLocations(context.Background()); err != nil {
		t.Fatalf("list locations: %v", err)
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond}
	got := s.got()
	if len(got) != len(want) {
		t.Fatalf("waited %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("waited %v, want %v", got, want)
		}
	}
}

func TestJitterStaysWithinTheBackoff(t *testing.T) {
	c, p, s := newClient(t, func(cfg *platform.Config) {
		cfg.Jitter = nil // the default, random one
		cfg.MaxAttempts = 4
	})
	p.FailNext(3, tursotest.Fault{Status: http.StatusBadGateway})
	if _, err := c.ListLocations(context.Background()); err != nil {
		t.Fatalf("list locations: %v", err)
	}
	for i, d := range s.got() {
		ceiling := 250 * time.Millisecond << i
		if d < 0 || d > ceiling {
			t.Errorf("wait %d is %v, want within [0, %v]", i, d, ceiling)
		}
	}
}

func TestGivesUpAsUnavailableAfterMaxAttempts(t *testing.T) {
	c, p, _ := newClient(t, func(cfg *platform.Config) { cfg.MaxAttempts = 3 })
	p.FailNext(10, tursotest.Fault{Status: http.StatusServiceUnavailable})
	_, err := c.ListLocations(context.Background())
	if !errors.Is(err, drivers.ErrUnavailable) {
		t.Fatalf("error %v, want ErrUnavailable", err)
	}
	var perr *platform.Error
	if !errors.As(err, &perr) || perr.Status != http.StatusServiceUnavailable || perr.Message != "injected fault" {
		t.Errorf("error %#v, want status 503 with Turso's message kept", err)
	}
	if n := p.Requests(); n != 3 {
		t.Errorf("double received %d requests, want 3", n)
	}
}

func TestDoesNotRetryClientErrors(t *testing.T) {
	c, p, s := newClient(t, nil)
	_, err := c.CreateDatabase(context.Background(), platform.CreateDatabaseInput{Name: "env-x", Group: "no-such-group"})
	if err == nil {
		t.Fatal("create in a missing group succeeded")
	}
	if errors.Is(err, drivers.ErrUnavailable) || errors.Is(err, drivers.ErrExists) || errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("400 mapped to a sentinel: %v", err)
	}
	if !strings.Contains(err.Error(), "group not found") {
		t.Errorf("error %q lost Turso's message", err)
	}
	if n := p.Requests(); n != 1 {
		t.Errorf("double received %d requests, want 1 (no retry on 400)", n)
	}
	if len(s.got()) != 0 {
		t.Errorf("client slept %v before failing a 400", s.got())
	}
}

func TestRetryAfterBeyondTheLimitEndsTheCall(t *testing.T) {
	c, p, s := newClient(t, nil)
	p.FailNext(1, tursotest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "3600"})
	_, err := c.ListLocations(context.Background())
	if !errors.Is(err, drivers.ErrUnavailable) {
		t.Fatalf("error %v, want ErrUnavailable", err)
	}
	if n := p.Requests(); n != 1 || len(s.got()) != 0 {
		t.Errorf("%d requests and waits %v, want one request and no wait", n, s.got())
	}
}

func TestRetriesAnAttemptThatTimesOut(t *testing.T) {
	c, p, _ := newClient(t, func(cfg *platform.Config) { cfg.Timeout = 100 * time.Millisecond })
	p.FailNext(1, tursotest.Fault{Delay: time.Minute})
	if _, err := c.ListLocations(context.Background()); err != nil {
		t.Fatalf("list locations after a timed-out attempt: %v", err)
	}
	if n := p.Requests(); n != 2 {
		t.Errorf("double received %d requests, want 2", n)
	}
}

func TestUnreachableAPIIsUnavailable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &sleeps{}
	token := drivers.Secret("platform-token-that-must-not-leak")
	c, err := platform.New(platform.Config{BaseURL: "http://" + addr, Organization: "o", Token: token, Sleep: s.sleep, MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListLocations(context.Background())
	if !errors.Is(err, drivers.ErrUnavailable) {
		t.Fatalf("error %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), token.Reveal()) {
		t.Error("the error contains the API token")
	}
	if len(s.got()) != 1 {
		t.Errorf("waited %v, want one wait between two attempts", s.got())
	}
}

func TestCancelledContextStopsRetrying(t *testing.T) {
	c, p, _ := newClient(t, func(cfg *platform.Config) { cfg.Sleep = nil })
	p.FailNext(5, tursotest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "30"})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for p.Requests() == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	_, err := c.ListLocations(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

// TestAnswersNeverCarryTheToken uses a server that echoes the bearer token in
// its error messages, the worst case, to show the client scrubs it.
func TestAnswersNeverCarryTheToken(t *testing.T) {
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "bad request from " + r.Header.Get("Authorization")})
	}))
	t.Cleanup(echo.Close)
	token := drivers.Secret("platform-token-that-must-not-leak")
	c, err := platform.New(platform.Config{BaseURL: echo.URL, Organization: "o", Token: token})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.GetDatabase(context.Background(), "env-x")
	if err == nil {
		t.Fatal("want an error")
	}
	if strings.Contains(err.Error(), token.Reveal()) {
		t.Error("the error contains the API token")
	}
	if !strings.Contains(err.Error(), "bad request from Bearer [redacted]") {
		t.Errorf("error %q lost the rest of Turso's message", err)
	}
}

func TestNewRejectsIncompleteConfig(t *testing.T) {
	for name, cfg := range map[string]platform.Config{
		"no organization": {Token: "t"},
		"no token":        {Organization: "o"},
		"relative URL":    {Organization: "o", Token: "t", BaseURL: "api.turso.tech"},
	} {
		if _, err := platform.New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}
