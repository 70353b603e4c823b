package router_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envplane/envplane/dataplane/router"
	"github.com/envplane/envplane/drivers"
)

// TestPoolSwapsOnRotation: once refresh_after passes, DB keeps answering
// with the current pool and wakes the refresher, which resolves, finds a new
// credential and swaps in a pool opened with it.
func TestPoolSwapsOnRotation(t *testing.T) {
	s := newRouterServer(t)
	clk := newFakeClock()
	path := filepath.Join(t.TempDir(), "env.db")
	s.answerWith(t, sqliteConnection(path, "cred_1", clk.Now().Add(time.Minute)))
	o := &opener{}
	p := openPool(t, s, o, clk.options())
	w := clk.next(t)
	if w.d != time.Minute {
		t.Errorf("the refresher sleeps %s, want until refresh_after (1m)", w.d)
	}

	old := current(t, p)
	exec(t, old, "CREATE TABLE notes (body TEXT)")
	exec(t, old, "INSERT INTO notes VALUES ('before')")

	// Not due yet: a new credential on the server changes nothing.
	s.answerWith(t, sqliteConnection(path, "cred_2", clk.Now().Add(2*time.Minute)))
	clk.Advance(59 * time.Second)
	if current(t, p) != old || len(s.seen()) != 1 {
		t.Fatalf("the pool resolved again before refresh_after (%d requests)", len(s.seen()))
	}

	clk.Advance(time.Second)
	if current(t, p) != old {
		t.Fatal("DB waited for the refresh instead of answering with the current pool")
	}
	clk.next(t) // the refresher woke, refreshed and sleeps again

	if id := p.Connection().CredentialID; id != "cred_2" {
		t.Fatalf("credential %s after the refresh, want cred_2", id)
	}
	fresh := current(t, p)
	if fresh == old {
		t.Fatal("the pool was not swapped")
	}
	exec(t, fresh, "INSERT INTO notes VALUES ('after')")
	// A caller that took the old pool just before the swap can still use it.
	exec(t, old, "INSERT INTO notes VALUES ('late')")
	if n := count(t, fresh, "notes"); n != 3 {
		t.Errorf("%d notes through the new pool, want 3", n)
	}
	st := p.Stats()
	if st.Resolves != 2 || st.Swaps != 1 || st.Draining != 1 || st.Failures != 0 || st.CredentialID != "cred_2" || st.LastError != nil {
		t.Errorf("stats %+v", st)
	}
	if !st.NextRefresh.Equal(clk.Now().Add(time.Minute)) {
		t.Errorf("next refresh %s, want the new refresh_after", st.NextRefresh)
	}
	if o.count() != 2 {
		t.Errorf("%d pools opened, want 2", o.count())
	}
	for _, r := range s.seen() {
		if r.path != "/v1/organizations/acme/environments/dev/connection" || r.query != "scope=readwrite" || r.auth != "Bearer "+s.token {
			t.Errorf("request %s ?%s", r.path, r.query)
		}
	}
}

// TestPoolSameCredentialKeepsPool: a refresh that finds the same credential
// and DSN keeps the pool and only moves the next refresh.
func TestPoolSameCredentialKeepsPool(t *testing.T) {
	s := newRouterServer(t)
	clk := newFakeClock()
	path := filepath.Join(t.TempDir(), "env.db")
	s.answerWith(t, sqliteConnection(path, "cred_1", clk.Now().Add(time.Minute)))
	o := &opener{}
	p := openPool(t, s, o, clk.options())
	db := current(t, p)

	clk.Advance(time.Minute)
	s.answerWith(t, sqliteConnection(path, "cred_1", clk.Now().Add(time.Minute)))
	if err := p.Refresh(context.Background()); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if current(t, p) != db || o.count() != 1 {
		t.Fatalf("an unchanged credential opened a new pool (%d opened)", o.count())
	}
	st := p.Stats()
	if st.Resolves != 2 || st.Swaps != 0 || !st.NextRefresh.Equal(clk.Now().Add(time.Minute)) {
		t.Errorf("stats %+v", st)
	}
}

