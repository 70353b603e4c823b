package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	sqlitedriver "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/envplane/envplane/controlplane"
)

// SQLite is the dialect of modernc.org/sqlite: one writer at a time (every
// transaction begins IMMEDIATE), so claims and counts that PostgreSQL locks
// rows for are serialized already, and a statement cache, since SQLite
// plans every statement it is given.
func SQLite() Dialect { return sqliteDialect{} }

type sqliteDialect struct{}

func (sqliteDialect) classify(err error) violation {
	var se *sqlitedriver.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return uniqueViolation
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return foreignKeyViolation
		case sqlite3.SQLITE_CONSTRAINT_CHECK:
			return checkViolation
		}
	}
	return noViolation
}

// in passes the values as one JSON array that SQLite unpacks, so the
// statement cache holds one statement per call site.
func (sqliteDialect) in(a *args, values []string) string {
	b, _ := json.Marshal(values) // a slice of strings always marshals
	return "IN (SELECT value FROM json_each(" + a.add(string(b)) + "))"
}

func (sqliteDialect) forUpdate() string { return "" }

// skipLocked is empty: a claim is one UPDATE, which takes the single write
// lock, so concurrent claimers are serialized and never get the same row.
func (sqliteDialect) skipLocked(string) string { return "" }

func (sqliteDialect) greatest() string { return "max" }

// routeCredentialJoin uses INDEXED BY to keep the credential lookup on
// (database_id, status): a database keeps every credential it ever had, and
// the (database_id, issued_at) index, which also yields the order, would
// walk all of them to find the one active.
func (sqliteDialect) routeCredentialJoin() string {
	return `
	LEFT JOIN database_credentials c ON c.id = (
		SELECT id FROM database_credentials INDEXED BY database_credentials_database_status
		WHERE database_id = d.id AND status = 'active' AND scope = $2
		ORDER BY issued_at DESC, id DESC LIMIT 1)`
}

// appendChange lets the INTEGER PRIMARY KEY number the change. A writer
// holds the database's write lock from its first write to its commit, so
// changes commit in seq order.
func (sqliteDialect) appendChange() string {
	return `INSERT INTO changes (org_id, reason, created_at) VALUES ($1, $2, $3) RETURNING seq`
}

// recordReceipts passes the whole batch as one JSON argument, so the
// statement text is the same for every batch (one cached statement); it
// costs less than one prepared insert per receipt in a transaction.
// jsonb_each hands each row over as JSONB, which ->> reads without parsing
// it again.
func (sqliteDialect) recordReceipts(ctx context.Context, q *queries, rs []*controlplane.Receipt) error {
	rows := make([][]any, len(rs))
	for i, r := range rs {
		rows[i] = []any{r.ID, r.OrgID, r.EnvironmentID, r.KeyID, nullString(r.UserID), string(r.Scope), r.CredentialID,
			r.KeyVersion, r.Replica, r.FirstAt.Truncate(time.Minute).UnixMicro(), r.FirstAt.UnixMicro(), r.LastAt.UnixMicro(), r.Count}
	}
	batch, err := json.Marshal(rows)
	if err != nil {
		return fmt.Errorf("cannot encode receipts: %w", err)
	}
	// The SELECT needs its WHERE: without one, SQLite would read ON CONFLICT
	// as a join's ON.
	_, err = q.db.ExecContext(ctx, `INSERT INTO router_receipts (id, org_id, environment_id, key_id, user_id, scope,
			credential_id, key_version, replica, bucket, first_at, last_at, count)
		SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6,
			value ->> 7, value ->> 8, value ->> 9, value ->> 10, value ->> 11, value ->> 12
		FROM jsonb_each($1) WHERE true
		ON CONFLICT (environment_id, key_id, scope, credential_id, key_version, replica, bucket) DO UPDATE SET
			count = router_receipts.count + excluded.count,
			first_at = min(router_receipts.first_at, excluded.first_at),
			last_at = max(router_receipts.last_at, excluded.last_at)`, string(batch))
	return err
}

// insertRolloutItems inserts the items one by one, each a cached statement
// in the caller's write transaction.
func (sqliteDialect) insertRolloutItems(ctx context.Context, q *queries, rolloutID string, items []*controlplane.RolloutItem) error {
	for _, it := range items {
		_, err := q.db.ExecContext(ctx, `INSERT INTO rollout_items (`+rolloutItemColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
			rolloutID, it.EnvironmentID, it.OrgID, it.Environment, string(it.Type), it.Phase, it.Position, string(it.Status),
			it.Reason, it.OperationID, it.SchemaVersion, it.UpdatedAt)
		if err != nil {
			return err
		}
	}
	return nil
}

func (sqliteDialect) cachesStatements() bool { return true }

func (sqliteDialect) rowSecurity() bool { return false }

func (sqliteDialect) oneWriter() bool { return true }
