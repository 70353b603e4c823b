package router

import (
	"context"
	"database/sql"
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
)

// busyRecheck is how often a replaced pool whose drain period has passed,
// but which still has connections in use, is looked at again.
const busyRecheck = time.Second

// Opener opens a pool for a connection: driver is envplane's driver name
// ("sqlite", "postgres", "turso"), dsn the connection string with its secret.
// It must not put dsn in its errors. sqlopen.Open is the default one.
type Opener func(driver string, dsn drivers.Secret) (*sql.DB, error)

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
	// RefreshTimeout bounds one background refresh (default 30 s).
	RefreshTimeout time.Duration
	// Now returns the current time (default time.Now).
	Now func() time.Time
	// After returns a channel that receives once d has passed (default
	// time.After). The background refresher waits on it.
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
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.After == nil {
		o.After = time.After
	}
	return o
}

// Stats describes a Pool's refreshes.
type Stats struct {
	// CredentialID is the credential the current pool connects with.
	CredentialID string
	// Resolves counts successful resolves, the first one included.
	Resolves int64
	// Failures counts failed refreshes: the control plane refused or could
	// not be reached, or the new credential's pool did not open.
	Failures int64
	// Swaps counts pools replaced by a pool on a new credential or DSN.
	Swaps int64
	// Draining is how many replaced pools are still open.
	Draining int
	// Retired counts replaced pools closed after their drain.
	Retired int64
	// LastRefresh is when the last successful resolve happened.
	LastRefresh time.Time
	// NextRefresh is when the next refresh is due.
	NextRefresh time.Time
	// LastError is the error of the latest refresh if it failed; nil once a
	// refresh succeeds again.
	LastError error
}

// generation is one pool and the connection it was opened with.
type generation struct {
	db   *sql.DB
	conn Connection
}

// retired is a replaced pool waiting to drain.
type retired struct {
	db      *sql.DB
	since   time.Time
	expires time.Time
}

// Pool keeps a *sql.DB on an environment's database with the credential the
// router hands out. A background refresher resolves again when the answer's
// refresh_after passes (DB notices it too and wakes the refresher); when the
// credential or DSN changed, it opens a pool on the new one, checks it with
// a query, swaps it in, and closes the old pool only after it drained, so
// queries and transactions under way finish on it. A failed refresh keeps the current
// pool and is retried with backoff. A Pool is safe for concurrent use.
type Pool struct {
	// resolve asks the router; a closure, not a *Client field, so that
	// printing a Pool cannot reach the token (fmt's %s expands pointer
	// fields one level, unexported ones without their String methods).
	resolve func(context.Context) (Connection, error)
	target  Target
	open    Opener
	opts    Options

	cur atomic.Pointer[generation]
	// due is the UnixNano time of the next refresh.
	due    atomic.Int64
	closed atomic.Bool

	// sem admits one refresh at a time; a channel so that waiting for it
	// can give up with a context.
	sem    chan struct{}
	kick   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	draining []retired
	stats    Stats
	backoff  time.Duration

	closeOnce sync.Once
	closeErr  error
}

