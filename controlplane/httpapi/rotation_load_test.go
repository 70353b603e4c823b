package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/dataplane/router"
	"github.com/envplane/envplane/dataplane/router/sqlopen"
	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/drivertest"
	pgdriver "github.com/envplane/envplane/drivers/postgres"
)

// loadMigration is the app table every environment of the load tests gets.
func loadMigration() fstest.MapFS {
	return fstest.MapFS{"0001_load.sql": {Data: []byte("CREATE TABLE load (n INTEGER NOT NULL);\n")}}
}

// failure is one query that failed: when, and its error's text (drivers'
// errors never carry secrets).
type failure struct {
	at  time.Time
	err string
}

// loader runs queries through a router pool, as an application does: a
// pool.DB per query, an insert each time.
type loader struct {
	pool *router.Pool
	ok   atomic.Int64
	// lastOK is when the newest successful insert ended (Unix nanoseconds).
	lastOK atomic.Int64
	// busy counts inserts SQLite refused with SQLITE_BUSY: its writers'
	// lock contention (slow disks make it likelier), which no credential
	// causes, so it is reported apart from the failures.
	busy atomic.Int64
	// slowest is the longest a successful insert took (nanoseconds).
	slowest atomic.Int64

	mu       sync.Mutex
	failures []failure
}

// run sends inserts from workers goroutines, each every interval, until ctx ends.
func (l *loader) run(ctx context.Context, workers int, interval time.Duration) *sync.WaitGroup {
	var wg sync.WaitGroup
	var n atomic.Int64
	for range workers {
		wg.Go(func() {
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				// The bound tells a stuck query from a slow one, not a
				// latency target: on SQLite a dial reads the credential
				// registry and the insert writes the file, and each may wait
				// out the 5 s busy timeout behind the other writers on a slow
				// disk, twice over when a refused dial is made again.
				began := time.Now()
				qctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := l.insert(qctx, n.Add(1))
				cancel()
				took := time.Since(began)
				var se *sqlite.Error
				if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY {
					l.busy.Add(1)
					continue
				}
				if err != nil {
					l.mu.Lock()
					l.failures = append(l.failures, failure{at: time.Now(), err: err.Error()})
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
				l.lastOK.Store(time.Now().UnixNano())
				for {
					s := l.slowest.Load()
					if int64(took) <= s || l.slowest.CompareAndSwap(s, int64(took)) {
						break
					}
				}
			}
		})
	}
	return &wg
}

func (l *loader) insert(ctx context.Context, n int64) error {
	db, err := l.pool.DB(ctx)
	if err != nil {
		return err
	}
	// A literal, so one statement serves SQLite, PostgreSQL and libSQL.
	_, err = db.ExecContext(ctx, "INSERT INTO load (n) VALUES ("+strconv.FormatInt(n, 10)+")")
	return err
}

// failuresBetween returns the failures from..to, and those outside.
func (l *loader) failuresBetween(from, to time.Time) (in, out []failure) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.failures {
		if !f.at.Before(from) && !f.at.After(to) {
			in = append(in, f)
		} else {
			out = append(out, f)
		}
	}
	return in, out
}

// loadEnv is one environment under load in TestRotationUnderLoad.
type loadEnv struct {
	slug, target string
	// workers send an insert each every interval.
	workers  int
	interval time.Duration
	loader   *loader
}

// TestRotationUnderLoad is the rotation contract end to end. Three
// environments sit on a private PostgreSQL cluster with scram-sha-256
// authentication, on SQLite files, and on Turso (real tursodb behind the
// Platform API double). Each is reached through the router client with an
// app key, under steady inserts, while loadRotations rotations run back to
// back on each with graces of 1 to 5 s. Not one query may fail (SQLite's own lock
// contention is counted apart). Then an emergency revocation of every
// credential: queries fail until the client has moved, and then it
// recovers by itself; how long that takes is logged.
// loadRotations is how many rotations TestRotationUnderLoad runs on each
// engine: about two minutes of back-to-back graces.
const loadRotations = 50

