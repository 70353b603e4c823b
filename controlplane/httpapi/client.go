package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	cp "github.com/envplane/envplane/controlplane"
)

// maxErrorBody bounds how much of a non-problem error answer the client reads.
const maxErrorBody = 64 << 10

// Client calls envplane's API, one method per route. Its fields are
// dependencies with defaults set by NewClient; a Client is safe for
// concurrent use once configured. Token is a bearer secret: Client's String
// and GoString never show it, and no error the client returns contains it.
//
// Every method returns the server's problem as a *controlplane.Error with the
// problem's code, detail and fields (test it with controlplane.IsCode), and a
// transport failure wrapped with the method and path. GET, PUT, PATCH and
// DELETE methods are idempotent; POST methods are idempotent only when sent
// with WithIdempotencyKey.
type Client struct {
	// BaseURL is where the API listens, e.g. http://127.0.0.1:8080.
	BaseURL string
	// Token is the API key sent as "Authorization: Bearer <token>".
	Token string
	// HTTPClient sends the requests; nil means http.DefaultClient.
	HTTPClient *http.Client
	// UserAgent names the caller in the User-Agent header.
	UserAgent string
}

// NewClient returns a Client for the API at baseURL that authenticates with
// token (empty for public routes only). It does no I/O and cannot fail.
func NewClient(baseURL, token string) *Client {
	return &Client{
		BaseURL:    strings.TrimRight(baseURL, "/"),
		Token:      token,
		HTTPClient: http.DefaultClient,
		UserAgent:  "envplane-go-client",
	}
}

// String describes the client without its token.
func (c Client) String() string {
	tok := "none"
	if c.Token != "" {
		tok = "[redacted]"
	}
	return fmt.Sprintf("httpapi.Client{BaseURL: %q, Token: %s}", c.BaseURL, tok)
}

// GoString is String, so %#v does not print the token either.
func (c Client) GoString() string { return c.String() }

// RequestOption adjusts one request: its headers (idempotency key, wait) or
// its query (pagination).
type RequestOption func(*http.Request)

// WithIdempotencyKey sends the Idempotency-Key header: a retried POST with the
// same key and body replays the first answer instead of acting twice.
func WithIdempotencyKey(key string) RequestOption {
	return func(r *http.Request) { r.Header.Set("Idempotency-Key", key) }
}

// WithWait asks the server to hold the answer up to d for a long change to
// finish (Prefer: wait=N, in whole seconds, rounded up) before answering 202;
// d <= 0 asks for an answer at once.
func WithWait(d time.Duration) RequestOption {
	secs := int64(math.Ceil(max(d, 0).Seconds()))
	return func(r *http.Request) { r.Header.Set("Prefer", "wait="+strconv.FormatInt(secs, 10)) }
}

// ListOptions selects a page of a list endpoint; zero values are the
// server's defaults.
type ListOptions struct {
	Limit  int
	Cursor string
}

func (o ListOptions) query() url.Values {
	q := url.Values{}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Cursor != "" {
		q.Set("cursor", o.Cursor)
	}
	return q
}

