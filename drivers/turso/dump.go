package turso

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/envplane/envplane/drivers"
)

// Reading a database's objects and rows over libSQL and writing them as SQL
// text, shared by a reset's swap and a backup's dump.

// querier is what the readers need: a pool, a connection or a transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// object is one entry of sqlite_schema.
type object struct{ kind, name, sql string }

// readObjects lists the database's tables, indexes, views and triggers in
// creation order (every object's dependencies first), the engine's own
// objects (SQLite's, libSQL's, tursodb's __turso_internal_ ones, which it
// makes itself for AUTOINCREMENT) and automatic indexes excepted.
func readObjects(ctx context.Context, db querier) ([]object, error) {
	rows, err := db.QueryContext(ctx, objectsQuery)
	if err != nil {
		return nil, fmt.Errorf("cannot read the schema: %w", err)
	}
	defer rows.Close()
	return scanObjects(rows)
}

// objectsQuery lists the objects readObjects returns.
const objectsQuery = `SELECT type, name, sql FROM sqlite_schema
	WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name NOT LIKE 'libsql\_%' ESCAPE '\'
	  AND name NOT LIKE '\_\_turso\_internal\_%' ESCAPE '\'
	ORDER BY rowid`

// scanObjects reads the current result set of rows, an objectsQuery's.
func scanObjects(rows *sql.Rows) ([]object, error) {
	var out []object
	for rows.Next() {
		var o object
		if err := rows.Scan(&o.kind, &o.name, &o.sql); err != nil {
			return nil, fmt.Errorf("cannot read the schema: %w", err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot read the schema: %w", err)
	}
	return out, nil
}

// writeObjects writes objs (as readObjects lists them) to w as SQL
// statements: every table with an INSERT of each of its rows, then the
// indexes, views and triggers, so that no trigger fires on a restored row.
// It returns how many rows each table held.
func writeObjects(ctx context.Context, w io.Writer, db querier, objs []object) (map[string]int64, error) {
	counts := make(map[string]int64)
	for _, o := range objs {
		if o.kind != "table" {
			continue
		}
		if _, err := io.WriteString(w, o.sql+";\n"); err != nil {
			return nil, err
		}
		n, err := writeRows(ctx, w, db, o.name)
		if err != nil {
			return nil, err
		}
		counts[o.name] = n
	}
	for _, o := range objs {
		if o.kind != "table" {
			if _, err := io.WriteString(w, o.sql+";\n"); err != nil {
				return nil, err
			}
		}
	}
	return counts, nil
}

// writeRows writes an INSERT of every row of table, values as literals
// (a batch's statements cannot share bind parameters), and returns how
// many rows it wrote.
func writeRows(ctx context.Context, w io.Writer, db querier, table string) (int64, error) {
	rows, err := db.QueryContext(ctx, selectAll(table))
	if err != nil {
		return 0, fmt.Errorf("cannot read %s: %w", table, err)
	}
	defer rows.Close()
	return writeResult(w, rows, table)
}

// selectAll reads every row of table.
func selectAll(table string) string { return "SELECT * FROM " + quoteIdent(table) }

// writeResult writes an INSERT into table of every row of the current
// result set of rows, and returns how many it wrote.
func writeResult(w io.Writer, rows *sql.Rows, table string) (int64, error) {
	cols, err := rows.Columns()
	if err != nil {
		return 0, fmt.Errorf("cannot read %s: %w", table, err)
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = quoteIdent(c)
	}
	prefix := fmt.Sprintf("INSERT INTO %s (%s) VALUES (", quoteIdent(table), strings.Join(names, ", "))
	values := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range values {
		ptrs[i] = &values[i]
	}
	var n int64
	var line strings.Builder
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return 0, fmt.Errorf("cannot read %s: %w", table, err)
		}
		line.Reset()
		line.WriteString(prefix)
		for i, v := range values {
			if i > 0 {
				line.WriteString(", ")
			}
			line.WriteString(literal(v))
		}
		line.WriteString(");\n")
		if _, err := io.WriteString(w, line.String()); err != nil {
			return 0, err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("cannot read %s: %w", table, err)
	}
	return n, nil
}

// literal writes v, as the libSQL client scanned it, as an SQL literal of
// the same storage class.
func literal(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		switch {
		case math.IsNaN(x):
			return "NULL"
		case math.IsInf(x, 1):
			return "9e999"
		case math.IsInf(x, -1):
			return "-9e999"
		}
		s := strconv.FormatFloat(x, 'g', -1, 64)
		if !strings.ContainsAny(s, ".e") {
			s += ".0"
		}
		return s
	case bool:
		if x {
			return "1"
		}
		return "0"
	case []byte:
		return "X'" + hex.EncodeToString(x) + "'"
	case string:
		return "'" + strings.ReplaceAll(x, "'", "''") + "'"
	case time.Time:
		return "'" + x.UTC().Format(time.RFC3339Nano) + "'"
	}
	return "'" + strings.ReplaceAll(fmt.Sprint(v), "'", "''") + "'"
}

// quoteIdent quotes an identifier for SQLite.
func quoteIdent(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

// staleConnections bounds how many pooled connections runBatch discards:
// libsql-client-go reports a connection whose Hrana stream the server
// closed as driver.ErrBadConn before sending anything, and database/sql
// does not retry a pinned connection by itself.
const staleConnections = 4

// runBatch sends batch ("BEGIN; ...; COMMIT;") on one pinned connection,
// which libsql-client-go sends as one Hrana batch: each step runs only if
// the previous one succeeded, and a batch whose COMMIT did not run is
// rolled back. A ROLLBACK follows a failure on the same session anyway.
func runBatch(ctx context.Context, db *sql.DB, batch string) error {
	for attempt := 1; ; attempt++ {
		conn, err := db.Conn(ctx)
		if err != nil {
			return fmt.Errorf("cannot connect: %w", drivers.ErrUnavailable)
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
