package controlplane

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Every write that changes what the router answers (a credential issued,
// rotated or revoked, an environment suspended or deleted, a role, member or
// key changed) records a Change in the same transaction. The replica that
// wrote drops its cached answers for the organization as soon as the
// transaction commits; every other replica reads the change log every
// ChangePoll and does the same, so a change reaches every cache within a
// second (adr/0011).

// changeSet collects the organizations a transaction changed.
type changeSet struct {
	orgs map[string]bool
}

// txQueries is the Queries a transaction run by Service.tx hands to its
// function: the store's, plus the changes to record at its end.
type txQueries struct {
	Queries
	changes *changeSet
}

// tx runs fn in one store transaction. The changes fn marks with s.changed
// are appended to the change log last, just before commit (so the change
// counter, which serializes appenders on PostgreSQL, is held for as short a
// time as possible and always taken last), and reach this replica's cache
// and watchers once the transaction commits.
func (s *Service) tx(ctx context.Context, fn func(q Queries) error) error {
	set := &changeSet{}
	err := s.Store.WithTx(ctx, func(q Queries) error {
		if err := fn(&txQueries{Queries: q, changes: set}); err != nil {
			return err
		}
		for org := range set.orgs {
			if err := s.appendChange(ctx, q, org); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		for org := range set.orgs {
			s.invalidate(org)
		}
	}
	return err
}

// changed marks that the router's answers for orgID (every organization
// when orgID is empty) changed. Inside s.tx the change is recorded at the
// end of the transaction; through the store itself (autocommit) it is
// recorded, and this replica's cache dropped, at once.
func (s *Service) changed(ctx context.Context, q Queries, orgID string) error {
	if tq, ok := q.(*txQueries); ok {
		if tq.changes.orgs == nil {
			tq.changes.orgs = map[string]bool{}
		}
		tq.changes.orgs[orgID] = true
		return nil
	}
	if err := s.appendChange(ctx, q, orgID); err != nil {
		return err
	}
	s.invalidate(orgID)
	return nil
}

func (s *Service) appendChange(ctx context.Context, q Queries, orgID string) error {
	if err := q.AppendChange(ctx, &Change{OrgID: orgID, CreatedAt: s.Now()}); err != nil {
		return fmt.Errorf("cannot record change: %w", err)
	}
	return nil
}

// invalidate drops this replica's cached answers for orgID (all of them when
// orgID is empty) and wakes the watches on that organization.
func (s *Service) invalidate(orgID string) {
	s.cache.invalidate(orgID)
	s.hub.notify(orgID)
}

// changeFeed follows the store's change log for this replica.
type changeFeed struct {
	// mu serializes syncs, so changes apply in order.
	mu sync.Mutex
	// last is the Seq of the newest change applied; -1 before the first sync.
	last int64
	// okAt is the UnixNano service time of the last successful sync; 0 before.
	okAt atomic.Int64
}

// changeBatch is how many changes one read of the log takes.
const changeBatch = MaxPageLimit

// SyncChanges reads the change log from where this replica left it and
// drops the cached answers of every organization that changed. The first
// sync starts from the newest change (nothing is cached before it). It
// returns the store's error, and then the cache is trusted only until
// MaxStale after the last successful sync.
func (s *Service) SyncChanges(ctx context.Context) error {
	// Platform-wide background work: every organization's rows (ADR 0027).
	ctx = WithPlatformScope(ctx)
	f := &s.feed
	f.mu.Lock()
	defer f.mu.Unlock()
	start := s.Now()
	if f.last < 0 {
		last, err := s.Store.LastChange(ctx)
		if err != nil {
			return fmt.Errorf("cannot read the change log: %w", err)
		}
		f.last = last
	}
	for {
		cs, err := s.Store.ListChanges(ctx, f.last, changeBatch)
		if err != nil {
			return fmt.Errorf("cannot read the change log: %w", err)
		}
		for _, c := range cs {
			s.invalidate(c.OrgID)
			f.last = c.Seq
		}
		if len(cs) < changeBatch {
			break
		}
	}
	f.okAt.Store(start.UnixNano())
	return nil
}

// cacheTrusted reports whether cached answers may be served at now: the
// change log was read successfully within MaxStale. A replica that does not
// follow the log (no Follow running) never serves from its cache.
func (s *Service) cacheTrusted(now time.Time) bool {
	ok := s.feed.okAt.Load()
	return ok != 0 && now.UnixNano()-ok <= int64(s.MaxStale)
}

// Follow keeps this replica's cache coherent and its receipts flowing until
// ctx ends: it reads the change log every ChangePoll and writes buffered
// receipts every ReceiptFlush, then flushes the receipts left. Every replica
// that serves the router runs it.
func (s *Service) Follow(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() {
		every(ctx, s.ChangePoll, func() {
			if err := s.SyncChanges(ctx); err != nil && ctx.Err() == nil {
				s.Logger.Warn("cannot follow the change log; cached answers expire", "err", err)
			}
		})
	})
	wg.Go(func() {
		every(ctx, s.ReceiptFlush, func() { s.FlushReceipts(ctx) })
		// The last receipts, written after ctx ended.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		s.FlushReceipts(fctx)
	})
	wg.Wait()
}

// every runs fn now and then every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		fn()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// watchHub wakes the watches waiting on an organization when it changes.
type watchHub struct {
	mu   sync.Mutex
	orgs map[string]chan struct{}
	// all is closed by notify("") and by Close.
	all    chan struct{}
	closed bool
}

// subscribe returns a channel closed at the next change of orgID (or of
// everything), and one closed when the hub shuts down.
func (h *watchHub) subscribe(orgID string) (org, all <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.orgs == nil {
		h.orgs = map[string]chan struct{}{}
	}
	if h.all == nil {
		h.all = make(chan struct{})
		if h.closed {
			close(h.all)
		}
	}
	ch, ok := h.orgs[orgID]
	if !ok {
		ch = make(chan struct{})
		h.orgs[orgID] = ch
	}
	return ch, h.all
}

// notify wakes the watches on orgID, or every watch when orgID is empty.
func (h *watchHub) notify(orgID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if orgID == "" {
		for id, ch := range h.orgs {
			close(ch)
			delete(h.orgs, id)
		}
		if h.all != nil && !h.closed {
			close(h.all)
			h.all = nil
		}
		return
	}
	if ch, ok := h.orgs[orgID]; ok {
		close(ch)
		delete(h.orgs, orgID)
	}
}

// CloseWatches answers every watch waiting now or later at once (with the
// connection as it is), so a server shutting down does not wait for them.
func (s *Service) CloseWatches() {
	h := &s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	if h.all == nil {
		h.all = make(chan struct{})
	}
	close(h.all)
}
