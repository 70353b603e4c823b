package httpapi_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
)

// TestBadBodies sends request bodies the API cannot take: each answers a
// problem with the right status and code and names the field at fault.
func TestBadBodies(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	envs := "/v1/organizations/acme/environments"
	tests := []struct {
		name   string
		method string
		path   string
		body   any
		status int
		code   string
		field  string
	}{
		{"malformed JSON", "POST", "/v1/organizations", `{"slug": "x",`, http.StatusBadRequest, cp.EMALFORMED, ""},
		{"not JSON at all", "POST", envs, `slug=x&type=test`, http.StatusBadRequest, cp.EMALFORMED, ""},
		{"empty body", "POST", envs, "", http.StatusBadRequest, cp.EMALFORMED, ""},
		{"two JSON values", "POST", envs, `{"slug":"a","type":"test"} {"slug":"b"}`, http.StatusBadRequest, cp.EMALFORMED, ""},
		{"an array, not an object", "POST", envs, `[{"slug":"a","type":"test"}]`, http.StatusBadRequest, cp.EMALFORMED, ""},
		{"a string, not an object", "POST", "/v1/organizations", `"acme"`, http.StatusBadRequest, cp.EMALFORMED, ""},
		{"unknown field", "POST", envs, `{"slug":"a","type":"test","tenant_id":"x"}`, http.StatusUnprocessableEntity, cp.EINVALID, "tenant_id"},
		{"unknown field on PATCH", "PATCH", envs + "/default", `{"status":"deleted"}`, http.StatusUnprocessableEntity, cp.EINVALID, "status"},
		{"unknown field on an org", "POST", "/v1/organizations", `{"slug":"b","name":"b","owner":"me"}`, http.StatusUnprocessableEntity, cp.EINVALID, "owner"},
		{"slug is a number", "POST", envs, `{"slug":5,"type":"test"}`, http.StatusUnprocessableEntity, cp.EINVALID, "slug"},
		{"is_protected is a string", "POST", envs, `{"slug":"a","type":"test","is_protected":"yes"}`, http.StatusUnprocessableEntity, cp.EINVALID, "is_protected"},
		{"max_environments is a string", "POST", "/v1/organizations", `{"slug":"b","max_environments":"ten"}`, http.StatusUnprocessableEntity, cp.EINVALID, "max_environments"},
		{"grace_seconds is fractional", "POST", envs + "/default/credentials/rotate", `{"grace_seconds":1.5}`, http.StatusUnprocessableEntity, cp.EINVALID, "grace_seconds"},
		{"grace_seconds overflows a duration", "POST", envs + "/default/credentials/rotate", `{"grace_seconds":-9223372036854775808}`, http.StatusUnprocessableEntity, cp.EINVALID, "grace_seconds"},
		{"grace_seconds wraps to a short grace", "POST", envs + "/default/credentials/rotate", `{"grace_seconds":18446744074}`, http.StatusUnprocessableEntity, cp.EINVALID, "grace_seconds"},
		{"grace_seconds above a week", "POST", envs + "/default/credentials/rotate", `{"grace_seconds":604801}`, http.StatusUnprocessableEntity, cp.EINVALID, "grace_seconds"},
		{"role is an object", "POST", "/v1/organizations/acme/members", `{"email":"a@b.c","role":{"name":"owner"}}`, http.StatusUnprocessableEntity, cp.EINVALID, "role"},
		{"expires_at is a number", "POST", "/v1/organizations/acme/api-keys", `{"name":"k","expires_at":5}`, http.StatusUnprocessableEntity, cp.EINVALID, "expires_at"},
		{"expires_at is not a time", "POST", "/v1/organizations/acme/api-keys", `{"name":"k","expires_at":"tomorrow"}`, http.StatusUnprocessableEntity, cp.EINVALID, "expires_at"},
		{"body over the size limit", "POST", envs, `{"slug":"a","type":"test","description":"` + strings.Repeat("x", 2<<20) + `"}`, http.StatusRequestEntityTooLarge, cp.ETOOLARGE, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantProblem(t, h.do(t, h.admin, tc.method, tc.path, tc.body), tc.status, tc.code, tc.field)
		})
	}

	t.Run("body over the size limit, without a length", func(t *testing.T) {
		body := io.MultiReader(strings.NewReader(`{"slug":"a","type":"test","description":"`), strings.NewReader(strings.Repeat("x", 2<<20)+`"}`))
		req, err := http.NewRequest("POST", h.srv.URL+envs, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+h.admin)
		resp, err := h.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		r := response{status: resp.StatusCode, header: resp.Header, body: raw}
		wantProblem(t, r, http.StatusRequestEntityTooLarge, cp.ETOOLARGE, "")
		if p := r.problem(t); p.Detail != "request body too large" {
			t.Fatalf("detail %q", p.Detail)
		}
	})

	// None of them left anything behind: acme has its default environment only.
	var list cp.List[*cp.EnvironmentView]
	h.must(t, http.StatusOK, h.admin, "GET", envs, nil).decode(t, &list)
	if len(list.Items) != 1 || list.Items[0].Slug != "default" {
		t.Fatalf("bad bodies created environments: %d listed", len(list.Items))
	}
}