// Open resolves target with scope, opens a pool with opener and checks that
// it connects, then keeps it current in the background until Close. It
// returns the resolve's error (an *Error for a refusal), or the opener's or
// the check query's, and then holds nothing open. Each call makes a new
// Pool, which the caller closes.
func Open(ctx context.Context, client *Client, target Target, scope drivers.Scope, opener Opener, opts Options) (*Pool, error) {
	if client == nil || opener == nil {
		return nil, errors.New("router: Open needs a client and an opener")
	}
	p := &Pool{
		resolve: func(ctx context.Context) (Connection, error) { return client.Resolve(ctx, target, scope) },
		target:  target,
		open:    opener,
		opts:    opts.withDefaults(),
		sem:     make(chan struct{}, 1),
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	conn, err := p.resolve(ctx)
	if err != nil {
		return nil, err
	}
	db, err := p.connect(ctx, conn)
	if err != nil {
		return nil, err
	}
	p.cur.Store(&generation{db: db, conn: conn})
	p.succeeded(p.opts.Now(), conn)
	bg, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go p.run(bg)
	return p, nil
}

// DB returns the current pool. It does no I/O while the credential is fresh;
// once refresh_after has passed it wakes the background refresher and still
// returns at once. Only when the current credential has expired does it wait
// (bounded by ctx) for a refresh; should that fail it returns the current
// pool anyway, since the database, not the client, decides whether the old
// credential still opens it. It returns ErrClosed after Close. Do not close
// the returned *sql.DB: the Pool closes it once it was replaced and drained.
func (p *Pool) DB(ctx context.Context) (*sql.DB, error) {
	if p.closed.Load() {
		return nil, ErrClosed
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
// resolves again. ErrClosed after Close.
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

// Close stops the refresher, waits for a refresh under way, and closes the
// current pool and every replaced one, whether drained or not. It returns
// the pools' close errors; calling it again returns the same.
func (p *Pool) Close() error {
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		p.cancel()
		<-p.done
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

// refresh resolves and swaps when the connection changed. The caller holds
// the semaphore.
func (p *Pool) refresh(ctx context.Context) error {
	conn, err := p.resolve(ctx)
	if err != nil {
		return p.failed(err)
	}
	old := p.cur.Load()
	if conn.CredentialID == old.conn.CredentialID && conn.DSN == old.conn.DSN && conn.Driver == old.conn.Driver {
		p.cur.Store(&generation{db: old.db, conn: conn})
		p.succeeded(p.opts.Now(), conn)
		return nil
	}
	db, err := p.connect(ctx, conn)
	if err != nil {
		return p.failed(err)
	}
	p.cur.Store(&generation{db: db, conn: conn})
	now := p.opts.Now()
	p.mu.Lock()
	p.draining = append(p.draining, retired{db: old.db, since: now, expires: old.conn.ExpiresAt})
	p.stats.Swaps++
	p.mu.Unlock()
	p.succeeded(now, conn)
	return nil
}

// connect opens a pool for conn and checks that it answers a query, so a
// swap never replaces a working pool with one that does not work. A query,
// not a ping: libsql's ping sends nothing, so it would accept any token.
func (p *Pool) connect(ctx context.Context, conn Connection) (*sql.DB, error) {
	db, err := p.open(conn.Driver, conn.DSN)
	if err != nil {
		return nil, fmt.Errorf("router: cannot open %s with credential %s: %w", p.target, conn.CredentialID, err)
	}
	var one int
	if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		db.Close()
		return nil, fmt.Errorf("router: cannot connect to %s with credential %s: %w", p.target, conn.CredentialID, err)
	}
	return db, nil
}

// succeeded records a resolve and schedules the next at refresh_after, but
// no sooner than MinBackoff from now: a skewed clock must not make the
// refresher spin.
func (p *Pool) succeeded(now time.Time, conn Connection) {
	next := conn.RefreshAfter
	if floor := now.Add(p.opts.MinBackoff); next.Before(floor) {
		next = floor
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Resolves++
	p.stats.LastRefresh = now
	p.stats.LastError = nil
	p.backoff = 0
	p.due.Store(next.UnixNano())
}

// failed records err and schedules a retry after the next backoff: twice the
// last one, from MinBackoff up to MaxBackoff, less up to half of it at
// random so that clients of a control plane that comes back do not retry
// in step. It returns err.
func (p *Pool) failed(err error) error {
	now := p.opts.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Failures++
	p.stats.LastError = err
	p.backoff = min(max(2*p.backoff, p.opts.MinBackoff), p.opts.MaxBackoff)
	wait := p.backoff - rand.N(p.backoff/2+1)
	p.due.Store(now.Add(wait).UnixNano())
	return err
}

// run is the background refresher: it sleeps until the next refresh or
// drain deadline, or until DB wakes it, refreshes when due and closes the
// replaced pools that drained.
func (p *Pool) run(ctx context.Context) {
	defer close(p.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		case <-p.opts.After(p.wait()):
		}
		if p.opts.Now().UnixNano() >= p.due.Load() && p.acquire(ctx) == nil {
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

// wait returns how long the refresher may sleep: until the next refresh or
// the next drain deadline, and no longer than busyRecheck while a drained
// pool still has connections in use.
func (p *Pool) wait() time.Duration {
	now := p.opts.Now()
	wait := time.Unix(0, p.due.Load()).Sub(now)
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
