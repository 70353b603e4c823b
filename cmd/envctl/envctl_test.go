package main

// These tests run envctl in-process through run() (hence package main: a
// command cannot be imported) against a canned API that answers the real
// types' JSON and records each request, so what envctl sends and prints can
// be asserted without inventing server behaviour.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/httpapi"
	"github.com/envplane/envplane/drivers"
)

const testToken = "ep_envctl_test_TOKEN_0123456789"

type answer struct {
	status int
	body   any
}

type request struct {
	Method, Path, Query string
	Header              http.Header
	Body                string
}

// fakeAPI answers "METHOD /path" with queued answers (the last one repeats)
// and 404 problems for anything else.
type fakeAPI struct {
	*httptest.Server
	mu       sync.Mutex
	answers  map[string][]answer
	requests []request
}

func newFakeAPI(tb testing.TB) *fakeAPI {
	tb.Helper()
	f := &fakeAPI{answers: map[string][]answer{}}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	tb.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) on(method, path string, answers ...answer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[method+" "+path] = answers
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.requests = append(f.requests, request{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: string(b)})
	key := r.Method + " " + r.URL.EscapedPath()
	queue, ok := f.answers[key]
	var a answer
	if ok {
		a = queue[0]
		if len(queue) > 1 {
			f.answers[key] = queue[1:]
		}
	}
	f.mu.Unlock()
	if !ok {
		a = answer{http.StatusNotFound, httpapi.ProblemFor(cp.Errorf(cp.ENOTFOUND, "no such route in the fake"))}
	}
	ctype := "application/json"
	if p, isProblem := a.body.(*httpapi.Problem); isProblem {
		ctype = httpapi.ProblemContentType
		a.status = p.Status
	}
	w.Header().Set("Content-Type", ctype)
	if a.status == 0 {
		a.status = http.StatusOK
	}
	w.WriteHeader(a.status)
	if a.body != nil {
		_ = json.NewEncoder(w).Encode(a.body)
	}
}

func (f *fakeAPI) sent() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.requests...)
}

func (f *fakeAPI) last(tb testing.TB) request {
	tb.Helper()
	reqs := f.sent()
	if len(reqs) == 0 {
		tb.Fatal("envctl sent no request")
	}
	return reqs[len(reqs)-1]
}

// envctl runs one command line against the fake with ENVPLANE_URL and
// ENVPLANE_TOKEN set, and returns what it wrote.
func envctl(tb testing.TB, f *fakeAPI, args ...string) (stdout, stderr string, err error) {
	tb.Helper()
	env := map[string]string{"ENVPLANE_URL": f.URL, "ENVPLANE_TOKEN": testToken}
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), err
}

func problem(err *cp.Error) answer { return answer{body: httpapi.ProblemFor(err)} }

func testEnv(status cp.EnvironmentStatus) *cp.EnvironmentView {
	return &cp.EnvironmentView{
		Environment: &cp.Environment{ID: "env_01", OrgID: "org_01", Slug: "dev", Name: "Dev", Type: cp.TypeDevelopment, Status: status, Region: "local",
			CreatedAt: time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)},
		Database: &cp.DatabaseView{Driver: "sqlite", Target: "local", Region: "local", DatabaseName: "env_01abc", SchemaVersion: 2},
	}
}

// created is the API's 201 body for an environment provisioned within the wait.
func created(env *cp.EnvironmentView) cp.EnvironmentOperationResponse {
	return cp.EnvironmentOperationResponse{Environment: env,
		Operation: &cp.Operation{ID: "op_done", EnvironmentID: env.ID, Kind: cp.OpProvision, Status: cp.OpSucceeded}}
}

func TestEnvironmentVariablesAndHeaders(t *testing.T) {
	f := newFakeAPI(t)
	f.on("GET", "/v1/me", answer{body: cp.Me{KeyID: "key_01", User: &cp.User{ID: "u1", Email: "ada@example.com"},
		Organizations: []cp.MeMembership{{ID: "org_01", Slug: "acme", Name: "Acme", Role: cp.OrgOwner}}}})
	out, _, err := envctl(t, f, "me")
	if err != nil {
		t.Fatal(err)
	}
	req := f.last(t)
	if req.Header.Get("Authorization") != "Bearer "+testToken || req.Header.Get("User-Agent") != "envctl" {
		t.Fatalf("headers: Authorization set %v, User-Agent %q", req.Header.Get("Authorization") != "", req.Header.Get("User-Agent"))
	}
	for _, want := range []string{"key_01", "ada@example.com (u1)", "acme", "owner"} {
		if !strings.Contains(out, want) {
			t.Errorf("me output lacks %q:\n%s", want, out)
		}
	}
}

