package router

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/envplane/envplane/drivers"
)

// Defaults of Options.
const (
	DefaultDrain          = 30 * time.Second
	DefaultMinBackoff     = time.Second
	DefaultMaxBackoff     = time.Minute
	DefaultRefreshTimeout = 30 * time.Second
	DefaultWatchWait      = 30 * time.Second
)

// busyRecheck is how often a replaced pool whose drain period has passed,
// but which still has connections in use, is looked at again.
const busyRecheck = time.Second

// stoppedSleep is how long the refresher of a stopped pool sleeps when no
// replaced pool waits to drain: it has nothing left to do but reap.
const stoppedSleep = time.Hour

// Opener returns a connector for a connection: name is envplane's driver
// name ("sqlite", "postgres", "turso"), dsn the connection string with its
// secret. The Pool opens one *sql.DB on each connector. A connector's
// Connect should report the database's refusal of the credential as an
// error wrapping drivers.ErrDenied: the Pool then resolves again at once
// instead of waiting for refresh_after. Neither the Opener nor its
// connectors may put dsn or the secret in their errors. sqlopen.Connector
// is the default one.
type Opener func(name string, dsn drivers.Secret) (driver.Connector, error)

// WatchMode says whether a Pool keeps a watch open on the router.
type WatchMode int

const (
	// WatchOn keeps one watch open (Client.Watch), so the pool learns of a
	// rotation or an emergency revocation as soon as the router knows it.
	// It is the default.
	WatchOn WatchMode = iota
	// WatchOff relies on refresh_after, an expired credential and refused
	// dials alone.
	WatchOff
)

// Options tune a Pool. Every zero field takes its default.
type Options struct {
	// Drain is how long a replaced pool stays open after the swap for work
	// that already holds it (default 30 s). After it, the pool closes as
	// soon as none of its connections is in use, and at the latest when its
	// credential expires.
	Drain time.Duration
	// MinBackoff and MaxBackoff bound the wait before retrying a failed
	// refresh (defaults 1 s and 1 min). The wait doubles from MinBackoff,
	// with jitter, up to MaxBackoff. MinBackoff is also the shortest wait
	// between two refreshes, whatever refresh_after says.
	MinBackoff, MaxBackoff time.Duration
	// RefreshTimeout bounds one background refresh (default 30 s), and the
	// opening and check of a pool on a credential a watch announced.
	RefreshTimeout time.Duration
	// Watch says whether the pool keeps a watch open (WatchOn, the
	// default) or relies on refresh_after alone (WatchOff).
	Watch WatchMode
	// WatchWait is how long the router may hold one watch before it
	// answers with the unchanged connection (default 30 s, at most
	// MaxWatchWait).
	WatchWait time.Duration
	// Now returns the current time (default time.Now).
	Now func() time.Time
	// After returns a channel that receives once d has passed (default
	// time.After). The background refresher waits on it, and so does the
	// watcher between failed watches.
	After func(d time.Duration) <-chan time.Time
}

func (o Options) withDefaults() Options {
	if o.Drain <= 0 {
		o.Drain = DefaultDrain
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(DefaultMaxBackoff, o.MinBackoff)
	}
	if o.RefreshTimeout <= 0 {
		o.RefreshTimeout = DefaultRefreshTimeout
	}
	if o.WatchWait <= 0 {
		o.WatchWait = DefaultWatchWait
	}
	o.WatchWait = min(o.WatchWait, MaxWatchWait)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.After == nil {
		o.After = time.After
	}
	return o
}

