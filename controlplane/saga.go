package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/envplane/envplane/dataplane"
	"github.com/envplane/envplane/drivers"
)

// Saga steps, recorded on the operation as they are reached. A resumed
// operation starts again at its recorded step; every step is idempotent.
const (
	stepCreateDatabase   = "create_database"
	stepIssueCredentials = "issue_credentials"
	stepInitSchema       = "initialize_schema"
	stepActivate         = "activate"
	stepRevokeAll        = "revoke_credentials"
	stepDropDatabase     = "drop_database"
	stepTombstone        = "tombstone"
	stepRotate           = "rotate"
	stepCompensate       = "compensate"
	stepCleanup          = "clean_up"
	stepDone             = "done"
)

// runner tracks the operations this process is executing, so requests can
// wait for them and shutdown can stop them.
type runner struct {
	mu     sync.Mutex
	done   map[string]chan struct{}
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

// start executes op in the background (detached from the request that made
// it) and returns a channel closed when it finishes here.
func (s *Service) start(op *Operation) <-chan struct{} {
	s.ops.mu.Lock()
	defer s.ops.mu.Unlock()
	if s.ops.done == nil {
		s.ops.done = map[string]chan struct{}{}
		// Operations and rollouts are platform-wide background work (ADR 0027).
		s.ops.ctx, s.ops.cancel = context.WithCancel(WithPlatformScope(context.Background()))
	}
	ctx := s.ops.ctx
	if ch, ok := s.ops.done[op.ID]; ok {
		return ch
	}
	ch := make(chan struct{})
	s.ops.done[op.ID] = ch
	s.ops.wg.Add(1)
	go func() {
		defer s.ops.wg.Done()
		defer func() {
			s.ops.mu.Lock()
			delete(s.ops.done, op.ID)
			s.ops.mu.Unlock()
			close(ch)
		}()
		if err := s.execute(ctx, op); err != nil {
			s.Logger.Error("operation stopped", "operation", op.ID, "kind", op.Kind, "step", op.Step, "err", err)
		}
	}()
	return ch
}

// Wait blocks until the operations started by this process finish.
func (s *Service) Wait() { s.ops.wg.Wait() }

// Shutdown stops the operations this process is running between steps and
// waits for them. Their leases stay: any replica's reconciler resumes them
// once the leases expire.
func (s *Service) Shutdown() {
	s.ops.mu.Lock()
	if s.ops.cancel != nil {
		s.ops.cancel()
	}
	s.ops.mu.Unlock()
	s.ops.wg.Wait()
}

// newOperation returns an operation leased to this replica, ready to insert.
func (s *Service) newOperation(orgID, envID string, kind OperationKind, step string, params []byte) *Operation {
	now := s.Now()
	until := now.Add(s.Lease)
	return &Operation{
		ID:             s.NewID("op"),
		OrgID:          orgID,
		EnvironmentID:  envID,
		Kind:           kind,
		Status:         OpRunning,
		Step:           step,
		Params:         params,
		LeaseOwner:     s.LeaseOwner,
		LeaseExpiresAt: &until,
		CreatedAt:      now,
		UpdatedAt:      now,
	}
}

// heartbeat renews op's lease every LeaseRenewal while a step runs,
// so a step longer than the lease (a large clone, a slow target) is not
// claimed by another replica meanwhile. If the lease was lost anyway, the
// returned context is cancelled and the step stops. stop ends the heartbeat.
func (s *Service) heartbeat(ctx context.Context, op *Operation) (stepCtx context.Context, stop func()) {
	orgID, id, owner := op.OrgID, op.ID, op.LeaseOwner
	return s.renewWhile(ctx, "operation", id, func(ctx context.Context, until time.Time) error {
		return s.Store.RenewLease(ctx, orgID, id, owner, until)
	})
}

// renewWhile calls renew every LeaseRenewal with a lease ending Lease from
// now, until stop, for the lease of what (a kind, "operation" or
// "rollout") id. When renew answers ECONFLICT the lease was lost: the
// returned context is cancelled, so the work under it stops. Other errors
// are logged and the next tick tries again.
func (s *Service) renewWhile(ctx context.Context, what, id string, renew func(ctx context.Context, until time.Time) error) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(max(s.LeaseRenewal, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			err := renew(ctx, s.Now().Add(s.Lease))
			if IsCode(err, ECONFLICT) {
				s.Logger.Warn(what+" lease lost; stopping its work", what, id)
				cancel()
				return
			}
			if err != nil && ctx.Err() == nil {
				s.Logger.Warn("cannot renew "+what+" lease", what, id, "err", err)
			}
		}
	}()
	return ctx, func() {
		cancel()
		<-done
	}
}

