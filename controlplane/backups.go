package controlplane

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/envplane/envplane/dataplane"
	"github.com/envplane/envplane/drivers"
)

// Backups and restore, in one place (adr/0021). A backup is a leased
// operation: the target's drivers.BackerUp streams a consistent copy,
// SealBackup encrypts it in chunks under a fresh data key that the keyring
// wraps, and the BackupStore keeps the sealed bytes, whose SHA-256 the
// backup's row records with the copy's row counts and schema version. A
// restore makes a new environment: its database is created from the
// copy (checked against the checksum before anything is made), adopted by
// the new environment, and verified (owner row, schema version, row counts)
// before it is activated. The schedule takes backups per environment type
// in Tick, and retention keeps a count and an age per type.

// BackupStore keeps sealed backups by key (a backup's id). An object store
// can implement it as well as a directory.
type BackupStore interface {
	// Put stores what r yields under key, whole or not at all (a failed
	// Put leaves no object of that key), replacing an object of that key,
	// and returns the bytes stored.
	Put(ctx context.Context, key string, r io.Reader) (int64, error)
	// Open returns key's bytes. ENOTFOUND if there is no such object.
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	// Delete removes key's object. Absent is success.
	Delete(ctx context.Context, key string) error
}

// ValidBackupKey reports whether key has the shape of the ids envplane
// generates, the only keys a BackupStore is given.
func ValidBackupKey(key string) bool { return validCursor(key) }

// BackupStatus is where a backup is.
type BackupStatus string

// Backup statuses.
const (
	BackupRunning   BackupStatus = "running"
	BackupCompleted BackupStatus = "completed"
	BackupFailed    BackupStatus = "failed"
)

// BackupTrigger says why a backup was taken.
type BackupTrigger string

// Backup triggers.
const (
	BackupManual     BackupTrigger = "manual"
	BackupScheduled  BackupTrigger = "scheduled"
	BackupPreRestore BackupTrigger = "pre_restore"
)

// Backup is one copy of an environment's database in the backup store.
// SHA256 is of the stored (sealed) bytes; KeyID names the keyring key
// version that wrapped its data key, and DEKCipher is that wrapped key
// (empty for a backup made before it was kept: its stream's header holds
// it; a rewrap moves it here, adr/0031); Tables counts the rows of the copy's
// tables and SchemaVersion is the app schema version it was taken at, both
// checked when it is restored.
type Backup struct {
	ID            string           `json:"id"`
	OrgID         string           `json:"organization_id"`
	EnvironmentID string           `json:"environment_id"`
	DatabaseID    string           `json:"-"`
	Driver        string           `json:"driver"`
	Format        string           `json:"format,omitempty"`
	Trigger       BackupTrigger    `json:"trigger"`
	Status        BackupStatus     `json:"status"`
	SizeBytes     int64            `json:"size_bytes"`
	SHA256        string           `json:"sha256,omitempty"`
	KeyID         string           `json:"key_id,omitempty"`
	DEKCipher     []byte           `json:"-"`
	SchemaVersion int64            `json:"schema_version"`
	Tables        map[string]int64 `json:"tables,omitempty"`
	OperationID   string           `json:"operation_id"`
	Error         string           `json:"error,omitempty"`
	CreatedAt     time.Time        `json:"created_at"`
	CompletedAt   *time.Time       `json:"completed_at,omitempty"`
}

// dataKey is the backup's wrapped data key as its row keeps it: empty for
// a backup made before rows kept it, whose stream's header holds it.
func (b *Backup) dataKey() Sealed { return Sealed{DEKCipher: b.DEKCipher, KeyID: b.KeyID} }

// BackupFilter selects backups. OrgID is required.
type BackupFilter struct {
	OrgID         string
	EnvironmentID string
	// Status, when set, keeps only backups with that status.
	Status BackupStatus
}

