package httpapi_test

import (
	"bytes"
	"io"
	"mime"
	"net/http"
	"strings"
	"testing"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/httpapi"
)

// mediaType returns r's Content-Type without parameters.
func mediaType(tb testing.TB, r response) string {
	tb.Helper()
	mt, _, err := mime.ParseMediaType(r.header.Get("Content-Type"))
	if err != nil {
		tb.Fatalf("Content-Type %q: %v", r.header.Get("Content-Type"), err)
	}
	return mt
}

// wantReplay fails unless replay repeats first: same status, media type and
// body, marked Idempotent-Replayed (and first is not).
func wantReplay(tb testing.TB, first, replay response) {
	tb.Helper()
	if first.header.Get("Idempotent-Replayed") != "" {
		tb.Fatal("the first answer is marked replayed")
	}
	if replay.header.Get("Idempotent-Replayed") != "true" {
		tb.Fatalf("the replay is not marked Idempotent-Replayed (status %d)", replay.status)
	}
	if replay.status != first.status || !bytes.Equal(replay.body, first.body) {
		tb.Fatalf("replay %d %s, want %d %s", replay.status, replay.body, first.status, first.body)
	}
	if a, b := mediaType(tb, first), mediaType(tb, replay); a != b {
		tb.Fatalf("replay Content-Type %s, first %s", b, a)
	}
}

// TestIdempotencyKey: the same key and body replay the first answer and do
// nothing twice; another body is 422; keys are per API key.
func TestIdempotencyKey(t *testing.T) {
	h, fd := newFaultHarness(t, nil)
	h.org(t, "acme")
	h.org(t, "other")
	bob := h.member(t, "acme", "bob@example.com", cp.OrgAdmin)
	envs := "/v1/organizations/acme/environments"
	body := map[string]any{"slug": "idem", "type": "test"}

	first := h.must(t, http.StatusCreated, h.admin, "POST", envs, body, "Idempotency-Key", "k1")
	creates, events := fd.count("CreateDatabase"), len(h.auditActions(t, "acme"))
	replay := h.do(t, h.admin, "POST", envs, body, "Idempotency-Key", "k1")
	wantReplay(t, first, replay)
	if n := fd.count("CreateDatabase"); n != creates {
		t.Fatalf("the replay created %d databases", n-creates)
	}
	if n := len(h.auditActions(t, "acme")); n != events {
		t.Fatalf("the replay wrote %d audit events", n-events)
	}
	var list cp.List[*cp.EnvironmentView]
	h.must(t, http.StatusOK, h.admin, "GET", envs, nil).decode(t, &list)
	if len(list.Items) != 2 {
		t.Fatalf("%d environments after a replay, want default and idem", len(list.Items))
	}

	tests := []struct {
		name  string
		token string
		path  string
		body  any
		key   string
	}{
		{"another body", h.admin, envs, map[string]any{"slug": "idem2", "type": "test"}, "k1"},
		{"the same fields in another order", h.admin, envs, `{"type":"test","slug":"idem"}`, "k1"},
		{"another organization's path", h.admin, "/v1/organizations/other/environments", body, "k1"},
		{"another route", h.admin, "/v1/organizations/acme/members", map[string]any{"email": "x@example.com", "role": "member"}, "k1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(t, tc.token, "POST", tc.path, tc.body, "Idempotency-Key", tc.key)
			wantProblem(t, r, http.StatusUnprocessableEntity, cp.EIDEMPOTENCY, "")
			if r.header.Get("Idempotent-Replayed") != "" {
				t.Fatal("a refused reuse is marked replayed")
			}
		})
	}

	// Keys belong to the API key that sent them: bob's k1 is a new request
	// (and the slug is taken by the admin's).
	r := h.do(t, bob, "POST", envs, body, "Idempotency-Key", "k1")
	wantProblem(t, r, http.StatusConflict, cp.ECONFLICT, "slug")
	if r.header.Get("Idempotent-Replayed") != "" {
		t.Fatal("another key's request was replayed")
	}

	// An error answer is replayed as the same problem.
	bobFirst := h.do(t, bob, "POST", envs, map[string]any{"slug": "default", "type": "test"}, "Idempotency-Key", "k2")
	wantProblem(t, bobFirst, http.StatusConflict, cp.ECONFLICT, "slug")
	bobReplay := h.do(t, bob, "POST", envs, map[string]any{"slug": "default", "type": "test"}, "Idempotency-Key", "k2")
	wantReplay(t, bobFirst, bobReplay)
	wantProblem(t, bobReplay, http.StatusConflict, cp.ECONFLICT, "slug")

	wantProblem(t, h.do(t, h.admin, "POST", envs, body, "Idempotency-Key", strings.Repeat("k", 256)), http.StatusUnprocessableEntity, cp.EINVALID, "Idempotency-Key")

	// A body too large to read does not claim the key.
	huge := `{"slug":"big","type":"test","description":"` + strings.Repeat("x", 2<<20) + `"}`
	wantProblem(t, h.do(t, h.admin, "POST", envs, huge, "Idempotency-Key", "k3"), http.StatusRequestEntityTooLarge, cp.ETOOLARGE, "")
	h.must(t, http.StatusCreated, h.admin, "POST", envs, map[string]any{"slug": "big", "type": "test"}, "Idempotency-Key", "k3")
}

