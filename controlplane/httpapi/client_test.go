package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/httpapi"
	"github.com/envplane/envplane/drivers"
)

const testToken = "ep_test_0123456789abcdefSECRET"

// recorded is one request as the canned server saw it.
type recorded struct {
	Method string
	Path   string
	Query  string
	Header http.Header
	Body   string
}

// cannedServer answers every request with status and body, and records what
// it received. It stands in for the API so the client's requests can be
// asserted; it has no server behaviour of its own.
type cannedServer struct {
	*httptest.Server
	mu       sync.Mutex
	requests []recorded
	status   int
	body     any
	ctype    string
}

func newCannedServer(tb testing.TB) *cannedServer {
	tb.Helper()
	s := &cannedServer{status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.requests = append(s.requests, recorded{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: string(b)})
		status, body, ctype := s.status, s.body, s.ctype
		s.mu.Unlock()
		if ctype == "" {
			ctype = "application/json"
		}
		w.Header().Set("Content-Type", ctype)
		w.WriteHeader(status)
		switch v := body.(type) {
		case nil:
		case string:
			_, _ = io.WriteString(w, v)
		default:
			_ = json.NewEncoder(w).Encode(v)
		}
	}))
	tb.Cleanup(s.Close)
	return s
}

// answer sets what the server answers next, as JSON.
func (s *cannedServer) answer(status int, body any) { s.answerAs(status, "", body) }

// answerAs sets what the server answers next, with a content type.
func (s *cannedServer) answerAs(status int, ctype string, body any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body, s.ctype = status, body, ctype
}

func (s *cannedServer) last(tb testing.TB) recorded {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) == 0 {
		tb.Fatal("the server received no request")
	}
	return s.requests[len(s.requests)-1]
}

func (s *cannedServer) client() *httpapi.Client {
	c := httpapi.NewClient(s.URL, testToken)
	c.HTTPClient = s.Client()
	return c
}

// routePattern turns an echo path into a regexp matching concrete paths.
func routePattern(path string) *regexp.Regexp {
	return regexp.MustCompile("^" + regexp.MustCompile(`:[a-z]+`).ReplaceAllString(path, `[^/]+`) + "$")
}

// matchRoute returns the route a request hit, so the table below proves the
// client covers the route table.
func matchRoute(method, path string) (httpapi.Route, bool) {
	for _, r := range httpapi.Routes() {
		if r.Method == method && routePattern(r.Path).MatchString(path) {
			return r, true
		}
	}
	return httpapi.Route{}, false
}

func ptr[T any](v T) *T { return &v }

