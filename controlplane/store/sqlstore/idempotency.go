package sqlstore

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
		VALUES ($1, $2, $3, $4, $5, $6)`, r.Owner, r.Key, r.RequestHash, r.StatusCode, nullBytes(r.Response), r.CreatedAt)
	if err != nil {
		return q.writeErr(err, "create idempotency record", "idempotency key is in use", "idempotency owner not found")
	}
	return nil
}

// GetIdempotencyRecord finds a record. ENOTFOUND if absent.
func (q *queries) GetIdempotencyRecord(ctx context.Context, owner, key string) (*controlplane.IdempotencyRecord, error) {
	r := controlplane.IdempotencyRecord{Owner: owner, Key: key}
	err := q.db.QueryRowContext(ctx, `SELECT request_hash, status_code, response, created_at FROM idempotency_records
		WHERE owner = $1 AND key = $2`, owner, key).Scan(&r.RequestHash, &r.StatusCode, &r.Response, tm(&r.CreatedAt))
	if err != nil {
		return nil, readErr(err, "get idempotency record", "idempotency record not found")
	}
	return &r, nil
}

// CompleteIdempotencyRecord stores the response; completing again replaces
// it. ENOTFOUND if absent.
func (q *queries) CompleteIdempotencyRecord(ctx context.Context, owner, key string, status int, response []byte) error {
	tag, err := q.db.ExecContext(ctx, `UPDATE idempotency_records SET status_code = $1, response = $2 WHERE owner = $3 AND key = $4`,
		status, nullBytes(response), owner, key)
	if err != nil {
		return fmt.Errorf("cannot complete idempotency record: %w", err)
	}
	return mustAffect(tag, "idempotency record not found")
}

// DeleteIdempotencyRecord removes a record. Absent is not an error.
func (q *queries) DeleteIdempotencyRecord(ctx context.Context, owner, key string) error {
	if _, err := q.db.ExecContext(ctx, `DELETE FROM idempotency_records WHERE owner = $1 AND key = $2`, owner, key); err != nil {
		return fmt.Errorf("cannot delete idempotency record: %w", err)
	}
	return nil
}

// DeleteIdempotencyRecordsBefore removes the records created before before
// and returns how many it removed.
func (q *queries) DeleteIdempotencyRecordsBefore(ctx context.Context, before time.Time) (int, error) {
	tag, err := q.db.ExecContext(ctx, `DELETE FROM idempotency_records WHERE created_at < $1`, utc(before))
	if err != nil {
		return 0, fmt.Errorf("cannot prune idempotency records: %w", err)
	}
	return int(affected(tag)), nil
}
