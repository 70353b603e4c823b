package turso_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/turso"
	"github.com/envplane/envplane/drivers/turso/tursotest"
)

// TestResetKeepsValuesAndObjects: a reset moves rows through envplane as
// SQL literals, so each storage class must come back as itself (a REAL that
// is a whole number stays REAL, a BLOB stays a BLOB, quotes stay quotes), and
// indexes, views and triggers must come with their tables, the triggers
// created after the rows so that copying does not fire them.
func TestResetKeepsValuesAndObjects(t *testing.T) {
	d, _ := newDriver(t, tursotest.PlatformOptions{DataPlane: true})
	ctx := context.Background()
	src, dst := create(t, d), create(t, d)
	srcAdmin := issue(t, d, src, drivers.ScopeAdmin, time.Time{})
	dstAdmin := issue(t, d, dst, drivers.ScopeAdmin, time.Time{})
	s := open(t, d, src, srcAdmin)
	for _, q := range []string{
		`CREATE TABLE v (id INTEGER PRIMARY KEY AUTOINCREMENT, i INTEGER, r REAL, t TEXT, b BLOB, n)`,
		`CREATE TABLE log (id INTEGER)`,
		`INSERT INTO v (i, r, t, b, n) VALUES (-9007199254740993, 3.0, 'it''s "quoted"', x'00ff10', NULL)`,
		`INSERT INTO v (i, r, t, b, n) VALUES (0, 1.5e-300, '', x'', 42)`,
		`CREATE INDEX v_t ON v (t)`,
		`CREATE VIEW v_view AS SELECT id, t FROM v`,
		`CREATE TRIGGER v_log AFTER INSERT ON v BEGIN INSERT INTO log VALUES (new.id); END`,
	} {
		if _, err := s.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	k := open(t, d, dst, dstAdmin)
	if _, err := k.Exec(`CREATE TABLE old (x INTEGER); INSERT INTO old VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	req := drivers.ResetRequest{Database: dst, Source: &src, Admin: dstAdmin}
	// Twice: the second drops what the first made (AUTOINCREMENT's
	// bookkeeping included) and makes it again.
	for range 2 {
		if err := d.StageReset(ctx, req); err != nil {
			t.Fatalf("stage: %v", err)
		}
		if err := d.SwapReset(ctx, req); err != nil {
			t.Fatalf("swap: %v", err)
		}
	}
	read := func(q string) string { t.Helper(); return joined(t, k, q) }
	if got, want := read(`SELECT typeof(i)||','||typeof(r)||','||typeof(t)||','||typeof(b)||','||typeof(n) FROM v ORDER BY id`),
		"integer,real,text,blob,null|integer,real,text,blob,integer"; got != want {
		t.Errorf("storage classes after the reset: %s, want %s", got, want)
	}
	if got, want := read(`SELECT i||','||r||','||t||','||hex(b) FROM v WHERE id = 1`), `-9007199254740993,3.0,it's "quoted",00FF10`; got != want {
		t.Errorf("values after the reset: %s, want %s", got, want)
	}
	if got := read(`SELECT count(*) FROM log`); got != "0" {
		t.Errorf("copying the rows fired the trigger: %s log rows", got)
	}
	if got, want := read(`SELECT type||':'||name FROM sqlite_schema WHERE name NOT LIKE 'sqlite%' AND name NOT LIKE '\_\_turso%' ESCAPE '\' ORDER BY name`),
		"table:log|table:v|trigger:v_log|index:v_t|view:v_view"; got != want {
		t.Errorf("objects after the reset: %s, want %s", got, want)
	}
	if _, err := k.Exec(`INSERT INTO v (i) VALUES (7)`); err != nil {
		t.Fatalf("insert after the reset: %v", err)
	}
	if got := read(`SELECT group_concat(id) FROM log`); got != "3" {
		t.Errorf("the trigger after the reset logged %s, want 3 (AUTOINCREMENT carried on)", got)
	}
}

// open returns a pool on the database with the credential, closed when the test ends.
func open(t *testing.T, d *turso.Driver, db drivers.Database, c drivers.Credential) *sql.DB {
	t.Helper()
	resp, err := d.Open(context.Background(), drivers.OpenRequest{Database: db, Credential: c})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { resp.DB.Close() })
	return resp.DB
}

// joined runs q, whose rows are one text column each, and returns them
// joined by "|".
func joined(tb testing.TB, db *sql.DB, q string) string {
	tb.Helper()
	rows, err := db.Query(q)
	if err != nil {
		tb.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			tb.Fatal(err)
		}
		out = append(out, v)
	}
	return strings.Join(out, "|")
}
