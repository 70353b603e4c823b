package turso_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/drivertest"
	"github.com/envplane/envplane/drivers/turso"
	"github.com/envplane/envplane/drivers/turso/tursotest"
)

// TestBackupKeepsValuesAndObjects: a backup moves rows as SQL literals
// through a libsql-dump, so each storage class comes back as itself, the
// indexes, views and triggers come with their tables (the triggers not
// firing on the restored rows), the counts are the copy's, and a dump
// missing its end (cut at a statement boundary) makes nothing.
func TestBackupKeepsValuesAndObjects(t *testing.T) {
	d, p := newDriver(t, tursotest.PlatformOptions{DataPlane: true})
	ctx := context.Background()
	src := create(t, d)
	s := open(t, d, src, issue(t, d, src, drivers.ScopeAdmin, time.Time{}))
	for _, q := range []string{
		`CREATE TABLE v (id INTEGER PRIMARY KEY AUTOINCREMENT, i INTEGER, r REAL, t TEXT, b BLOB, n)`,
		`CREATE TABLE log (id INTEGER)`,
		`INSERT INTO v (i, r, t, b, n) VALUES (-9007199254740993, 3.0, 'it''s "quoted";
two lines', x'00ff10', NULL)`,
		`INSERT INTO v (i, r, t, b, n) VALUES (0, 1.5e-300, '', x'', 42)`,
		`CREATE INDEX v_t ON v (t)`,
		`CREATE VIEW v_view AS SELECT id, t FROM v`,
		`CREATE TRIGGER v_log AFTER INSERT ON v BEGIN INSERT INTO log VALUES (new.id); END`,
	} {
		if _, err := s.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var dump bytes.Buffer
	resp, err := d.BackupDatabase(ctx, drivers.BackupRequest{Database: src, W: &dump})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if resp.Format != turso.BackupFormat || resp.Tables["v"] != 2 || resp.Tables["log"] != 0 || len(resp.Tables) != 2 {
		t.Fatalf("backup: format %q, tables %v", resp.Format, resp.Tables)
	}

	// Cut before its trailer, the dump is whole SQL but not a whole copy.
	cut := strings.TrimSuffix(dump.String(), "-- end of libsql-dump\n")
	if cut == dump.String() {
		t.Fatalf("the dump does not end with its trailer: %q", dump.String()[max(0, dump.Len()-80):])
	}
	torn := drivertest.NewDatabaseName(t)
	if _, err := d.RestoreDatabase(ctx, drivers.RestoreRequest{Name: torn, Format: resp.Format, R: strings.NewReader(cut)}); !errors.Is(err, drivers.ErrUnsupported) {
		t.Fatalf("restore of a dump without its trailer: %v, want ErrUnsupported", err)
	}
	before := len(p.Databases())

	dst := drivertest.NewDatabaseName(t)
	made, err := d.RestoreDatabase(ctx, drivers.RestoreRequest{Name: dst, Format: resp.Format, R: &dump})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	t.Cleanup(func() { d.DropDatabase(context.Background(), drivers.DropDatabaseRequest{Database: made.Database}) })
	if after := len(p.Databases()); after != before+1 {
		t.Errorf("a restore left %d databases more, want its own 1 (the staged one deleted): %v", after-before, p.Databases())
	}
	k := open(t, d, made.Database, issue(t, d, made.Database, drivers.ScopeAdmin, time.Time{}))
	read := func(q string) string { t.Helper(); return joined(t, k, q) }
	if got, want := read(`SELECT typeof(i)||','||typeof(r)||','||typeof(t)||','||typeof(b)||','||typeof(n) FROM v ORDER BY id`),
		"integer,real,text,blob,null|integer,real,text,blob,integer"; got != want {
		t.Errorf("storage classes after the restore: %s, want %s", got, want)
	}
	if got, want := read(`SELECT i||','||r||','||t||','||hex(b) FROM v WHERE id = 1`), "-9007199254740993,3.0,it's \"quoted\";\ntwo lines,00FF10"; got != want {
		t.Errorf("values after the restore: %q, want %q", got, want)
	}
	if got := read(`SELECT count(*) FROM log`); got != "0" {
		t.Errorf("restoring the rows fired the trigger: %s log rows", got)
	}
	if got, want := read(`SELECT type||':'||name FROM sqlite_schema WHERE name NOT LIKE 'sqlite%' AND name NOT LIKE '\_\_turso%' ESCAPE '\' ORDER BY name`),
		"table:log|table:v|trigger:v_log|index:v_t|view:v_view"; got != want {
		t.Errorf("objects after the restore: %s, want %s", got, want)
	}
	if _, err := k.Exec(`INSERT INTO v (i) VALUES (7)`); err != nil {
		t.Fatalf("insert after the restore: %v", err)
	}
	if got := read(`SELECT group_concat(id) FROM log`); got != "3" {
		t.Errorf("the trigger after the restore logged %s, want 3", got)
	}

	// A crash between creating the database and deleting the staged one
	// (a reset stages under the same name): the retried restore reads
	// nothing and deletes the staged database.
	if err := d.StageReset(ctx, drivers.ResetRequest{Database: made.Database}); err != nil {
		t.Fatalf("stage: %v", err)
	}
	if _, err := d.RestoreDatabase(ctx, drivers.RestoreRequest{Name: dst, Format: resp.Format, R: failingReader{}}); err != nil {
		t.Fatalf("retried restore: %v", err)
	}
	for _, name := range p.Databases() {
		if strings.HasSuffix(name, "-next") {
			t.Errorf("the retried restore left the staged database %s", name)
		}
	}
}

// failingReader fails every read: a restore that must not read its copy.
type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("the copy was read") }

