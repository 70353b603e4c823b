package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/envplane/envplane/controlplane"
)

const receiptColumns = `id, org_id, environment_id, key_id, user_id, scope, credential_id, key_version, replica,
	first_at, last_at, count`

func scanReceipt(s scanner) (*controlplane.Receipt, error) {
	var r controlplane.Receipt
	var userID *string
	if err := s.Scan(&r.ID, &r.OrgID, &r.EnvironmentID, &r.KeyID, &userID, &r.Scope, &r.CredentialID, &r.KeyVersion,
		&r.Replica, tm(&r.FirstAt), tm(&r.LastAt), &r.Count); err != nil {
		return nil, err
	}
	r.UserID = deref(userID)
	return &r, nil
}

// RecordReceipts adds rs, truncating their times to microseconds, in one
// statement (the dialect's): a receipt of a stored row's environment, key,
// scope, credential, key version, replica and minute adds its count to that
// row and widens its first_at and last_at; any other is inserted. The batch
// is written whole or not at all, inside WithTx or not. ENOTFOUND if an
// environment is absent or not the receipt's organization's; EINVALID for an
// unknown scope or a count below 1.
func (q *queries) RecordReceipts(ctx context.Context, rs []*controlplane.Receipt) error {
	if len(rs) == 0 {
		return nil
	}
	for _, r := range rs {
		r.FirstAt, r.LastAt = utc(r.FirstAt), utc(r.LastAt)
	}
	if err := q.d.recordReceipts(ctx, q, rs); err != nil {
		return q.writeErr(err, "record receipts", "receipt exists", "environment not found")
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
	var a args
	where := "environment_id = " + a.add(f.EnvironmentID) + " AND org_id = " + a.add(f.OrgID)
	if !f.Since.IsZero() {
		where += " AND last_at >= " + a.add(utc(f.Since))
	}
	if !f.Until.IsZero() {
		where += " AND first_at <= " + a.add(utc(f.Until))
	}
	if f.CredentialID != "" {
		where += " AND credential_id = " + a.add(f.CredentialID)
	}
	if p.Cursor != "" {
		where += " AND id < " + a.add(p.Cursor)
	}
	rs, err := queryAll(ctx, q.db, `SELECT `+receiptColumns+` FROM router_receipts WHERE `+where+` ORDER BY id DESC LIMIT `+a.add(n+1),
		a, scanReceipt)
	if err != nil {
		return nil, "", fmt.Errorf("cannot list receipts: %w", err)
	}
	rs, next := cutPage(rs, n, func(r *controlplane.Receipt) string { return r.ID })
	return rs, next, nil
}

// DeleteReceiptsBefore removes the receipts whose last resolution is before
// before and returns how many it removed.
func (q *queries) DeleteReceiptsBefore(ctx context.Context, before time.Time) (int, error) {
	tag, err := q.db.ExecContext(ctx, `DELETE FROM router_receipts WHERE last_at < $1`, utc(before))
	if err != nil {
		return 0, fmt.Errorf("cannot prune receipts: %w", err)
	}
	return int(affected(tag)), nil
}
