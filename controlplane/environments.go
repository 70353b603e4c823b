package controlplane

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/envplane/envplane/drivers"
)

// cloneParams is the input of a clone operation.
type cloneParams struct {
	SourceDatabaseID string `json:"source_database_id"`
	SchemaOnly       bool   `json:"schema_only"`
}

// cloneSource is the environment a new one is copied from.
type cloneSource struct {
	env        *Environment
	db         *Database
	schemaOnly bool
	// backup, when set, makes the new database a restore of it (OpRestore);
	// at, a restore of the source database as it was then.
	backup *Backup
	at     *time.Time
}

// reservation is what reserving an environment wrote: the rows in status
// provisioning and the operation that will provision them.
type reservation struct {
	env *Environment
	db  *Database
	op  *Operation
}

// view returns the environment with its database as responses show it.
func (s *Service) view(env *Environment, db *Database) *EnvironmentView {
	v := &EnvironmentView{Environment: env, Expiring: s.expiring(env)}
	if db != nil {
		v.Database = &DatabaseView{Driver: db.Driver, Target: db.Target, Region: db.Region, DatabaseName: db.Name, SchemaVersion: db.SchemaVersion, ProvisionedAt: db.ProvisionedAt,
			StorageLimitMB: db.StorageLimitMB, OverLimit: db.OverLimit}
	}
	return v
}

func dropRequest(db *Database) drivers.DropDatabaseRequest {
	return drivers.DropDatabaseRequest{Database: db.DriverDatabase()}
}

// place picks the target for a new database, inside the reserving
// transaction so counts and the insert agree: the named target, or else the
// default when it serves the region and has room, or else the first target
// (by name) of the region with room. A full target is skipped; an unknown
// target or region is EINVALID naming the field; no room anywhere is EUNAVAILABLE.
func (s *Service) place(ctx context.Context, q Queries, name, region string) (*Target, error) {
	counts, err := q.CountDatabasesByTarget(ctx)
	if err != nil {
		return nil, err
	}
	hasRoom := func(t *Target) bool { return t.Capacity <= 0 || counts[t.Name] < t.Capacity }
	if name != "" {
		t, err := s.target(name)
		if err != nil {
			return nil, err
		}
		if region != "" && t.Region != region {
			return nil, Invalid(FieldError{Field: "region", Message: "the target is in another region"})
		}
		if !hasRoom(t) {
			return nil, Errorf(EUNAVAILABLE, "target %s has no room for another database", t.Name)
		}
		return t, nil
	}
	candidates := s.sortedTargets()
	if t, ok := s.Targets[s.DefaultTarget]; ok {
		candidates = append([]*Target{t}, candidates...)
	}
	served := false
	for _, t := range candidates {
		if region != "" && t.Region != region {
			continue
		}
		served = true
		if hasRoom(t) {
			return t, nil
		}
	}
	if region != "" && !served {
		return nil, Invalid(FieldError{Field: "region", Message: "no target serves this region"})
	}
	return nil, Errorf(EUNAVAILABLE, "no target has room for another database")
}

// sortedTargets returns the targets in name order, for deterministic placement.
func (s *Service) sortedTargets() []*Target {
	names := make([]string, 0, len(s.Targets))
	for n := range s.Targets {
		names = append(names, n)
	}
	slices.Sort(names)
	out := make([]*Target, len(names))
	for i, n := range names {
		out[i] = s.Targets[n]
	}
	return out
}

// validateEnvironment checks a create request's fields.
func validateEnvironment(req CreateEnvironmentRequest, allowDefault bool) []FieldError {
	var fields []FieldError
	if !ValidSlug(req.Slug) {
		fields = append(fields, FieldError{Field: "slug", Message: "must match ^[a-z0-9][a-z0-9-]{0,62}$"})
	}
	switch {
	case req.Type == "":
		fields = append(fields, FieldError{Field: "type", Message: "is required"})
	case !req.Type.Valid():
		fields = append(fields, FieldError{Field: "type", Message: "must be one of development, test, staging, production, sandbox, preview, trial"})
	case req.Type == TypeDefault && !allowDefault:
		fields = append(fields, FieldError{Field: "type", Message: "default environments are created with their organization"})
	}
	if len(req.Name) > 200 {
		fields = append(fields, FieldError{Field: "name", Message: "must be at most 200 characters"})
	}
	if len(req.Description) > 2000 {
		fields = append(fields, FieldError{Field: "description", Message: "must be at most 2000 characters"})
	}
	return fields
}

