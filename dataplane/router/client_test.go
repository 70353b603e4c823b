package router_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/envplane/envplane/dataplane/router"
	"github.com/envplane/envplane/drivers"
)

// TestResolveAsksTheRouter: the client asks the route for the target, with
// the scope and the Bearer token, and decodes every field of the answer,
// keeping the DSN and the secret as secrets.
func TestResolveAsksTheRouter(t *testing.T) {
	s := newRouterServer(t)
	expires := time.Date(2026, 11, 22, 13, 0, 0, 0, time.UTC)
	refresh := time.Date(2026, 11, 22, 12, 1, 0, 0, time.UTC)
	want := wireConnection{
		EnvironmentID: "env_01", Organization: "acme", Environment: "dev", Driver: "postgres", Scope: "readonly",
		DSN: "postgres://ro_a:pw-9f8e7d@db.example.com:5432/env_x", URL: "postgres://ro_a@db.example.com:5432/env_x",
		Host: "db.example.com", Port: 5432, Database: "env_x", Username: "ro_a", Secret: "pw-9f8e7d",
		CredentialID: "cred_01", ExpiresAt: &expires, RefreshAfter: refresh,
	}
	s.answerWith(t, want)

	tests := []struct {
		name     string
		base     string
		target   router.Target
		path     string
		rawPath  string
		wantFail bool
	}{
		{"by org and env", s.srv.URL, router.Target{Org: "acme", Env: "dev"}, "/v1/organizations/acme/environments/dev/connection", "", false},
		{"by id", s.srv.URL, router.Target{EnvironmentID: "env_01"}, "/v1/environments/env_01/connection", "", false},
		{"base with a path", s.srv.URL + "/cp/", router.Target{Org: "acme", Env: "dev"}, "/cp/v1/organizations/acme/environments/dev/connection", "", false},
		{"segments are escaped", s.srv.URL, router.Target{Org: "a/b", Env: "dev"}, "/v1/organizations/a/b/environments/dev/connection", "/v1/organizations/a%2Fb/environments/dev/connection", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(s.seen())
			c := &router.Client{BaseURL: tc.base, Token: drivers.Secret(s.token), HTTPClient: s.srv.Client()}
			got, err := c.Resolve(context.Background(), tc.target, drivers.ScopeReadOnly)
			if err != nil {
				t.Fatalf("resolve: %v", err)
			}
			reqs := s.seen()[before:]
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			rawPath := tc.rawPath
			if rawPath == "" {
				rawPath = tc.path
			}
			if r.method != http.MethodGet || r.path != tc.path || r.rawPath != rawPath || r.query != "scope=readonly" {
				t.Errorf("request %s %s (raw %s) ?%s, want GET %s (raw %s) ?scope=readonly", r.method, r.path, r.rawPath, r.query, tc.path, rawPath)
			}
			if r.auth != "Bearer "+s.token {
				t.Error("the request does not carry the token as a Bearer credential")
			}
			if r.accept != "application/json" {
				t.Errorf("Accept %q", r.accept)
			}
			if got.DSN.Reveal() != want.DSN || got.Secret.Reveal() != want.Secret {
				t.Error("the DSN or the secret did not come through")
			}
			if got.EnvironmentID != want.EnvironmentID || got.Organization != "acme" || got.Environment != "dev" ||
				got.Driver != "postgres" || got.Scope != drivers.ScopeReadOnly || got.URL != want.URL ||
				got.Host != want.Host || got.Port != 5432 || got.Database != "env_x" || got.Username != "ro_a" ||
				got.CredentialID != "cred_01" || !got.ExpiresAt.Equal(expires) || !got.RefreshAfter.Equal(refresh) {
				t.Errorf("decoded %+v", got)
			}
			if out := printed(got, &got); strings.Contains(out, want.Secret) {
				t.Error("printing a Connection shows its secret")
			}
		})
	}
}

