package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/envplane/envplane/controlplane"
)

const backupColumns = `id, org_id, environment_id, database_id, driver, format, trigger, status, size_bytes, sha256,
	key_id, dek_cipher, schema_version, tables, operation_id, error, created_at, completed_at`

func scanBackup(s scanner) (*controlplane.Backup, error) {
	var b controlplane.Backup
	var tables []byte
	var trigger, status string
	if err := s.Scan(&b.ID, &b.OrgID, &b.EnvironmentID, &b.DatabaseID, &b.Driver, &b.Format, &trigger, &status,
		&b.SizeBytes, &b.SHA256, &b.KeyID, &b.DEKCipher, &b.SchemaVersion, &tables, &b.OperationID, &b.Error, tm(&b.CreatedAt), tmPtr(&b.CompletedAt)); err != nil {
		return nil, err
	}
	t, err := decodeJSON[map[string]int64](tables)
	if err != nil {
		return nil, err
	}
	b.Trigger, b.Status, b.Tables = controlplane.BackupTrigger(trigger), controlplane.BackupStatus(status), t
	return &b, nil
}

// CreateBackup inserts b, truncating its times to microseconds. ECONFLICT
// if the id exists; ENOTFOUND if the environment is not the organization's.
func (q *queries) CreateBackup(ctx context.Context, b *controlplane.Backup) error {
	b.CreatedAt, b.CompletedAt = utc(b.CreatedAt), utcPtr(b.CompletedAt)
	tables, err := encodeJSON(b.Tables)
	if err != nil {
		return err
	}
	_, err = q.db.ExecContext(ctx, `INSERT INTO backups (`+backupColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)`,
		b.ID, b.OrgID, b.EnvironmentID, b.DatabaseID, b.Driver, b.Format, string(b.Trigger), string(b.Status),
		b.SizeBytes, b.SHA256, b.KeyID, b.DEKCipher, b.SchemaVersion, tables, b.OperationID, b.Error, b.CreatedAt, b.CompletedAt)
	if err != nil {
		return q.writeErr(err, "create backup", "backup exists", "environment not found")
	}
	return nil
}

// UpdateBackup saves what a backup's operation learnt. ENOTFOUND if absent.
func (q *queries) UpdateBackup(ctx context.Context, b *controlplane.Backup) error {
	b.CompletedAt = utcPtr(b.CompletedAt)
	tables, err := encodeJSON(b.Tables)
	if err != nil {
		return err
	}
	tag, err := q.db.ExecContext(ctx, `UPDATE backups SET status = $1, format = $2, size_bytes = $3, sha256 = $4, key_id = $5,
		dek_cipher = $6, schema_version = $7, tables = $8, error = $9, completed_at = $10 WHERE org_id = $11 AND id = $12`,
		string(b.Status), b.Format, b.SizeBytes, b.SHA256, b.KeyID, b.DEKCipher, b.SchemaVersion, tables, b.Error, b.CompletedAt, b.OrgID, b.ID)
	if err != nil {
		return q.writeErr(err, "update backup", "backup conflict", "backup not found")
	}
	return mustAffect(tag, "backup not found")
}

// GetBackup finds a backup of the organization. ENOTFOUND if absent or another organization's.
func (q *queries) GetBackup(ctx context.Context, orgID, id string) (*controlplane.Backup, error) {
	b, err := scanBackup(q.db.QueryRowContext(ctx, `SELECT `+backupColumns+` FROM backups WHERE org_id = $1 AND id = $2`, orgID, id))
	if err != nil {
		return nil, readErr(err, "get backup", "backup not found")
	}
	return b, nil
}

// ListBackups lists backups newest first; the cursor is the id below which
// the page starts. EINVALID without an organization.
func (q *queries) ListBackups(ctx context.Context, f controlplane.BackupFilter, p controlplane.Page) ([]*controlplane.Backup, string, error) {
	if f.OrgID == "" {
		return nil, "", controlplane.Errorf(controlplane.EINVALID, "backup filter needs an organization")
	}
	n := controlplane.PageLimit(p.Limit)
	var a args
	where := "org_id = " + a.add(f.OrgID)
	if f.EnvironmentID != "" {
		where += " AND environment_id = " + a.add(f.EnvironmentID)
	}
	if f.Status != "" {
		where += " AND status = " + a.add(string(f.Status))
	}
	if p.Cursor != "" {
		where += " AND id < " + a.add(p.Cursor)
	}
	bs, err := queryAll(ctx, q.db, `SELECT `+backupColumns+` FROM backups WHERE `+where+` ORDER BY id DESC LIMIT `+a.add(n+1), a, scanBackup)
	if err != nil {
		return nil, "", fmt.Errorf("cannot list backups: %w", err)
	}
	bs, next := cutPage(bs, n, func(b *controlplane.Backup) string { return b.ID })
	return bs, next, nil
}

// DeleteBackup removes a backup's row; absent is success.
func (q *queries) DeleteBackup(ctx context.Context, orgID, id string) error {
	if _, err := q.db.ExecContext(ctx, `DELETE FROM backups WHERE org_id = $1 AND id = $2`, orgID, id); err != nil {
		return fmt.Errorf("cannot delete backup: %w", err)
	}
	return nil
}

// RewrapBackup replaces the wrapped data key and key id of a completed
// backup while its stored key id is fromKeyID.
func (q *queries) RewrapBackup(ctx context.Context, b *controlplane.Backup, fromKeyID string) error {
	tag, err := q.db.ExecContext(ctx, `UPDATE backups SET key_id = $1, dek_cipher = $2
		WHERE org_id = $3 AND id = $4 AND status = 'completed' AND key_id = $5`, b.KeyID, b.DEKCipher, b.OrgID, b.ID, fromKeyID)
	if err != nil {
		return q.writeErr(err, "rewrap backup", "backup conflicts", "backup not found")
	}
	if err := mustAffect(tag, "backup not found"); err != nil {
		if _, gerr := q.GetBackup(ctx, b.OrgID, b.ID); gerr == nil {
			return controlplane.Errorf(controlplane.ECONFLICT, "the backup's key changed meanwhile")
		}
		return err
	}
	return nil
}

// ListBackupsByKey lists up to limit completed backups whose data key is
// wrapped under a key other than notKeyID, by id.
func (q *queries) ListBackupsByKey(ctx context.Context, notKeyID string, limit int) ([]*controlplane.Backup, error) {
	bs, err := queryAll(ctx, q.db, `SELECT `+backupColumns+` FROM backups
		WHERE status = 'completed' AND key_id <> $1 ORDER BY id LIMIT $2`,
		[]any{notKeyID, controlplane.PageLimit(limit)}, scanBackup)
	if err != nil {
		return nil, fmt.Errorf("cannot list backups by key: %w", err)
	}
	return bs, nil
}

// CountBackupsByKey counts the completed backups per key_id.
func (q *queries) CountBackupsByKey(ctx context.Context) (map[string]int, error) {
	counts, err := queryCounts(ctx, q.db, `SELECT key_id, count(*) FROM backups WHERE status = 'completed' GROUP BY key_id`)
	if err != nil {
		return nil, fmt.Errorf("cannot count backups: %w", err)
	}
	return counts, nil
}

// CountRunningBackups counts the backups still running.
func (q *queries) CountRunningBackups(ctx context.Context) (int, error) {
	var n int
	if err := q.db.QueryRowContext(ctx, `SELECT count(*) FROM backups WHERE status = 'running'`).Scan(&n); err != nil {
		return 0, fmt.Errorf("cannot count running backups: %w", err)
	}
	return n, nil
}

// ListBackupsDue lists active environments of type t with no running or
// completed backup created after since, the longest waiting first.
func (q *queries) ListBackupsDue(ctx context.Context, t controlplane.EnvironmentType, targets []string, since time.Time, limit int) ([]*controlplane.Environment, error) {
	if len(targets) == 0 {
		return []*controlplane.Environment{}, nil
	}
	a := args{string(t), utc(since)}
	targetIn := q.d.in(&a, targets)
	// last_backup_at (migration 00011) is the newest backup that did not
	// fail, kept by triggers: the index environments_backup_due reads only
	// the environments due, in its order: the longest waiting first.
	envs, err := queryAll(ctx, q.db, `SELECT `+envColumns+` FROM environments e
		WHERE e.status = 'active' AND e.type = $1 AND e.last_backup_at <= $2 AND e.target `+targetIn+`
		ORDER BY e.last_backup_at, e.id LIMIT `+a.add(controlplane.PageLimit(limit)), a, scanEnv)
	if err != nil {
		return nil, fmt.Errorf("cannot list environments due for backup: %w", err)
	}
	return envs, nil
}

// RenameDatabase saves the database's name, url and metadata.
func (q *queries) RenameDatabase(ctx context.Context, d *controlplane.Database) error {
	metadata, err := encodeJSON(d.Metadata)
	if err != nil {
		return err
	}
	tag, err := q.db.ExecContext(ctx, `UPDATE environment_databases SET database_name = $1, url = $2, metadata = $3 WHERE id = $4`,
		d.Name, d.URL, metadata, d.ID)
	if err != nil {
		return q.writeErr(err, "rename database", "database name taken", "database not found")
	}
	return mustAffect(tag, "database not found")
}