// BackupRetention is how many completed backups of an environment are
// kept, and for how long; 0 means no bound. The newest completed backup is
// always kept.
type BackupRetention struct {
	Count  int
	MaxAge time.Duration
}

// BackupResponse answers POST .../backups: the backup, and the operation
// that takes it (202 while it runs).
type BackupResponse struct {
	Backup    *Backup    `json:"backup"`
	Operation *Operation `json:"operation"`
}

// RestoreRequest is the body of POST .../environments/{env}/restore: one
// of BackupID or Timestamp (point in time, where the engine offers it),
// and Into, the slug of the new environment to restore into.
type RestoreRequest struct {
	BackupID  string     `json:"backup_id,omitempty"`
	Timestamp *time.Time `json:"timestamp,omitempty"`
	Into      string     `json:"into,omitempty"`
	// Type of the new environment; the backed-up environment's by default.
	Type EnvironmentType `json:"type,omitempty"`
}

// backupParams is a backup operation's input.
type backupParams struct {
	BackupID string `json:"backup_id"`
}

// restoreParams is a restore operation's input: a backup, or a point in
// time of the source database.
type restoreParams struct {
	BackupID         string     `json:"backup_id,omitempty"`
	SourceDatabaseID string     `json:"source_database_id"`
	At               *time.Time `json:"at,omitempty"`
}

// Backup and restore steps.
const (
	stepWriteBackup = "write_backup"
)

// CreateBackup starts a backup of the environment's database now (owner,
// admin, env_admin). The returned channel closes when the backup finishes
// here; the caller waits as long as it likes, then reads it with
// SettleBackup. ECONFLICT unless the environment is active, while another
// operation runs, or when its target cannot take backups; EUNAVAILABLE
// when no backup store is configured.
func (s *Service) CreateBackup(ctx context.Context, p *Principal, orgRef, envRef string) (*Backup, *Operation, <-chan struct{}, error) {
	ctx, a, err := s.envAccess(ctx, p, orgRef, envRef, ActBackupCreate)
	if err != nil {
		return nil, nil, nil, err
	}
	b, op, err := s.startBackup(ctx, p, a.env, BackupManual)
	if err != nil {
		return nil, nil, nil, err
	}
	return b, op, s.start(op), nil
}

// SettleBackup returns a backup and its operation as stored now.
func (s *Service) SettleBackup(ctx context.Context, b *Backup, op *Operation) (*BackupResponse, error) {
	// The operation came from a call that authorized its organization.
	ctx = WithOrgScope(ctx, op.OrgID)
	nb, err := s.Store.GetBackup(ctx, b.OrgID, b.ID)
	if err != nil {
		return nil, err
	}
	nop, err := s.Store.GetOperation(ctx, op.OrgID, op.ID)
	if err != nil {
		return nil, err
	}
	return &BackupResponse{Backup: nb, Operation: nop}, nil
}

// startBackup records a backup row and its operation, in one transaction,
// for the environment's database. It does not start the operation.
func (s *Service) startBackup(ctx context.Context, p *Principal, env *Environment, trigger BackupTrigger) (*Backup, *Operation, error) {
	if s.Backups == nil {
		return nil, nil, Errorf(EUNAVAILABLE, "backups are not configured")
	}
	db, t, err := s.databaseOf(ctx, env)
	if err != nil {
		return nil, nil, err
	}
	if _, ok := t.Driver.(drivers.BackerUp); !ok {
		return nil, nil, Errorf(ECONFLICT, "target %s (%s) cannot take backups", t.Name, t.Driver.Name())
	}
	var b *Backup
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
		id := s.NewID("bk")
		params, err := json.Marshal(backupParams{BackupID: id})
		if err != nil {
			return err
		}
		op = s.newOperation(env.OrgID, env.ID, OpBackup, stepWriteBackup, params)
		b = &Backup{ID: id, OrgID: env.OrgID, EnvironmentID: env.ID, DatabaseID: db.ID, Driver: db.Driver,
			Trigger: trigger, Status: BackupRunning, OperationID: op.ID, CreatedAt: s.Now()}
		if err := q.CreateBackup(ctx, b); err != nil {
			return err
		}
		if err := q.CreateOperation(ctx, op); err != nil {
			return err
		}
		return s.audit(ctx, q, p, env.OrgID, env.ID, "backup.started", id, map[string]any{"operation": op.ID, "trigger": string(trigger)})
	})
	if err != nil {
		return nil, nil, err
	}
	return b, op, nil
}

