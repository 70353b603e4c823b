package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/prometheus/client_golang/prometheus"
	_ "modernc.org/sqlite"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/backupstore"
	"github.com/envplane/envplane/controlplane/httpapi"
	"github.com/envplane/envplane/controlplane/keyring/local"
	sqlitestore "github.com/envplane/envplane/controlplane/store/sqlite"
	"github.com/envplane/envplane/dataplane"
	sqlitedriver "github.com/envplane/envplane/drivers/sqlite"
	"github.com/envplane/envplane/migrations"
)

// realAPI starts the whole envplane on its embedded default (SQLite store,
// local keyring, SQLite target, the real echo server) and returns its URL
// and a platform admin token.
func realAPI(tb testing.TB) (url, admin string) {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	store, err := sqlitestore.Open(ctx, filepath.Join(dir, "controlplane.db"))
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	kr, _, err := local.EnsureFile(filepath.Join(dir, "master.key"))
	if err != nil {
		tb.Fatalf("keyring: %v", err)
	}
	d, err := sqlitedriver.New(sqlitedriver.Config{Dir: filepath.Join(dir, "databases")})
	if err != nil {
		tb.Fatalf("driver: %v", err)
	}
	logger := slog.New(slog.DiscardHandler)
	svc := cp.New(store, kr, []*cp.Target{{Name: "local", Region: "local", Driver: d}}, "local")
	svc.Logger = logger
	svc.Schema = &dataplane.Initializer{System: migrations.DataPlane()}
	if svc.Backups, err = backupstore.NewDir(filepath.Join(dir, "backups")); err != nil {
		tb.Fatalf("backup store: %v", err)
	}
	srv, err := httpapi.NewServer(svc, logger, prometheus.NewRegistry(), httpapi.Options{})
	if err != nil {
		tb.Fatalf("server: %v", err)
	}
	ts := httptest.NewServer(srv)
	tb.Cleanup(func() {
		ts.Close()
		svc.Wait()
		if err := store.Close(); err != nil {
			tb.Errorf("close store: %v", err)
		}
	})
	token, err := svc.Bootstrap(ctx, cp.BootstrapRequest{Email: "ops@example.com"})
	if err != nil || token == "" {
		tb.Fatalf("bootstrap: token issued=%v err=%v", token != "", err)
	}
	return ts.URL, token
}

// session runs envctl commands against one API with one token.
type session struct {
	tb         testing.TB
	url, token string
}

func (s session) run(args ...string) (stdout, stderr string, err error) {
	s.tb.Helper()
	env := map[string]string{"ENVPLANE_URL": s.url, "ENVPLANE_TOKEN": s.token}
	var out, errOut bytes.Buffer
	err = run(context.Background(), append([]string{"--poll-interval", "10ms"}, args...), func(k string) string { return env[k] }, strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), err
}