// reserve writes an environment and its database in status provisioning, and
// the provisioning operation, through q (inside the caller's transaction).
func (s *Service) reserve(ctx context.Context, q Queries, p *Principal, org *Organization, req CreateEnvironmentRequest, isDefault bool, src *cloneSource) (*reservation, error) {
	n, err := q.CountEnvironments(ctx, org.ID)
	if err != nil {
		return nil, err
	}
	if org.MaxEnvironments > 0 && n >= org.MaxEnvironments {
		return nil, Errorf(ETOOMANY, "the organization has reached its quota of %d environments", org.MaxEnvironments)
	}
	if !isDefault {
		// An organization whose default environment is being deleted is
		// being deleted (DeleteOrganization marks it under the same lock).
		def, err := q.GetEnvironment(ctx, org.ID, "default")
		if err != nil && !IsCode(err, ENOTFOUND) {
			return nil, err
		}
		if def != nil && def.IsDefault && def.Status == StatusDeleting {
			return nil, Errorf(ECONFLICT, "the organization is being deleted")
		}
	}
	if src != nil {
		if req.Target != "" && req.Target != src.db.Target {
			return nil, Invalid(FieldError{Field: "target", Message: "a clone is made on its source's target"})
		}
		req.Target = src.db.Target
	}
	t, err := s.place(ctx, q, req.Target, req.Region)
	if err != nil {
		return nil, err
	}
	kind, params := OpProvision, []byte(nil)
	if src != nil && (src.backup != nil || src.at != nil) {
		kind = OpRestore
		p := restoreParams{SourceDatabaseID: src.db.ID, At: src.at}
		if src.backup != nil {
			p.BackupID = src.backup.ID
		}
		if params, err = json.Marshal(p); err != nil {
			return nil, err
		}
	} else if src != nil {
		if _, ok := t.Driver.(drivers.Cloner); !ok {
			return nil, Invalid(FieldError{Field: "clone", Message: "the source's target cannot clone databases"})
		}
		kind = OpClone
		params, err = json.Marshal(cloneParams{SourceDatabaseID: src.db.ID, SchemaOnly: src.schemaOnly})
		if err != nil {
			return nil, err
		}
	}
	now := s.Now()
	name := strings.TrimSpace(req.Name)
	if name == "" {
		name = req.Slug
	}
	env := &Environment{
		ID:          s.NewID("env"),
		OrgID:       org.ID,
		Slug:        req.Slug,
		Name:        name,
		Description: req.Description,
		Type:        req.Type,
		Region:      t.Region,
		Target:      t.Name,
		IsDefault:   isDefault,
		IsProtected: req.Type == TypeProduction,
		Status:      StatusProvisioning,
		CreatedBy:   actor(p),
		CreatedAt:   now,
		UpdatedAt:   now,
		ExpiresAt:   req.ExpiresAt,
	}
	if req.IsProtected != nil {
		env.IsProtected = *req.IsProtected
	}
	if err := q.CreateEnvironment(ctx, env); err != nil {
		if IsCode(err, ECONFLICT) {
			return nil, Invalid(FieldError{Field: "slug", Message: "is taken in this organization"}).withCode(ECONFLICT)
		}
		return nil, err
	}
	db := &Database{ID: s.NewID("db"), EnvironmentID: env.ID, Name: newDatabaseName(), Driver: t.Driver.Name(), Target: t.Name, Region: t.Region}
	if err := q.CreateDatabase(ctx, db); err != nil {
		return nil, err
	}
	op := s.newOperation(org.ID, env.ID, kind, stepCreateDatabase, params)
	if err := q.CreateOperation(ctx, op); err != nil {
		return nil, err
	}
	details := map[string]any{"slug": env.Slug, "type": string(env.Type), "target": t.Name, "operation": op.ID}
	if env.ExpiresAt != nil {
		details["expires_at"] = env.ExpiresAt
	}
	if src != nil {
		details["from_environment"] = src.env.ID
		details["schema_only"] = src.schemaOnly
		if src.backup != nil {
			details["from_backup"] = src.backup.ID
		}
		if src.at != nil {
			details["point_in_time"] = src.at
		}
	}
	if err := s.audit(ctx, q, p, org.ID, env.ID, "environment.created", env.ID, details); err != nil {
		return nil, err
	}
	return &reservation{env: env, db: db, op: op}, nil
}

