package controlplane

import (
	"sync"
	"sync/atomic"
	"time"
)

// routeCache holds, per replica, the principals that API tokens resolved to
// and the router's answers (unsealed descriptors: secrets stay
// drivers.Secret), so a repeat resolve reads neither the store nor the
// keyring. It is bounded (random eviction past its size) and every entry
// is checked on read against the invalidations of its organization:
// invalidate marks an organization changed, and entries filled before the
// mark no longer answer. An entry records the epoch at which its fill
// started, so a fill racing an invalidation is never trusted. Entries also
// age out after TTL, a bound in case a change went unrecorded.
type routeCache struct {
	mu         sync.RWMutex
	principals map[string]*principalEntry
	routes     map[routeKey]*routeEntry
	// epoch counts invalidations; orgEpoch is the epoch of the last
	// invalidation of each organization, allEpoch of everything.
	epoch    uint64
	orgEpoch map[string]uint64
	allEpoch uint64

	max int
	ttl time.Duration
}

// principalEntry is an authenticated API key.
type principalEntry struct {
	p       *Principal
	orgID   string
	expires *time.Time
	epoch   uint64
	filled  time.Time
	// touched is the UnixNano service time last_used_at was last recorded.
	touched atomic.Int64
}

// routeKey names one resolve as the client asked it: the key, the
// organization and environment as given (slug or id; org empty for the
// by-id route) and the scope.
type routeKey struct {
	keyID, org, env string
	scope           Scope
}

// routeEntry is one resolved answer, without its refresh_after.
type routeEntry struct {
	conn       Connection
	orgID      string
	dbID       string
	keyVersion string
	expires    *time.Time
	epoch      uint64
	filled     time.Time
	// promised is the UnixNano of the latest refresh_after recorded in the
	// store for the credential (0 for none).
	promised atomic.Int64
}

func newRouteCache(max int, ttl time.Duration) *routeCache {
	return &routeCache{
		principals: map[string]*principalEntry{},
		routes:     map[routeKey]*routeEntry{},
		orgEpoch:   map[string]uint64{},
		max:        max,
		ttl:        ttl,
	}
}

// begin returns the epoch a fill starts at: take it before reading the store.
func (c *routeCache) begin() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.epoch
}

// valid reports whether an entry of orgID filled at epoch, at filled, still
// answers at now. The caller holds mu.
func (c *routeCache) valid(orgID string, epoch uint64, filled, now time.Time) bool {
	return epoch >= c.allEpoch && epoch >= c.orgEpoch[orgID] && now.Sub(filled) < c.ttl
}

// principal returns the cached principal of a token hash, or nil.
func (c *routeCache) principal(hash string, now time.Time) *principalEntry {
	if c.max <= 0 {
		return nil
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	e := c.principals[hash]
	if e == nil || !c.valid(e.orgID, e.epoch, e.filled, now) || (e.expires != nil && !now.Before(*e.expires)) {
		return nil
	}
	return e
}

// putPrincipal caches e under hash unless the cache was invalidated for
// its organization since e.epoch.
func (c *routeCache) putPrincipal(hash string, e *principalEntry) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.epoch < c.allEpoch || e.epoch < c.orgEpoch[e.orgID] {
		return
	}
	if len(c.principals) >= c.max {
		evict(c.principals, c.max/10+1)
	}
	c.principals[hash] = e
}

// route returns the cached answer for k, or nil.
func (c *routeCache) route(k routeKey, now time.Time) *routeEntry {
	if c.max <= 0 {
		return nil
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	e := c.routes[k]
	if e == nil || !c.valid(e.orgID, e.epoch, e.filled, now) || (e.expires != nil && !now.Before(*e.expires)) {
		return nil
	}
	return e
}

// putRoute caches e under k unless the cache was invalidated for its
// organization since e.epoch.
func (c *routeCache) putRoute(k routeKey, e *routeEntry) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.epoch < c.allEpoch || e.epoch < c.orgEpoch[e.orgID] {
		return
	}
	if len(c.routes) >= c.max {
		evict(c.routes, c.max/10+1)
	}
	c.routes[k] = e
}

// drop forgets the answer for k if it is still e.
func (c *routeCache) drop(k routeKey, e *routeEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.routes[k] == e {
		delete(c.routes, k)
	}
}

// invalidate makes every entry of orgID (of every organization when orgID
// is empty) filled before now stop answering.
func (c *routeCache) invalidate(orgID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	if orgID == "" {
		c.allEpoch = c.epoch
		// Every entry is invalid now: start afresh, and forget the
		// per-organization marks, which allEpoch covers.
		clear(c.principals)
		clear(c.routes)
		clear(c.orgEpoch)
		return
	}
	c.orgEpoch[orgID] = c.epoch
}

// evict deletes n arbitrary entries of m (map order is random in Go).
func evict[K comparable, V any](m map[K]V, n int) {
	for k := range m {
		if n <= 0 {
			return
		}
		delete(m, k)
		n--
	}
}
