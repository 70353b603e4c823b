package turso

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/tursodatabase/libsql-client-go/sqliteparserutils"

	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/turso/platform"
)

// BackupFormat is the format of a Turso driver's copies: SQL text that
// rebuilds the database (adr/0021). Its first line is dumpHeader, then
// BEGIN, every table's CREATE and one INSERT per row, the indexes, views
// and triggers, COMMIT, and last the line dumpTrailer, by which a restore
// tells a whole copy from a torn one.
const BackupFormat = "libsql-dump"

const (
	dumpHeader  = "-- envplane libsql-dump 1\n"
	dumpTrailer = "-- end of libsql-dump\n"
	dumpBegin   = "BEGIN;\n"
	dumpCommit  = "COMMIT;\n"
)

// maxRestore is the largest dump body RestoreDatabase applies: it holds the
// dump in memory, and applyDump's splitter holds it again as runes (four
// bytes a character), so a restore at the limit needs about 1.3 GB.
const maxRestore = 256 << 20

var _ drivers.BackerUp = (*Driver)(nil)

// snapshotAttempts bounds how often BackupDatabase reads again when the
// schema changed between listing the tables and reading them.
const snapshotAttempts = 3

// BackupDatabase writes the database to req.W as a libsql-dump: its
// objects and rows read over libSQL with a read-only token the driver
// mints for it (an hour long). The schema and every table are read by one
// Hrana batch between BEGIN and COMMIT, one read transaction, so the copy
// is one snapshot while writers go on (adr/0021); the batch's schema is
// checked against the list the batch was built from, and read again when
// a migration changed it in between. ErrNotFound if the database is absent.
func (d *Driver) BackupDatabase(ctx context.Context, req drivers.BackupRequest) (drivers.BackupResponse, error) {
	name, err := tursoName(req.Database.Name)
	if err != nil {
		return drivers.BackupResponse{}, err
	}
	db, found, err := d.ours(ctx, name)
	if err != nil {
		return drivers.BackupResponse{}, err
	}
	if !found || db.Hostname == "" {
		return drivers.BackupResponse{}, fmt.Errorf("turso: database %s: %w", name, drivers.ErrNotFound)
	}
	if db.Name == "" {
		db.Name = name
	}
	pool, err := d.connectMinted(ctx, db, platform.ReadOnly)
	if err != nil {
		return drivers.BackupResponse{}, err
	}
	defer pool.Close()
	for attempt := 1; ; attempt++ {
		resp, err := snapshot(ctx, pool, req.W)
		if errors.Is(err, errSchemaChanged) && attempt < snapshotAttempts {
			continue
		}
		if err != nil {
			return drivers.BackupResponse{}, fmt.Errorf("turso: cannot copy %s: %w", name, err)
		}
		return resp, nil
	}
}

// errSchemaChanged reports that the schema a snapshot's batch read is not
// the one it was built from; nothing was written yet.
var errSchemaChanged = errors.New("the schema changed while it was read")

// snapshot reads the database in one batch and writes the dump to out.
func snapshot(ctx context.Context, pool *sql.DB, out io.Writer) (drivers.BackupResponse, error) {
	objs, err := readObjects(ctx, pool)
	if err != nil {
		return drivers.BackupResponse{}, err
	}
	var q strings.Builder
	q.WriteString("BEGIN;\n" + objectsQuery + ";\n")
	for _, o := range objs {
		if o.kind == "table" {
			q.WriteString(selectAll(o.name) + ";\n")
		}
	}
	q.WriteString("COMMIT;\n")
	rows, err := pool.QueryContext(ctx, q.String())
	if err != nil {
		return drivers.BackupResponse{}, fmt.Errorf("cannot read the database: %w", err)
	}
	defer rows.Close()
	// The result sets: BEGIN's, the schema's, one per table, COMMIT's.
	if !rows.NextResultSet() {
		return drivers.BackupResponse{}, fmt.Errorf("cannot read the schema: %w", errors.Join(errors.New("no result"), rows.Err()))
	}
	seen, err := scanObjects(rows)
	if err != nil {
		return drivers.BackupResponse{}, err
	}
	if !slices.Equal(seen, objs) {
		return drivers.BackupResponse{}, errSchemaChanged
	}
	w := bufio.NewWriter(out)
	// A bufio.Writer keeps its first error, which Flush reports.
	_, _ = io.WriteString(w, dumpHeader+dumpBegin)
	tables := make(map[string]int64)
	for _, o := range objs {
		if o.kind != "table" {
			continue
		}
		if !rows.NextResultSet() {
			return drivers.BackupResponse{}, fmt.Errorf("cannot read %s: %w", o.name, errors.Join(errors.New("no result"), rows.Err()))
		}
		_, _ = io.WriteString(w, o.sql+";\n")
		n, err := writeResult(w, rows, o.name)
		if err != nil {
			return drivers.BackupResponse{}, err
		}
		tables[o.name] = n
	}
	for _, o := range objs {
		if o.kind != "table" {
			_, _ = io.WriteString(w, o.sql+";\n")
		}
	}
	_, _ = io.WriteString(w, dumpCommit+dumpTrailer)
	if err := w.Flush(); err != nil {
		return drivers.BackupResponse{}, fmt.Errorf("cannot write the copy: %w", err)
	}
	return drivers.BackupResponse{Format: BackupFormat, Tables: tables}, nil
}