// ListBackups lists an environment's backups, newest first (owner, admin,
// env_admin). EMALFORMED for a cursor this API did not give out.
func (s *Service) ListBackups(ctx context.Context, p *Principal, orgRef, envRef string, page Page) ([]*Backup, string, error) {
	if err := page.Check(); err != nil {
		return nil, "", err
	}
	ctx, a, err := s.envAccess(ctx, p, orgRef, envRef, ActBackupRead)
	if err != nil {
		return nil, "", err
	}
	return s.Store.ListBackups(ctx, BackupFilter{OrgID: a.org.ID, EnvironmentID: a.env.ID}, page)
}

// backupStep runs a backup operation's one step: copy, seal and store,
// then record the backup completed. A retry writes the object again.
func (s *Service) backupStep(ctx context.Context, op *Operation) error {
	if op.Step != stepWriteBackup {
		return Errorf(EINTERNAL, "unknown backup step %q", op.Step)
	}
	var params backupParams
	if err := json.Unmarshal(op.Params, &params); err != nil {
		return fmt.Errorf("cannot read backup parameters: %w", err)
	}
	b, err := s.Store.GetBackup(ctx, op.OrgID, params.BackupID)
	if err != nil {
		return err
	}
	env, db, t, err := s.envAndDatabase(ctx, op)
	if err != nil {
		return err
	}
	if err := s.writeBackup(ctx, b, db, t); err != nil {
		return err
	}
	err = s.complete(ctx, op, func(q Queries) error {
		if err := q.UpdateBackup(ctx, b); err != nil {
			return err
		}
		return s.audit(ctx, q, nil, env.OrgID, env.ID, "backup.completed", b.ID,
			map[string]any{"operation": op.ID, "size_bytes": b.SizeBytes, "sha256": b.SHA256, "key_id": b.KeyID})
	})
	if err != nil {
		return err
	}
	s.pruneBackups(ctx, env)
	return nil
}

// writeBackup copies the database, seals the copy and stores it under
// b's id, and fills in b (completed, not saved). A retry writes the
// object again.
func (s *Service) writeBackup(ctx context.Context, b *Backup, db *Database, t *Target) error {
	bu, ok := t.Driver.(drivers.BackerUp)
	if !ok {
		return fmt.Errorf("cannot back up: %w", drivers.ErrUnsupported)
	}
	pr, pw := io.Pipe()
	var resp drivers.BackupResponse
	var key Sealed
	go func() {
		sw, sealed, err := SealBackup(ctx, s.Keyring, b.ID, pw)
		if err == nil {
			key = sealed
			resp, err = bu.BackupDatabase(ctx, drivers.BackupRequest{Database: db.DriverDatabase(), W: sw})
			if err == nil {
				err = sw.Close()
			}
		}
		pw.CloseWithError(err)
	}()
	sum := sha256.New()
	size, err := s.Backups.Put(ctx, b.ID, io.TeeReader(pr, sum))
	pr.CloseWithError(errors.New("the backup store stopped reading"))
	if err != nil {
		return fmt.Errorf("cannot store backup: %w", err)
	}
	// A key rotation and its rewrap may have run while the copy did: the
	// data key moves under the current version before the row is saved,
	// as a rewrap would have moved it (adr/0031).
	cur, err := s.Keyring.CurrentKeyID(ctx)
	if err != nil {
		return keyringUnavailable(err)
	}
	if key.KeyID != cur {
		if key, err = Rewrap(ctx, s.Keyring, key); err != nil {
			return keyringUnavailable(fmt.Errorf("cannot rewrap backup %s: %w", b.ID, err))
		}
	}
	now := s.Now()
	b.Status, b.Format, b.SizeBytes, b.SHA256 = BackupCompleted, resp.Format, size, hex.EncodeToString(sum.Sum(nil))
	b.KeyID, b.DEKCipher = key.KeyID, key.DEKCipher
	b.SchemaVersion, b.Tables, b.CompletedAt = db.SchemaVersion, resp.Tables, &now
	return nil
}

