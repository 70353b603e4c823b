package controlplane

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/envplane/envplane/drivers"
)

// Suspension, in one place: the suspend and resume requests and their
// operations' steps (adr/0014). Suspending answers ELOCKED at the router at
// once (the status changes in the request's transaction) and then cuts access
// where the data lives, through the target's drivers.Suspender; resuming
// restores access at the database first and answers at the router last. Each
// is a leased operation, so a process that dies half-way leaves work that a
// reconciler finishes, and each driver call is idempotent, so a retry converges.

// Suspension steps.
const (
	stepSuspendDatabase = "suspend_database"
	stepResumeDatabase  = "resume_database"
)

// SuspendEnvironment suspends an environment (owner, admin): its connection
// lookups answer ELOCKED from now on, then every credential of its database
// stops working and their sessions end. Suspending a suspended environment
// runs the database part again, which converges after a failure. ECONFLICT
// unless the environment is active or suspended, or while another operation
// runs; EUNAVAILABLE when the database could not be suspended (the router
// refuses anyway, and the operation keeps cutting access in the background,
// with backoff, until the target lets it).
func (s *Service) SuspendEnvironment(ctx context.Context, p *Principal, orgRef, envRef string) (*EnvironmentView, error) {
	ctx, a, err := s.envAccess(ctx, p, orgRef, envRef, ActEnvSuspend)
	if err != nil {
		return nil, err
	}
	env := a.env
	op, err := s.startSuspension(ctx, env, OpSuspend, stepSuspendDatabase, func(q Queries) error {
		if env.Status == StatusSuspended {
			return nil
		}
		if env.Status != StatusActive {
			return Errorf(ECONFLICT, "the environment is %s", env.Status)
		}
		env.Status = StatusSuspended
		env.UpdatedAt = s.Now()
		if err := q.SetEnvironmentStatus(ctx, env, StatusActive); err != nil {
			return err
		}
		return s.audit(ctx, q, p, env.OrgID, env.ID, "environment.suspended", env.ID, nil)
	})
	if err != nil {
		return nil, err
	}
	return s.finishSuspension(ctx, op, env, "the environment is suspended at the router, but its database could not be suspended")
}

// ResumeEnvironment resumes a suspended environment (owner, admin): its
// database's live credentials work again (on targets whose suspension revoked
// them, new ones are issued), then its connection lookups answer again.
// Idempotent: an active environment is answered as it is. ECONFLICT in any
// other state or while another operation runs; EUNAVAILABLE when the
// database could not be resumed (the environment stays suspended).
func (s *Service) ResumeEnvironment(ctx context.Context, p *Principal, orgRef, envRef string) (*EnvironmentView, error) {
	ctx, a, err := s.envAccess(ctx, p, orgRef, envRef, ActEnvSuspend)
	if err != nil {
		return nil, err
	}
	env := a.env
	op, err := s.startSuspension(ctx, env, OpResume, stepResumeDatabase, func(q Queries) error {
		if env.Status == StatusActive {
			return errNothingToDo
		}
		if env.Status != StatusSuspended {
			return Errorf(ECONFLICT, "the environment is %s", env.Status)
		}
		return s.audit(ctx, q, p, env.OrgID, env.ID, "environment.resume_requested", env.ID, nil)
	})
	if errors.Is(err, errNothingToDo) {
		return s.withDatabase(ctx, env)
	}
	if err != nil {
		return nil, err
	}
	return s.finishSuspension(ctx, op, env, "the environment stays suspended: its database could not be resumed")
}

// errNothingToDo tells startSuspension's caller that write found the
// environment already as asked: no operation is made.
var errNothingToDo = errors.New("nothing to do")

// startSuspension records a suspend or resume operation, with write's rows,
// in one transaction, and starts it. env is read again inside the
// transaction first, so write decides on its current status (a resume
// finishing meanwhile, a double submit), not the one the request read.
func (s *Service) startSuspension(ctx context.Context, env *Environment, kind OperationKind, step string, write func(q Queries) error) (*Operation, error) {
	var op *Operation
	err := s.tx(ctx, func(q Queries) error {
		if _, err := q.GetRunningOperation(ctx, env.ID); err == nil {
			return Errorf(ECONFLICT, "an operation is running on the environment")
		} else if !IsCode(err, ENOTFOUND) {
			return err
		}
		cur, err := q.GetEnvironment(ctx, env.OrgID, env.ID)
		if err != nil {
			return err
		}
		*env = *cur
		if err := write(q); err != nil {
			return err
		}
		op = s.newOperation(env.OrgID, env.ID, kind, step, nil)
		return q.CreateOperation(ctx, op)
	})
	return op, err
}

