package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
)

// testLock: a named lock excludes a second holder of the name (who gives
// up when its context ends, and takes it once it is released), never one
// of another name, and leaves nothing behind.
func testLock(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	unlock, err := s.Lock(ctx, "slot/db_1/readwrite/a")
	if err != nil {
		t.Fatalf("lock: %v", err)
	}
	other, err := s.Lock(ctx, "slot/db_1/readwrite/b")
	if err != nil {
		t.Fatalf("a lock of another name: %v", err)
	}
	other()

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if again, err := s.Lock(short, "slot/db_1/readwrite/a"); !errors.Is(err, context.DeadlineExceeded) {
		if err == nil {
			again()
		}
		t.Fatalf("a second holder of a held lock: %v, want to wait until its context ends", err)
	}

	got := make(chan func(), 1)
	errs := make(chan error, 1)
	go func() {
		u, err := s.Lock(ctx, "slot/db_1/readwrite/a")
		if err != nil {
			errs <- err
			return
		}
		got <- u
	}()
	unlock()
	select {
	case u := <-got:
		u()
	case err := <-errs:
		t.Fatalf("the waiter: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the waiter did not get the lock once it was released")
	}
	u, err := s.Lock(ctx, "slot/db_1/readwrite/a")
	if err != nil {
		t.Fatalf("the lock after every holder left: %v", err)
	}
	u()
}
