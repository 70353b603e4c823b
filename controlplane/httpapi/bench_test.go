package httpapi_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/dataplane"
	"github.com/envplane/envplane/dataplane/router"
	"github.com/envplane/envplane/dataplane/router/sqlopen"
	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/migrations"
)

// BenchmarkProvisionAPI provisions one SQLite environment per op through the
// API: reservation, file, three credentials sealed, schema initialized, active.
func BenchmarkProvisionAPI(b *testing.B) {
	h := newHarness(b)
	h.must(b, http.StatusCreated, h.admin, "POST", "/v1/organizations", map[string]any{"slug": "bench", "max_environments": 100000})
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		h.must(b, http.StatusCreated, h.admin, "POST", "/v1/organizations/bench/environments", map[string]any{"slug": fmt.Sprintf("e%d", i), "type": "development"})
	}
}

// BenchmarkProvisionFloor is the raw floor of BenchmarkProvisionAPI: create a
// SQLite file and apply the same system schema directly, nothing else.
func BenchmarkProvisionFloor(b *testing.B) {
	dir := b.TempDir()
	in := &dataplane.Initializer{System: migrations.DataPlane()}
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, fmt.Sprintf("f%d.db", i))+"?_pragma=journal_mode(WAL)")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := in.Apply(ctx, db, drivers.DialectSQLite, dataplane.Owner{EnvironmentID: "env_x", OrgID: "org_x"}); err != nil {
			b.Fatal(err)
		}
		db.Close()
	}
}

// BenchmarkRouterResolve measures connection lookups per second through
// the API with an app key (readwrite) from 32 connections, with receipts
// on and off, next to BenchmarkRouterResolve/echo: an echo handler that
// answers a fixed JSON object over the same client path, the router's
// ceiling. Each reports req/s and its p99 latency.
func BenchmarkRouterResolve(b *testing.B) {
	b.Run("echo", func(b *testing.B) {
		url, client := trivialEcho(b)
		benchGET(b, client, url, "")
	})
	for _, receipts := range []bool{true, false} {
		name := "receipts-on"
		if !receipts {
			name = "receipts-off"
		}
		b.Run(name, func(b *testing.B) {
			url, token, client := routerFixture(b, receipts)
			benchGET(b, client, url, token)
		})
	}
}

// BenchmarkRouterVersusEcho reports the router's throughput as a fraction of
// the echo handler's, measured side by side in one run: the two alternate
// in slices of a second, so the machine's noise hits both alike. The goal is
// router/echo ≥ 0.7 with p99 ≤ 10 ms.
func BenchmarkRouterVersusEcho(b *testing.B) {
	echoURL, echoClient := trivialEcho(b)
	url, token, client := routerFixture(b, true)
	var echoN, routerN int
	var echoT, routerT time.Duration
	var lat []time.Duration
	for b.Loop() {
		for range 5 {
			n, d, _ := loadFor(b, echoClient, echoURL, "", 200*time.Millisecond)
			echoN, echoT = echoN+n, echoT+d
			n, d, l := loadFor(b, client, url, token, 200*time.Millisecond)
			routerN, routerT, lat = routerN+n, routerT+d, append(lat, l...)
		}
	}
	echoRate, routerRate := float64(echoN)/echoT.Seconds(), float64(routerN)/routerT.Seconds()
	b.ReportMetric(routerRate/echoRate, "router/echo")
	b.ReportMetric(routerRate, "router-req/s")
	b.ReportMetric(echoRate, "echo-req/s")
	b.ReportMetric(percentile(lat, 99), "router-p99-ms")
}

// clients is how many connections the router benchmarks keep busy.
const clients = 32

// benchClient returns an HTTP client that keeps a connection per client
// goroutine (net/http keeps 2 per host by default).
func benchClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = clients * 2
	return &http.Client{Transport: t}
}

// trivialEcho serves a fixed JSON object from a bare echo server.
func trivialEcho(b *testing.B) (string, *http.Client) {
	e := echo.New()
	e.GET("/ping", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	srv := httptest.NewServer(e)
	b.Cleanup(srv.Close)
	return srv.URL + "/ping", benchClient()
}

// routerFixture makes an environment and an app key (readwrite) on a
// harness, warms the router, and returns the connection URL and token.
func routerFixture(b *testing.B, receipts bool, opts ...harnessOption) (url, token string, client *http.Client) {
	h := newHarness(b, append(opts, withLogLevel(slog.LevelInfo))...)
	h.svc.EnableReceipts(receipts)
	h.org(b, "acme")
	h.env(b, h.admin, "acme", "dev", "development")
	token, _ = h.appKey(b, "acme", "dev", "readwrite")
	h.synced(b)
	url = h.srv.URL + "/v1/organizations/acme/environments/dev/connection?scope=readwrite"
	client = benchClient()
	if _, _, lat := loadFor(b, client, url, token, 100*time.Millisecond); len(lat) == 0 {
		b.Fatal("the router answered nothing while warming up")
	}
	return url, token, client
}

// benchGET sends GETs from 32 concurrent clients and reports requests per
// second and the 99th percentile latency.
func benchGET(b *testing.B, client *http.Client, url, token string) {
	b.Helper()
	b.ReportAllocs()
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(max(clients/runtime.GOMAXPROCS(0), 1))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			start := time.Now()
			if err := get(client, url, token); err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(start))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	b.ReportMetric(percentile(lat, 99), "p99-ms")
}