// Stats describes a Pool's refreshes, watches and refused dials.
type Stats struct {
	// CredentialID is the credential the current pool connects with.
	CredentialID string
	// Resolves counts successful resolves, the first one included (watch
	// answers count in WatchAnswers).
	Resolves int64
	// Failures counts failed refreshes: the control plane refused or could
	// not be reached, or the new credential's pool did not open.
	Failures int64
	// Swaps counts pools replaced by a pool on a new credential or DSN,
	// whatever found it: a refresh, a watch or a refused dial.
	Swaps int64
	// WatchAnswers counts the connections watches answered with.
	WatchAnswers int64
	// WatchFailures counts failed watches, each followed by a backoff: the
	// router refused or could not be reached, the announced credential's
	// pool did not open, or the router answered with the unchanged
	// connection in less than half the wait (it does not hold watches).
	WatchFailures int64
	// ForcedResolves counts resolves made because the database refused the
	// current credential when a connection was dialed.
	ForcedResolves int64
	// DialRetries counts dials made again with the newest credential after
	// the database refused the one they were made with.
	DialRetries int64
	// Draining is how many replaced pools are still open.
	Draining int
	// Retired counts replaced pools closed after their drain.
	Retired int64
	// LastRefresh is when the last successful resolve happened.
	LastRefresh time.Time
	// NextRefresh is when the next refresh is due.
	NextRefresh time.Time
	// LastError is the error of the latest refresh if it failed; nil once a
	// refresh or a watch succeeds again. When the router refused the token
	// or the environment for good (401, 403, 404, from a refresh or a
	// watch) it is that *Error for the rest of the pool's life: the pool
	// stopped, and DB returns it.
	LastError error
	// LastWatchError is the latest watch's failure; nil once a watch
	// answers again.
	LastWatchError error
}

// generation is one pool and the connection it was opened with.
type generation struct {
	// seq numbers the pools a Pool opens, from 1 in the order they were
	// opened: a refused dial compares it with the current one's.
	seq  uint64
	db   *sql.DB
	conn Connection
	// connector is the Opener's; db reaches it through a dialer.
	connector driver.Connector
}

// retired is a replaced pool waiting to drain.
type retired struct {
	db      *sql.DB
	since   time.Time
	expires time.Time
}

// Pool keeps a *sql.DB on an environment's database with the credential the
// router hands out, and moves to a new credential in three ways:
//
//   - a watch (unless Options.Watch is WatchOff): one long poll is kept
//     open on the router, which answers as soon as another credential is
//     active, so a rotation or an emergency revocation is known within a
//     second;
//   - a refused dial: when the database refuses the credential while a
//     connection is dialed (the connector's error wraps drivers.ErrDenied),
//     the pool resolves at once, swaps, and dials again with the newest
//     credential, so the query that dialed does not fail;
//   - refresh_after: a background refresher resolves again when the
//     answer's refresh_after passes (DB notices it too and wakes the
//     refresher), which keeps working when watches cannot.
//
// When the credential or DSN changed, the pool opens a *sql.DB on the new
// one, checks it with a query, swaps it in, and closes the old one only
// after it drained, so queries and transactions under way finish on it. A
// failed refresh or watch keeps the current pool and is retried with
// backoff. A refusal that asking again will not change (401, 403, 404)
// stops the pool: it no longer asks the router, and DB returns the *Error.
// A Pool is safe for concurrent use.
type Pool struct {
	// resolve and watch ask the router; closures, not a *Client field, so
	// that printing a Pool cannot reach the token (fmt's %s expands pointer
	// fields one level, unexported ones without their String methods).
	resolve func(context.Context) (Connection, error)
	watch   func(ctx context.Context, after string) (Connection, error)
	target  Target
	open    Opener
	opts    Options

	cur atomic.Pointer[generation]
	// seq numbers the generations.
	seq atomic.Uint64
	// due is the UnixNano time of the next refresh.
	due    atomic.Int64
	closed atomic.Bool
	// stopped holds the final refusal that stopped the pool.
	stopped atomic.Pointer[Error]

	// sem admits one refresh at a time; a channel so that waiting for it
	// can give up with a context.
	sem  chan struct{}
	kick chan struct{}
	// bg ends at Close; the refresher, the watcher and forced resolves run
	// under it, and wg counts them.
	bg        context.Context
	cancel    context.CancelFunc
	stopWatch context.CancelFunc
	wg        sync.WaitGroup

	mu       sync.Mutex
	draining []retired
	stats    Stats
	backoff  time.Duration
	// forcing is the latest resolve a refused dial started.
	forcing *forced

	closeOnce sync.Once
	closeErr  error
}