// TestPoolDSNChangeSwaps: the same credential at another DSN (a database
// that moved) swaps too, and the new pool reaches the new place.
func TestPoolDSNChangeSwaps(t *testing.T) {
	s := newRouterServer(t)
	clk := newFakeClock()
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
	s.answerWith(t, sqliteConnection(a, "cred_1", clk.Now().Add(time.Minute)))
	p := openPool(t, s, &opener{}, clk.options())
	exec(t, current(t, p), "CREATE TABLE place (name TEXT)")
	exec(t, current(t, p), "INSERT INTO place VALUES ('a')")

	s.answerWith(t, sqliteConnection(b, "cred_1", clk.Now().Add(time.Minute)))
	if err := p.Refresh(context.Background()); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	var tables int
	if err := current(t, p).QueryRow("SELECT count(*) FROM sqlite_master WHERE name = 'place'").Scan(&tables); err != nil || tables != 0 {
		t.Fatalf("the pool still reaches a.db (tables %d, err %v)", tables, err)
	}
	if p.Stats().Swaps != 1 {
		t.Errorf("stats %+v", p.Stats())
	}
}

// TestPoolDrainsOldPool: a transaction begun on the old pool finishes after
// the swap; the old pool stays open past the drain period while a
// connection is in use, and closes once it is idle.
func TestPoolDrainsOldPool(t *testing.T) {
	s := newRouterServer(t)
	clk := newFakeClock()
	path := filepath.Join(t.TempDir(), "env.db")
	s.answerWith(t, sqliteConnection(path, "cred_1", clk.Now().Add(time.Minute)))
	p := openPool(t, s, &opener{}, clk.options())
	w := clk.next(t)
	ctx := context.Background()
	old := current(t, p)
	exec(t, old, "CREATE TABLE orders (id INTEGER)")

	tx, err := old.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	exec(t, tx, "INSERT INTO orders VALUES (1)")

	s.answerWith(t, sqliteConnection(path, "cred_2", clk.Now().Add(time.Hour)))
	if err := p.Refresh(ctx); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if current(t, p) == old {
		t.Fatal("no swap")
	}
	// The refresher wakes at the drain deadline.
	w = clk.fire(t, w)
	if w.d != router.DefaultDrain {
		t.Errorf("the refresher sleeps %s after a swap, want the drain period %s", w.d, router.DefaultDrain)
	}
	exec(t, tx, "INSERT INTO orders VALUES (2)")

	// Past the drain period, the transaction still holds a connection.
	clk.Advance(router.DefaultDrain)
	w = clk.fire(t, w)
	if err := old.PingContext(ctx); err != nil {
		t.Fatalf("the old pool closed while a transaction held it: %v", err)
	}
	if st := p.Stats(); st.Draining != 1 || st.Retired != 0 {
		t.Errorf("stats %+v while the old pool is busy", st)
	}
	exec(t, tx, "INSERT INTO orders VALUES (3)")
	if err := tx.Commit(); err != nil {
		t.Fatalf("commit on the old pool after the swap: %v", err)
	}

	clk.fire(t, w)
	if err := old.PingContext(ctx); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("the drained old pool is still open (ping: %v)", err)
	}
	if st := p.Stats(); st.Draining != 0 || st.Retired != 1 {
		t.Errorf("stats %+v after the drain", st)
	}
	if n := count(t, current(t, p), "orders"); n != 3 {
		t.Errorf("%d orders through the new pool, want the transaction's 3", n)
	}
}

