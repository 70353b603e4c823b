package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/envplane/envplane/controlplane"
)

// Row-level security (adr/0027). On PostgreSQL every organization-owned
// table shows a row only when its organization is the setting
// app.current_org_id, or when app.platform_scope is 'on'. The store sets
// both, from the scope the context carries (controlplane.WithOrgScope,
// controlplane.WithPlatformScope), as transaction-local settings: WithTx
// right after BEGIN, and a statement outside WithTx in a transaction of its
// own, sent with it in one round trip (scopedDB). A context without a
// scope sets neither, so it sees no organization's rows.

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

// args returns setScope's arguments for ctx's scope.
func (sc *scoper) args(ctx context.Context) []any {
	s, ok := controlplane.StoreScopeOf(ctx)
	if !ok {
		s = sc.unscoped
	}
	platform := "off"
	if s.Platform {
		platform = "on"
	}
	return []any{s.OrgID, platform}
}

// set sets ctx's scope in tx.
func (sc *scoper) set(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, setScope, sc.args(ctx)...); err != nil {
		return fmt.Errorf("cannot set the store scope: %w", err)
	}
	return nil
}

// scopedDB runs each statement on the pool in one round trip with its
// scope: setScope and the statement go as one pgx batch, which pgx sends as
// one pipeline with one Sync and PostgreSQL runs as one implicit
// transaction, so the transaction-local settings hold for that statement
// and end with it (TestScopeEndsWithItsStatement). The connection is
// borrowed through database/sql and used only inside Conn.Raw: a row is
// scanned there, and rows are read there whole and handed out buffered.
type scopedDB struct {
	db    *sql.DB
	sc    *scoper
	types *typeMap
}

// run sends query in a batch after ctx's scope and hands read the batch's
// results, the scope's already read.
func (c scopedDB) run(ctx context.Context, query string, args []any, read func(pgx.BatchResults) error) error {
	conn, err := c.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		pc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("the store's connection is %T, not pgx's", dc)
		}
		b := &pgx.Batch{}
		b.Queue(setScope, c.sc.args(ctx)...)
		b.Queue(query, args...)
		br := pc.Conn().SendBatch(ctx, b)
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return fmt.Errorf("cannot set the store scope: %w", err)
		}
		err := read(br)
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		return err
	})
}

func (c scopedDB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	var n int64
	err := c.run(ctx, query, args, func(br pgx.BatchResults) error {
		tag, err := br.Exec()
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return nil, err
	}
	return driver.RowsAffected(n), nil
}

func (c scopedDB) QueryContext(ctx context.Context, query string, args ...any) (Rows, error) {
	out := &bufferedRows{types: c.types, next: -1}
	err := c.run(ctx, query, args, func(br pgx.BatchResults) error {
		rows, err := br.Query()
		if err != nil {
			return err
		}
		defer rows.Close()
		out.fields = slices.Clone(rows.FieldDescriptions())
		for rows.Next() {
			raw := rows.RawValues()
			row := make([][]byte, len(raw))
			for i, v := range raw {
				if v != nil {
					row[i] = bytes.Clone(v)
				}
			}
			out.rows = append(out.rows, row)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// QueryRowContext runs the statement when the row is scanned, scanning
// it there.
func (c scopedDB) QueryRowContext(ctx context.Context, query string, args ...any) Row {
	return scopedRow{c: c, ctx: ctx, query: query, args: args}
}

// scopedRow is a statement of one row, run and scanned by Scan.
type scopedRow struct {
	c     scopedDB
	ctx   context.Context
	query string
	args  []any
}

func (r scopedRow) Scan(dest ...any) error {
	return r.c.run(r.ctx, r.query, r.args, func(br pgx.BatchResults) error {
		return br.QueryRow().Scan(dest...)
	})
}

// bufferedRows are a statement's rows, read whole, scanned with pgx's
// types.
type bufferedRows struct {
	types  *typeMap
	fields []pgconn.FieldDescription
	rows   [][][]byte
	next   int
	err    error
}

func (r *bufferedRows) Next() bool {
	if r.err != nil || r.next+1 >= len(r.rows) {
		r.next = len(r.rows)
		return false
	}
	r.next++
	return true
}

func (r *bufferedRows) Scan(dest ...any) error {
	if r.next < 0 || r.next >= len(r.rows) {
		return errors.New("scan called without a row")
	}
	if len(dest) != len(r.fields) {
		return fmt.Errorf("scan: %d destinations for %d columns", len(dest), len(r.fields))
	}
	for i, d := range dest {
		f := r.fields[i]
		if err := r.types.scan(f.DataTypeOID, f.Format, r.rows[r.next][i], d); err != nil {
			r.err = fmt.Errorf("scan column %s: %w", f.Name, err)
			return r.err
		}
	}
	return nil
}

func (r *bufferedRows) Columns() ([]string, error) {
	names := make([]string, len(r.fields))
	for i, f := range r.fields {
		names[i] = f.Name
	}
	return names, nil
}

func (r *bufferedRows) Err() error { return r.err }

func (r *bufferedRows) Close() error { return nil }

// typeMap is a pgx type map for scanning buffered rows, which it must not
// do from two goroutines at once.
type typeMap struct {
	mu sync.Mutex
	m  *pgtype.Map
}

func (t *typeMap) scan(oid uint32, format int16, src []byte, dst any) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m.Scan(oid, format, src, dst)
}
