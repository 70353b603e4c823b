package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Timestamps are timestamptz, microsecond precision. Writes truncate the
// caller's times in place (utc, utcPtr), so the value written equals the
// value a later read returns; reads convert to UTC (fromDB, fromDBPtr).

func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := utc(*t)
	return &v
}

func fromDBPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := t.UTC()
	return &v
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

// scanner is a pgx.Row or pgx.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// queryAll runs a query and scans every row; an empty result is an empty,
// non-nil slice.
func queryAll[T any](ctx context.Context, db dbtx, query string, args []any, scan func(scanner) (T, error)) ([]T, error) {
	rows, err := db.Query(ctx, query, args...)
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
func queryCounts(ctx context.Context, db dbtx, query string) (map[string]int, error) {
	rows, err := db.Query(ctx, query)
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	var k string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&k, &n}, func() error {
		counts[k] = n
		return nil
	})
	if err != nil {
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
