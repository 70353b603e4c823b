package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// maxCachedStatements bounds the cache: query texts are built from this
// package's constants, a few of them varying with their filters, and those
// past the bound are simply not cached.
const maxCachedStatements = 256

// stmtCache prepares each query text once and reuses it. SQLite parses and
// plans every statement it is given; for the store's point reads (the
// router's hot path) that is most of the cost of a query.
type stmtCache struct {
	db    *sql.DB
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, stmts: map[string]*sql.Stmt{}}
}

// stmt returns the prepared statement for query, or nil when the cache is full.
func (c *stmtCache) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.stmts[query]; ok {
		return st, nil
	}
	if len(c.stmts) >= maxCachedStatements {
		return nil, nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.stmts[query] = st
	return st, nil
}

// close closes every cached statement.
func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for q, st := range c.stmts {
		errs = append(errs, st.Close())
		delete(c.stmts, q)
	}
	return errors.Join(errs...)
}

// cachedDB runs queries on the store's pool through cached statements.
type cachedDB struct{ c *stmtCache }

func (d cachedDB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := d.c.stmt(ctx, query)
	if err != nil || st == nil {
		return d.c.db.ExecContext(ctx, query, args...)
	}
	return st.ExecContext(ctx, args...)
}

func (d cachedDB) QueryContext(ctx context.Context, query string, args ...any) (Rows, error) {
	st, err := d.c.stmt(ctx, query)
	if err != nil || st == nil {
		return d.c.db.QueryContext(ctx, query, args...)
	}
	return st.QueryContext(ctx, args...)
}

func (d cachedDB) QueryRowContext(ctx context.Context, query string, args ...any) Row {
	st, err := d.c.stmt(ctx, query)
	if err != nil || st == nil {
		// Unprepared, the query reports its own error through the row.
		return d.c.db.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// cachedTx runs queries in a transaction through the cached statements,
// bound to the transaction's connection.
type cachedTx struct {
	tx *sql.Tx
	c  *stmtCache
}

func (t cachedTx) bound(ctx context.Context, query string) *sql.Stmt {
	st, err := t.c.stmt(ctx, query)
	if err != nil || st == nil {
		return nil
	}
	return t.tx.StmtContext(ctx, st)
}

func (t cachedTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.bound(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, query, args...)
}

func (t cachedTx) QueryContext(ctx context.Context, query string, args ...any) (Rows, error) {
	if st := t.bound(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, query, args...)
}

func (t cachedTx) QueryRowContext(ctx context.Context, query string, args ...any) Row {
	if st := t.bound(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, query, args...)
}
