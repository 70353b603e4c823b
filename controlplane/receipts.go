package controlplane

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Router receipts: every resolution is counted, per environment, API key,
// scope, credential, key version, replica and minute, in memory, and the
// counts are written in one batch every ReceiptFlush by Follow. A resolve
// never waits for the store: it adds to a map under a short lock. What a
// crash can lose is the counts since the last flush (at most ReceiptFlush of
// resolutions); when the store cannot take a batch, it is kept and merged
// into the next, up to the buffer's bound, past which resolutions are
// counted as dropped (adr/0011).

// receiptKey is what one receipt row counts.
type receiptKey struct {
	envID, keyID, credID, keyVersion string
	scope                            Scope
	minute                           int64
}

// receiptBuffer holds the counts not yet written, and the API keys whose
// last use is to be recorded.
type receiptBuffer struct {
	off atomic.Bool
	max int

	mu      sync.Mutex
	pending map[receiptKey]*Receipt
	touched map[string]time.Time
	// sessions are the sessions whose last use is to be recorded.
	sessions map[string]time.Time
	dropped  atomic.Int64
}

func newReceiptBuffer(max int) *receiptBuffer {
	return &receiptBuffer{max: max, pending: map[receiptKey]*Receipt{}, touched: map[string]time.Time{}, sessions: map[string]time.Time{}}
}

// add counts one resolution by p answered from e at now.
func (b *receiptBuffer) add(p *Principal, e *routeEntry, now time.Time) {
	if b.off.Load() {
		return
	}
	k := receiptKey{envID: e.conn.EnvironmentID, keyID: p.KeyID, credID: e.conn.CredentialID, keyVersion: e.keyVersion, scope: e.conn.Scope, minute: now.Unix() / 60}
	b.mu.Lock()
	defer b.mu.Unlock()
	if r, ok := b.pending[k]; ok {
		r.Count++
		if now.After(r.LastAt) {
			r.LastAt = now
		}
		return
	}
	if len(b.pending) >= b.max {
		b.dropped.Add(1)
		return
	}
	b.pending[k] = &Receipt{
		OrgID: e.orgID, EnvironmentID: k.envID, KeyID: p.KeyID, UserID: p.UserID, Scope: k.scope,
		CredentialID: k.credID, KeyVersion: k.keyVersion, FirstAt: now, LastAt: now, Count: 1,
	}
}

// touch records that key was used at now, for last_used_at.
func (b *receiptBuffer) touch(keyID string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.touched[keyID] = now
}

// touchSession records that a session was used at now, for last_seen_at.
func (b *receiptBuffer) touchSession(id string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sessions[id] = now
}

// take empties the buffer and returns what it held.
func (b *receiptBuffer) take() ([]*Receipt, map[string]time.Time, map[string]time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	rs := make([]*Receipt, 0, len(b.pending))
	for _, r := range b.pending {
		rs = append(rs, r)
	}
	touched, sessions := b.touched, b.sessions
	clear(b.pending)
	b.touched, b.sessions = map[string]time.Time{}, map[string]time.Time{}
	return rs, touched, sessions
}

// putBack merges receipts that could not be written into the buffer.
func (b *receiptBuffer) putBack(rs []*Receipt) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range rs {
		k := receiptKey{envID: r.EnvironmentID, keyID: r.KeyID, credID: r.CredentialID, keyVersion: r.KeyVersion, scope: r.Scope, minute: r.FirstAt.Unix() / 60}
		if cur, ok := b.pending[k]; ok {
			cur.Count += r.Count
			if r.LastAt.After(cur.LastAt) {
				cur.LastAt = r.LastAt
			}
			if r.FirstAt.Before(cur.FirstAt) {
				cur.FirstAt = r.FirstAt
			}
			continue
		}
		if len(b.pending) >= b.max {
			b.dropped.Add(r.Count)
			continue
		}
		b.pending[k] = r
	}
}

// DroppedReceipts returns how many resolutions went unrecorded because the
// receipt buffer was full (the store could not keep up or was down).
func (s *Service) DroppedReceipts() int64 { return s.receipts.dropped.Load() }

// FlushReceipts writes the buffered receipts, key uses and session uses. A batch the
// store refuses is kept for the next flush (bounded); the failure is logged.
func (s *Service) FlushReceipts(ctx context.Context) {
	// Platform-wide background work: every organization's rows (ADR 0027).
	ctx = WithPlatformScope(ctx)
	rs, touched, sessions := s.receipts.take()
	for id, at := range touched {
		if err := s.Store.TouchAPIKey(ctx, id, at); err != nil {
			s.Logger.Warn("cannot record key use", "key", id, "err", err)
		}
	}
	for id, at := range sessions {
		if err := s.Store.TouchSession(ctx, id, at); err != nil {
			s.Logger.Warn("cannot record session use", "session", id, "err", err)
		}
	}
	if len(rs) == 0 {
		return
	}
	for _, r := range rs {
		r.ID = s.NewID("rcpt")
		r.Replica = s.LeaseOwner
	}
	if err := s.Store.RecordReceipts(ctx, rs); err != nil {
		s.Logger.Warn("cannot write router receipts; kept for the next flush", "receipts", len(rs), "err", err)
		s.receipts.putBack(rs)
	}
}

// ListReceipts lists who resolved the environment's connections with which
// credential, newest first (owner, admin, env_admin).
func (s *Service) ListReceipts(ctx context.Context, p *Principal, orgRef, envRef string, f ReceiptFilter, page Page) ([]*Receipt, string, error) {
	if err := page.Check(); err != nil {
		return nil, "", err
	}
	ctx, a, err := s.envAccess(ctx, p, orgRef, envRef, ActCredRead)
	if err != nil {
		return nil, "", err
	}
	if !StorableText(f.CredentialID) {
		return nil, "", Invalid(FieldError{Field: "credential", Message: "is not a credential id"})
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		return nil, "", Invalid(FieldError{Field: "until", Message: "must not be before since"})
	}
	f.OrgID, f.EnvironmentID = a.org.ID, a.env.ID
	return s.Store.ListReceipts(ctx, f, page)
}
