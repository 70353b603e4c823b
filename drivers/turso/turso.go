// Package turso is envplane's driver for Turso: each environment's database is
// a Turso database in one group, created through the Turso Platform API, and
// its credentials are Turso database tokens (JWTs) with an expiry. Data-plane
// connections speak libSQL (Hrana over HTTP) through
// github.com/tursodatabase/libsql-client-go.
//
// Turso cannot revoke one token: RevokeCredential invalidates every token of
// the database, and the caller re-issues the credentials that should stay
// active (adr/0005-turso-credentials-and-revocation.md).
package turso

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tursodatabase/libsql-client-go/libsql"

	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/turso/platform"
)

// Config configures a Turso target. Organization, Group and Token are required.
type Config struct {
	// Organization is the Turso organization slug.
	Organization string
	// Group is the Turso group every database is created in; it must exist and
	// should hold only envplane's databases (CreateDatabase adopts a database of
	// the generated name found in it).
	Group string
	// Location is the group's primary location (e.g. "aws-eu-west-1"); databases
	// report it as their region and a request for another region is ErrUnsupported.
	// Empty accepts any region hint.
	Location string
	// BaseURL is the Platform API's root; platform.DefaultBaseURL when empty.
	BaseURL string
	// Token is the Platform API token. It is never logged or put in an error.
	Token drivers.Secret
	// HTTPClient sends Platform API requests and credential checks; http.DefaultClient when nil.
	HTTPClient *http.Client
	// Timeout bounds one Platform API attempt; 30s when zero.
	Timeout time.Duration
	// MaxAttempts bounds the attempts of one Platform API call; 4 when zero.
	MaxAttempts int
	// DatabaseURL maps a database's Turso hostname to the URL clients connect
	// to; "libsql://" + hostname when nil. Tests map it to a local server.
	DatabaseURL func(hostname string) string
	// Now reads the clock that token lifetimes are computed from; time.Now when nil.
	Now func() time.Time
	// Sleep waits between Platform API retries; a timer when nil. Tests pass one that does not wait.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Driver is the Turso driver. It is safe for concurrent use.
type Driver struct {
	cfg    Config
	client *platform.Client
}

var (
	_ drivers.Driver        = (*Driver)(nil)
	_ drivers.Cloner        = (*Driver)(nil)
	_ drivers.UsageReporter = (*Driver)(nil)
	_ drivers.HealthChecker = (*Driver)(nil)
)

// New returns a Turso driver. It fails when required configuration is missing;
// it does no I/O.
func New(cfg Config) (*Driver, error) {
	if cfg.Group == "" {
		return nil, errors.New("turso: group is required")
	}
	client, err := platform.New(platform.Config{
		BaseURL:      cfg.BaseURL,
		Organization: cfg.Organization,
		Token:        cfg.Token,
		HTTPClient:   cfg.HTTPClient,
		Timeout:      cfg.Timeout,
		MaxAttempts:  cfg.MaxAttempts,
		Now:          cfg.Now,
		Sleep:        cfg.Sleep,
	})
	if err != nil {
		return nil, err
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.DatabaseURL == nil {
		cfg.DatabaseURL = func(hostname string) string { return "libsql://" + hostname }
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Driver{cfg: cfg, client: client}, nil
}

// Name returns "turso".
func (d *Driver) Name() string { return "turso" }

// tursoName maps envplane's generated name to a Turso name: Turso allows only
// lowercase letters, digits and dashes, so the underscore becomes a dash. The
// mapping is one-to-one because generated names hold exactly one underscore.
func tursoName(name string) (string, error) {
	if !drivers.ValidDatabaseName(name) {
		return "", fmt.Errorf("turso: database name %q is not a generated name (env_ + 26 lowercase characters)", name)
	}
	return strings.Replace(name, "_", "-", 1), nil
}

// CreateDatabase creates the database in the configured group. A database of
// that name already in the group is envplane's and is success; one in another
// group is ErrExists. A region other than the group's location is ErrUnsupported.
func (d *Driver) CreateDatabase(ctx context.Context, req drivers.CreateDatabaseRequest) (drivers.CreateDatabaseResponse, error) {
	in, err := d.createInput(req.Name, req.Region)
	if err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	if req.StorageLimitMB > 0 {
		in.SizeLimit = strconv.Itoa(req.StorageLimitMB) + "mb"
	}
	return d.create(ctx, req.Name, in)
}

// CloneDatabase creates req.Name seeded from req.Source, a copy of its schema
// and rows at this moment. SchemaOnly is ErrUnsupported (Turso copies the
// whole database); a missing source is ErrNotFound. Idempotent like CreateDatabase.
func (d *Driver) CloneDatabase(ctx context.Context, req drivers.CloneDatabaseRequest) (drivers.CreateDatabaseResponse, error) {
	if req.SchemaOnly {
		return drivers.CreateDatabaseResponse{}, fmt.Errorf("turso: schema-only clone: %w", drivers.ErrUnsupported)
	}
	in, err := d.createInput(req.Name, req.Region)
	if err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	source, err := tursoName(req.Source.Name)
	if err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	if _, err := d.client.GetDatabase(ctx, source); err != nil {
		return drivers.CreateDatabaseResponse{}, fmt.Errorf("turso: clone source: %w", err)
	}
	in.Seed = &platform.Seed{Type: platform.SeedDatabase, Name: source}
	return d.create(ctx, req.Name, in)
}

// recoveryWindow is how far back Turso's recovery points go outside the
// scaler plan.
const recoveryWindow = 24 * time.Hour

// RecoveryWindow returns 24 hours, the Platform API's bound on a seed's
// timestamp (outside the scaler plan).
func (d *Driver) RecoveryWindow() time.Duration { return recoveryWindow }

// RestoreDatabaseAt creates req.Name seeded from req.Source as it was at
// req.At (a seed with a timestamp). ErrUnsupported when req.At is in the
// future or older than the recovery window; ErrNotFound when the source is
// absent. Idempotent like CreateDatabase.
func (d *Driver) RestoreDatabaseAt(ctx context.Context, req drivers.RestoreAtRequest) (drivers.CreateDatabaseResponse, error) {
	now := d.cfg.Now()
	if req.At.After(now) || req.At.Before(now.Add(-recoveryWindow)) {
		return drivers.CreateDatabaseResponse{}, fmt.Errorf("turso: %s is outside the %s recovery window: %w", req.At.UTC().Format(time.RFC3339), recoveryWindow, drivers.ErrUnsupported)
	}
	in, err := d.createInput(req.Name, req.Region)
	if err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	source, err := tursoName(req.Source.Name)
	if err != nil {
		return drivers.CreateDatabaseResponse{}, err
	}
	if _, err := d.client.GetDatabase(ctx, source); err != nil {
		return drivers.CreateDatabaseResponse{}, fmt.Errorf("turso: restore source: %w", err)
	}
	in.Seed = &platform.Seed{Type: platform.SeedDatabase, Name: source, Timestamp: req.At.UTC().Format(time.RFC3339)}
	return d.create(ctx, req.Name, in)
}

func (d *Driver) createInput(name, region string) (platform.CreateDatabaseInput, error) {
	tname, err := tursoName(name)
	if err != nil {
		return platform.CreateDatabaseInput{}, err
	}
	if region != "" && d.cfg.Location != "" && region != d.cfg.Location {
		return platform.CreateDatabaseInput{}, fmt.Errorf("turso: group %s is in %s, not %s: %w", d.cfg.Group, d.cfg.Location, region, drivers.ErrUnsupported)
	}
	return platform.CreateDatabaseInput{Name: tname, Group: d.cfg.Group}, nil
}

func (d *Driver) create(ctx context.Context, name string, in platform.CreateDatabaseInput) (drivers.CreateDatabaseResponse, error) {
	db, err := d.client.CreateDatabase(ctx, in)
	if errors.Is(err, drivers.ErrExists) {
		// A retried create, or a crash after Turso made it: adopt ours.
		existing, gerr := d.client.GetDatabase(ctx, in.Name)
		if gerr != nil {
			return drivers.CreateDatabaseResponse{}, fmt.Errorf("turso: look up existing database: %w", gerr)
		}
		if existing.Group != d.cfg.Group {
			return drivers.CreateDatabaseResponse{}, fmt.Errorf("turso: database %s exists in group %q, not envplane's %q: %w", in.Name, existing.Group, d.cfg.Group, drivers.ErrExists)
		}
		db, err = existing, nil
	}
	if err != nil {
		return drivers.CreateDatabaseResponse{}, fmt.Errorf("turso: %w", err)
	}
	if db.Hostname == "" {
		return drivers.CreateDatabaseResponse{}, fmt.Errorf("turso: database %s has no hostname", in.Name)
	}
	region := d.cfg.Location
	if region == "" {
		region = db.PrimaryRegion
	}
	return drivers.CreateDatabaseResponse{Database: drivers.Database{
		Name:   name,
		URL:    db.Hostname,
		Region: region,
		Metadata: map[string]string{
			"turso_name": in.Name,
			"turso_id":   db.DbID,
			"group":      d.cfg.Group,
		},
	}}, nil
}

// DropDatabase deletes the database, which ends every token of it, and a
// reset's staged database left beside it. Absent is success; a database of
// that name in another group is ErrExists and is left alone.
func (d *Driver) DropDatabase(ctx context.Context, req drivers.DropDatabaseRequest) (drivers.DropDatabaseResponse, error) {
	name, err := tursoName(req.Database.Name)
	if err != nil {
		return drivers.DropDatabaseResponse{}, err
	}
	// A reset abandoned half-way may have left its staged database.
	if err := d.DiscardReset(ctx, drivers.ResetRequest{Database: req.Database}); err != nil {
		return drivers.DropDatabaseResponse{}, err
	}
	if _, found, err := d.ours(ctx, name); err != nil || !found {
		return drivers.DropDatabaseResponse{}, err
	}
	if err := d.client.DeleteDatabase(ctx, name); err != nil {
		return drivers.DropDatabaseResponse{}, fmt.Errorf("turso: %w", err)
	}
	return drivers.DropDatabaseResponse{}, nil
}

// IssueCredential mints a database token: read-only for the readonly scope,
// full-access for admin and readwrite (Turso has no finer grant). Its lifetime
// runs to req.ExpiresAt, rounded up to the minute, or never ends when that is
// zero. The slot's previous token is not revoked: it ages out at its own
// expiry. ErrNotFound when the database is absent; an expiry already past is an error.
func (d *Driver) IssueCredential(ctx context.Context, req drivers.IssueCredentialRequest) (drivers.IssueCredentialResponse, error) {
	if !req.Scope.Valid() || !req.Slot.Valid() {
		return drivers.IssueCredentialResponse{}, fmt.Errorf("turso: scope %q slot %q: %w", req.Scope, req.Slot, drivers.ErrUnsupported)
	}
	name, err := tursoName(req.Database.Name)
	if err != nil {
		return drivers.IssueCredentialResponse{}, err
	}
	opts := platform.TokenOptions{Authorization: platform.FullAccess, Expiration: "never"}
	if req.Scope == drivers.ScopeReadOnly {
		opts.Authorization = platform.ReadOnly
	}
	if !req.ExpiresAt.IsZero() {
		ttl := req.ExpiresAt.Sub(d.cfg.Now())
		if ttl <= 0 {
			return drivers.IssueCredentialResponse{}, errors.New("turso: credential expiry is in the past")
		}
		opts.Expiration = expiration(ttl)
	}
	token, err := d.client.CreateDatabaseToken(ctx, name, opts)
	if err != nil {
		return drivers.IssueCredentialResponse{}, fmt.Errorf("turso: %w", err)
	}
	expires := req.ExpiresAt
	if exp, ok := tokenExpiry(token); ok {
		expires = exp
	}
	return drivers.IssueCredentialResponse{Credential: drivers.Credential{
		Scope:     req.Scope,
		Slot:      req.Slot,
		Secret:    token,
		ExpiresAt: expires,
	}}, nil
}

// expiration writes a duration, rounded up to the minute, in the API's syntax ("1d2h3m").
func expiration(ttl time.Duration) string {
	minutes := int64((ttl + time.Minute - 1) / time.Minute)
	var b strings.Builder
	for _, u := range []struct {
		unit string
		size int64
	}{{"d", 24 * 60}, {"h", 60}, {"m", 1}} {
		if n := minutes / u.size; n > 0 {
			b.WriteString(strconv.FormatInt(n, 10) + u.unit)
			minutes %= u.size
		}
	}
	return b.String()
}

// tokenExpiry reads the exp claim of a Turso token (a JWT) without verifying
// it: the value only informs the caller of when the token really ends.
func tokenExpiry(token drivers.Secret) (time.Time, bool) {
	parts := strings.Split(token.Reveal(), ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == 0 {
		return time.Time{}, false
	}
	return time.Unix(claims.Exp, 0), true
}

// RevokeCredential makes the credential stop working at once. Turso can only
// invalidate every token of a database, so every credential of the database
// stops working with it: the caller must re-issue the ones that stay active
// (adr/0005). Idempotent; an absent database is success.
func (d *Driver) RevokeCredential(ctx context.Context, req drivers.RevokeCredentialRequest) (drivers.RevokeCredentialResponse, error) {
	name, err := tursoName(req.Database.Name)
	if err != nil {
		return drivers.RevokeCredentialResponse{}, err
	}
	err = d.client.InvalidateDatabaseTokens(ctx, name)
	if err != nil && !errors.Is(err, drivers.ErrNotFound) {
		return drivers.RevokeCredentialResponse{}, fmt.Errorf("turso: %w", err)
	}
	return drivers.RevokeCredentialResponse{}, nil
}

// RevokesAllCredentials reports that RevokeCredential stops every credential
// of the database, not only the one named, because Turso can only invalidate
// all tokens of a database. A caller that finds it (by type assertion on an
// interface of its own) re-issues the credentials that must stay active after
// a revoke, and lets a rotated-out token age out at its expiry instead of
// revoking it at the end of the grace period (adr/0005). Always true; no I/O.
func (d *Driver) RevokesAllCredentials() bool { return true }

// databaseURL is where clients reach the database, without credentials.
func (d *Driver) databaseURL(db drivers.Database) (string, error) {
	if db.URL == "" {
		return "", fmt.Errorf("turso: database %s has no hostname recorded", db.Name)
	}
	return d.cfg.DatabaseURL(db.URL), nil
}

// Open checks the credential against the database with one query, then
// returns a libSQL pool that uses it. ErrDenied when Turso refuses the token
// (wrong database, invalidated, expired); ErrUnavailable when the database
// cannot be reached. The pool speaks Hrana over HTTP and has no interactive
// transactions (DialectLibSQL): atomic work is one Exec of
// "BEGIN; ...; COMMIT", which the client sends as one Hrana batch whose steps
// each run only if the previous one succeeded, with a ROLLBACK when the
// COMMIT did not run.
func (d *Driver) Open(ctx context.Context, req drivers.OpenRequest) (drivers.OpenResponse, error) {
	base, err := d.databaseURL(req.Database)
	if err != nil {
		return drivers.OpenResponse{}, err
	}
	if req.Credential.Secret == "" {
		return drivers.OpenResponse{}, fmt.Errorf("turso: empty token: %w", drivers.ErrDenied)
	}
	if err := d.check(ctx, base, req.Credential.Secret); err != nil {
		return drivers.OpenResponse{}, err
	}
	pool, err := libsqlPool(base, req.Credential.Secret)
	if err != nil {
		return drivers.OpenResponse{}, err
	}
	return drivers.OpenResponse{DB: pool, Dialect: drivers.DialectLibSQL}, nil
}

// libsqlPool is a pool of libSQL connections to base that present token.
// It dials nothing yet.
func libsqlPool(base string, token drivers.Secret) (*sql.DB, error) {
	inner, err := libsql.NewConnector(base, libsql.WithAuthToken(token.Reveal()))
	if err != nil {
		return nil, fmt.Errorf("turso: cannot configure the libsql client for %s", base)
	}
	return sql.OpenDB(tokenConnector{connect: inner.Connect}), nil
}

// tokenConnector makes libsql connections through a connector it holds only
// in a closure: fmt walks a *sql.DB's fields, its connector's included, and
// the libsql connector keeps the token in a string field that would print
// with the pool.
type tokenConnector struct {
	connect func(context.Context) (driver.Conn, error)
}

// Connect opens one libsql connection.
func (c tokenConnector) Connect(ctx context.Context) (driver.Conn, error) { return c.connect(ctx) }

// Driver returns the libsql driver.
func (c tokenConnector) Driver() driver.Driver { return libsql.Driver{} }

// check runs SELECT 1 over Hrana with the token and maps Turso's answer by
// status code, which the libsql client would only report as text.
func (d *Driver) check(ctx context.Context, base string, token drivers.Secret) error {
	endpoint, err := pipelineURL(base)
	if err != nil {
		return err
	}
	body := []byte(`{"requests":[{"type":"execute","stmt":{"sql":"SELECT 1"}}]}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("turso: cannot build credential check: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token.Reveal())
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.cfg.HTTPClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("turso: check credential: %w", ctx.Err())
		}
		return fmt.Errorf("turso: check credential at %s: %w", base, drivers.ErrUnavailable)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("turso: %s refused the token (%d): %w", base, resp.StatusCode, drivers.ErrDenied)
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("turso: %s: %w", base, drivers.ErrNotFound)
	default:
		return fmt.Errorf("turso: %s answered %d: %w", base, resp.StatusCode, drivers.ErrUnavailable)
	}
}

// pipelineURL turns a libsql:// (TLS) or http(s):// database URL into its Hrana endpoint.
func pipelineURL(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("turso: database URL %q does not parse", base)
	}
	switch u.Scheme {
	case "libsql":
		u.Scheme = "https"
	case "http", "https":
	default:
		return "", fmt.Errorf("turso: database URL scheme %q is not libsql, http or https", u.Scheme)
	}
	return u.JoinPath("v2", "pipeline").String(), nil
}

// Descriptor returns the database URL with the token as ?authToken= (the
// libsql client's DSN), the URL alone, and its parts. It does no I/O.
func (d *Driver) Descriptor(_ context.Context, req drivers.DescriptorRequest) (drivers.Descriptor, error) {
	base, err := d.databaseURL(req.Database)
	if err != nil {
		return drivers.Descriptor{}, err
	}
	u, err := url.Parse(base)
	if err != nil {
		return drivers.Descriptor{}, fmt.Errorf("turso: database URL %q does not parse", base)
	}
	port := 443
	if p := u.Port(); p != "" {
		port, _ = strconv.Atoi(p)
	} else if u.Scheme == "http" {
		port = 80
	}
	name := req.Database.Metadata["turso_name"]
	if name == "" {
		name, _ = tursoName(req.Database.Name)
	}
	return drivers.Descriptor{
		DSN:      drivers.Secret(base + "?authToken=" + url.QueryEscape(req.Credential.Secret.Reveal())),
		URL:      base,
		Host:     u.Hostname(),
		Port:     port,
		Database: name,
		Username: req.Credential.Username,
	}, nil
}

// Usage returns the database's storage size as Turso reports it; the
// Platform API tells no table or connection count, so those stay nil.
// ErrNotFound when absent.
func (d *Driver) Usage(ctx context.Context, db drivers.Database) (drivers.Usage, error) {
	name, err := tursoName(db.Name)
	if err != nil {
		return drivers.Usage{}, err
	}
	u, err := d.client.DatabaseUsage(ctx, name)
	if err != nil {
		return drivers.Usage{}, fmt.Errorf("turso: %w", err)
	}
	return drivers.Usage{SizeBytes: u.StorageBytes}, nil
}

// Health lists Turso's locations, which needs a reachable API and a valid
// token; any failure wraps ErrUnavailable. With a Location configured, it also
// checks that Turso still offers it.
func (d *Driver) Health(ctx context.Context) error {
	locations, err := d.client.ListLocations(ctx)
	if err != nil {
		if errors.Is(err, drivers.ErrUnavailable) {
			return fmt.Errorf("turso: %w", err)
		}
		return fmt.Errorf("turso: %w: %w", drivers.ErrUnavailable, err)
	}
	if d.cfg.Location != "" {
		if _, ok := locations[d.cfg.Location]; !ok {
			return fmt.Errorf("turso: location %s is not offered: %w", d.cfg.Location, drivers.ErrUnavailable)
		}
	}
	return nil
}