func TestOrgFromEnvironmentVariable(t *testing.T) {
	f := newFakeAPI(t)
	f.on("GET", "/v1/organizations/from-env/environments", answer{body: cp.List[*cp.EnvironmentView]{Items: []*cp.EnvironmentView{}}})
	var out, errOut bytes.Buffer
	env := map[string]string{"ENVPLANE_URL": f.URL, "ENVPLANE_TOKEN": testToken, "ENVPLANE_ORG": "from-env"}
	if err := run(context.Background(), []string{"env", "list"}, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatalf("%v: %s", err, errOut.String())
	}
	if _, _, err := envctl(t, f, "env", "list", "--org", "from-env"); err != nil {
		t.Fatal(err)
	}
	if n := len(f.sent()); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

// TestCommandsSendRequests checks, command by command, the request envctl
// builds from its flags.
func TestCommandsSendRequests(t *testing.T) {
	tests := []struct {
		args    []string
		method  string
		path    string
		query   string
		body    string // "" for no body
		headers map[string]string
		answer  answer
	}{
		{args: []string{"org", "create", "acme", "--name", "Acme", "--max-environments", "3", "--idempotency-key", "ik1"},
			method: "POST", path: "/v1/organizations", body: `{"slug":"acme","name":"Acme","max_environments":3}`, headers: map[string]string{"Idempotency-Key": "ik1"},
			answer: answer{201, cp.CreateOrganizationResponse{Organization: &cp.Organization{ID: "org_01", Slug: "acme"}, DefaultEnvironment: testEnv(cp.StatusActive)}}},
		{args: []string{"org", "list", "--limit", "5", "--cursor", "c1"}, method: "GET", path: "/v1/organizations", query: "cursor=c1&limit=5",
			answer: answer{body: cp.List[*cp.Organization]{Items: []*cp.Organization{{ID: "org_01"}}}}},
		{args: []string{"org", "get", "acme"}, method: "GET", path: "/v1/organizations/acme", answer: answer{body: cp.Organization{ID: "org_01"}}},
		{args: []string{"org", "update", "acme", "--max-storage-mb", "2048", "--max-environments", "5"}, method: "PATCH", path: "/v1/organizations/acme",
			body: `{"max_environments":5,"max_storage_mb":2048}`, answer: answer{body: cp.Organization{ID: "org_01", MaxStorageMB: 2048}}},
		{args: []string{"org", "update", "acme", "--require-2fa"}, method: "PATCH", path: "/v1/organizations/acme", body: `{"require_2fa":true}`,
			answer: answer{body: cp.Organization{ID: "org_01"}}},
		{args: []string{"org", "delete", "acme", "--yes"}, method: "DELETE", path: "/v1/organizations/acme", answer: answer{status: 204}},
		{args: []string{"member", "list", "--org", "acme"}, method: "GET", path: "/v1/organizations/acme/members",
			answer: answer{body: cp.List[*cp.OrgMembership]{}}},
		{args: []string{"member", "add", "bob@example.com", "--role", "admin", "--org", "acme"}, method: "POST", path: "/v1/organizations/acme/members",
			body: `{"email":"bob@example.com","role":"admin"}`, answer: answer{201, cp.OrgMembership{UserID: "u2"}}},
		{args: []string{"member", "update", "bob@example.com", "--role", "member", "--org", "acme"}, method: "PATCH", path: "/v1/organizations/acme/members/bob@example.com",
			body: `{"role":"member"}`, answer: answer{body: cp.OrgMembership{UserID: "u2"}}},
		{args: []string{"member", "remove", "u2", "--org", "acme"}, method: "DELETE", path: "/v1/organizations/acme/members/u2", answer: answer{status: 204}},
		{args: []string{"key", "list", "--org", "acme"}, method: "GET", path: "/v1/organizations/acme/api-keys", answer: answer{body: cp.List[*cp.APIKey]{}}},
		{args: []string{"key", "create", "ci", "--env", "dev", "--max-scope", "readonly", "--org", "acme"}, method: "POST", path: "/v1/organizations/acme/api-keys",
			body: `{"name":"ci","environment":"dev","max_scope":"readonly"}`, answer: answer{201, cp.CreateAPIKeyResponse{ID: "key_02", Token: "ep_shown_once"}}},
		{args: []string{"key", "get", "key_02", "--org", "acme"}, method: "GET", path: "/v1/organizations/acme/api-keys/key_02", answer: answer{body: cp.APIKey{ID: "key_02"}}},
		{args: []string{"key", "revoke", "key_02", "--org", "acme"}, method: "DELETE", path: "/v1/organizations/acme/api-keys/key_02", answer: answer{status: 204}},
		{args: []string{"audit", "--org", "acme", "--limit", "2"}, method: "GET", path: "/v1/organizations/acme/audit-events", query: "limit=2",
			answer: answer{body: cp.List[*cp.AuditEvent]{Items: []*cp.AuditEvent{{ID: "ev1", Action: "org.create"}}}}},
		{args: []string{"env", "create", "dev", "--org", "acme", "--type", "test", "--protected", "--wait", "5s"}, method: "POST", path: "/v1/organizations/acme/environments",
			body: `{"slug":"dev","type":"test","is_protected":true}`, headers: map[string]string{"Prefer": "wait=5"}, answer: answer{201, created(testEnv(cp.StatusActive))}},
		{args: []string{"env", "create", "pr-42", "--org", "acme", "--type", "preview", "--from", "staging", "--clone", "schema", "--wait", "5s"}, method: "POST", path: "/v1/organizations/acme/environments",
			body: `{"slug":"pr-42","type":"preview","from_environment":"staging","clone":"schema"}`, headers: map[string]string{"Prefer": "wait=5"}, answer: answer{201, created(testEnv(cp.StatusActive))}},
		{args: []string{"env", "create", "pr-43", "--org", "acme", "--type", "preview", "--ttl", "72h", "--wait", "5s"}, method: "POST", path: "/v1/organizations/acme/environments",
			body: `{"slug":"pr-43","type":"preview","ttl":"72h"}`, headers: map[string]string{"Prefer": "wait=5"}, answer: answer{201, created(testEnv(cp.StatusActive))}},
		{args: []string{"env", "update", "pr-43", "--org", "acme", "--ttl", "24h"}, method: "PATCH", path: "/v1/organizations/acme/environments/pr-43",
			body: `{"ttl":"24h"}`, answer: answer{body: testEnv(cp.StatusActive)}},
		{args: []string{"env", "list", "--org", "acme"}, method: "GET", path: "/v1/organizations/acme/environments",
			answer: answer{body: cp.List[*cp.EnvironmentView]{Items: []*cp.EnvironmentView{testEnv(cp.StatusActive)}}}},
		{args: []string{"env", "list", "--org", "acme", "--type", "preview", "--status", "suspended", "--target", "edge", "--limit", "4"}, method: "GET", path: "/v1/organizations/acme/environments",
			query: "limit=4&status=suspended&target=edge&type=preview", answer: answer{body: cp.List[*cp.EnvironmentView]{Items: []*cp.EnvironmentView{testEnv(cp.StatusSuspended)}}}},
		{args: []string{"op", "list", "--org", "acme", "--env", "dev", "--status", "running", "--kind", "rotate"}, method: "GET", path: "/v1/organizations/acme/operations",
			query: "environment=dev&kind=rotate&status=running", answer: answer{body: cp.List[*cp.Operation]{Items: []*cp.Operation{{ID: "op_01", Kind: cp.OpRotate, Status: cp.OpRunning}}}}},
		{args: []string{"member", "add", "carol@example.com", "--org", "acme"}, method: "POST", path: "/v1/organizations/acme/members",
			body: `{"email":"carol@example.com","role":"member"}`, answer: answer{201, cp.OrgMembership{UserID: "u3"}}},
		{args: []string{"env", "get", "dev", "--org", "acme"}, method: "GET", path: "/v1/organizations/acme/environments/dev", answer: answer{body: testEnv(cp.StatusActive)}},
		{args: []string{"env", "update", "dev", "--org", "acme", "--protected=false", "--description", ""}, method: "PATCH", path: "/v1/organizations/acme/environments/dev",
			body: `{"description":"","is_protected":false}`, answer: answer{body: testEnv(cp.StatusActive)}},
		{args: []string{"env", "update", "dev", "--org", "acme", "--storage-limit-mb", "512"}, method: "PATCH", path: "/v1/organizations/acme/environments/dev",
			body: `{"storage_limit_mb":512}`, answer: answer{body: testEnv(cp.StatusActive)}},
		{args: []string{"env", "delete", "dev", "--org", "acme", "--no-wait", "-y"}, method: "DELETE", path: "/v1/organizations/acme/environments/dev",
			answer: answer{202, cp.EnvironmentOperationResponse{Environment: testEnv(cp.StatusDeleting), Operation: &cp.Operation{ID: "op_09", Status: cp.OpPending}}}},
		{args: []string{"env", "suspend", "dev", "--org", "acme"}, method: "POST", path: "/v1/organizations/acme/environments/dev/suspend", answer: answer{body: testEnv(cp.StatusSuspended)}},
		{args: []string{"env", "reset", "pr-42", "--org", "acme", "--from", "staging", "--no-wait", "-y"}, method: "POST", path: "/v1/organizations/acme/environments/pr-42/reset",
			body: `{"from_environment":"staging","mode":"full"}`, answer: answer{202, cp.EnvironmentOperationResponse{Environment: testEnv(cp.StatusActive), Operation: &cp.Operation{ID: "op_10", Kind: cp.OpReset, Status: cp.OpRunning}}}},
		{args: []string{"env", "reset", "pr-42", "--org", "acme", "--mode", "schema", "--no-wait", "--yes"}, method: "POST", path: "/v1/organizations/acme/environments/pr-42/reset",
			body: `{"mode":"schema"}`, answer: answer{202, cp.EnvironmentOperationResponse{Environment: testEnv(cp.StatusActive), Operation: &cp.Operation{ID: "op_11", Kind: cp.OpReset, Status: cp.OpRunning}}}},
		{args: []string{"env", "resume", "dev", "--org", "acme"}, method: "POST", path: "/v1/organizations/acme/environments/dev/resume", answer: answer{body: testEnv(cp.StatusActive)}},
		{args: []string{"connection", "acme", "dev", "--scope", "readonly"}, method: "GET", path: "/v1/organizations/acme/environments/dev/connection", query: "scope=readonly",
			answer: answer{body: cp.Connection{EnvironmentID: "env_01"}}},
		{args: []string{"connection", "--env-id", "env_01"}, method: "GET", path: "/v1/environments/env_01/connection", query: "scope=readwrite",
			answer: answer{body: cp.Connection{EnvironmentID: "env_01"}}},
		{args: []string{"cred", "list", "dev", "--org", "acme"}, method: "GET", path: "/v1/organizations/acme/environments/dev/credentials", answer: answer{body: cp.List[*cp.Credential]{}}},
		{args: []string{"cred", "rotate", "dev", "--org", "acme", "--scope", "readwrite", "--grace", "90s", "--reason", "policy"}, method: "POST",
			path: "/v1/organizations/acme/environments/dev/credentials/rotate", body: `{"scope":"readwrite","grace_seconds":90,"reason":"policy"}`,
			answer: answer{body: cp.CredentialsResponse{Credentials: []*cp.Credential{{ID: "cred_2"}}}}},
		{args: []string{"cred", "revoke", "dev", "--org", "acme", "--credential", "cred_1", "--reason", "leaked"}, method: "POST",
			path: "/v1/organizations/acme/environments/dev/credentials/revoke", body: `{"credential_id":"cred_1","reason":"leaked"}`,
			answer: answer{body: cp.CredentialsResponse{Credentials: []*cp.Credential{{ID: "cred_3"}}}}},
		{args: []string{"env-member", "list", "dev", "--org", "acme"}, method: "GET", path: "/v1/organizations/acme/environments/dev/members", answer: answer{body: cp.List[*cp.EnvironmentMember]{}}},
		{args: []string{"env-member", "set", "dev", "bob@example.com", "--role", "env_maker", "--org", "acme"}, method: "PUT",
			path: "/v1/organizations/acme/environments/dev/members/bob@example.com", body: `{"role":"env_maker"}`, answer: answer{body: cp.EnvironmentMember{UserID: "u2"}}},
		{args: []string{"env-member", "remove", "dev", "u2", "--org", "acme"}, method: "DELETE", path: "/v1/organizations/acme/environments/dev/members/u2", answer: answer{status: 204}},
		{args: []string{"schema", "status", "dev", "--org", "acme"}, method: "GET", path: "/v1/organizations/acme/environments/dev/schema", answer: answer{body: cp.SchemaStatus{SchemaVersion: 2}}},
		{args: []string{"schema", "migrate", "dev", "--org", "acme", "--idempotency-key", "m1"}, method: "POST", path: "/v1/organizations/acme/environments/dev/schema/migrate",
			headers: map[string]string{"Idempotency-Key": "m1"}, answer: answer{body: cp.SchemaStatus{SchemaVersion: 3}}},
		{args: []string{"op", "get", "op_01"}, method: "GET", path: "/v1/operations/op_01", answer: answer{body: cp.Operation{ID: "op_01", Status: cp.OpSucceeded}}},
		{args: []string{"openapi"}, method: "GET", path: "/v1/openapi.json", answer: answer{body: map[string]string{"openapi": "3.0.3"}}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			f := newFakeAPI(t)
			f.on(tt.method, tt.path, tt.answer)
			_, stderr, err := envctl(t, f, tt.args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			reqs := f.sent()
			if len(reqs) != 1 {
				t.Fatalf("sent %d requests, want 1", len(reqs))
			}
			req := reqs[0]
			if req.Method != tt.method || req.Path != tt.path || req.Query != tt.query {
				t.Fatalf("sent %s %s?%s, want %s %s?%s", req.Method, req.Path, req.Query, tt.method, tt.path, tt.query)
			}
			if got := normalizeJSON(t, req.Body); got != normalizeJSON(t, tt.body) {
				t.Errorf("body %s, want %s", got, tt.body)
			}
			for k, v := range tt.headers {
				if req.Header.Get(k) != v {
					t.Errorf("header %s = %q, want %q", k, req.Header.Get(k), v)
				}
			}
		})
	}
}

func normalizeJSON(tb testing.TB, s string) string {
	tb.Helper()
	if s == "" {
		return ""
	}
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		tb.Fatalf("not JSON: %q", s)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func TestJSONOutputIsTheAPIsJSON(t *testing.T) {
	f := newFakeAPI(t)
	env := testEnv(cp.StatusActive)
	f.on("GET", "/v1/organizations/acme/environments/dev", answer{body: env})
	out, _, err := envctl(t, f, "-o", "json", "env", "get", "dev", "--org", "acme")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(env)
	if normalizeJSON(t, out) != normalizeJSON(t, string(want)) {
		t.Fatalf("json output\n%s\nwant the API's\n%s", out, want)
	}
}

func TestTableOutput(t *testing.T) {
	f := newFakeAPI(t)
	prod := testEnv(cp.StatusProvisioning)
	prod.ID, prod.Slug, prod.Type, prod.IsProtected, prod.Database = "env_02", "production", cp.TypeProduction, true, nil
	pr := testEnv(cp.StatusActive)
	expires := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	pr.ID, pr.Slug, pr.Type, pr.ExpiresAt, pr.Expiring = "env_03", "pr-7", cp.TypePreview, &expires, true
	f.on("GET", "/v1/organizations/acme/environments", answer{body: cp.List[*cp.EnvironmentView]{Items: []*cp.EnvironmentView{testEnv(cp.StatusActive), prod, pr}, Next: "cur2"}})
	out, stderr, err := envctl(t, f, "env", "list", "--org", "acme")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("want a header and 3 rows, got:\n%s", out)
	}
	want := [][]string{
		{"SLUG", "TYPE", "STATUS", "PROTECTED", "EXPIRES", "DRIVER", "REGION", "DATABASE", "ID"},
		{"dev", "development", "active", "no", "-", "sqlite", "local", "env_01abc", "env_01"},
		{"production", "production", "provisioning", "yes", "-", "-", "local", "-", "env_02"},
		{"pr-7", "preview", "active", "no", "2026-11-25T06:00:00Z!", "sqlite", "local", "env_01abc", "env_03"},
	}
	for i, line := range lines {
		if got := strings.Fields(line); strings.Join(got, " ") != strings.Join(want[i], " ") {
			t.Errorf("line %d = %q, want %v", i, line, want[i])
		}
	}
	// Columns are aligned: every row's STATUS starts where the header's does.
	col := strings.Index(lines[0], "STATUS")
	for _, line := range lines[1:] {
		if line[col-1] != ' ' || line[col] == ' ' {
			t.Errorf("column STATUS not aligned in %q", line)
		}
	}
	if !strings.Contains(stderr, "--cursor cur2") {
		t.Errorf("no hint about the next page on stderr: %q", stderr)
	}
}

func TestListAllPages(t *testing.T) {
	f := newFakeAPI(t)
	f.on("GET", "/v1/organizations",
		answer{body: cp.List[*cp.Organization]{Items: []*cp.Organization{{ID: "o1", Slug: "a"}}, Next: "p2"}},
		answer{body: cp.List[*cp.Organization]{Items: []*cp.Organization{{ID: "o2", Slug: "b"}}}},
	)
	out, _, err := envctl(t, f, "-o", "json", "org", "list", "--all")
	if err != nil {
		t.Fatal(err)
	}
	var got cp.List[*cp.Organization]
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Items) != 2 || got.Items[1].ID != "o2" || got.Next != "" {
		t.Fatalf("all pages = %+v", got)
	}
	if reqs := f.sent(); len(reqs) != 2 || reqs[1].Query != "cursor=p2" {
		t.Fatalf("sent %d requests, want 2, the second with cursor=p2", len(reqs))
	}
}

