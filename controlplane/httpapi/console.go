package httpapi

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/drivers"
)

// consoleFiles holds the console's templates and stylesheet.
//
//go:embed console
var consoleFiles embed.FS

// Console cookies: the session token, and the pre-session CSRF token of
// the sign-in and invitation forms.
const (
	sessionCookie = "envplane_session"
	csrfCookie    = "envplane_csrf"
	csrfField     = "csrf"
)

// consoleCSP is the console's Content-Security-Policy: only its own
// stylesheet, no script at all, images from itself or inline data (the
// TOTP QR code), forms posting only to itself, and no framing.
const consoleCSP = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// console serves the web console: server-rendered pages over the same
// Service functions, and so the same authorization, as the API.
type console struct {
	svc   *cp.Service
	s     *Server
	pages map[string]*template.Template
}

// consolePageData is what every console template gets.
type consolePageData struct {
	Title   string
	CSRF    string
	Me      *cp.Principal
	Org     string
	Refresh int
	Data    any
}

// mountConsole adds the console's routes, outside /v1.
func (s *Server) mountConsole() error {
	pages, err := parsePages()
	if err != nil {
		return err
	}
	c := &console{svc: s.svc, s: s, pages: pages}
	// Each route gets its middleware itself: an echo group with middleware
	// would also catch every other path, the API's included.
	open := func(method, path string, h echo.HandlerFunc) {
		s.echo.Add(method, path, h, c.headers, c.csrf)
	}
	signed := func(method, path string, h echo.HandlerFunc) {
		s.echo.Add(method, path, h, c.headers, c.csrf, c.signedIn)
	}
	open(http.MethodGet, "/", c.home)
	open(http.MethodGet, "/console.css", c.stylesheet)
	open(http.MethodGet, "/signin", c.signInPage)
	open(http.MethodPost, "/signin", c.signIn)
	open(http.MethodGet, "/invitations/:token", c.invitationPage)
	open(http.MethodPost, "/invitations/:token", c.acceptInvitation)
	signed(http.MethodPost, "/signout", c.signOut)
	signed(http.MethodGet, "/account", c.account)
	signed(http.MethodPost, "/account/totp", c.enrolTOTP)
	signed(http.MethodPost, "/account/totp/confirm", c.confirmTOTP)
	signed(http.MethodGet, "/orgs", c.organizations)
	signed(http.MethodGet, "/orgs/:org", c.environments)
	signed(http.MethodPost, "/orgs/:org/environments", c.createEnvironment)
	signed(http.MethodGet, "/orgs/:org/envs/:env", c.environment)
	signed(http.MethodPost, "/orgs/:org/envs/:env/reveal", c.reveal)
	signed(http.MethodPost, "/orgs/:org/envs/:env/rotate", c.rotate)
	signed(http.MethodGet, "/orgs/:org/operations", c.operations)
	signed(http.MethodGet, "/orgs/:org/audit", c.auditLog)
	signed(http.MethodGet, "/orgs/:org/members", c.members)
	signed(http.MethodPost, "/orgs/:org/invitations", c.invite)
	signed(http.MethodGet, "/targets", c.targets)
	return nil
}

// parsePages parses each page template with the layout.
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(consoleFiles, "console/*.html")
	if err != nil {
		return nil, err
	}
	funcs := template.FuncMap{"when": when, "whenp": whenp, "deref": func(n *int) int { return *n }}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "console/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(consoleFiles, "console/layout.html", n)
		if err != nil {
			return nil, err
		}
		pages[base] = t
	}
	return pages, nil
}

// when formats a time for a page.
func when(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// whenp formats an optional time, or a dash.
func whenp(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return when(*t)
}

// headers sets the console's security headers on every answer.
func (cn *console) headers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", consoleCSP)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		// Invitation links carry their token in the path: never send it on.
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		return next(c)
	}
}

// secure reports whether the request came over TLS, so cookies are Secure.
func secure(c echo.Context) bool { return c.Request().TLS != nil }

// setCookie sets an HttpOnly, SameSite=Lax cookie, Secure over TLS; an
// empty value deletes it.
func setCookie(c echo.Context, name, value string) {
	ck := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: secure(c)}
	if value == "" {
		ck.MaxAge = -1
	}
	c.SetCookie(ck)
}

// cookie returns a cookie's value, or "".
func cookie(c echo.Context, name string) string {
	ck, err := c.Cookie(name)
	if err != nil {
		return ""
	}
	return ck.Value
}

