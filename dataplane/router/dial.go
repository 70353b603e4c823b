package router

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"time"

	"github.com/envplane/envplane/drivers"
)

// dialer is the connector of every *sql.DB a Pool opens. It dials with its
// generation's connector; when the database refuses the credential (an
// error wrapping drivers.ErrDenied) it has the Pool move to a newer
// credential and dials with that one's connector, up to maxDials times in
// all: with rotations back to back, the credential the pool moved to can
// itself have been revoked by the time the dial comes. A connection made
// with a newer credential belongs to this generation's *sql.DB, which is
// fine: a replaced pool drains and closes with the connections it holds.
//
// It holds the Pool and the generation by pointer, which fmt prints as an
// address: printing a *sql.DB shows no connector's secret.
type dialer struct {
	p   *Pool
	gen *generation
}

// maxDials bounds the dials of one Connect: the generation's own and those
// with newer credentials after refusals. Each one after the first is made
// only when the pool has moved past the refused credential, so the bound
// matters only when a database refuses credential after credential.
const maxDials = 3

var (
	_ driver.Connector = (*dialer)(nil)
	_ io.Closer        = (*dialer)(nil)
)

// Connect dials with the generation's credential and, while the database
// refuses the credential it dialed with, with the newest one (see
// Pool.moveOn), maxDials times at most. It returns the refusal when there
// is nothing newer to dial with, and the last dial's error otherwise.
func (d *dialer) Connect(ctx context.Context) (driver.Conn, error) {
	gen := d.gen
	for dials := 1; ; dials++ {
		conn, err := gen.connector.Connect(ctx)
		if err == nil || !errors.Is(err, drivers.ErrDenied) || dials == maxDials {
			return conn, err
		}
		next := d.p.moveOn(ctx, gen.seq)
		if next == nil {
			return nil, err
		}
		d.p.mu.Lock()
		d.p.stats.DialRetries++
		d.p.mu.Unlock()
		gen = next
	}
}

// Driver returns the generation's connector's driver.
func (d *dialer) Driver() driver.Driver { return d.gen.connector.Driver() }

// Close closes the generation's connector when it holds resources
// (sql.DB.Close calls it).
func (d *dialer) Close() error {
	if c, ok := d.gen.connector.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// forced is a resolve started because the database refused generation
// seq's credential; done is closed when it is over.
type forced struct {
	seq  uint64
	at   time.Time
	done chan struct{}
}

// moveOn answers the database's refusal of generation seq's credential. It
// returns the newest generation when the pool has moved past seq: at once
// when it already had (no resolve: the refusal is old news), or after one
// resolve, which the first refusal starts and every concurrent one waits
// for. It returns nil when there is nothing newer to dial with: the resolve
// found the same credential or failed (and another is started no sooner
// than MinBackoff after it, so a database that keeps refusing does not
// turn every dial into a resolve), seq is a pool still under its check,
// the pool stopped or closed, or ctx ended while waiting.
func (p *Pool) moveOn(ctx context.Context, seq uint64) *generation {
	if cur := p.cur.Load(); cur.seq != seq {
		if cur.seq > seq {
			return cur
		}
		return nil
	}
	now := p.opts.Now()
	p.mu.Lock()
	f := p.forcing
	if f == nil || f.seq != seq || (isDone(f.done) && !now.Before(f.at.Add(p.opts.MinBackoff))) {
		if p.closed.Load() || p.stopped.Load() != nil {
			p.mu.Unlock()
			return nil
		}
		f = &forced{seq: seq, at: now, done: make(chan struct{})}
		p.forcing = f
		p.wg.Add(1)
		go p.force(f)
	}
	p.mu.Unlock()
	select {
	case <-f.done:
	case <-ctx.Done():
		return nil
	}
	if cur := p.cur.Load(); cur.seq > seq {
		return cur
	}
	return nil
}

// force resolves for f, under the refresh semaphore and the pool's
// lifetime rather than the dial's context: a dial that gives up must not
// abort a swap the other dials wait for. A refresh or a watch that moved
// the pool on meanwhile makes it unnecessary.
func (p *Pool) force(f *forced) {
	defer p.wg.Done()
	defer close(f.done)
	if p.acquire(p.bg) != nil {
		return
	}
	defer p.release()
	if p.cur.Load().seq != f.seq {
		return
	}
	p.mu.Lock()
	p.stats.ForcedResolves++
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(p.bg, p.opts.RefreshTimeout)
	defer cancel()
	_ = p.refresh(ctx) // counted in Stats; the current pool stays
}

// isDone reports whether ch is closed.
func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