// loadFor keeps 32 clients sending GETs for d and returns how many
// answered, how long it took, and each one's latency.
func loadFor(b *testing.B, client *http.Client, url, token string, d time.Duration) (int, time.Duration, []time.Duration) {
	b.Helper()
	var mu sync.Mutex
	var lat []time.Duration
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			var mine []time.Duration
			for time.Now().Before(deadline) {
				t := time.Now()
				if err := get(client, url, token); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return len(lat), time.Since(start), lat
}

// get sends one GET and reads the whole answer; anything but 200 is an error.
func get(client *http.Client, url, token string) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// BenchmarkTimeToMove measures how long a router client (watch on) takes to
// move to the new credential after a rotation: from sending the rotate
// request to the pool's swap, new pool checked. It reports p50 and p99.
func BenchmarkTimeToMove(b *testing.B) {
	h := newHarness(b)
	h.svc.MaxIssuedPerHour = 0
	h.org(b, "acme")
	h.env(b, h.admin, "acme", "dev", "development")
	app, _ := h.appKey(b, "acme", "dev", "readwrite")
	ctx := context.Background()
	client := &router.Client{BaseURL: h.srv.URL, Token: drivers.Secret(app)}
	pool, err := router.Open(ctx, client, router.Target{Org: "acme", Env: "dev"}, drivers.ScopeReadWrite, sqlopen.Connector, router.Options{})
	if err != nil {
		b.Fatalf("open pool: %v", err)
	}
	b.Cleanup(func() { pool.Close() })
	var moves []time.Duration
	for b.Loop() {
		from := pool.Connection().CredentialID
		start := time.Now()
		h.must(b, http.StatusOK, h.admin, "POST", devPath+"/credentials/rotate", map[string]any{"scope": "readwrite", "grace_seconds": 600})
		for pool.Connection().CredentialID == from {
			if time.Since(start) > 30*time.Second {
				b.Fatal("the client did not move within 30 s")
			}
			time.Sleep(100 * time.Microsecond)
		}
		moves = append(moves, time.Since(start))
		// End the old credential's grace, so the next rotation may start.
		h.must(b, http.StatusOK, h.admin, "POST", devPath+"/credentials/revoke", map[string]any{"credential_id": from, "reason": "bench"})
	}
	b.ReportMetric(percentile(moves, 50), "move-p50-ms")
	b.ReportMetric(percentile(moves, 99), "move-p99-ms")
}

// BenchmarkRouterKeyring compares resolves/s with the Vault keyring and the
// local one (goal: within 10%): cached, where no keyring is called, and
// cold (cache off), where every resolve reads the store and unseals one
// credential (one Transit decrypt for Vault). The two keyrings' routers
// alternate in slices of 200 ms, so the machine's noise hits both alike,
// and vault/local is the ratio of their rates.
func BenchmarkRouterKeyring(b *testing.B) {
	for _, cache := range []string{"cached", "cold"} {
		b.Run(cache, func(b *testing.B) {
			type side struct {
				url, token string
				client     *http.Client
				n          int
				took       time.Duration
			}
			var sides []*side
			for _, kind := range []string{"local", "vault"} {
				var opts []harnessOption
				if kind == "vault" {
					opt, _ := withVault(b)
					opts = append(opts, opt)
				}
				if cache == "cold" {
					opts = append(opts, withoutCache())
				}
				url, token, client := routerFixture(b, true, opts...)
				sides = append(sides, &side{url: url, token: token, client: client})
			}
			for b.Loop() {
				for range 5 {
					for _, sd := range sides {
						n, d, _ := loadFor(b, sd.client, sd.url, sd.token, 200*time.Millisecond)
						sd.n, sd.took = sd.n+n, sd.took+d
					}
				}
			}
			local, vault := float64(sides[0].n)/sides[0].took.Seconds(), float64(sides[1].n)/sides[1].took.Seconds()
			b.ReportMetric(local, "local-req/s")
			b.ReportMetric(vault, "vault-req/s")
			b.ReportMetric(vault/local, "vault/local")
		})
	}
}

// BenchmarkRewrap re-wraps every credential of 20 environments (60 data
// keys) after a key rotation, on each keyring, and reports data keys per
// second (Vault re-wraps with transit/rewrap: the data key never leaves it).
func BenchmarkRewrap(b *testing.B) {
	for _, kind := range []string{"local", "vault"} {
		b.Run(kind, func(b *testing.B) {
			var opts []harnessOption
			if kind == "vault" {
				opt, _ := withVault(b)
				opts = append(opts, opt)
			}
			h := newHarness(b, append(opts, withLogLevel(slog.LevelInfo))...)
			h.must(b, http.StatusCreated, h.admin, "POST", "/v1/organizations", map[string]any{"slug": "bench", "max_environments": 1000})
			for i := range 20 {
				h.must(b, http.StatusCreated, h.admin, "POST", "/v1/organizations/bench/environments", map[string]any{"slug": fmt.Sprintf("e%d", i), "type": "development"})
			}
			var keys int
			for b.Loop() {
				h.must(b, http.StatusOK, h.admin, "POST", "/v1/keyring/rotate", nil)
				var cov cp.KeyCoverage
				h.must(b, http.StatusOK, h.admin, "POST", "/v1/keyring/rewrap", nil).decode(b, &cov)
				if !cov.Complete() {
					b.Fatalf("rewrap left %d of %d behind", cov.Total-cov.Current, cov.Total)
				}
				keys += cov.Total
			}
			b.ReportMetric(float64(keys)/b.Elapsed().Seconds(), "keys/s")
		})
	}
}