func TestClientRequests(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)
	env := &cp.EnvironmentView{Environment: &cp.Environment{ID: "env1", Slug: "dev", Status: cp.StatusActive, CreatedAt: now}, Database: &cp.DatabaseView{Driver: "sqlite", DatabaseName: "env_x"}}
	op := &cp.Operation{ID: "op1", Kind: cp.OpProvision, Status: cp.OpRunning, Step: "create_database"}

	type clientCase struct {
		name      string
		status    int
		answer    any
		call      func(c *httpapi.Client) (any, error)
		method    string
		path      string
		query     string
		body      string // JSON the client must send; "" for none
		idemKey   string
		prefer    string
		wantField string // a value the decoded answer must contain
	}
	tests := []clientCase{
		{name: "me", answer: cp.Me{KeyID: "k1", PlatformAdmin: true}, method: "GET", path: "/v1/me",
			call: func(c *httpapi.Client) (any, error) { return c.Me(ctx) }, wantField: "k1"},
		{name: "openapi", answer: map[string]string{"openapi": "3.0.3"}, method: "GET", path: "/v1/openapi.json",
			call: func(c *httpapi.Client) (any, error) { return c.OpenAPI(ctx) }, wantField: "3.0.3"},
		{name: "create org", status: 201, answer: cp.CreateOrganizationResponse{Organization: &cp.Organization{ID: "org1", Slug: "acme"}, DefaultEnvironment: env},
			method: "POST", path: "/v1/organizations", body: `{"slug":"acme","name":"Acme","max_environments":5}`, idemKey: "k-1",
			call: func(c *httpapi.Client) (any, error) {
				return c.CreateOrganization(ctx, cp.CreateOrganizationRequest{Slug: "acme", Name: "Acme", MaxEnvironments: ptr(5)}, httpapi.WithIdempotencyKey("k-1"))
			}, wantField: "org1"},
		{name: "list orgs", answer: cp.List[*cp.Organization]{Items: []*cp.Organization{{ID: "org1"}}, Next: "c2"}, method: "GET", path: "/v1/organizations", query: "cursor=c1&limit=10",
			call: func(c *httpapi.Client) (any, error) {
				return c.ListOrganizations(ctx, httpapi.ListOptions{Limit: 10, Cursor: "c1"})
			}, wantField: "c2"},
		{name: "get org", answer: cp.Organization{ID: "org1", Slug: "acme"}, method: "GET", path: "/v1/organizations/acme",
			call: func(c *httpapi.Client) (any, error) { return c.GetOrganization(ctx, "acme") }, wantField: "org1"},
		{name: "update org", answer: cp.Organization{ID: "org1", Name: "Acme 2"}, method: "PATCH", path: "/v1/organizations/acme", body: `{"name":"Acme 2"}`,
			call: func(c *httpapi.Client) (any, error) {
				return c.UpdateOrganization(ctx, "acme", cp.UpdateOrganizationRequest{Name: ptr("Acme 2")})
			}, wantField: "Acme 2"},
		{name: "delete org", status: 204, method: "DELETE", path: "/v1/organizations/acme",
			call: func(c *httpapi.Client) (any, error) { return nil, c.DeleteOrganization(ctx, "acme") }},
		{name: "list members", answer: cp.List[*cp.OrgMembership]{Items: []*cp.OrgMembership{{UserID: "u1", Email: "a@example.com"}}}, method: "GET", path: "/v1/organizations/acme/members",
			call: func(c *httpapi.Client) (any, error) { return c.ListMembers(ctx, "acme", httpapi.ListOptions{}) }, wantField: "a@example.com"},
		{name: "add member", status: 201, answer: cp.OrgMembership{UserID: "u1", Role: cp.OrgAdmin}, method: "POST", path: "/v1/organizations/acme/members", body: `{"email":"a@example.com","role":"admin"}`,
			call: func(c *httpapi.Client) (any, error) {
				return c.AddMember(ctx, "acme", cp.AddMemberRequest{Email: "a@example.com", Role: cp.OrgAdmin})
			}, wantField: "u1"},
		{name: "update member by email", answer: cp.OrgMembership{UserID: "u1", Role: cp.OrgMember}, method: "PATCH", path: "/v1/organizations/acme/members/a@example.com", body: `{"role":"member"}`,
			call: func(c *httpapi.Client) (any, error) {
				return c.UpdateMember(ctx, "acme", "a@example.com", cp.UpdateMemberRequest{Role: cp.OrgMember})
			}, wantField: "member"},
		{name: "remove member", status: 204, method: "DELETE", path: "/v1/organizations/acme/members/u1",
			call: func(c *httpapi.Client) (any, error) { return nil, c.RemoveMember(ctx, "acme", "u1") }},
		{name: "list keys", answer: cp.List[*cp.APIKey]{Items: []*cp.APIKey{{ID: "key1"}}}, method: "GET", path: "/v1/organizations/acme/api-keys", query: "limit=2",
			call: func(c *httpapi.Client) (any, error) { return c.ListAPIKeys(ctx, "acme", httpapi.ListOptions{Limit: 2}) }, wantField: "key1"},
		{name: "create key", status: 201, answer: cp.CreateAPIKeyResponse{ID: "key1", Token: "ep_new"}, method: "POST", path: "/v1/organizations/acme/api-keys", body: `{"name":"ci","environment":"dev","max_scope":"readonly"}`,
			call: func(c *httpapi.Client) (any, error) {
				return c.CreateAPIKey(ctx, "acme", cp.CreateAPIKeyRequest{Name: "ci", Environment: "dev", MaxScope: drivers.ScopeReadOnly})
			}, wantField: "ep_new"},
		{name: "get key", answer: cp.APIKey{ID: "key1", Prefix: "ep_ab"}, method: "GET", path: "/v1/organizations/acme/api-keys/key1",
			call: func(c *httpapi.Client) (any, error) { return c.GetAPIKey(ctx, "acme", "key1") }, wantField: "ep_ab"},
		{name: "revoke key", status: 204, method: "DELETE", path: "/v1/organizations/acme/api-keys/key1",
			call: func(c *httpapi.Client) (any, error) { return nil, c.RevokeAPIKey(ctx, "acme", "key1") }},
		{name: "audit", answer: cp.List[*cp.AuditEvent]{Items: []*cp.AuditEvent{{ID: "ev1", Action: "environment.create"}}}, method: "GET", path: "/v1/organizations/acme/audit-events",
			call: func(c *httpapi.Client) (any, error) { return c.ListAuditEvents(ctx, "acme", httpapi.ListOptions{}) }, wantField: "environment.create"},
		{name: "create env done", status: 201, answer: cp.EnvironmentOperationResponse{Environment: env, Operation: &cp.Operation{ID: "op_done", Status: cp.OpSucceeded}},
			method: "POST", path: "/v1/organizations/acme/environments", body: `{"slug":"dev","type":"development"}`, prefer: "wait=5",
			call: func(c *httpapi.Client) (any, error) {
				e, o, err := c.CreateEnvironment(ctx, "acme", cp.CreateEnvironmentRequest{Slug: "dev", Type: cp.TypeDevelopment}, httpapi.WithWait(4500*time.Millisecond))
				if err == nil && (o == nil || o.ID != "op_done" || !o.Status.Done()) {
					return nil, errors.New("201 lost the finished operation")
				}
				return e, err
			}, wantField: "env_x"},
		{name: "create env accepted", status: 202, answer: cp.EnvironmentOperationResponse{Environment: env, Operation: op}, method: "POST", path: "/v1/environments", body: `{"organization":"acme","slug":"dev","type":"test"}`,
			call: func(c *httpapi.Client) (any, error) {
				e, o, err := c.CreateEnvironmentInOrganization(ctx, cp.CreateEnvironmentRequest{Organization: "acme", Slug: "dev", Type: cp.TypeTest})
				if err == nil && (o == nil || e == nil) {
					return nil, errors.New("202 lost the environment or the operation")
				}
				return o, err
			}, wantField: "create_database"},
		{name: "list envs", answer: cp.List[*cp.EnvironmentView]{Items: []*cp.EnvironmentView{env}}, method: "GET", path: "/v1/organizations/acme/environments",
			call: func(c *httpapi.Client) (any, error) {
				return c.ListEnvironments(ctx, "acme", httpapi.EnvironmentsOptions{})
			}, wantField: "env_x"},
		{name: "list envs filtered", answer: cp.List[*cp.EnvironmentView]{Items: []*cp.EnvironmentView{env}}, method: "GET", path: "/v1/organizations/acme/environments",
			query: "cursor=c1&limit=3&status=suspended&target=edge&type=preview",
			call: func(c *httpapi.Client) (any, error) {
				return c.ListEnvironments(ctx, "acme", httpapi.EnvironmentsOptions{ListOptions: httpapi.ListOptions{Limit: 3, Cursor: "c1"},
					Type: cp.TypePreview, Status: cp.StatusSuspended, Target: "edge"})
			}, wantField: "env_x"},
		{name: "list operations filtered", answer: cp.List[*cp.Operation]{Items: []*cp.Operation{op}}, method: "GET", path: "/v1/organizations/acme/operations",
			query: "environment=dev&kind=provision&limit=2&status=running",
			call: func(c *httpapi.Client) (any, error) {
				return c.ListOperations(ctx, "acme", httpapi.OperationsOptions{ListOptions: httpapi.ListOptions{Limit: 2},
					Environment: "dev", Status: cp.OpRunning, Kind: cp.OpProvision})
			}, wantField: "create_database"},
		{name: "get env", answer: env, method: "GET", path: "/v1/organizations/acme/environments/dev",
			call: func(c *httpapi.Client) (any, error) { return c.GetEnvironment(ctx, "acme", "dev") }, wantField: "env1"},
		{name: "update env", answer: env, method: "PATCH", path: "/v1/organizations/acme/environments/dev", body: `{"is_protected":false}`,
			call: func(c *httpapi.Client) (any, error) {
				return c.UpdateEnvironment(ctx, "acme", "dev", cp.UpdateEnvironmentRequest{IsProtected: ptr(false)})
			}, wantField: "env1"},
		{name: "delete env", status: 202, answer: cp.EnvironmentOperationResponse{Environment: env, Operation: &cp.Operation{ID: "op2", Kind: cp.OpDeprovision}}, method: "DELETE", path: "/v1/organizations/acme/environments/dev",
			call: func(c *httpapi.Client) (any, error) {
				_, o, err := c.DeleteEnvironment(ctx, "acme", "dev")
				return o, err
			}, wantField: "op2"},
		{name: "suspend", answer: env, method: "POST", path: "/v1/organizations/acme/environments/dev/suspend",
			call: func(c *httpapi.Client) (any, error) { return c.SuspendEnvironment(ctx, "acme", "dev") }, wantField: "env1"},
		{name: "reset", status: 202, answer: cp.EnvironmentOperationResponse{Environment: env, Operation: &cp.Operation{ID: "op3", Kind: cp.OpReset}}, method: "POST", path: "/v1/organizations/acme/environments/dev/reset",
			body: `{"from_environment":"staging","mode":"full"}`,
			call: func(c *httpapi.Client) (any, error) {
				_, o, err := c.ResetEnvironment(ctx, "acme", "dev", cp.ResetEnvironmentRequest{FromEnvironment: "staging", Mode: cp.ResetFull})
				return o, err
			}, wantField: "op3"},
		{name: "resume", answer: env, method: "POST", path: "/v1/organizations/acme/environments/dev/resume",
			call: func(c *httpapi.Client) (any, error) { return c.ResumeEnvironment(ctx, "acme", "dev") }, wantField: "env1"},
		{name: "connection", answer: cp.Connection{EnvironmentID: "env1", Scope: drivers.ScopeReadWrite, DSN: "file:/x.db", CredentialID: "cred1"}, method: "GET", path: "/v1/organizations/acme/environments/dev/connection", query: "scope=readwrite",
			call: func(c *httpapi.Client) (any, error) {
				return c.GetConnection(ctx, "acme", "dev", drivers.ScopeReadWrite)
			}, wantField: "cred1"},
		{name: "connection by id", answer: cp.Connection{EnvironmentID: "env1", CredentialID: "cred2"}, method: "GET", path: "/v1/environments/env1/connection", query: "scope=readonly",
			call: func(c *httpapi.Client) (any, error) { return c.GetConnectionByID(ctx, "env1", drivers.ScopeReadOnly) }, wantField: "cred2"},
		{name: "targets", answer: cp.List[cp.TargetView]{Items: []cp.TargetView{{Name: "pg-eu", Region: "eu"}}}, method: "GET", path: "/v1/targets",
			call: func(c *httpapi.Client) (any, error) { return c.ListTargets(ctx) }, wantField: "pg-eu"},
		{name: "keyring", answer: cp.KeyCoverage{CurrentKeyID: "local:2"}, method: "GET", path: "/v1/keyring",
			call: func(c *httpapi.Client) (any, error) { return c.KeyringStatus(ctx) }, wantField: "local:2"},
		{name: "keyring rotate", answer: cp.KeyCoverage{CurrentKeyID: "local:3"}, method: "POST", path: "/v1/keyring/rotate",
			call: func(c *httpapi.Client) (any, error) { return c.RotateKeyring(ctx) }, wantField: "local:3"},
		{name: "keyring rewrap", answer: cp.KeyCoverage{CurrentKeyID: "local:4"}, method: "POST", path: "/v1/keyring/rewrap",
			call: func(c *httpapi.Client) (any, error) { return c.RewrapKeyring(ctx) }, wantField: "local:4"},
		{name: "keyring retire", answer: cp.KeyCoverage{CurrentKeyID: "local:5"}, method: "POST", path: "/v1/keyring/retire", body: `{"below":3}`,
			call: func(c *httpapi.Client) (any, error) { return c.RetireKeyring(ctx, 3) }, wantField: "local:5"},
		{name: "receipts", answer: cp.List[*cp.Receipt]{Items: []*cp.Receipt{{ID: "rcpt1", CredentialID: "cred9"}}}, method: "GET", path: "/v1/organizations/acme/environments/dev/receipts",
			query: "credential=cred9&limit=5&since=2026-01-02T03%3A04%3A05Z",
			call: func(c *httpapi.Client) (any, error) {
				return c.ListReceipts(ctx, "acme", "dev", httpapi.ReceiptsOptions{ListOptions: httpapi.ListOptions{Limit: 5}, Since: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Credential: "cred9"})
			}, wantField: "cred9"},
		{name: "credentials", answer: cp.List[*cp.Credential]{Items: []*cp.Credential{{ID: "cred1", Username: "env_x_rw_a"}}}, method: "GET", path: "/v1/organizations/acme/environments/dev/credentials",
			call: func(c *httpapi.Client) (any, error) { return c.ListCredentials(ctx, "acme", "dev") }, wantField: "env_x_rw_a"},
		{name: "rotate", answer: cp.CredentialsResponse{Credentials: []*cp.Credential{{ID: "cred3"}}}, method: "POST", path: "/v1/organizations/acme/environments/dev/credentials/rotate", body: `{"scope":"readwrite","grace_seconds":60}`,
			call: func(c *httpapi.Client) (any, error) {
				return c.RotateCredentials(ctx, "acme", "dev", cp.RotateCredentialsRequest{Scope: "readwrite", GraceSeconds: ptr(60)})
			}, wantField: "cred3"},
		{name: "revoke", answer: cp.CredentialsResponse{Credentials: []*cp.Credential{{ID: "cred4"}}}, method: "POST", path: "/v1/organizations/acme/environments/dev/credentials/revoke", body: `{"credential_id":"cred1","reason":"leaked"}`,
			call: func(c *httpapi.Client) (any, error) {
				return c.RevokeCredentials(ctx, "acme", "dev", cp.RevokeCredentialsRequest{CredentialID: "cred1", Reason: "leaked"})
			}, wantField: "cred4"},
		{name: "env members", answer: cp.List[*cp.EnvironmentMember]{Items: []*cp.EnvironmentMember{{UserID: "u2", Role: cp.EnvMaker}}}, method: "GET", path: "/v1/organizations/acme/environments/dev/members",
			call: func(c *httpapi.Client) (any, error) { return c.ListEnvironmentMembers(ctx, "acme", "dev") }, wantField: "env_maker"},
		{name: "put env member", answer: cp.EnvironmentMember{UserID: "u2", Role: cp.EnvViewer}, method: "PUT", path: "/v1/organizations/acme/environments/dev/members/u2", body: `{"role":"env_viewer"}`,
			call: func(c *httpapi.Client) (any, error) {
				return c.PutEnvironmentMember(ctx, "acme", "dev", "u2", cp.PutEnvironmentMemberRequest{Role: cp.EnvViewer})
			}, wantField: "env_viewer"},
		{name: "remove env member", status: 204, method: "DELETE", path: "/v1/organizations/acme/environments/dev/members/u2",
			call: func(c *httpapi.Client) (any, error) { return nil, c.RemoveEnvironmentMember(ctx, "acme", "dev", "u2") }},
		{name: "schema", answer: cp.SchemaStatus{SchemaVersion: 3, Pending: []cp.SchemaMigration{{Name: "0004_add"}}}, method: "GET", path: "/v1/organizations/acme/environments/dev/schema",
			call: func(c *httpapi.Client) (any, error) { return c.GetSchema(ctx, "acme", "dev") }, wantField: "0004_add"},
		{name: "migrate", answer: cp.SchemaStatus{SchemaVersion: 4, Applied: []cp.SchemaMigration{{Name: "0004_add"}}}, method: "POST", path: "/v1/organizations/acme/environments/dev/schema/migrate", idemKey: "m-1",
			call: func(c *httpapi.Client) (any, error) {
				return c.MigrateSchema(ctx, "acme", "dev", httpapi.WithIdempotencyKey("m-1"))
			}, wantField: "0004_add"},
		{name: "env usage", answer: cp.EnvironmentUsage{EnvironmentID: "env1", OverLimit: true, Usage: &cp.Usage{SizeBytes: 4096}}, method: "GET", path: "/v1/organizations/acme/environments/dev/usage",
			call: func(c *httpapi.Client) (any, error) { return c.EnvironmentUsage(ctx, "acme", "dev") }, wantField: "4096"},
		{name: "org usage", answer: cp.OrganizationUsage{Organization: "acme", Types: []*cp.UsageTotal{{Type: cp.TypePreview, SizeBytes: 8192}}}, method: "GET", path: "/v1/organizations/acme/usage",
			call: func(c *httpapi.Client) (any, error) { return c.OrganizationUsage(ctx, "acme") }, wantField: "preview"},
		{name: "operation", answer: op, method: "GET", path: "/v1/operations/op1",
			call: func(c *httpapi.Client) (any, error) { return c.GetOperation(ctx, "op1") }, wantField: "create_database"},
		{name: "sign in", status: 201, answer: cp.SignInResponse{Token: "eps_x", Session: &cp.Session{ID: "ses_1"}}, method: "POST", path: "/v1/sessions",
			body: `{"email":"a@example.com","password":"pw-1234567890","totp":"123456"}`,
			call: func(c *httpapi.Client) (any, error) {
				return c.SignIn(ctx, "a@example.com", "pw-1234567890", "123456", "")
			}, wantField: "ses_1"},
		{name: "sessions", answer: cp.List[*cp.Session]{Items: []*cp.Session{{ID: "ses_2"}}}, method: "GET", path: "/v1/sessions",
			call: func(c *httpapi.Client) (any, error) { return c.ListSessions(ctx) }, wantField: "ses_2"},
		{name: "session context", answer: cp.Session{ID: "ses_3", OrgID: "org_1"}, method: "PUT", path: "/v1/sessions/current", body: `{"organization":"acme","environment":"dev"}`,
			call: func(c *httpapi.Client) (any, error) {
				return c.SetSessionContext(ctx, cp.SessionContextRequest{Organization: "acme", Environment: "dev"})
			}, wantField: "org_1"},
		{name: "revoke session", status: 204, method: "DELETE", path: "/v1/sessions/ses_4",
			call: func(c *httpapi.Client) (any, error) { return nil, c.RevokeSession(ctx, "ses_4") }},
		{name: "enrol totp", status: 201, answer: cp.TOTPEnrolment{URL: "otpauth://totp/x"}, method: "POST", path: "/v1/users/me/totp",
			call: func(c *httpapi.Client) (any, error) { return c.EnrolTOTP(ctx) }, wantField: "otpauth"},
		{name: "confirm totp", status: 204, method: "POST", path: "/v1/users/me/totp/confirm", body: `{"code":"654321"}`,
			call: func(c *httpapi.Client) (any, error) { return nil, c.ConfirmTOTP(ctx, "654321") }},
		{name: "revoke member sessions", answer: httpapi.RevokedSessions{Revoked: 3}, method: "DELETE", path: "/v1/organizations/acme/members/u2/sessions",
			call: func(c *httpapi.Client) (any, error) { return c.RevokeMemberSessions(ctx, "acme", "u2") }, wantField: "3"},
		{name: "invite", status: 201, answer: cp.InvitationResponse{Invitation: &cp.Invitation{ID: "inv_1"}, Mail: cp.MailSent}, method: "POST", path: "/v1/organizations/acme/invitations",
			body: `{"email":"b@example.com","role":"member","environments":[{"environment":"dev","role":"env_user"}]}`,
			call: func(c *httpapi.Client) (any, error) {
				return c.CreateInvitation(ctx, "acme", cp.CreateInvitationRequest{Email: "b@example.com", Role: cp.OrgMember, Environments: []cp.InvitationEnvironment{{Environment: "dev", Role: cp.EnvUser}}})
			}, wantField: "inv_1"},
		{name: "invitations", answer: cp.List[*cp.Invitation]{Items: []*cp.Invitation{{ID: "inv_2"}}}, method: "GET", path: "/v1/organizations/acme/invitations", query: "limit=4",
			call: func(c *httpapi.Client) (any, error) {
				return c.ListInvitations(ctx, "acme", httpapi.ListOptions{Limit: 4})
			}, wantField: "inv_2"},
		{name: "resend invitation", answer: cp.InvitationResponse{Invitation: &cp.Invitation{ID: "inv_3"}, Mail: cp.MailFailed}, method: "POST", path: "/v1/organizations/acme/invitations/inv_3/resend",
			call: func(c *httpapi.Client) (any, error) { return c.ResendInvitation(ctx, "acme", "inv_3") }, wantField: "failed"},
		{name: "revoke invitation", status: 204, method: "DELETE", path: "/v1/organizations/acme/invitations/inv_4",
			call: func(c *httpapi.Client) (any, error) { return nil, c.RevokeInvitation(ctx, "acme", "inv_4") }},
		{name: "accept invitation", answer: cp.AcceptInvitationResponse{UserID: "usr_5"}, method: "POST", path: "/v1/invitations/epi_x/accept", body: `{"password":"pw-1234567890","name":"Bo"}`,
			call: func(c *httpapi.Client) (any, error) {
				return c.AcceptInvitation(ctx, "epi_x", "pw-1234567890", "Bo")
			}, wantField: "usr_5"},
		{name: "create backup", status: 201, answer: cp.BackupResponse{Backup: &cp.Backup{ID: "bk_1"}, Operation: &cp.Operation{ID: "op_1"}}, method: "POST", path: "/v1/organizations/acme/environments/dev/backups", prefer: "wait=5",
			call: func(c *httpapi.Client) (any, error) {
				return c.CreateBackup(ctx, "acme", "dev", httpapi.WithWait(5*time.Second))
			}, wantField: "bk_1"},
		{name: "list backups", answer: cp.List[*cp.Backup]{Items: []*cp.Backup{{ID: "bk_1", SHA256: "abc123"}}, Next: "bk_0"}, method: "GET", path: "/v1/organizations/acme/environments/dev/backups", query: "limit=1",
			call: func(c *httpapi.Client) (any, error) {
				return c.ListBackups(ctx, "acme", "dev", httpapi.ListOptions{Limit: 1})
			}, wantField: "abc123"},
		{name: "restore", status: 201, answer: cp.EnvironmentOperationResponse{Environment: &cp.EnvironmentView{Environment: &cp.Environment{ID: "env2", Slug: "copy"}}, Operation: &cp.Operation{ID: "op2"}},
			method: "POST", path: "/v1/organizations/acme/environments/dev/restore", body: `{"backup_id":"bk_1","into":"copy"}`,
			call: func(c *httpapi.Client) (any, error) {
				v, _, err := c.RestoreEnvironment(ctx, "acme", "dev", cp.RestoreRequest{BackupID: "bk_1", Into: "copy"})
				return v, err
			}, wantField: "copy"},
	}
	rollout := cp.RolloutView{Rollout: &cp.Rollout{ID: "ro_1", Version: 4}, Environments: []*cp.RolloutItem{{Environment: "dev"}}}
	for _, scope := range []struct{ org, base, suffix string }{{"acme", "/v1/organizations/acme/rollouts", ""}, {"", "/v1/rollouts", " (platform)"}} {
		org, base := scope.org, scope.base
		tests = append(tests, []clientCase{
			{name: "create rollout" + scope.suffix, status: 201, answer: rollout, method: "POST", path: base, body: `{"version":4,"parallelism":2,"on_error":"continue"}`,
				call: func(c *httpapi.Client) (any, error) {
					return c.CreateRollout(ctx, org, cp.CreateRolloutRequest{Version: ptr(int64(4)), Parallelism: ptr(2), OnError: cp.OnErrorContinue})
				}, wantField: "ro_1"},
			{name: "list rollouts" + scope.suffix, answer: cp.List[*cp.Rollout]{Items: []*cp.Rollout{rollout.Rollout}}, method: "GET", path: base, query: "limit=2",
				call: func(c *httpapi.Client) (any, error) { return c.ListRollouts(ctx, org, httpapi.ListOptions{Limit: 2}) }, wantField: "ro_1"},
			{name: "get rollout" + scope.suffix, answer: rollout, method: "GET", path: base + "/ro_1",
				call: func(c *httpapi.Client) (any, error) { return c.GetRollout(ctx, org, "ro_1") }, wantField: "dev"},
		}...)
		for _, control := range []string{cp.RolloutPause, cp.RolloutResume, cp.RolloutCancel} {
			tests = append(tests, clientCase{name: control + " rollout" + scope.suffix, answer: rollout, method: "POST", path: base + "/ro_1/" + control,
				call: func(c *httpapi.Client) (any, error) { return c.ControlRollout(ctx, org, "ro_1", control) }, wantField: "ro_1"})
		}
	}

	srv := newCannedServer(t)
	covered := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status := tt.status
			if status == 0 {
				status = http.StatusOK
			}
			srv.answer(status, tt.answer)
			got, err := tt.call(srv.client())
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			req := srv.last(t)
			if req.Method != tt.method || req.Path != tt.path || req.Query != tt.query {
				t.Fatalf("sent %s %s?%s, want %s %s?%s", req.Method, req.Path, req.Query, tt.method, tt.path, tt.query)
			}
			route, ok := matchRoute(req.Method, req.Path)
			if !ok {
				t.Fatalf("%s %s matches no route of Routes()", req.Method, req.Path)
			}
			covered[route.OperationID] = true
			if route.Status != status && route.Accepted == nil {
				t.Errorf("test answers %d, route %s answers %d", status, route.OperationID, route.Status)
			}
			if h := req.Header.Get("Authorization"); h != "Bearer "+testToken {
				t.Errorf("Authorization header not the bearer token")
			}
			if h := req.Header.Get("Idempotency-Key"); h != tt.idemKey {
				t.Errorf("Idempotency-Key = %q, want %q", h, tt.idemKey)
			}
			if h := req.Header.Get("Prefer"); h != tt.prefer {
				t.Errorf("Prefer = %q, want %q", h, tt.prefer)
			}
			if tt.body == "" {
				if req.Body != "" {
					t.Errorf("sent body %s, want none", req.Body)
				}
			} else {
				if ct := req.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q", ct)
				}
				if !jsonEqual(t, req.Body, tt.body) {
					t.Errorf("sent body %s, want %s", req.Body, tt.body)
				}
			}
			if tt.wantField != "" {
				b, _ := json.Marshal(got)
				if !strings.Contains(string(b), tt.wantField) {
					t.Errorf("decoded answer %s lacks %q", b, tt.wantField)
				}
			}
		})
	}
	for _, r := range httpapi.Routes() {
		switch r.OperationID {
		case "healthz", "readyz", "metrics":
			continue
		}
		if !covered[r.OperationID] {
			t.Errorf("route %s (%s %s) has no client method under test", r.OperationID, r.Method, r.Path)
		}
	}
}