func TestRotationUnderLoad(t *testing.T) {
	ctx := context.Background()
	clk := newRunningClock()
	pgAdmin := drivertest.StartPasswordPostgres(t)
	pg, err := pgdriver.New(ctx, pgdriver.Config{AdminURL: drivers.Secret(pgAdmin), AppSSLMode: "disable", SCRAMIterations: 1})
	if err != nil {
		t.Fatalf("postgres driver: %v", err)
	}
	t.Cleanup(pg.Close)
	edge, _ := tursoTarget(t, clk)
	h := newHarness(t, withClock(clk), withTargets(&cp.Target{Name: "pg", Region: "local", Driver: pg}, edge))
	h.svc.Schema.App = loadMigration()
	// A short refresh window keeps the stretch of 1 s graces short; the
	// watch moves clients well before it anyway.
	h.svc.RefreshWindow = time.Second
	h.svc.RevokeMargin = 250 * time.Millisecond
	h.svc.MaxIssuedPerHour = 1000
	bg, stop := context.WithCancel(ctx)
	var background sync.WaitGroup
	background.Go(func() { h.svc.Run(bg, 100*time.Millisecond) })
	t.Cleanup(func() { stop(); background.Wait() })

	h.org(t, "acme")
	// tursodb's sync server answers one Hrana request at a time in about
	// 9 ms, whatever the statement (measured with SELECT 1 straight to it),
	// so a libSQL database here tops out near 100 requests/s, one per query,
	// before the rest of this test shares the two cores.
	// Every environment is asked 160 inserts/s. On the SQLite file, four
	// writers: more, in rollback-journal mode, meet SQLite's deadlock rule
	// (a reader that wants to write while another writer commits gets
	// SQLITE_BUSY at once, whatever the busy timeout), which has nothing to
	// do with credentials. Elsewhere, sixteen, so a slow round trip does not
	// hold the rate down.
	envs := []*loadEnv{
		{slug: "pg", target: "pg", workers: 16, interval: 100 * time.Millisecond},
		{slug: "lite", target: "local", workers: 4, interval: 25 * time.Millisecond},
		{slug: "edge", target: "edge", workers: 16, interval: 100 * time.Millisecond},
	}
	load, stopLoad := context.WithCancel(ctx)
	var loads []*sync.WaitGroup
	for _, e := range envs {
		h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": e.slug, "type": "development", "target": e.target})
		token, _ := h.appKey(t, "acme", e.slug, "readwrite")
		client := &router.Client{BaseURL: h.srv.URL, Token: drivers.Secret(token)}
		pool, err := router.Open(ctx, client, router.Target{Org: "acme", Env: e.slug}, drivers.ScopeReadWrite, sqlopen.Connector, router.Options{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
		if err != nil {
			t.Fatalf("%s: open the router pool: %v", e.slug, err)
		}
		t.Cleanup(func() { pool.Close() })
		e.loader = &loader{pool: pool}
		loads = append(loads, e.loader.run(load, e.workers, e.interval))
	}
	stopAll := func() {
		stopLoad()
		for _, wg := range loads {
			wg.Wait()
		}
	}
	t.Cleanup(stopAll)

	// The three rotation loops run at once (goroutines: t.Parallel would run
	// only GOMAXPROCS subtests at a time).
	start := time.Now()
	errs := make([]error, len(envs))
	var rotations sync.WaitGroup
	for i, e := range envs {
		rotations.Go(func() { errs[i] = rotateBackToBack(h, e.slug, loadRotations) })
	}
	rotations.Wait()
	elapsed := time.Since(start)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", envs[i].slug, err)
		}
	}
	for _, e := range envs {
		st := e.loader.pool.Stats()
		ok := e.loader.ok.Load()
		in, _ := e.loader.failuresBetween(start, time.Now())
		t.Logf("%s: %d queries in %v (%.0f/s, slowest %v), %d failed, %d busy; pool swaps %d, watch answers %d, forced resolves %d, dials made again %d",
			e.slug, ok, elapsed.Round(time.Second), float64(ok)/elapsed.Seconds(), time.Duration(e.loader.slowest.Load()).Round(time.Millisecond),
			len(in), e.loader.busy.Load(), st.Swaps, st.WatchAnswers, st.ForcedResolves, st.DialRetries)
		if len(in) > 0 {
			t.Errorf("%s: %d queries failed during %d rotations; first: %s", e.slug, len(in), loadRotations, in[0].err)
		}
		// Rotations come back to back: two that land within one watch
		// round trip are followed by one move, to the newest. Fewer moves
		// than half the rotations would mean the pool stopped following.
		if st.Swaps < loadRotations/2 {
			t.Errorf("%s: the pool moved %d times over %d rotations", e.slug, st.Swaps, loadRotations)
		}
	}

	// Emergency revocation: everything stops at once, and clients recover
	// by themselves. How fast is a figure for the log (about a second),
	// not an assertion: the 5 s below only tells "recovered" from "stuck".
	for _, e := range envs {
		revoked := time.Now()
		var resp cp.CredentialsResponse
		h.must(t, http.StatusOK, h.admin, "POST", "/v1/organizations/acme/environments/"+e.slug+"/credentials/revoke", map[string]any{"reason": "drill"}).decode(t, &resp)
		if resp.Operation.Status != cp.OpSucceeded {
			t.Fatalf("%s: emergency revocation %s: %s", e.slug, resp.Operation.Status, resp.Operation.Error)
		}
		time.Sleep(5 * time.Second)
		after, before := e.loader.failuresBetween(revoked, time.Now())
		if len(before) > 0 {
			t.Errorf("%s: %d queries failed before the emergency revocation", e.slug, len(before))
		}
		last := revoked
		if len(after) > 0 {
			last = after[len(after)-1].at
		}
		t.Logf("%s: %d queries failed after the emergency revocation, the last at +%v", e.slug, len(after), last.Sub(revoked).Round(time.Millisecond))
		if ok := time.Unix(0, e.loader.lastOK.Load()); !ok.After(last) {
			t.Errorf("%s: no query succeeded after the last failure (+%v) following an emergency revocation: the client did not recover", e.slug, last.Sub(revoked).Round(time.Millisecond))
		}
	}
	stopAll()
}