// failBackup records a backup operation's backup failed and removes
// whatever the store holds of it.
func (s *Service) failBackup(ctx context.Context, op *Operation) error {
	var params backupParams
	if err := json.Unmarshal(op.Params, &params); err != nil {
		return fmt.Errorf("cannot read backup parameters: %w", err)
	}
	b, err := s.Store.GetBackup(ctx, op.OrgID, params.BackupID)
	if err != nil {
		return err
	}
	if err := s.Backups.Delete(ctx, b.ID); err != nil {
		return err
	}
	b.Status, b.Error = BackupFailed, op.Error
	return s.Store.UpdateBackup(ctx, b)
}

// pruneBackups applies the environment type's retention: completed
// backups past the count or the age are removed, the newest always kept.
// The object goes first, then the row, so a failure half-way is finished
// by the next pass. Failures are logged.
func (s *Service) pruneBackups(ctx context.Context, env *Environment) {
	r, ok := s.BackupRetention[env.Type]
	if !ok || (r.Count <= 0 && r.MaxAge <= 0) {
		return
	}
	var all []*Backup
	page := Page{Limit: MaxPageLimit}
	for {
		bs, next, err := s.Store.ListBackups(ctx, BackupFilter{OrgID: env.OrgID, EnvironmentID: env.ID}, page)
		if err != nil {
			s.Logger.Error("cannot list backups for retention", "environment", env.ID, "err", err)
			return
		}
		all = append(all, bs...)
		if next == "" {
			break
		}
		page.Cursor = next
	}
	kept := 0
	for _, b := range all {
		if b.Status != BackupCompleted {
			continue
		}
		kept++
		tooMany := r.Count > 0 && kept > r.Count
		tooOld := r.MaxAge > 0 && s.Now().Sub(b.CreatedAt) > r.MaxAge
		if kept == 1 || (!tooMany && !tooOld) {
			continue
		}
		if err := s.Backups.Delete(ctx, b.ID); err != nil {
			s.Logger.Error("cannot delete backup past retention", "backup", b.ID, "err", err)
			continue
		}
		err := s.tx(ctx, func(q Queries) error {
			if err := q.DeleteBackup(ctx, b.OrgID, b.ID); err != nil {
				return err
			}
			return s.audit(ctx, q, nil, env.OrgID, env.ID, "backup.pruned", b.ID, map[string]any{"created_at": b.CreatedAt})
		})
		if err != nil {
			s.Logger.Error("cannot delete backup past retention", "backup", b.ID, "err", err)
		}
	}
}