// csrfToken is the token the request's forms must carry: bound to the
// session when there is one (a hash of its token, which a forger cannot
// read), else the pre-session cookie's random value (double submit).
func csrfToken(c echo.Context) string {
	if tok := cookie(c, sessionCookie); tok != "" {
		sum := sha256.Sum256([]byte("envplane console csrf\x00" + tok))
		return hex.EncodeToString(sum[:])
	}
	return cookie(c, csrfCookie)
}

// csrf gives every visitor a pre-session token and refuses, 403, any POST
// whose form does not carry the request's token.
func (cn *console) csrf(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if cookie(c, csrfCookie) == "" {
			b := make([]byte, 32)
			if _, err := rand.Read(b); err != nil {
				return err
			}
			v := hex.EncodeToString(b)
			setCookie(c, csrfCookie, v)
			c.Request().AddCookie(&http.Cookie{Name: csrfCookie, Value: v})
		}
		if c.Request().Method == http.MethodPost {
			want, got := csrfToken(c), c.FormValue(csrfField)
			if want == "" || subtle.ConstantTimeCompare([]byte(want), []byte(got)) != 1 {
				return cn.fail(c, cp.Errorf(cp.EFORBIDDEN, "forbidden: the form's CSRF token is missing or wrong; reload the page and try again"))
			}
		}
		return next(c)
	}
}

// signedIn resolves the session cookie; without a live session it sends
// the browser to the sign-in page.
func (cn *console) signedIn(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		tok := cookie(c, sessionCookie)
		if !strings.HasPrefix(tok, cp.SessionPrefix) {
			return c.Redirect(http.StatusSeeOther, "/signin")
		}
		p, err := cn.svc.Authenticate(requestContext(c), tok)
		if err != nil || p.SessionID == "" {
			if err != nil && !cp.IsCode(err, cp.EUNAUTHORIZED) {
				return cn.fail(c, err)
			}
			setCookie(c, sessionCookie, "")
			return c.Redirect(http.StatusSeeOther, "/signin")
		}
		c.Set("principal", p)
		return next(c)
	}
}

// render writes a page.
func (cn *console) render(c echo.Context, status int, name, title string, data any) error {
	pg := consolePageData{Title: title, CSRF: csrfToken(c), Me: principal(c), Org: c.Param("org"), Data: data}
	return cn.renderPage(c, status, name, pg)
}

// renderPage writes pg with the named template.
func (cn *console) renderPage(c echo.Context, status int, name string, pg consolePageData) error {
	t, ok := cn.pages[name]
	if !ok {
		return errors.New("console: no template " + name)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, pg); err != nil {
		return err
	}
	return c.HTMLBlob(status, buf.Bytes())
}

// fail renders err as an error page with the status the API would answer;
// an internal error's cause is logged, never shown.
func (cn *console) fail(c echo.Context, err error) error {
	status := codeStatus(cp.ErrorCode(err))
	msg := "internal error"
	if status != http.StatusInternalServerError {
		msg = ProblemFor(err).Detail
	} else {
		cn.s.logger.Error("console request failed", "path", c.Path(), "err", err)
	}
	// No organization links on an error page: the organization may be one the caller cannot see.
	data := consoleError{Message: msg, TwoFactor: cp.IsCode(err, cp.ETWOFACTOR)}
	return cn.renderPage(c, status, "error", consolePageData{Title: http.StatusText(status), CSRF: csrfToken(c), Me: principal(c), Data: data})
}

// consoleError is an error page: what went wrong, and whether enrolling a
// second factor (the account page) is the way on.
type consoleError struct {
	Message   string
	TwoFactor bool
}

// stylesheet serves the console's CSS.
func (cn *console) stylesheet(c echo.Context) error {
	b, err := consoleFiles.ReadFile("console/console.css")
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, "text/css; charset=utf-8", b)
}

// home sends the browser to its organizations, or to sign in.
func (cn *console) home(c echo.Context) error {
	if cookie(c, sessionCookie) != "" {
		return c.Redirect(http.StatusSeeOther, "/orgs")
	}
	return c.Redirect(http.StatusSeeOther, "/signin")
}

// signInForm is the sign-in page's state.
type signInForm struct {
	Email, Error string
	// NeedCode asks for the second factor; Password then rides along
	// hidden so the person types it once.
	NeedCode bool
	Password string
}

func (cn *console) signInPage(c echo.Context) error {
	return cn.render(c, http.StatusOK, "signin", "Sign in", signInForm{})
}