// rotateBackToBack rotates env's readwrite credential n times, each as soon
// as the previous grace allows, with graces from 1 to 5 s.
func rotateBackToBack(h *harness, env string, n int) error {
	graces := []int{1, 2, 1, 3, 1, 4, 1, 5, 1, 1}
	url := h.srv.URL + "/v1/organizations/acme/environments/" + env + "/credentials/rotate"
	for i := range n {
		body := fmt.Sprintf(`{"scope":"readwrite","grace_seconds":%d,"reason":"load %d"}`, graces[i%len(graces)], i)
		for {
			req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+h.admin)
			req.Header.Set("Content-Type", "application/json")
			resp, err := h.srv.Client().Do(req)
			if err != nil {
				return fmt.Errorf("rotation %d: %w", i, err)
			}
			raw, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return fmt.Errorf("rotation %d: %w", i, err)
			}
			if resp.StatusCode == http.StatusConflict {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("rotation %d: %d %s", i, resp.StatusCode, raw)
			}
			var rot cp.CredentialsResponse
			if err := json.Unmarshal(raw, &rot); err != nil {
				return fmt.Errorf("rotation %d: %w", i, err)
			}
			if rot.Operation.Status != cp.OpSucceeded {
				return fmt.Errorf("rotation %d: %s %s", i, rot.Operation.Status, rot.Operation.Error)
			}
			if rot.RevokeAfter != nil {
				time.Sleep(time.Until(*rot.RevokeAfter))
			}
			break
		}
	}
	return nil
}