func TestConnectionHidesSecretInTables(t *testing.T) {
	const secret = "pw-7f3a9c-secret"
	dsn := "postgres://env_01_rw_a:" + secret + "@db.internal:5432/env_01abc"
	conn := cp.Connection{EnvironmentID: "env_01", Organization: "acme", Environment: "dev", Driver: "postgres", Scope: drivers.ScopeReadWrite,
		DSN: drivers.Secret(dsn), URL: dsn, Host: "db.internal", Port: 5432, Database: "env_01abc", Username: "env_01_rw_a", Secret: secret, CredentialID: "cred_1"}
	f := newFakeAPI(t)
	f.on("GET", "/v1/organizations/acme/environments/dev/connection", answer{body: httpapi.RevealConnection(&conn)})

	out, stderr, err := envctl(t, f, "connection", "acme", "dev")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out+stderr, secret) {
		t.Fatal("the table shows the secret")
	}
	for _, want := range []string{"db.internal", "5432", "env_01_rw_a", "cred_1", "hidden"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	out, _, err = envctl(t, f, "connection", "acme", "dev", "--dsn")
	if err != nil {
		t.Fatal(err)
	}
	if out != dsn+"\n" {
		t.Fatal("--dsn did not print exactly the DSN and a newline")
	}

	out, _, err = envctl(t, f, "-o", "json", "connection", "dev", "--org", "acme")
	if err != nil {
		t.Fatal(err)
	}
	var got cp.Connection
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Secret != secret {
		t.Fatal("-o json did not carry the whole connection")
	}
}

