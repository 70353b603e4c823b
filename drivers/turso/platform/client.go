// Package platform is a client for the parts of the Turso Platform API
// (https://api.turso.tech, described by shared/contracts/turso-platform-openapi.json)
// that envplane's Turso driver uses: databases, database tokens and locations.
//
// Every call retries 429, 5xx and network failures with exponential backoff and
// full jitter, honouring Retry-After, and never retries other 4xx answers.
// Errors are *Error values that wrap the drivers sentinels (404 → ErrNotFound,
// 409 → ErrExists, exhausted retries → ErrUnavailable) and keep Turso's message;
// the API token never appears in one.
package platform

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/envplane/envplane/drivers"
)

// DefaultBaseURL is Turso's Platform API.
const DefaultBaseURL = "https://api.turso.tech"

// Config configures a Client. Only Organization and Token are required.
type Config struct {
	// BaseURL is the API's root; DefaultBaseURL when empty. Tests point it at a double.
	BaseURL string
	// Organization is the organization slug every database call is made under.
	Organization string
	// Token is the Platform API token sent as a bearer token.
	Token drivers.Secret
	// HTTPClient sends the requests; http.DefaultClient when nil.
	HTTPClient *http.Client
	// Timeout bounds one attempt; 30s when zero.
	Timeout time.Duration
	// MaxAttempts bounds the attempts of one call, the first included; 4 when zero.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the exponential backoff between attempts
	// when Turso sends no Retry-After; 250ms and 5s when zero.
	MinBackoff, MaxBackoff time.Duration
	// MaxRetryAfter is the longest Retry-After the client waits for; a longer
	// one ends the call with ErrUnavailable at once. 1m when zero.
	MaxRetryAfter time.Duration
	// Now reads the clock (for Retry-After dates); time.Now when nil.
	Now func() time.Time
	// Sleep waits between attempts and returns early with ctx's error; a timer when nil.
	Sleep func(ctx context.Context, d time.Duration) error
	// Jitter picks the actual backoff in [0, d]; uniform random when nil.
	Jitter func(d time.Duration) time.Duration
}

// Client calls the Turso Platform API. It is safe for concurrent use.
type Client struct {
	cfg  Config
	base *url.URL
}