// advance records that op's step is done and op moves to next, in one
// transaction with write (the step's own rows), renewing the lease. If the
// transaction fails, op is left as it was, so the step runs again.
func (s *Service) advance(ctx context.Context, op *Operation, next string, write func(q Queries) error) error {
	s.crashPoint(op, "after")
	prev := *op
	err := s.tx(ctx, func(q Queries) error {
		if write != nil {
			if err := write(q); err != nil {
				return err
			}
		}
		op.Step, op.Attempts, op.Error = next, 0, ""
		return s.save(ctx, q, op)
	})
	if err != nil {
		*op = prev
	}
	return err
}

// complete records op succeeded, in one transaction with write (the last
// step's rows and audit event). If the transaction fails, op is left as it
// was, so the step runs again.
func (s *Service) complete(ctx context.Context, op *Operation, write func(q Queries) error) error {
	s.crashPoint(op, "after")
	prev := *op
	err := s.tx(ctx, func(q Queries) error {
		if err := write(q); err != nil {
			return err
		}
		op.Step, op.Status, op.Error = stepDone, OpSucceeded, ""
		return s.save(ctx, q, op)
	})
	if err != nil {
		*op = prev
	}
	return err
}

// crashPoint hands the point op has reached to CrashPoint, when set.
func (s *Service) crashPoint(op *Operation, phase string) {
	if s.CrashPoint != nil {
		s.CrashPoint(string(op.Kind) + "." + op.Step + "." + phase)
	}
}

// save records op's progress and renews its lease. It fails with ECONFLICT
// when another replica took the operation over.
func (s *Service) save(ctx context.Context, q Queries, op *Operation) error {
	now := s.Now()
	until := now.Add(s.Lease)
	op.UpdatedAt = now
	if !op.Status.Done() {
		op.LeaseExpiresAt = &until
	}
	return q.UpdateOperation(ctx, op)
}

