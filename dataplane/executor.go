package dataplane

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/envplane/envplane/drivers"
)

// executor applies one migration together with its ledger row, as atomically
// as its engine allows. It is the seam between the initializer, which decides
// what to run, and the engines, which differ in how a migration and its ledger
// row can be made one unit: database/sql transactions on SQLite and
// PostgreSQL (txExecutor, here), one statement batch on libSQL (libsql.go).
type executor interface {
	// apply runs m.sql and inserts m's ledger row. It returns ran=false,
	// without running anything, when the ledger already holds m (another
	// runner got there first). On error the ledger holds no row for m.
	apply(ctx context.Context, db *sql.DB, d drivers.Dialect, m migration) (ran bool, err error)
}

// executorFor picks the executor for a dialect; an unknown dialect is
// drivers.ErrUnsupported.
func executorFor(d drivers.Dialect) (executor, error) {
	switch d {
	case drivers.DialectSQLite, drivers.DialectPostgres:
		return txExecutor{}, nil
	case drivers.DialectLibSQL:
		return libsqlExecutor{}, nil
	}
	return nil, fmt.Errorf("schema initializer: dialect %q: %w", d, drivers.ErrUnsupported)
}

// txExecutor runs each migration in a database/sql transaction with its
// ledger row. Both SQLite and PostgreSQL roll DDL back with the transaction,
// so a failing migration leaves nothing behind.
type txExecutor struct{}

func (txExecutor) apply(ctx context.Context, db *sql.DB, d drivers.Dialect, m migration) (bool, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("cannot begin: %w", err)
	}
	defer tx.Rollback()
	if d == drivers.DialectPostgres {
		if err := lockLedger(ctx, tx); err != nil {
			return false, err
		}
	}
	if done, err := recorded(ctx, tx, d, m); err != nil || done {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, insertLedgerSQL(d), ledgerArgs(m.Migration)...); err != nil {
		return false, fmt.Errorf("cannot record the migration in the ledger: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("cannot commit: %w", err)
	}
	return true, nil
}
