package postgres

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
		&r.Replica, &r.FirstAt, &r.LastAt, &r.Count); err != nil {
		return nil, err
	}
	r.UserID, r.FirstAt, r.LastAt = deref(userID), r.FirstAt.UTC(), r.LastAt.UTC()
	return &r, nil
}

// RecordReceipts adds rs, truncating their times to microseconds, in one
// statement over arrays of their fields: a receipt of a stored row's
// environment, key, scope, credential, key version, replica and minute adds
// its count to that row and widens its first_at and last_at; any other is
// inserted. Receipts of one row within rs are added up first, since one
// statement may not update a row twice. ENOTFOUND if an environment is
// absent or not the receipt's organization's; EINVALID for an unknown scope
// or a count below 1.
func (q *queries) RecordReceipts(ctx context.Context, rs []*controlplane.Receipt) error {
	if len(rs) == 0 {
		return nil
	}
	n := len(rs)
	ids, orgIDs, envIDs, keyIDs := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	userIDs, scopes, credIDs := make([]*string, n), make([]string, n), make([]string, n)
	keyVersions, replicas := make([]string, n), make([]string, n)
	buckets, firsts, lasts, counts := make([]time.Time, n), make([]time.Time, n), make([]time.Time, n), make([]int64, n)
	for i, r := range rs {
		r.FirstAt, r.LastAt = utc(r.FirstAt), utc(r.LastAt)
		ids[i], orgIDs[i], envIDs[i], keyIDs[i] = r.ID, r.OrgID, r.EnvironmentID, r.KeyID
		userIDs[i], scopes[i], credIDs[i] = nullString(r.UserID), string(r.Scope), r.CredentialID
		keyVersions[i], replicas[i] = r.KeyVersion, r.Replica
		buckets[i], firsts[i], lasts[i], counts[i] = r.FirstAt.Truncate(time.Minute), r.FirstAt, r.LastAt, r.Count
	}
	_, err := q.db.Exec(ctx, `INSERT INTO router_receipts (id, org_id, environment_id, key_id, user_id, scope,
			credential_id, key_version, replica, bucket, first_at, last_at, count)
		SELECT min(r.id), r.org_id, r.environment_id, r.key_id, min(r.user_id), r.scope, r.credential_id, r.key_version,
			r.replica, r.bucket, min(r.first_at), max(r.last_at), sum(r.count)
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
			$9::text[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[], $13::bigint[])
			AS r (id, org_id, environment_id, key_id, user_id, scope, credential_id, key_version, replica, bucket,
				first_at, last_at, count)
		GROUP BY r.org_id, r.environment_id, r.key_id, r.scope, r.credential_id, r.key_version, r.replica, r.bucket
		ON CONFLICT (environment_id, key_id, scope, credential_id, key_version, replica, bucket) DO UPDATE SET
			count = router_receipts.count + excluded.count,
			first_at = LEAST(router_receipts.first_at, excluded.first_at),
			last_at = GREATEST(router_receipts.last_at, excluded.last_at)`,
		ids, orgIDs, envIDs, keyIDs, userIDs, scopes, credIDs, keyVersions, replicas, buckets, firsts, lasts, counts)
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
	tag, err := q.db.Exec(ctx, `DELETE FROM router_receipts WHERE last_at < $1`, utc(before))
	if err != nil {
		return 0, fmt.Errorf("cannot prune receipts: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