// execute runs op from its recorded step to the end, retrying a failing step
// with backoff and compensating once attempts run out or, for a
// provisioning, once ProvisionTimeout has passed since it was asked for.
// Compensation that keeps failing (the target is down) is left to the
// reconciler, which tries again after RetryBackoff.
func (s *Service) execute(ctx context.Context, op *Operation) error {
	for !op.Status.Done() {
		if !compensating(op) && s.overdue(op) {
			if op.Error == "" {
				op.Error = fmt.Sprintf("%s: not done within %s", op.Step, s.ProvisionTimeout)
			}
			op.Step, op.Attempts = stepCompensate, 0
			if err := s.save(ctx, s.Store, op); err != nil {
				return err
			}
			continue
		}
		step, start := op.Step, time.Now()
		stepCtx, stop := s.stepContext(ctx, op)
		var err error
		if compensating(op) {
			err = s.compensate(stepCtx, op)
		} else {
			s.crashPoint(op, "before")
			err = s.step(stepCtx, op)
		}
		stop()
		s.Logger.Debug("operation step", "operation", op.ID, "kind", op.Kind, "step", step, "duration_ms", float64(time.Since(start).Microseconds())/1000, "ok", err == nil)
		if err == nil {
			continue
		}
		var known *Error
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil && !errors.As(err, &known) {
			// The step's own bound, not a shutdown, and no dependency that
			// says which it was (the keyring names itself): the target did
			// not answer in time.
			err = errors.Join(drivers.ErrUnavailable, err)
		}
		s.noteOperationTarget(ctx, op, err)
		op.Attempts++
		op.Error = publicError(op.Step, err)
		s.Logger.Warn("operation step failed", "operation", op.ID, "kind", op.Kind, "step", op.Step, "attempt", op.Attempts, "err", err)
		giveUp := false
		if op.Attempts >= s.Attempts {
			if compensating(op) {
				giveUp = true
			} else {
				op.Step = stepCompensate
				op.Attempts = 0
			}
		}
		if err := s.save(ctx, s.Store, op); err != nil {
			return err
		}
		if giveUp {
			// Keep the operation leased until its next try is due: the
			// reconciler (here or on another replica) claims it then.
			retry := s.Now().Add(s.RetryBackoff(op.Attempts - s.Attempts + 1))
			if err := s.Store.RenewLease(ctx, op.OrgID, op.ID, op.LeaseOwner, retry); err != nil {
				return err
			}
			return fmt.Errorf("compensation keeps failing; left for the reconciler until %s: %w", retry.Format(time.RFC3339), err)
		}
		if err := s.Sleep(ctx, s.Backoff(op.Attempts)); err != nil {
			return err
		}
	}
	if s.Observer != nil {
		s.Observer.OperationFinished(op.Kind, op.Status, s.Now().Sub(op.CreatedAt))
	}
	return nil
}

// stepContext is the context of one attempt at op's current step: its lease
// renewed meanwhile (heartbeat), and bounded by StepTimeout, and for a
// provisioning by what is left of ProvisionTimeout, so a target that
// accepts connections and never answers cannot hold an operation. A
// clone's and a reset's steps are bounded by their lease alone: copying a
// large database, and migrating the copy, may take long; so are a
// rollout's migrations.
func (s *Service) stepContext(ctx context.Context, op *Operation) (context.Context, func()) {
	stepCtx, stop := s.heartbeat(ctx, op)
	if (op.Kind == OpClone || op.Kind == OpReset || op.Kind == OpMigrate || op.Kind == OpRestore || op.Kind == OpBackup) && !compensating(op) {
		return stepCtx, stop
	}
	limit := s.StepTimeout
	if op.Kind == OpProvision && !compensating(op) {
		limit = min(limit, op.CreatedAt.Add(s.ProvisionTimeout).Sub(s.Now()))
	}
	stepCtx, cancel := context.WithTimeout(stepCtx, limit)
	return stepCtx, func() {
		cancel()
		stop()
	}
}

// compensating reports whether op is ending failed: recording the failure
// (compensate), then removing a provisioning's leftovers (clean_up).
func compensating(op *Operation) bool { return op.Step == stepCompensate || op.Step == stepCleanup }

// overdue reports whether op is a provisioning asked for longer than
// ProvisionTimeout ago.
func (s *Service) overdue(op *Operation) bool {
	return op.Kind == OpProvision && s.Now().Sub(op.CreatedAt) >= s.ProvisionTimeout
}

// noteOperationTarget tells the target's health what a step of op met.
func (s *Service) noteOperationTarget(ctx context.Context, op *Operation, err error) {
	if !errors.Is(err, drivers.ErrUnavailable) {
		return
	}
	if _, db, lookupErr := s.operationEnvironment(ctx, op); lookupErr == nil {
		s.noteTarget(ctx, db.Target, err)
	}
}

// publicError turns a step's failure into the text stored on the operation
// and the environment: the step and the error's class, never a driver's
// internal detail.
func publicError(step string, err error) string { return step + ": " + errorClass(err) }

// errorClass names what kind of failure err is, in words safe to show.
func errorClass(err error) string {
	switch {
	case errors.Is(err, drivers.ErrUnavailable):
		return "target unavailable"
	case errors.Is(err, drivers.ErrExists):
		return "a database of that name exists and was not made by envplane"
	case errors.Is(err, drivers.ErrDenied):
		return "credential rejected"
	case errors.Is(err, drivers.ErrUnsupported):
		return "not supported by the target"
	}
	var e *Error
	if errors.As(err, &e) && e.Code != EINTERNAL {
		return e.Message
	}
	return "failed"
}

