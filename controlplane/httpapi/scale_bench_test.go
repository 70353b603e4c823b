package httpapi_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/scaletest"
	"github.com/envplane/envplane/drivers/drivertest"
	"github.com/envplane/envplane/drivers/nulldriver"
)

// ScaleEnvsEnv names the variable that sets the large registry's size in
// BenchmarkScale (default 10,000; `make bench-scale` sets 100,000).
const ScaleEnvsEnv = "SCALE_ENVS"

// scaleEnvs returns the large registry's size.
func scaleEnvs() int {
	if n, err := strconv.Atoi(os.Getenv(ScaleEnvsEnv)); err == nil && n > 0 {
		return n
	}
	return 10000
}

// scaleFixture is a whole envplane (the harness) whose registry was seeded
// with n environments on the null target, 100 per organization.
type scaleFixture struct {
	h *harness
	n int
	// listURL and listToken read the first page of the environments of
	// the organization in the middle, as its owner.
	listURL, listToken string
	// resolves are one connection request per organization, each with
	// that organization's app key.
	resolves []request
}

// request is a GET and its bearer token.
type request struct{ url, token string }

func newScaleFixture(b *testing.B, postgres bool, n int) *scaleFixture {
	b.Helper()
	opts := []harnessOption{withTargets(&cp.Target{Name: nulldriver.Name, Region: "local", Driver: nulldriver.Driver{}}),
		withLogLevel(slog.LevelInfo), withoutDroppingDatabases()}
	if postgres {
		opts = append(opts, withPostgresStore())
	}
	h := newHarness(b, opts...)
	seed := scaletest.Options{Environments: n, Now: h.clock.Now()}
	if postgres {
		seed.Concurrency, seed.Analyze = 8, drivertest.Analyze(h.storeURL)
	}
	reg, err := scaletest.Seed(context.Background(), h.svc.Store, h.svc.Keyring, seed)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d environments in %d organizations in %s", n, len(reg.Orgs), reg.Took.Round(time.Millisecond))
	mid := reg.Orgs[len(reg.Orgs)/2]
	f := &scaleFixture{h: h, n: n, listToken: mid.OwnerToken,
		listURL: h.srv.URL + "/v1/organizations/" + mid.Slug + "/environments?limit=50"}
	for _, o := range reg.Orgs {
		f.resolves = append(f.resolves, request{
			url:   h.srv.URL + "/v1/organizations/" + o.Slug + "/environments/" + o.AppEnv + "/connection?scope=readwrite",
			token: o.AppToken,
		})
	}
	// Warm up as a running server would be: every app key resolved once.
	client := benchClient()
	for _, r := range f.resolves {
		if err := get(client, r.url, r.token); err != nil {
			b.Fatalf("warm-up resolve: %v", err)
		}
	}
	if err := get(client, f.listURL, f.listToken); err != nil {
		b.Fatalf("warm-up list: %v", err)
	}
	// Flush the warm-up's receipts, so a pass finds nothing due.
	h.svc.Tick(context.Background())
	return f
}

