package router_test

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/envplane/envplane/dataplane/router"
)

// TestPoolWatchInstallsNewCredential: the pool keeps a watch open on its
// credential; when the router answers it with another one, long before the
// wait and refresh_after, the pool swaps to it, watches the new one, and
// the old pool finishes the transaction it holds and drains.
func TestPoolWatchInstallsNewCredential(t *testing.T) {
	s := newRouterServer(t)
	s.holdWatches()
	clk := newFakeClock()
	path := filepath.Join(t.TempDir(), "env.db")
	s.answerWith(t, sqliteConnection(path, "cred_1", clk.Now().Add(time.Hour)))
	p := openPool(t, s, &opener{}, clk.watchOptions())
	w := clk.next(t) // the refresher's, until refresh_after
	if r := s.nextWatch(t); r.query != "scope=readwrite&after=cred_1&wait=30s" || r.path != "/v1/organizations/acme/environments/dev/connection" || r.auth != "Bearer "+s.token {
		t.Fatalf("watch %s?%s", r.path, r.query)
	}

	ctx := context.Background()
	old := current(t, p)
	exec(t, old, "CREATE TABLE notes (body TEXT)")
	tx, err := old.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	exec(t, tx, "INSERT INTO notes VALUES ('begun before the rotation')")

	// The clock stands still: the answer comes because the credential
	// changed, not because a wait or refresh_after passed.
	s.answerWith(t, sqliteConnection(path, "cred_2", clk.Now().Add(time.Hour)))
	if r := s.nextWatch(t); r.query != "scope=readwrite&after=cred_2&wait=30s" {
		t.Fatalf("after the rotation the pool watches ?%s, want after=cred_2", r.query)
	}
	if id := p.Connection().CredentialID; id != "cred_2" {
		t.Fatalf("credential %s after the watch answered cred_2", id)
	}
	fresh := current(t, p)
	if fresh == old {
		t.Fatal("the pool was not swapped")
	}
	exec(t, tx, "INSERT INTO notes VALUES ('finished on the old pool')")
	if err := tx.Commit(); err != nil {
		t.Fatalf("commit on the old pool after the swap: %v", err)
	}
	exec(t, fresh, "INSERT INTO notes VALUES ('after')")
	st := p.Stats()
	if st.Swaps != 1 || st.WatchAnswers != 1 || st.WatchFailures != 0 || st.Resolves != 1 || st.Draining != 1 || st.LastWatchError != nil {
		t.Errorf("stats %+v", st)
	}
	if resolves, watches := s.counts(); resolves != 1 || watches != 2 {
		t.Errorf("%d resolves and %d watches, want Open's resolve and two watches", resolves, watches)
	}

	clk.Advance(router.DefaultDrain)
	clk.fire(t, w)
	if err := old.PingContext(ctx); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("the replaced pool is still open after the drain (ping: %v)", err)
	}
	if st := p.Stats(); st.Draining != 0 || st.Retired != 1 {
		t.Errorf("stats %+v after the drain", st)
	}
	if n := count(t, current(t, p), "notes"); n != 3 {
		t.Errorf("%d notes, want 3", n)
	}
}

// TestPoolWatchUnchangedAnswer: a watch the router answers after the wait
// with the same credential keeps the pool, moves the next refresh to the
// answer's refresh_after, and is asked again at once.
func TestPoolWatchUnchangedAnswer(t *testing.T) {
	s := newRouterServer(t)
	s.holdWatches()
	clk := newFakeClock()
	path := filepath.Join(t.TempDir(), "env.db")
	s.answerWith(t, sqliteConnection(path, "cred_1", clk.Now().Add(time.Hour)))
	p := openPool(t, s, &opener{}, clk.watchOptions())
	db := current(t, p)
	s.nextWatch(t)

	clk.Advance(router.DefaultWatchWait)
	s.answerWith(t, sqliteConnection(path, "cred_1", clk.Now().Add(2*time.Hour)))
	s.releaseWatches()
	s.nextWatch(t)
	st := p.Stats()
	if current(t, p) != db || st.Swaps != 0 || st.WatchAnswers != 1 || st.WatchFailures != 0 {
		t.Errorf("stats %+v after an unchanged answer", st)
	}
	if !st.NextRefresh.Equal(clk.Now().Add(2 * time.Hour)) {
		t.Errorf("next refresh %s, want the watch answer's refresh_after", st.NextRefresh)
	}
}