// Open resolves target with scope, opens a pool with opener and checks that
// it connects, then keeps it current in the background until Close (a
// refresher and, unless opts.Watch is WatchOff, a watch). It
// returns the resolve's error (an *Error for a refusal), or the opener's or
// the check query's, and then holds nothing open. Each call makes a new
// Pool, which the caller closes.
func Open(ctx context.Context, client *Client, target Target, scope drivers.Scope, opener Opener, opts Options) (*Pool, error) {
	if client == nil || opener == nil {
		return nil, errors.New("router: Open needs a client and an opener")
	}
	opts = opts.withDefaults()
	p := &Pool{
		resolve: func(ctx context.Context) (Connection, error) { return client.Resolve(ctx, target, scope) },
		watch: func(ctx context.Context, after string) (Connection, error) {
			return client.Watch(ctx, target, scope, after, opts.WatchWait)
		},
		target: target,
		open:   opener,
		opts:   opts,
		sem:    make(chan struct{}, 1),
		kick:   make(chan struct{}, 1),
	}
	conn, err := p.resolve(ctx)
	if err != nil {
		return nil, err
	}
	g, err := p.connect(ctx, conn)
	if err != nil {
		return nil, err
	}
	p.cur.Store(g)
	p.succeeded(p.opts.Now(), conn)
	p.countResolve()
	p.bg, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.run(p.bg)
	if p.opts.Watch != WatchOff {
		wctx, stop := context.WithCancel(p.bg)
		p.stopWatch = stop
		p.wg.Add(1)
		go p.watchLoop(wctx)
	}
	return p, nil
}

// DB returns the current pool. It does no I/O while the credential is fresh;
// once refresh_after has passed it wakes the background refresher and still
// returns at once. Only when the current credential has expired does it wait
// (bounded by ctx) for a refresh; should that fail it returns the current
// pool anyway, since the database, not the client, decides whether the old
// credential still opens it. It returns ErrClosed after Close, and the
// router's *Error once a final refusal (401, 403, 404) stopped the pool
// (errors.Is matches ErrUnauthorized, ErrForbidden or ErrNotFound). Do not
// close the returned *sql.DB: the Pool closes it once it was replaced and
// drained.
func (p *Pool) DB(ctx context.Context) (*sql.DB, error) {
	if p.closed.Load() {
		return nil, ErrClosed
	}
	if e := p.stopped.Load(); e != nil {
		return nil, e
	}
	g := p.cur.Load()
	now := p.opts.Now()
	if now.UnixNano() < p.due.Load() {
		return g.db, nil
	}
	if exp := g.conn.ExpiresAt; !exp.IsZero() && !now.Before(exp) {
		if err := p.refreshExpired(ctx); errors.Is(err, ErrClosed) {
			return nil, err
		}
		return p.cur.Load().db, nil
	}
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return g.db, nil
}

// Connection returns the connection the current pool was opened with (its
// DSN and secret print as [redacted]).
func (p *Pool) Connection() Connection { return p.cur.Load().conn }

// Refresh resolves now and swaps in a pool on the new credential when the
// credential or DSN changed, waiting (bounded by ctx) for a refresh already
// under way. A failure keeps the current pool, is counted in Stats and
// returned: the resolve's error, or the new pool's. Repeating it only
// resolves again. ErrClosed after Close; once a final refusal stopped the
// pool, that *Error, without asking the router.
func (p *Pool) Refresh(ctx context.Context) error {
	if err := p.acquire(ctx); err != nil {
		return err
	}
	defer p.release()
	return p.refresh(ctx)
}

// Stats returns the pool's counters and its last error.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.CredentialID = p.cur.Load().conn.CredentialID
	s.Draining = len(p.draining)
	s.NextRefresh = time.Unix(0, p.due.Load())
	return s
}

