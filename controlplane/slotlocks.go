package controlplane

import (
	"sync"

	"github.com/envplane/envplane/drivers"
)

// slotLocks serializes, within this process, what a credential slot of a
// database goes through on its target: a grace's end revoking the slot's
// role, and an issue giving the slot a new secret. On PostgreSQL a slot is
// one role, so a revocation that read its credential before a rotation
// reissued the slot would otherwise lock the new credential out
// (endGrace re-reads under the lock).
type slotLocks struct {
	mu    sync.Mutex
	locks map[string]*slotLock
}

type slotLock struct {
	sync.Mutex
	users int
}

// lock takes the lock of db's scope and slot and returns its release.
func (l *slotLocks) lock(db string, scope drivers.Scope, slot drivers.Slot) (unlock func()) {
	key := db + "/" + string(scope) + "/" + string(slot)
	l.mu.Lock()
	if l.locks == nil {
		l.locks = map[string]*slotLock{}
	}
	k := l.locks[key]
	if k == nil {
		k = &slotLock{}
		l.locks[key] = k
	}
	k.users++
	l.mu.Unlock()
	k.Lock()
	return func() {
		k.Unlock()
		l.mu.Lock()
		if k.users--; k.users == 0 {
			delete(l.locks, key)
		}
		l.mu.Unlock()
	}
}