// step runs op's current step and advances op.Step (not yet saved).
func (s *Service) step(ctx context.Context, op *Operation) error {
	switch op.Kind {
	case OpRestore:
		if inPlace(op) {
			return s.inPlaceStep(ctx, op)
		}
		return s.provisionStep(ctx, op)
	case OpProvision, OpClone:
		return s.provisionStep(ctx, op)
	case OpBackup:
		return s.backupStep(ctx, op)
	case OpDeprovision:
		return s.deprovisionStep(ctx, op)
	case OpRotate:
		return s.rotateStep(ctx, op)
	case OpSuspend, OpResume:
		return s.suspensionStep(ctx, op)
	case OpReset:
		return s.resetStep(ctx, op)
	case OpMigrate:
		return s.migrateStep(ctx, op)
	}
	return Errorf(EINTERNAL, "unknown operation kind %q", op.Kind)
}

// operationEnvironment loads the operation's environment (deleted or not)
// and its database.
func (s *Service) operationEnvironment(ctx context.Context, op *Operation) (*Environment, *Database, error) {
	envs, _, err := s.Store.ListEnvironments(ctx, EnvironmentFilter{OrgID: op.OrgID, IDs: []string{op.EnvironmentID}, IncludeDeleted: true}, Page{Limit: 1})
	if err != nil {
		return nil, nil, err
	}
	if len(envs) == 0 {
		return nil, nil, Errorf(ENOTFOUND, "environment not found")
	}
	db, err := s.Store.GetEnvironmentDatabase(ctx, op.EnvironmentID)
	if err != nil {
		return nil, nil, err
	}
	return envs[0], db, nil
}

// envAndDatabase loads what a step works on: the operation's environment,
// its database and the target that holds it.
func (s *Service) envAndDatabase(ctx context.Context, op *Operation) (*Environment, *Database, *Target, error) {
	env, db, err := s.operationEnvironment(ctx, op)
	if err != nil {
		return nil, nil, nil, err
	}
	t, ok := s.Targets[db.Target]
	if !ok {
		return nil, nil, nil, Errorf(EUNAVAILABLE, "target %q is not configured", db.Target)
	}
	return env, db, t, nil
}