func TestEnvCreateFollowsOperation(t *testing.T) {
	f := newFakeAPI(t)
	running := &cp.Operation{ID: "op_01", Kind: cp.OpProvision, Status: cp.OpRunning, Step: "create_database"}
	f.on("POST", "/v1/organizations/acme/environments", answer{202, cp.EnvironmentOperationResponse{Environment: testEnv(cp.StatusProvisioning), Operation: running}})
	f.on("GET", "/v1/operations/op_01",
		answer{body: running},
		answer{body: cp.Operation{ID: "op_01", Kind: cp.OpProvision, Status: cp.OpRunning, Step: "initialize_schema", Attempts: 2}},
		answer{body: cp.Operation{ID: "op_01", Kind: cp.OpProvision, Status: cp.OpSucceeded, Step: "activate"}},
	)
	f.on("GET", "/v1/organizations/acme/environments/dev", answer{body: testEnv(cp.StatusActive)})

	out, stderr, err := envctl(t, f, "--poll-interval", "1ms", "env", "create", "dev", "--org", "acme")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if req := f.sent()[0]; req.Header.Get("Prefer") != "wait=30" {
		t.Errorf("default Prefer = %q, want wait=30", req.Header.Get("Prefer"))
	}
	// stderr is not a terminal here: one plain line per change, no spinner codes.
	wantProgress := "provision op_01: running, step create_database\n" +
		"provision op_01: running, step initialize_schema (attempt 2)\n" +
		"provision op_01: succeeded, step activate\n"
	if stderr != wantProgress {
		t.Errorf("progress on stderr:\n%q\nwant\n%q", stderr, wantProgress)
	}
	if !strings.Contains(out, "status:") || !strings.Contains(out, "active") || strings.Contains(out, "provisioning") {
		t.Errorf("stdout does not show the active environment:\n%s", out)
	}
}