// Close stops the refresher and the watcher, waits for a refresh under way,
// and closes the current pool and every replaced one, whether drained or
// not. It returns the pools' close errors; calling it again returns the same.
func (p *Pool) Close() error {
	p.closeOnce.Do(func() {
		// A refused dial starts a resolve under mu after checking closed,
		// so past this point none starts and wg counts every one.
		p.mu.Lock()
		p.closed.Store(true)
		p.mu.Unlock()
		p.cancel()
		p.wg.Wait()
		// A Refresh under way finishes (it sees the cancelled context or
		// completes) before the pools close; later ones see closed.
		p.sem <- struct{}{}
		defer p.release()
		p.mu.Lock()
		defer p.mu.Unlock()
		errs := []error{p.cur.Load().db.Close()}
		for _, r := range p.draining {
			errs = append(errs, r.db.Close())
		}
		p.draining = nil
		if err := errors.Join(errs...); err != nil {
			p.closeErr = fmt.Errorf("router: cannot close the pools of %s: %w", p.target, err)
		}
	})
	return p.closeErr
}

// acquire takes the refresh semaphore, or returns ctx's error, or ErrClosed.
func (p *Pool) acquire(ctx context.Context) error {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	if p.closed.Load() {
		p.release()
		return ErrClosed
	}
	return nil
}

func (p *Pool) release() { <-p.sem }

// refreshExpired refreshes unless another caller already replaced the
// expired credential while this one waited.
func (p *Pool) refreshExpired(ctx context.Context) error {
	if err := p.acquire(ctx); err != nil {
		return err
	}
	defer p.release()
	if exp := p.cur.Load().conn.ExpiresAt; exp.IsZero() || p.opts.Now().Before(exp) {
		return nil
	}
	return p.refresh(ctx)
}

// refresh resolves and swaps when the connection changed; once the pool
// stopped it returns the refusal that stopped it. The caller holds the
// semaphore.
func (p *Pool) refresh(ctx context.Context) error {
	if e := p.stopped.Load(); e != nil {
		return e
	}
	conn, err := p.resolve(ctx)
	if err != nil {
		return p.failed(err)
	}
	if err := p.apply(ctx, conn); err != nil {
		return p.failed(err)
	}
	p.countResolve()
	return nil
}

// apply makes conn the current connection: the same credential and DSN
// keep the pool and only move the next refresh; another one is opened,
// checked and swapped in, and the old pool drains. It returns the new
// pool's error and then changes nothing. The caller holds the semaphore.
func (p *Pool) apply(ctx context.Context, conn Connection) error {
	old := p.cur.Load()
	if sameConnection(old.conn, conn) {
		p.cur.Store(&generation{seq: old.seq, db: old.db, conn: conn, connector: old.connector})
		p.succeeded(p.opts.Now(), conn)
		return nil
	}
	g, err := p.connect(ctx, conn)
	if err != nil {
		return err
	}
	p.cur.Store(g)
	now := p.opts.Now()
	p.mu.Lock()
	p.draining = append(p.draining, retired{db: old.db, since: now, expires: old.conn.ExpiresAt})
	p.stats.Swaps++
	p.mu.Unlock()
	p.succeeded(now, conn)
	return nil
}

// sameConnection reports whether b reaches the database as a does: same
// driver, DSN and credential.
func sameConnection(a, b Connection) bool {
	return a.CredentialID == b.CredentialID && a.DSN == b.DSN && a.Driver == b.Driver
}

// connect opens a pool for conn and checks that it answers a query, so a
// swap never replaces a working pool with one that does not work. A query,
// not a ping: database/sql's ping of a libsql connection sends nothing, so
// with an Opener whose connector does not check the token it would accept
// any token.
func (p *Pool) connect(ctx context.Context, conn Connection) (*generation, error) {
	c, err := p.open(conn.Driver, conn.DSN)
	if err != nil {
		return nil, fmt.Errorf("router: cannot open %s with credential %s: %w", p.target, conn.CredentialID, err)
	}
	g := &generation{seq: p.seq.Add(1), conn: conn, connector: c}
	g.db = sql.OpenDB(&dialer{p: p, gen: g})
	var one int
	if err := g.db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		g.db.Close()
		return nil, fmt.Errorf("router: cannot connect to %s with credential %s: %w", p.target, conn.CredentialID, err)
	}
	return g, nil
}

func (p *Pool) countResolve() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Resolves++
}

