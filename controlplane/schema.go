package controlplane

import (
	"context"
	"errors"
	"time"

	"github.com/envplane/envplane/dataplane"
)

// SchemaStatus reports the environment database's migration ledger, pending
// migrations and drift (every env role; owner, admin).
func (s *Service) SchemaStatus(ctx context.Context, p *Principal, orgRef, envRef string) (*SchemaStatus, error) {
	a, err := s.envAccess(ctx, p, orgRef, envRef, ActSchemaRead)
	if err != nil {
		return nil, err
	}
	return s.schema(ctx, a.env, false)
}

// MigrateSchema applies pending migrations (owner, admin, env_admin,
// env_maker). Drift is ECONFLICT and applies nothing; a failing migration is
// EINVALID naming the file.
func (s *Service) MigrateSchema(ctx context.Context, p *Principal, orgRef, envRef string) (*SchemaStatus, error) {
	a, err := s.envAccess(ctx, p, orgRef, envRef, ActSchemaMigrate)
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

// schema reads (and with apply, first migrates) the environment's database.
func (s *Service) schema(ctx context.Context, env *Environment, apply bool) (*SchemaStatus, error) {
	if env.Status != StatusActive && env.Status != StatusSuspended {
		return nil, Errorf(ECONFLICT, "the environment is %s", env.Status)
	}
	db, t, err := s.databaseOf(ctx, env)
	if err != nil {
		return nil, err
	}
	conn, err := s.openAdmin(ctx, db, t)
	if err != nil {
		return nil, err
	}
	defer conn.DB.Close()
	if apply {
		res, err := s.Schema.Apply(ctx, conn.DB, conn.Dialect, dataplane.Owner{EnvironmentID: env.ID, OrgID: env.OrgID})
		var drift *dataplane.DriftError
		var failed *dataplane.MigrationError
		switch {
		case errors.As(err, &drift):
			return nil, Errorf(ECONFLICT, "%s", drift.Error())
		case errors.As(err, &failed):
			return nil, Invalid(FieldError{Field: "migrations", Message: failed.Migration.Namespace + "/" + failed.Migration.File + " failed"}).Wrap(err)
		case err != nil:
			return nil, err
		}
		if res.SchemaVersion != db.SchemaVersion {
			db.SchemaVersion = res.SchemaVersion
			if err := s.Store.UpdateDatabase(ctx, db); err != nil {
				return nil, err
			}
		}
	}
	st, err := s.Schema.Status(ctx, conn.DB, conn.Dialect)
	if err != nil {
		return nil, err
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
	return out, nil
}

func schemaMigration(m dataplane.Migration) SchemaMigration {
	sm := SchemaMigration{Namespace: m.Namespace, Version: m.Version, Name: m.Name, Checksum: m.Checksum}
	if !m.AppliedAt.IsZero() {
		t := m.AppliedAt.UTC().Truncate(time.Microsecond)
		sm.AppliedAt = &t
	}
	return sm
}
