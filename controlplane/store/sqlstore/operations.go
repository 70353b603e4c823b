package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/envplane/envplane/controlplane"
)

const opColumns = `id, org_id, environment_id, kind, status, step, attempts, error, idempotency_key, request_hash,
	params, response, lease_owner, lease_expires_at, not_before, created_at, updated_at`

func scanOperation(s scanner) (*controlplane.Operation, error) {
	var op controlplane.Operation
	var envID, leaseOwner *string
	if err := s.Scan(&op.ID, &op.OrgID, &envID, &op.Kind, &op.Status, &op.Step, &op.Attempts, &op.Error,
		&op.IdempotencyKey, &op.RequestHash, &op.Params, &op.Response, &leaseOwner, tmPtr(&op.LeaseExpiresAt), tmPtr(&op.NotBefore),
		tm(&op.CreatedAt), tm(&op.UpdatedAt)); err != nil {
		return nil, err
	}
	op.EnvironmentID, op.LeaseOwner = deref(envID), deref(leaseOwner)
	return &op, nil
}

// CreateOperation inserts op, truncating its times to microseconds.
// ECONFLICT if the id exists; ENOTFOUND if the organization is absent or the
// environment is not the organization's.
func (q *queries) CreateOperation(ctx context.Context, op *controlplane.Operation) error {
	op.LeaseExpiresAt, op.NotBefore = utcPtr(op.LeaseExpiresAt), utcPtr(op.NotBefore)
	op.CreatedAt, op.UpdatedAt = utc(op.CreatedAt), utc(op.UpdatedAt)
	_, err := q.db.ExecContext(ctx, `INSERT INTO operations (`+opColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`,
		op.ID, op.OrgID, nullString(op.EnvironmentID), string(op.Kind), string(op.Status), op.Step, op.Attempts, op.Error,
		op.IdempotencyKey, op.RequestHash, nullBytes(op.Params), nullBytes(op.Response), nullString(op.LeaseOwner),
		op.LeaseExpiresAt, op.NotBefore, op.CreatedAt, op.UpdatedAt)
	if err != nil {
		return q.writeErr(err, "create operation", "operation exists", "organization or environment not found")
	}
	return nil
}

// GetOperation finds an operation of the organization. ENOTFOUND if absent or another organization's.
func (q *queries) GetOperation(ctx context.Context, orgID, id string) (*controlplane.Operation, error) {
	op, err := scanOperation(q.db.QueryRowContext(ctx, `SELECT `+opColumns+` FROM operations WHERE org_id = $1 AND id = $2`, orgID, id))
	if err != nil {
		return nil, readErr(err, "get operation", "operation not found")
	}
	return op, nil
}

// ListOperations lists one organization's operations, newest first, narrowed
// by f's environments, status and kind. EINVALID if f.OrgID is empty.
func (q *queries) ListOperations(ctx context.Context, f controlplane.OperationFilter, p controlplane.Page) ([]*controlplane.Operation, string, error) {
	if f.OrgID == "" {
		return nil, "", controlplane.Errorf(controlplane.EINVALID, "operation filter needs an organization")
	}
	if f.EnvironmentIDs != nil && len(f.EnvironmentIDs) == 0 {
		return []*controlplane.Operation{}, "", nil
	}
	n := controlplane.PageLimit(p.Limit)
	var a args
	where := "org_id = " + a.add(f.OrgID)
	if p.Cursor != "" {
		where += " AND id < " + a.add(p.Cursor)
	}
	if f.EnvironmentIDs != nil {
		where += " AND environment_id " + q.d.in(&a, f.EnvironmentIDs)
	}
	for _, eq := range []struct{ column, value string }{{"status", string(f.Status)}, {"kind", string(f.Kind)}} {
		if eq.value != "" {
			where += " AND " + eq.column + " = " + a.add(eq.value)
		}
	}
	ops, err := queryAll(ctx, q.db, `SELECT `+opColumns+` FROM operations WHERE `+where+` ORDER BY id DESC LIMIT `+a.add(n+1), a, scanOperation)
	if err != nil {
		return nil, "", fmt.Errorf("cannot list operations: %w", err)
	}
	ops, next := cutPage(ops, n, func(op *controlplane.Operation) string { return op.ID })
	return ops, next, nil
}

// GetRunningOperation finds the environment's oldest unfinished operation.
// ENOTFOUND if none.
func (q *queries) GetRunningOperation(ctx context.Context, environmentID string) (*controlplane.Operation, error) {
	op, err := scanOperation(q.db.QueryRowContext(ctx, `SELECT `+opColumns+` FROM operations
		WHERE environment_id = $1 AND status IN ('pending', 'running') ORDER BY id LIMIT 1`, environmentID))
	if err != nil {
		return nil, readErr(err, "get running operation", "no running operation")
	}
	return op, nil
}

// UpdateOperation saves op's status, step, attempts, error, response,
// not_before, lease and updated_at, only while op.LeaseOwner holds the lease
// or nobody does. ENOTFOUND if absent or another organization's; ECONFLICT
// if another owner holds the lease.
func (q *queries) UpdateOperation(ctx context.Context, op *controlplane.Operation) error {
	op.LeaseExpiresAt, op.NotBefore, op.UpdatedAt = utcPtr(op.LeaseExpiresAt), utcPtr(op.NotBefore), utc(op.UpdatedAt)
	tag, err := q.db.ExecContext(ctx, `UPDATE operations SET status = $1, step = $2, attempts = $3, error = $4, response = $5,
		not_before = $6, lease_owner = $7, lease_expires_at = $8, updated_at = $9
		WHERE org_id = $10 AND id = $11 AND (lease_owner IS NULL OR lease_owner = $12)`,
		string(op.Status), op.Step, op.Attempts, op.Error, nullBytes(op.Response), op.NotBefore,
		nullString(op.LeaseOwner), op.LeaseExpiresAt, op.UpdatedAt, op.OrgID, op.ID, op.LeaseOwner)
	if err != nil {
		return q.writeErr(err, "update operation", "operation conflicts", "operation not found")
	}
	return q.leaseHeld(ctx, tag, op.OrgID, op.ID)
}

// RenewLease extends the lease owner holds on an unfinished operation.
func (q *queries) RenewLease(ctx context.Context, orgID, id, owner string, until time.Time) error {
	tag, err := q.db.ExecContext(ctx, `UPDATE operations SET lease_expires_at = $1
		WHERE org_id = $2 AND id = $3 AND lease_owner = $4 AND status IN ('pending', 'running')`,
		utc(until), orgID, id, owner)
	if err != nil {
		return fmt.Errorf("cannot renew lease: %w", err)
	}
	return q.leaseHeld(ctx, tag, orgID, id)
}

// leaseHeld turns the result of a write guarded by the lease into the
// contract's answer: nil when it changed the row, ENOTFOUND when the
// operation is absent, ECONFLICT when another owner holds it.
func (q *queries) leaseHeld(ctx context.Context, tag sql.Result, orgID, id string) error {
	if affected(tag) > 0 {
		return nil
	}
	if _, err := q.GetOperation(ctx, orgID, id); err != nil {
		return err
	}
	return controlplane.Errorf(controlplane.ECONFLICT, "operation is leased by another owner")
}
