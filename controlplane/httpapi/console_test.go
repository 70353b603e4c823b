package httpapi_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	cp "github.com/envplane/envplane/controlplane"
)

// browser is a cookie-keeping HTTP client of the console that does not
// follow redirects, so tests see each answer.
type browser struct {
	h      *harness
	client *http.Client
}

// page is one console answer.
type page struct {
	status int
	header http.Header
	body   string
}

func newBrowser(tb testing.TB, h *harness) *browser {
	tb.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return &browser{h: h, client: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) get(tb testing.TB, path string) page {
	tb.Helper()
	resp, err := b.client.Get(b.h.srv.URL + path)
	if err != nil {
		tb.Fatal(err)
	}
	return readPage(tb, resp)
}

func (b *browser) post(tb testing.TB, path string, form url.Values) page {
	tb.Helper()
	resp, err := b.client.PostForm(b.h.srv.URL+path, form)
	if err != nil {
		tb.Fatal(err)
	}
	return readPage(tb, resp)
}

func readPage(tb testing.TB, resp *http.Response) page {
	tb.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return page{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

// csrfOf returns the CSRF token of a page's forms.
func csrfOf(tb testing.TB, p page) string {
	tb.Helper()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(p.body)
	if m == nil {
		tb.Fatalf("no CSRF token on the page (status %d)", p.status)
	}
	return m[1]
}

// signIn signs the browser in with a password (no second factor).
func (b *browser) signIn(tb testing.TB, email, password string) {
	tb.Helper()
	form := url.Values{"csrf": {csrfOf(tb, b.get(tb, "/signin"))}, "email": {email}, "password": {password}}
	if p := b.post(tb, "/signin", form); p.status != http.StatusSeeOther || p.header.Get("Location") != "/orgs" {
		tb.Fatalf("console sign-in as %s: status %d, location %q", email, p.status, p.header.Get("Location"))
	}
}

// TestConsoleHeaders: every console answer carries a strict CSP with no
// script source and forbids framing; the session cookie is HttpOnly and
// SameSite=Lax, and Secure when the request came over TLS.
func TestConsoleHeaders(t *testing.T) {
	h := newHarness(t)
	withPeople(t, h)
	b := newBrowser(t, h)
	for _, path := range []string{"/signin", "/invitations/epi_nothing", "/orgs", "/console.css"} {
		p := b.get(t, path)
		csp := p.header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "script-src") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if p.header.Get("X-Frame-Options") != "DENY" || p.header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: X-Frame-Options %q, Referrer-Policy %q", path, p.header.Get("X-Frame-Options"), p.header.Get("Referrer-Policy"))
		}
	}
	if p := b.get(t, "/orgs"); p.status != http.StatusSeeOther || p.header.Get("Location") != "/signin" {
		t.Errorf("/orgs signed out: %d %q", p.status, p.header.Get("Location"))
	}

	signInCookie := func(tlsState *tls.ConnectionState) *http.Cookie {
		t.Helper()
		get := httptest.NewRequest("GET", "/signin", nil)
		get.TLS = tlsState
		rec := httptest.NewRecorder()
		h.srv.Config.Handler.ServeHTTP(rec, get)
		var csrf *http.Cookie
		for _, c := range rec.Result().Cookies() {
			if c.Name == "envplane_csrf" {
				csrf = c
			}
		}
		if csrf == nil {
			t.Fatal("no CSRF cookie on the sign-in page")
		}
		form := url.Values{"csrf": {csrf.Value}, "email": {"ops@example.com"}, "password": {adminPassword}}
		post := httptest.NewRequest("POST", "/signin", strings.NewReader(form.Encode()))
		post.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		post.AddCookie(csrf)
		post.TLS = tlsState
		rec = httptest.NewRecorder()
		h.srv.Config.Handler.ServeHTTP(rec, post)
		for _, c := range rec.Result().Cookies() {
			if c.Name == "envplane_session" {
				return c
			}
		}
		t.Fatalf("sign-in set no session cookie: status %d", rec.Code)
		return nil
	}
	plain := signInCookie(nil)
	if !strings.HasPrefix(plain.Value, cp.SessionPrefix) || !plain.HttpOnly || plain.SameSite != http.SameSiteLaxMode || plain.Secure {
		t.Errorf("session cookie over plain HTTP: HttpOnly=%v SameSite=%v Secure=%v", plain.HttpOnly, plain.SameSite, plain.Secure)
	}
	if c := signInCookie(&tls.ConnectionState{}); !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || !c.Secure {
		t.Errorf("session cookie over TLS: HttpOnly=%v SameSite=%v Secure=%v", c.HttpOnly, c.SameSite, c.Secure)
	}
}

// TestConsoleCSRF: a console POST with a missing or forged CSRF token is
// 403 and changes nothing, signed in or not; a token from another session
// is forged too; the page's own token works.
func TestConsoleCSRF(t *testing.T) {
	h := newHarness(t)
	withPeople(t, h)
	h.org(t, "acme")
	b := newBrowser(t, h)
	if p := b.post(t, "/signin", url.Values{"email": {"ops@example.com"}, "password": {adminPassword}}); p.status != http.StatusForbidden {
		t.Fatalf("sign-in without a CSRF token: %d", p.status)
	}
	b.signIn(t, "ops@example.com", adminPassword)
	other := newBrowser(t, h)
	other.signIn(t, "ops@example.com", adminPassword)
	foreign := csrfOf(t, other.get(t, "/orgs/acme"))
	for name, token := range map[string]string{"missing": "", "forged": strings.Repeat("0", 64), "another session's": foreign} {
		form := url.Values{"slug": {"dev"}, "type": {"development"}}
		if token != "" {
			form.Set("csrf", token)
		}
		if p := b.post(t, "/orgs/acme/environments", form); p.status != http.StatusForbidden {
			t.Errorf("%s CSRF token: status %d", name, p.status)
		}
	}
	var list cp.List[*cp.EnvironmentView]
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments", nil).decode(t, &list)
	for _, e := range list.Items {
		if e.Slug == "dev" {
			t.Fatal("a POST refused for its CSRF token created the environment")
		}
	}
	form := url.Values{"csrf": {csrfOf(t, b.get(t, "/orgs/acme"))}, "slug": {"dev"}, "type": {"development"}}
	if p := b.post(t, "/orgs/acme/environments", form); p.status != http.StatusSeeOther || p.header.Get("Location") != "/orgs/acme/envs/dev" {
		t.Fatalf("create with the page's token: %d %q", p.status, p.header.Get("Location"))
	}
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments/dev", nil)
	// Signing out with a forged token keeps the session.
	if p := b.post(t, "/signout", url.Values{"csrf": {foreign}}); p.status != http.StatusForbidden {
		t.Errorf("sign-out with another session's token: %d", p.status)
	}
	if p := b.get(t, "/orgs"); p.status != http.StatusOK {
		t.Errorf("after a refused sign-out: %d", p.status)
	}
}

// TestConsoleEscapesHTML: HTML in an organization's name and an
// environment's name and description is shown as text on every page.
func TestConsoleEscapesHTML(t *testing.T) {
	h := newHarness(t)
	withPeople(t, h)
	const evil = `<img src=x onerror=alert(1)><script>alert(2)</script>`
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations", map[string]any{"slug": "acme", "name": "Acme " + evil})
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "dev", "type": "development", "name": "Dev " + evil, "description": evil})
	b := newBrowser(t, h)
	b.signIn(t, "ops@example.com", adminPassword)
	for _, path := range []string{"/orgs", "/orgs/acme", "/orgs/acme/envs/dev", "/orgs/acme/audit"} {
		p := b.get(t, path)
		if p.status != http.StatusOK {
			t.Fatalf("%s: %d", path, p.status)
		}
		if strings.Contains(p.body, "<script>alert") || strings.Contains(p.body, "<img src=x") {
			t.Errorf("%s shows the HTML unescaped", path)
		}
	}
	if p := b.get(t, "/orgs/acme/envs/dev"); !strings.Contains(p.body, "&lt;script&gt;alert(2)&lt;/script&gt;") {
		t.Errorf("the environment page does not show the description as text")
	}
}