func (cn *console) signIn(c echo.Context) error {
	req := cp.SignInRequest{
		Email:        strings.TrimSpace(c.FormValue("email")),
		Password:     drivers.Secret(c.FormValue("password")),
		TOTP:         drivers.Secret(strings.TrimSpace(c.FormValue("totp"))),
		RecoveryCode: drivers.Secret(strings.TrimSpace(c.FormValue("recovery_code"))),
	}
	resp, err := cn.svc.SignIn(requestContext(c), req, clientInfo(c))
	switch {
	case cp.IsCode(err, cp.ETOTP):
		return cn.render(c, http.StatusOK, "signin", "Sign in", signInForm{Email: req.Email, NeedCode: true, Password: req.Password.Reveal()})
	case err != nil:
		status := codeStatus(cp.ErrorCode(err))
		if status == http.StatusInternalServerError {
			return cn.fail(c, err)
		}
		return cn.render(c, status, "signin", "Sign in", signInForm{Email: req.Email, Error: ProblemFor(err).Detail})
	}
	setCookie(c, sessionCookie, resp.Token)
	return c.Redirect(http.StatusSeeOther, "/orgs")
}

func (cn *console) signOut(c echo.Context) error {
	p := principal(c)
	if err := cn.svc.RevokeSession(requestContext(c), p, p.SessionID); err != nil && !cp.IsCode(err, cp.ENOTFOUND) {
		return cn.fail(c, err)
	}
	setCookie(c, sessionCookie, "")
	return c.Redirect(http.StatusSeeOther, "/signin")
}

// invitationForm is the accept-invitation page's state.
type invitationForm struct {
	Token, Error string
	Accepted     *cp.AcceptInvitationResponse
}

func (cn *console) invitationPage(c echo.Context) error {
	return cn.render(c, http.StatusOK, "invitation", "Accept an invitation", invitationForm{Token: c.Param("token")})
}

func (cn *console) acceptInvitation(c echo.Context) error {
	token := c.Param("token")
	var caller *cp.Principal
	if tok := cookie(c, sessionCookie); strings.HasPrefix(tok, cp.SessionPrefix) {
		if p, err := cn.svc.Authenticate(requestContext(c), tok); err == nil {
			caller = p
		}
	}
	req := cp.AcceptInvitationRequest{Password: drivers.Secret(c.FormValue("password")), Name: strings.TrimSpace(c.FormValue("name"))}
	resp, err := cn.svc.AcceptInvitation(requestContext(c), caller, token, req)
	if err != nil {
		status := codeStatus(cp.ErrorCode(err))
		if status == http.StatusInternalServerError {
			return cn.fail(c, err)
		}
		return cn.render(c, status, "invitation", "Accept an invitation", invitationForm{Token: token, Error: ProblemFor(err).Detail})
	}
	return cn.render(c, http.StatusOK, "invitation", "Invitation accepted", invitationForm{Accepted: resp})
}

// accountData is the account page's state.
type accountData struct {
	Enrolment *cp.TOTPEnrolment
	Confirmed bool
	Error     string
}

func (cn *console) account(c echo.Context) error {
	return cn.render(c, http.StatusOK, "account", "Your account", accountData{})
}

func (cn *console) enrolTOTP(c echo.Context) error {
	en, err := cn.svc.EnrolTOTP(requestContext(c), principal(c))
	if err != nil {
		return cn.fail(c, err)
	}
	return cn.render(c, http.StatusOK, "account", "Your account", accountData{Enrolment: en})
}

func (cn *console) confirmTOTP(c echo.Context) error {
	err := cn.svc.ConfirmTOTP(requestContext(c), principal(c), cp.ConfirmTOTPRequest{Code: drivers.Secret(strings.TrimSpace(c.FormValue("code")))})
	if err != nil {
		if codeStatus(cp.ErrorCode(err)) == http.StatusInternalServerError {
			return cn.fail(c, err)
		}
		return cn.render(c, codeStatus(cp.ErrorCode(err)), "account", "Your account", accountData{Error: ProblemFor(err).Detail})
	}
	return cn.render(c, http.StatusOK, "account", "Your account", accountData{Confirmed: true})
}

// consolePage is the page size of the console's lists.
const consolePage = 100

func (cn *console) organizations(c echo.Context) error {
	orgs, _, err := cn.svc.ListOrganizations(requestContext(c), principal(c), cp.Page{Limit: consolePage})
	if err != nil {
		return cn.fail(c, err)
	}
	return cn.render(c, http.StatusOK, "organizations", "Organizations", orgs)
}

// environmentsData is the environments page's state.
type environmentsData struct {
	Org          *cp.Organization
	Environments []*cp.EnvironmentView
	Types        []cp.EnvironmentType
	Error        string
}

