package httpapi_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/envplane/envplane/dataplane"
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

// BenchmarkRouterResolve measures connection lookups per second through the
// API (authentication, authorization, lookup, unseal, descriptor).
func BenchmarkRouterResolve(b *testing.B) {
	h := newHarness(b)
	h.org(b, "acme")
	h.env(b, h.admin, "acme", "dev", "development")
	url := h.srv.URL + "/v1/organizations/acme/environments/dev/connection?scope=readwrite"
	benchGET(b, h.srv.Client(), url, h.admin)
}

// BenchmarkTrivialEchoJSON is the floor of BenchmarkRouterResolve: an echo
// handler that answers a fixed JSON object, over the same HTTP client path.
func BenchmarkTrivialEchoJSON(b *testing.B) {
	e := echo.New()
	e.GET("/ping", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	srv := httptest.NewServer(e)
	b.Cleanup(srv.Close)
	benchGET(b, srv.Client(), srv.URL+"/ping", "")
}

// benchGET sends GETs from parallel clients and reports requests per second.
func benchGET(b *testing.B, client *http.Client, url, token string) {
	b.Helper()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