// BackupDue starts the scheduled backups that are due: for each
// environment type with an interval in BackupSchedule, up to 10 active
// environments with no backup within the interval, on targets that can
// take backups and are up (chosen in the query, so environments elsewhere
// never fill a pass). An environment whose last scheduled backup failed
// waits RetryBackoff, and may hold its place in the next passes until
// then. It waits for the backups it started and returns how many.
func (s *Service) BackupDue(ctx context.Context) (int, error) {
	// Platform-wide background work: every organization's rows (ADR 0027).
	ctx = WithPlatformScope(ctx)
	if s.Backups == nil || len(s.BackupSchedule) == 0 {
		return 0, nil
	}
	now := s.Now()
	// Only targets that can take a backup and are up: the others' due
	// environments would fill every pass and starve the rest.
	var targets []string
	for _, name := range s.targetNames() {
		if _, ok := s.Targets[name].Driver.(drivers.BackerUp); ok && !s.targetDown(name) {
			targets = append(targets, name)
		}
	}
	started := 0
	var errs []error
	for _, typ := range environmentTypes() {
		every, ok := s.BackupSchedule[typ]
		if !ok || every <= 0 {
			continue
		}
		envs, err := s.Store.ListBackupsDue(ctx, typ, targets, now.Add(-every), 10)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, env := range envs {
			key := "backup:" + env.ID
			if !s.retry.due(key, now) {
				continue
			}
			_, op, err := s.startBackup(ctx, nil, env, BackupScheduled)
			if IsCode(err, ECONFLICT) {
				continue
			}
			if err != nil {
				s.retry.failed(key, now, s.RetryBackoff)
				s.Logger.Error("scheduled backup failed to start", "environment", env.ID, "err", err)
				continue
			}
			started++
			select {
			case <-s.start(op):
			case <-ctx.Done():
				return started, ctx.Err()
			}
			if done, err := s.Store.GetOperation(ctx, op.OrgID, op.ID); err == nil && done.Status == OpSucceeded {
				s.retry.succeeded(key)
			} else {
				s.retry.failed(key, s.Now(), s.RetryBackoff)
			}
		}
	}
	return started, errors.Join(errs...)
}

// RestoreEnvironment restores a backup of the environment, or its database
// as it was at req.Timestamp where the engine keeps history (Turso), into
// a new environment named req.Into (owner, admin), on the same target. The
// backup's stored bytes are checked against its checksum, and its data key
// unwrapped, before anything is made: a corrupt or truncated file, or one
// sealed under a retired key version, is refused (ECONFLICT) and nothing
// changes. Without Into the backup is restored in place (see
// restoreInPlace): the current state is kept as a pre_restore backup first.
// EINVALID naming the field for a bad body and for a timestamp on an
// engine that offers none or outside its recovery window; ECONFLICT for a
// protected environment's in-place restore; ENOTFOUND for a backup that is
// not this environment's.
// Like CreateEnvironment it returns a channel closed when the restore
// finishes here.
func (s *Service) RestoreEnvironment(ctx context.Context, p *Principal, orgRef, envRef string, req RestoreRequest) (*EnvironmentView, *Operation, <-chan struct{}, error) {
	if err := checkText(req); err != nil {
		return nil, nil, nil, err
	}
	ctx, a, err := s.envAccess(ctx, p, orgRef, envRef, ActBackupRestore)
	if err != nil {
		return nil, nil, nil, err
	}
	env := a.env
	var fields []FieldError
	if (req.BackupID == "") == (req.Timestamp == nil) {
		fields = append(fields, FieldError{Field: "backup_id", Message: "give either backup_id or timestamp"})
	}
	if req.Into != "" && !ValidSlug(req.Into) {
		fields = append(fields, FieldError{Field: "into", Message: "must match ^[a-z0-9][a-z0-9-]{0,62}$"})
	}
	if req.Type != "" && !req.Type.Valid() {
		fields = append(fields, FieldError{Field: "type", Message: "is not an environment type"})
	}
	if len(fields) > 0 {
		return nil, nil, nil, Invalid(fields...)
	}
	if req.Into == "" {
		if env.IsProtected {
			return nil, nil, nil, Errorf(ECONFLICT, "the environment is protected: restore into a new environment (into)")
		}
		if req.Timestamp != nil {
			return nil, nil, nil, Invalid(FieldError{Field: "into", Message: "is required with timestamp: a point in time is restored into a new environment"})
		}
		if req.Type != "" {
			return nil, nil, nil, Invalid(FieldError{Field: "type", Message: "is for a new environment (into)"})
		}
	}
	if req.Timestamp != nil {
		return s.restoreAt(ctx, p, a, req)
	}
	if s.Backups == nil {
		return nil, nil, nil, Errorf(EUNAVAILABLE, "backups are not configured")
	}
	b, err := s.Store.GetBackup(ctx, a.org.ID, req.BackupID)
	if IsCode(err, ENOTFOUND) || (err == nil && b.EnvironmentID != env.ID) {
		return nil, nil, nil, Errorf(ENOTFOUND, "backup not found")
	}
	if err != nil {
		return nil, nil, nil, err
	}
	if b.Status != BackupCompleted {
		return nil, nil, nil, Errorf(ECONFLICT, "backup %s is %s", b.ID, b.Status)
	}
	srcDB, err := s.Store.GetDatabase(ctx, b.DatabaseID)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := s.checkBackup(ctx, b); err != nil {
		return nil, nil, nil, err
	}
	if req.Into == "" {
		return s.restoreInPlace(ctx, p, a, b)
	}
	typ := req.Type
	if typ == "" {
		typ = env.Type
	}
	creq := CreateEnvironmentRequest{Slug: req.Into, Type: typ, Target: srcDB.Target, Description: "restored from backup " + b.ID}
	if t, ok := s.Targets[srcDB.Target]; !ok {
		return nil, nil, nil, Errorf(EUNAVAILABLE, "target %q is not configured", srcDB.Target)
	} else if _, ok := t.Driver.(drivers.BackerUp); !ok {
		return nil, nil, nil, Errorf(ECONFLICT, "target %s cannot restore backups", srcDB.Target)
	}
	return s.reserveRestore(ctx, p, a, creq, &cloneSource{env: env, db: srcDB, backup: b})
}