// CreateEnvironment reserves an environment and starts provisioning its
// database (owner, admin). The returned channel closes when provisioning
// finishes here; the caller waits on it as long as it likes, then reads the
// operation. Invalid fields are EINVALID, a taken slug ECONFLICT, a full
// quota ETOOMANY, no room on any target EUNAVAILABLE.
func (s *Service) CreateEnvironment(ctx context.Context, p *Principal, orgRef string, req CreateEnvironmentRequest) (*EnvironmentView, *Operation, <-chan struct{}, error) {
	if err := checkText(req); err != nil {
		return nil, nil, nil, err
	}
	if orgRef == "" {
		orgRef = req.Organization
		if orgRef == "" {
			return nil, nil, nil, Invalid(FieldError{Field: "organization", Message: "is required"})
		}
	}
	ctx, a, err := s.orgAccess(ctx, p, orgRef, ActEnvCreate)
	if err != nil {
		return nil, nil, nil, err
	}
	fields := validateEnvironment(req, false)
	expires, expiryFields := s.creationExpiry(req)
	if fields = append(fields, expiryFields...); len(fields) > 0 {
		return nil, nil, nil, Invalid(fields...)
	}
	// reserve stores the expiry as the time it is.
	req.TTL, req.ExpiresAt = "", expires
	src, err := s.cloneSource(ctx, a, req)
	if err != nil {
		return nil, nil, nil, err
	}
	var res *reservation
	err = s.tx(ctx, func(q Queries) error {
		var err error
		res, err = s.reserve(ctx, q, p, a.org, req, false, src)
		return err
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return s.view(res.env, res.db), res.op, s.start(res.op), nil
}

// cloneSource resolves and checks a create request's from_environment and
// clone fields; nil when the request is not a clone. The source must be
// visible to the caller, active (ELOCKED while suspended: its database
// refuses every credential) and untampered (ETAMPERED); a production
// environment is never made from a copy.
func (s *Service) cloneSource(ctx context.Context, a *access, req CreateEnvironmentRequest) (*cloneSource, error) {
	if req.FromEnvironment == "" && req.Clone == "" {
		return nil, nil
	}
	var fields []FieldError
	if req.FromEnvironment == "" {
		fields = append(fields, FieldError{Field: "from_environment", Message: "is required with clone"})
	}
	if req.Clone != "schema" && req.Clone != "full" {
		fields = append(fields, FieldError{Field: "clone", Message: "must be schema or full"})
	}
	if req.Type == TypeProduction {
		fields = append(fields, FieldError{Field: "type", Message: "a production environment cannot be created from a copy"})
	}
	if len(fields) > 0 {
		return nil, Invalid(fields...)
	}
	env, err := s.Store.GetEnvironment(ctx, a.org.ID, req.FromEnvironment)
	if IsCode(err, ENOTFOUND) {
		return nil, Invalid(FieldError{Field: "from_environment", Message: "no such environment"})
	}
	if err != nil {
		return nil, err
	}
	sub := a.subject
	if err := Authorize(sub, ActEnvRead, Resource{OrgID: a.org.ID, EnvironmentID: env.ID}); err != nil {
		return nil, Invalid(FieldError{Field: "from_environment", Message: "no such environment"})
	}
	if env.Status == StatusSuspended {
		return nil, Errorf(ELOCKED, "the source environment is suspended")
	}
	if env.Status != StatusActive {
		return nil, Errorf(ECONFLICT, "the source environment is %s", env.Status)
	}
	db, t, err := s.databaseOf(ctx, env)
	if err != nil {
		return nil, err
	}
	if err := s.checkSchema(ctx, env, db, t); err != nil {
		return nil, err
	}
	return &cloneSource{env: env, db: db, schemaOnly: req.Clone == "schema"}, nil
}

// Settle returns the environment and operation as stored now, after waiting
// for done (see CreateEnvironment) for at most the caller's patience.
func (s *Service) Settle(ctx context.Context, op *Operation) (*EnvironmentView, *Operation, error) {
	// The operation came from a call that authorized its organization.
	ctx = WithOrgScope(ctx, op.OrgID)
	op, err := s.Store.GetOperation(ctx, op.OrgID, op.ID)
	if err != nil {
		return nil, nil, err
	}
	env, db, err := s.operationEnvironment(ctx, op)
	if err != nil {
		return nil, nil, err
	}
	return s.view(env, db), op, nil
}

// ListEnvironments lists the live environments p can see, with their
// databases, narrowed by lf (status deleted lists tombstones). EINVALID
// naming the field for an unknown type or status; EMALFORMED for a cursor
// this API did not give out.
func (s *Service) ListEnvironments(ctx context.Context, p *Principal, orgRef string, lf EnvironmentListFilter, page Page) ([]*EnvironmentView, string, error) {
	if err := page.Check(); err != nil {
		return nil, "", err
	}
	if err := lf.Validate(); err != nil {
		return nil, "", err
	}
	ctx, a, err := s.orgAccess(ctx, p, orgRef, ActOrgRead)
	if err != nil {
		return nil, "", err
	}
	f := EnvironmentFilter{OrgID: a.org.ID, Type: lf.Type, Status: lf.Status, Target: lf.Target,
		IncludeDeleted: lf.Status == StatusDeleted}
	if f.IDs, err = s.visibleEnvironments(ctx, a); err != nil {
		return nil, "", err
	}
	envs, next, err := s.Store.ListEnvironments(ctx, f, page)
	if err != nil {
		return nil, "", err
	}
	ids := make([]string, len(envs))
	for i, e := range envs {
		ids[i] = e.ID
	}
	dbs, err := s.Store.ListEnvironmentDatabases(ctx, ids)
	if err != nil {
		return nil, "", err
	}
	byEnv := make(map[string]*Database, len(dbs))
	for _, db := range dbs {
		byEnv[db.EnvironmentID] = db
	}
	out := make([]*EnvironmentView, 0, len(envs))
	for _, e := range envs {
		out = append(out, s.view(e, byEnv[e.ID]))
	}
	return out, next, nil
}

// GetEnvironment returns one environment with its database; ENOTFOUND if p may not see it.
func (s *Service) GetEnvironment(ctx context.Context, p *Principal, orgRef, envRef string) (*EnvironmentView, error) {
	ctx, a, err := s.envAccess(ctx, p, orgRef, envRef, ActEnvRead)
	if err != nil {
		return nil, err
	}
	return s.withDatabase(ctx, a.env)
}

func (s *Service) withDatabase(ctx context.Context, env *Environment) (*EnvironmentView, error) {
	db, err := s.Store.GetEnvironmentDatabase(ctx, env.ID)
	if err != nil && !IsCode(err, ENOTFOUND) {
		return nil, err
	}
	return s.view(env, db), nil
}

// UpdateEnvironment changes name, description, protection and expiry
// (owner, admin, env_admin), and the storage limit (owner, admin:
// EFORBIDDEN otherwise; applied at the next usage measurement, in the
// background). EINVALID naming ttl or expires_at for an expiry that is
// malformed, out of range, or on an environment that never expires
// (protected, default, production); protecting one removes its expiry.
func (s *Service) UpdateEnvironment(ctx context.Context, p *Principal, orgRef, envRef string, req UpdateEnvironmentRequest) (*EnvironmentView, error) {
	if err := checkText(req); err != nil {
		return nil, err
	}
	ctx, a, err := s.envAccess(ctx, p, orgRef, envRef, ActEnvUpdate)
	if err != nil {
		return nil, err
	}
	if req.StorageLimitMB != nil {
		if err := Authorize(a.subject, ActEnvLimit, a.resource()); err != nil {
			return nil, err
		}
	}
	env := a.env
	var fields []FieldError
	if req.StorageLimitMB != nil {
		if fe := validStorageLimit(*req.StorageLimitMB, a.org.MaxStorageMB); fe != nil {
			fields = append(fields, *fe)
		}
	}
	if req.Name != nil {
		n := strings.TrimSpace(*req.Name)
		if n == "" || len(n) > 200 {
			fields = append(fields, FieldError{Field: "name", Message: "must be 1 to 200 characters"})
		}
		env.Name = n
	}
	if req.Description != nil {
		if len(*req.Description) > 2000 {
			fields = append(fields, FieldError{Field: "description", Message: "must be at most 2000 characters"})
		}
		env.Description = *req.Description
	}
	protected := env.IsProtected
	if req.IsProtected != nil {
		protected = *req.IsProtected
	}
	expires, expiryFields := s.requestedExpiry(req.TTL, req.ExpiresAt, neverExpires(env.Type, env.IsDefault, protected))
	if fields = append(fields, expiryFields...); len(fields) > 0 {
		return nil, Invalid(fields...)
	}
	details := map[string]any{}
	if protected != env.IsProtected {
		env.IsProtected = protected
		details["is_protected"] = env.IsProtected
	}
	// A new expiry gets its own notice; protecting an environment removes
	// its expiry, since a protected one never expires.
	if expires != nil || protected && env.ExpiresAt != nil {
		env.ExpiresAt, env.ExpiryNoticedAt = expires, nil
		details["expires_at"] = expires
	}
	env.UpdatedAt = s.Now()
	err = s.tx(ctx, func(q Queries) error {
		if err := q.UpdateEnvironment(ctx, env); err != nil {
			return err
		}
		if req.StorageLimitMB != nil {
			if err := s.setStorageLimit(ctx, q, env, *req.StorageLimitMB); err != nil {
				return err
			}
			details["storage_limit_mb"] = *req.StorageLimitMB
		}
		return s.audit(ctx, q, p, env.OrgID, env.ID, "environment.updated", env.ID, details)
	})
	if err != nil {
		return nil, err
	}
	return s.withDatabase(ctx, env)
}

// DeleteEnvironment starts deprovisioning (owner, admin): credentials
// revoked, database dropped, environment tombstoned and its slug freed.
// ECONFLICT for protected or default environments and while another operation runs.
func (s *Service) DeleteEnvironment(ctx context.Context, p *Principal, orgRef, envRef string) (*Operation, <-chan struct{}, error) {
	ctx, a, err := s.envAccess(ctx, p, orgRef, envRef, ActEnvDelete)
	if err != nil {
		return nil, nil, err
	}
	op, err := s.deprovision(ctx, p, a.env, "environment.delete_requested", nil)
	if err != nil {
		return nil, nil, err
	}
	return op, s.start(op), nil
}

// deprovision marks env deleting and records its deprovision operation and
// the audit event action, in one transaction that reads env again, so a
// change made meanwhile counts. ECONFLICT for a default or protected
// environment, one already being deleted, one with an operation running,
// and one that allow (when not nil) refuses.
func (s *Service) deprovision(ctx context.Context, p *Principal, env *Environment, action string, allow func(*Environment) error) (*Operation, error) {
	var op *Operation
	err := s.tx(ctx, func(q Queries) error {
		cur, err := q.GetEnvironment(ctx, env.OrgID, env.ID)
		if err != nil {
			return err
		}
		switch {
		case cur.IsDefault:
			return Errorf(ECONFLICT, "the default environment is deleted only with its organization")
		case cur.IsProtected:
			return Errorf(ECONFLICT, "the environment is protected; unprotect it first")
		case cur.Status == StatusDeleting:
			return Errorf(ECONFLICT, "the environment is already being deleted")
		}
		if allow != nil {
			if err := allow(cur); err != nil {
				return err
			}
		}
		if _, err := q.GetRunningOperation(ctx, cur.ID); err == nil {
			return Errorf(ECONFLICT, "an operation is running on the environment")
		} else if !IsCode(err, ENOTFOUND) {
			return err
		}
		from := cur.Status
		cur.Status = StatusDeleting
		cur.UpdatedAt = s.Now()
		if err := q.SetEnvironmentStatus(ctx, cur, from); err != nil {
			return err
		}
		op = s.newOperation(cur.OrgID, cur.ID, OpDeprovision, stepRevokeAll, nil)
		if err := q.CreateOperation(ctx, op); err != nil {
			return err
		}
		return s.audit(ctx, q, p, cur.OrgID, cur.ID, action, cur.ID, map[string]any{"operation": op.ID})
	})
	if err != nil {
		return nil, err
	}
	return op, nil
}

// ListOperations lists, newest first, the operations of the organization's
// environments that p can see, narrowed by f. EINVALID naming the field for
// an unknown status or kind; ENOTFOUND when f names an environment p may not
// see.
func (s *Service) ListOperations(ctx context.Context, p *Principal, orgRef string, f OperationListFilter, page Page) ([]*Operation, string, error) {
	if err := page.Check(); err != nil {
		return nil, "", err
	}
	if err := f.Validate(); err != nil {
		return nil, "", err
	}
	ctx, a, err := s.orgAccess(ctx, p, orgRef, ActOrgRead)
	if err != nil {
		return nil, "", err
	}
	of := OperationFilter{OrgID: a.org.ID, Status: f.Status, Kind: f.Kind}
	if f.Environment != "" {
		_, ea, err := s.envAccess(ctx, p, a.org.ID, f.Environment, ActOperationRead)
		if err != nil {
			return nil, "", err
		}
		of.EnvironmentIDs = []string{ea.env.ID}
	} else if of.EnvironmentIDs, err = s.visibleEnvironments(ctx, a); err != nil {
		return nil, "", err
	}
	return s.Store.ListOperations(ctx, of, page)
}

// GetOperation returns an operation whose environment p can see; ENOTFOUND otherwise.
func (s *Service) GetOperation(ctx context.Context, p *Principal, id string) (*Operation, error) {
	if p == nil {
		return nil, Errorf(EUNAUTHORIZED, "authentication required")
	}
	if !StorableText(id) {
		return nil, Errorf(ENOTFOUND, "operation not found")
	}
	orgID := p.OrgID
	if orgID == "" {
		o, err := s.Store.OrgOf(resolveScope(ctx, p), KindOperation, id)
		if err != nil {
			return nil, err
		}
		orgID = o
	}
	op, err := s.Store.GetOperation(WithOrgScope(ctx, orgID), orgID, id)
	if err != nil {
		return nil, err
	}
	// The environment is not loaded: the operation of a deleted
	// environment stays readable to whoever could see the environment.
	ctx, a, err := s.orgAccess(ctx, p, orgID, ActOrgRead)
	if err != nil {
		return nil, err
	}
	if err := s.lookupEnvRole(ctx, a, op.EnvironmentID); err != nil {
		return nil, err
	}
	if err := Authorize(a.subject, ActOperationRead, Resource{OrgID: orgID, EnvironmentID: op.EnvironmentID}); err != nil {
		return nil, err
	}
	return op, nil
}