func jsonEqual(tb testing.TB, a, b string) bool {
	tb.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		tb.Fatalf("not JSON: %s", a)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		tb.Fatalf("not JSON: %s", b)
	}
	xs, _ := json.Marshal(x)
	ys, _ := json.Marshal(y)
	return string(xs) == string(ys)
}

func TestClientEscapesPathSegments(t *testing.T) {
	srv := newCannedServer(t)
	srv.answer(http.StatusOK, cp.Organization{})
	if _, err := srv.client().GetOrganization(context.Background(), "a/b?c"); err != nil {
		t.Fatal(err)
	}
	if got := srv.last(t).Path; got != "/v1/organizations/a%2Fb%3Fc" {
		t.Fatalf("path = %q", got)
	}
}

func TestClientDecodesProblems(t *testing.T) {
	srv := newCannedServer(t)
	srv.answerAs(http.StatusUnprocessableEntity, httpapi.ProblemContentType+"; charset=utf-8",
		httpapi.ProblemFor(cp.Invalid(cp.FieldError{Field: "slug", Message: "taken"}, cp.FieldError{Field: "type", Message: "unknown"})))
	_, _, err := srv.client().CreateEnvironment(context.Background(), "acme", cp.CreateEnvironmentRequest{Slug: "dev"})
	if !cp.IsCode(err, cp.EINVALID) {
		t.Fatalf("err = %v (code %q), want EINVALID", err, cp.ErrorCode(err))
	}
	var e *cp.Error
	if !errors.As(err, &e) || len(e.Fields) != 2 || e.Fields[0].Field != "slug" {
		t.Fatalf("fields lost: %+v", e)
	}
}