// TestResolveRefusals: every refusal becomes an *Error with the problem's
// status, code and detail, matching its sentinel, and never quoting the token.
func TestResolveRefusals(t *testing.T) {
	s := newRouterServer(t)
	tests := []struct {
		status   int
		code     string
		sentinel error
	}{
		{http.StatusUnauthorized, "unauthorized", router.ErrUnauthorized},
		{http.StatusForbidden, "forbidden", router.ErrForbidden},
		{http.StatusNotFound, "not_found", router.ErrNotFound},
		{http.StatusLocked, "locked", router.ErrSuspended},
		{http.StatusServiceUnavailable, "unavailable", router.ErrUnavailable},
		{http.StatusConflict, "conflict", nil},
		{http.StatusInternalServerError, "internal", nil},
	}
	sentinels := []error{router.ErrUnauthorized, router.ErrForbidden, router.ErrNotFound, router.ErrSuspended, router.ErrUnavailable}
	for _, tc := range tests {
		t.Run(tc.code, func(t *testing.T) {
			detail := "detail of " + tc.code
			s.answerProblem(tc.status, tc.code, detail)
			_, err := s.client().Resolve(context.Background(), router.Target{Org: "acme", Env: "dev"}, drivers.ScopeAdmin)
			var e *router.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not a *router.Error", err)
			}
			if e.Status != tc.status || e.Code != tc.code || e.Detail != detail || e.Title != http.StatusText(tc.status) {
				t.Errorf("error %+v, want status %d code %s detail %q", e, tc.status, tc.code, detail)
			}
			for _, sn := range sentinels {
				if errors.Is(err, sn) != (sn == tc.sentinel) {
					t.Errorf("errors.Is(%v, %v) = %v", err, sn, !(sn == tc.sentinel))
				}
			}
			if !strings.Contains(err.Error(), detail) || strings.Contains(printed(err), s.token) {
				t.Errorf("error text %q: want the detail and never the token", err)
			}
		})
	}

	t.Run("not a problem", func(t *testing.T) {
		s.set(answer{status: http.StatusBadGateway, contentType: "text/html", body: []byte("<h1>proxy " + s.token + "</h1>")})
		_, err := s.client().Resolve(context.Background(), router.Target{Org: "acme", Env: "dev"}, drivers.ScopeAdmin)
		var e *router.Error
		if !errors.As(err, &e) || e.Status != http.StatusBadGateway || e.Code != "" || !errors.Is(err, router.ErrUnavailable) {
			t.Fatalf("error %v, want a 502 *router.Error matching ErrUnavailable", err)
		}
		if strings.Contains(printed(err), s.token) || strings.Contains(err.Error(), "proxy") {
			t.Errorf("error %q quotes the body", err)
		}
	})
}

// TestResolveFailures: an unreachable control plane is ErrUnavailable; an
// answer that is not a usable connection, a bad target, scope or base URL
// are errors. None of them shows the token, the secret or the DSN.
func TestResolveFailures(t *testing.T) {
	s := newRouterServer(t)
	secret := "pw-" + strings.Repeat("s", 20)
	acme := router.Target{Org: "acme", Env: "dev"}
	refresh := time.Date(2026, 11, 22, 12, 1, 0, 0, time.UTC)
	full := wireConnection{
		EnvironmentID: "env_01", Driver: "postgres", Scope: "readwrite", DSN: "postgres://u:" + secret + "@h/d",
		Secret: secret, CredentialID: "cred_01", RefreshAfter: refresh,
	}
	with := func(f func(*wireConnection)) wireConnection {
		c := full
		f(&c)
		return c
	}
	tests := []struct {
		name   string
		setup  func()
		client func() *router.Client
		target router.Target
		scope  drivers.Scope
		want   string
		is     error
	}{
		{name: "hang up", setup: func() { s.set(answer{hangup: true}) }, target: acme, scope: drivers.ScopeReadWrite, want: "cannot reach", is: router.ErrUnavailable},
		{name: "body is not JSON", setup: func() {
			s.set(answer{status: http.StatusOK, contentType: "application/json", body: []byte(`{"dsn":"` + secret + `",`)})
		}, target: acme, scope: drivers.ScopeReadWrite, want: "not a connection"},
		{name: "fields missing", setup: func() {
			s.answerWith(t, with(func(c *wireConnection) { c.DSN, c.CredentialID, c.RefreshAfter = "", "", time.Time{} }))
		}, target: acme, scope: drivers.ScopeReadWrite, want: "lacks dsn, credential_id, refresh_after"},
		{name: "another scope", setup: func() {
			s.answerWith(t, with(func(c *wireConnection) { c.Scope = "admin" }))
		}, target: acme, scope: drivers.ScopeReadWrite, want: "for scope readwrite"},
		{name: "another environment", setup: func() { s.answerWith(t, full) }, target: router.Target{EnvironmentID: "env_02"}, scope: drivers.ScopeReadWrite, want: "answered environment env_01"},
		{name: "no scope", setup: func() { s.answerWith(t, full) }, target: acme, scope: "root", want: "scope \"root\""},
		{name: "target with org and id", setup: func() { s.answerWith(t, full) }, target: router.Target{Org: "acme", EnvironmentID: "env_01"}, scope: drivers.ScopeReadWrite, want: "a target is"},
		{name: "target without env", setup: func() { s.answerWith(t, full) }, target: router.Target{Org: "acme"}, scope: drivers.ScopeReadWrite, want: "a target is"},
		{name: "dot-dot segment", setup: func() { s.answerWith(t, full) }, target: router.Target{Org: "..", Env: "dev"}, scope: drivers.ScopeReadWrite, want: "is not an organization"},
		{name: "base URL with credentials that does not parse", setup: func() { s.answerWith(t, full) }, client: func() *router.Client {
			return &router.Client{BaseURL: "http://ops:" + secret + "@%zz", Token: drivers.Secret(s.token)}
		}, target: acme, scope: drivers.ScopeReadWrite, want: "base URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			c := s.client()
			if tc.client != nil {
				c = tc.client()
			}
			before := len(s.seen())
			_, err := c.Resolve(context.Background(), tc.target, tc.scope)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if out := printed(err); strings.Contains(out, secret) || strings.Contains(out, s.token) {
				t.Errorf("error %q shows the secret or the token", err)
			}
			if strings.HasPrefix(tc.want, "a target") || tc.scope == "root" {
				if n := len(s.seen()) - before; n != 0 {
					t.Errorf("%d requests sent for a request the client can refuse itself", n)
				}
			}
		})
	}
}

