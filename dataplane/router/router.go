// Package router is the client applications use to reach their environment's
// database through envplane's router: Client resolves a connection (the
// newest active credential) from the control plane, and Pool keeps a
// *sql.DB open with it, swapping in a pool on the new credential after a
// rotation while work on the old one finishes, so applications never see a
// gap.
//
// An application takes the pool's *sql.DB for each unit of work (a request,
// a job) instead of keeping it, so that work after a swap uses the new pool:
//
//	client := &router.Client{BaseURL: baseURL, Token: drivers.Secret(token)}
//	pool, err := router.Open(ctx, client, router.Target{Org: "acme", Env: "prod"},
//		drivers.ScopeReadWrite, sqlopen.Connector, router.Options{})
//	...
//	db, err := pool.DB(ctx)
//
// The package speaks the control plane's HTTP API and never imports the
// control plane: the answer it decodes is defined here. Database drivers
// come with the Opener (sqlopen.Connector links SQLite, PostgreSQL and
// libSQL).
package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/envplane/envplane/drivers"
)

// maxAnswer bounds how much of an answer the client reads: a connection is a
// few hundred bytes, a problem not much more.
const maxAnswer = 1 << 20

// defaultHTTPTimeout bounds one resolve when the caller gives no HTTP client.
const defaultHTTPTimeout = 30 * time.Second

// Target names the environment to resolve: by organization and environment
// (each a slug or an id), or by EnvironmentID alone.
type Target struct {
	Org, Env      string
	EnvironmentID string
}

// String names the target for errors and logs: "org/env" or "environment ID".
func (t Target) String() string {
	if t.EnvironmentID != "" {
		return "environment " + t.EnvironmentID
	}
	return t.Org + "/" + t.Env
}

// segments returns the router's path for t, unescaped, or an error when t
// names nothing or a segment could not be one.
func (t Target) segments() ([]string, error) {
	var segs []string
	switch {
	case t.EnvironmentID != "" && t.Org == "" && t.Env == "":
		segs = []string{"v1", "environments", t.EnvironmentID, "connection"}
	case t.EnvironmentID == "" && t.Org != "" && t.Env != "":
		segs = []string{"v1", "organizations", t.Org, "environments", t.Env, "connection"}
	default:
		return nil, errors.New("router: a target is an organization and an environment, or an environment id alone")
	}
	for _, s := range segs {
		if s == "." || s == ".." {
			return nil, fmt.Errorf("router: %q is not an organization or environment", s)
		}
	}
	return segs, nil
}

// Connection is the router's answer: everything an application needs to
// connect to its environment's database now. DSN and Secret print as
// [redacted]; Reveal reads them.
type Connection struct {
	EnvironmentID string
	Organization  string
	Environment   string
	// Driver is envplane's driver name: "sqlite", "postgres" or "turso".
	Driver string
	Scope  drivers.Scope
	// DSN is the complete connection string, secret included.
	DSN drivers.Secret
	// URL is the DSN without its secret, safe to show.
	URL      string
	Host     string
	Port     int
	Database string
	Username string
	Secret   drivers.Secret
	// CredentialID names the credential; it changes when the credential rotates.
	CredentialID string
	// ExpiresAt is when the credential stops working; zero means never.
	ExpiresAt time.Time
	// RefreshAfter is when the control plane wants the client to resolve again.
	RefreshAfter time.Time
}

// wireConnection is the router's JSON answer.
type wireConnection struct {
	EnvironmentID string     `json:"environment_id"`
	Organization  string     `json:"organization"`
	Environment   string     `json:"environment"`
	Driver        string     `json:"driver"`
	Scope         string     `json:"scope"`
	DSN           string     `json:"dsn"`
	URL           string     `json:"url"`
	Host          string     `json:"host"`
	Port          int        `json:"port"`
	Database      string     `json:"database"`
	Username      string     `json:"username"`
	Secret        string     `json:"secret"`
	CredentialID  string     `json:"credential_id"`
	ExpiresAt     *time.Time `json:"expires_at"`
	RefreshAfter  time.Time  `json:"refresh_after"`
}

// Client resolves connections from the control plane's router. Its zero
// HTTPClient is a client with a 30 s timeout (plus the wait, for a watch).
// A Client is safe for concurrent use once its fields are set.
type Client struct {
	// BaseURL is the control plane's URL, e.g. https://envplane.example.com.
	BaseURL string
	// Token is the API key sent as "Authorization: Bearer"; it never appears
	// in an error.
	Token drivers.Secret
	// HTTPClient sends the requests; nil means a client with a 30 s timeout.
	HTTPClient *http.Client
}

// Resolve asks the router for a connection to target with scope. It returns
// an *Error for a refusal (errors.Is matches ErrUnauthorized, ErrForbidden,
// ErrNotFound, ErrSuspended, ErrUnavailable), an error wrapping ErrUnavailable
// when the control plane cannot be reached, and an error for an answer that
// lacks what a connection needs. It only reads, so it is idempotent.
func (c *Client) Resolve(ctx context.Context, target Target, scope drivers.Scope) (Connection, error) {
	return c.get(ctx, target, scope, nil, c.httpClient(0))
}

// Watch is a long poll on target's connection: it asks
// "…/connection?scope=S&after=AFTER&wait=Ws", which the router answers as
// soon as the newest active credential is another than after (at once when
// after is unknown, older or empty), or with its refusal once the token or
// the environment may no longer resolve, and otherwise after wait with the
// connection as it is. wait is sent in whole seconds, rounded up and
// bounded to 1 s to MaxWatchWait. The HTTP client's timeout is raised above
// wait for this request (a copy of HTTPClient is used when its timeout is
// shorter). It returns what Resolve returns (an error wrapping ctx's error
// as well when ctx ends first); it only reads, so it is idempotent.
func (c *Client) Watch(ctx context.Context, target Target, scope drivers.Scope, after string, wait time.Duration) (Connection, error) {
	secs := watchSeconds(wait)
	query := []string{"after", after, "wait", strconv.Itoa(secs) + "s"}
	return c.get(ctx, target, scope, query, c.httpClient(time.Duration(secs)*time.Second))
}