func (cn *console) environments(c echo.Context) error {
	return cn.environmentsWith(c, http.StatusOK, "")
}

func (cn *console) environmentsWith(c echo.Context, status int, msg string) error {
	ctx, p := requestContext(c), principal(c)
	org, err := cn.svc.GetOrganization(ctx, p, c.Param("org"))
	if err != nil {
		return cn.fail(c, err)
	}
	envs, _, err := cn.svc.ListEnvironments(ctx, p, org.ID, cp.EnvironmentListFilter{}, cp.Page{Limit: consolePage})
	if err != nil {
		return cn.fail(c, err)
	}
	types := []cp.EnvironmentType{cp.TypeDevelopment, cp.TypeTest, cp.TypePreview, cp.TypeSandbox, cp.TypeStaging, cp.TypeProduction}
	return cn.render(c, status, "environments", org.Name, environmentsData{Org: org, Environments: envs, Types: types, Error: msg})
}

func (cn *console) createEnvironment(c echo.Context) error {
	req := cp.CreateEnvironmentRequest{
		Slug:        strings.TrimSpace(c.FormValue("slug")),
		Name:        strings.TrimSpace(c.FormValue("name")),
		Type:        cp.EnvironmentType(c.FormValue("type")),
		Description: c.FormValue("description"),
	}
	env, _, _, err := cn.svc.CreateEnvironment(requestContext(c), principal(c), c.Param("org"), req)
	if err != nil {
		status := codeStatus(cp.ErrorCode(err))
		if status == http.StatusInternalServerError || status == http.StatusNotFound {
			return cn.fail(c, err)
		}
		return cn.environmentsWith(c, status, ProblemFor(err).Detail)
	}
	return c.Redirect(http.StatusSeeOther, "/orgs/"+c.Param("org")+"/envs/"+env.Slug)
}

// environmentData is one environment's page.
type environmentData struct {
	Env         *cp.EnvironmentView
	Credentials []*cp.Credential
	Operations  []*cp.Operation
	Connection  *revealed
	Scopes      []drivers.Scope
	// Schema is the ledger and drift of an active environment; SchemaError
	// says why it could not be read (a target down, a role without it).
	Schema      *cp.SchemaStatus
	SchemaError string
	Members     []*cp.EnvironmentMember
}

// revealed is a connection shown on request, its secrets unwrapped for the page.
type revealed struct {
	*cp.Connection
	DSN, Secret string
}

func (cn *console) environment(c echo.Context) error {
	return cn.environmentWith(c, nil)
}

func (cn *console) environmentWith(c echo.Context, conn *revealed) error {
	ctx, p := requestContext(c), principal(c)
	env, err := cn.svc.GetEnvironment(ctx, p, c.Param("org"), c.Param("env"))
	if err != nil {
		return cn.fail(c, err)
	}
	d := environmentData{Env: env, Connection: conn, Scopes: drivers.Scopes()}
	// Credentials need more than reading the environment: show what the role allows.
	if d.Credentials, err = cn.svc.ListCredentials(ctx, p, c.Param("org"), env.ID); err != nil && !cp.IsCode(err, cp.EFORBIDDEN) {
		return cn.fail(c, err)
	}
	if d.Operations, _, err = cn.svc.ListOperations(ctx, p, c.Param("org"), cp.OperationListFilter{Environment: env.ID}, cp.Page{Limit: 20}); err != nil && !cp.IsCode(err, cp.EFORBIDDEN) {
		return cn.fail(c, err)
	}
	if env.Status == cp.StatusActive {
		if d.Schema, err = cn.svc.SchemaStatus(ctx, p, c.Param("org"), env.ID); err != nil {
			if codeStatus(cp.ErrorCode(err)) == http.StatusInternalServerError {
				return cn.fail(c, err)
			}
			d.SchemaError = ProblemFor(err).Detail
		}
	}
	if d.Members, err = cn.svc.ListEnvironmentMembers(ctx, p, c.Param("org"), env.ID); err != nil && !cp.IsCode(err, cp.EFORBIDDEN) {
		return cn.fail(c, err)
	}
	pg := consolePageData{Title: env.Name, CSRF: csrfToken(c), Me: p, Org: c.Param("org"), Data: d}
	if busy(d.Operations) || env.Status == cp.StatusProvisioning {
		pg.Refresh = 2
	}
	return cn.renderPage(c, http.StatusOK, "environment", pg)
}

// busy reports whether an operation is still running.
func busy(ops []*cp.Operation) bool {
	for _, op := range ops {
		if op.Status == cp.OpPending || op.Status == cp.OpRunning {
			return true
		}
	}
	return false
}

