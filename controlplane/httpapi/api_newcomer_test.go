package httpapi_test

import (
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	cp "github.com/envplane/envplane/controlplane"
	sqlitedriver "github.com/envplane/envplane/drivers/sqlite"
)

// TestAcceptedAnswersCarryLocation: every 202 names the operation to follow
// in Location (a replay of it too), and 201 and 202 share one body,
// {environment, operation}.
func TestAcceptedAnswersCarryLocation(t *testing.T) {
	g := newGate()
	h, _ := newFaultHarness(t, func(method string, _ int) fault {
		if method == "CreateDatabase" {
			g.hold()
		}
		return fault{}
	})
	h.org(t, "acme")
	envs := "/v1/organizations/acme/environments"

	// 201: the environment, active, and its finished operation.
	var created cp.EnvironmentOperationResponse
	r := h.must(t, http.StatusCreated, h.admin, "POST", envs, map[string]any{"slug": "dev", "type": "development"})
	r.decode(t, &created)
	if created.Environment == nil || created.Environment.Status != cp.StatusActive || created.Environment.Database == nil ||
		created.Operation == nil || created.Operation.Status != cp.OpSucceeded || created.Operation.EnvironmentID != created.Environment.ID {
		t.Fatalf("201 body is not {environment, operation}: %s", r.body)
	}

	// 202: the same shape, and Location leads to the running operation.
	g.armed.Store(true)
	var accepted cp.EnvironmentOperationResponse
	r = h.must(t, http.StatusAccepted, h.admin, "POST", envs, map[string]any{"slug": "slow", "type": "test"}, "Prefer", "wait=0", "Idempotency-Key", "slow-1")
	r.decode(t, &accepted)
	<-g.entered
	if accepted.Environment == nil || accepted.Operation == nil {
		t.Fatalf("202 body is not {environment, operation}: %s", r.body)
	}
	loc := r.header.Get("Location")
	if loc != "/v1/operations/"+accepted.Operation.ID {
		t.Fatalf("202 Location %q, want /v1/operations/%s", loc, accepted.Operation.ID)
	}
	var followed cp.Operation
	h.must(t, http.StatusOK, h.admin, "GET", loc, nil).decode(t, &followed)
	if followed.ID != accepted.Operation.ID || followed.Kind != cp.OpProvision {
		t.Fatalf("Location leads to %+v", followed)
	}
	// A replay of the 202 says where to look as well.
	replay := h.must(t, http.StatusAccepted, h.admin, "POST", envs, map[string]any{"slug": "slow", "type": "test"}, "Prefer", "wait=0", "Idempotency-Key", "slow-1")
	if replay.header.Get("Idempotent-Replayed") != "true" || replay.header.Get("Location") != loc {
		t.Fatalf("replayed 202: replayed %q, Location %q, want %q", replay.header.Get("Idempotent-Replayed"), replay.header.Get("Location"), loc)
	}
	close(g.release)
	h.svc.Wait()

	// DELETE is a 202 with Location too.
	var deleting cp.EnvironmentOperationResponse
	r = h.must(t, http.StatusAccepted, h.admin, "DELETE", envs+"/dev", nil)
	r.decode(t, &deleting)
	if deleting.Operation == nil || deleting.Operation.Kind != cp.OpDeprovision || r.header.Get("Location") != "/v1/operations/"+deleting.Operation.ID {
		t.Fatalf("DELETE 202: Location %q, body %s", r.header.Get("Location"), r.body)
	}
	h.svc.Wait()
}

// TestListFilters: environments filter by type, status and target, and
// operations by environment, status and kind; the cursor pages through a
// filtered list; an unknown value is 422 naming the field; a member sees
// only what their roles let them see. On both control-plane stores.
func TestListFilters(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testListFilters(t) })
	t.Run("postgres", func(t *testing.T) { testListFilters(t, withPostgresStore()) })
}

