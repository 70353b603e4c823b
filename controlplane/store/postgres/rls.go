package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/envplane/envplane/controlplane"
)

// Row-level security (ADR 0027). Every organization-owned table has a
// policy that shows a row only when its organization is the setting
// app.current_org_id, or when app.platform_scope is 'on'. The store sets
// both, from the scope the context carries (controlplane.WithOrgScope,
// controlplane.WithPlatformScope), as transaction-local settings at the
// start of every transaction and of every single statement; a context
// without a scope sets neither, so it sees no organization's rows.

// setScope sets the scope for the rest of the current transaction, the
// implicit one of a pipeline included.
const setScope = `SELECT set_config('app.current_org_id', $1, true), set_config('app.platform_scope', $2, true)`

// scopedPool runs each statement on the pool in one pipeline after
// setScope: one round trip, one implicit transaction, so the setting holds
// for that statement and for nothing after it.
type scopedPool struct {
	pool *pgxpool.Pool
	// unscoped is the scope of a context that carries none: the zero
	// scope, which sees nothing, except in this package's tests
	// (export_test.go), which run the conformance suite with the platform
	// scope.
	unscoped controlplane.StoreScope
}

// scopeArgs returns setScope's arguments for ctx's scope.
func (p scopedPool) scopeArgs(ctx context.Context) []any {
	sc, ok := controlplane.StoreScopeOf(ctx)
	if !ok {
		sc = p.unscoped
	}
	platform := "off"
	if sc.Platform {
		platform = "on"
	}
	return []any{sc.OrgID, platform}
}

// send queues setScope and the statement, sends them and reads setScope's
// result. The caller reads the statement's result and closes the batch.
func (p scopedPool) send(ctx context.Context, sql string, args []any) (pgx.BatchResults, error) {
	b := &pgx.Batch{}
	b.Queue(setScope, p.scopeArgs(ctx)...)
	b.Queue(sql, args...)
	br := p.pool.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return nil, fmt.Errorf("cannot set the store scope: %w", err)
	}
	return br, nil
}

func (p scopedPool) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	br, err := p.send(ctx, sql, args)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

func (p scopedPool) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	br, err := p.send(ctx, sql, args)
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return nil, err
	}
	return &batchRows{Rows: rows, br: br}, nil
}

func (p scopedPool) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	br, err := p.send(ctx, sql, args)
	if err != nil {
		return errRow{err}
	}
	return batchRow{row: br.QueryRow(), br: br}
}

// batchRows are a statement's rows that release the batch (and its
// connection) when closed.
type batchRows struct {
	pgx.Rows
	br       pgx.BatchResults
	closeErr error
}

func (r *batchRows) Close() {
	r.Rows.Close()
	if err := r.br.Close(); err != nil && r.closeErr == nil {
		r.closeErr = err
	}
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.closeErr
}

// batchRow is a statement's one row that releases the batch when scanned.
type batchRow struct {
	row pgx.Row
	br  pgx.BatchResults
}

func (r batchRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if cerr := r.br.Close(); err == nil {
		err = cerr
	}
	return err
}

// errRow is a row whose statement could not be sent.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// begin begins a transaction on the pool and sets ctx's scope for it.
func (p scopedPool) begin(ctx context.Context) (pgx.Tx, error) {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot begin transaction: %w", err)
	}
	if _, err := tx.Exec(ctx, setScope, p.scopeArgs(ctx)...); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("cannot set the store scope: %w", err)
	}
	return tx, nil
}

// refuseBypass returns an error when the store's user is a superuser or
// has BYPASSRLS: row-level security would not apply to it, and every
// organization's rows would be one forgotten filter away.
func refuseBypass(ctx context.Context, pool *pgxpool.Pool) error {
	var user string
	var super, bypass bool
	err := pool.QueryRow(ctx, `SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user`).
		Scan(&user, &super, &bypass)
	if err != nil {
		return fmt.Errorf("cannot read the store user's attributes: %w", err)
	}
	switch {
	case super:
		return fmt.Errorf("the store user %q is a superuser, so row-level security would not apply to it: connect as a role without SUPERUSER and BYPASSRLS (see README, \"Least-privileged store user\")", user)
	case bypass:
		return fmt.Errorf("the store user %q has BYPASSRLS, so row-level security would not apply to it: ALTER ROLE %s NOBYPASSRLS, or connect as another role (see README, \"Least-privileged store user\")", user, pgx.Identifier{user}.Sanitize())
	}
	return nil
}
