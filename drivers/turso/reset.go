package turso

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/tursodatabase/libsql-client-go/libsql"

	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/turso/platform"
)

var _ drivers.Resetter = (*Driver)(nil)

// A Turso database's hostname is derived from its name, and applications
// hold that hostname in their DSN, so a reset cannot swap one database for
// another. It is staged as another database of the group (name-next, made by
// the Platform API: seeded from the source for a copy, empty otherwise),
// adopted there by the caller over a token of its own, and swapped in over
// libSQL with the database's admin token: one Hrana batch that drops every
// object of the database and recreates the staged ones with their rows,
// between BEGIN and COMMIT, so that sessions see the old contents or the
// new (adr/0020). Tokens belong to the database, not its contents: every
// credential keeps working.

// stagedTTL bounds the life of the token the driver mints for a staged
// database: long enough to adopt it (run migrations), then useless.
const stagedTTL = time.Hour

// stagedName is the Turso name a reset of name is built under; it is
// longer than any generated name's, so it never names an environment's.
func stagedName(name string) (string, error) {
	t, err := tursoName(name)
	if err != nil {
		return "", err
	}
	return t + "-next", nil
}

// ours returns the named database when it exists in envplane's group;
// found is false when it does not exist, and a database of another group
// is ErrExists.
func (d *Driver) ours(ctx context.Context, name string) (db platform.Database, found bool, err error) {
	db, err = d.client.GetDatabase(ctx, name)
	if errors.Is(err, drivers.ErrNotFound) {
		return db, false, nil
	}
	if err != nil {
		return db, false, fmt.Errorf("turso: %w", err)
	}
	if db.Group != d.cfg.Group {
		return db, false, fmt.Errorf("turso: database %s is in group %q, not envplane's %q: %w", name, db.Group, d.cfg.Group, drivers.ErrExists)
	}
	return db, true, nil
}

// StageReset creates name-next in the group, seeded from req.Source or
// empty, after deleting an earlier one. ErrNotFound when the database or
// the source is absent.
func (d *Driver) StageReset(ctx context.Context, req drivers.ResetRequest) error {
	live, err := tursoName(req.Database.Name)
	if err != nil {
		return err
	}
	staged, err := stagedName(req.Database.Name)
	if err != nil {
		return err
	}
	if _, found, err := d.ours(ctx, live); err != nil {
		return err
	} else if !found {
		return fmt.Errorf("turso: database %s: %w", live, drivers.ErrNotFound)
	}
	in := platform.CreateDatabaseInput{Name: staged, Group: d.cfg.Group}
	if req.Source != nil {
		source, err := tursoName(req.Source.Name)
		if err != nil {
			return err
		}
		if _, found, err := d.ours(ctx, source); err != nil {
			return err
		} else if !found {
			return fmt.Errorf("turso: reset source %s: %w", source, drivers.ErrNotFound)
		}
		in.Seed = &platform.Seed{Type: platform.SeedDatabase, Name: source}
	}
	if err := d.deleteStaged(ctx, staged); err != nil {
		return err
	}
	if _, err := d.client.CreateDatabase(ctx, in); err != nil {
		return fmt.Errorf("turso: %w", err)
	}
	return nil
}

// deleteStaged deletes name-next when it exists. Absent is success.
func (d *Driver) deleteStaged(ctx context.Context, staged string) error {
	_, found, err := d.ours(ctx, staged)
	if err != nil || !found {
		return err
	}
	if err := d.client.DeleteDatabase(ctx, staged); err != nil && !errors.Is(err, drivers.ErrNotFound) {
		return fmt.Errorf("turso: %w", err)
	}
	return nil
}

// OpenStaged checks req.Credential against the database, then opens
// name-next with a token minted for it (read-only for the readonly scope),
// which expires within an hour. ErrNotFound when nothing is staged;
// ErrDenied when the database refuses the credential.
func (d *Driver) OpenStaged(ctx context.Context, req drivers.OpenRequest) (drivers.OpenResponse, error) {
	base, err := d.databaseURL(req.Database)
	if err != nil {
		return drivers.OpenResponse{}, err
	}
	if req.Credential.Secret == "" {
		return drivers.OpenResponse{}, fmt.Errorf("turso: empty token: %w", drivers.ErrDenied)
	}
	if err := d.check(ctx, base, req.Credential.Secret); err != nil {
		return drivers.OpenResponse{}, err
	}
	authz := platform.FullAccess
	if req.Credential.Scope == drivers.ScopeReadOnly {
		authz = platform.ReadOnly
	}
	return d.openStaged(ctx, req.Database.Name, authz)
}