func TestEnvCreateFailedOperation(t *testing.T) {
	f := newFakeAPI(t)
	op := &cp.Operation{ID: "op_02", Kind: cp.OpProvision, Status: cp.OpRunning}
	f.on("POST", "/v1/organizations/acme/environments", answer{202, cp.EnvironmentOperationResponse{Environment: testEnv(cp.StatusProvisioning), Operation: op}})
	f.on("GET", "/v1/operations/op_02", answer{body: cp.Operation{ID: "op_02", Kind: cp.OpProvision, Status: cp.OpFailed, Step: "create_database", Error: "target unavailable"}})
	out, stderr, err := envctl(t, f, "--poll-interval", "1ms", "env", "create", "dev", "--org", "acme")
	if err == nil || exitCode(err) != 1 {
		t.Fatalf("err = %v, want a failure with exit status 1", err)
	}
	if out != "" || !strings.Contains(stderr, "envctl: operation op_02 (provision) failed at step create_database: target unavailable") {
		t.Fatalf("stdout %q, stderr %q", out, stderr)
	}
}

func TestEnvCreateNoWaitPrintsAcceptedBody(t *testing.T) {
	f := newFakeAPI(t)
	body := cp.EnvironmentOperationResponse{Environment: testEnv(cp.StatusProvisioning), Operation: &cp.Operation{ID: "op_03", Kind: cp.OpProvision, Status: cp.OpPending}}
	f.on("POST", "/v1/organizations/acme/environments", answer{202, body})
	out, _, err := envctl(t, f, "-o", "json", "env", "create", "dev", "--org", "acme", "--no-wait", "--wait", "0s")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(body)
	if normalizeJSON(t, out) != normalizeJSON(t, string(want)) {
		t.Fatalf("output %s, want the 202 body %s", out, want)
	}
	if reqs := f.sent(); len(reqs) != 1 || reqs[0].Header.Get("Prefer") != "wait=0" {
		t.Fatalf("want one request with Prefer wait=0, got %d, the first with Prefer %q", len(reqs), reqs[0].Header.Get("Prefer"))
	}
}

