package dataplane

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/envplane/envplane/drivers"
)

// libsqlExecutor applies a migration on libSQL (Turso), where a database/sql
// transaction is not available: Hrana over HTTP has no interactive
// transactions on tursodb, and on Turso a transaction lives only as long as a
// stream. So the migration and its ledger row travel as one Exec of
// "BEGIN; <ledger row>; <migration>; COMMIT", which libsql-client-go sends as
// one Hrana batch whose steps each run only if the previous one succeeded,
// ending with a ROLLBACK when the COMMIT did not run. A failing statement
// leaves neither effects nor a ledger row.
//
// The ledger row comes first: a runner that raced another one to the same
// migration fails on the ledger's primary key before running any of it, and
// then finds the row and reports the migration as someone else's (ran=false).
// The row is written with literals, not bind parameters: the client would
// otherwise have to share the parameters out among the migration's statements.
type libsqlExecutor struct{}

func (libsqlExecutor) apply(ctx context.Context, db *sql.DB, d drivers.Dialect, m migration) (bool, error) {
	if done, err := recorded(ctx, db, d, m); err != nil || done {
		return false, err
	}
	err := runBatch(ctx, db, libsqlBatch(m))
	if err == nil {
		return true, nil
	}
	if done, lerr := recorded(ctx, db, d, m); lerr == nil && done {
		return false, nil
	}
	return false, err
}

// rowQuerier is a *sql.DB or a *sql.Tx.
type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// recorded reports whether the ledger has a row for m.
func recorded(ctx context.Context, q rowQuerier, d drivers.Dialect, m migration) (bool, error) {
	var n int
	query := fmt.Sprintf(`SELECT count(*) FROM %s WHERE namespace = %s AND version = %s`, LedgerTable, d.Placeholder(1), d.Placeholder(2))
	if err := q.QueryRowContext(ctx, query, m.Namespace, m.Version).Scan(&n); err != nil {
		return false, fmt.Errorf("cannot read the migration ledger: %w", err)
	}
	return n > 0, nil
}

// staleConnections bounds how many pooled connections runBatch discards
// before giving up: libsql-client-go reports a connection whose Hrana stream
// the server closed as driver.ErrBadConn before sending anything, and
// database/sql does not retry a pinned connection by itself.
const staleConnections = 4

// runBatch runs the batch on one pinned connection, so that the ROLLBACK
// after a failure reaches the session that ran it. libsql-client-go's batch
// has rolled back already; a client that stops at the failing statement
// instead (a plain SQLite driver) leaves the transaction open, and the
// ROLLBACK closes it before the connection returns to the pool.
func runBatch(ctx context.Context, db *sql.DB, batch string) error {
	for attempt := 1; ; attempt++ {
		conn, err := db.Conn(ctx)
		if err != nil {
			return fmt.Errorf("cannot connect: %w", err)
		}
		_, err = conn.ExecContext(ctx, batch)
		stale := errors.Is(err, driver.ErrBadConn)
		if err != nil && !stale {
			// "No transaction is active" is the expected answer; ignore it.
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
		// Closing after ErrBadConn discards the connection instead of pooling it.
		conn.Close()
		if stale && attempt < staleConnections {
			continue
		}
		return err
	}
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
	fmt.Fprintf(&b, "INSERT INTO %s (namespace, version, name, checksum, applied_at) VALUES (%s);\n",
		LedgerTable, strings.Join(values, ", "))
	b.WriteString(m.sql)
	// A file whose last line is a comment must not swallow the COMMIT.
	b.WriteString("\n;\n")
	b.WriteString("COMMIT;\n")
	return b.String()
}
