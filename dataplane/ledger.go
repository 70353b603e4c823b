package dataplane

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/envplane/envplane/drivers"
)

// ledgerSchema is portable across SQLite, libSQL and PostgreSQL. applied_at is
// RFC 3339 text, which every engine stores and returns unchanged.
const ledgerSchema = `CREATE TABLE IF NOT EXISTS ` + LedgerTable + ` (
	namespace  TEXT   NOT NULL,
	version    BIGINT NOT NULL,
	name       TEXT   NOT NULL,
	checksum   TEXT   NOT NULL,
	applied_at TEXT   NOT NULL,
	PRIMARY KEY (namespace, version)
)`

// createLedger creates the ledger when absent. PostgreSQL's CREATE TABLE IF
// NOT EXISTS is not safe against a concurrent twin, so there it runs under the
// same advisory lock that serializes migrations.
func createLedger(ctx context.Context, db *sql.DB, d drivers.Dialect) error {
	if d != drivers.DialectPostgres {
		if _, err := db.ExecContext(ctx, ledgerSchema); err != nil {
			return fmt.Errorf("cannot create migration ledger: %w", err)
		}
		return nil
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cannot create migration ledger: %w", err)
	}
	defer tx.Rollback()
	if err := lockLedger(ctx, tx); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, ledgerSchema); err != nil {
		return fmt.Errorf("cannot create migration ledger: %w", err)
	}
	// In the creating transaction, so no app ever holds a right on it.
	if _, err := tx.ExecContext(ctx, secureSystemStatement); err != nil {
		return fmt.Errorf("cannot secure the migration ledger: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cannot create migration ledger: %w", err)
	}
	return nil
}

// secureSystemStatement revokes, on PostgreSQL, every privilege that anyone
// but its owner holds on the _envplane_* tables of the current schemas,
// except SELECT on the meta table for a grantee that holds nothing else on it
// (the readonly scope, which may read whose the database is). The driver's
// default privileges give readwrite and readonly rights on every table the
// owner creates, these included; apps need no more. It is idempotent and
// repairs databases initialized before it existed.
const secureSystemStatement = `DO $$
DECLARE r record;
BEGIN
	FOR r IN
		SELECT c.oid::regclass AS rel, a.grantee
		FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
		WHERE n.nspname = ANY (pg_catalog.current_schemas(false))
		  AND c.relname LIKE '\_envplane\_%'
		  AND a.grantee <> c.relowner
		GROUP BY c.oid, c.relname, a.grantee
		HAVING c.relname <> '` + MetaTable + `' OR bool_or(a.privilege_type <> 'SELECT')
	LOOP
		IF r.grantee = 0 THEN
			EXECUTE pg_catalog.format('REVOKE ALL ON %s FROM PUBLIC', r.rel);
		ELSE
			EXECUTE pg_catalog.format('REVOKE ALL ON %s FROM %I', r.rel, pg_catalog.pg_get_userbyid(r.grantee));
		END IF;
	END LOOP;
END $$`

// secureSystemTables leaves the system tables to their owner where the
// engine can refuse everyone else (PostgreSQL). SQLite and libSQL cannot:
// there tampering is detected instead (tampering, Verify).
func secureSystemTables(ctx context.Context, db *sql.DB, d drivers.Dialect) error {
	if d != drivers.DialectPostgres {
		return nil
	}
	if _, err := db.ExecContext(ctx, secureSystemStatement); err != nil {
		return fmt.Errorf("cannot secure the system tables: %w", err)
	}
	return nil
}

// lockLedger serializes PostgreSQL runners on one database (a fleet upgrade
// meeting a provisioning retry) until tx ends.
func lockLedger(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, LedgerTable); err != nil {
		return fmt.Errorf("cannot lock the migration ledger: %w", err)
	}
	return nil
}

// insertLedgerSQL records one applied migration; its arguments are
// ledgerArgs(m).
func insertLedgerSQL(d drivers.Dialect) string {
	return fmt.Sprintf("INSERT INTO %s (namespace, version, name, checksum, applied_at) VALUES (%s, %s, %s, %s, %s)",
		LedgerTable, d.Placeholder(1), d.Placeholder(2), d.Placeholder(3), d.Placeholder(4), d.Placeholder(5))
}