func TestOpWait(t *testing.T) {
	f := newFakeAPI(t)
	f.on("GET", "/v1/operations/op_04",
		answer{body: cp.Operation{ID: "op_04", Kind: cp.OpRotate, Status: cp.OpPending}},
		answer{body: cp.Operation{ID: "op_04", Kind: cp.OpRotate, Status: cp.OpSucceeded, Step: "revoke_old"}},
	)
	out, _, err := envctl(t, f, "--poll-interval", "1ms", "-o", "json", "op", "wait", "op_04")
	if err != nil {
		t.Fatal(err)
	}
	var op cp.Operation
	if err := json.Unmarshal([]byte(out), &op); err != nil || op.Status != cp.OpSucceeded {
		t.Fatalf("op wait printed %s", out)
	}
}

func TestProblemsReported(t *testing.T) {
	f := newFakeAPI(t)
	f.on("POST", "/v1/organizations/acme/environments", problem(cp.Invalid(
		cp.FieldError{Field: "slug", Message: "must match ^[a-z0-9][a-z0-9-]{0,62}$"},
		cp.FieldError{Field: "type", Message: "unknown type"},
	)))
	out, stderr, err := envctl(t, f, "env", "create", "Bad_Slug", "--org", "acme", "--type", "nope")
	if !cp.IsCode(err, cp.EINVALID) || exitCode(err) != 1 {
		t.Fatalf("err = %v, want EINVALID with exit status 1", err)
	}
	want := "envctl: invalid request\n  slug: must match ^[a-z0-9][a-z0-9-]{0,62}$\n  type: unknown type\n"
	if out != "" || stderr != want {
		t.Fatalf("stdout %q\nstderr %q\nwant stderr %q", out, stderr, want)
	}

	f.on("GET", "/v1/organizations/acme/environments/dev/connection", problem(cp.Errorf(cp.ELOCKED, "environment dev is suspended")))
	_, stderr, err = envctl(t, f, "connection", "acme", "dev")
	if !cp.IsCode(err, cp.ELOCKED) || stderr != "envctl: environment dev is suspended\n" {
		t.Fatalf("err = %v, stderr %q", err, stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	f := newFakeAPI(t)
	for _, args := range [][]string{
		{"env", "list"},                                // no --org, no ENVPLANE_ORG
		{"-o", "yaml", "me"},                           // unknown output
		{"env", "get"},                                 // missing ENV
		{"org", "get", "a", "b"},                       // one too many
		{"me", "--no-such-flag"},                       // unknown flag
		{"org", "update", "acme"},                      // nothing to update
		{"connection"},                                 // no environment
		{"connection", "acme", "dev", "--env-id", "e"}, // both ways at once
		{"--poll-interval", "0s", "op", "wait", "x"},
		{"member", "update", "bob@example.com", "--org", "acme"}, // no --role
		{"env-member", "set", "dev", "bob", "--org", "acme"},     // no --role
		{"cred", "revoke", "dev", "--org", "acme"},               // no --reason
		{"key", "create", "ci", "--org", "acme", "--expires-in", "-1h"},
		{"env", "reset", "dev", "--org", "acme"}, // not confirmed: stdin is no terminal
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			_, stderr, err := envctl(t, f, args...)
			if err == nil || exitCode(err) != 2 {
				t.Fatalf("err = %v, want a usage error (exit status 2)", err)
			}
			if !strings.HasPrefix(stderr, "envctl: ") {
				t.Fatalf("stderr = %q", stderr)
			}
		})
	}
	if n := len(f.sent()); n != 0 {
		t.Fatalf("usage errors sent %d requests", n)
	}
}