// TestIdempotentAPIKeyToken: replaying an API key's creation creates no
// second key and does not show the token again.
func TestIdempotentAPIKeyToken(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/members", map[string]any{"email": "bob@example.com", "role": "member"})
	body := map[string]any{"name": "ci", "user": "bob@example.com"}

	var first, replay cp.CreateAPIKeyResponse
	r1 := h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/api-keys", body, "Idempotency-Key", "key-1")
	r1.decode(t, &first)
	r2 := h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/api-keys", body, "Idempotency-Key", "key-1")
	r2.decode(t, &replay)
	if r2.header.Get("Idempotent-Replayed") != "true" {
		t.Fatal("the second creation was not a replay")
	}
	if first.Token == "" || replay.Token != "" || bytes.Contains(r2.body, []byte(first.Token)) {
		t.Fatalf("the replay shows the token again (first had one: %v)", first.Token != "")
	}
	if replay.ID != first.ID || replay.Name != first.Name || replay.User != first.User {
		t.Fatalf("the replay describes another key: %+v", replay)
	}
	var keys cp.List[*cp.APIKey]
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/api-keys", nil).decode(t, &keys)
	n := 0
	for _, k := range keys.Items {
		if k.Name == "ci" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d keys named ci, want 1", n)
	}
	h.must(t, http.StatusOK, first.Token, "GET", "/v1/me", nil)
	if strings.Contains(h.logs.String(), first.Token) {
		t.Fatal("the token reached the log")
	}
}

// TestIdempotencyKeyInFlight: while the first request with a key is still
// running, the same key is 409 (and another body still 422); once it
// answers, the key replays that answer.
func TestIdempotencyKeyInFlight(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	h, _ := newFaultHarness(t, func(method string, n int) fault {
		// Call 1 is the default environment's database; hold call 2.
		if method == "CreateDatabase" && n == 2 {
			close(entered)
			<-release
		}
		return fault{}
	})
	h.org(t, "acme")
	path := "/v1/organizations/acme/environments"
	body := `{"slug":"slow","type":"test"}`

	type answer struct {
		status int
		body   []byte
		err    error
	}
	done := make(chan answer, 1)
	send := func() answer {
		req, err := http.NewRequest("POST", h.srv.URL+path, strings.NewReader(body))
		if err != nil {
			return answer{err: err}
		}
		req.Header.Set("Authorization", "Bearer "+h.admin)
		req.Header.Set("Idempotency-Key", "slow-1")
		resp, err := h.srv.Client().Do(req)
		if err != nil {
			return answer{err: err}
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		return answer{status: resp.StatusCode, body: raw, err: err}
	}
	go func() { done <- send() }()
	<-entered

	wantProblem(t, h.do(t, h.admin, "POST", path, body, "Idempotency-Key", "slow-1"), http.StatusConflict, cp.ECONFLICT, "")
	wantProblem(t, h.do(t, h.admin, "POST", path, `{"slug":"fast","type":"test"}`, "Idempotency-Key", "slow-1"), http.StatusUnprocessableEntity, cp.EIDEMPOTENCY, "")
	close(release)
	first := <-done
	if first.err != nil || first.status != http.StatusCreated {
		t.Fatalf("the first request: status %d, err %v: %s", first.status, first.err, first.body)
	}
	replay := h.must(t, http.StatusCreated, h.admin, "POST", path, body, "Idempotency-Key", "slow-1")
	if !bytes.Equal(replay.body, first.body) || replay.header.Get("Idempotent-Replayed") != "true" {
		t.Fatal("after the first request answered, the key does not replay it")
	}
	var p httpapi.Problem
	if r := h.do(t, h.admin, "POST", path, body); r.status != http.StatusConflict {
		t.Fatalf("without the key the request runs again: %d", r.status)
	} else {
		r.decode(t, &p)
	}
	if p.Code != cp.ECONFLICT {
		t.Fatalf("without the key: code %q", p.Code)
	}
}
