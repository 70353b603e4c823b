package storetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
)

// seqs returns the seqs of cs, in order.
func seqs(cs []*controlplane.Change) []int64 {
	out := make([]int64, len(cs))
	for i, c := range cs {
		out[i] = c.Seq
	}
	return out
}

func testChanges(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	last, err := s.LastChange(ctx)
	must(t, err)
	if last != 0 {
		t.Errorf("LastChange of an empty log = %d, want 0", last)
	}
	cs, err := s.ListChanges(ctx, 0, 10)
	must(t, err)
	if cs == nil || len(cs) != 0 {
		t.Errorf("ListChanges of an empty log = %#v, want an empty list", cs)
	}

	appendChange := func(q controlplane.Queries, orgID, reason string, created time.Duration) *controlplane.Change {
		t.Helper()
		c := &controlplane.Change{OrgID: orgID, Reason: reason, CreatedAt: at(created)}
		must(t, q.AppendChange(ctx, c))
		return c
	}
	first := appendChange(s, "org_a", "credential.rotate", -2*time.Hour)
	second := appendChange(s, "org_b", "environment.suspend", -time.Hour)
	third := appendChange(s, "", "keys.rewrap", -30*time.Minute)
	if !(0 < first.Seq && first.Seq < second.Seq && second.Seq < third.Seq) {
		t.Fatalf("seqs %d, %d, %d do not increase from above 0", first.Seq, second.Seq, third.Seq)
	}
	if !first.CreatedAt.Equal(us(at(-2*time.Hour))) || first.CreatedAt.Location() != time.UTC {
		t.Errorf("AppendChange left CreatedAt %v, want it truncated to microseconds in UTC", first.CreatedAt)
	}

	cs, err = s.ListChanges(ctx, 0, 10)
	must(t, err)
	same(t, "every change", []*controlplane.Change{first, second, third}, cs)
	cs, err = s.ListChanges(ctx, first.Seq, 10)
	must(t, err)
	same(t, "changes after the first", []int64{second.Seq, third.Seq}, seqs(cs))
	cs, err = s.ListChanges(ctx, 0, 2)
	must(t, err)
	same(t, "the first two changes", []int64{first.Seq, second.Seq}, seqs(cs))
	cs, err = s.ListChanges(ctx, 0, 0)
	must(t, err)
	same(t, "changes with limit 0, the default", []int64{first.Seq, second.Seq, third.Seq}, seqs(cs))
	cs, err = s.ListChanges(ctx, third.Seq, 10)
	must(t, err)
	if len(cs) != 0 {
		t.Errorf("ListChanges after the last = %d changes, want none", len(cs))
	}
	last, err = s.LastChange(ctx)
	must(t, err)
	if last != third.Seq {
		t.Errorf("LastChange = %d, want %d", last, third.Seq)
	}

	// A rolled-back change leaves nothing behind, and the log goes on above it.
	boom := errors.New("boom")
	err = s.WithTx(ctx, func(q controlplane.Queries) error {
		appendChange(q, "org_a", "rolled back", 0)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("WithTx = %v, want fn's error", err)
	}
	cs, err = s.ListChanges(ctx, third.Seq, 10)
	must(t, err)
	if len(cs) != 0 {
		t.Errorf("a rolled-back transaction left changes %v", seqs(cs))
	}

	// Pruning keeps the newest change, so the last seq never goes back.
	n, err := s.DeleteChangesBefore(ctx, at(-45*time.Minute))
	must(t, err)
	if n != 2 {
		t.Errorf("DeleteChangesBefore removed %d changes, want the 2 older ones", n)
	}
	n, err = s.DeleteChangesBefore(ctx, at(time.Hour))
	must(t, err)
	if n != 0 {
		t.Errorf("DeleteChangesBefore removed %d changes, want none: the newest is kept", n)
	}
	last, err = s.LastChange(ctx)
	must(t, err)
	if last != third.Seq {
		t.Errorf("LastChange after pruning = %d, want %d", last, third.Seq)
	}
	fourth := appendChange(s, "org_a", "role.change", 0)
	if fourth.Seq <= third.Seq {
		t.Errorf("a change after pruning has seq %d, not above %d", fourth.Seq, third.Seq)
	}
	n, err = s.DeleteChangesBefore(ctx, at(time.Hour))
	must(t, err)
	if n != 1 {
		t.Errorf("DeleteChangesBefore removed %d changes, want the one older than the newest", n)
	}
	cs, err = s.ListChanges(ctx, 0, 10)
	must(t, err)
	same(t, "changes left", []int64{fourth.Seq}, seqs(cs))
}

// testChangesConcurrentAppenders races appenders, each in its own
// transaction that stays open a little after the append, against a reader
// that follows the log as a replica does (ListChanges after the last seq
// seen). A seq that commits after a higher one was read would be lost to
// that reader forever; the store must make that impossible.
func testChangesConcurrentAppenders(t *testing.T, s controlplane.Store) {
	const appenders, rounds = 20, 3
	ctx := t.Context()
	for round := range rounds {
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make(chan error, appenders)
		for i := range appenders {
			wg.Go(func() {
				<-start
				err := s.WithTx(ctx, func(q controlplane.Queries) error {
					if err := q.AppendChange(ctx, &controlplane.Change{OrgID: fmt.Sprintf("org_%d", i), CreatedAt: at(0)}); err != nil {
						return err
					}
					time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond)
					return nil
				})
				if err != nil {
					errs <- err
				}
			})
		}
		done := make(chan struct{})
		go func() {
			wg.Wait()
			close(done)
		}()

		last, err := s.LastChange(ctx)
		must(t, err)
		var seen []int64
		follow := func() {
			cs, err := s.ListChanges(ctx, last, controlplane.MaxPageLimit)
			must(t, err)
			for _, c := range cs {
				if c.Seq <= last {
					t.Fatalf("ListChanges after %d returned seq %d", last, c.Seq)
				}
				seen = append(seen, c.Seq)
				last = c.Seq
			}
		}
		close(start)
		for following := true; following; {
			select {
			case <-done:
				following = false
			default:
				follow()
				time.Sleep(200 * time.Microsecond)
			}
		}
		follow()
		close(errs)
		for err := range errs {
			t.Fatalf("appender: %v", err)
		}

		all, err := s.ListChanges(ctx, 0, controlplane.MaxPageLimit)
		must(t, err)
		committed := seqs(all)
		if len(committed) != (round+1)*appenders {
			t.Fatalf("round %d: the log holds %d changes, want %d", round, len(committed), (round+1)*appenders)
		}
		committed = committed[round*appenders:]
		if !slices.Equal(seen, committed) {
			t.Fatalf("round %d: a reader following the log saw %v, but %v committed: a seq committed after a higher one was read",
				round, seen, committed)
		}
	}
}
