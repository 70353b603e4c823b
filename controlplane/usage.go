package controlplane

import (
	"context"
	"fmt"
	"time"

	"github.com/envplane/envplane/drivers"
)

// Usage and storage limits (adr/0019). Each database is measured in the
// background by RefreshUsage, a bounded part of every Tick, never on a
// request: the usage endpoints read what the last measurement recorded. A
// database measured above its storage limit is flagged over_limit and
// audited once; where the engine allows (drivers.WriteLimiter), its
// readwrite scope loses write rights first, and gets them back when a
// measurement is under the limit again.

// Usage is what a database held at its last measurement. Tables and
// Connections are nil where the engine does not tell.
type Usage struct {
	SizeBytes   int64     `json:"size_bytes"`
	Tables      *int64    `json:"tables,omitempty"`
	Connections *int64    `json:"connections,omitempty"`
	MeasuredAt  time.Time `json:"measured_at"`
}

// UsageTotal sums the last measurements of an organization's live
// environments of one type. Measured counts those measured at least once;
// Tables sums where the engine tells.
type UsageTotal struct {
	Type         EnvironmentType `json:"type"`
	Environments int             `json:"environments"`
	Measured     int             `json:"measured"`
	SizeBytes    int64           `json:"size_bytes"`
	Tables       int64           `json:"tables"`
	OverLimit    int             `json:"over_limit"`
}

// OrgUsageTotal sums the last measurements of one organization's live
// environments, for metrics.
type OrgUsageTotal struct {
	OrgSlug   string
	SizeBytes int64
	OverLimit int
}

// MaxStorageLimitMB is the largest storage limit an environment may have:
// 16 TiB, more than any target offers one database.
const MaxStorageLimitMB = 16 << 20

// EnvironmentUsage answers GET .../environments/{env}/usage. Usage is nil
// until the first measurement.
type EnvironmentUsage struct {
	EnvironmentID  string          `json:"environment_id"`
	Environment    string          `json:"environment"`
	Type           EnvironmentType `json:"type"`
	StorageLimitMB int             `json:"storage_limit_mb,omitempty"`
	OverLimit      bool            `json:"over_limit"`
	Usage          *Usage          `json:"usage"`
}

// OrganizationUsage answers GET /v1/organizations/{org}/usage: the last
// measurements of the environments the caller can see, summed per type.
type OrganizationUsage struct {
	Organization string        `json:"organization"`
	SizeBytes    int64         `json:"size_bytes"`
	OverLimit    int           `json:"over_limit"`
	Types        []*UsageTotal `json:"types"`
}

// EnvironmentUsage returns an environment's last measured usage (owner,
// admin, every environment role). It reads the registry only.
func (s *Service) EnvironmentUsage(ctx context.Context, p *Principal, orgRef, envRef string) (*EnvironmentUsage, error) {
	ctx, a, err := s.envAccess(ctx, p, orgRef, envRef, ActUsageRead)
	if err != nil {
		return nil, err
	}
	out := &EnvironmentUsage{EnvironmentID: a.env.ID, Environment: a.env.Slug, Type: a.env.Type}
	db, err := s.Store.GetEnvironmentDatabase(ctx, a.env.ID)
	switch {
	case IsCode(err, ENOTFOUND):
		return out, nil
	case err != nil:
		return nil, err
	}
	out.StorageLimitMB, out.OverLimit, out.Usage = db.StorageLimitMB, db.OverLimit, db.Usage
	return out, nil
}

// OrganizationUsage sums, per environment type, the last measured usage of
// the organization's environments that the caller can see (owner, admin,
// member; not app keys). It reads the registry only.
func (s *Service) OrganizationUsage(ctx context.Context, p *Principal, orgRef string) (*OrganizationUsage, error) {
	ctx, a, err := s.orgAccess(ctx, p, orgRef, ActOrgUsageRead)
	if err != nil {
		return nil, err
	}
	ids, err := s.visibleEnvironments(ctx, a)
	if err != nil {
		return nil, err
	}
	types, err := s.Store.SumUsage(ctx, a.org.ID, ids)
	if err != nil {
		return nil, err
	}
	out := &OrganizationUsage{Organization: a.org.Slug, Types: types}
	for _, t := range types {
		out.SizeBytes += t.SizeBytes
		out.OverLimit += t.OverLimit
	}
	return out, nil
}

// UsageByOrganization sums the last measurements of every organization's
// live environments, for metrics (one series per organization, never one
// per environment).
func (s *Service) UsageByOrganization(ctx context.Context) ([]*OrgUsageTotal, error) {
	// The platform admin's listing of every organization (ADR 0027).
	ctx = WithPlatformScope(ctx)
	return s.Store.SumUsageByOrg(ctx)
}

// validStorageLimit checks a requested storage limit against the range and
// the organization's storage quota (orgMax; 0 means none).
func validStorageLimit(mb, orgMax int) *FieldError {
	if mb < 1 || mb > MaxStorageLimitMB {
		return &FieldError{Field: "storage_limit_mb", Message: fmt.Sprintf("must be between 1 and %d", MaxStorageLimitMB)}
	}
	if orgMax > 0 && mb > orgMax {
		return &FieldError{Field: "storage_limit_mb", Message: fmt.Sprintf("must be at most the organization's max_storage_mb, %d", orgMax)}
	}
	return nil
}