// New returns a Client with cfg's defaults filled in. It fails when the
// organization or token is missing or the base URL does not parse; it does no I/O.
func New(cfg Config) (*Client, error) {
	if cfg.Organization == "" {
		return nil, errors.New("turso platform: organization is required")
	}
	if cfg.Token == "" {
		return nil, errors.New("turso platform: token is required")
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	base, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || base.Scheme == "" || base.Host == "" {
		return nil, fmt.Errorf("turso platform: base URL %q is not an absolute URL", cfg.BaseURL)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 4
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if cfg.MaxRetryAfter == 0 {
		cfg.MaxRetryAfter = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	if cfg.Jitter == nil {
		cfg.Jitter = func(d time.Duration) time.Duration { return rand.N(d + 1) }
	}
	return &Client{cfg: cfg, base: base}, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Error is a failed Platform API call. It wraps a drivers sentinel when the
// failure has one, so callers test it with errors.Is.
type Error struct {
	// Op names the call, e.g. "create database env-x".
	Op string
	// Status is Turso's HTTP status, 0 when no answer arrived.
	Status int
	// Message is Turso's error message, or the network error, with the API token scrubbed.
	Message string
	kind    error
}

// Error describes the failure without any secret.
func (e *Error) Error() string {
	switch {
	case e.Status == 0:
		return fmt.Sprintf("%s: %v: %s", e.Op, e.kind, e.Message)
	case e.kind == nil:
		return fmt.Sprintf("%s: turso answered %d: %s", e.Op, e.Status, e.Message)
	default:
		return fmt.Sprintf("%s: %v: turso answered %d: %s", e.Op, e.kind, e.Status, e.Message)
	}
}

// Unwrap returns the drivers sentinel the failure maps to, or nil.
func (e *Error) Unwrap() error { return e.kind }

func kindOf(status int) error {
	switch {
	case status == http.StatusNotFound:
		return drivers.ErrNotFound
	case status == http.StatusConflict:
		return drivers.ErrExists
	case status == http.StatusTooManyRequests || status >= 500:
		return drivers.ErrUnavailable
	}
	return nil
}

// call is one logical API call: method, path under the base URL, query, JSON body.
type call struct {
	op     string
	method string
	path   string
	query  url.Values
	body   any
}

// do runs c with retries and decodes a 2xx answer into out (when out is not nil).
func (c *Client) do(ctx context.Context, cl call, out any) error {
	var payload []byte
	if cl.body != nil {
		var err error
		if payload, err = json.Marshal(cl.body); err != nil {
			return fmt.Errorf("%s: cannot encode request: %w", cl.op, err)
		}
	}
	for attempt := 1; ; attempt++ {
		status, header, body, err := c.attempt(ctx, cl, payload)
		var failure *Error
		var wait time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return fmt.Errorf("%s: %w", cl.op, ctx.Err())
			}
			failure = &Error{Op: cl.op, Message: c.scrub(err.Error()), kind: drivers.ErrUnavailable}
		case status >= 200 && status < 300:
			if out == nil || len(bytes.TrimSpace(body)) == 0 {
				return nil
			}
			if err := json.Unmarshal(body, out); err != nil {
				return fmt.Errorf("%s: cannot decode turso's answer: %w", cl.op, err)
			}
			return nil
		default:
			failure = &Error{Op: cl.op, Status: status, Message: c.scrub(message(body)), kind: kindOf(status)}
			if failure.kind != drivers.ErrUnavailable {
				return failure
			}
			if ra, ok := c.retryAfter(header.Get("Retry-After")); ok {
				if ra > c.cfg.MaxRetryAfter {
					return failure
				}
				wait = ra
			}
		}
		if attempt >= c.cfg.MaxAttempts {
			return failure
		}
		if wait == 0 {
			wait = c.cfg.Jitter(c.backoff(attempt))
		}
		if err := c.cfg.Sleep(ctx, wait); err != nil {
			return fmt.Errorf("%s: %w", cl.op, err)
		}
	}
}

// attempt sends one request bounded by the per-attempt timeout and reads the whole answer.
func (c *Client) attempt(ctx context.Context, cl call, payload []byte) (status int, header http.Header, data []byte, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	u := *c.base
	// cl.path is already escaped; keeping RawPath makes a name with a slash
	// stay one segment instead of becoming another route.
	u.RawPath = c.base.EscapedPath() + cl.path
	u.Path, err = url.PathUnescape(u.RawPath)
	if err != nil {
		return 0, nil, nil, err
	}
	if len(cl.query) > 0 {
		u.RawQuery = cl.query.Encode()
	}
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, u.String(), body)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token.Reveal())
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, err = io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, resp.Header, data, nil
}

// backoff returns the ceiling of the exponential backoff after the given attempt.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.cfg.MinBackoff
	for i := 1; i < attempt && d < c.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, c.cfg.MaxBackoff)
}

// retryAfter parses a Retry-After header: delay seconds or an HTTP date.
func (c *Client) retryAfter(v string) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second, true
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(at.Sub(c.cfg.Now()), 0), true
	}
	return 0, false
}

// message extracts Turso's {"error": "..."} message, or a short prefix of the body.
func message(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		return "(no message)"
	}
	return s
}

// scrub removes the API token from text that came from elsewhere, in case an
// answer or a transport error ever echoes it.
func (c *Client) scrub(s string) string {
	return strings.ReplaceAll(s, c.cfg.Token.Reveal(), "[redacted]")
}

func (c *Client) orgPath() string {
	return "/v1/organizations/" + url.PathEscape(c.cfg.Organization)
}

func (c *Client) databasePath(name string) string {
	return c.orgPath() + "/databases/" + url.PathEscape(name)
}
