package controlplane

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/envplane/envplane/dataplane"
	"github.com/envplane/envplane/drivers"
)

// Reset, in one place: the request, its checks and its operation's steps
// (adr/0020). A reset replaces an environment's database contents with a
// fresh copy of another environment's (its clone source by default) or with
// an empty schema, while the database keeps its name, credentials and DSN.
// The replacement is staged beside the database through the target's
// drivers.Resetter, adopted by the schema initializer there, and swapped in
// last; the old contents are dropped only after the swap. Until the swap a
// failure discards the staged copy and leaves the environment as it was;
// after it, the environment holds the new contents whatever else fails.

// Reset modes.
const (
	ResetFull   = "full"
	ResetSchema = "schema"
)

// Reset steps.
const (
	stepStageReset  = "stage_reset"
	stepAdoptStaged = "initialize_staged"
	stepSwapReset   = "swap_reset"
	stepDropRetired = "drop_old_contents"
)

// ResetEnvironmentRequest asks for an environment's database contents to be
// replaced. Mode "full" copies FromEnvironment (slug or id; by default the
// environment this one was cloned from) with its rows; mode "schema" leaves
// an empty database with the migrations applied and no rows, and takes no
// FromEnvironment.
type ResetEnvironmentRequest struct {
	FromEnvironment string `json:"from_environment,omitempty"`
	Mode            string `json:"mode"`
}

// resetParams is the input of a reset operation.
type resetParams struct {
	Mode string `json:"mode"`
	// SourceDatabaseID and SourceEnvironmentID name the copied database;
	// empty for mode schema.
	SourceDatabaseID    string `json:"source_database_id,omitempty"`
	SourceEnvironmentID string `json:"source_environment_id,omitempty"`
}