// TestPoolWatchDoesNotSpin: a router that answers every watch at once with
// the unchanged connection (it ignores wait) is asked again only after a
// backoff that grows up to MaxBackoff, one request per wait.
func TestPoolWatchDoesNotSpin(t *testing.T) {
	s := newRouterServer(t)
	clk := newFakeClock()
	s.answerWith(t, sqliteConnection(filepath.Join(t.TempDir(), "env.db"), "cred_1", clk.Now().Add(time.Hour)))
	p := openPool(t, s, &opener{}, clk.watchOptions())

	backoff := time.Second
	for i := 1; i <= 6; i++ {
		w := clk.watcherWait(t)
		if _, watches := s.counts(); watches != i {
			t.Fatalf("%d watches before backoff %d, want %d", watches, i, i)
		}
		if w.d < backoff/2 || w.d > backoff {
			t.Errorf("backoff %d is %s, want between %s and %s", i, w.d, backoff/2, backoff)
		}
		w.fire <- clk.Now()
		backoff = min(2*backoff, 8*time.Second)
	}
	clk.watcherWait(t)
	st := p.Stats()
	if st.WatchFailures != 7 || st.WatchAnswers != 7 || st.Swaps != 0 || st.Resolves != 1 {
		t.Errorf("stats %+v", st)
	}
	if st.LastWatchError == nil || !strings.Contains(st.LastWatchError.Error(), "does not hold watches") {
		t.Errorf("last watch error %v", st.LastWatchError)
	}
	if resolves, watches := s.counts(); resolves != 1 || watches != 7 {
		t.Errorf("%d resolves and %d watches, want 1 and 7", resolves, watches)
	}
}

// TestPoolWatchRecovers: while the router answers 503 and then cannot be
// reached at all, the watcher backs off and the pool keeps working; once
// the router is back, the next watch installs the credential it missed.
func TestPoolWatchRecovers(t *testing.T) {
	s := newRouterServer(t)
	s.holdWatches()
	clk := newFakeClock()
	path := filepath.Join(t.TempDir(), "env.db")
	s.answerWith(t, sqliteConnection(path, "cred_1", clk.Now().Add(time.Hour)))
	p := openPool(t, s, &opener{}, clk.watchOptions())
	db := current(t, p)
	exec(t, db, "CREATE TABLE t (x INTEGER)")
	s.nextWatch(t)

	s.answerProblem(http.StatusServiceUnavailable, "unavailable", "the store is unreachable")
	w := clk.watcherWait(t)
	if st := p.Stats(); !errors.Is(st.LastWatchError, router.ErrUnavailable) || st.WatchFailures != 1 {
		t.Fatalf("stats %+v after a 503", st)
	}
	if w.d < 500*time.Millisecond || w.d > time.Second {
		t.Errorf("first backoff %s", w.d)
	}
	w.fire <- clk.Now()
	w = clk.watcherWait(t)
	if w.d < time.Second || w.d > 2*time.Second {
		t.Errorf("second backoff %s", w.d)
	}

	s.down()
	w.fire <- clk.Now()
	w = clk.watcherWait(t)
	st := p.Stats()
	if !errors.Is(st.LastWatchError, router.ErrUnavailable) || !errors.Is(st.LastWatchError, syscall.ECONNREFUSED) || st.WatchFailures != 3 {
		t.Fatalf("stats %+v while the router is down", st)
	}
	if w.d < 2*time.Second || w.d > 4*time.Second {
		t.Errorf("third backoff %s", w.d)
	}
	exec(t, current(t, p), "INSERT INTO t VALUES (1)")
	if current(t, p) != db {
		t.Fatal("the pool changed while the router was down")
	}

	s.up(t)
	s.answerWith(t, sqliteConnection(path, "cred_2", clk.Now().Add(time.Hour)))
	w.fire <- clk.Now()
	for r := s.nextWatch(t); !strings.Contains(r.query, "after=cred_2"); r = s.nextWatch(t) {
	}
	st = p.Stats()
	if st.CredentialID != "cred_2" || st.Swaps != 1 || st.LastWatchError != nil || st.LastError != nil {
		t.Fatalf("stats %+v after the router came back", st)
	}
	exec(t, current(t, p), "INSERT INTO t VALUES (2)")
	if n := count(t, current(t, p), "t"); n != 2 {
		t.Errorf("%d rows, want 2", n)
	}
}
