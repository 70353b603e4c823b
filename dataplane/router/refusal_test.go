package router_test

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/envplane/envplane/dataplane/router"
)

// finalRefusals are the router's answers that stop a pool.
var finalRefusals = []struct {
	status int
	code   string
	is     error
}{
	{http.StatusUnauthorized, "unauthorized", router.ErrUnauthorized},
	{http.StatusForbidden, "forbidden", router.ErrForbidden},
	{http.StatusNotFound, "not_found", router.ErrNotFound},
}

// assertStopped checks that p stopped on a status refusal: DB and Refresh
// return it as an *Error, Stats holds it, and none of them asks the router.
func assertStopped(tb testing.TB, s *routerServer, p *router.Pool, status int, is error) {
	tb.Helper()
	before := len(s.seen())
	_, err := p.DB(context.Background())
	var e *router.Error
	if !errors.As(err, &e) || e.Status != status || !errors.Is(err, is) {
		tb.Fatalf("DB of a stopped pool: %v, want a %d *router.Error", err, status)
	}
	if err := p.Refresh(context.Background()); !errors.Is(err, is) {
		tb.Errorf("Refresh of a stopped pool: %v", err)
	}
	if st := p.Stats(); !errors.As(st.LastError, &e) || e.Status != status {
		tb.Errorf("stats %+v of a stopped pool", st)
	}
	if n := len(s.seen()) - before; n != 0 {
		tb.Errorf("a stopped pool sent %d requests", n)
	}
}

// TestPoolStopsOnFinalRefusalOfRefresh: a refresh refused with 401, 403 or
// 404 stops the pool: DB returns the typed error, and neither the refresher
// nor Refresh asks the router again.
func TestPoolStopsOnFinalRefusalOfRefresh(t *testing.T) {
	for _, tc := range finalRefusals {
		t.Run(tc.code, func(t *testing.T) {
			s := newRouterServer(t)
			clk := newFakeClock()
			s.answerWith(t, sqliteConnection(filepath.Join(t.TempDir(), "env.db"), "cred_1", clk.Now().Add(time.Minute)))
			p := openPool(t, s, &opener{}, clk.options())
			w := clk.next(t)

			s.answerProblem(tc.status, tc.code, "refused: "+tc.code)
			clk.Advance(time.Minute)
			w = clk.fire(t, w)
			assertStopped(t, s, p, tc.status, tc.is)
			if st := p.Stats(); st.Failures != 1 {
				t.Errorf("stats %+v", st)
			}

			// The refresher keeps sleeping; waking it asks nothing.
			for range 3 {
				clk.Advance(time.Hour)
				w = clk.fire(t, w)
			}
			if resolves, watches := s.counts(); resolves != 2 || watches != 0 {
				t.Errorf("%d resolves and %d watches, want Open's and the refused one", resolves, watches)
			}
		})
	}
}

// TestPoolStopsOnFinalRefusalOfWatch: a watch answered with 401, 403 or
// 404 stops the pool as a refused refresh does, and the watcher ends.
func TestPoolStopsOnFinalRefusalOfWatch(t *testing.T) {
	for _, tc := range finalRefusals {
		t.Run(tc.code, func(t *testing.T) {
			s := newRouterServer(t)
			s.holdWatches()
			clk := newFakeClock()
			s.answerWith(t, sqliteConnection(filepath.Join(t.TempDir(), "env.db"), "cred_1", clk.Now().Add(time.Hour)))
			p := openPool(t, s, &opener{}, clk.watchOptions())
			w := clk.next(t)
			s.nextWatch(t)

			s.answerProblem(tc.status, tc.code, "refused: "+tc.code)
			eventually(t, "the pool stops", func() bool { return p.Stats().LastError != nil })
			assertStopped(t, s, p, tc.status, tc.is)
			if st := p.Stats(); st.WatchFailures != 1 || !errors.Is(st.LastWatchError, tc.is) {
				t.Errorf("stats %+v", st)
			}
			clk.Advance(2 * time.Hour)
			clk.fire(t, w)
			if resolves, watches := s.counts(); resolves != 1 || watches != 1 {
				t.Errorf("%d resolves and %d watches, want Open's resolve and the refused watch", resolves, watches)
			}
		})
	}
}

// TestPoolWatchSuspendedIsTransient: a watch answered 423 (the environment
// is suspended) keeps the pool working and is asked again after a backoff.
func TestPoolWatchSuspendedIsTransient(t *testing.T) {
	s := newRouterServer(t)
	s.holdWatches()
	clk := newFakeClock()
	s.answerWith(t, sqliteConnection(filepath.Join(t.TempDir(), "env.db"), "cred_1", clk.Now().Add(time.Hour)))
	p := openPool(t, s, &opener{}, clk.watchOptions())
	s.nextWatch(t)

	s.answerProblem(http.StatusLocked, "locked", "the environment is suspended")
	w := clk.watcherWait(t)
	st := p.Stats()
	if !errors.Is(st.LastWatchError, router.ErrSuspended) || st.LastError != nil || st.WatchFailures != 1 {
		t.Fatalf("stats %+v after a 423", st)
	}
	exec(t, current(t, p), "CREATE TABLE kept (x INTEGER)")
	w.fire <- clk.Now()
	clk.watcherWait(t)
	if _, watches := s.counts(); watches != 2 {
		t.Errorf("%d watches, want the watcher to ask again after its backoff", watches)
	}
}

// eventually waits until cond holds, failing the test if it does not
// within 10 s: for what a goroutine of the pool does on an answer of the
// double, which the test cannot wait for otherwise. It is not a measure of
// speed: on time the condition holds within milliseconds.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: still not the case after 10 s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
