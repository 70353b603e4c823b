package controlplane

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/envplane/envplane/dataplane"
	"github.com/envplane/envplane/drivers"
)

// SchemaStatus reports the environment database's migration ledger, pending
// migrations and drift (every env role; owner, admin).
func (s *Service) SchemaStatus(ctx context.Context, p *Principal, orgRef, envRef string) (*SchemaStatus, error) {
	ctx, a, err := s.envAccess(ctx, p, orgRef, envRef, ActSchemaRead)
	if err != nil {
		return nil, err
	}
	return s.schema(ctx, a.env, false)
}

// MigrateSchema applies pending migrations (owner, admin, env_admin,
// env_maker). Drift is ECONFLICT and system tables changed outside envplane
// ETAMPERED, and both apply nothing; a failing migration is EINVALID naming
// the file; a suspended environment is ELOCKED.
func (s *Service) MigrateSchema(ctx context.Context, p *Principal, orgRef, envRef string) (*SchemaStatus, error) {
	ctx, a, err := s.envAccess(ctx, p, orgRef, envRef, ActSchemaMigrate)
	if err != nil {
		return nil, err
	}
	st, err := s.schema(ctx, a.env, true)
	if err != nil {
		return nil, err
	}
	if err := s.audit(ctx, s.Store, p, a.env.OrgID, a.env.ID, "schema.migrated", a.env.ID, map[string]any{"schema_version": st.SchemaVersion}); err != nil {
		return nil, err
	}
	return st, nil
}

// schema reads (and with apply, first migrates) the environment's database,
// after checking it against what the control plane recorded (tampering).
func (s *Service) schema(ctx context.Context, env *Environment, apply bool) (*SchemaStatus, error) {
	if err := openable(env); err != nil {
		return nil, err
	}
	db, t, err := s.databaseOf(ctx, env)
	if err != nil {
		return nil, err
	}
	conn, err := s.openAdmin(ctx, db, t)
	if err != nil {
		return nil, targetError(err)
	}
	defer conn.DB.Close()
	verr := s.Schema.Verify(ctx, conn.DB, conn.Dialect, expected(env, db))
	findings, isTamper := tamperFindings(verr)
	switch {
	case verr == nil:
	case isTamper && !apply:
		// Reading the status reports what was found; migrating refuses.
	case isTamper:
		return nil, tampered(findings, verr)
	default:
		return nil, targetError(verr)
	}
	if apply {
		res, err := s.Schema.Apply(ctx, conn.DB, conn.Dialect, dataplane.Owner{EnvironmentID: env.ID, OrgID: env.OrgID})
		var drift *dataplane.DriftError
		var failed *dataplane.MigrationError
		if found, ok := tamperFindings(err); ok {
			return nil, tampered(found, err)
		}
		switch {
		case errors.As(err, &drift):
			return nil, Errorf(ECONFLICT, "%s", drift.Error())
		case errors.As(err, &failed):
			return nil, Invalid(FieldError{Field: "migrations", Message: failed.Migration.Namespace + "/" + failed.Migration.File + " failed"}).Wrap(err)
		case err != nil:
			return nil, targetError(err)
		}
		if res.SchemaVersion != db.SchemaVersion {
			db.SchemaVersion = res.SchemaVersion
			if err := s.Store.UpdateDatabase(ctx, db); err != nil {
				return nil, err
			}
		}
	}
	st, err := s.Schema.Status(ctx, conn.DB, conn.Dialect)
	if found, ok := tamperFindings(err); ok {
		return nil, tampered(found, err)
	}
	if err != nil {
		return nil, targetError(err)
	}
	out := &SchemaStatus{SchemaVersion: st.SchemaVersion, Applied: []SchemaMigration{}, Pending: []SchemaMigration{}, Drift: []SchemaMigration{}}
	for _, m := range st.Applied {
		out.Applied = append(out.Applied, schemaMigration(m))
	}
	for _, m := range st.Pending {
		out.Pending = append(out.Pending, schemaMigration(m))
	}
	for _, d := range st.Drift {
		out.Drift = append(out.Drift, schemaMigration(d.Applied))
	}
	// Verify's findings, and what Status finds in the database alone (a
	// system table that no longer reads), once each.
	out.Tampered = append(findings, st.Tampered...)
	slices.Sort(out.Tampered)
	out.Tampered = slices.Compact(out.Tampered)
	return out, nil
}

// targetError turns a failure to reach the environment's database into
// EUNAVAILABLE (503, retry later); other errors pass through.
func targetError(err error) error {
	if errors.Is(err, drivers.ErrUnavailable) {
		return Errorf(EUNAVAILABLE, "the environment's target is unavailable").Wrap(err)
	}
	return err
}

func schemaMigration(m dataplane.Migration) SchemaMigration {
	sm := SchemaMigration{Namespace: m.Namespace, Version: m.Version, Name: m.Name, Checksum: m.Checksum}
	if !m.AppliedAt.IsZero() {
		t := m.AppliedAt.UTC().Truncate(time.Microsecond)
		sm.AppliedAt = &t
	}
	return sm
}

// openable returns nil when the environment's database may be opened by the
// control plane: ELOCKED while suspended (the database refuses every
// credential then, the admin's included), ECONFLICT in any other state but active.
func openable(env *Environment) error {
	switch env.Status {
	case StatusActive:
		return nil
	case StatusSuspended:
		return Errorf(ELOCKED, "the environment is suspended")
	}
	return Errorf(ECONFLICT, "the environment is %s", env.Status)
}

// expected is what the control plane recorded of an environment's database,
// for the schema initializer's tamper check.
func expected(env *Environment, db *Database) dataplane.Expected {
	return dataplane.Expected{Owner: dataplane.Owner{EnvironmentID: env.ID, OrgID: env.OrgID}, SchemaVersion: db.SchemaVersion}
}

// tamperFindings returns what the schema initializer found changed outside
// envplane, and whether err says so: a TamperError, or a meta row naming
// another owner (the control plane made this database for this
// environment, so only a write behind its back can change the row).
func tamperFindings(err error) ([]string, bool) {
	var t *dataplane.TamperError
	var owner *dataplane.OwnerMismatchError
	switch {
	case errors.As(err, &t):
		return t.Problems, true
	case errors.As(err, &owner):
		return []string{"the " + dataplane.MetaTable + " row names another environment"}, true
	}
	return nil, false
}

// tampered is the ETAMPERED answer for findings; the cause is kept for logs.
func tampered(findings []string, cause error) *Error {
	return Errorf(ETAMPERED, "the database's system tables were changed outside envplane: %s", strings.Join(findings, "; ")).Wrap(cause)
}

// checkSchema returns ETAMPERED when the environment's database no longer
// matches what the control plane recorded of it (see schema).
func (s *Service) checkSchema(ctx context.Context, env *Environment, db *Database, t *Target) error {
	conn, err := s.openAdmin(ctx, db, t)
	if err != nil {
		return targetError(err)
	}
	defer conn.DB.Close()
	err = s.Schema.Verify(ctx, conn.DB, conn.Dialect, expected(env, db))
	if found, ok := tamperFindings(err); ok {
		return tampered(found, err)
	}
	return targetError(err)
}
