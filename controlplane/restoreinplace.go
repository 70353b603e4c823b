package controlplane

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/envplane/envplane/dataplane"
	"github.com/envplane/envplane/drivers"
)

// Restoring in place (adr/0021). The environment keeps its id and slug; its
// database is replaced by a new one made from the backup, after its current
// state was kept as a pre_restore backup. Every step before the swap
// leaves the old database serving, so a restore that fails there is undone
// by dropping the new one; the swap is one transaction (the environment's
// database row names the new database, the old one's credentials are
// recorded revoked); every step after it only goes forward, and its
// compensation finishes the job. Interrupted anywhere, the environment
// ends on its old state or on the new one, never between.

// In-place restore steps, in order.
const (
	stepBackupCurrent   = "backup_current"
	stepRestoreDatabase = "restore_database"
	stepVerifyRestore   = "verify_restore"
	stepSwapDatabase    = "swap_database"
	stepIssueRestored   = "issue_credentials_restored"
	stepDropOld         = "drop_old_database"
)

// inPlaceParams is an in-place restore operation's input.
type inPlaceParams struct {
	BackupID    string `json:"backup_id"`
	PreBackupID string `json:"pre_backup_id"`
	OldName     string `json:"old_name"`
	NewName     string `json:"new_name"`
	// Restored is what the target answered for the new database: set by
	// restore_database and kept in the operation's response (the one
	// field a step saves besides its progress).
	Restored *drivers.Database `json:"-"`
}

// readInPlace reads an in-place restore's parameters and, once
// restore_database recorded it, the new database.
func readInPlace(op *Operation) (inPlaceParams, error) {
	var p inPlaceParams
	if err := json.Unmarshal(op.Params, &p); err != nil {
		return p, fmt.Errorf("cannot read restore parameters: %w", err)
	}
	if len(op.Response) > 0 {
		p.Restored = &drivers.Database{}
		if err := json.Unmarshal(op.Response, p.Restored); err != nil {
			return p, fmt.Errorf("cannot read the restored database: %w", err)
		}
	}
	return p, nil
}

