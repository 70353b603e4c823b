package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
)

func testOperations(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a, b := newOrg(t, s, "a"), newOrg(t, s, "b")
	e, eB := newEnv(t, s, a, "dev"), newEnv(t, s, b, "dev")

	op := newOperation(t, s, e, func(op *controlplane.Operation) {
		op.Kind, op.Params = controlplane.OpRotate, []byte(`{"scopes":["readonly"]}`)
		op.IdempotencyKey, op.RequestHash = "idem-1", "sha256:abc"
	})
	got, err := s.GetOperation(ctx, a.ID, op.ID)
	must(t, err)
	same(t, "operation", op, got)
	_, err = s.GetOperation(ctx, b.ID, op.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
	_, err = s.GetOperation(ctx, a.ID, newID("op_"))
	wantCode(t, err, controlplane.ENOTFOUND)
	org, err := s.OrgOf(ctx, controlplane.KindOperation, op.ID)
	must(t, err)
	if org != a.ID {
		t.Errorf("OrgOf(operation) = %q, want %q", org, a.ID)
	}
	_, err = s.OrgOf(ctx, controlplane.KindOperation, newID("op_"))
	wantCode(t, err, controlplane.ENOTFOUND)

	wantCode(t, s.CreateOperation(ctx, &controlplane.Operation{ID: newID("op_"), OrgID: a.ID, EnvironmentID: eB.ID,
		Kind: controlplane.OpProvision, Status: controlplane.OpPending, CreatedAt: at(0), UpdatedAt: at(0)}), controlplane.ENOTFOUND)

	running, err := s.GetRunningOperation(ctx, e.ID)
	must(t, err)
	same(t, "running operation", op, running)
	_, err = s.GetRunningOperation(ctx, eB.ID)
	wantCode(t, err, controlplane.ENOTFOUND)

	// Update saves status, step, attempts, error, response, not_before,
	// lease and updated_at, nothing else.
	op.Status, op.Step, op.Attempts, op.Error = controlplane.OpRunning, "create_database", 2, "target busy"
	op.Response, op.NotBefore, op.UpdatedAt = []byte(`{"ok":false}`), ptr(at(time.Minute)), at(time.Second)
	op.LeaseOwner, op.LeaseExpiresAt = "worker-1", ptr(at(2*time.Minute))
	params := op.Params
	op.Params = []byte(`{"changed":true}`)
	must(t, s.UpdateOperation(ctx, op))
	got, err = s.GetOperation(ctx, a.ID, op.ID)
	must(t, err)
	op.Params = params
	same(t, "updated operation", op, got)

	wrongOrg := *op
	wrongOrg.OrgID = b.ID
	wantCode(t, s.UpdateOperation(ctx, &wrongOrg), controlplane.ENOTFOUND)
	absent := *op
	absent.ID = newID("op_")
	wantCode(t, s.UpdateOperation(ctx, &absent), controlplane.ENOTFOUND)

	// worker-1 holds the lease: nobody else may write, not even without an owner.
	thief := *op
	thief.LeaseOwner, thief.Status = "worker-2", controlplane.OpFailed
	wantCode(t, s.UpdateOperation(ctx, &thief), controlplane.ECONFLICT)
	anonymous := *op
	anonymous.LeaseOwner, anonymous.LeaseExpiresAt, anonymous.Status = "", nil, controlplane.OpFailed
	wantCode(t, s.UpdateOperation(ctx, &anonymous), controlplane.ECONFLICT)
	got, err = s.GetOperation(ctx, a.ID, op.ID)
	must(t, err)
	if got.Status != controlplane.OpRunning || got.LeaseOwner != "worker-1" {
		t.Errorf("a refused update changed the operation: status %s, lease owner %q", got.Status, got.LeaseOwner)
	}

	// The holder finishes it; a finished operation is not running.
	op.Status, op.Step, op.Error, op.LeaseExpiresAt = controlplane.OpSucceeded, "activate", "", ptr(at(3*time.Second))
	must(t, s.UpdateOperation(ctx, op))
	_, err = s.GetRunningOperation(ctx, e.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
	got, err = s.GetOperation(ctx, a.ID, op.ID)
	must(t, err)
	same(t, "finished operation", op, got)
}

func testClaimOperations(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	org := newOrg(t, s, "a")
	// An environment has at most one unfinished operation, so each gets its own.
	e := newEnv(t, s, org, "dev")
	pending := newOperation(t, s, e, nil)
	running := newOperation(t, s, newEnv(t, s, org, "dev2"), func(op *controlplane.Operation) { op.Status = controlplane.OpRunning })
	later := newOperation(t, s, newEnv(t, s, org, "dev3"), func(op *controlplane.Operation) { op.NotBefore = ptr(at(time.Hour)) })
	newOperation(t, s, e, func(op *controlplane.Operation) { op.Status = controlplane.OpSucceeded })
	newOperation(t, s, e, func(op *controlplane.Operation) { op.Status = controlplane.OpFailed })
	held := newOperation(t, s, newEnv(t, s, org, "dev4"), func(op *controlplane.Operation) {
		op.Status, op.LeaseOwner, op.LeaseExpiresAt = controlplane.OpRunning, "other", ptr(at(10*time.Minute))
	})
	second := &controlplane.Operation{ID: newID("op_"), OrgID: org.ID, EnvironmentID: e.ID, Kind: controlplane.OpRotate,
		Status: controlplane.OpPending, Step: "rotate", CreatedAt: at(0), UpdatedAt: at(0)}
	wantCode(t, s.CreateOperation(ctx, second), controlplane.ECONFLICT)

	claimed, err := s.ClaimOperations(ctx, "w1", at(0), at(5*time.Minute), 10)
	must(t, err)
	same(t, "claimed at start", []string{pending.ID, running.ID}, ids(claimed, opID))
	for _, op := range claimed {
		if op.LeaseOwner != "w1" || op.LeaseExpiresAt == nil || !op.LeaseExpiresAt.Equal(us(at(5*time.Minute))) {
			t.Errorf("claimed %s has lease %q until %v, want w1 until %v", op.ID, op.LeaseOwner, op.LeaseExpiresAt, at(5*time.Minute))
		}
	}
	stored, err := s.GetOperation(ctx, e.OrgID, pending.ID)
	must(t, err)
	same(t, "claimed operation as stored", claimed[0], stored)

	claimed, err = s.ClaimOperations(ctx, "w2", at(time.Minute), at(6*time.Minute), 10)
	must(t, err)
	same(t, "claimed while leases hold", []string{}, ids(claimed, opID))

	// w1's leases expired at 5m; other's holds until 10m; later waits for 1h.
	claimed, err = s.ClaimOperations(ctx, "w2", at(5*time.Minute), at(15*time.Minute), 10)
	must(t, err)
	same(t, "claimed after w1's leases expired", []string{pending.ID, running.ID}, ids(claimed, opID))

	// A holder renews its lease; a former holder cannot.
	must(t, s.RenewLease(ctx, e.OrgID, pending.ID, "w2", at(20*time.Minute)))
	wantCode(t, s.RenewLease(ctx, e.OrgID, pending.ID, "w1", at(20*time.Minute)), controlplane.ECONFLICT)
	wantCode(t, s.RenewLease(ctx, e.OrgID, newID("op_"), "w2", at(20*time.Minute)), controlplane.ENOTFOUND)
	renewed, err := s.GetOperation(ctx, e.OrgID, pending.ID)
	must(t, err)
	if renewed.LeaseExpiresAt == nil || !renewed.LeaseExpiresAt.Equal(us(at(20*time.Minute))) || renewed.Step != pending.Step {
		t.Errorf("after RenewLease: lease until %v, step %q", renewed.LeaseExpiresAt, renewed.Step)
	}

	// w1 lost the lease: its update is refused; w2's goes through.
	lost := *pending
	lost.LeaseOwner, lost.LeaseExpiresAt, lost.Status = "w1", ptr(at(5*time.Minute)), controlplane.OpRunning
	wantCode(t, s.UpdateOperation(ctx, &lost), controlplane.ECONFLICT)
	mine := *claimed[0]
	mine.Status, mine.Attempts, mine.UpdatedAt = controlplane.OpRunning, 1, at(6*time.Minute)
	must(t, s.UpdateOperation(ctx, &mine))

	claimed, err = s.ClaimOperations(ctx, "w3", at(2*time.Hour), at(3*time.Hour), 10)
	must(t, err)
	same(t, "claimed once everything expired", []string{pending.ID, running.ID, later.ID, held.ID}, ids(claimed, opID))

	claimed, err = s.ClaimOperations(ctx, "w4", at(4*time.Hour), at(5*time.Hour), 2)
	must(t, err)
	same(t, "claimed with limit 2, oldest first", []string{pending.ID, running.ID}, ids(claimed, opID))
	claimed, err = s.ClaimOperations(ctx, "w5", at(6*time.Hour), at(7*time.Hour), 0)
	must(t, err)
	same(t, "claimed with limit 0, the default", []string{pending.ID, running.ID, later.ID, held.ID}, ids(claimed, opID))
}

// testClaimOperationsConcurrently races claimers over many operations and
// checks that each operation went to exactly one of them.
func testClaimOperationsConcurrently(t *testing.T, s controlplane.Store) {
	const operations, claimers = 60, 4
	ctx := t.Context()
	org := newOrg(t, s, "a")
	for i := range operations {
		newOperation(t, s, newEnv(t, s, org, fmt.Sprintf("dev%d", i)), nil)
	}

	var mu sync.Mutex
	owners := map[string][]string{} // operation id → every claimer that got it
	errs := make(chan error, claimers)
	var wg sync.WaitGroup
	for i := range claimers {
		owner := fmt.Sprintf("worker-%d", i)
		wg.Go(func() {
			for {
				ops, err := s.ClaimOperations(ctx, owner, at(0), at(time.Hour), 3)
				if err != nil {
					errs <- fmt.Errorf("%s: %w", owner, err)
					return
				}
				if len(ops) == 0 {
					return
				}
				mu.Lock()
				for _, op := range ops {
					owners[op.ID] = append(owners[op.ID], owner)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("ClaimOperations: %v", err)
	}

	if len(owners) != operations {
		t.Errorf("%d operations were claimed, want all %d", len(owners), operations)
	}
	for id, got := range owners {
		if len(got) != 1 {
			t.Errorf("operation %s was claimed by %v, want exactly one claimer", id, got)
			continue
		}
		op, err := s.GetOperation(ctx, org.ID, id)
		must(t, err)
		if op.LeaseOwner != got[0] {
			t.Errorf("operation %s is leased to %q, but %q was told it claimed it", id, op.LeaseOwner, got[0])
		}
	}
}
