package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/envplane/envplane/controlplane"
)

// Row-level security (adr/0027). On PostgreSQL every organization-owned
// table shows a row only when its organization is the setting
// app.current_org_id, or when app.platform_scope is 'on'. The store sets
// both, from the scope the context carries (controlplane.WithOrgScope,
// controlplane.WithPlatformScope), as transaction-local settings: WithTx
// right after BEGIN, and a statement outside WithTx in a transaction of its
// own (scopedDB). A context without a scope sets neither, so it sees no
// organization's rows.

// setScope sets the scope for the rest of the current transaction.
const setScope = `SELECT set_config('app.current_org_id', $1, true), set_config('app.platform_scope', $2, true)`

// scoper sets the scope of a context in a transaction.
type scoper struct {
	// unscoped is the scope of a context that carries none: the zero
	// scope, which sees nothing, unless UnscopedAs says otherwise.
	unscoped controlplane.StoreScope
}

// Option configures a store.
type Option func(*Store)

// UnscopedAs gives contexts without a store scope the scope sc instead of
// none. It is for the conformance suite and benchmarks, which test what the
// store keeps rather than who may see it; a server never uses it, so a
// forgotten scope fails closed.
func UnscopedAs(sc controlplane.StoreScope) Option {
	return func(s *Store) {
		if s.scope != nil {
			s.scope.unscoped = sc
		}
	}
}

// set sets ctx's scope in tx.
func (sc *scoper) set(ctx context.Context, tx *sql.Tx) error {
	s, ok := controlplane.StoreScopeOf(ctx)
	if !ok {
		s = sc.unscoped
	}
	platform := "off"
	if s.Platform {
		platform = "on"
	}
	if _, err := tx.ExecContext(ctx, setScope, s.OrgID, platform); err != nil {
		return fmt.Errorf("cannot set the store scope: %w", err)
	}
	return nil
}

// scopedDB runs each statement on the pool in a transaction of its own
// that sets the context's scope first, and commits it once the statement
// is done, as autocommit would: a write stays written whatever its caller
// does with the rows it returned.
type scopedDB struct {
	db *sql.DB
	sc *scoper
}

func (c scopedDB) begin(ctx context.Context) (*sql.Tx, error) {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot begin transaction: %w", err)
	}
	if err := c.sc.set(ctx, tx); err != nil {
		_ = tx.Rollback()
		return nil, err
	}
	return tx, nil
}

func (c scopedDB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	tx, err := c.begin(ctx)
	if err != nil {
		return nil, err
	}
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		_ = tx.Rollback()
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("cannot commit: %w", err)
	}
	return res, nil
}

func (c scopedDB) QueryContext(ctx context.Context, query string, args ...any) (Rows, error) {
	tx, err := c.begin(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		_ = tx.Rollback()
		return nil, err
	}
	return &txRows{Rows: rows, tx: tx}, nil
}

func (c scopedDB) QueryRowContext(ctx context.Context, query string, args ...any) Row {
	tx, err := c.begin(ctx)
	if err != nil {
		return errRow{err}
	}
	return txRow{row: tx.QueryRowContext(ctx, query, args...), tx: tx}
}

// txRows are a statement's rows that end its transaction once read to the
// end or closed: committed when the statement succeeded, rolled back when
// it failed. A failed commit is the rows' error.
type txRows struct {
	*sql.Rows
	tx   *sql.Tx
	done bool
	err  error
}

func (r *txRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.end()
	return false
}

func (r *txRows) end() {
	if r.done {
		return
	}
	r.done = true
	closeErr := r.Rows.Close()
	if err := errors.Join(r.Rows.Err(), closeErr); err != nil {
		_ = r.tx.Rollback()
		return
	}
	if err := r.tx.Commit(); err != nil {
		r.err = fmt.Errorf("cannot commit: %w", err)
	}
}

func (r *txRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}

func (r *txRows) Close() error {
	r.end()
	return r.err
}

// txRow is a statement's one row that ends its transaction when scanned:
// committed when the statement succeeded (no row included), rolled back
// when it failed.
type txRow struct {
	row *sql.Row
	tx  *sql.Tx
}

func (r txRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		_ = r.tx.Rollback()
		return err
	}
	if cerr := r.tx.Commit(); cerr != nil {
		return fmt.Errorf("cannot commit: %w", cerr)
	}
	return err
}

// errRow is a row whose statement could not be sent.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
