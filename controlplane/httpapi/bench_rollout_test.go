package httpapi_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
)

// provisionMany makes n active development environments in org through the
// service, workers at a time: each a real SQLite file with its credentials
// and schema, as an API request would make it, without the HTTP round trip.
func provisionMany(b *testing.B, h *harness, org string, n, workers int) {
	b.Helper()
	ctx := context.Background()
	p := cp.Operator()
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				_, op, done, err := h.svc.CreateEnvironment(ctx, p, org, cp.CreateEnvironmentRequest{Slug: fmt.Sprintf("e%d", i), Type: cp.TypeDevelopment})
				if err != nil {
					errs <- err
					return
				}
				<-done
				if got, err := h.svc.Store.GetOperation(cp.WithPlatformScope(ctx), op.OrgID, op.ID); err != nil || got.Status != cp.OpSucceeded {
					errs <- fmt.Errorf("environment e%d not provisioned: %v", i, err)
					return
				}
			}
		})
	}
	for i := range n {
		select {
		case next <- i:
		case err := <-errs:
			b.Fatal(err)
		}
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// BenchmarkRollout1000 migrates 1,000 SQLite environments (plus the
// organization's default) to the next app version through one rollout of
// the API, parallelism 16: each environment one migrate operation. The
// environments are provisioned before the timer starts (about a minute on
// a 2-core machine); each round adds a migration, so every round migrates
// all of them. Reports the environments migrated per second.
func BenchmarkRollout1000(b *testing.B) {
	const n = 1000
	h := newHarness(b, withLogLevel(slog.LevelInfo))
	dir := b.TempDir()
	write := func(name, sql string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(sql), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	write("0001_widgets.sql", "CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT NOT NULL);")
	h.svc.Schema.App = os.DirFS(dir)
	h.must(b, http.StatusCreated, h.admin, "POST", "/v1/organizations", map[string]any{"slug": "fleet", "max_environments": n + 10})
	start := time.Now()
	provisionMany(b, h, "fleet", n, 4)
	b.Logf("provisioned %d environments in %s", n, time.Since(start).Round(time.Millisecond))
	version := 1
	for b.Loop() {
		// Each round is a new release: one more migration for every environment.
		b.StopTimer()
		version++
		write(fmt.Sprintf("%04d_gadgets.sql", version), fmt.Sprintf("CREATE TABLE gadgets%[1]d (id INTEGER PRIMARY KEY, label TEXT NOT NULL DEFAULT '');\nCREATE INDEX gadgets%[1]d_label ON gadgets%[1]d (label);", version))
		b.StartTimer()
		var v cp.RolloutView
		h.must(b, http.StatusCreated, h.admin, "POST", "/v1/organizations/fleet/rollouts", map[string]any{"version": version, "parallelism": 16}).decode(b, &v)
		for {
			r, err := h.svc.Store.GetRollout(cp.WithPlatformScope(context.Background()), v.Rollout.OrgID, v.Rollout.ID)
			if err != nil {
				b.Fatal(err)
			}
			if r.FinishedAt != nil {
				if r.Status != cp.RolloutSucceeded {
					b.Fatalf("rollout %s: %s", r.Status, r.Error)
				}
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	b.StopTimer()
	items, err := h.svc.Store.ListRolloutItems(cp.WithPlatformScope(context.Background()), mustLastRollout(b, h))
	if err != nil {
		b.Fatal(err)
	}
	for _, it := range items {
		if it.Status != cp.ItemSucceeded || it.SchemaVersion != int64(version) {
			b.Fatalf("%s: %s %s", it.Environment, it.Status, it.Reason)
		}
	}
	if len(items) != n+1 {
		b.Fatalf("%d environments in the rollout, want %d", len(items), n+1)
	}
	b.ReportMetric(float64(len(items))*float64(b.N)/b.Elapsed().Seconds(), "envs/s")
}

// mustLastRollout returns the id of the newest rollout of the fleet organization.
func mustLastRollout(b *testing.B, h *harness) string {
	b.Helper()
	org, err := h.svc.Store.GetOrganization(cp.WithPlatformScope(context.Background()), "fleet")
	if err != nil {
		b.Fatal(err)
	}
	rs, _, err := h.svc.Store.ListRollouts(cp.WithPlatformScope(context.Background()), org.ID, cp.Page{Limit: 1})
	if err != nil || len(rs) == 0 {
		b.Fatalf("no rollout: %v", err)
	}
	return rs[0].ID
}