func (d *Driver) openStaged(ctx context.Context, name string, authz platform.Authorization) (drivers.OpenResponse, error) {
	staged, err := stagedName(name)
	if err != nil {
		return drivers.OpenResponse{}, err
	}
	db, found, err := d.ours(ctx, staged)
	if err != nil {
		return drivers.OpenResponse{}, err
	}
	if !found || db.Hostname == "" {
		return drivers.OpenResponse{}, fmt.Errorf("turso: staged reset %s: %w", staged, drivers.ErrNotFound)
	}
	token, err := d.client.CreateDatabaseToken(ctx, staged, platform.TokenOptions{Authorization: authz, Expiration: expiration(stagedTTL)})
	if err != nil {
		return drivers.OpenResponse{}, fmt.Errorf("turso: %w", err)
	}
	base := d.cfg.DatabaseURL(db.Hostname)
	inner, err := libsql.NewConnector(base, libsql.WithAuthToken(token.Reveal()))
	if err != nil {
		return drivers.OpenResponse{}, fmt.Errorf("turso: cannot configure the libsql client for %s", base)
	}
	pool := sql.OpenDB(tokenConnector{connect: inner.Connect})
	if err := pool.PingContext(ctx); err != nil {
		pool.Close()
		return drivers.OpenResponse{}, fmt.Errorf("turso: cannot open staged reset %s: %w", staged, drivers.ErrUnavailable)
	}
	return drivers.OpenResponse{DB: pool, Dialect: drivers.DialectLibSQL}, nil
}

// SwapReset replaces the database's objects and rows with name-next's in
// one Hrana batch over the admin credential (req.Admin), then deletes
// name-next. Nothing staged is success.
func (d *Driver) SwapReset(ctx context.Context, req drivers.ResetRequest) error {
	staged, err := stagedName(req.Database.Name)
	if err != nil {
		return err
	}
	if _, found, err := d.ours(ctx, staged); err != nil || !found {
		return err
	}
	from, err := d.openStaged(ctx, req.Database.Name, platform.ReadOnly)
	if err != nil {
		return err
	}
	defer from.DB.Close()
	want, err := readObjects(ctx, from.DB)
	if err != nil {
		return fmt.Errorf("turso: staged reset %s: %w", staged, err)
	}
	var b strings.Builder
	b.WriteString("BEGIN;\n")
	for _, o := range want {
		if o.kind != "table" {
			continue
		}
		b.WriteString(o.sql + ";\n")
		if err := writeRows(ctx, &b, from.DB, o.name); err != nil {
			return fmt.Errorf("turso: staged reset %s: %w", staged, err)
		}
	}
	for _, o := range want {
		if o.kind != "table" {
			b.WriteString(o.sql + ";\n")
		}
	}
	b.WriteString("COMMIT;\n")

	to, err := d.Open(ctx, drivers.OpenRequest{Database: req.Database, Credential: req.Admin})
	if err != nil {
		return err
	}
	defer to.DB.Close()
	have, err := readObjects(ctx, to.DB)
	if err != nil {
		return fmt.Errorf("turso: database %s: %w", req.Database.Name, err)
	}
	var drops strings.Builder
	drops.WriteString("BEGIN;\n")
	// Views and triggers first; a table's indexes go with it.
	for _, kind := range []string{"view", "trigger", "table"} {
		for _, o := range have {
			if o.kind == kind {
				fmt.Fprintf(&drops, "DROP %s IF EXISTS %s;\n", strings.ToUpper(kind), quoteIdent(o.name))
			}
		}
	}
	batch := drops.String() + strings.TrimPrefix(b.String(), "BEGIN;\n")
	if err := runBatch(ctx, to.DB, batch); err != nil {
		return fmt.Errorf("turso: cannot replace the contents of %s: %w", req.Database.Name, err)
	}
	return d.deleteStaged(ctx, staged)
}