func TestClientNonProblemErrors(t *testing.T) {
	srv := newCannedServer(t)
	srv.answerAs(http.StatusBadGateway, "text/html", "<html>bad gateway from the proxy</html>")
	_, err := srv.client().Me(context.Background())
	if !cp.IsCode(err, cp.EINTERNAL) || err.Error() != "Bad Gateway" {
		t.Fatalf("err = %q (code %q), want EINTERNAL Bad Gateway", err, cp.ErrorCode(err))
	}

	srv.answerAs(http.StatusNotFound, "text/plain", nil)
	if _, err := srv.client().Me(context.Background()); !cp.IsCode(err, cp.ENOTFOUND) {
		t.Fatalf("bare 404: code %q, want ENOTFOUND", cp.ErrorCode(err))
	}
}

func TestClientNeverShowsToken(t *testing.T) {
	c := httpapi.NewClient("http://127.0.0.1:1", testToken)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(verb, c); strings.Contains(s, testToken) {
			t.Errorf("fmt %s of Client shows the token", verb)
		}
		if s := fmt.Sprintf(verb, *c); strings.Contains(s, testToken) {
			t.Errorf("fmt %s of Client (value) shows the token", verb)
		}
	}

	// A base URL that does not parse is not quoted back.
	bad := httpapi.NewClient("http://ops:"+testToken+"@host/%zz", testToken)
	_, err := bad.Me(context.Background())
	assertErrorHides(t, "bad URL", err)

	// A transport failure: nothing listens on the address.
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	c.BaseURL = closed.URL
	_, err = c.Me(context.Background())
	assertErrorHides(t, "transport", err)

	// A problem answer: the error is the server's detail, and the client
	// adds nothing of its own to it.
	srv := newCannedServer(t)
	srv.answer(http.StatusUnauthorized, httpapi.Problem{Status: 401, Code: cp.EUNAUTHORIZED, Detail: "bad key"})
	_, err = srv.client().Me(context.Background())
	assertErrorHides(t, "problem", err)
	if err.Error() != "bad key" {
		t.Fatalf("problem error = %q, want the server's detail", err)
	}
	// Undecodable answers name the request, not the token.
	srv.answer(http.StatusOK, "{not json")
	_, err = srv.client().Me(context.Background())
	assertErrorHides(t, "decode", err)
}