// TestBackupIsOneSnapshot backs up while a writer adds a row to each of
// two tables in one transaction at a time: every backup counts as many
// rows in one as in the other, which tables read one after the other,
// between the writer's transactions, would not.
func TestBackupIsOneSnapshot(t *testing.T) {
	d, _ := newDriver(t, tursotest.PlatformOptions{DataPlane: true})
	ctx := context.Background()
	src := create(t, d)
	db := open(t, d, src, issue(t, d, src, drivers.ScopeAdmin, time.Time{}))
	if _, err := db.Exec(`CREATE TABLE a (x INTEGER); CREATE TABLE b (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if _, err := db.Exec(`BEGIN; INSERT INTO a VALUES (1); INSERT INTO b VALUES (1); COMMIT`); err != nil {
				done <- err
				return
			}
		}
	}()
	for i := range 8 {
		resp, err := d.BackupDatabase(ctx, drivers.BackupRequest{Database: src, W: io.Discard})
		if err != nil {
			close(stop)
			t.Fatalf("backup %d: %v", i, err)
		}
		if resp.Tables["a"] != resp.Tables["b"] {
			t.Errorf("backup %d counted %d rows in a and %d in b: not one snapshot", i, resp.Tables["a"], resp.Tables["b"])
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("writer: %v", err)
	}
}

// TestRestoreOfALargeCopy restores a copy of more than 20 MiB, the size
// above which libsql-client-go sends SQL in chunks of its own inside its
// own transaction: every row comes back, byte for byte.
func TestRestoreOfALargeCopy(t *testing.T) {
	d, _ := newDriver(t, tursotest.PlatformOptions{DataPlane: true})
	ctx := context.Background()
	src := create(t, d)
	s := open(t, d, src, issue(t, d, src, drivers.ScopeAdmin, time.Time{}))
	// A value and a trigger holding semicolons, which the statements are
	// split around.
	const tricky = "a;\nINSERT INTO blobs (id, b) VALUES (-1, x'00');\n-- b;"
	for _, q := range []string{
		`CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB NOT NULL)`,
		`CREATE TABLE notes (t TEXT)`,
		`CREATE TABLE log (n INTEGER)`,
		`CREATE TRIGGER notes_log AFTER INSERT ON notes BEGIN INSERT INTO log VALUES (1); INSERT INTO log VALUES (2); END`,
	} {
		if _, err := s.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, err := s.Exec(`INSERT INTO notes VALUES (?)`, tricky); err != nil {
		t.Fatal(err)
	}
	// 1,200 rows of 10 KB: a dump of about 24 MB, the blobs written in hex.
	const rows, size, perInsert = 1200, 10_000, 100
	rng := rand.New(rand.NewPCG(1, 2))
	sum := sha256.New()
	for first := 0; first < rows; first += perInsert {
		var q strings.Builder
		q.WriteString("INSERT INTO blobs (id, b) VALUES ")
		var args []any
		for i := first; i < first+perInsert; i++ {
			b := make([]byte, size)
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
			sum.Write(b)
			if i > first {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?)")
			args = append(args, i, b)
		}
		if _, err := s.Exec(q.String(), args...); err != nil {
			t.Fatalf("insert: %v", err)
		}
	}
	var dump bytes.Buffer
	resp, err := d.BackupDatabase(ctx, drivers.BackupRequest{Database: src, W: &dump})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if dump.Len() <= 20<<20 {
		t.Fatalf("the dump is %d bytes, not above the 20 MiB the test is about", dump.Len())
	}
	dst, copied := drivertest.NewDatabaseName(t), dump.Len()
	made, err := d.RestoreDatabase(ctx, drivers.RestoreRequest{Name: dst, Format: resp.Format, R: &dump})
	if err != nil {
		t.Fatalf("restore of a %d MB copy: %v", copied>>20, err)
	}
	t.Cleanup(func() { d.DropDatabase(context.Background(), drivers.DropDatabaseRequest{Database: made.Database}) })
	k := open(t, d, made.Database, issue(t, d, made.Database, drivers.ScopeAdmin, time.Time{}))
	got := sha256.New()
	r, err := k.Query(`SELECT b FROM blobs ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n := 0
	for r.Next() {
		var b []byte
		if err := r.Scan(&b); err != nil {
			t.Fatal(err)
		}
		got.Write(b)
		n++
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if n != rows || !bytes.Equal(got.Sum(nil), sum.Sum(nil)) {
		t.Fatalf("the restored table holds %d rows (want %d), equal to the source's: %v", n, rows, bytes.Equal(got.Sum(nil), sum.Sum(nil)))
	}
	if got := joined(t, k, `SELECT t FROM notes`); got != tricky {
		t.Errorf("the value with semicolons came back as %q", got)
	}
	if got := joined(t, k, `SELECT group_concat(n) FROM log`); got != "1,2" {
		t.Errorf("the log after the restore: %q, want the source's 1,2 (the trigger not fired by the restore)", got)
	}
	if _, err := k.Exec(`INSERT INTO notes VALUES ('b')`); err != nil {
		t.Fatal(err)
	}
	if got := joined(t, k, `SELECT count(*) FROM log`); got != "4" {
		t.Errorf("the restored trigger logged %s rows, want 4: its body was cut", got)
	}
}