func (s *Service) provisionStep(ctx context.Context, op *Operation) error {
	env, db, t, err := s.envAndDatabase(ctx, op)
	if err != nil {
		return err
	}
	switch op.Step {
	case stepCreateDatabase:
		resp, err := s.createDatabase(ctx, op, db, t)
		if err != nil {
			return err
		}
		db.URL = resp.Database.URL
		db.Metadata = resp.Database.Metadata
		if resp.Database.Region != "" {
			db.Region = resp.Database.Region
		}
		return s.advance(ctx, op, stepIssueCredentials, func(q Queries) error { return q.UpdateDatabase(ctx, db) })
	case stepIssueCredentials:
		// The scopes are independent: issuing them at once saves two round
		// trips to the target on every provisioning.
		errs := make([]error, len(drivers.Scopes()))
		var wg sync.WaitGroup
		for i, scope := range drivers.Scopes() {
			wg.Go(func() {
				active, err := s.Store.ListCredentials(ctx, CredentialFilter{DatabaseID: db.ID, Scope: scope, Statuses: []CredentialStatus{CredentialActive}})
				if err == nil && len(active) == 0 {
					_, err = s.issue(ctx, env, db, t, scope, drivers.SlotA, "")
				}
				errs[i] = err
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
		return s.advance(ctx, op, stepInitSchema, nil)
	case stepInitSchema:
		if op.Kind == OpClone {
			if err := s.rebindClone(ctx, op, env, db, t); err != nil {
				return err
			}
		}
		if op.Kind == OpRestore {
			if err := s.adoptRestore(ctx, op, env, db, t); err != nil {
				return err
			}
		}
		version, err := s.initializeSchema(ctx, env, db, t)
		if err != nil {
			return err
		}
		db.SchemaVersion = version
		return s.advance(ctx, op, stepActivate, func(q Queries) error { return q.UpdateDatabase(ctx, db) })
	case stepActivate:
		return s.complete(ctx, op, func(q Queries) error {
			now := s.Now()
			env.Status = StatusActive
			env.Error = ""
			env.UpdatedAt = now
			if err := q.SetEnvironmentStatus(ctx, env, StatusProvisioning); err != nil {
				return err
			}
			db.ProvisionedAt = &now
			if err := q.UpdateDatabase(ctx, db); err != nil {
				return err
			}
			return s.audit(ctx, q, nil, env.OrgID, env.ID, "environment.provisioned", env.ID, map[string]any{"operation": op.ID, "database": db.Name, "target": db.Target})
		})
	}
	return Errorf(EINTERNAL, "unknown provisioning step %q", op.Step)
}

// createDatabase creates the operation's database, as a copy of its source for a clone.
func (s *Service) createDatabase(ctx context.Context, op *Operation, db *Database, t *Target) (drivers.CreateDatabaseResponse, error) {
	if op.Kind == OpRestore {
		return s.restoreDatabase(ctx, op, db, t)
	}
	if op.Kind != OpClone {
		resp, err := t.Driver.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: db.Name, Region: db.Region, StorageLimitMB: db.StorageLimitMB})
		if err != nil {
			return resp, fmt.Errorf("cannot create database: %w", err)
		}
		return resp, nil
	}
	var params cloneParams
	if err := json.Unmarshal(op.Params, &params); err != nil {
		return drivers.CreateDatabaseResponse{}, fmt.Errorf("cannot read clone parameters: %w", err)
	}
	src, err := s.Store.GetDatabase(ctx, params.SourceDatabaseID)
	if err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	cloner, ok := t.Driver.(drivers.Cloner)
	if !ok {
		return drivers.CreateDatabaseResponse{}, fmt.Errorf("cannot clone: %w", drivers.ErrUnsupported)
	}
	resp, err := cloner.CloneDatabase(ctx, drivers.CloneDatabaseRequest{Name: db.Name, Region: db.Region, Source: src.DriverDatabase(), SchemaOnly: params.SchemaOnly})
	if err != nil {
		return resp, fmt.Errorf("cannot clone database: %w", err)
	}
	return resp, nil
}

// rebindClone makes a cloned database name its own environment and carry its
// source's migration ledger, so the initializer neither refuses it nor re-runs
// migrations whose tables the copy already has.
func (s *Service) rebindClone(ctx context.Context, op *Operation, env *Environment, db *Database, t *Target) error {
	var params cloneParams
	if err := json.Unmarshal(op.Params, &params); err != nil {
		return fmt.Errorf("cannot read clone parameters: %w", err)
	}
	srcDB, err := s.Store.GetDatabase(ctx, params.SourceDatabaseID)
	if err != nil {
		return err
	}
	src, err := s.openAdmin(ctx, srcDB, t)
	if err != nil {
		return err
	}
	defer src.DB.Close()
	dst, err := s.openAdmin(ctx, db, t)
	if err != nil {
		return err
	}
	defer dst.DB.Close()
	if err := s.Schema.Rebind(ctx, dst.DB, dst.Dialect, src.DB, dataplane.Owner{EnvironmentID: env.ID, OrgID: env.OrgID}); err != nil {
		return fmt.Errorf("cannot adopt the cloned database: %w", err)
	}
	return nil
}

func (s *Service) deprovisionStep(ctx context.Context, op *Operation) error {
	env, db, t, err := s.envAndDatabase(ctx, op)
	if err != nil {
		return err
	}
	switch op.Step {
	case stepRevokeAll:
		if err := s.revokeAll(ctx, env, db, t); err != nil {
			return err
		}
		return s.advance(ctx, op, stepDropDatabase, nil)
	case stepDropDatabase:
		if _, err := t.Driver.DropDatabase(ctx, dropRequest(db)); err != nil {
			return fmt.Errorf("cannot drop database: %w", err)
		}
		return s.advance(ctx, op, stepTombstone, nil)
	case stepTombstone:
		return s.complete(ctx, op, func(q Queries) error {
			now := s.Now()
			env.Status = StatusDeleted
			env.DeletedAt = &now
			env.UpdatedAt = now
			if err := q.SetEnvironmentStatus(ctx, env, StatusDeleting); err != nil {
				return err
			}
			return s.audit(ctx, q, nil, env.OrgID, env.ID, "environment.deleted", env.ID, map[string]any{"operation": op.ID, "database": db.Name})
		})
	}
	return Errorf(EINTERNAL, "unknown deprovisioning step %q", op.Step)
}

// compensate ends an operation that ran out of attempts or time. First a
// provisioning, clone or deprovisioning ends its environment failed with the
// reason, at once, so nobody waits on a target that is down (a
// deprovisioning that failed half-way: its credentials may be gone, and
// DELETE may be retried); that is the one audit event. Then a provisioning's
// leftovers (credentials, database) are removed from the target, and a
// failed resume suspends the database again, its environment still
// suspended; either may fail and be retried by the reconciler. The
// operation ends failed once that is done.
func (s *Service) compensate(ctx context.Context, op *Operation) error {
	env, db, t, err := s.envAndDatabase(ctx, op)
	if err != nil {
		return err
	}
	if op.Step == stepCompensate {
		prev := *op
		err := s.tx(ctx, func(q Queries) error {
			if op.Kind == OpProvision || op.Kind == OpClone || (op.Kind == OpRestore && !inPlace(op)) || op.Kind == OpDeprovision {
				env.Status = StatusFailed
				env.Error = op.Error
				env.UpdatedAt = s.Now()
				if err := q.SetEnvironmentStatus(ctx, env, StatusProvisioning, StatusDeleting); err != nil {
					return err
				}
			}
			op.Step = stepCleanup
			if err := s.save(ctx, q, op); err != nil {
				return err
			}
			if quietRetry(op) {
				return nil
			}
			return s.audit(ctx, q, nil, env.OrgID, env.ID, "operation.failed", op.ID, map[string]any{"kind": string(op.Kind), "error": op.Error})
		})
		if err != nil {
			*op = prev
			return err
		}
	}
	if op.Kind == OpBackup {
		if err := s.failBackup(ctx, op); err != nil {
			return err
		}
	}
	if inPlace(op) {
		if err := s.compensateInPlace(ctx, op, env, db, t); err != nil {
			return err
		}
	} else if op.Kind == OpProvision || op.Kind == OpClone || op.Kind == OpRestore {
		if err := s.revokeAll(ctx, env, db, t); err != nil {
			return err
		}
		if _, err := t.Driver.DropDatabase(ctx, dropRequest(db)); err != nil {
			return fmt.Errorf("cannot drop database: %w", err)
		}
	}
	if op.Kind == OpReset {
		// Whatever the reset left beside the database goes: before the
		// swap the environment keeps its old contents, after it the new.
		if err := s.discardReset(ctx, op, db, t); err != nil {
			return err
		}
	}
	if (op.Kind == OpSuspend || op.Kind == OpResume) && env.Status == StatusSuspended {
		// The environment is (still) suspended: so must its database be,
		// whatever a failed resume gave back or a failed suspension left
		// open; retried with backoff until the target lets it.
		if err := s.cutAccess(ctx, env, db, t); err != nil {
			return err
		}
	}
	prev := *op
	op.Status = OpFailed
	op.Step = stepDone
	if err := s.save(ctx, s.Store, op); err != nil {
		*op = prev
		return err
	}
	return nil
}

// Reconcile claims unfinished operations whose lease expired (their process
// died) and runs them to the end. Every replica runs it; the store's leases
// make sure one replica works on an operation at a time. It returns how many
// operations it claimed.
func (s *Service) Reconcile(ctx context.Context) (int, error) {
	// Platform-wide background work: every organization's rows (ADR 0027).
	ctx = WithPlatformScope(ctx)
	now := s.Now()
	ops, err := s.Store.ClaimOperations(ctx, s.LeaseOwner, now, now.Add(s.Lease), 10)
	if err != nil {
		return 0, fmt.Errorf("cannot claim operations: %w", err)
	}
	// All at once: each renews its own lease while it runs, and one slow
	// target does not hold the others' operations (or let their leases run
	// out) behind it.
	done := make([]<-chan struct{}, len(ops))
	for i, op := range ops {
		s.Logger.Info("resuming operation", "operation", op.ID, "kind", op.Kind, "step", op.Step)
		done[i] = s.start(op)
	}
	for _, ch := range done {
		<-ch
	}
	return len(ops), nil
}

// Run does the background work of one replica until ctx ends: a Tick every interval.
func (s *Service) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s.Tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// TickReport says what one Tick did.
type TickReport struct {
	Resumed, Revoked, Rotated, Forgotten, Pruned, Probed, Expired, BackedUp int
	// Rollouts counts the rollouts taken up (AdvanceRollouts).
	Rollouts int
}

// changeRetention is how long the change log keeps a change: far longer
// than any replica lags behind it.
const changeRetention = time.Hour

// Tick is one pass of background work: it probes targets whose check is
// due, resumes abandoned operations, revokes credentials whose grace has
// ended, starts scheduled rotations, deprovisions expired environments
// (ExpireDue), forgets idempotency keys older than
// IdempotencyTTL, writes buffered receipts and prunes receipts past
// ReceiptRetention, old changes, ended sessions and stale sign-in
// failures, and takes scheduled backups (BackupDue). A part that fails is
// logged and the
// others still run.
func (s *Service) Tick(ctx context.Context) TickReport {
	// Platform-wide background work: every organization's rows (ADR 0027).
	ctx = WithPlatformScope(ctx)
	var r TickReport
	var err error
	r.Probed = s.CheckTargets(ctx)
	if r.Resumed, err = s.Reconcile(ctx); err != nil {
		s.Logger.Error("reconcile failed", "err", err)
	}
	if r.Revoked, err = s.RevokeDue(ctx); err != nil {
		s.Logger.Error("revoking expired credentials failed", "err", err)
	}
	if r.Rotated, err = s.RotateDue(ctx); err != nil {
		s.Logger.Error("scheduled rotation failed", "err", err)
	}
	if r.Expired, err = s.ExpireDue(ctx); err != nil {
		s.Logger.Error("environment expiry failed", "err", err)
	}
	if r.Forgotten, err = s.Store.DeleteIdempotencyRecordsBefore(ctx, s.Now().Add(-s.IdempotencyTTL)); err != nil {
		s.Logger.Error("pruning idempotency records failed", "err", err)
	}
	s.FlushReceipts(ctx)
	if r.Pruned, err = s.Store.DeleteReceiptsBefore(ctx, s.Now().Add(-s.ReceiptRetention)); err != nil {
		s.Logger.Error("pruning router receipts failed", "err", err)
	}
	if _, err = s.Store.DeleteChangesBefore(ctx, s.Now().Add(-changeRetention)); err != nil {
		s.Logger.Error("pruning the change log failed", "err", err)
	}
	s.prunePeople(ctx)
	s.RefreshUsage(ctx)
	if r.Rollouts, err = s.AdvanceRollouts(ctx); err != nil {
		s.Logger.Error("advancing rollouts failed", "err", err)
	}
	// Last: it waits for the copies it starts, which must not hold up
	// the rest of the pass.
	if r.BackedUp, err = s.BackupDue(ctx); err != nil {
		s.Logger.Error("scheduled backups failed", "err", err)
	}
	return r
}
