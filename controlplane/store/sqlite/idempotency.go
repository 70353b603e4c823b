package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/envplane/envplane/controlplane"
)

// CreateIdempotencyRecord inserts r, truncating its time to microseconds.
// ECONFLICT if (owner, key) exists.
func (q *queries) CreateIdempotencyRecord(ctx context.Context, r *controlplane.IdempotencyRecord) error {
	r.CreatedAt = utc(r.CreatedAt)
	_, err := q.db.ExecContext(ctx, `INSERT INTO idempotency_records (owner, key, request_hash, status_code, response, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`, r.Owner, r.Key, r.RequestHash, r.StatusCode, nullBytes(r.Response), micros(r.CreatedAt))
	if err != nil {
		return writeErr(err, "create idempotency record", "idempotency key is in use", "idempotency owner not found")
	}
	return nil
}

// GetIdempotencyRecord finds a record. ENOTFOUND if absent.
func (q *queries) GetIdempotencyRecord(ctx context.Context, owner, key string) (*controlplane.IdempotencyRecord, error) {
	r := controlplane.IdempotencyRecord{Owner: owner, Key: key}
	var created int64
	err := q.db.QueryRowContext(ctx, `SELECT request_hash, status_code, response, created_at FROM idempotency_records
		WHERE owner = ? AND key = ?`, owner, key).Scan(&r.RequestHash, &r.StatusCode, &r.Response, &created)
	if err != nil {
		return nil, readErr(err, "get idempotency record", "idempotency record not found")
	}
	r.CreatedAt = fromMicros(created)
	return &r, nil
}

// CompleteIdempotencyRecord stores the response; completing again replaces
// it. ENOTFOUND if absent.
func (q *queries) CompleteIdempotencyRecord(ctx context.Context, owner, key string, status int, response []byte) error {
	res, err := q.db.ExecContext(ctx, `UPDATE idempotency_records SET status_code = ?, response = ? WHERE owner = ? AND key = ?`,
		status, nullBytes(response), owner, key)
	if err != nil {
		return fmt.Errorf("cannot complete idempotency record: %w", err)
	}
	return mustAffect(res, "complete idempotency record", "idempotency record not found")
}

// DeleteIdempotencyRecord removes a record. Absent is not an error.
func (q *queries) DeleteIdempotencyRecord(ctx context.Context, owner, key string) error {
	if _, err := q.db.ExecContext(ctx, `DELETE FROM idempotency_records WHERE owner = ? AND key = ?`, owner, key); err != nil {
		return fmt.Errorf("cannot delete idempotency record: %w", err)
	}
	return nil
}

// DeleteIdempotencyRecordsBefore removes the records created before before
// and returns how many it removed.
func (q *queries) DeleteIdempotencyRecordsBefore(ctx context.Context, before time.Time) (int, error) {
	res, err := q.db.ExecContext(ctx, `DELETE FROM idempotency_records WHERE created_at < ?`, micros(utc(before)))
	if err != nil {
		return 0, fmt.Errorf("cannot prune idempotency records: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("cannot prune idempotency records: %w", err)
	}
	return int(n), nil
}