// BenchmarkScale compares, on each control-plane store, a registry of 100
// environments with one of SCALE_ENVS (default 10,000), side by side in
// one run (the two alternate, so the machine's noise hits both alike):
//
//   - list: a page (50) of an organization's environments through the API,
//     as its owner: p99 latency (goal ≤ 20 ms);
//   - resolve: connection requests through the API from 32 clients, each
//     request with the next organization's app key: req/s, and the large
//     registry's as a fraction of the small one's (goal ≥ 0.95), in eight
//     pairs of 200 ms windows per iteration: with three, one iteration
//     (all -count 1 runs) gave ratios from 0.92 to 0.99 on an idle machine;
//   - reconcile: one reconciler pass with nothing due, and tick: one whole
//     Service.Tick with nothing due (goal: no growth with the registry).
func BenchmarkScale(b *testing.B) {
	large := scaleEnvs()
	for _, store := range []string{"sqlite", "postgres"} {
		b.Run(store, func(b *testing.B) {
			small := newScaleFixture(b, store == "postgres", 100)
			big := newScaleFixture(b, store == "postgres", large)
			sz, lz := "100", strconv.Itoa(large)
			b.Run("list", func(b *testing.B) {
				client := benchClient()
				var ls, ll []time.Duration
				for b.Loop() {
					for _, f := range []*scaleFixture{small, big} {
						start := time.Now()
						if err := get(client, f.listURL, f.listToken); err != nil {
							b.Fatal(err)
						}
						d := time.Since(start)
						if f == small {
							ls = append(ls, d)
						} else {
							ll = append(ll, d)
						}
					}
				}
				b.ReportMetric(percentile(ls, 99), "p99-ms-"+sz)
				b.ReportMetric(percentile(ll, 99), "p99-ms-"+lz)
				b.ReportMetric(percentile(ls, 50), "p50-ms-"+sz)
				b.ReportMetric(percentile(ll, 50), "p50-ms-"+lz)
			})
			b.Run("reconcile", func(b *testing.B) {
				benchPair(b, small, big, func(ctx context.Context, f *scaleFixture) error {
					_, err := f.h.svc.Reconcile(ctx)
					return err
				})
			})
			b.Run("tick", func(b *testing.B) {
				benchPair(b, small, big, func(ctx context.Context, f *scaleFixture) error {
					f.h.svc.Tick(ctx)
					return nil
				})
			})
			b.Run("resolve", func(b *testing.B) {
				client := benchClient()
				var sn, ln int
				var st, lt time.Duration
				var lats, latl []time.Duration
				for b.Loop() {
					for range 8 {
						n, d, l := loadMany(b, client, small.resolves, 200*time.Millisecond)
						sn, st, lats = sn+n, st+d, append(lats, l...)
						n, d, l = loadMany(b, client, big.resolves, 200*time.Millisecond)
						ln, lt, latl = ln+n, lt+d, append(latl, l...)
					}
				}
				sr, lr := float64(sn)/st.Seconds(), float64(ln)/lt.Seconds()
				b.ReportMetric(sr, "req/s-"+sz)
				b.ReportMetric(lr, "req/s-"+lz)
				b.ReportMetric(lr/sr, "ratio")
				b.ReportMetric(percentile(lats, 99), "p99-ms-"+sz)
				b.ReportMetric(percentile(latl, 99), "p99-ms-"+lz)
			})
		})
	}
}

// benchPair runs pass on the small and the big fixture in turns and reports
// the mean time of each, in microseconds, and their ratio.
func benchPair(b *testing.B, small, big *scaleFixture, pass func(context.Context, *scaleFixture) error) {
	ctx := context.Background()
	var ts, tl time.Duration
	n := 0
	for b.Loop() {
		for _, f := range []*scaleFixture{small, big} {
			start := time.Now()
			if err := pass(ctx, f); err != nil {
				b.Fatal(err)
			}
			if f == small {
				ts += time.Since(start)
			} else {
				tl += time.Since(start)
			}
		}
		n++
	}
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
	b.ReportMetric(us(ts), fmt.Sprintf("us-%d", small.n))
	b.ReportMetric(us(tl), fmt.Sprintf("us-%d", big.n))
	b.ReportMetric(us(tl)/us(ts), "ratio")
}

// loadMany keeps 32 clients sending the requests, each client going through
// them in turn from its own starting point, for d; it returns how many
// answered, how long it took, and each one's latency.
func loadMany(b *testing.B, client *http.Client, reqs []request, d time.Duration) (int, time.Duration, []time.Duration) {
	b.Helper()
	var mu sync.Mutex
	var lat []time.Duration
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			var mine []time.Duration
			for i := c; time.Now().Before(deadline); i++ {
				r := reqs[i%len(reqs)]
				t := time.Now()
				if err := get(client, r.url, r.token); err != nil {
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
