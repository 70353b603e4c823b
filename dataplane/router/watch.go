package router

import (
	"context"
	"errors"
	"time"
)

// errNotHeld is a watch's failure when the router answered with the
// unchanged connection long before the wait: it does not hold watches, and
// asking again at once would poll it in a loop.
var errNotHeld = errors.New("router: the watch was answered at once with the unchanged connection (the router does not hold watches)")

// watchLoop keeps one watch open on the router, naming the current
// credential, until ctx ends (Close, or a final refusal). Every answer with
// another connection is installed as a refresh installs it; a failed watch
// is asked again after a backoff that doubles from MinBackoff up to
// MaxBackoff, with jitter.
func (p *Pool) watchLoop(ctx context.Context) {
	defer p.wg.Done()
	var backoff time.Duration
	for ctx.Err() == nil {
		if p.watchOnce(ctx) {
			backoff = 0
			continue
		}
		if ctx.Err() != nil {
			return
		}
		backoff = p.nextBackoff(backoff)
		select {
		case <-ctx.Done():
			return
		case <-p.opts.After(jitter(backoff)):
		}
	}
}

// watchOnce waits for one answer to a watch on the current credential and
// acts on it. It reports whether the watcher may ask again at once.
func (p *Pool) watchOnce(ctx context.Context) bool {
	g := p.cur.Load()
	start := p.opts.Now()
	conn, err := p.watch(ctx, g.conn.CredentialID)
	if ctx.Err() != nil {
		return false
	}
	if err != nil {
		return p.watchFailed(err)
	}
	held := p.opts.Now().Sub(start) >= p.opts.WatchWait/2
	p.mu.Lock()
	p.stats.WatchAnswers++
	p.mu.Unlock()
	if err := p.acquire(ctx); err != nil {
		return false
	}
	defer p.release()
	if p.stopped.Load() != nil {
		// A refresh was refused for good while this watch waited.
		return false
	}
	if p.cur.Load().seq != g.seq {
		// The pool moved while the watch waited (a refresh, a refused
		// dial): the answer may be older than what it holds now. The next
		// watch names the new credential.
		return true
	}
	if sameConnection(g.conn, conn) && !held {
		return p.watchFailed(errNotHeld)
	}
	actx, cancel := context.WithTimeout(ctx, p.opts.RefreshTimeout)
	defer cancel()
	if err := p.apply(actx, conn); err != nil {
		return p.watchFailed(err)
	}
	p.mu.Lock()
	p.stats.LastWatchError = nil
	p.mu.Unlock()
	return true
}

// watchFailed records a failed watch; a final refusal stops the pool. It
// returns false: the watcher backs off (or, stopped, ends).
func (p *Pool) watchFailed(err error) bool {
	p.mu.Lock()
	p.stats.WatchFailures++
	p.stats.LastWatchError = err
	p.mu.Unlock()
	if e := finalError(err); e != nil {
		p.stop(e)
	}
	return false
}