// do sends one request and decodes a 2xx body into out (when out is not nil
// and the answer has a body). It returns the status. Non-2xx answers return
// the problem as a *controlplane.Error; transport failures are wrapped with
// the method and path (never the token).
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body, out any, opts []RequestOption) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, fmt.Errorf("cannot encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	u := c.BaseURL + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		// A parse error quotes the whole URL, user info included: keep only its cause.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, fmt.Errorf("cannot build request %s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	for _, opt := range opts {
		opt(req)
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		// *url.Error holds the URL, which holds no secret: the token is a header.
		return 0, fmt.Errorf("cannot call %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, readProblem(resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return resp.StatusCode, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return resp.StatusCode, fmt.Errorf("cannot decode answer to %s %s: %w", method, path, err)
	}
	return resp.StatusCode, nil
}

// readProblem turns a non-2xx answer into a *controlplane.Error: the problem
// when the body is one, otherwise the status alone (a proxy's HTML page is
// not shown).
func readProblem(resp *http.Response) error {
	p := &Problem{Status: resp.StatusCode}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == ProblemContentType || mt == "application/json" {
		if err := json.NewDecoder(io.LimitReader(resp.Body, maxErrorBody)).Decode(p); err != nil {
			p = &Problem{Status: resp.StatusCode}
		}
		p.Status = resp.StatusCode
	}
	if p.Detail == "" && p.Title == "" {
		p.Title = http.StatusText(resp.StatusCode)
		if p.Title == "" {
			p.Title = "HTTP " + strconv.Itoa(resp.StatusCode)
		}
	}
	return p.Err()
}

// call sends one request and decodes its JSON answer into a new T.
func call[T any](ctx context.Context, c *Client, method, path string, query url.Values, body any, opts []RequestOption) (*T, error) {
	var out T
	if _, err := c.do(ctx, method, path, query, body, &out, opts); err != nil {
		return nil, err
	}
	return &out, nil
}

func orgPathOf(org string) string { return "/v1/organizations/" + url.PathEscape(org) }

func envPathOf(org, env string) string {
	return orgPathOf(org) + "/environments/" + url.PathEscape(env)
}

// Me returns the calling principal, its organizations and roles. Returns
// EUNAUTHORIZED for a missing or bad key.
func (c *Client) Me(ctx context.Context) (*cp.Me, error) {
	return call[cp.Me](ctx, c, http.MethodGet, "/v1/me", nil, nil, nil)
}

// OpenAPI returns the API's OpenAPI document as the server serves it.
func (c *Client) OpenAPI(ctx context.Context) (json.RawMessage, error) {
	var out json.RawMessage
	if _, err := c.do(ctx, http.MethodGet, "/v1/openapi.json", nil, nil, &out, nil); err != nil {
		return nil, err
	}
	return out, nil
}

// CreateOrganization creates an organization and provisions its default
// environment (platform admin only). Returns EFORBIDDEN for other keys,
// ECONFLICT when the slug is taken, EINVALID for bad fields. Idempotent only
// with WithIdempotencyKey.
func (c *Client) CreateOrganization(ctx context.Context, req cp.CreateOrganizationRequest, opts ...RequestOption) (*cp.CreateOrganizationResponse, error) {
	return call[cp.CreateOrganizationResponse](ctx, c, http.MethodPost, "/v1/organizations", nil, req, opts)
}

// ListOrganizations returns one page of the organizations visible to the caller.
func (c *Client) ListOrganizations(ctx context.Context, page ListOptions) (*cp.List[*cp.Organization], error) {
	return call[cp.List[*cp.Organization]](ctx, c, http.MethodGet, "/v1/organizations", page.query(), nil, nil)
}

// GetOrganization returns one organization by slug or id. Returns ENOTFOUND
// when it is absent or not visible.
func (c *Client) GetOrganization(ctx context.Context, org string) (*cp.Organization, error) {
	return call[cp.Organization](ctx, c, http.MethodGet, orgPathOf(org), nil, nil, nil)
}

// UpdateOrganization changes the fields set in req (owner only; the quotas
// max_environments and max_storage_mb the platform admin only, 403
// otherwise) and returns the organization afterwards. Idempotent.
func (c *Client) UpdateOrganization(ctx context.Context, org string, req cp.UpdateOrganizationRequest) (*cp.Organization, error) {
	return call[cp.Organization](ctx, c, http.MethodPatch, orgPathOf(org), nil, req, nil)
}

// DeleteOrganization deletes an organization (owner only). Returns ECONFLICT
// while environments other than the default exist.
func (c *Client) DeleteOrganization(ctx context.Context, org string) error {
	_, err := c.do(ctx, http.MethodDelete, orgPathOf(org), nil, nil, nil, nil)
	return err
}

// ListMembers returns one page of an organization's members.
func (c *Client) ListMembers(ctx context.Context, org string, page ListOptions) (*cp.List[*cp.OrgMembership], error) {
	return call[cp.List[*cp.OrgMembership]](ctx, c, http.MethodGet, orgPathOf(org)+"/members", page.query(), nil, nil)
}

// AddMember gives a user (by email; a new email creates the user) a role in
// the organization. Returns ECONFLICT when the user is already a member.
func (c *Client) AddMember(ctx context.Context, org string, req cp.AddMemberRequest, opts ...RequestOption) (*cp.OrgMembership, error) {
	return call[cp.OrgMembership](ctx, c, http.MethodPost, orgPathOf(org)+"/members", nil, req, opts)
}

// UpdateMember changes a member's role; user is a user id or email. Returns
// ECONFLICT when it would demote the last owner. Idempotent.
func (c *Client) UpdateMember(ctx context.Context, org, user string, req cp.UpdateMemberRequest) (*cp.OrgMembership, error) {
	return call[cp.OrgMembership](ctx, c, http.MethodPatch, orgPathOf(org)+"/members/"+url.PathEscape(user), nil, req, nil)
}

// RemoveMember removes a user (id or email) from the organization. Returns
// ECONFLICT for the last owner.
func (c *Client) RemoveMember(ctx context.Context, org, user string) error {
	_, err := c.do(ctx, http.MethodDelete, orgPathOf(org)+"/members/"+url.PathEscape(user), nil, nil, nil, nil)
	return err
}

// ListAPIKeys returns one page of the organization's API keys (all of them
// for owners and admins, the caller's own for others).
func (c *Client) ListAPIKeys(ctx context.Context, org string, page ListOptions) (*cp.List[*cp.APIKey], error) {
	return call[cp.List[*cp.APIKey]](ctx, c, http.MethodGet, orgPathOf(org)+"/api-keys", page.query(), nil, nil)
}

// CreateAPIKey creates an API key and returns it with its token, which the
// API shows only this once.
func (c *Client) CreateAPIKey(ctx context.Context, org string, req cp.CreateAPIKeyRequest, opts ...RequestOption) (*cp.CreateAPIKeyResponse, error) {
	return call[cp.CreateAPIKeyResponse](ctx, c, http.MethodPost, orgPathOf(org)+"/api-keys", nil, req, opts)
}

// GetAPIKey returns one API key's metadata. Returns ENOTFOUND when absent.
func (c *Client) GetAPIKey(ctx context.Context, org, id string) (*cp.APIKey, error) {
	return call[cp.APIKey](ctx, c, http.MethodGet, orgPathOf(org)+"/api-keys/"+url.PathEscape(id), nil, nil, nil)
}

// RevokeAPIKey revokes an API key at once.
func (c *Client) RevokeAPIKey(ctx context.Context, org, id string) error {
	_, err := c.do(ctx, http.MethodDelete, orgPathOf(org)+"/api-keys/"+url.PathEscape(id), nil, nil, nil, nil)
	return err
}

// ListAuditEvents returns one page of the organization's audit events,
// newest first.
func (c *Client) ListAuditEvents(ctx context.Context, org string, page ListOptions) (*cp.List[*cp.AuditEvent], error) {
	return call[cp.List[*cp.AuditEvent]](ctx, c, http.MethodGet, orgPathOf(org)+"/audit-events", page.query(), nil, nil)
}

// CreateEnvironment creates an environment in org and provisions its
// database. It returns the environment as it stands and its provision
// operation: succeeded when the server finished within the request's wait
// (WithWait, answered 201), otherwise still running (202), to follow with
// WaitOperation. Returns ECONFLICT when the slug is taken, ETOOMANY past the
// organization's quota. Idempotent only with WithIdempotencyKey.
func (c *Client) CreateEnvironment(ctx context.Context, org string, req cp.CreateEnvironmentRequest, opts ...RequestOption) (*cp.EnvironmentView, *cp.Operation, error) {
	return c.createEnvironment(ctx, orgPathOf(org)+"/environments", req, opts)
}

// CreateEnvironmentInOrganization is CreateEnvironment with the organization
// named in req.Organization (POST /v1/environments).
func (c *Client) CreateEnvironmentInOrganization(ctx context.Context, req cp.CreateEnvironmentRequest, opts ...RequestOption) (*cp.EnvironmentView, *cp.Operation, error) {
	return c.createEnvironment(ctx, "/v1/environments", req, opts)
}

func (c *Client) createEnvironment(ctx context.Context, path string, req any, opts []RequestOption) (*cp.EnvironmentView, *cp.Operation, error) {
	// 201 and 202 share one body: the environment and its operation.
	var out cp.EnvironmentOperationResponse
	if _, err := c.do(ctx, http.MethodPost, path, nil, req, &out, opts); err != nil {
		return nil, nil, err
	}
	if out.Environment == nil || out.Environment.Environment == nil || out.Operation == nil {
		return nil, nil, fmt.Errorf("cannot decode answer to POST %s: want {environment, operation}", path)
	}
	return out.Environment, out.Operation, nil
}

// EnvironmentsOptions filters ListEnvironments; zero fields do not filter.
type EnvironmentsOptions struct {
	ListOptions
	Type   cp.EnvironmentType
	Status cp.EnvironmentStatus
	Target string
}

// ListEnvironments returns one page of the environments of org the caller
// can see, narrowed by opts. Returns EINVALID naming the field for an
// unknown type or status.
func (c *Client) ListEnvironments(ctx context.Context, org string, opts EnvironmentsOptions) (*cp.List[*cp.EnvironmentView], error) {
	q := opts.query()
	setIf(q, "type", string(opts.Type))
	setIf(q, "status", string(opts.Status))
	setIf(q, "target", opts.Target)
	return call[cp.List[*cp.EnvironmentView]](ctx, c, http.MethodGet, orgPathOf(org)+"/environments", q, nil, nil)
}

// setIf sets the query parameter when value is not empty.
func setIf(q url.Values, name, value string) {
	if value != "" {
		q.Set(name, value)
	}
}

// GetEnvironment returns one environment (slug or id) with its database.
// Returns ENOTFOUND when absent or not visible.
func (c *Client) GetEnvironment(ctx context.Context, org, env string) (*cp.EnvironmentView, error) {
	return call[cp.EnvironmentView](ctx, c, http.MethodGet, envPathOf(org, env), nil, nil, nil)
}

// UpdateEnvironment changes the fields set in req and returns the
// environment afterwards. Idempotent.
func (c *Client) UpdateEnvironment(ctx context.Context, org, env string, req cp.UpdateEnvironmentRequest) (*cp.EnvironmentView, error) {
	return call[cp.EnvironmentView](ctx, c, http.MethodPatch, envPathOf(org, env), nil, req, nil)
}

// DeleteEnvironment starts deleting an environment and dropping its database;
// it returns the environment and the deprovision operation. Returns ECONFLICT
// for a protected or default environment.
func (c *Client) DeleteEnvironment(ctx context.Context, org, env string) (*cp.EnvironmentView, *cp.Operation, error) {
	var out cp.EnvironmentOperationResponse
	if _, err := c.do(ctx, http.MethodDelete, envPathOf(org, env), nil, nil, &out, nil); err != nil {
		return nil, nil, err
	}
	return out.Environment, out.Operation, nil
}

// ResetEnvironment starts replacing an environment's database contents (a
// copy of another environment's, or an empty schema) and returns the
// environment and the reset operation; credentials and DSN do not change.
// Returns ECONFLICT for a protected environment or one that is not active,
// ENOTFOUND for a source the caller cannot see, EINVALID naming the field
// for a bad mode or source.
func (c *Client) ResetEnvironment(ctx context.Context, org, env string, req cp.ResetEnvironmentRequest, opts ...RequestOption) (*cp.EnvironmentView, *cp.Operation, error) {
	var out cp.EnvironmentOperationResponse
	if _, err := c.do(ctx, http.MethodPost, envPathOf(org, env)+"/reset", nil, req, &out, opts); err != nil {
		return nil, nil, err
	}
	return out.Environment, out.Operation, nil
}

// SuspendEnvironment suspends an environment: its connection lookups answer
// ELOCKED until resumed.
func (c *Client) SuspendEnvironment(ctx context.Context, org, env string, opts ...RequestOption) (*cp.EnvironmentView, error) {
	return call[cp.EnvironmentView](ctx, c, http.MethodPost, envPathOf(org, env)+"/suspend", nil, nil, opts)
}

// ResumeEnvironment resumes a suspended environment.
func (c *Client) ResumeEnvironment(ctx context.Context, org, env string, opts ...RequestOption) (*cp.EnvironmentView, error) {
	return call[cp.EnvironmentView](ctx, c, http.MethodPost, envPathOf(org, env)+"/resume", nil, nil, opts)
}

func scopeQuery(scope cp.Scope) url.Values {
	if scope == "" {
		return nil
	}
	return url.Values{"scope": {string(scope)}}
}

// GetConnection asks the router for a connection to an environment's
// database with scope (empty: the server's default). The answer holds a
// secret: callers must not print or log it. Returns ELOCKED for a suspended
// environment, EFORBIDDEN above the caller's scope.
func (c *Client) GetConnection(ctx context.Context, org, env string, scope cp.Scope) (*cp.Connection, error) {
	return call[cp.Connection](ctx, c, http.MethodGet, envPathOf(org, env)+"/connection", scopeQuery(scope), nil, nil)
}

// GetConnectionByID is GetConnection by environment id.
func (c *Client) GetConnectionByID(ctx context.Context, id string, scope cp.Scope) (*cp.Connection, error) {
	return call[cp.Connection](ctx, c, http.MethodGet, "/v1/environments/"+url.PathEscape(id)+"/connection", scopeQuery(scope), nil, nil)
}

// ReceiptsOptions filters ListReceipts; zero fields do not filter.
type ReceiptsOptions struct {
	ListOptions
	Since, Until time.Time
	Credential   string
}

// ListReceipts returns who resolved which of an environment's credentials,
// newest first.
func (c *Client) ListReceipts(ctx context.Context, org, env string, opts ReceiptsOptions) (*cp.List[*cp.Receipt], error) {
	q := opts.query()
	if !opts.Since.IsZero() {
		q.Set("since", opts.Since.UTC().Format(time.RFC3339Nano))
	}
	if !opts.Until.IsZero() {
		q.Set("until", opts.Until.UTC().Format(time.RFC3339Nano))
	}
	if opts.Credential != "" {
		q.Set("credential", opts.Credential)
	}
	return call[cp.List[*cp.Receipt]](ctx, c, http.MethodGet, envPathOf(org, env)+"/receipts", q, nil, nil)
}

// ListTargets returns the configured targets: names and regions, and for the
// platform admin their driver, capacity, use and health.
func (c *Client) ListTargets(ctx context.Context) (*cp.List[cp.TargetView], error) {
	return call[cp.List[cp.TargetView]](ctx, c, http.MethodGet, "/v1/targets", nil, nil, nil)
}

// KeyringStatus returns the key coverage (platform admin).
func (c *Client) KeyringStatus(ctx context.Context) (*cp.KeyCoverage, error) {
	return call[cp.KeyCoverage](ctx, c, http.MethodGet, "/v1/keyring", nil, nil, nil)
}

// RotateKeyring adds a key version and makes it current (platform admin).
func (c *Client) RotateKeyring(ctx context.Context, opts ...RequestOption) (*cp.KeyCoverage, error) {
	return call[cp.KeyCoverage](ctx, c, http.MethodPost, "/v1/keyring/rotate", nil, nil, opts)
}

// RewrapKeyring re-wraps every data key under the current version (platform admin).
func (c *Client) RewrapKeyring(ctx context.Context, opts ...RequestOption) (*cp.KeyCoverage, error) {
	return call[cp.KeyCoverage](ctx, c, http.MethodPost, "/v1/keyring/rewrap", nil, nil, opts)
}

// RetireKeyring stops every key version below below from unwrapping
// (platform admin); ECONFLICT while anything is wrapped below it.
func (c *Client) RetireKeyring(ctx context.Context, below int, opts ...RequestOption) (*cp.KeyCoverage, error) {
	return call[cp.KeyCoverage](ctx, c, http.MethodPost, "/v1/keyring/retire", nil, cp.RetireKeysRequest{Below: below}, opts)
}

// ListCredentials returns the metadata of an environment's credentials
// (never secrets).
func (c *Client) ListCredentials(ctx context.Context, org, env string) (*cp.List[*cp.Credential], error) {
	return call[cp.List[*cp.Credential]](ctx, c, http.MethodGet, envPathOf(org, env)+"/credentials", nil, nil, nil)
}

// RotateCredentials rotates an environment's credentials; the old ones keep
// working for the grace period.
func (c *Client) RotateCredentials(ctx context.Context, org, env string, req cp.RotateCredentialsRequest, opts ...RequestOption) (*cp.CredentialsResponse, error) {
	return call[cp.CredentialsResponse](ctx, c, http.MethodPost, envPathOf(org, env)+"/credentials/rotate", nil, req, opts)
}

// RevokeCredentials revokes credentials at once (one, or all of the
// environment's) and issues new ones.
func (c *Client) RevokeCredentials(ctx context.Context, org, env string, req cp.RevokeCredentialsRequest, opts ...RequestOption) (*cp.CredentialsResponse, error) {
	return call[cp.CredentialsResponse](ctx, c, http.MethodPost, envPathOf(org, env)+"/credentials/revoke", nil, req, opts)
}

// ListEnvironmentMembers returns the users holding a role on an environment.
func (c *Client) ListEnvironmentMembers(ctx context.Context, org, env string) (*cp.List[*cp.EnvironmentMember], error) {
	return call[cp.List[*cp.EnvironmentMember]](ctx, c, http.MethodGet, envPathOf(org, env)+"/members", nil, nil, nil)
}

// PutEnvironmentMember gives a user (id or email) a role on an environment,
// replacing any previous one. Idempotent.
func (c *Client) PutEnvironmentMember(ctx context.Context, org, env, user string, req cp.PutEnvironmentMemberRequest) (*cp.EnvironmentMember, error) {
	return call[cp.EnvironmentMember](ctx, c, http.MethodPut, envPathOf(org, env)+"/members/"+url.PathEscape(user), nil, req, nil)
}

// RemoveEnvironmentMember removes a user's role on an environment.
func (c *Client) RemoveEnvironmentMember(ctx context.Context, org, env, user string) error {
	_, err := c.do(ctx, http.MethodDelete, envPathOf(org, env)+"/members/"+url.PathEscape(user), nil, nil, nil, nil)
	return err
}

// EnvironmentUsage returns an environment's last measured usage, its
// storage limit and whether it is over it.
func (c *Client) EnvironmentUsage(ctx context.Context, org, env string) (*cp.EnvironmentUsage, error) {
	return call[cp.EnvironmentUsage](ctx, c, http.MethodGet, envPathOf(org, env)+"/usage", nil, nil, nil)
}

// OrganizationUsage returns the last measured usage of the organization's
// environments the caller can see, summed per environment type.
func (c *Client) OrganizationUsage(ctx context.Context, org string) (*cp.OrganizationUsage, error) {
	return call[cp.OrganizationUsage](ctx, c, http.MethodGet, orgPathOf(org)+"/usage", nil, nil, nil)
}

// GetSchema returns an environment's migration ledger, pending migrations and drift.
func (c *Client) GetSchema(ctx context.Context, org, env string) (*cp.SchemaStatus, error) {
	return call[cp.SchemaStatus](ctx, c, http.MethodGet, envPathOf(org, env)+"/schema", nil, nil, nil)
}

// MigrateSchema applies an environment's pending migrations and returns the
// status afterwards. Idempotent: applied migrations are not re-run.
func (c *Client) MigrateSchema(ctx context.Context, org, env string, opts ...RequestOption) (*cp.SchemaStatus, error) {
	return call[cp.SchemaStatus](ctx, c, http.MethodPost, envPathOf(org, env)+"/schema/migrate", nil, nil, opts)
}

// OperationsOptions filters ListOperations; zero fields do not filter.
type OperationsOptions struct {
	ListOptions
	// Environment is a slug or id.
	Environment string
	Status      cp.OperationStatus
	Kind        cp.OperationKind
}

// ListOperations returns one page of the operations of org's environments
// that the caller can see, newest first, narrowed by opts. Returns EINVALID
// naming the field for an unknown status or kind, ENOTFOUND for an
// environment the caller cannot see.
func (c *Client) ListOperations(ctx context.Context, org string, opts OperationsOptions) (*cp.List[*cp.Operation], error) {
	q := opts.query()
	setIf(q, "environment", opts.Environment)
	setIf(q, "status", string(opts.Status))
	setIf(q, "kind", string(opts.Kind))
	return call[cp.List[*cp.Operation]](ctx, c, http.MethodGet, orgPathOf(org)+"/operations", q, nil, nil)
}

// GetOperation returns one operation. Returns ENOTFOUND when absent or when
// its environment is not visible.
func (c *Client) GetOperation(ctx context.Context, id string) (*cp.Operation, error) {
	return call[cp.Operation](ctx, c, http.MethodGet, "/v1/operations/"+url.PathEscape(id), nil, nil, nil)
}

// WaitOperation polls an operation every poll (default one second) until it
// is done, calling progress (when not nil) with each state read, and returns
// the finished operation, succeeded or failed: a failed operation is not an
// error of WaitOperation's. It returns the context's error when ctx ends
// first, and the first error of GetOperation.
func (c *Client) WaitOperation(ctx context.Context, id string, poll time.Duration, progress func(*cp.Operation)) (*cp.Operation, error) {
	if poll <= 0 {
		poll = time.Second
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cannot wait for operation %s: %w", id, ctx.Err())
		case <-timer.C:
		}
		op, err := c.GetOperation(ctx, id)
		if err != nil {
			if ctx.Err() != nil && !errors.As(err, new(*cp.Error)) {
				return nil, fmt.Errorf("cannot wait for operation %s: %w", id, ctx.Err())
			}
			return nil, err
		}
		if progress != nil {
			progress(op)
		}
		if op.Status.Done() {
			return op, nil
		}
		timer.Reset(poll)
	}
}