// RestoreDatabase creates req.Name from a libsql-dump. The dump is applied
// (applyDump) to a staged database (name-next, as a reset stages one),
// then req.Name is created seeded from it and the staged one deleted: a
// restore that fails half-way leaves at most the staged database, which
// DropDatabase and the next attempt remove, and a database named req.Name
// is always complete. A torn or foreign copy is ErrUnsupported.
func (d *Driver) RestoreDatabase(ctx context.Context, req drivers.RestoreRequest) (drivers.CreateDatabaseResponse, error) {
	if req.Format != BackupFormat {
		return drivers.CreateDatabaseResponse{}, fmt.Errorf("a %q copy cannot be restored on turso: %w", req.Format, drivers.ErrUnsupported)
	}
	in, err := d.createInput(req.Name, req.Region)
	if err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	staged, err := stagedName(req.Name)
	if err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	if _, found, err := d.ours(ctx, in.Name); err != nil {
		return drivers.CreateDatabaseResponse{}, err
	} else if found {
		// Done before: a crash may have left the staged database.
		if err := d.deleteStaged(ctx, staged); err != nil {
			return drivers.CreateDatabaseResponse{}, err
		}
		return d.create(ctx, req.Name, in)
	}
	body, err := readDump(req.R)
	if err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	if err := d.deleteStaged(ctx, staged); err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	sdb, err := d.client.CreateDatabase(ctx, platform.CreateDatabaseInput{Name: staged, Group: d.cfg.Group})
	if err != nil {
		return drivers.CreateDatabaseResponse{}, fmt.Errorf("turso: %w", err)
	}
	if sdb.Name == "" {
		sdb.Name = staged
	}
	pool, err := d.connectMinted(ctx, sdb, platform.FullAccess)
	if err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	err = applyDump(ctx, pool, body)
	pool.Close()
	if err != nil {
		return drivers.CreateDatabaseResponse{}, fmt.Errorf("turso: cannot apply the copy to %s: %w", staged, err)
	}
	in.Seed = &platform.Seed{Type: platform.SeedDatabase, Name: staged}
	resp, err := d.create(ctx, req.Name, in)
	if err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	if err := d.deleteStaged(ctx, staged); err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	return resp, nil
}

// restoreChunk is about the most SQL text applyDump sends in one request.
const restoreChunk = 4 << 20

// applyDump applies a dump's body, BEGIN to COMMIT, to a staged database:
// in one batch when it is at most restoreChunk long; a longer one, more
// than a server takes in one request, statement by statement in batches of
// about restoreChunk, each a transaction of its own. A staged database is
// seen by nobody until it is whole, and one a failure left half-made is
// deleted by the next attempt, so the batches need no transaction around
// them all (which the edge could not keep across requests anyway: Turso
// ends a stream's transaction with the stream). The statements are split
// with libsql-client-go's SQLite splitter, which keeps a string, a
// trigger's body or a comment holding a semicolon whole. The triggers come
// last in a dump, so no restored row fires one.
func applyDump(ctx context.Context, db *sql.DB, body string) error {
	if len(body) <= restoreChunk {
		return runBatch(ctx, db, body)
	}
	it := sqliteparserutils.CreateStatementIterator(strings.TrimSuffix(strings.TrimPrefix(body, dumpBegin), dumpCommit))
	var batch strings.Builder
	for {
		stmt, _, eof := it.Next()
		if stmt != "" {
			if batch.Len() == 0 {
				batch.WriteString(dumpBegin)
			}
			batch.WriteString(stmt)
			batch.WriteString(";\n")
		}
		if batch.Len() > 0 && (eof || batch.Len() >= restoreChunk) {
			batch.WriteString(dumpCommit)
			if err := runBatch(ctx, db, batch.String()); err != nil {
				return err
			}
			batch.Reset()
		}
		if eof {
			return nil
		}
	}
}

// readDump reads a libsql-dump to its end and returns its batch, BEGIN to
// COMMIT. A copy without its header or trailer is ErrUnsupported.
func readDump(r io.Reader) (string, error) {
	raw, err := io.ReadAll(io.LimitReader(r, int64(len(dumpHeader)+maxRestore+len(dumpTrailer))+1))
	if err != nil {
		return "", fmt.Errorf("turso: cannot read the copy: %w", err)
	}
	if len(raw) > len(dumpHeader)+maxRestore+len(dumpTrailer) {
		return "", fmt.Errorf("turso: the copy is larger than the %d MiB a restore applies: %w", maxRestore>>20, drivers.ErrUnsupported)
	}
	body, ok := bytes.CutPrefix(raw, []byte(dumpHeader))
	if ok {
		body, ok = bytes.CutSuffix(body, []byte(dumpTrailer))
	}
	if !ok || !bytes.HasPrefix(body, []byte(dumpBegin)) || !bytes.HasSuffix(body, []byte(dumpCommit)) {
		return "", fmt.Errorf("turso: the copy is torn or not a %s: %w", BackupFormat, drivers.ErrUnsupported)
	}
	return string(body), nil
}