func (cn *console) reveal(c echo.Context) error {
	scope := drivers.Scope(c.FormValue("scope"))
	if !scope.Valid() {
		return cn.fail(c, cp.Invalid(cp.FieldError{Field: "scope", Message: "must be admin, readwrite or readonly"}))
	}
	conn, err := cn.svc.RevealConnection(requestContext(c), principal(c), c.Param("org"), c.Param("env"), scope)
	if err != nil {
		return cn.fail(c, err)
	}
	return cn.environmentWith(c, &revealed{Connection: conn, DSN: conn.DSN.Reveal(), Secret: conn.Secret.Reveal()})
}

func (cn *console) rotate(c echo.Context) error {
	req := cp.RotateCredentialsRequest{Scope: c.FormValue("scope"), Reason: strings.TrimSpace(c.FormValue("reason"))}
	if _, _, err := cn.svc.RotateCredentials(requestContext(c), principal(c), c.Param("org"), c.Param("env"), req); err != nil {
		return cn.fail(c, err)
	}
	return c.Redirect(http.StatusSeeOther, "/orgs/"+c.Param("org")+"/envs/"+c.Param("env"))
}

func (cn *console) operations(c echo.Context) error {
	ops, _, err := cn.svc.ListOperations(requestContext(c), principal(c), c.Param("org"), cp.OperationListFilter{}, cp.Page{Limit: consolePage})
	if err != nil {
		return cn.fail(c, err)
	}
	pg := consolePageData{Title: "Operations", CSRF: csrfToken(c), Me: principal(c), Org: c.Param("org"), Data: ops}
	if busy(ops) {
		pg.Refresh = 2
	}
	return cn.renderPage(c, http.StatusOK, "operations", pg)
}

// auditData is the audit page: its filters and the events that pass them.
type auditData struct {
	Action, Environment string
	Events              []*cp.AuditEvent
}

func (cn *console) auditLog(c echo.Context) error {
	d := auditData{Action: c.QueryParam("action"), Environment: c.QueryParam("environment")}
	events, _, err := cn.svc.ListAuditEvents(requestContext(c), principal(c), c.Param("org"), cp.Page{Limit: consolePage})
	if err != nil {
		return cn.fail(c, err)
	}
	for _, e := range events {
		if d.Action != "" && !strings.HasPrefix(e.Action, d.Action) {
			continue
		}
		if d.Environment != "" && e.EnvironmentID != d.Environment {
			continue
		}
		d.Events = append(d.Events, e)
	}
	return cn.render(c, http.StatusOK, "audit", "Audit log", d)
}

// membersData is the members page's state.
type membersData struct {
	Members     []*cp.OrgMembership
	Invitations []*cp.Invitation
	Invited     *cp.InvitationResponse
	Roles       []cp.OrgRole
	Error       string
}

func (cn *console) members(c echo.Context) error {
	return cn.membersWith(c, http.StatusOK, membersData{})
}

func (cn *console) membersWith(c echo.Context, status int, d membersData) error {
	ctx, p := requestContext(c), principal(c)
	var err error
	if d.Members, _, err = cn.svc.ListMembers(ctx, p, c.Param("org"), cp.Page{Limit: consolePage}); err != nil {
		return cn.fail(c, err)
	}
	if d.Invitations, _, err = cn.svc.ListInvitations(ctx, p, c.Param("org"), cp.Page{Limit: consolePage}); err != nil {
		return cn.fail(c, err)
	}
	d.Roles = []cp.OrgRole{cp.OrgMember, cp.OrgAdmin, cp.OrgOwner}
	return cn.render(c, status, "members", "Members", d)
}

func (cn *console) invite(c echo.Context) error {
	req := cp.CreateInvitationRequest{Email: strings.TrimSpace(c.FormValue("email")), Role: cp.OrgRole(c.FormValue("role"))}
	resp, err := cn.svc.CreateInvitation(requestContext(c), principal(c), c.Param("org"), req)
	if err != nil {
		status := codeStatus(cp.ErrorCode(err))
		if status == http.StatusInternalServerError || status == http.StatusNotFound {
			return cn.fail(c, err)
		}
		return cn.membersWith(c, status, membersData{Error: ProblemFor(err).Detail})
	}
	return cn.membersWith(c, http.StatusOK, membersData{Invited: resp})
}

func (cn *console) targets(c echo.Context) error {
	ts, err := cn.svc.ListTargets(requestContext(c), principal(c))
	if err != nil {
		return cn.fail(c, err)
	}
	return cn.render(c, http.StatusOK, "targets", "Targets", ts)
}