// TestConsoleCrossOrganization: a member of another organization gets 404
// for this one's pages and actions, exactly as from the API, and revealing
// a connection is audited for the one who may.
func TestConsoleCrossOrganization(t *testing.T) {
	h := newHarness(t)
	withPeople(t, h)
	h.org(t, "acme")
	h.org(t, "other")
	h.env(t, h.admin, "acme", "dev", "development")
	h.person(t, "other", "mo@example.com", "mo-password-12345", cp.OrgAdmin)
	b := newBrowser(t, h)
	b.signIn(t, "mo@example.com", "mo-password-12345")
	token := csrfOf(t, b.get(t, "/orgs/other"))
	for _, path := range []string{"/orgs/acme", "/orgs/acme/envs/dev", "/orgs/acme/operations", "/orgs/acme/audit", "/orgs/acme/members"} {
		if p := b.get(t, path); p.status != http.StatusNotFound || strings.Contains(p.body, "dev</a>") {
			t.Errorf("GET %s as another organization's admin: %d", path, p.status)
		}
	}
	for _, path := range []string{"/orgs/acme/envs/dev/reveal", "/orgs/acme/envs/dev/rotate"} {
		if p := b.post(t, path, url.Values{"csrf": {token}, "scope": {"readwrite"}}); p.status != http.StatusNotFound {
			t.Errorf("POST %s as another organization's admin: %d", path, p.status)
		}
	}
	// Every user sees target names (to choose where an environment goes); health is the platform admin's.
	if p := b.get(t, "/targets"); p.status != http.StatusOK || strings.Contains(p.body, `class="health"`) || strings.Contains(p.body, `href="/targets"`) {
		t.Errorf("targets for a non-admin: %d, shows health or the admin's link", p.status)
	}

	admin := newBrowser(t, h)
	admin.signIn(t, "ops@example.com", adminPassword)
	if p := admin.get(t, "/targets"); p.status != http.StatusOK || !strings.Contains(p.body, `class="health"`) {
		t.Errorf("targets for the platform admin: %d, health shown %v", p.status, strings.Contains(p.body, `class="health"`))
	}
	envPage := admin.get(t, "/orgs/acme/envs/dev")
	if strings.Contains(envPage.body, `id="secret"`) {
		t.Fatal("the environment page shows a secret before it was asked for")
	}
	p := admin.post(t, "/orgs/acme/envs/dev/reveal", url.Values{"csrf": {csrfOf(t, envPage)}, "scope": {"readwrite"}})
	if p.status != http.StatusOK || !strings.Contains(p.body, `id="secret"`) {
		t.Fatalf("reveal: %d", p.status)
	}
	var events cp.List[*cp.AuditEvent]
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/audit-events", nil).decode(t, &events)
	found := false
	for _, e := range events.Items {
		found = found || (e.Action == "connection.revealed" && e.Details["scope"] == "readwrite")
	}
	if !found {
		t.Error("revealing a connection left no connection.revealed audit event")
	}
}

// TestConsoleTwoFactorRequired: in an organization that requires a second
// factor, a member without one gets the API's 403 on its pages, with the way
// to the enrolment page.
func TestConsoleTwoFactorRequired(t *testing.T) {
	h := newHarness(t)
	withPeople(t, h)
	h.org(t, "acme")
	h.person(t, "acme", "lee@example.com", "lee-password-12345", cp.OrgMember)
	h.must(t, http.StatusOK, h.admin, "PATCH", "/v1/organizations/acme", map[string]any{"require_2fa": true})
	b := newBrowser(t, h)
	b.signIn(t, "lee@example.com", "lee-password-12345")
	p := b.get(t, "/orgs/acme")
	if p.status != http.StatusForbidden || !strings.Contains(p.body, `href="/account"`) {
		t.Fatalf("a member without a second factor: %d, enrol link %v", p.status, strings.Contains(p.body, `href="/account"`))
	}
}