// TestPoolCloseAfterExpiryWhenBusy: a replaced pool that stays busy past
// its drain period closes once its credential has expired.
func TestPoolCloseAfterExpiryWhenBusy(t *testing.T) {
	s := newRouterServer(t)
	clk := newFakeClock()
	path := filepath.Join(t.TempDir(), "env.db")
	c1 := sqliteConnection(path, "cred_1", clk.Now().Add(time.Minute))
	expires := clk.Now().Add(10 * time.Minute)
	c1.ExpiresAt = &expires
	s.answerWith(t, c1)
	p := openPool(t, s, &opener{}, clk.options())
	w := clk.next(t)
	old := current(t, p)
	conn, err := old.Conn(context.Background())
	if err != nil {
		t.Fatalf("conn: %v", err)
	}
	defer conn.Close()

	s.answerWith(t, sqliteConnection(path, "cred_2", clk.Now().Add(time.Hour)))
	if err := p.Refresh(context.Background()); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	clk.Advance(router.DefaultDrain)
	w = clk.fire(t, w)
	if p.Stats().Retired != 0 {
		t.Fatal("a busy pool closed before its credential expired")
	}
	clk.Advance(10 * time.Minute)
	clk.fire(t, w)
	if st := p.Stats(); st.Retired != 1 || st.Draining != 0 {
		t.Fatalf("stats %+v: the expired pool is still open", st)
	}
	// database/sql lets the held connection finish its work.
	if _, err := conn.ExecContext(context.Background(), "SELECT 1"); err != nil {
		t.Errorf("the held connection failed after its pool closed: %v", err)
	}
}

// TestPoolFailedRefreshKeepsPool: while the control plane refuses, hangs up
// or hands out a credential whose pool does not open, the current pool
// keeps working, the error is in Stats and the refresher retries with a
// growing backoff; the next good answer swaps.
func TestPoolFailedRefreshKeepsPool(t *testing.T) {
	s := newRouterServer(t)
	clk := newFakeClock()
	dir := t.TempDir()
	path := filepath.Join(dir, "env.db")
	s.answerWith(t, sqliteConnection(path, "cred_1", clk.Now().Add(time.Minute)))
	p := openPool(t, s, &opener{}, clk.options())
	w := clk.next(t)
	db := current(t, p)
	exec(t, db, "CREATE TABLE t (x INTEGER)")

	broken := sqliteConnection(filepath.Join(dir, "missing", "env.db"), "cred_2", clk.Now().Add(time.Hour))
	failures := []struct {
		name  string
		setup func()
		is    error
	}{
		{"control plane down", func() { s.set(answer{hangup: true}) }, router.ErrUnavailable},
		{"503", func() { s.answerProblem(http.StatusServiceUnavailable, "unavailable", "the store is unreachable") }, router.ErrUnavailable},
		{"suspended", func() { s.answerProblem(http.StatusLocked, "locked", "the environment is suspended") }, router.ErrSuspended},
		{"new credential does not open", func() { s.answerWith(t, broken) }, nil},
	}
	backoff := router.DefaultMinBackoff
	clk.Advance(time.Minute)
	for i, f := range failures {
		f.setup()
		w = clk.fire(t, w)
		st := p.Stats()
		if st.Failures != int64(i+1) || st.LastError == nil || (f.is != nil && !errors.Is(st.LastError, f.is)) {
			t.Fatalf("%s: stats %+v", f.name, st)
		}
		if w.d < backoff/2 || w.d > backoff {
			t.Errorf("%s: retry in %s, want between %s and %s", f.name, w.d, backoff/2, backoff)
		}
		if current(t, p) != db || p.Connection().CredentialID != "cred_1" {
			t.Fatalf("%s: the pool changed after a failed refresh", f.name)
		}
		exec(t, db, "INSERT INTO t VALUES (?)", i)
		clk.Advance(w.d)
		backoff *= 2
	}

	s.answerWith(t, sqliteConnection(path, "cred_2", clk.Now().Add(time.Hour)))
	clk.fire(t, w)
	st := p.Stats()
	if st.CredentialID != "cred_2" || st.LastError != nil || st.Swaps != 1 {
		t.Fatalf("after the control plane came back: stats %+v", st)
	}
	if n := count(t, current(t, p), "t"); n != len(failures) {
		t.Errorf("%d rows, want %d", n, len(failures))
	}
}

