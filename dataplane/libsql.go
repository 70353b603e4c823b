package dataplane

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"github.com/envplane/envplane/drivers"
)

// libsqlExecutor applies a migration on libSQL (Turso), where a database/sql
// transaction is not available: the migration's statements and its ledger row
// travel as one batch, BEGIN first and COMMIT last. libsql-client-go splits a
// multi-statement Exec into a batch whose steps each run only if the previous
// one succeeded, and which ends with a ROLLBACK when the last step did not, so
// a failing statement leaves neither effects nor a ledger row.
//
// The ledger row is written with literals, not bind parameters: the client
// would otherwise have to share the parameters out among the migration's own
// statements.
type libsqlExecutor struct{}

func (libsqlExecutor) apply(ctx context.Context, db *sql.DB, _ drivers.Dialect, m migration) (bool, error) {
	var n int
	q := `SELECT count(*) FROM ` + LedgerTable + ` WHERE namespace = ? AND version = ?`
	if err := db.QueryRowContext(ctx, q, m.Namespace, m.Version).Scan(&n); err != nil {
		return false, fmt.Errorf("cannot read the migration ledger: %w", err)
	}
	if n > 0 {
		return false, nil
	}
	// One pinned connection, so that the ROLLBACK below reaches the session
	// that ran the batch.
	conn, err := db.Conn(ctx)
	if err != nil {
		return false, fmt.Errorf("cannot connect: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, libsqlBatch(m)); err != nil {
		// libsql-client-go's batch has rolled back already; a client that
		// stops at the failing statement instead leaves the transaction
		// open. Either way nothing of the migration may stay, and a
		// "no transaction is active" answer is fine to ignore.
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		return false, err
	}
	return true, nil
}

// libsqlBatch is the migration wrapped with its ledger row in one transaction.
func libsqlBatch(m migration) string {
	args := ledgerArgs(m.Migration)
	values := make([]string, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case int64:
			values[i] = strconv.FormatInt(v, 10)
		case string:
			values[i] = "'" + strings.ReplaceAll(v, "'", "''") + "'"
		}
	}
	var b strings.Builder
	b.WriteString("BEGIN;\n")
	b.WriteString(m.sql)
	// A file whose last line is a comment must not swallow the ledger insert.
	b.WriteString("\n;\n")
	fmt.Fprintf(&b, "INSERT INTO %s (namespace, version, name, checksum, applied_at) VALUES (%s);\n",
		LedgerTable, strings.Join(values, ", "))
	b.WriteString("COMMIT;\n")
	return b.String()
}
