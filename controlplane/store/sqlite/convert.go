package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// Timestamps are stored as INTEGER microseconds since the Unix epoch, UTC.
// Writes truncate the caller's times in place (utc, utcPtr), so the value
// written equals the value a later read returns.

func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := utc(*t)
	return &v
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func nullMicros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMicro()
}

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func fromNullMicros(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

// nullString stores "" as NULL, for optional references.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// nullBytes stores an empty byte slice as NULL; it reads back as nil.
func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// encodeJSON stores an empty map as NULL; it reads back as nil.
func encodeJSON[M ~map[string]V, V any](m M) (any, error) {
	if len(m) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("cannot encode json: %w", err)
	}
	return string(b), nil
}

func decodeJSON[M ~map[string]V, V any](s sql.NullString) (M, error) {
	if !s.Valid {
		return nil, nil
	}
	var m M
	if err := json.Unmarshal([]byte(s.String), &m); err != nil {
		return nil, fmt.Errorf("cannot decode json: %w", err)
	}
	return m, nil
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// queryAll runs a query and scans every row; an empty result is an empty,
// non-nil slice.
func queryAll[T any](ctx context.Context, db dbtx, query string, args []any, scan func(scanner) (T, error)) ([]T, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// cutPage trims a result fetched with LIMIT n+1 to n rows and returns the
// cursor of the next page: the last row's key, or "" when nothing follows.
func cutPage[T any](rows []T, n int, key func(T) string) ([]T, string) {
	if len(rows) <= n {
		return rows, ""
	}
	rows = rows[:n]
	return rows, key(rows[n-1])
}

// inList returns the right side of "x IN ..." for values, and its one
// argument: a JSON array that SQLite unpacks. One query text serves every
// length, so the statement cache holds one statement per call site.
func inList[S ~string](values []S) (string, any) {
	b, _ := json.Marshal(values) // a slice of strings always marshals
	return "(SELECT value FROM json_each(?))", string(b)
}