func TestDefaultURL(t *testing.T) {
	// A cancelled context fails the request before it dials, and the error
	// names the URL envctl chose with no ENVPLANE_URL set.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, []string{"me"}, func(string) string { return "" }, strings.NewReader(""), &out, &errOut)
	if err == nil || !strings.Contains(errOut.String(), `"http://127.0.0.1:8080/v1/me"`) {
		t.Fatalf("err = %v, stderr %q: want a request to the default URL", err, errOut.String())
	}
}

func TestTokenNeverPrinted(t *testing.T) {
	f := newFakeAPI(t)
	f.on("GET", "/v1/me", problem(cp.Errorf(cp.EUNAUTHORIZED, "unknown API key")))
	_, stderr, err := envctl(t, f, "me")
	if !cp.IsCode(err, cp.EUNAUTHORIZED) {
		t.Fatalf("err = %v", err)
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	var out, errOut bytes.Buffer
	env := map[string]string{"ENVPLANE_URL": closed.URL, "ENVPLANE_TOKEN": testToken}
	err2 := run(context.Background(), []string{"-o", "json", "env", "get", "dev", "--org", "acme"}, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errOut)
	if err2 == nil {
		t.Fatal("a closed server answered")
	}
	for _, s := range []string{stderr, errOut.String(), out.String(), err.Error(), err2.Error(), fmt.Sprint(err2)} {
		if strings.Contains(s, testToken) {
			t.Fatal("the token was printed")
		}
	}
}

// TestEnvGetShowsExpiry: an environment's expiry, and whether it is within
// 24 hours, are shown; an environment without one shows neither line.
func TestEnvGetShowsExpiry(t *testing.T) {
	f := newFakeAPI(t)
	pr := testEnv(cp.StatusActive)
	expires := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	pr.ExpiresAt, pr.Expiring = &expires, true
	f.on("GET", "/v1/organizations/acme/environments/pr-7", answer{body: pr})
	f.on("GET", "/v1/organizations/acme/environments/dev", answer{body: testEnv(cp.StatusActive)})
	out, _, err := envctl(t, f, "env", "get", "pr-7", "--org", "acme")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "expires:         2026-11-25T06:00:00Z\n") || !strings.Contains(out, "expiring:        yes, within 24h\n") {
		t.Fatalf("expiry not shown:\n%s", out)
	}
	out, _, err = envctl(t, f, "env", "get", "dev", "--org", "acme")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "expir") {
		t.Fatalf("an environment without expiry shows one:\n%s", out)
	}
}