func ledgerArgs(m Migration) []any {
	return []any{m.Namespace, m.Version, m.Name, m.Checksum, m.AppliedAt.UTC().Format(time.RFC3339Nano)}
}

// readLedger returns every ledger row by namespace and version.
func readLedger(ctx context.Context, db *sql.DB) (map[key]Migration, error) {
	rows, err := db.QueryContext(ctx, `SELECT namespace, version, name, checksum, applied_at FROM `+LedgerTable)
	if err != nil {
		return nil, unreadable(ctx, db, LedgerTable, err)
	}
	defer rows.Close()
	out := map[key]Migration{}
	for rows.Next() {
		var (
			m  Migration
			at string
		)
		if err := rows.Scan(&m.Namespace, &m.Version, &m.Name, &m.Checksum, &at); err != nil {
			return nil, unreadable(ctx, db, LedgerTable, err)
		}
		if m.AppliedAt, err = time.Parse(time.RFC3339Nano, at); err != nil {
			// The initializer writes RFC 3339 only: another value was
			// written by someone else.
			return nil, &TamperError{Problems: []string{"a ledger row has a malformed applied_at"}}
		}
		m.File = fmt.Sprintf("%04d_%s.sql", m.Version, m.Name)
		out[keyOf(m)] = m
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot read migration ledger: %w", err)
	}
	return out, nil
}

// tableExists reports whether the table is visible on the connection.
func tableExists(ctx context.Context, db *sql.DB, d drivers.Dialect, table string) (bool, error) {
	q := `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`
	if d == drivers.DialectPostgres {
		q = `SELECT count(*) FROM pg_catalog.pg_tables WHERE tablename = $1 AND schemaname = ANY (current_schemas(false))`
	}
	var n int
	if err := db.QueryRowContext(ctx, q, table).Scan(&n); err != nil {
		return false, fmt.Errorf("cannot look for table %s: %w", table, err)
	}
	return n > 0, nil
}

// readOwner returns the meta row's owner; ok is false when the meta table or
// its row does not exist yet.
func readOwner(ctx context.Context, db *sql.DB, d drivers.Dialect) (owner Owner, ok bool, err error) {
	exists, err := tableExists(ctx, db, d, MetaTable)
	if err != nil || !exists {
		return Owner{}, false, err
	}
	err = db.QueryRowContext(ctx, `SELECT environment_id, org_id FROM `+MetaTable+` WHERE id = 1`).
		Scan(&owner.EnvironmentID, &owner.OrgID)
	if errors.Is(err, sql.ErrNoRows) {
		return Owner{}, false, nil
	}
	if err != nil {
		return Owner{}, false, unreadable(ctx, db, MetaTable, err)
	}
	return owner, true, nil
}

// unreadable explains a failed read of one of the initializer's tables: if
// the database still answers, the table no longer has the shape or the
// values the initializer gave it (a column dropped or renamed, a version
// that is not a number), which is tampering; otherwise it is the
// connection's failure, returned as such.
func unreadable(ctx context.Context, db *sql.DB, table string, err error) error {
	if pingErr := db.PingContext(ctx); pingErr != nil {
		return fmt.Errorf("cannot read %s: %w: %w", table, drivers.ErrUnavailable, err)
	}
	return &TamperError{Problems: []string{table + " cannot be read as the initializer wrote it"}}
}

// claimOwner writes the meta row when it is absent and checks, after, that it
// names owner: two runners racing for one database cannot both win.
func claimOwner(ctx context.Context, db *sql.DB, d drivers.Dialect, owner Owner, now time.Time) error {
	q := fmt.Sprintf(`INSERT INTO %s (id, environment_id, org_id, created_at) VALUES (1, %s, %s, %s) ON CONFLICT (id) DO NOTHING`,
		MetaTable, d.Placeholder(1), d.Placeholder(2), d.Placeholder(3))
	if _, err := db.ExecContext(ctx, q, owner.EnvironmentID, owner.OrgID, now.Format(time.RFC3339Nano)); err != nil {
		return fmt.Errorf("cannot record the database's owner: %w", err)
	}
	got, ok, err := readOwner(ctx, db, d)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("cannot record the database's owner: %s has no row after the insert", MetaTable)
	}
	if got != owner {
		return &OwnerMismatchError{Want: owner, Got: got}
	}
	return nil
}