// must runs a command that has to succeed.
func (s session) must(args ...string) string {
	s.tb.Helper()
	out, stderr, err := s.run(args...)
	if err != nil {
		s.tb.Fatalf("envctl %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out
}

// json runs a command with -o json and decodes its output into v.
func (s session) json(v any, args ...string) {
	s.tb.Helper()
	out := s.must(append([]string{"-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		s.tb.Fatalf("envctl %s: output is not JSON: %v", strings.Join(args, " "), err)
	}
}

// TestAgainstRealServer walks envctl through an operator's first session
// against the real server, and proves the DSN it prints opens the
// environment's database with the scope asked for.
func TestAgainstRealServer(t *testing.T) {
	url, adminToken := realAPI(t)
	admin := session{t, url, adminToken}

	var me cp.Me
	admin.json(&me, "me")
	if !me.PlatformAdmin {
		t.Fatal("the bootstrap key is not a platform admin")
	}

	// The API describes itself with a document that validates.
	doc, loadErr := openapi3.NewLoader().LoadFromData([]byte(admin.must("openapi")))
	if loadErr != nil {
		t.Fatalf("envctl openapi printed no OpenAPI document: %v", loadErr)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("served OpenAPI document: %v", err)
	}

	var org cp.CreateOrganizationResponse
	admin.json(&org, "org", "create", "acme", "--name", "Acme")
	if org.Organization.Slug != "acme" || org.DefaultEnvironment == nil || org.DefaultEnvironment.Status != cp.StatusActive {
		t.Fatalf("org create: slug %q, default environment %+v", org.Organization.Slug, org.DefaultEnvironment)
	}

	// --wait 0s makes the server answer before provisioning ends, as it
	// may for any slow target; envctl then follows the operation.
	var dev cp.EnvironmentView
	admin.json(&dev, "env", "create", "dev", "--org", "acme", "--type", "development", "--wait", "0s")
	if dev.Environment == nil || dev.Status != cp.StatusActive || dev.Database == nil || dev.Database.Driver != "sqlite" {
		t.Fatalf("env create did not end with an active sqlite environment: %+v", dev.Environment)
	}

	table := admin.must("env", "list", "--org", "acme")
	if !strings.Contains(table, "dev") || !strings.Contains(table, "development") || !strings.Contains(table, dev.Database.DatabaseName) {
		t.Fatalf("env list table lacks dev:\n%s", table)
	}

	// The DSN envctl prints opens the database; readonly cannot write.
	rw := strings.TrimSpace(admin.must("connection", "acme", "dev", "--dsn", "--scope", "readwrite"))
	db := openDSN(t, rw)
	if _, err := db.Exec(`CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('hello')`); err != nil {
		t.Fatalf("readwrite DSN cannot write: %v", err)
	}
	ro := strings.TrimSpace(admin.must("connection", "dev", "--org", "acme", "--dsn", "--scope", "readonly"))
	rodb := openDSN(t, ro)
	var body string
	if err := rodb.QueryRow(`SELECT body FROM notes`).Scan(&body); err != nil || body != "hello" {
		t.Fatalf("readonly DSN cannot read what readwrite wrote: %q %v", body, err)
	}
	if _, err := rodb.Exec(`INSERT INTO notes VALUES ('nope')`); err == nil {
		t.Fatal("the readonly DSN wrote")
	}

	// An app key bound to dev up to readonly: readwrite is 403 on stderr.
	var key cp.CreateAPIKeyResponse
	admin.json(&key, "key", "create", "reader", "--org", "acme", "--env", "dev", "--max-scope", "readonly")
	app := session{t, url, key.Token}
	if _, stderr, err := app.run("connection", "acme", "dev", "--scope", "readwrite"); !cp.IsCode(err, cp.EFORBIDDEN) || !strings.HasPrefix(stderr, "envctl: ") {
		t.Fatalf("app key above its scope: err %v, stderr %q", err, stderr)
	}
	var conn cp.Connection
	app.json(&conn, "connection", "acme", "dev", "--scope", "readonly")
	if conn.Scope != "readonly" || conn.EnvironmentID != dev.ID {
		t.Fatalf("app key connection: scope %q environment %q", conn.Scope, conn.EnvironmentID)
	}
	if conn.Secret == "" {
		t.Fatal("the connection carries no secret")
	}
	if out := app.must("connection", "acme", "dev", "--scope", "readonly"); strings.Contains(out, conn.Secret.Reveal()) {
		t.Fatal("the connection table shows the secret")
	}

	// Invalid fields come back as the problem's field errors on stderr.
	_, stderr, err := admin.run("env", "create", "Not_A_Slug", "--org", "acme")
	if !cp.IsCode(err, cp.EINVALID) || exitCode(err) != 1 || !strings.Contains(stderr, "  slug: ") {
		t.Fatalf("invalid slug: err %v, stderr %q", err, stderr)
	}

	// Rotation moves readwrite to a new credential.
	var before, after cp.List[*cp.Credential]
	admin.json(&before, "cred", "list", "dev", "--org", "acme")
	var rotated cp.CredentialsResponse
	admin.json(&rotated, "cred", "rotate", "dev", "--org", "acme", "--scope", "readwrite", "--reason", "test")
	admin.json(&after, "cred", "list", "dev", "--org", "acme")
	if activeID(after.Items, "readwrite") == "" || activeID(after.Items, "readwrite") == activeID(before.Items, "readwrite") {
		t.Fatal("rotation did not issue a new active readwrite credential")
	}

	// Members and environment roles, by email.
	admin.must("member", "add", "bob@example.com", "--role", "member", "--org", "acme")
	admin.must("env-member", "set", "dev", "bob@example.com", "--role", "env_viewer", "--org", "acme")
	if out := admin.must("env-member", "list", "dev", "--org", "acme"); !strings.Contains(out, "bob@example.com") || !strings.Contains(out, "env_viewer") {
		t.Fatalf("env-member list:\n%s", out)
	}

	var schema cp.SchemaStatus
	admin.json(&schema, "schema", "status", "dev", "--org", "acme")
	if len(schema.Applied) == 0 {
		t.Fatal("schema status shows no applied system migration")
	}

	if out := admin.must("audit", "--org", "acme"); !strings.Contains(out, "ACTION") || strings.Count(out, "\n") < 3 {
		t.Fatalf("audit shows too little:\n%s", out)
	}

	// Reset to an empty schema follows the operation: the notes are gone,
	// the DSN printed before still opens the database.
	if out := admin.must("env", "reset", "dev", "--org", "acme", "--mode", "schema", "--yes"); out != "reset environment dev\n" {
		t.Fatalf("env reset printed %q", out)
	}
	if err := rodb.QueryRow(`SELECT body FROM notes`).Scan(&body); err == nil {
		t.Fatal("the notes survived a schema reset")
	}
	if _, err := db.Exec(`CREATE TABLE again (x INTEGER)`); err != nil {
		t.Fatalf("the readwrite DSN printed before the reset fails after it: %v", err)
	}

	// Suspend makes lookups 423; delete follows deprovisioning to the end.
	admin.must("env", "suspend", "dev", "--org", "acme")
	if _, _, err := admin.run("connection", "acme", "dev"); !cp.IsCode(err, cp.ELOCKED) {
		t.Fatalf("connection of a suspended environment: %v", err)
	}
	admin.must("env", "resume", "dev", "--org", "acme")
	if out := admin.must("env", "delete", "dev", "--org", "acme", "--yes"); out != "deleted environment dev\n" {
		t.Fatalf("env delete printed %q", out)
	}
	if _, _, err := admin.run("env", "get", "dev", "--org", "acme"); !cp.IsCode(err, cp.ENOTFOUND) {
		t.Fatalf("deleted environment: %v", err)
	}
}

func openDSN(tb testing.TB, dsn string) *sql.DB {
	tb.Helper()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		tb.Fatalf("open the printed DSN: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func activeID(creds []*cp.Credential, scope cp.Scope) string {
	for _, c := range creds {
		if c.Scope == scope && c.Status == cp.CredentialActive {
			return c.ID
		}
	}
	return ""
}

// TestNewcomerAgainstRealServer walks what a newcomer stumbled on, against
// the real server: member add without --role, filtered lists, and a
// deletion that asks first.
func TestNewcomerAgainstRealServer(t *testing.T) {
	url, adminToken := realAPI(t)
	admin := session{t, url, adminToken}
	admin.must("org", "create", "acme")

	var bob cp.OrgMembership
	admin.json(&bob, "member", "add", "bob@example.com", "--org", "acme")
	if bob.Role != cp.OrgMember {
		t.Fatalf("member add without --role gave role %q, want member", bob.Role)
	}

	admin.must("env", "create", "dev", "--org", "acme", "--type", "development")
	var pr cp.EnvironmentView
	admin.json(&pr, "env", "create", "pr-1", "--org", "acme", "--type", "preview", "--wait", "0s")
	var previews cp.List[*cp.EnvironmentView]
	admin.json(&previews, "env", "list", "--org", "acme", "--type", "preview")
	if len(previews.Items) != 1 || previews.Items[0].Slug != "pr-1" {
		t.Fatalf("env list --type preview: %d items", len(previews.Items))
	}
	if _, stderr, err := admin.run("env", "list", "--org", "acme", "--status", "bogus"); exitCode(err) != 1 || !strings.Contains(stderr, "  status: must be one of") {
		t.Fatalf("env list --status bogus: err %v, stderr %q", err, stderr)
	}
	var ops cp.List[*cp.Operation]
	admin.json(&ops, "op", "list", "--org", "acme", "--env", "pr-1")
	if len(ops.Items) != 1 || ops.Items[0].EnvironmentID != pr.ID || ops.Items[0].Kind != cp.OpProvision || ops.Items[0].Status != cp.OpSucceeded {
		t.Fatalf("op list --env pr-1: %+v", ops.Items)
	}

	if _, stderr, err := admin.run("env", "delete", "pr-1", "--org", "acme"); exitCode(err) != 2 || !strings.Contains(stderr, "--yes") {
		t.Fatalf("env delete without --yes: err %v, stderr %q", err, stderr)
	}
	admin.must("env", "get", "pr-1", "--org", "acme")
	admin.must("env", "delete", "pr-1", "--org", "acme", "--yes")
	var deleted cp.List[*cp.EnvironmentView]
	admin.json(&deleted, "env", "list", "--org", "acme", "--status", "deleted")
	if len(deleted.Items) != 1 || deleted.Items[0].ID != pr.ID {
		t.Fatalf("env list --status deleted: %d items", len(deleted.Items))
	}
}