// ResetEnvironment starts replacing the environment's database contents
// (owner, admin) and returns the environment, the reset operation and a
// channel closed when the operation finishes here. EINVALID naming the
// field for a bad mode, a source that is the environment itself or is on
// another target, or a missing source of an environment that was not
// cloned; ENOTFOUND for a source the caller cannot see (another
// organization's included); ECONFLICT when the environment is protected,
// not active, or busy with another operation, or the source is not active;
// ELOCKED for a suspended source; ETAMPERED for a source whose system
// tables were changed outside envplane.
func (s *Service) ResetEnvironment(ctx context.Context, p *Principal, orgRef, envRef string, req ResetEnvironmentRequest) (*EnvironmentView, *Operation, <-chan struct{}, error) {
	if err := checkText(req); err != nil {
		return nil, nil, nil, err
	}
	ctx, a, err := s.envAccess(ctx, p, orgRef, envRef, ActEnvReset)
	if err != nil {
		return nil, nil, nil, err
	}
	switch {
	case req.Mode != ResetFull && req.Mode != ResetSchema:
		return nil, nil, nil, Invalid(FieldError{Field: "mode", Message: "must be full or schema"})
	case req.Mode == ResetSchema && req.FromEnvironment != "":
		return nil, nil, nil, Invalid(FieldError{Field: "from_environment", Message: "is not used with mode schema, which leaves the database empty"})
	}
	if err := resettable(a.env); err != nil {
		return nil, nil, nil, err
	}
	db, t, err := s.databaseOf(ctx, a.env)
	if err != nil {
		return nil, nil, nil, err
	}
	if _, ok := t.Driver.(drivers.Resetter); !ok {
		return nil, nil, nil, Errorf(EINVALID, "the environment's target cannot reset databases")
	}
	params := resetParams{Mode: req.Mode}
	if req.Mode == ResetFull {
		src, srcDB, err := s.resetSource(ctx, a, db, req.FromEnvironment)
		if err != nil {
			return nil, nil, nil, err
		}
		params.SourceEnvironmentID, params.SourceDatabaseID = src.ID, srcDB.ID
	}
	raw, err := json.Marshal(params)
	if err != nil {
		return nil, nil, nil, err
	}
	env := a.env
	var op *Operation
	err = s.tx(ctx, func(q Queries) error {
		cur, err := q.GetEnvironment(ctx, env.OrgID, env.ID)
		if err != nil {
			return err
		}
		if err := resettable(cur); err != nil {
			return err
		}
		if _, err := q.GetRunningOperation(ctx, cur.ID); err == nil {
			return Errorf(ECONFLICT, "an operation is running on the environment")
		} else if !IsCode(err, ENOTFOUND) {
			return err
		}
		*env = *cur
		op = s.newOperation(env.OrgID, env.ID, OpReset, stepStageReset, raw)
		if err := q.CreateOperation(ctx, op); err != nil {
			return err
		}
		return s.audit(ctx, q, p, env.OrgID, env.ID, "environment.reset_requested", env.ID, resetDetails(op, params))
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return s.view(env, db), op, s.start(op), nil
}

// resettable is ECONFLICT unless env is active and unprotected.
func resettable(env *Environment) error {
	if env.IsProtected {
		return Errorf(ECONFLICT, "the environment is protected; unprotect it first")
	}
	if env.Status != StatusActive {
		return Errorf(ECONFLICT, "the environment is %s; only an active environment can be reset", env.Status)
	}
	return nil
}

func resetDetails(op *Operation, params resetParams) map[string]any {
	d := map[string]any{"operation": op.ID, "mode": params.Mode}
	if params.SourceEnvironmentID != "" {
		d["from_environment"] = params.SourceEnvironmentID
	}
	return d
}

// resetSource resolves the environment a full reset copies: ref (slug or
// id) in the caller's organization, or else the environment this one was
// cloned from. The source must be visible to the caller (ENOTFOUND
// otherwise), another environment on the same target, active and
// untampered.
func (s *Service) resetSource(ctx context.Context, a *access, db *Database, ref string) (*Environment, *Database, error) {
	var src *Environment
	if ref == "" {
		var err error
		if src, err = s.cloneParent(ctx, a.env); err != nil {
			return nil, nil, err
		}
	} else {
		env, err := s.Store.GetEnvironment(ctx, a.org.ID, ref)
		if IsCode(err, ENOTFOUND) {
			return nil, nil, Errorf(ENOTFOUND, "source environment not found")
		}
		if err != nil {
			return nil, nil, err
		}
		src = env
	}
	if err := Authorize(a.subject, ActEnvRead, Resource{OrgID: a.org.ID, EnvironmentID: src.ID}); err != nil {
		return nil, nil, Errorf(ENOTFOUND, "source environment not found")
	}
	if src.ID == a.env.ID {
		return nil, nil, Invalid(FieldError{Field: "from_environment", Message: "is the environment itself"})
	}
	switch src.Status {
	case StatusActive:
	case StatusSuspended:
		return nil, nil, Errorf(ELOCKED, "the source environment is suspended")
	default:
		return nil, nil, Errorf(ECONFLICT, "the source environment is %s", src.Status)
	}
	srcDB, t, err := s.databaseOf(ctx, src)
	if err != nil {
		return nil, nil, err
	}
	if srcDB.Target != db.Target {
		return nil, nil, Invalid(FieldError{Field: "from_environment", Message: "is on another target; a reset copies within one target"})
	}
	if err := s.checkSchema(ctx, src, srcDB, t); err != nil {
		return nil, nil, err
	}
	return src, srcDB, nil
}

// cloneParent returns the environment env was cloned from, as its clone
// operation recorded it. EINVALID naming from_environment when env was not
// cloned or its source is gone.
func (s *Service) cloneParent(ctx context.Context, env *Environment) (*Environment, error) {
	ops, _, err := s.Store.ListOperations(ctx, OperationFilter{OrgID: env.OrgID, EnvironmentIDs: []string{env.ID}, Kind: OpClone}, Page{Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(ops) == 0 {
		return nil, Invalid(FieldError{Field: "from_environment", Message: "is required: the environment was not cloned from another"})
	}
	var params cloneParams
	if err := json.Unmarshal(ops[0].Params, &params); err != nil {
		return nil, fmt.Errorf("cannot read clone parameters: %w", err)
	}
	gone := Invalid(FieldError{Field: "from_environment", Message: "is required: the environment this one was cloned from is gone"})
	srcDB, err := s.Store.GetDatabase(ctx, params.SourceDatabaseID)
	if IsCode(err, ENOTFOUND) {
		return nil, gone
	}
	if err != nil {
		return nil, err
	}
	src, err := s.Store.GetEnvironment(ctx, env.OrgID, srcDB.EnvironmentID)
	if IsCode(err, ENOTFOUND) {
		return nil, gone
	}
	return src, err
}

// resetRequest is what the driver is told of op: the database, the source
// to copy and the database's admin credential.
func (s *Service) resetRequest(ctx context.Context, op *Operation, db *Database) (drivers.ResetRequest, resetParams, error) {
	var params resetParams
	if err := json.Unmarshal(op.Params, &params); err != nil {
		return drivers.ResetRequest{}, params, fmt.Errorf("cannot read reset parameters: %w", err)
	}
	req := drivers.ResetRequest{Database: db.DriverDatabase()}
	if params.SourceDatabaseID != "" {
		src, err := s.Store.GetDatabase(ctx, params.SourceDatabaseID)
		if err != nil {
			return req, params, err
		}
		sd := src.DriverDatabase()
		req.Source = &sd
	}
	c, err := s.activeCredential(ctx, db, drivers.ScopeAdmin)
	if err != nil {
		return req, params, err
	}
	if req.Admin, err = s.driverCredential(ctx, c); err != nil {
		return req, params, err
	}
	return req, params, nil
}

// resetStep runs a reset operation's current step.
func (s *Service) resetStep(ctx context.Context, op *Operation) error {
	env, db, t, err := s.envAndDatabase(ctx, op)
	if err != nil {
		return err
	}
	r, ok := t.Driver.(drivers.Resetter)
	if !ok {
		return fmt.Errorf("cannot reset: %w", drivers.ErrUnsupported)
	}
	req, params, err := s.resetRequest(ctx, op, db)
	if err != nil {
		return err
	}
	switch op.Step {
	case stepStageReset:
		if err := r.StageReset(ctx, req); err != nil {
			return fmt.Errorf("cannot stage the reset: %w", err)
		}
		return s.advance(ctx, op, stepAdoptStaged, nil)
	case stepAdoptStaged:
		if err := s.adoptStaged(ctx, r, env, req, params, t); err != nil {
			return err
		}
		return s.advance(ctx, op, stepSwapReset, nil)
	case stepSwapReset:
		if err := r.SwapReset(ctx, req); err != nil {
			return fmt.Errorf("cannot swap the reset in: %w", err)
		}
		// The replacement was granted like a new database: a database
		// over its storage limit takes its write limit back at once, not
		// at its next crossing (adr/0019).
		if wl, ok := t.Driver.(drivers.WriteLimiter); ok && db.OverLimit {
			if err := wl.LimitWrites(ctx, drivers.LimitWritesRequest{Database: req.Database, Limited: true}); err != nil {
				return fmt.Errorf("cannot limit the reset database's writes: %w", err)
			}
		}
		// The database now holds the new contents: record their schema
		// version with the step, so nothing reads the old one against them.
		conn, err := s.openAdmin(ctx, db, t)
		if err != nil {
			return err
		}
		defer conn.DB.Close()
		st, err := s.Schema.Status(ctx, conn.DB, conn.Dialect)
		if err != nil {
			return fmt.Errorf("cannot read the reset database's schema: %w", err)
		}
		db.SchemaVersion = st.SchemaVersion
		return s.advance(ctx, op, stepDropRetired, func(q Queries) error { return q.UpdateDatabase(ctx, db) })
	case stepDropRetired:
		if err := r.DiscardReset(ctx, req); err != nil {
			return fmt.Errorf("cannot drop the old contents: %w", err)
		}
		return s.complete(ctx, op, func(q Queries) error {
			details := resetDetails(op, params)
			details["schema_version"] = db.SchemaVersion
			return s.audit(ctx, q, nil, env.OrgID, env.ID, "environment.reset", env.ID, details)
		})
	}
	return Errorf(EINTERNAL, "unknown reset step %q", op.Step)
}

// adoptStaged makes the staged replacement the environment's before it is
// swapped in: a copy is rebound to the environment (its source's owner row
// replaced, its ledger kept), then the initializer applies what is pending
// (everything, on an empty database).
func (s *Service) adoptStaged(ctx context.Context, r drivers.Resetter, env *Environment, req drivers.ResetRequest, params resetParams, t *Target) error {
	staged, err := r.OpenStaged(ctx, drivers.OpenRequest{Database: req.Database, Credential: req.Admin})
	if err != nil {
		return fmt.Errorf("cannot open the staged reset: %w", err)
	}
	defer staged.DB.Close()
	owner := dataplane.Owner{EnvironmentID: env.ID, OrgID: env.OrgID}
	if params.SourceDatabaseID != "" {
		srcDB, err := s.Store.GetDatabase(ctx, params.SourceDatabaseID)
		if err != nil {
			return err
		}
		src, err := s.openAdmin(ctx, srcDB, t)
		if err != nil {
			return err
		}
		defer src.DB.Close()
		if err := s.Schema.Rebind(ctx, staged.DB, staged.Dialect, src.DB, owner); err != nil {
			return fmt.Errorf("cannot adopt the staged copy: %w", err)
		}
	}
	if _, err := s.Schema.Apply(ctx, staged.DB, staged.Dialect, owner); err != nil {
		return fmt.Errorf("cannot initialize the staged reset: %w", err)
	}
	return nil
}

// discardReset removes what a failed reset left beside the database.
func (s *Service) discardReset(ctx context.Context, op *Operation, db *Database, t *Target) error {
	r, ok := t.Driver.(drivers.Resetter)
	if !ok {
		return nil
	}
	// The credential is for engines that discard over the data plane; a
	// reset that cannot read it (no active admin) still drops what it can.
	req := drivers.ResetRequest{Database: db.DriverDatabase()}
	if full, _, err := s.resetRequest(ctx, op, db); err == nil {
		req = full
	}
	if err := r.DiscardReset(ctx, req); err != nil {
		return fmt.Errorf("cannot discard the reset: %w", err)
	}
	return nil
}