// assertErrorHides fails unless err is an error whose text lacks the token;
// it never prints the error, which would print the token it checks for.
func assertErrorHides(tb testing.TB, what string, err error) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("%s: no error", what)
	}
	if strings.Contains(err.Error(), testToken) || strings.Contains(fmt.Sprintf("%+v", err), testToken) {
		tb.Fatalf("%s: the error shows the token", what)
	}
}

func TestClientWithoutToken(t *testing.T) {
	srv := newCannedServer(t)
	srv.answer(http.StatusOK, map[string]any{})
	c := httpapi.NewClient(srv.URL+"/", "")
	if _, err := c.OpenAPI(context.Background()); err != nil {
		t.Fatal(err)
	}
	req := srv.last(t)
	if req.Header.Get("Authorization") != "" || req.Path != "/v1/openapi.json" {
		t.Fatalf("sent %s with Authorization %q", req.Path, req.Header.Get("Authorization"))
	}
}

func TestWaitOperation(t *testing.T) {
	var mu sync.Mutex
	polls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		polls++
		n := polls
		mu.Unlock()
		if r.URL.Path != "/v1/operations/op1" {
			http.NotFound(w, r)
			return
		}
		op := cp.Operation{ID: "op1", Status: cp.OpRunning, Step: fmt.Sprintf("step%d", n)}
		if n == 3 {
			op.Status = cp.OpFailed
			op.Error = "target unavailable"
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(op)
	}))
	t.Cleanup(srv.Close)

	var steps []string
	op, err := httpapi.NewClient(srv.URL, testToken).WaitOperation(context.Background(), "op1", time.Millisecond, func(o *cp.Operation) {
		steps = append(steps, o.Step)
	})
	if err != nil {
		t.Fatal(err)
	}
	if op.Status != cp.OpFailed || op.Error != "target unavailable" {
		t.Fatalf("final operation = %+v", op)
	}
	if strings.Join(steps, ",") != "step1,step2,step3" {
		t.Fatalf("progress saw %v", steps)
	}
}

