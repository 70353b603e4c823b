package sqlstore

import (
	"context"
	"sync"
)

// keyLocks are named locks within this process: the store's Lock where one
// process has the store to itself (SQLite). A stored lock would be no
// stronger: nobody else writes the file.
type keyLocks struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	// held is a one-slot queue rather than a mutex, so a waiter can give
	// up when its context ends.
	held  chan struct{}
	users int
}

// Lock takes the lock named key, waiting as long as ctx allows, and
// returns its release. Locks of other names do not wait for it.
func (s *Store) Lock(ctx context.Context, key string) (unlock func(), err error) {
	l := &s.locks
	l.mu.Lock()
	if l.locks == nil {
		l.locks = map[string]*keyLock{}
	}
	k := l.locks[key]
	if k == nil {
		k = &keyLock{held: make(chan struct{}, 1)}
		l.locks[key] = k
	}
	k.users++
	l.mu.Unlock()
	leave := func() {
		l.mu.Lock()
		if k.users--; k.users == 0 {
			delete(l.locks, key)
		}
		l.mu.Unlock()
	}
	select {
	case k.held <- struct{}{}:
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	}
	return func() {
		<-k.held
		leave()
	}, nil
}