// succeeded records that the pool holds the router's current answer (from
// a resolve or a watch) and schedules the next refresh at refresh_after,
// but no sooner than MinBackoff from now: a skewed clock must not make the
// refresher spin.
func (p *Pool) succeeded(now time.Time, conn Connection) {
	next := conn.RefreshAfter
	if floor := now.Add(p.opts.MinBackoff); next.Before(floor) {
		next = floor
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.LastRefresh = now
	if p.stopped.Load() == nil {
		p.stats.LastError = nil
	}
	p.backoff = 0
	p.due.Store(next.UnixNano())
}

// failed records err and schedules a retry after the next backoff (see
// nextBackoff); a final refusal stops the pool instead. It returns err.
func (p *Pool) failed(err error) error {
	final := finalError(err)
	now := p.opts.Now()
	p.mu.Lock()
	p.stats.Failures++
	p.stats.LastError = err
	if final == nil {
		p.backoff = p.nextBackoff(p.backoff)
		p.due.Store(now.Add(jitter(p.backoff)).UnixNano())
	}
	p.mu.Unlock()
	if final != nil {
		p.stop(final)
	}
	return err
}

// nextBackoff returns the backoff after last: twice it, from MinBackoff up
// to MaxBackoff.
func (p *Pool) nextBackoff(last time.Duration) time.Duration {
	return min(max(2*last, p.opts.MinBackoff), p.opts.MaxBackoff)
}

// jitter returns d less up to half of it at random, so that the clients of
// a control plane that comes back do not retry in step.
func jitter(d time.Duration) time.Duration {
	return d - rand.N(d/2+1)
}

// stop ends the pool's conversation with the router after the final
// refusal e: no refresh, watch or forced resolve asks again, DB returns e.
// The pools stay open until Close, for work that holds them.
func (p *Pool) stop(e *Error) {
	p.stopped.CompareAndSwap(nil, e)
	p.mu.Lock()
	p.stats.LastError = p.stopped.Load()
	p.mu.Unlock()
	if p.stopWatch != nil {
		p.stopWatch()
	}
}

// run is the background refresher: it sleeps until the next refresh or
// drain deadline, or until DB wakes it, refreshes when due and closes the
// replaced pools that drained.
func (p *Pool) run(ctx context.Context) {
	defer p.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		case <-p.opts.After(p.wait()):
		}
		if p.stopped.Load() == nil && p.opts.Now().UnixNano() >= p.due.Load() && p.acquire(ctx) == nil {
			// Refresh may have run while this waited for the semaphore.
			if p.opts.Now().UnixNano() >= p.due.Load() {
				rctx, cancel := context.WithTimeout(ctx, p.opts.RefreshTimeout)
				_ = p.refresh(rctx) // counted in Stats; the current pool stays
				cancel()
			}
			p.release()
		}
		p.reap()
	}
}

// wait returns how long the refresher may sleep: until the next refresh
// (none once the pool stopped) or the next drain deadline, and no longer
// than busyRecheck while a drained pool still has connections in use.
func (p *Pool) wait() time.Duration {
	now := p.opts.Now()
	wait := time.Unix(0, p.due.Load()).Sub(now)
	if p.stopped.Load() != nil {
		wait = stoppedSleep
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.draining {
		if d := r.since.Add(p.opts.Drain).Sub(now); d > 0 {
			wait = min(wait, d)
		} else {
			wait = min(wait, busyRecheck)
		}
	}
	return max(wait, 0)
}

// reap closes the replaced pools whose drain period has passed and which
// have no connection in use, or whose credential has expired: then nothing
// new can use them, and database/sql lets the connections in use finish.
func (p *Pool) reap() {
	now := p.opts.Now()
	var done []*sql.DB
	p.mu.Lock()
	keep := p.draining[:0]
	for _, r := range p.draining {
		idle := r.db.Stats().InUse == 0
		expired := !r.expires.IsZero() && !now.Before(r.expires)
		if !now.Before(r.since.Add(p.opts.Drain)) && (idle || expired) {
			done = append(done, r.db)
			continue
		}
		keep = append(keep, r)
	}
	p.draining = keep
	p.stats.Retired += int64(len(done))
	p.mu.Unlock()
	for _, db := range done {
		// Close lets connections in use finish; its error (a driver's
		// failure to close a socket) changes nothing for the current pool.
		_ = db.Close()
	}
}
