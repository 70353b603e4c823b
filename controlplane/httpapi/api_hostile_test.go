package httpapi_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/httpapi"
)

// bothStores runs test against a harness on each control-plane store.
func bothStores(t *testing.T, test func(t *testing.T, h *harness)) {
	for _, st := range []struct {
		name string
		opts []harnessOption
	}{
		{"sqlite", nil},
		{"postgres", []harnessOption{withPostgresStore()}},
	} {
		t.Run(st.name, func(t *testing.T) {
			test(t, newHarness(t, st.opts...))
		})
	}
}

// storeRows returns every row of every table of the harness's control-plane
// store, as text, table by table, rows sorted: two dumps are equal exactly
// when nothing was written in between. Pending key-use records are flushed
// first, so only what a request itself wrote shows.
func (h *harness) storeRows(tb testing.TB) map[string][]string {
	tb.Helper()
	ctx := context.Background()
	h.svc.FlushReceipts(ctx)
	var db *sql.DB
	var err error
	tablesQuery := `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`
	if h.storeURL != "" {
		db, err = sql.Open("pgx", h.storeURL)
		tablesQuery = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`
	} else {
		db, err = sql.Open("sqlite", "file:"+filepath.Join(h.dataDir, "controlplane.db")+"?mode=ro")
	}
	if err != nil {
		tb.Fatalf("open the store: %v", err)
	}
	defer db.Close()
	var tables []string
	rows, err := db.QueryContext(ctx, tablesQuery)
	if err != nil {
		tb.Fatalf("list tables: %v", err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			tb.Fatalf("list tables: %v", err)
		}
		tables = append(tables, name)
	}
	if err := rows.Err(); err != nil {
		tb.Fatalf("list tables: %v", err)
	}
	if len(tables) < 10 {
		tb.Fatalf("the store has %d tables: the dump would prove nothing", len(tables))
	}
	dump := map[string][]string{}
	for _, table := range tables {
		rows, err := db.QueryContext(ctx, `SELECT * FROM "`+table+`"`)
		if err != nil {
			tb.Fatalf("read %s: %v", table, err)
		}
		cols, err := rows.Columns()
		if err != nil {
			tb.Fatalf("read %s: %v", table, err)
		}
		var lines []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				tb.Fatalf("read %s: %v", table, err)
			}
			lines = append(lines, fmt.Sprintf("%q", vals))
		}
		if err := rows.Err(); err != nil {
			tb.Fatalf("read %s: %v", table, err)
		}
		slices.Sort(lines)
		dump[table] = lines
	}
	return dump
}

// unchanged fails the test when the store differs from before.
func (h *harness) unchanged(tb testing.TB, before map[string][]string) {
	tb.Helper()
	if diff := cmp.Diff(before, h.storeRows(tb)); diff != "" {
		tb.Fatalf("refused requests changed the store (-before +after):\n%s", diff)
	}
}

// hostileSetUp makes organization acme with bob (a member with a key and
// env_admin on default) and an app key on default, uses every key once, and
// returns bob's key and the app key.
func hostileSetUp(t *testing.T, h *harness) (bob string, app cp.CreateAPIKeyResponse) {
	t.Helper()
	h.org(t, "acme")
	bob = h.member(t, "acme", "bob@example.com", cp.OrgMember)
	h.must(t, http.StatusOK, h.admin, "PUT", "/v1/organizations/acme/environments/default/members/bob@example.com", map[string]any{"role": "env_admin"})
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/api-keys", map[string]any{"name": "app", "environment": "default"}).decode(t, &app)
	for _, token := range []string{h.admin, bob, app.Token} {
		h.must(t, http.StatusOK, token, "GET", "/v1/me", nil)
	}
	return bob, app
}

// TestTextNoStoreCanHold: NUL characters in every text field of every
// request body are 422 naming the field, on both stores, and change nothing.
// PostgreSQL answered them with 500, SQLite stored them.
func TestTextNoStoreCanHold(t *testing.T) {
	bothStores(t, func(t *testing.T, h *harness) {
		hostileSetUp(t, h)
		before := h.storeRows(t)
		acme, env := "/v1/organizations/acme", "/v1/organizations/acme/environments/default"
		nul := "a\x00b"
		tests := []struct {
			name, method, path string
			body               map[string]any
			field              string
		}{
			{"organization slug", "POST", "/v1/organizations", map[string]any{"slug": nul, "name": "x"}, "slug"},
			{"organization name", "POST", "/v1/organizations", map[string]any{"slug": "other", "name": nul}, "name"},
			{"organization rename", "PATCH", acme, map[string]any{"name": nul}, "name"},
			{"member email", "POST", acme + "/members", map[string]any{"email": "eve\x00@example.com", "role": "member"}, "email"},
			{"member name", "POST", acme + "/members", map[string]any{"email": "eve@example.com", "name": nul, "role": "member"}, "name"},
			{"member role", "PATCH", acme + "/members/bob@example.com", map[string]any{"role": "admin\x00"}, "role"},
			{"key name", "POST", acme + "/api-keys", map[string]any{"name": nul}, "name"},
			{"key user", "POST", acme + "/api-keys", map[string]any{"name": "k", "user": "bob@example.com\x00"}, "user"},
			{"key environment", "POST", acme + "/api-keys", map[string]any{"name": "k", "environment": "default\x00"}, "environment"},
			{"environment name", "POST", acme + "/environments", map[string]any{"slug": "qa", "type": "test", "name": nul}, "name"},
			{"environment description", "POST", acme + "/environments", map[string]any{"slug": "qa", "type": "test", "description": nul}, "description"},
			{"environment region", "POST", acme + "/environments", map[string]any{"slug": "qa", "type": "test", "region": nul}, "region"},
			{"environment target", "POST", acme + "/environments", map[string]any{"slug": "qa", "type": "test", "target": nul}, "target"},
			{"environment source", "POST", acme + "/environments", map[string]any{"slug": "qa", "type": "test", "from_environment": "default\x00", "clone": "schema"}, "from_environment"},
			{"organization in the body", "POST", "/v1/environments", map[string]any{"organization": "acme\x00", "slug": "qa", "type": "test"}, "organization"},
			{"environment rename", "PATCH", env, map[string]any{"name": nul}, "name"},
			{"environment redescribe", "PATCH", env, map[string]any{"description": nul}, "description"},
			{"environment ttl", "POST", acme + "/environments", map[string]any{"slug": "qa", "type": "preview", "ttl": "72h\x00"}, "ttl"},
			{"environment new ttl", "PATCH", env, map[string]any{"ttl": nul}, "ttl"},
			{"rotate reason", "POST", env + "/credentials/rotate", map[string]any{"reason": nul}, "reason"},
			{"rotate scope", "POST", env + "/credentials/rotate", map[string]any{"scope": "all\x00"}, "scope"},
			{"revoke reason", "POST", env + "/credentials/revoke", map[string]any{"reason": nul}, "reason"},
			{"revoke credential", "POST", env + "/credentials/revoke", map[string]any{"reason": "leak", "credential_id": "cred_\x00"}, "credential_id"},
			{"environment role", "PUT", env + "/members/bob@example.com", map[string]any{"role": "env_user\x00"}, "role"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				wantProblem(t, h.do(t, h.admin, tc.method, tc.path, tc.body), http.StatusUnprocessableEntity, cp.EINVALID, tc.field)
			})
		}
		h.unchanged(t, before)
	})
}

// TestBodiesThatAreNotUTF8: bytes that are not UTF-8 in a JSON string are
// 422 naming the field (encoding/json would store U+FFFD instead); outside
// any field, 400. Nothing changes.
func TestBodiesThatAreNotUTF8(t *testing.T) {
	bothStores(t, func(t *testing.T, h *harness) {
		hostileSetUp(t, h)
		before := h.storeRows(t)
		envs := "/v1/organizations/acme/environments"
		wantProblem(t, h.do(t, h.admin, "POST", "/v1/organizations", "{\"slug\":\"latin\",\"name\":\"caf\xe9\"}"), http.StatusUnprocessableEntity, cp.EINVALID, "name")
		wantProblem(t, h.do(t, h.admin, "POST", envs, "{\"slug\":\"qa\",\"type\":\"test\",\"description\":\"\xff\xfe\"}"), http.StatusUnprocessableEntity, cp.EINVALID, "description")
		wantProblem(t, h.do(t, h.admin, "PATCH", "/v1/organizations/acme", "{\"name\":\"\xed\xa0\x80\"}"), http.StatusUnprocessableEntity, cp.EINVALID, "name")
		wantProblem(t, h.do(t, h.admin, "POST", envs, "{\"slug\":\"qa\",\"type\":\"test\"}\xff"), http.StatusBadRequest, cp.EMALFORMED, "")
		h.unchanged(t, before)
		var org cp.Organization
		h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme", nil).decode(t, &org)
		if org.Name != "acme" {
			t.Fatalf("organization renamed to %q", org.Name)
		}
	})
}

// TestHostileRequestIDs: a client's X-Request-ID is logged and stored with
// audit events; one that is not a short plain token (bytes no store can
// hold, a page of text) is replaced by a generated id instead of reaching
// the store (it answered 500 on PostgreSQL). A plain one is kept.
func TestHostileRequestIDs(t *testing.T) {
	bothStores(t, func(t *testing.T, h *harness) {
		hostileSetUp(t, h)
		for i, id := range []string{"\xff\xfe", "caf\xe9", strings.Repeat("r", 65), "two words"} {
			resp := h.must(t, http.StatusOK, h.admin, "PATCH", "/v1/organizations/acme", map[string]any{"name": fmt.Sprintf("acme %d", i)}, "X-Request-ID", id)
			if got := resp.header.Get("X-Request-ID"); got == id || got == "" {
				t.Errorf("X-Request-ID %q answered with %q, want a generated id", id, got)
			}
		}
		resp := h.must(t, http.StatusOK, h.admin, "PATCH", "/v1/organizations/acme", map[string]any{"name": "acme"}, "X-Request-ID", "req-42.a_b")
		if got := resp.header.Get("X-Request-ID"); got != "req-42.a_b" {
			t.Errorf("a plain X-Request-ID came back as %q", got)
		}
		if e := h.auditEvent(t, "acme", "organization.updated"); e == nil || e.RequestID != "req-42.a_b" {
			t.Errorf("the newest organization.updated event holds request id %+v, want req-42.a_b", e)
		}
	})
}

// TestHostileQueryAndPath: query and path parameters are input too. A cursor
// this API did not give out is 400 naming cursor (it answered 200 with a
// list); other parameters holding text no store can are 422 naming them;
// path parameters so are 404. Nothing answers 500, nothing changes.
func TestHostileQueryAndPath(t *testing.T) {
	bothStores(t, func(t *testing.T, h *harness) {
		_, app := hostileSetUp(t, h)
		before := h.storeRows(t)
		env := "/v1/organizations/acme/environments/default"
		lists := []string{"/v1/organizations", "/v1/organizations/acme/members", "/v1/organizations/acme/api-keys", "/v1/organizations/acme/audit-events", "/v1/organizations/acme/environments", env + "/receipts"}
		for _, list := range lists {
			// As they appear in the query string.
			for _, cursor := range []string{"garbage", url.QueryEscape("' OR 1=1--"), url.QueryEscape("org_x' OR '1'='1"), "%00", "org_%00", "%ff", "env_" + strings.Repeat("a", 65), "_x", "x_", "ORG_ABC", "org_%E2%80%8B"} {
				wantProblem(t, h.do(t, h.admin, "GET", list+"?cursor="+cursor, nil), http.StatusBadRequest, cp.EMALFORMED, "cursor")
			}
			// A cursor of the right shape is a position, whatever it names.
			h.must(t, http.StatusOK, h.admin, "GET", list+"?cursor=zzz_0", nil)
			wantProblem(t, h.do(t, h.admin, "GET", list+"?limit=1%00", nil), http.StatusUnprocessableEntity, cp.EINVALID, "limit")
		}
		for param, value := range map[string]string{"credential": "%00", "since": "%ff", "until": "2026-01-01T00:00:00Z%00"} {
			wantProblem(t, h.do(t, h.admin, "GET", env+"/receipts?"+param+"="+value, nil), http.StatusUnprocessableEntity, cp.EINVALID, param)
		}
		for _, conn := range []string{env + "/connection", "/v1/environments/" + app.Environment + "/connection"} {
			wantProblem(t, h.do(t, h.admin, "GET", conn+"?scope=readonly%00", nil), http.StatusUnprocessableEntity, cp.EINVALID, "scope")
			wantProblem(t, h.do(t, h.admin, "GET", conn+"?scope=readonly&wait=1s&after=cred_%ff", nil), http.StatusUnprocessableEntity, cp.EINVALID, "after")
		}
		for _, bad := range []string{"%00", "a%00b", "%ff", "%c0%af"} {
			for _, path := range []string{
				"/v1/organizations/" + bad,
				"/v1/organizations/acme/environments/" + bad,
				"/v1/organizations/acme/members/" + bad,
				"/v1/organizations/acme/api-keys/" + bad,
				"/v1/operations/" + bad,
				"/v1/environments/" + bad + "/connection?scope=readonly",
				"/v1/organizations/acme/environments/" + bad + "/connection?scope=readonly",
			} {
				method := "GET"
				if strings.Contains(path, "/members/") {
					method = "DELETE"
				}
				wantProblem(t, h.do(t, h.admin, method, path, nil), http.StatusNotFound, cp.ENOTFOUND, "")
			}
			wantProblem(t, h.do(t, h.admin, "PATCH", "/v1/organizations/acme/members/"+bad, map[string]any{"role": "admin"}), http.StatusNotFound, cp.ENOTFOUND, "")
			wantProblem(t, h.do(t, h.admin, "DELETE", "/v1/organizations/acme/api-keys/"+bad, nil), http.StatusNotFound, cp.ENOTFOUND, "")
		}
		// PUT names a user who is not a member 422 (the user is what the
		// request is about); one no store can hold is no user at all. (A
		// path with an escape that does not decode to UTF-8, %ff, reaches
		// the handlers still escaped, as echo gives raw path parameters.)
		for _, bad := range []string{"%00", "a%00b"} {
			wantProblem(t, h.do(t, h.admin, "PUT", env+"/members/"+bad, map[string]any{"role": "env_user"}), http.StatusNotFound, cp.ENOTFOUND, "")
		}
		h.unchanged(t, before)
	})
}

// TestHostileBodies: a 10 MB body is 413 (it was 400), with or without a
// length; null and other bodies that are not one JSON object are 400; a
// Content-Type other than JSON is 415 (text/plain was accepted); a Prefer
// header that does not parse is 400 naming Prefer. All problem+json, none
// changes anything, an Idempotency-Key included.
func TestHostileBodies(t *testing.T) {
	bothStores(t, func(t *testing.T, h *harness) {
		hostileSetUp(t, h)
		before := h.storeRows(t)
		envs := "/v1/organizations/acme/environments"
		valid := `{"slug":"qa","type":"test"}`
		tenMB := `{"slug":"qa","type":"test","description":"` + strings.Repeat("x", 10<<20) + `"}`
		t.Run("10 MB", func(t *testing.T) {
			wantProblem(t, h.do(t, h.admin, "POST", envs, tenMB, "Idempotency-Key", "big"), http.StatusRequestEntityTooLarge, cp.ETOOLARGE, "")
		})
		t.Run("10 MB without a length", func(t *testing.T) {
			req, err := http.NewRequest("POST", h.srv.URL+envs, io.MultiReader(strings.NewReader(tenMB)))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+h.admin)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", "big-chunked")
			resp, err := h.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			wantProblem(t, response{status: resp.StatusCode, header: resp.Header, body: raw}, http.StatusRequestEntityTooLarge, cp.ETOOLARGE, "")
		})
		for _, body := range []string{"null", " null ", "true", "0", `"x"`, "[]", `[` + valid + `]`, `{}{}`, `{"slug":"qa",`} {
			t.Run("body "+body, func(t *testing.T) {
				for _, path := range []string{envs, "/v1/organizations", "/v1/organizations/acme", envs + "/default/credentials/revoke"} {
					method := "POST"
					if path == "/v1/organizations/acme" {
						method = "PATCH"
					}
					wantProblem(t, h.do(t, h.admin, method, path, body, "Idempotency-Key", "body-"+body+path), http.StatusBadRequest, cp.EMALFORMED, "")
				}
			})
		}
		for _, ct := range []string{"text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json; charset=latin1", "application/xml", "json", "application/", ";;"} {
			t.Run("Content-Type "+ct, func(t *testing.T) {
				wantProblem(t, h.do(t, h.admin, "POST", envs, valid, "Content-Type", ct, "Idempotency-Key", "ct-"+ct), http.StatusUnsupportedMediaType, cp.EMEDIATYPE, "")
				wantProblem(t, h.do(t, h.admin, "PATCH", "/v1/organizations/acme", `{"name":"changed"}`, "Content-Type", ct), http.StatusUnsupportedMediaType, cp.EMEDIATYPE, "")
			})
		}
		for _, prefer := range []string{"wait=abc", "wait=-1", "wait=", "wait=1.5", "wait=5s", "=5", "wait=5 6", "wait=\"5", "wait=5;;x=\"", "wait=5, ,(", "wait=\"\"", "wai t=5"} {
			t.Run("Prefer "+prefer, func(t *testing.T) {
				wantProblem(t, h.do(t, h.admin, "POST", envs, valid, "Prefer", prefer), http.StatusBadRequest, cp.EMALFORMED, "Prefer")
				wantProblem(t, h.do(t, h.admin, "POST", "/v1/organizations", `{"slug":"other"}`, "Prefer", prefer), http.StatusBadRequest, cp.EMALFORMED, "Prefer")
			})
		}
		h.unchanged(t, before)

		// The same bodies, well formed, do their work: what was refused was the form.
		h.must(t, http.StatusOK, h.admin, "PATCH", "/v1/organizations/acme", `{"name":"changed"}`, "Content-Type", "application/merge-patch+json")
		h.must(t, http.StatusCreated, h.admin, "POST", envs, valid, "Content-Type", "application/json; charset=UTF-8", "Prefer", `respond-async, wait="30"; x=y`)
	})
}

// TestAppKeysForbidden: an app key on its own organization and environment
// gets 403 from every route not open to app keys (POST .../api-keys without
// user answered 422), and changes nothing.
func TestAppKeysForbidden(t *testing.T) {
	bothStores(t, func(t *testing.T, h *harness) {
		_, app := hostileSetUp(t, h)
		var ops cp.List[*cp.AuditEvent]
		h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/audit-events?limit=500", nil).decode(t, &ops)
		var opID string
		for _, e := range ops.Items {
			if op, ok := e.Details["operation"].(string); ok && e.EnvironmentID == app.Environment {
				opID = op
			}
		}
		if opID == "" {
			t.Fatal("no operation of the default environment in the audit log")
		}
		// What DESIGN §9 opens to app keys: reading their organization and
		// environment, its operations, and its connection up to their scope.
		allowed := map[string]bool{
			"getMe": true, "listOrganizations": true, "getOrganization": true, "listEnvironments": true,
			"getEnvironment": true, "getConnection": true, "getConnectionByID": true, "getOperation": true,
			"listOperations": true,
		}
		bodies := attackBodies("acme")
		bodies["createOrganization"] = map[string]any{"slug": "stolen"}
		bodies["retireKeyring"] = map[string]any{"below": 2}
		// The routes open to app keys first: a resolve writes its receipt.
		routes := slices.SortedStableFunc(slices.Values(httpapi.Routes()), func(a, b httpapi.Route) int {
			switch {
			case allowed[a.OperationID] == allowed[b.OperationID]:
				return 0
			case allowed[a.OperationID]:
				return -1
			}
			return 1
		})
		var before map[string][]string
		tried := 0
		for _, r := range routes {
			if r.Public {
				continue
			}
			if before == nil && !allowed[r.OperationID] {
				before = h.storeRows(t)
			}
			path := r.Path
			for param, value := range map[string]string{":org": "acme", ":env": "default", ":user": "bob@example.com", ":id": app.ID} {
				path = strings.ReplaceAll(path, param, value)
			}
			switch {
			case strings.HasPrefix(r.Path, "/v1/environments/:id"):
				path = strings.Replace(r.Path, ":id", app.Environment, 1)
			case strings.HasPrefix(r.Path, "/v1/operations/"):
				path = "/v1/operations/" + opID
			}
			if slices.Contains(r.Query, "scope") {
				path += "?scope=readonly"
			}
			resp := h.do(t, app.Token, r.Method, path, bodies[r.OperationID])
			tried++
			if allowed[r.OperationID] {
				if resp.status != r.Status {
					t.Errorf("%s %s: status %d, want %d for an app key: %s", r.Method, path, resp.status, r.Status, resp.shown())
				}
				continue
			}
			// An app key has no sessions: every session id is someone
			// else's, absent as across organizations.
			if r.OperationID == "revokeSession" {
				wantProblem(t, resp, http.StatusNotFound, cp.ENOTFOUND, "")
				continue
			}
			if resp.status != http.StatusForbidden {
				t.Errorf("%s %s: status %d, want 403 for an app key: %s", r.Method, path, resp.status, resp.shown())
				continue
			}
			wantProblem(t, resp, http.StatusForbidden, cp.EFORBIDDEN, "")
		}
		if tried < 30 {
			t.Fatalf("only %d routes tried", tried)
		}
		h.unchanged(t, before)
	})
}
