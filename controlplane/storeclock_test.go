package controlplane_test

import (
	"context"
	"errors"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
)

// TestStoreClockFollowsTheStore: a replica whose own clock runs 30 s
// ahead reads the store's time after a Sync, keeps following it as its
// own clock moves, keeps the sample with the shortest round trip, and
// keeps its estimate when the store cannot be read. Every clock here is
// the test's, without monotonic readings, so the arithmetic is exact.
func TestStoreClockFollowsTheStore(t *testing.T) {
	store := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	local := store.Add(30 * time.Second)
	// Each read of the store takes 10 ms of local time, the store reading
	// its clock a quarter of the way (the midpoint guess is 2.5 ms off),
	// except the second, which takes 2 ms read halfway: that one is kept,
	// and the estimate is exact.
	reads, trips := 0, []time.Duration{10 * time.Millisecond, 2 * time.Millisecond, 10 * time.Millisecond}
	var fail error
	read := func(context.Context) (time.Time, error) {
		if fail != nil {
			return time.Time{}, fail
		}
		trip := trips[reads%len(trips)]
		reads++
		before := trip / 4
		if trip < 5*time.Millisecond {
			before = trip / 2
		}
		local = local.Add(before)
		at := local.Add(-30 * time.Second)
		local = local.Add(trip - before)
		return at, nil
	}
	clk := cp.NewStoreClock(read, func() time.Time { return local })
	if got := clk.Now(); !got.Equal(local) {
		t.Fatalf("before any sync Now is %v, want the local clock %v", got, local)
	}
	if err := clk.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if reads != 3 {
		t.Fatalf("a sync read the store %d times, want 3", reads)
	}
	if want := local.Add(-30 * time.Second); !clk.Now().Equal(want) {
		t.Fatalf("after a sync Now is %v, want the store's %v (the local clock less 30s)", clk.Now(), want)
	}
	local = local.Add(7 * time.Second)
	if want := local.Add(-30 * time.Second); !clk.Now().Equal(want) {
		t.Fatalf("7s later Now is %v, want %v", clk.Now(), want)
	}

	fail = errors.New("connection refused")
	if err := clk.Sync(context.Background()); !errors.Is(err, fail) {
		t.Fatalf("sync with the store down: %v, want its error", err)
	}
	local = local.Add(time.Second)
	if want := local.Add(-30 * time.Second); !clk.Now().Equal(want) {
		t.Fatalf("with the store down Now is %v, want the last estimate carried on, %v", clk.Now(), want)
	}
}