func testListFilters(t *testing.T, opts ...harnessOption) {
	d, err := sqlitedriver.New(sqlitedriver.Config{Dir: filepath.Join(t.TempDir(), "second")})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, append(opts, withTargets(&cp.Target{Name: "second", Region: "local", Driver: d}))...)
	h.org(t, "acme")
	envs := "/v1/organizations/acme/environments"
	dev := h.env(t, h.admin, "acme", "dev", "development")
	pr1 := h.env(t, h.admin, "acme", "pr-1", "preview")
	pr2 := h.must(t, http.StatusCreated, h.admin, "POST", envs, map[string]any{"slug": "pr-2", "type": "preview", "target": "second"}).environment(t)
	stage := h.env(t, h.admin, "acme", "stage", "staging")
	h.must(t, http.StatusOK, h.admin, "POST", envs+"/pr-2/suspend", nil)
	h.must(t, http.StatusAccepted, h.admin, "DELETE", envs+"/stage", nil)
	h.svc.Wait()

	// slugs pages through a list one item at a time and returns the slugs.
	slugs := func(token, query string) []string {
		t.Helper()
		var got []string
		cursor := ""
		for range 20 {
			q, err := url.ParseQuery(query)
			if err != nil {
				t.Fatal(err)
			}
			q.Set("limit", "1")
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			var page cp.List[*cp.EnvironmentView]
			h.must(t, http.StatusOK, token, "GET", envs+"?"+q.Encode(), nil).decode(t, &page)
			for _, e := range page.Items {
				got = append(got, e.Slug)
			}
			if page.Next == "" {
				return got
			}
			cursor = page.Next
		}
		t.Fatalf("%s: the cursor never ended", query)
		return nil
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"type=preview", []string{"pr-1", "pr-2"}},
		{"type=preview&status=active", []string{"pr-1"}},
		{"status=suspended", []string{"pr-2"}},
		{"target=second", []string{"pr-2"}},
		{"target=local&type=development", []string{"dev"}},
		{"status=deleted", []string{"stage"}},
		{"target=nowhere", nil},
	} {
		if got := slugs(h.admin, tc.query); !slices.Equal(got, tc.want) {
			t.Errorf("environments?%s = %v, want %v", tc.query, got, tc.want)
		}
	}
	for _, tc := range []struct{ query, field string }{
		{"type=nope", "type"},
		{"status=gone", "status"},
		{"type=preview&status=Active", "status"},
		{"target=" + strings.Repeat("t", 101), "target"},
		{"target=%00", "target"},
		{"target=%FF", "target"},
	} {
		wantProblem(t, h.do(t, h.admin, "GET", envs+"?"+tc.query, nil), http.StatusUnprocessableEntity, cp.EINVALID, tc.field)
	}

	// A member with a role on dev alone filters among what they can see.
	bob := h.member(t, "acme", "bob@example.com", cp.OrgMember)
	h.must(t, http.StatusOK, h.admin, "PUT", envs+"/dev/members/bob@example.com", map[string]any{"role": "env_viewer"})
	if got := slugs(bob, "type=development"); !slices.Equal(got, []string{"dev"}) {
		t.Errorf("bob's development environments = %v, want [dev]", got)
	}
	if got := slugs(bob, "type=preview"); got != nil {
		t.Errorf("bob's preview environments = %v, want none", got)
	}

	ops := "/v1/organizations/acme/operations"
	// opsOf lists every operation of a query, newest first, in pages of 2.
	opsOf := func(token, query string) []*cp.Operation {
		t.Helper()
		var got []*cp.Operation
		cursor := ""
		for range 20 {
			q, err := url.ParseQuery(query)
			if err != nil {
				t.Fatal(err)
			}
			q.Set("limit", "2")
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			var page cp.List[*cp.Operation]
			h.must(t, http.StatusOK, token, "GET", ops+"?"+q.Encode(), nil).decode(t, &page)
			got = append(got, page.Items...)
			if page.Next == "" {
				return got
			}
			cursor = page.Next
		}
		t.Fatalf("%s: the cursor never ended", query)
		return nil
	}
	all := opsOf(h.admin, "")
	if !slices.IsSortedFunc(all, func(a, b *cp.Operation) int { return strings.Compare(b.ID, a.ID) }) {
		t.Error("operations are not newest first")
	}
	envsOf := func(list []*cp.Operation) []string {
		var ids []string
		for _, op := range list {
			ids = append(ids, op.EnvironmentID+"/"+string(op.Kind))
		}
		return ids
	}
	for _, env := range []cp.EnvironmentView{dev, pr1, pr2, stage} {
		if !slices.Contains(envsOf(all), env.ID+"/provision") {
			t.Errorf("no provision operation of %s among %v", env.Slug, envsOf(all))
		}
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"environment=pr-1", []string{pr1.ID + "/provision"}},
		// pr-2 was suspended: suspension is an operation too.
		{"environment=" + pr2.ID + "&status=succeeded", []string{pr2.ID + "/suspend", pr2.ID + "/provision"}},
		{"kind=suspend", []string{pr2.ID + "/suspend"}},
		{"kind=deprovision", []string{stage.ID + "/deprovision"}},
		{"kind=deprovision&status=failed", nil},
	} {
		if got := envsOf(opsOf(h.admin, tc.query)); !slices.Equal(got, tc.want) {
			t.Errorf("operations?%s = %v, want %v", tc.query, got, tc.want)
		}
	}
	if got := envsOf(opsOf(bob, "")); !slices.Equal(got, []string{dev.ID + "/provision"}) {
		t.Errorf("bob's operations = %v, want dev's provision alone", got)
	}
	wantProblem(t, h.do(t, bob, "GET", ops+"?environment=pr-1", nil), http.StatusNotFound, cp.ENOTFOUND, "")
	wantProblem(t, h.do(t, h.admin, "GET", ops+"?environment=nope", nil), http.StatusNotFound, cp.ENOTFOUND, "")
	wantProblem(t, h.do(t, h.admin, "GET", ops+"?status=done", nil), http.StatusUnprocessableEntity, cp.EINVALID, "status")
	wantProblem(t, h.do(t, h.admin, "GET", ops+"?kind=explode", nil), http.StatusUnprocessableEntity, cp.EINVALID, "kind")
	for _, bad := range []string{strings.Repeat("e", 101), "%00", "d%FFv"} {
		wantProblem(t, h.do(t, h.admin, "GET", ops+"?environment="+bad, nil), http.StatusUnprocessableEntity, cp.EINVALID, "environment")
	}
}