// finishSuspension waits for op (the request's context bounds the wait; the
// operation goes on without it) and answers the environment as stored then,
// or EUNAVAILABLE with failure when op did not succeed (failed, or left
// running for a reconciler to finish).
func (s *Service) finishSuspension(ctx context.Context, op *Operation, env *Environment, failure string) (*EnvironmentView, error) {
	select {
	case <-s.start(op):
	case <-ctx.Done():
		return nil, Errorf(EUNAVAILABLE, "%s yet: operation %s is still running", failure, op.ID).Wrap(ctx.Err())
	}
	done, err := s.Store.GetOperation(ctx, op.OrgID, op.ID)
	if err != nil {
		return nil, err
	}
	switch done.Status {
	case OpSucceeded:
	case OpFailed:
		return nil, Errorf(EUNAVAILABLE, "%s (%s; operation %s)", failure, done.Error, done.ID)
	default:
		return nil, Errorf(EUNAVAILABLE, "%s yet (%s; operation %s is being retried)", failure, done.Error, done.ID)
	}
	now, err := s.Store.GetEnvironment(ctx, env.OrgID, env.ID)
	if err != nil {
		return nil, err
	}
	return s.withDatabase(ctx, now)
}

// suspensionStep runs a suspend or resume operation's one step.
func (s *Service) suspensionStep(ctx context.Context, op *Operation) error {
	env, db, t, err := s.envAndDatabase(ctx, op)
	if err != nil {
		return err
	}
	switch op.Step {
	case stepSuspendDatabase:
		if err := s.cutAccess(ctx, env, db, t); err != nil {
			return err
		}
		return s.complete(ctx, op, func(q Queries) error {
			return s.audit(ctx, q, nil, env.OrgID, env.ID, "environment.database_suspended", env.ID, map[string]any{"operation": op.ID})
		})
	case stepResumeDatabase:
		if err := s.restoreAccess(ctx, env, db, t); err != nil {
			return err
		}
		return s.complete(ctx, op, func(q Queries) error {
			env.Status = StatusActive
			env.UpdatedAt = s.Now()
			if err := q.SetEnvironmentStatus(ctx, env, StatusSuspended); err != nil {
				return err
			}
			return s.audit(ctx, q, nil, env.OrgID, env.ID, "environment.resumed", env.ID, map[string]any{"operation": op.ID})
		})
	}
	return Errorf(EINTERNAL, "unknown suspension step %q", op.Step)
}

// cutAccess suspends the database at its target. On a target whose
// suspension destroys credentials (Turso), every live credential is then
// recorded revoked, so resuming issues new ones. A driver without the
// capability leaves the suspension to the router, and says so in the log.
func (s *Service) cutAccess(ctx context.Context, env *Environment, db *Database, t *Target) error {
	sp, ok := t.Driver.(drivers.Suspender)
	if !ok {
		s.Logger.Warn("the target cannot suspend databases; only the router refuses", "environment", env.ID, "target", t.Name)
		return nil
	}
	resp, err := sp.SuspendDatabase(ctx, drivers.SuspendDatabaseRequest{Database: db.DriverDatabase()})
	if err != nil {
		return fmt.Errorf("cannot suspend database: %w", err)
	}
	if resp.CredentialsRevoked {
		// Every credential issued up to now, this instant's included.
		return s.markAllRevoked(ctx, env, db, s.Now().Add(time.Nanosecond))
	}
	return nil
}

// restoreAccess resumes the database's live credentials at its target, then
// issues an active credential for every scope left without one (those the
// suspension revoked).
func (s *Service) restoreAccess(ctx context.Context, env *Environment, db *Database, t *Target) error {
	if sp, ok := t.Driver.(drivers.Suspender); ok {
		live, err := s.Store.ListCredentials(ctx, CredentialFilter{DatabaseID: db.ID, Statuses: []CredentialStatus{CredentialActive, CredentialRotating}})
		if err != nil {
			return err
		}
		req := drivers.ResumeDatabaseRequest{Database: db.DriverDatabase()}
		for _, c := range live {
			req.Credentials = append(req.Credentials, drivers.Credential{Scope: c.Scope, Slot: c.Slot, Username: c.Username})
		}
		if _, err := sp.ResumeDatabase(ctx, req); err != nil {
			return fmt.Errorf("cannot resume database: %w", err)
		}
	}
	return s.issueMissing(ctx, env, db, t)
}
