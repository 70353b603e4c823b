package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/envplane/envplane/controlplane"
)

const receiptColumns = `id, org_id, environment_id, key_id, user_id, scope, credential_id, key_version, replica,
	first_at, last_at, count`

func scanReceipt(s scanner) (*controlplane.Receipt, error) {
	var r controlplane.Receipt
	var userID sql.NullString
	var first, last int64
	if err := s.Scan(&r.ID, &r.OrgID, &r.EnvironmentID, &r.KeyID, &userID, &r.Scope, &r.CredentialID, &r.KeyVersion,
		&r.Replica, &first, &last, &r.Count); err != nil {
		return nil, err
	}
	r.UserID, r.FirstAt, r.LastAt = userID.String, fromMicros(first), fromMicros(last)
	return &r, nil
}

// RecordReceipts adds rs, truncating their times to microseconds, in one
// statement: a receipt of a stored row's environment, key, scope,
// credential, key version, replica and minute adds its count to that row
// and widens its first_at and last_at; any other is inserted. The whole
// batch travels as one JSON argument, so the statement text is the same for
// every batch (one cached statement) and the batch is written whole or not
// at all, inside WithTx or not; it costs less than one prepared insert per
// receipt in a transaction. jsonb_each hands each row over as JSONB, which
// ->> reads without parsing it again. ENOTFOUND if an environment is absent
// or not the receipt's organization's; EINVALID for an unknown scope or a
// count below 1.
func (q *queries) RecordReceipts(ctx context.Context, rs []*controlplane.Receipt) error {
	if len(rs) == 0 {
		return nil
	}
	rows := make([][]any, len(rs))
	for i, r := range rs {
		r.FirstAt, r.LastAt = utc(r.FirstAt), utc(r.LastAt)
		rows[i] = []any{r.ID, r.OrgID, r.EnvironmentID, r.KeyID, nullString(r.UserID), string(r.Scope), r.CredentialID,
			r.KeyVersion, r.Replica, micros(r.FirstAt.Truncate(time.Minute)), micros(r.FirstAt), micros(r.LastAt), r.Count}
	}
	batch, err := json.Marshal(rows)
	if err != nil {
		return fmt.Errorf("cannot record receipts: %w", err)
	}
	// The SELECT needs its WHERE: without one, SQLite would read ON CONFLICT
	// as a join's ON.
	_, err = q.db.ExecContext(ctx, `INSERT INTO router_receipts (id, org_id, environment_id, key_id, user_id, scope,
			credential_id, key_version, replica, bucket, first_at, last_at, count)
		SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6,
			value ->> 7, value ->> 8, value ->> 9, value ->> 10, value ->> 11, value ->> 12
		FROM jsonb_each(?) WHERE true
		ON CONFLICT (environment_id, key_id, scope, credential_id, key_version, replica, bucket) DO UPDATE SET
			count = router_receipts.count + excluded.count,
			first_at = min(router_receipts.first_at, excluded.first_at),
			last_at = max(router_receipts.last_at, excluded.last_at)`, string(batch))
	if err != nil {
		return writeErr(err, "record receipts", "receipt exists", "environment not found")
	}
	return nil
}

// ListReceipts lists an environment's receipts that f selects, newest (highest
// id) first. EINVALID if f.OrgID or f.EnvironmentID is empty.
func (q *queries) ListReceipts(ctx context.Context, f controlplane.ReceiptFilter, p controlplane.Page) ([]*controlplane.Receipt, string, error) {
	if f.OrgID == "" || f.EnvironmentID == "" {
		return nil, "", controlplane.Errorf(controlplane.EINVALID, "receipt filter needs an organization and an environment")
	}
	n := controlplane.PageLimit(p.Limit)
	where, args := "environment_id = ? AND org_id = ?", []any{f.EnvironmentID, f.OrgID}
	if !f.Since.IsZero() {
		where += " AND last_at >= ?"
		args = append(args, micros(utc(f.Since)))
	}
	if !f.Until.IsZero() {
		where += " AND first_at <= ?"
		args = append(args, micros(utc(f.Until)))
	}
	if f.CredentialID != "" {
		where += " AND credential_id = ?"
		args = append(args, f.CredentialID)
	}
	if p.Cursor != "" {
		where += " AND id < ?"
		args = append(args, p.Cursor)
	}
	args = append(args, n+1)
	rs, err := queryAll(ctx, q.db, `SELECT `+receiptColumns+` FROM router_receipts WHERE `+where+` ORDER BY id DESC LIMIT ?`,
		args, scanReceipt)
	if err != nil {
		return nil, "", fmt.Errorf("cannot list receipts: %w", err)
	}
	rs, next := cutPage(rs, n, func(r *controlplane.Receipt) string { return r.ID })
	return rs, next, nil
}

// DeleteReceiptsBefore removes the receipts whose last resolution is before
// before and returns how many it removed.
func (q *queries) DeleteReceiptsBefore(ctx context.Context, before time.Time) (int, error) {
	res, err := q.db.ExecContext(ctx, `DELETE FROM router_receipts WHERE last_at < ?`, micros(utc(before)))
	if err != nil {
		return 0, fmt.Errorf("cannot prune receipts: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("cannot prune receipts: %w", err)
	}
	return int(n), nil
}
