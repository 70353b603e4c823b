package controlplane

import (
	"context"
	"sync"
	"time"
)

// ClockReader is a store shared by replicas that can tell its own time
// (the PostgreSQL store: its server's clock). Replicas measure leases,
// expiries and schedules on that one clock instead of each on its own
// (adr/0028). A store without it (SQLite, one machine) needs none.
type ClockReader interface {
	// Clock returns the store's current time. It fails when the store
	// cannot be reached.
	Clock(ctx context.Context) (time.Time, error)
}

// StoreClock is the store's clock as seen from this replica: Sync reads
// the store's time and notes the local reading at that moment; Now is
// that store time plus the local time elapsed since, measured on the
// monotonic clock where the local readings carry one (time.Now's do). So
// a replica whose wall clock is wrong, or is stepped, still stamps leases
// with the store's time, within half a round trip of the last Sync.
type StoreClock struct {
	read  func(ctx context.Context) (time.Time, error)
	local func() time.Time

	mu     sync.Mutex
	base   time.Time // the store's time at the best sample
	at     time.Time // the local reading at that moment
	synced bool
}

// syncSamples is how many round trips a Sync makes; the one answered
// fastest is kept, its midpoint being the best guess of when the store
// read its clock.
const syncSamples = 3

// NewStoreClock returns a clock that follows read's time, with local as
// this replica's own clock (time.Now in production). Until the first
// Sync succeeds, Now is local's time.
func NewStoreClock(read func(ctx context.Context) (time.Time, error), local func() time.Time) *StoreClock {
	return &StoreClock{read: read, local: local}
}

// Now returns the store's current time as estimated from the last Sync.
func (c *StoreClock) Now() time.Time {
	now := c.local()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.synced {
		return now.UTC()
	}
	return c.base.Add(now.Sub(c.at)).UTC()
}

// Sync reads the store's clock a few times and keeps the sample with the
// shortest round trip. On failure (the store's error) the previous
// estimate stays; it is safe to call again at any time.
func (c *StoreClock) Sync(ctx context.Context) error {
	var best, bestAt time.Time
	rtt := time.Duration(-1)
	for range syncSamples {
		t0 := c.local()
		st, err := c.read(ctx)
		if err != nil {
			return err
		}
		t1 := c.local()
		if d := t1.Sub(t0); rtt < 0 || d < rtt {
			rtt, best, bestAt = d, st, t0.Add(d/2)
		}
	}
	c.mu.Lock()
	c.base, c.at, c.synced = best, bestAt, true
	c.mu.Unlock()
	return nil
}

// Run syncs the clock every interval until ctx ends; a failed sync (the
// store restarting) keeps the last estimate and is reported to onErr.
func (c *StoreClock) Run(ctx context.Context, interval time.Duration, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := c.Sync(ctx); err != nil && ctx.Err() == nil {
			onErr(err)
		}
	}
}
