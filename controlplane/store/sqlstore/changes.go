package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/envplane/envplane/controlplane"
)

// AppendChange records c, truncating its time to microseconds, and sets
// c.Seq to the next seq. Changes become visible in seq order (the dialect
// says how): a reader that saw seq n never misses a smaller one committed
// later. Inside WithTx, append last, so the turn is held briefly.
func (q *queries) AppendChange(ctx context.Context, c *controlplane.Change) error {
	c.CreatedAt = utc(c.CreatedAt)
	err := q.db.QueryRowContext(ctx, q.d.appendChange(),
		nullString(c.OrgID), c.Reason, c.CreatedAt).Scan(&c.Seq)
	if err != nil {
		return fmt.Errorf("cannot append change: %w", err)
	}
	return nil
}

// ListChanges lists up to limit changes with a seq above after, in seq order.
func (q *queries) ListChanges(ctx context.Context, after int64, limit int) ([]*controlplane.Change, error) {
	cs, err := queryAll(ctx, q.db, `SELECT seq, org_id, reason, created_at FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2`,
		[]any{after, controlplane.PageLimit(limit)}, func(s scanner) (*controlplane.Change, error) {
			var c controlplane.Change
			var orgID *string
			if err := s.Scan(&c.Seq, &orgID, &c.Reason, tm(&c.CreatedAt)); err != nil {
				return nil, err
			}
			c.OrgID = deref(orgID)
			return &c, nil
		})
	if err != nil {
		return nil, fmt.Errorf("cannot list changes: %w", err)
	}
	return cs, nil
}

// LastChange returns the highest seq recorded, 0 when none.
func (q *queries) LastChange(ctx context.Context) (int64, error) {
	var seq int64
	if err := q.db.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM changes`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("cannot read the last change: %w", err)
	}
	return seq, nil
}

// DeleteChangesBefore removes the changes created before before, except the
// newest, and returns how many it removed.
func (q *queries) DeleteChangesBefore(ctx context.Context, before time.Time) (int, error) {
	tag, err := q.db.ExecContext(ctx, `DELETE FROM changes WHERE created_at < $1 AND seq < (SELECT max(seq) FROM changes)`, utc(before))
	if err != nil {
		return 0, fmt.Errorf("cannot prune changes: %w", err)
	}
	return int(affected(tag)), nil
}