// TestTypeErrorsNameJSONTypes: a wrong type is reported with the JSON type
// the field takes, never the server's Go type names.
func TestTypeErrorsNameJSONTypes(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	r := h.do(t, h.admin, "POST", "/v1/organizations/acme/environments", `{"slug":"a","type":7}`)
	wantProblem(t, r, http.StatusUnprocessableEntity, cp.EINVALID, "type")
	if p := r.problem(t); strings.Contains(p.Errors[0].Message, "controlplane") || !strings.Contains(p.Errors[0].Message, "string") {
		t.Fatalf("type error message %q, want the JSON type string", p.Errors[0].Message)
	}
}

// TestBadSlugs: organization and environment slugs outside
// ^[a-z0-9][a-z0-9-]{0,62}$ are 422 naming slug; the boundary is accepted.
func TestBadSlugs(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	bad := map[string]string{
		"path traversal": "../x",
		"slash":          "a/b",
		"upper case":     "Acme",
		"64 characters":  strings.Repeat("a", 64),
		"empty":          "",
		"leading dash":   "-acme",
		"underscore":     "my_env",
		"space":          "my env",
		"unicode":        "café",
		"trailing dot":   "acme.",
	}
	for name, slug := range bad {
		t.Run("organization "+name, func(t *testing.T) {
			r := h.do(t, h.admin, "POST", "/v1/organizations", map[string]any{"slug": slug, "name": "x"})
			wantProblem(t, r, http.StatusUnprocessableEntity, cp.EINVALID, "slug")
		})
		t.Run("environment "+name, func(t *testing.T) {
			r := h.do(t, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": slug, "type": "development"})
			wantProblem(t, r, http.StatusUnprocessableEntity, cp.EINVALID, "slug")
		})
	}
	// Slugs that cannot exist are simply not found in paths, escaped or not.
	for _, path := range []string{
		"/v1/organizations/..%2Facme",
		"/v1/organizations/ACME",
		"/v1/organizations/acme/environments/..%2Fdefault",
		"/v1/organizations/acme/environments/%2E%2E",
		"/v1/organizations/acme/environments/DEFAULT",
	} {
		wantProblem(t, h.do(t, h.admin, "GET", path, nil), http.StatusNotFound, cp.ENOTFOUND, "")
	}

	longest := strings.Repeat("a", 63)
	h.org(t, longest)
	h.env(t, h.admin, "acme", "9-"+strings.Repeat("z", 61), "test")

	var orgs cp.List[*cp.Organization]
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations", nil).decode(t, &orgs)
	if len(orgs.Items) != 2 {
		t.Fatalf("%d organizations, want acme and the 63-character one", len(orgs.Items))
	}
}

// TestBadEnvironmentFields: unknown or missing type, unknown target or
// region, a duplicate slug; and a deleted environment's slug is free again.
func TestBadEnvironmentFields(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	envs := "/v1/organizations/acme/environments"
	tests := []struct {
		name   string
		body   map[string]any
		status int
		code   string
		field  string
	}{
		{"unknown type", map[string]any{"slug": "a", "type": "qa"}, http.StatusUnprocessableEntity, cp.EINVALID, "type"},
		{"missing type", map[string]any{"slug": "a"}, http.StatusUnprocessableEntity, cp.EINVALID, "type"},
		{"a second default", map[string]any{"slug": "a", "type": "default"}, http.StatusUnprocessableEntity, cp.EINVALID, "type"},
		{"unknown target", map[string]any{"slug": "a", "type": "test", "target": "mars"}, http.StatusUnprocessableEntity, cp.EINVALID, "target"},
		{"unknown region", map[string]any{"slug": "a", "type": "test", "region": "mars-1"}, http.StatusUnprocessableEntity, cp.EINVALID, "region"},
		{"name too long", map[string]any{"slug": "a", "type": "test", "name": strings.Repeat("n", 201)}, http.StatusUnprocessableEntity, cp.EINVALID, "name"},
		{"duplicate slug", map[string]any{"slug": "default", "type": "test"}, http.StatusConflict, cp.ECONFLICT, "slug"},
		{"organization in the body and the path", map[string]any{"organization": "acme", "slug": "a", "type": "test"}, http.StatusUnprocessableEntity, cp.EINVALID, "organization"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantProblem(t, h.do(t, h.admin, "POST", envs, tc.body), tc.status, tc.code, tc.field)
		})
	}
	t.Run("POST /v1/environments without organization", func(t *testing.T) {
		wantProblem(t, h.do(t, h.admin, "POST", "/v1/environments", map[string]any{"slug": "a", "type": "test"}), http.StatusUnprocessableEntity, cp.EINVALID, "organization")
	})
	t.Run("duplicate organization slug", func(t *testing.T) {
		wantProblem(t, h.do(t, h.admin, "POST", "/v1/organizations", map[string]any{"slug": "acme"}), http.StatusConflict, cp.ECONFLICT, "slug")
	})

	// A duplicate of a live environment is 409; once it is deleted, the slug is free.
	first := h.env(t, h.admin, "acme", "qa", "test")
	wantProblem(t, h.do(t, h.admin, "POST", envs, map[string]any{"slug": "qa", "type": "staging"}), http.StatusConflict, cp.ECONFLICT, "slug")
	h.must(t, http.StatusAccepted, h.admin, "DELETE", envs+"/qa", nil)
	h.svc.Wait()
	if st := h.storedEnvironment(t, first.OrgID, first.ID).Status; st != cp.StatusDeleted {
		t.Fatalf("deleted environment is %s", st)
	}
	again := h.env(t, h.admin, "acme", "qa", "staging")
	if again.ID == first.ID || again.Database.DatabaseName == first.Database.DatabaseName {
		t.Fatal("the reused slug got the deleted environment's identity or database")
	}
}