// restoreAt restores the environment's database as it was at
// req.Timestamp into a new environment, where the target's engine keeps
// history (drivers.PointInTimeRestorer); EINVALID naming timestamp, and
// what is possible, elsewhere or outside the engine's recovery window.
func (s *Service) restoreAt(ctx context.Context, p *Principal, a *access, req RestoreRequest) (*EnvironmentView, *Operation, <-chan struct{}, error) {
	env := a.env
	db, t, err := s.databaseOf(ctx, env)
	if err != nil {
		return nil, nil, nil, err
	}
	pitr, ok := t.Driver.(drivers.PointInTimeRestorer)
	if !ok {
		return nil, nil, nil, Invalid(FieldError{Field: "timestamp", Message: fmt.Sprintf(
			"point-in-time restore is offered on Turso targets only, not on target %s (%s): restore a backup by backup_id", t.Name, t.Driver.Name())})
	}
	at, now := req.Timestamp.UTC(), s.Now()
	if w := pitr.RecoveryWindow(); at.After(now) || at.Before(now.Add(-w)) {
		return nil, nil, nil, Invalid(FieldError{Field: "timestamp", Message: fmt.Sprintf(
			"must be within the last %s (target %s's recovery window), or restore a backup by backup_id", w, t.Name)})
	}
	if env.Status != StatusActive {
		return nil, nil, nil, Errorf(ECONFLICT, "the environment is %s", env.Status)
	}
	typ := req.Type
	if typ == "" {
		typ = env.Type
	}
	creq := CreateEnvironmentRequest{Slug: req.Into, Type: typ, Target: db.Target, Description: "restored from " + env.Slug + " as of " + at.Format(time.RFC3339)}
	return s.reserveRestore(ctx, p, a, creq, &cloneSource{env: env, db: db, at: &at})
}