// MaxWatchWait is the longest wait the router accepts for a watch.
const MaxWatchWait = time.Minute

// watchSeconds returns wait in whole seconds, rounded up, from 1 to MaxWatchWait.
func watchSeconds(wait time.Duration) int {
	secs := int((wait + time.Second - 1) / time.Second)
	return min(max(secs, 1), int(MaxWatchWait/time.Second))
}

// httpClient returns the client for a request the router may hold for
// hold: one whose timeout is at least hold plus the default timeout, so a
// watch is not cut off while the router waits. That is HTTPClient when its
// timeout is long enough (or none), a copy of it otherwise (sharing its
// transport), and a new client when there is no HTTPClient.
func (c *Client) httpClient(hold time.Duration) *http.Client {
	least := hold + defaultHTTPTimeout
	if c.HTTPClient == nil {
		return &http.Client{Timeout: least}
	}
	if hold == 0 || c.HTTPClient.Timeout == 0 || c.HTTPClient.Timeout >= least {
		return c.HTTPClient
	}
	hc := *c.HTTPClient
	hc.Timeout = least
	return &hc
}

// get asks the router for target's connection with scope and the extra
// query pairs (name, value, name, value…) and checks the answer.
func (c *Client) get(ctx context.Context, target Target, scope drivers.Scope, query []string, hc *http.Client) (Connection, error) {
	if !scope.Valid() {
		return Connection{}, fmt.Errorf("router: scope %q is not admin, readwrite or readonly", scope)
	}
	endpoint, err := c.endpoint(target, scope, query)
	if err != nil {
		return Connection{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return Connection{}, fmt.Errorf("router: cannot build the request for %s: %w", target, err)
	}
	req.Header.Set("Accept", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token.Reveal())
	}
	resp, err := hc.Do(req)
	if err != nil {
		// net/http names the URL without its password; the token travels
		// in a header, which errors do not quote.
		return Connection{}, fmt.Errorf("router: cannot reach the control plane for %s: %w: %w", target, ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return Connection{}, fmt.Errorf("router: cannot read the answer for %s: %w: %w", target, ErrUnavailable, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Connection{}, problem(resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var w wireConnection
	if err := json.Unmarshal(body, &w); err != nil {
		// The decoder's message may quote the body, which holds the secret.
		return Connection{}, fmt.Errorf("router: the answer for %s is not a connection", target)
	}
	return w.connection(target, scope)
}

// endpoint returns the router's URL for target and scope, with the extra
// query pairs after the scope. The base URL is never quoted back: it may
// carry credentials.
func (c *Client) endpoint(target Target, scope drivers.Scope, query []string) (string, error) {
	segs, err := target.segments()
	if err != nil {
		return "", err
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New("router: the base URL is not an http or https URL")
	}
	base, rawBase := strings.TrimSuffix(u.Path, "/"), strings.TrimSuffix(u.EscapedPath(), "/")
	escaped := make([]string, len(segs))
	for i, s := range segs {
		escaped[i] = url.PathEscape(s)
	}
	u.Path = base + "/" + strings.Join(segs, "/")
	u.RawPath = rawBase + "/" + strings.Join(escaped, "/")
	// Written by hand, not with url.Values, so the scope comes first as
	// the router's documentation shows it.
	q := "scope=" + url.QueryEscape(string(scope))
	for i := 0; i+1 < len(query); i += 2 {
		q += "&" + url.QueryEscape(query[i]) + "=" + url.QueryEscape(query[i+1])
	}
	u.RawQuery = q
	u.Fragment = ""
	return u.String(), nil
}

// connection checks that w is an answer to the question asked and holds what
// an application needs, and converts it.
func (w wireConnection) connection(target Target, scope drivers.Scope) (Connection, error) {
	var missing []string
	for _, f := range []struct{ name, value string }{
		{"environment_id", w.EnvironmentID},
		{"driver", w.Driver},
		{"dsn", w.DSN},
		{"credential_id", w.CredentialID},
	} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if w.RefreshAfter.IsZero() {
		missing = append(missing, "refresh_after")
	}
	if len(missing) > 0 {
		return Connection{}, fmt.Errorf("router: the answer for %s lacks %s", target, strings.Join(missing, ", "))
	}
	if drivers.Scope(w.Scope) != scope {
		return Connection{}, fmt.Errorf("router: asked %s for scope %s, answered %q", target, scope, w.Scope)
	}
	if target.EnvironmentID != "" && w.EnvironmentID != target.EnvironmentID {
		return Connection{}, fmt.Errorf("router: asked for %s, answered environment %s", target, w.EnvironmentID)
	}
	c := Connection{
		EnvironmentID: w.EnvironmentID,
		Organization:  w.Organization,
		Environment:   w.Environment,
		Driver:        w.Driver,
		Scope:         scope,
		DSN:           drivers.Secret(w.DSN),
		URL:           w.URL,
		Host:          w.Host,
		Port:          w.Port,
		Database:      w.Database,
		Username:      w.Username,
		Secret:        drivers.Secret(w.Secret),
		CredentialID:  w.CredentialID,
		RefreshAfter:  w.RefreshAfter,
	}
	if w.ExpiresAt != nil {
		c.ExpiresAt = *w.ExpiresAt
	}
	return c, nil
}