// TestAuthentication: every way of not presenting a working key is 401 with
// WWW-Authenticate, and the same answer for all, so a caller learns nothing
// about which.
func TestAuthentication(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	bob := h.member(t, "acme", "bob@example.com", cp.OrgAdmin)

	var revoked cp.CreateAPIKeyResponse
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/api-keys", map[string]any{"name": "old", "user": "bob@example.com"}).decode(t, &revoked)
	h.must(t, http.StatusOK, revoked.Token, "GET", "/v1/me", nil)
	h.must(t, http.StatusNoContent, h.admin, "DELETE", "/v1/organizations/acme/api-keys/"+revoked.ID, nil)

	var expiring cp.CreateAPIKeyResponse
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/api-keys", map[string]any{"name": "short", "user": "bob@example.com", "expires_at": h.clock.Now().Add(time.Hour)}).decode(t, &expiring)
	h.must(t, http.StatusOK, expiring.Token, "GET", "/v1/me", nil)
	h.clock.Advance(time.Hour)

	tests := []struct {
		name   string
		header string
	}{
		{"no header", ""},
		{"empty bearer", "Bearer "},
		{"bearer without a space", "Bearer" + bob},
		{"basic auth", "Basic Ym9iOnNlY3JldA=="},
		{"another scheme", "Token " + bob},
		{"unknown token", "Bearer envp_" + strings.Repeat("A", 43)},
		{"token without the prefix", "Bearer " + strings.TrimPrefix(bob, cp.TokenPrefix)},
		{"token with a character more", "Bearer " + bob + "x"},
		{"revoked key", "Bearer " + revoked.Token},
		{"expired key", "Bearer " + expiring.Token},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/v1/me", "/v1/organizations/acme/environments/default/connection?scope=readonly"} {
				var r response
				if tc.header == "" {
					r = h.do(t, "", "GET", path, nil)
				} else {
					r = h.do(t, "", "GET", path, nil, "Authorization", tc.header)
				}
				wantProblem(t, r, http.StatusUnauthorized, cp.EUNAUTHORIZED, "")
				if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
					t.Fatalf("%s: WWW-Authenticate %q", path, r.header.Get("WWW-Authenticate"))
				}
				if p := r.problem(t); p.Detail != "invalid or missing API key" {
					t.Fatalf("%s: detail %q tells the cases apart", path, p.Detail)
				}
			}
		})
	}
	t.Run("the scheme is case-insensitive", func(t *testing.T) {
		h.must(t, http.StatusOK, "", "GET", "/v1/me", nil, "Authorization", "bearer "+bob)
	})
	t.Run("public routes need no key", func(t *testing.T) {
		for _, r := range []string{"/healthz", "/readyz", "/v1/openapi.json"} {
			h.must(t, http.StatusOK, "", "GET", r, nil)
		}
	})
}