// TestPoolBackoffIsBounded: the retry wait stops growing at MaxBackoff.
func TestPoolBackoffIsBounded(t *testing.T) {
	s := newRouterServer(t)
	clk := newFakeClock()
	s.answerWith(t, sqliteConnection(filepath.Join(t.TempDir(), "env.db"), "cred_1", clk.Now().Add(time.Minute)))
	opts := clk.options()
	opts.MinBackoff, opts.MaxBackoff = time.Second, 4*time.Second
	p := openPool(t, s, &opener{}, opts)
	w := clk.next(t)
	s.answerProblem(http.StatusServiceUnavailable, "unavailable", "down")
	clk.Advance(time.Minute)
	var waits []time.Duration
	for range 6 {
		w = clk.fire(t, w)
		waits = append(waits, w.d)
		clk.Advance(w.d)
	}
	for i, d := range waits[2:] {
		if d < 2*time.Second || d > 4*time.Second {
			t.Errorf("retry %d waits %s, want between 2s and 4s once capped (all: %v)", i+3, d, waits)
		}
	}
	if p.Stats().Failures != 6 {
		t.Errorf("stats %+v", p.Stats())
	}
}

// TestPoolExpiredCredentialRefreshesInDB: once the current credential has
// expired, DB waits for the refresh and answers with the new pool; when the
// refresh fails it still answers with the current pool.
func TestPoolExpiredCredentialRefreshesInDB(t *testing.T) {
	s := newRouterServer(t)
	clk := newFakeClock()
	path := filepath.Join(t.TempDir(), "env.db")
	c1 := sqliteConnection(path, "cred_1", clk.Now().Add(5*time.Minute))
	expires := clk.Now().Add(10 * time.Minute)
	c1.ExpiresAt = &expires
	s.answerWith(t, c1)
	p := openPool(t, s, &opener{}, clk.options())
	old := current(t, p)

	s.answerProblem(http.StatusServiceUnavailable, "unavailable", "down")
	clk.Advance(11 * time.Minute)
	db, err := p.DB(context.Background())
	if err != nil || db != old {
		t.Fatalf("DB with an expired credential and no control plane: %v (same pool %v)", err, db == old)
	}
	if p.Stats().Failures != 1 {
		t.Fatalf("DB did not try to refresh the expired credential: %+v", p.Stats())
	}

	// Within the backoff DB does not ask again; after it, it does.
	if db, err := p.DB(context.Background()); err != nil || db != old || p.Stats().Failures != 1 {
		t.Fatalf("DB within the backoff: %v (same pool %v), stats %+v", err, db == old, p.Stats())
	}
	clk.Advance(p.Stats().NextRefresh.Sub(clk.Now()))
	s.answerWith(t, sqliteConnection(path, "cred_2", clk.Now().Add(time.Hour)))
	db, err = p.DB(context.Background())
	if err != nil || db == old || p.Connection().CredentialID != "cred_2" {
		t.Fatalf("DB with an expired credential: %v, credential %s", err, p.Connection().CredentialID)
	}
}

// TestPoolOpenRefusals: Open returns the router's refusal as a typed error
// and opens nothing.
func TestPoolOpenRefusals(t *testing.T) {
	s := newRouterServer(t)
	for _, tc := range []struct {
		status int
		code   string
		is     error
	}{
		{http.StatusLocked, "locked", router.ErrSuspended},
		{http.StatusNotFound, "not_found", router.ErrNotFound},
		{http.StatusForbidden, "forbidden", router.ErrForbidden},
		{http.StatusUnauthorized, "unauthorized", router.ErrUnauthorized},
	} {
		t.Run(tc.code, func(t *testing.T) {
			s.answerProblem(tc.status, tc.code, "refused: "+tc.code)
			o := &opener{}
			p, err := router.Open(context.Background(), s.client(), router.Target{Org: "acme", Env: "dev"}, drivers.ScopeReadWrite, o.open, router.Options{})
			var e *router.Error
			if p != nil || !errors.As(err, &e) || e.Status != tc.status || e.Code != tc.code || !errors.Is(err, tc.is) {
				t.Fatalf("open: pool %v, error %v; want a %d %s *router.Error", p != nil, err, tc.status, tc.code)
			}
			if o.count() != 0 {
				t.Error("a refused Open opened a pool")
			}
			if strings.Contains(printed(err), s.token) {
				t.Error("the error shows the token")
			}
		})
	}
}