// rolloutsPathOf is the rollouts of org, or the platform-wide ones when
// org is empty.
func rolloutsPathOf(org string) string {
	if org == "" {
		return "/v1/rollouts"
	}
	return orgPathOf(org) + "/rollouts"
}

// CreateRollout starts a rollout of the app migrations over org's
// environments (org empty: every organization's, platform admin). Returns
// EINVALID naming the field, or ECONFLICT while another rollout is unfinished.
func (c *Client) CreateRollout(ctx context.Context, org string, req cp.CreateRolloutRequest, opts ...RequestOption) (*cp.RolloutView, error) {
	return call[cp.RolloutView](ctx, c, http.MethodPost, rolloutsPathOf(org), nil, req, opts)
}

// ListRollouts returns one page of org's rollouts (org empty: platform-wide), newest first.
func (c *Client) ListRollouts(ctx context.Context, org string, opts ListOptions) (*cp.List[*cp.Rollout], error) {
	return call[cp.List[*cp.Rollout]](ctx, c, http.MethodGet, rolloutsPathOf(org), opts.query(), nil, nil)
}

// GetRollout returns a rollout with each environment's status. Returns
// ENOTFOUND when absent or another organization's.
func (c *Client) GetRollout(ctx context.Context, org, id string) (*cp.RolloutView, error) {
	return call[cp.RolloutView](ctx, c, http.MethodGet, rolloutsPathOf(org)+"/"+url.PathEscape(id), nil, nil, nil)
}