// restoreInPlace starts an in-place restore of the environment from b
// (checked already) and returns the environment and the operation. The
// pre_restore backup's row is made with the operation.
func (s *Service) restoreInPlace(ctx context.Context, p *Principal, a *access, b *Backup) (*EnvironmentView, *Operation, <-chan struct{}, error) {
	env := a.env
	db, t, err := s.databaseOf(ctx, env)
	if err != nil {
		return nil, nil, nil, err
	}
	if _, ok := t.Driver.(drivers.BackerUp); !ok || db.Target != env.Target {
		return nil, nil, nil, Errorf(ECONFLICT, "target %s cannot take backups: restore into a new environment", t.Name)
	}
	var op *Operation
	err = s.tx(ctx, func(q Queries) error {
		if _, err := q.GetRunningOperation(ctx, env.ID); err == nil {
			return Errorf(ECONFLICT, "an operation is running on the environment")
		} else if !IsCode(err, ENOTFOUND) {
			return err
		}
		cur, err := q.GetEnvironment(ctx, env.OrgID, env.ID)
		if err != nil {
			return err
		}
		if cur.Status != StatusActive {
			return Errorf(ECONFLICT, "the environment is %s", cur.Status)
		}
		if cur.IsProtected {
			return Errorf(ECONFLICT, "the environment is protected: restore into a new environment (into)")
		}
		params := inPlaceParams{BackupID: b.ID, PreBackupID: s.NewID("bk"), OldName: db.Name, NewName: newDatabaseName()}
		raw, err := json.Marshal(params)
		if err != nil {
			return err
		}
		op = s.newOperation(env.OrgID, env.ID, OpRestore, stepBackupCurrent, raw)
		pre := &Backup{ID: params.PreBackupID, OrgID: env.OrgID, EnvironmentID: env.ID, DatabaseID: db.ID, Driver: db.Driver,
			Trigger: BackupPreRestore, Status: BackupRunning, OperationID: op.ID, CreatedAt: s.Now()}
		if err := q.CreateBackup(ctx, pre); err != nil {
			return err
		}
		if err := q.CreateOperation(ctx, op); err != nil {
			return err
		}
		return s.audit(ctx, q, p, env.OrgID, env.ID, "environment.restore_requested", env.ID,
			map[string]any{"operation": op.ID, "backup": b.ID, "pre_restore_backup": params.PreBackupID, "in_place": true})
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return s.view(env, db), op, s.start(op), nil
}

// inPlace reports whether op is an in-place restore.
func inPlace(op *Operation) bool {
	if op.Kind != OpRestore {
		return false
	}
	var p inPlaceParams
	return json.Unmarshal(op.Params, &p) == nil && p.NewName != ""
}

// inPlaceStep runs one step of an in-place restore.
func (s *Service) inPlaceStep(ctx context.Context, op *Operation) error {
	params, err := readInPlace(op)
	if err != nil {
		return err
	}
	env, db, t, err := s.envAndDatabase(ctx, op)
	if err != nil {
		return err
	}
	switch op.Step {
	case stepBackupCurrent:
		pre, err := s.Store.GetBackup(ctx, op.OrgID, params.PreBackupID)
		if err != nil {
			return err
		}
		if err := s.writeBackup(ctx, pre, db, t); err != nil {
			return err
		}
		return s.advance(ctx, op, stepRestoreDatabase, func(q Queries) error {
			if err := q.UpdateBackup(ctx, pre); err != nil {
				return err
			}
			return s.audit(ctx, q, nil, env.OrgID, env.ID, "backup.completed", pre.ID,
				map[string]any{"operation": op.ID, "size_bytes": pre.SizeBytes, "sha256": pre.SHA256, "key_id": pre.KeyID, "trigger": string(pre.Trigger)})
		})
	case stepRestoreDatabase:
		b, err := s.Store.GetBackup(ctx, op.OrgID, params.BackupID)
		if err != nil {
			return err
		}
		resp, err := s.restoreFromBackup(ctx, b, &Database{Name: params.NewName, Region: db.Region}, t)
		if err != nil {
			return err
		}
		raw, err := json.Marshal(resp.Database)
		if err != nil {
			return err
		}
		op.Response = raw
		return s.advance(ctx, op, stepVerifyRestore, nil)
	case stepVerifyRestore:
		b, err := s.Store.GetBackup(ctx, op.OrgID, params.BackupID)
		if err != nil {
			return err
		}
		if err := s.verifyNew(ctx, env, params, t, b); err != nil {
			return err
		}
		return s.advance(ctx, op, stepSwapDatabase, nil)
	case stepSwapDatabase:
		return s.advance(ctx, op, stepIssueRestored, func(q Queries) error { return s.swap(ctx, q, env, db, params) })
	case stepIssueRestored:
		if err := s.issueMissing(ctx, env, db, t); err != nil {
			return err
		}
		return s.advance(ctx, op, stepDropOld, nil)
	case stepDropOld:
		if err := s.dropOld(ctx, t, params); err != nil {
			return err
		}
		return s.complete(ctx, op, func(q Queries) error {
			return s.audit(ctx, q, nil, env.OrgID, env.ID, "environment.restored", env.ID,
				map[string]any{"operation": op.ID, "backup": params.BackupID, "pre_restore_backup": params.PreBackupID, "database": params.NewName})
		})
	}
	return Errorf(EINTERNAL, "unknown restore step %q", op.Step)
}

// verifyNew opens the new database with an admin credential of its own,
// made for the check and revoked after it, and verifies it against b as
// the environment's.
func (s *Service) verifyNew(ctx context.Context, env *Environment, params inPlaceParams, t *Target, b *Backup) error {
	if params.Restored == nil {
		return Errorf(EINTERNAL, "the restored database was not recorded")
	}
	ic, err := t.Driver.IssueCredential(ctx, drivers.IssueCredentialRequest{Database: *params.Restored, Scope: drivers.ScopeAdmin, Slot: drivers.SlotA})
	if err != nil {
		return fmt.Errorf("cannot open the restored database: %w", err)
	}
	defer func() {
		c := ic.Credential
		if _, err := t.Driver.RevokeCredential(context.WithoutCancel(ctx), drivers.RevokeCredentialRequest{Database: *params.Restored, Scope: c.Scope, Slot: c.Slot, Username: c.Username}); err != nil {
			s.Logger.Warn("cannot revoke the restore's check credential", "environment", env.ID, "err", err)
		}
	}()
	conn, err := t.Driver.Open(ctx, drivers.OpenRequest{Database: *params.Restored, Credential: ic.Credential})
	if err != nil {
		return fmt.Errorf("cannot open the restored database: %w", err)
	}
	defer conn.DB.Close()
	return s.verifyRestored(ctx, conn, dataplane.Owner{EnvironmentID: env.ID, OrgID: env.OrgID}, b)
}

// swap makes the environment's database the restored one, through q: its
// row names the new database, and the old database's live credentials are
// recorded revoked (the router stops handing them out). Idempotent: a row
// that names the new database already is left alone.
func (s *Service) swap(ctx context.Context, q Queries, env *Environment, db *Database, params inPlaceParams) error {
	if db.Name == params.NewName {
		return nil
	}
	if params.Restored == nil {
		return Errorf(EINTERNAL, "the restored database was not recorded")
	}
	cs, err := q.ListCredentials(ctx, CredentialFilter{DatabaseID: db.ID, Statuses: []CredentialStatus{CredentialActive, CredentialRotating}})
	if err != nil {
		return err
	}
	now := s.Now()
	for _, c := range cs {
		c.Status, c.RevokedAt = CredentialRevoked, &now
		if err := q.UpdateCredential(ctx, c); err != nil {
			return err
		}
	}
	db.Name, db.URL, db.Metadata = params.NewName, params.Restored.URL, params.Restored.Metadata
	if err := q.RenameDatabase(ctx, db); err != nil {
		return err
	}
	if err := s.audit(ctx, q, nil, env.OrgID, env.ID, "environment.database_swapped", env.ID,
		map[string]any{"from": params.OldName, "to": params.NewName}); err != nil {
		return err
	}
	return s.changed(ctx, q, env.OrgID)
}

// dropOld drops the database the environment had before the restore, with
// every credential of it. Absent is success.
func (s *Service) dropOld(ctx context.Context, t *Target, params inPlaceParams) error {
	if _, err := t.Driver.DropDatabase(ctx, drivers.DropDatabaseRequest{Database: drivers.Database{Name: params.OldName}}); err != nil {
		return fmt.Errorf("cannot drop the old database: %w", err)
	}
	return nil
}

// compensateInPlace ends an in-place restore that ran out of attempts.
// Before the swap the environment is on its old database: the new one is
// dropped and a pre_restore backup still running is marked failed. After
// it the environment is on the new one: the restore is finished forward
// (credentials issued, old database dropped), retried by the reconciler
// until the target lets it.
func (s *Service) compensateInPlace(ctx context.Context, op *Operation, env *Environment, db *Database, t *Target) error {
	params, err := readInPlace(op)
	if err != nil {
		return err
	}
	if db.Name == params.NewName {
		if err := s.issueMissing(ctx, env, db, t); err != nil {
			return err
		}
		return s.dropOld(ctx, t, params)
	}
	if _, err := t.Driver.DropDatabase(ctx, drivers.DropDatabaseRequest{Database: drivers.Database{Name: params.NewName}}); err != nil {
		return fmt.Errorf("cannot drop the restored database: %w", err)
	}
	pre, err := s.Store.GetBackup(ctx, op.OrgID, params.PreBackupID)
	if err != nil || pre.Status != BackupRunning {
		return err
	}
	if err := s.Backups.Delete(ctx, pre.ID); err != nil {
		return err
	}
	pre.Status, pre.Error = BackupFailed, op.Error
	return s.Store.UpdateBackup(ctx, pre)
}