func TestWaitOperationStopsWithContext(t *testing.T) {
	srv := newCannedServer(t)
	srv.answer(http.StatusOK, cp.Operation{ID: "op1", Status: cp.OpRunning})
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	_, err := srv.client().WaitOperation(ctx, "op1", time.Millisecond, func(*cp.Operation) {
		calls++
		if calls == 2 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestWaitOperationReturnsProblem(t *testing.T) {
	srv := newCannedServer(t)
	srv.answer(http.StatusNotFound, httpapi.ProblemFor(cp.Errorf(cp.ENOTFOUND, "operation not found")))
	_, err := srv.client().WaitOperation(context.Background(), "nope", time.Millisecond, nil)
	if !cp.IsCode(err, cp.ENOTFOUND) {
		t.Fatalf("err = %v, want ENOTFOUND", err)
	}
}

func TestWithWaitRoundsUpToWholeSeconds(t *testing.T) {
	srv := newCannedServer(t)
	srv.answer(http.StatusCreated, cp.EnvironmentOperationResponse{Environment: &cp.EnvironmentView{Environment: &cp.Environment{ID: "env1"}},
		Operation: &cp.Operation{ID: "op1", Status: cp.OpSucceeded}})
	for d, want := range map[time.Duration]string{
		30 * time.Second:        "wait=30",
		1500 * time.Millisecond: "wait=2",
		0:                       "wait=0",
		-time.Second:            "wait=0",
	} {
		if _, _, err := srv.client().CreateEnvironment(context.Background(), "acme", cp.CreateEnvironmentRequest{}, httpapi.WithWait(d)); err != nil {
			t.Fatal(err)
		}
		if got := srv.last(t).Header.Get("Prefer"); got != want {
			t.Errorf("WithWait(%v) sent Prefer %q, want %q", d, got, want)
		}
	}
}