// setStorageLimit saves the environment's database's storage limit through
// q and makes its usage due now, so the next pass applies the limit.
// ECONFLICT while the environment has no database.
func (s *Service) setStorageLimit(ctx context.Context, q Queries, env *Environment, mb int) error {
	db, err := q.GetEnvironmentDatabase(ctx, env.ID)
	if IsCode(err, ENOTFOUND) {
		return Errorf(ECONFLICT, "the environment has no database")
	}
	if err != nil {
		return err
	}
	return q.SetStorageLimit(ctx, db.ID, mb, s.Now())
}

// RefreshUsage measures up to UsageBatch databases whose measurement is
// due, on targets that can measure and are not down, at most StepTimeout
// each, and applies their storage limits. A database is due UsageInterval
// after its last claim, or at once after its limit changed. It returns how
// many it measured; failures are logged, and the database is tried again
// when it is next due.
func (s *Service) RefreshUsage(ctx context.Context) int {
	// Platform-wide background work: every organization's rows (ADR 0027).
	ctx = WithPlatformScope(ctx)
	now := s.Now()
	var targets []string
	for _, name := range s.targetNames() {
		if _, ok := s.Targets[name].Driver.(drivers.UsageReporter); ok && !s.targetDown(name) {
			targets = append(targets, name)
		}
	}
	dbs, err := s.Store.ClaimUsageDue(ctx, now, now.Add(s.UsageInterval), targets, s.UsageBatch)
	if err != nil {
		s.Logger.Error("cannot claim usage measurements", "err", err)
		return 0
	}
	n := 0
	for _, db := range dbs {
		if ctx.Err() != nil {
			break
		}
		if s.targetDown(db.Target) {
			continue
		}
		if err := s.measure(ctx, db); err != nil {
			s.Logger.Warn("usage measurement failed", "database", db.ID, "target", db.Target, "err", err)
			continue
		}
		n++
	}
	return n
}

// measure records one database's usage and, when it crossed its storage
// limit either way, applies the crossing.
func (s *Service) measure(ctx context.Context, db *Database) error {
	t := s.Targets[db.Target]
	mctx, cancel := context.WithTimeout(ctx, s.StepTimeout)
	du, err := t.Driver.(drivers.UsageReporter).Usage(mctx, db.DriverDatabase())
	cancel()
	s.noteTarget(ctx, t.Name, err)
	if err != nil {
		return fmt.Errorf("cannot measure database: %w", err)
	}
	u := &Usage{SizeBytes: du.SizeBytes, Tables: du.Tables, Connections: du.Connections, MeasuredAt: s.Now()}
	if err := s.Store.RecordUsage(ctx, db.ID, u); err != nil {
		return err
	}
	over := db.StorageLimitMB > 0 && u.SizeBytes > int64(db.StorageLimitMB)<<20
	if over == db.OverLimit {
		return nil
	}
	return s.crossLimit(ctx, db, t, over, u)
}

// crossLimit takes write rights from the database's readwrite scope (over)
// or gives them back, where the target can, then records the flag with one
// audit event. The flag is recorded only once the rights changed, and the
// change is undone when the flag cannot be recorded, so a failure leaves
// the crossing to the next measurement; a replica that finds the flag
// already recorded audits nothing.
func (s *Service) crossLimit(ctx context.Context, db *Database, t *Target, over bool, u *Usage) error {
	env, err := s.environmentOf(ctx, db)
	if err != nil {
		return err
	}
	wl, canLimit := t.Driver.(drivers.WriteLimiter)
	if canLimit {
		lctx, cancel := context.WithTimeout(ctx, s.StepTimeout)
		err := wl.LimitWrites(lctx, drivers.LimitWritesRequest{Database: db.DriverDatabase(), Limited: over})
		cancel()
		s.noteTarget(ctx, t.Name, err)
		if err != nil {
			return fmt.Errorf("cannot change write rights: %w", err)
		}
	}
	action := "environment.under_limit"
	if over {
		action = "environment.over_limit"
	}
	details := map[string]any{"size_bytes": u.SizeBytes, "storage_limit_mb": db.StorageLimitMB, "writes_limited": over && canLimit}
	err = s.tx(ctx, func(q Queries) error {
		if err := q.SetOverLimit(ctx, db.ID, over); err != nil {
			return err
		}
		return s.audit(ctx, q, nil, env.OrgID, env.ID, action, env.ID, details)
	})
	if IsCode(err, ECONFLICT) {
		return nil
	}
	if err != nil && canLimit {
		// Undo, so the engine agrees with the flag that stays, and the
		// next measurement finds the crossing again.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.StepTimeout)
		if uerr := wl.LimitWrites(lctx, drivers.LimitWritesRequest{Database: db.DriverDatabase(), Limited: !over}); uerr != nil {
			s.Logger.Error("cannot undo a write limit whose flag was not recorded", "database", db.ID, "err", uerr)
		}
		cancel()
	}
	return err
}