// TestOpenAPIDescribesLocationAndFilters: the document states Location on
// every 202, one body for 201 and 202, and the list filters with their values.
func TestOpenAPIDescribesLocationAndFilters(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			accepted := op.Responses.Status(http.StatusAccepted)
			if accepted == nil {
				continue
			}
			if h := accepted.Value.Headers["Location"]; h == nil || h.Value == nil || !h.Value.Required {
				t.Errorf("%s %s: 202 without a required Location header", method, path)
			}
			created := op.Responses.Status(http.StatusCreated)
			if created == nil {
				continue
			}
			if c, a := created.Value.Content.Get("application/json").Schema.Ref, accepted.Value.Content.Get("application/json").Schema.Ref; c != a {
				t.Errorf("%s %s: 201 body %s, 202 body %s: want one shape", method, path, c, a)
			}
		}
	}
	enumOf := func(path, param string) []any {
		t.Helper()
		p := doc.Paths.Value(path).Get.Parameters.GetByInAndName("query", param)
		if p == nil {
			t.Fatalf("GET %s lacks ?%s", path, param)
		}
		return p.Schema.Value.Enum
	}
	envs, ops := "/v1/organizations/{org}/environments", "/v1/organizations/{org}/operations"
	if got := enumOf(envs, "type"); !slices.Contains(got, any("preview")) || len(got) != 8 {
		t.Errorf("environments ?type enum = %v", got)
	}
	if got := enumOf(envs, "status"); !slices.Contains(got, any("suspended")) || len(got) != 6 {
		t.Errorf("environments ?status enum = %v", got)
	}
	if got := enumOf(envs, "target"); got != nil {
		t.Errorf("environments ?target is free text, enum = %v", got)
	}
	if got := enumOf(ops, "status"); !slices.Contains(got, any("running")) || len(got) != 4 {
		t.Errorf("operations ?status enum = %v", got)
	}
	if got := enumOf(ops, "kind"); !slices.Contains(got, any("suspend")) || len(got) != len(cp.OperationKinds()) {
		t.Errorf("operations ?kind enum = %v", got)
	}
}
