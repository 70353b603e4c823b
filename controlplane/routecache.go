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

// entry is what every cached value carries: whose it is, when its fill
// began (the invalidation epoch) and ended, and when it expires anyway.
type entry struct {
	orgID   string
	epoch   uint64
	filled  time.Time
	expires *time.Time
}

func (e *entry) meta() *entry { return e }

// principalEntry is an authenticated API key.
type principalEntry struct {
	entry
	p *Principal
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
	entry
	conn       Connection
	dbID       string
	keyVersion string
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

// principal returns the cached principal of a token hash, or nil.
func (c *routeCache) principal(hash string, now time.Time) *principalEntry {
	return lookup(c, c.principals, hash, now)
}

// putPrincipal caches e under hash unless the cache was invalidated for
// its organization since e.epoch.
func (c *routeCache) putPrincipal(hash string, e *principalEntry) { put(c, c.principals, hash, e) }

// route returns the cached answer for k, or nil.
func (c *routeCache) route(k routeKey, now time.Time) *routeEntry {
	return lookup(c, c.routes, k, now)
}

// putRoute caches e under k unless the cache was invalidated for its
// organization since e.epoch.
func (c *routeCache) putRoute(k routeKey, e *routeEntry) { put(c, c.routes, k, e) }

// lookup returns m's entry for k if it still answers at now: not
// invalidated since its fill began, younger than the TTL, not expired.
func lookup[K comparable, V interface{ meta() *entry }](c *routeCache, m map[K]V, k K, now time.Time) V {
	var none V
	if c.max <= 0 {
		return none
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	v, ok := m[k]
	if !ok {
		return none
	}
	e := v.meta()
	if e.epoch < c.allEpoch || e.epoch < c.orgEpoch[e.orgID] || now.Sub(e.filled) >= c.ttl || (e.expires != nil && !now.Before(*e.expires)) {
		return none
	}
	return v
}

// put stores v under k in m unless its organization was invalidated since
// its fill began; past the size bound it first evicts a tenth at random.
func put[K comparable, V interface{ meta() *entry }](c *routeCache, m map[K]V, k K, v V) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := v.meta(); e.epoch < c.allEpoch || e.epoch < c.orgEpoch[e.orgID] {
		return
	}
	if len(m) >= c.max {
		evict(m, c.max/10+1)
	}
	m[k] = v
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