// DiscardReset deletes name-next. Turso keeps no old contents beside the
// database (the swap replaced them in place). Absent is success.
func (d *Driver) DiscardReset(ctx context.Context, req drivers.ResetRequest) error {
	staged, err := stagedName(req.Database.Name)
	if err != nil {
		return err
	}
	return d.deleteStaged(ctx, staged)
}

// object is one entry of sqlite_schema.
type object struct{ kind, name, sql string }

// readObjects lists the database's tables, indexes, views and triggers in
// creation order (every object's dependencies first), the engine's own
// objects (SQLite's, libSQL's, tursodb's __turso_internal_ ones, which it
// makes itself for AUTOINCREMENT) and automatic indexes excepted.
func readObjects(ctx context.Context, db *sql.DB) ([]object, error) {
	rows, err := db.QueryContext(ctx, `
		SELECT type, name, sql FROM sqlite_schema
		WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name NOT LIKE 'libsql\_%' ESCAPE '\'
		  AND name NOT LIKE '\_\_turso\_internal\_%' ESCAPE '\'
		ORDER BY rowid`)
	if err != nil {
		return nil, fmt.Errorf("cannot read the schema: %w", err)
	}
	defer rows.Close()
	var out []object
	for rows.Next() {
		var o object
		if err := rows.Scan(&o.kind, &o.name, &o.sql); err != nil {
			return nil, fmt.Errorf("cannot read the schema: %w", err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot read the schema: %w", err)
	}
	return out, nil
}

// writeRows appends an INSERT of every row of table, values as literals
// (a batch's statements cannot share bind parameters).
func writeRows(ctx context.Context, b *strings.Builder, db *sql.DB, table string) error {
	rows, err := db.QueryContext(ctx, "SELECT * FROM "+quoteIdent(table))
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", table, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", table, err)
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = quoteIdent(c)
	}
	values := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range values {
		ptrs[i] = &values[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("cannot read %s: %w", table, err)
		}
		fmt.Fprintf(b, "INSERT INTO %s (%s) VALUES (", quoteIdent(table), strings.Join(names, ", "))
		for i, v := range values {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(literal(v))
		}
		b.WriteString(");\n")
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot read %s: %w", table, err)
	}
	return nil
}

// literal writes v, as the libSQL client scanned it, as an SQL literal of
// the same storage class.
func literal(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		switch {
		case math.IsNaN(x):
			return "NULL"
		case math.IsInf(x, 1):
			return "9e999"
		case math.IsInf(x, -1):
			return "-9e999"
		}
		s := strconv.FormatFloat(x, 'g', -1, 64)
		if !strings.ContainsAny(s, ".e") {
			s += ".0"
		}
		return s
	case bool:
		if x {
			return "1"
		}
		return "0"
	case []byte:
		return "X'" + hex.EncodeToString(x) + "'"
	case string:
		return "'" + strings.ReplaceAll(x, "'", "''") + "'"
	case time.Time:
		return "'" + x.UTC().Format(time.RFC3339Nano) + "'"
	}
	return "'" + strings.ReplaceAll(fmt.Sprint(v), "'", "''") + "'"
}

// quoteIdent quotes an identifier for SQLite.
func quoteIdent(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

// staleConnections bounds how many pooled connections runBatch discards:
// libsql-client-go reports a connection whose Hrana stream the server
// closed as driver.ErrBadConn before sending anything, and database/sql
// does not retry a pinned connection by itself.
const staleConnections = 4

// runBatch sends batch ("BEGIN; ...; COMMIT;") on one pinned connection,
// which libsql-client-go sends as one Hrana batch: each step runs only if
// the previous one succeeded, and a batch whose COMMIT did not run is
// rolled back. A ROLLBACK follows a failure on the same session anyway.
func runBatch(ctx context.Context, db *sql.DB, batch string) error {
	for attempt := 1; ; attempt++ {
		conn, err := db.Conn(ctx)
		if err != nil {
			return fmt.Errorf("cannot connect: %w", drivers.ErrUnavailable)
		}
		_, err = conn.ExecContext(ctx, batch)
		stale := errors.Is(err, driver.ErrBadConn)
		if err != nil && !stale {
			// "No transaction is active" is the expected answer; ignore it.
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
		// Closing after ErrBadConn discards the connection instead of pooling it.
		conn.Close()
		if stale && attempt < staleConnections {
			continue
		}
		return err
	}
}