// reserveRestore reserves the new environment of a restore and starts its
// operation; a taken slug is ECONFLICT naming into.
func (s *Service) reserveRestore(ctx context.Context, p *Principal, a *access, creq CreateEnvironmentRequest, src *cloneSource) (*EnvironmentView, *Operation, <-chan struct{}, error) {
	expires, expiryFields := s.creationExpiry(creq)
	if len(expiryFields) > 0 {
		return nil, nil, nil, Invalid(expiryFields...)
	}
	creq.ExpiresAt = expires
	var res *reservation
	err := s.tx(ctx, func(q Queries) error {
		var err error
		res, err = s.reserve(ctx, q, p, a.org, creq, false, src)
		var e *Error
		if IsCode(err, ECONFLICT) && errors.As(err, &e) && len(e.Fields) > 0 && e.Fields[0].Field == "slug" {
			return Invalid(FieldError{Field: "into", Message: "is taken in this organization"}).withCode(ECONFLICT)
		}
		return err
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return s.view(res.env, res.db), res.op, s.start(res.op), nil
}

// checkBackup reads a backup's stored bytes whole against its checksum
// and unwraps its data key: ECONFLICT naming what is wrong when either
// fails, so a restore of it is refused before anything changes.
func (s *Service) checkBackup(ctx context.Context, b *Backup) error {
	rc, err := s.Backups.Open(ctx, b.ID)
	if IsCode(err, ENOTFOUND) {
		return Errorf(ECONFLICT, "backup %s: its file is missing from the backup store", b.ID)
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	sum := sha256.New()
	n, err := io.Copy(sum, rc)
	if err != nil {
		return fmt.Errorf("cannot read backup %s: %w", b.ID, err)
	}
	if n != b.SizeBytes || hex.EncodeToString(sum.Sum(nil)) != b.SHA256 {
		return Errorf(ECONFLICT, "backup %s does not match its checksum (%d bytes stored, %d recorded): it is corrupt or truncated, and was not restored", b.ID, n, b.SizeBytes)
	}
	rc2, err := s.Backups.Open(ctx, b.ID)
	if err != nil {
		return err
	}
	defer rc2.Close()
	if _, err := OpenBackup(ctx, s.Keyring, b.ID, b.dataKey(), rc2); err != nil {
		if errors.Is(err, ErrBackupCorrupt) {
			return Errorf(ECONFLICT, "backup %s is corrupt: it does not open", b.ID)
		}
		return Errorf(ECONFLICT, "backup %s is sealed under key version %s, which the keyring cannot unwrap (retired, or the keyring is down): it cannot be restored", b.ID, b.KeyID).Wrap(err)
	}
	return nil
}

// restoreDatabase creates the restore operation's database from its
// backup: the stored bytes, opened and checked chunk by chunk, streamed
// into the target's RestoreDatabase.
func (s *Service) restoreDatabase(ctx context.Context, op *Operation, db *Database, t *Target) (drivers.CreateDatabaseResponse, error) {
	var params restoreParams
	if err := json.Unmarshal(op.Params, &params); err != nil {
		return drivers.CreateDatabaseResponse{}, fmt.Errorf("cannot read restore parameters: %w", err)
	}
	if params.At != nil {
		src, err := s.Store.GetDatabase(ctx, params.SourceDatabaseID)
		if err != nil {
			return drivers.CreateDatabaseResponse{}, err
		}
		pitr, ok := t.Driver.(drivers.PointInTimeRestorer)
		if !ok {
			return drivers.CreateDatabaseResponse{}, fmt.Errorf("cannot restore to a point in time: %w", drivers.ErrUnsupported)
		}
		resp, err := pitr.RestoreDatabaseAt(ctx, drivers.RestoreAtRequest{Name: db.Name, Region: db.Region, Source: src.DriverDatabase(), At: *params.At})
		if err != nil {
			return resp, fmt.Errorf("cannot restore database: %w", err)
		}
		return resp, nil
	}
	b, err := s.Store.GetBackup(ctx, op.OrgID, params.BackupID)
	if err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	return s.restoreFromBackup(ctx, b, db, t)
}

// restoreFromBackup creates db.Name on t from backup b: the stored bytes,
// opened and checked chunk by chunk, streamed into RestoreDatabase.
func (s *Service) restoreFromBackup(ctx context.Context, b *Backup, db *Database, t *Target) (drivers.CreateDatabaseResponse, error) {
	bu, ok := t.Driver.(drivers.BackerUp)
	if !ok {
		return drivers.CreateDatabaseResponse{}, fmt.Errorf("cannot restore: %w", drivers.ErrUnsupported)
	}
	rc, err := s.Backups.Open(ctx, b.ID)
	if err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	defer rc.Close()
	plain, err := OpenBackup(ctx, s.Keyring, b.ID, b.dataKey(), rc)
	if err != nil {
		return drivers.CreateDatabaseResponse{}, fmt.Errorf("cannot open backup %s: %w", b.ID, err)
	}
	resp, err := bu.RestoreDatabase(ctx, drivers.RestoreRequest{Name: db.Name, Region: db.Region, Format: b.Format, R: plain})
	if err != nil {
		return resp, fmt.Errorf("cannot restore database: %w", err)
	}
	return resp, nil
}

// adoptRestore makes a restored database name its new environment and
// verifies it against its backup before it is called done: the owner row
// and the ledger (dataplane Verify: at least the backup's schema version,
// envplane's own migrations untouched) and the row count of every table
// the backup counted. A mismatch fails the step (and, after the retries,
// the restore, which drops the database).
func (s *Service) adoptRestore(ctx context.Context, op *Operation, env *Environment, db *Database, t *Target) error {
	var params restoreParams
	if err := json.Unmarshal(op.Params, &params); err != nil {
		return fmt.Errorf("cannot read restore parameters: %w", err)
	}
	// A point in time has no backup row: its schema version and row
	// counts are unknown, and only the owner row and ledger are verified.
	b := &Backup{}
	if params.BackupID != "" {
		var err error
		if b, err = s.Store.GetBackup(ctx, op.OrgID, params.BackupID); err != nil {
			return err
		}
	}
	conn, err := s.openAdmin(ctx, db, t)
	if err != nil {
		return err
	}
	defer conn.DB.Close()
	return s.verifyRestored(ctx, conn, dataplane.Owner{EnvironmentID: env.ID, OrgID: env.OrgID}, b)
}

// verifyRestored makes the restored database behind conn name owner, then
// verifies it against b: dataplane Verify (owner row, envplane's
// migrations, at least b's schema version) and the row count of every
// table b counted. ECONFLICT naming what does not hold.
func (s *Service) verifyRestored(ctx context.Context, conn drivers.OpenResponse, owner dataplane.Owner, b *Backup) error {
	// The copy carries its ledger: Rebind reads no other source.
	if err := s.Schema.Rebind(ctx, conn.DB, conn.Dialect, conn.DB, owner); err != nil {
		return fmt.Errorf("cannot adopt the restored database: %w", err)
	}
	if err := s.Schema.Verify(ctx, conn.DB, conn.Dialect, dataplane.Expected{Owner: owner, SchemaVersion: b.SchemaVersion}); err != nil {
		return Errorf(ECONFLICT, "the restored database does not verify: %s", err.Error()).Wrap(err)
	}
	for table, want := range b.Tables {
		got, err := countTable(ctx, conn.DB, conn.Dialect, table)
		if err != nil {
			return fmt.Errorf("cannot count rows of restored table: %w", err)
		}
		if got != want {
			return Errorf(ECONFLICT, "the restored table %s holds %d rows, the backup %d", table, got, want)
		}
	}
	return nil
}

// countTable counts a table's rows. The name comes from a backup's own
// count, and is quoted as an identifier.
func countTable(ctx context.Context, db *sql.DB, d drivers.Dialect, table string) (int64, error) {
	quoted := `"` + strings.ReplaceAll(table, `"`, `""`) + `"`
	if d == drivers.DialectPostgres {
		quoted = "public." + quoted
	}
	var n int64
	err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+quoted).Scan(&n)
	return n, err
}