// TestWatchAsksTheRouter: a watch is the resolve's request with after and
// wait (whole seconds, rounded up, 1 s to 60 s), answered like a resolve.
func TestWatchAsksTheRouter(t *testing.T) {
	s := newRouterServer(t)
	refresh := time.Date(2026, 11, 22, 12, 1, 0, 0, time.UTC)
	s.answerWith(t, sqliteConnection("/srv/env.db", "cred_2", refresh))
	ctx := context.Background()
	for _, tc := range []struct {
		wait time.Duration
		want string
	}{
		{30 * time.Second, "30s"},
		{1500 * time.Millisecond, "2s"},
		{0, "1s"},
		{2 * time.Minute, "60s"},
	} {
		before := len(s.seen())
		got, err := s.client().Watch(ctx, router.Target{Org: "acme", Env: "dev"}, drivers.ScopeReadWrite, "cred_1", tc.wait)
		if err != nil {
			t.Fatalf("watch %s: %v", tc.wait, err)
		}
		reqs := s.seen()[before:]
		if len(reqs) != 1 {
			t.Fatalf("watch %s: %d requests, want 1", tc.wait, len(reqs))
		}
		r := reqs[0]
		if want := "scope=readwrite&after=cred_1&wait=" + tc.want; r.method != http.MethodGet || r.path != "/v1/organizations/acme/environments/dev/connection" || r.query != want {
			t.Errorf("watch %s: %s %s?%s, want GET …/connection?%s", tc.wait, r.method, r.path, r.query, want)
		}
		if r.auth != "Bearer "+s.token {
			t.Error("the watch does not carry the token as a Bearer credential")
		}
		if got.CredentialID != "cred_2" || !got.RefreshAfter.Equal(refresh) || got.DSN.Reveal() != sqliteDSN("/srv/env.db") {
			t.Errorf("watch %s decoded %+v", tc.wait, got)
		}
	}

	s.answerProblem(http.StatusUnauthorized, "unauthorized", "the key was revoked")
	_, err := s.client().Watch(ctx, router.Target{EnvironmentID: "env_01"}, drivers.ScopeReadWrite, "cred_1", time.Second)
	var e *router.Error
	if !errors.As(err, &e) || e.Status != http.StatusUnauthorized || !errors.Is(err, router.ErrUnauthorized) {
		t.Errorf("watch refused: %v, want a 401 *router.Error", err)
	}
	if strings.Contains(printed(err), s.token) {
		t.Error("the refusal shows the token")
	}
	before := len(s.seen())
	if _, err := s.client().Watch(ctx, router.Target{Org: "acme"}, drivers.ScopeReadWrite, "cred_1", time.Second); err == nil {
		t.Error("a watch of a target without an environment was sent")
	}
	if n := len(s.seen()) - before; n != 0 {
		t.Errorf("%d requests for a watch the client can refuse itself", n)
	}
}

// TestWatchOutlastsTheClientTimeout: a watch the router holds for longer
// than the HTTP client's timeout still gets its answer, since the client's
// timeout is raised above the wait for a watch (on a copy: the caller's
// client keeps its timeout).
func TestWatchOutlastsTheClientTimeout(t *testing.T) {
	s := newRouterServer(t)
	s.holdWatches()
	s.answerWith(t, sqliteConnection("/srv/env.db", "cred_1", time.Date(2026, 11, 22, 12, 1, 0, 0, time.UTC)))
	const timeout = 100 * time.Millisecond
	c := &router.Client{BaseURL: s.srv.URL, Token: drivers.Secret(s.token), HTTPClient: &http.Client{Timeout: timeout}}
	go func() {
		s.nextWatch(t)
		time.Sleep(4 * timeout)
		s.releaseWatches()
	}()
	got, err := c.Watch(context.Background(), router.Target{Org: "acme", Env: "dev"}, drivers.ScopeReadWrite, "cred_1", time.Second)
	if err != nil || got.CredentialID != "cred_1" {
		t.Fatalf("watch held past the client's timeout: %+v, %v", got, err)
	}
	if c.HTTPClient.Timeout != timeout {
		t.Errorf("the caller's client now has timeout %s", c.HTTPClient.Timeout)
	}
}
