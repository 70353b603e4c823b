package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Timestamps are timestamptz on PostgreSQL and INTEGER microseconds since
// the Unix epoch on SQLite, both microsecond precision. Writes truncate the
// caller's times in place (utc, utcPtr), so the value written equals the
// value a later read returns; the SQLite driver writes a time.Time argument
// as its microseconds (its connection string says so). Reads go through
// at and atPtr, which take either encoding and return UTC.

func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := utc(*t)
	return &v
}

// timeDest scans a timestamp column into a time.Time.
type timeDest struct{ t *time.Time }

// at returns the scan destination of a NOT NULL timestamp column.
func tm(t *time.Time) timeDest { return timeDest{t} }

func (d timeDest) Scan(src any) error {
	switch v := src.(type) {
	case time.Time:
		*d.t = v.UTC()
	case int64:
		*d.t = time.UnixMicro(v).UTC()
	default:
		return fmt.Errorf("cannot scan %T into a time", src)
	}
	return nil
}

// nullTimeDest scans a nullable timestamp column into a *time.Time: NULL
// is nil.
type nullTimeDest struct{ t **time.Time }

// atPtr returns the scan destination of a nullable timestamp column.
func tmPtr(t **time.Time) nullTimeDest { return nullTimeDest{t} }

func (d nullTimeDest) Scan(src any) error {
	if src == nil {
		*d.t = nil
		return nil
	}
	var t time.Time
	if err := tm(&t).Scan(src); err != nil {
		return err
	}
	*d.t = &t
	return nil
}

// nullString stores "" as NULL, for optional references.
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// nullBytes stores an empty byte slice as NULL; it reads back as nil.
func nullBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// encodeJSON stores an empty map as NULL; it reads back as nil.
func encodeJSON[M ~map[string]V, V any](m M) (*string, error) {
	if len(m) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("cannot encode json: %w", err)
	}
	s := string(b)
	return &s, nil
}

func decodeJSON[M ~map[string]V, V any](b []byte) (M, error) {
	if b == nil {
		return nil, nil
	}
	var m M
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("cannot decode json: %w", err)
	}
	return m, nil
}

// scanner is a Row or Rows.
type scanner interface {
	Scan(dest ...any) error
}

// queryAll runs a query and scans every row; an empty result is an empty,
// non-nil slice.
func queryAll[T any](ctx context.Context, db Conn, query string, args []any, scan func(scanner) (T, error)) ([]T, error) {
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

// queryCounts runs a query of (key, count) rows into a map.
func queryCounts(ctx context.Context, db Conn, query string) (map[string]int, error) {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	counts := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			return nil, err
		}
		counts[k] = n
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return counts, nil
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

// strs converts a slice of a string type to []string, for in.
func strs[S ~string](values []S) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = string(v)
	}
	return out
}