// TestPagination walks environments and audit events page by page: every
// item once, in order, the last page without a cursor; a bad limit is 422.
func TestPagination(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	for _, slug := range []string{"e1", "e2", "e3", "e4", "e5"} {
		h.env(t, h.admin, "acme", slug, "test")
	}

	var all cp.List[*cp.EnvironmentView]
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments?limit=500", nil).decode(t, &all)
	if len(all.Items) != 6 || all.Next != "" {
		t.Fatalf("%d environments (next %q), want default and e1..e5 on one page", len(all.Items), all.Next)
	}
	var walked []string
	pages := 0
	for cursor := ""; ; {
		var pg cp.List[*cp.EnvironmentView]
		h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments?limit=4&cursor="+cursor, nil).decode(t, &pg)
		pages++
		if len(pg.Items) == 0 || len(pg.Items) > 4 {
			t.Fatalf("page %d has %d environments", pages, len(pg.Items))
		}
		for _, e := range pg.Items {
			walked = append(walked, e.ID)
		}
		if pg.Next == "" {
			break
		}
		cursor = pg.Next
	}
	if pages != 2 || len(walked) != len(all.Items) {
		t.Fatalf("walked %d environments in %d pages, want %d in 2", len(walked), pages, len(all.Items))
	}
	for i, e := range all.Items {
		if walked[i] != e.ID {
			t.Fatalf("page walk differs from the full list at %d", i)
		}
	}

	var events cp.List[*cp.AuditEvent]
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/audit-events?limit=500", nil).decode(t, &events)
	if len(events.Items) < 12 {
		t.Fatalf("%d audit events, want at least 12 (created and provisioned, six times)", len(events.Items))
	}
	seen := map[string]bool{}
	var prev *cp.AuditEvent
	cursor := ""
	for i := 0; ; i++ {
		var pg cp.List[*cp.AuditEvent]
		h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/audit-events?limit=5&cursor="+cursor, nil).decode(t, &pg)
		for _, e := range pg.Items {
			if seen[e.ID] {
				t.Fatalf("audit event %s on two pages", e.ID)
			}
			seen[e.ID] = true
			if prev != nil && (e.CreatedAt.After(prev.CreatedAt) || e.ID > prev.ID) {
				t.Fatalf("audit events not newest first: %s after %s", e.ID, prev.ID)
			}
			prev = e
		}
		if pg.Next == "" {
			break
		}
		if len(pg.Items) != 5 {
			t.Fatalf("a page before the last has %d events", len(pg.Items))
		}
		cursor = pg.Next
	}
	if len(seen) != len(events.Items) {
		t.Fatalf("walked %d audit events, want %d", len(seen), len(events.Items))
	}
	// Newest first holds within one millisecond too: the organization was
	// created before its default environment, in the same transaction.
	if oldest := events.Items[len(events.Items)-1]; oldest.Action != "organization.created" {
		t.Fatalf("oldest audit event is %s, want organization.created", oldest.Action)
	}

	for _, limit := range []string{"0", "501", "-1", "ten", "1.5"} {
		for _, path := range []string{"/v1/organizations/acme/environments", "/v1/organizations/acme/audit-events", "/v1/organizations", "/v1/organizations/acme/members", "/v1/organizations/acme/api-keys"} {
			wantProblem(t, h.do(t, h.admin, "GET", path+"?limit="+limit, nil), http.StatusUnprocessableEntity, cp.EINVALID, "limit")
		}
	}
}

// TestEnvironmentQuota: an organization at its max_environments is 429 and
// nothing of the refused environment is written; deleting one frees a place.
func TestEnvironmentQuota(t *testing.T) {
	h := newHarness(t)
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations", map[string]any{"slug": "small", "max_environments": 2})
	h.env(t, h.admin, "small", "one", "test")
	before := h.auditActions(t, "small")
	wantProblem(t, h.do(t, h.admin, "POST", "/v1/organizations/small/environments", map[string]any{"slug": "two", "type": "test"}), http.StatusTooManyRequests, cp.ETOOMANY, "")
	wantProblem(t, h.do(t, h.admin, "GET", "/v1/organizations/small/environments/two", nil), http.StatusNotFound, cp.ENOTFOUND, "")
	if after := h.auditActions(t, "small"); len(after) != len(before) {
		t.Fatalf("the refused environment wrote %d audit events", len(after)-len(before))
	}
	h.must(t, http.StatusAccepted, h.admin, "DELETE", "/v1/organizations/small/environments/one", nil)
	h.svc.Wait()
	h.env(t, h.admin, "small", "two", "test")
	for _, bad := range []any{0, -1, 100001} {
		wantProblem(t, h.do(t, h.admin, "POST", "/v1/organizations", map[string]any{"slug": "bad-quota", "max_environments": bad}), http.StatusUnprocessableEntity, cp.EINVALID, "max_environments")
	}
}

// TestWrongMethodIs405: a route asked with a method it does not serve.
func TestWrongMethodIs405(t *testing.T) {
	h := newHarness(t)
	wantProblem(t, h.do(t, h.admin, "PUT", "/v1/organizations", map[string]any{}), http.StatusMethodNotAllowed, cp.EMETHOD, "")
}