// ControlRollout pauses, resumes or cancels a rollout (control is
// controlplane.RolloutPause, RolloutResume or RolloutCancel). Returns
// ECONFLICT when the rollout's status does not allow it.
func (c *Client) ControlRollout(ctx context.Context, org, id, control string, opts ...RequestOption) (*cp.RolloutView, error) {
	return call[cp.RolloutView](ctx, c, http.MethodPost, rolloutsPathOf(org)+"/"+url.PathEscape(id)+"/"+url.PathEscape(control), nil, nil, opts)
}

// CreateBackup takes a backup of an environment now and returns it with its
// operation: completed (201) or, while it still runs, as it is (202).
func (c *Client) CreateBackup(ctx context.Context, org, env string, opts ...RequestOption) (*cp.BackupResponse, error) {
	out, err := call[cp.BackupResponse](ctx, c, http.MethodPost, envPathOf(org, env)+"/backups", nil, nil, opts)
	if err != nil {
		return nil, err
	}
	if out.Backup == nil || out.Operation == nil {
		return nil, fmt.Errorf("cannot decode answer to POST backups: want {backup, operation}")
	}
	return out, nil
}

// ListBackups returns an environment's backups, newest first.
func (c *Client) ListBackups(ctx context.Context, org, env string, opts ListOptions) (*cp.List[*cp.Backup], error) {
	return call[cp.List[*cp.Backup]](ctx, c, http.MethodGet, envPathOf(org, env)+"/backups", opts.query(), nil, nil)
}

// RestoreEnvironment restores a backup of an environment into a new
// environment (req.Into) and returns it with its operation, like
// CreateEnvironment.
func (c *Client) RestoreEnvironment(ctx context.Context, org, env string, req cp.RestoreRequest, opts ...RequestOption) (*cp.EnvironmentView, *cp.Operation, error) {
	return c.createEnvironment(ctx, envPathOf(org, env)+"/restore", req, opts)
}