// TestPoolClose: after Close, DB and Refresh answer ErrClosed and every pool,
// current and draining, is closed; Close again returns the same.
func TestPoolClose(t *testing.T) {
	s := newRouterServer(t)
	clk := newFakeClock()
	path := filepath.Join(t.TempDir(), "env.db")
	s.answerWith(t, sqliteConnection(path, "cred_1", clk.Now().Add(time.Minute)))
	p, err := router.Open(context.Background(), s.client(), router.Target{EnvironmentID: "env_01"}, drivers.ScopeReadWrite, (&opener{}).open, clk.options())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	old := current(t, p)
	s.answerWith(t, sqliteConnection(path, "cred_2", clk.Now().Add(time.Minute)))
	if err := p.Refresh(context.Background()); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	fresh := current(t, p)
	if err := p.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("close again: %v", err)
	}
	if _, err := p.DB(context.Background()); !errors.Is(err, router.ErrClosed) {
		t.Errorf("DB after close: %v", err)
	}
	if err := p.Refresh(context.Background()); !errors.Is(err, router.ErrClosed) {
		t.Errorf("Refresh after close: %v", err)
	}
	for name, db := range map[string]interface{ PingContext(context.Context) error }{"draining": old, "current": fresh} {
		if err := db.PingContext(context.Background()); err == nil {
			t.Errorf("the %s pool is open after Close", name)
		}
	}
}

// TestPoolNeverShowsSecrets: the token and the credential's secret appear
// in no error and in nothing the pool prints.
func TestPoolNeverShowsSecrets(t *testing.T) {
	s := newRouterServer(t)
	clk := newFakeClock()
	c := sqliteConnection(filepath.Join(t.TempDir(), "env.db"), "cred_1", clk.Now().Add(time.Minute))
	c.Secret = "tok-" + strings.Repeat("z", 30)
	s.answerWith(t, c)
	p := openPool(t, s, &opener{}, clk.options())

	broken := sqliteConnection(filepath.Join(t.TempDir(), "missing", "env.db"), "cred_2", clk.Now().Add(time.Minute))
	broken.Secret = c.Secret
	s.answerWith(t, broken)
	refreshErr := p.Refresh(context.Background())
	if refreshErr == nil {
		t.Fatal("a refresh to a database that does not open succeeded")
	}
	s.answerProblem(http.StatusLocked, "locked", "suspended")
	lockedErr := p.Refresh(context.Background())

	out := printed(p, p.Connection(), p.Stats(), refreshErr, lockedErr, s.client())
	for name, secret := range map[string]string{"token": s.token, "secret": c.Secret} {
		if strings.Contains(out, secret) {
			t.Errorf("the %s shows in what the pool prints", name)
		}
	}
}

// TestPoolNoGapUnderConcurrentSwaps: goroutines that take the pool for each
// query while credentials rotate under them see no error; once the drain
// period passes every replaced pool closes.
func TestPoolNoGapUnderConcurrentSwaps(t *testing.T) {
	s := newRouterServer(t)
	clk := newFakeClock()
	path := filepath.Join(t.TempDir(), "env.db")
	s.answerWith(t, sqliteConnection(path, "cred_0", clk.Now().Add(time.Hour)))
	p := openPool(t, s, &opener{}, clk.options())
	w := clk.next(t)
	exec(t, current(t, p), "CREATE TABLE hits (worker INTEGER)")

	const workers, rotations, perWorker = 4, 5, 40
	ctx := context.Background()
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			for range perWorker {
				db, err := p.DB(ctx)
				if err == nil {
					_, err = db.ExecContext(ctx, "INSERT INTO hits VALUES (?)", i)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for r := 1; r <= rotations; r++ {
		s.answerWith(t, sqliteConnection(path, fmt.Sprintf("cred_%d", r), clk.Now().Add(time.Hour)))
		if err := p.Refresh(ctx); err != nil {
			t.Fatalf("refresh %d: %v", r, err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a worker saw a gap: %v", err)
	}
	if n := count(t, current(t, p), "hits"); n != workers*perWorker {
		t.Errorf("%d hits, want %d", n, workers*perWorker)
	}
	clk.Advance(router.DefaultDrain)
	clk.fire(t, w)
	if st := p.Stats(); st.Swaps != rotations || st.Retired != rotations || st.Draining != 0 {
		t.Errorf("stats %+v", st)
	}
}
