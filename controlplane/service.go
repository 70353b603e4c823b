package controlplane

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/envplane/envplane/dataplane"
	"github.com/envplane/envplane/drivers"
)

// Target is a configured place where databases are created.
type Target struct {
	Name   string
	Region string
	Driver drivers.Driver
	// Capacity is the most databases the target takes; 0 means no limit.
	Capacity int
}

// Observer hears about the service's work, for metrics. Its methods must
// not block.
type Observer interface {
	// OperationFinished reports an operation that ended, how, and how long
	// after it was requested.
	OperationFinished(kind OperationKind, status OperationStatus, elapsed time.Duration)
	// TargetChecked reports what a probe or a driver's answer said of a
	// target: up or down.
	TargetChecked(target string, up bool)
}

// Service orchestrates the control plane: it authorizes every call with
// Authorize, keeps the registry in the Store, seals credentials with the
// Keyring and drives databases through the targets' drivers. Dependencies are
// exported fields; New sets defaults for the optional ones.
type Service struct {
	Store   Store
	Keyring Keyring
	// Targets are the configured targets, by name.
	Targets map[string]*Target
	// DefaultTarget is used when a request names neither target nor region.
	DefaultTarget string
	// Schema initializes every new database.
	Schema *dataplane.Initializer
	Logger *slog.Logger
	// Observer, when set, hears about finished operations (metrics).
	Observer Observer

	// Now and NewID are injected so state machines test deterministically.
	Now   func() time.Time
	NewID func(prefix string) string
	// Sleep waits between provisioning attempts; it returns early with the context's error.
	Sleep func(ctx context.Context, d time.Duration) error

	// Grace is how long a rotated credential keeps working (default 15m).
	Grace time.Duration
	// CredentialTTL gives the expiry of new credentials per environment type; 0 means none.
	CredentialTTL map[EnvironmentType]time.Duration
	// TokenTTL is the expiry of credentials on targets that cannot revoke
	// one credential (Turso) when the type sets none (default 30 days).
	TokenTTL time.Duration
	// Attempts is how many times a failing saga step is tried before compensation (default 3).
	Attempts int
	// Backoff is the wait before attempt n+1 within one run of an operation
	// (default 200ms × 2^n, capped at 10s, with jitter).
	Backoff func(attempt int) time.Duration
	// RetryBackoff is the wait before background work that failed n times in
	// a row is tried again: an operation whose compensation keeps failing,
	// a target's next probe while it is down, a scheduled rotation or a
	// revocation at grace end (default DefaultRetryBackoff: 5s doubling to
	// 5m, with jitter).
	RetryBackoff func(failures int) time.Duration
	// ProvisionTimeout bounds a provisioning: past it, the environment ends
	// failed with the reason, and its cleanup goes on in the background
	// (default 2m). StepTimeout bounds one attempt of a provisioning step
	// and one health probe (default 30s).
	ProvisionTimeout time.Duration
	StepTimeout      time.Duration
	// TargetCheck is how often an available target is probed (default 15s).
	TargetCheck time.Duration
	// LeaseOwner names this replica in operation leases. Lease is how long
	// an operation stays with its replica without renewal (default 5s), and
	// LeaseRenewal how often a running operation renews it (default 1s): a
	// replica that dies loses its operations to the next Tick of another
	// (or of itself restarted) once Lease has passed.
	LeaseOwner   string
	Lease        time.Duration
	LeaseRenewal time.Duration
	// CrashPoint, when set, is called with a point's name
	// ("<kind>.<step>.before" as a step starts, "<kind>.<step>.after" once
	// its effects are done and before they are recorded;
	// "credential.grace_end.revoke" as a grace's end, holding its slot's
	// lock, is about to revoke on the target). Production builds
	// leave it nil; the crash tests build a binary that kills itself there.
	CrashPoint func(point string)
	// DefaultMaxEnvironments is the quota of organizations created without
	// one; DefaultMaxStorageMB the storage quota (default 0: none).
	DefaultMaxEnvironments int
	DefaultMaxStorageMB    int
	// EnvironmentTTL gives the expiry of new environments per type when the
	// request sets none (default: none); MaxEnvironmentTTL bounds any
	// expiry from now (default 90 days).
	EnvironmentTTL    map[EnvironmentType]time.Duration
	MaxEnvironmentTTL time.Duration
	// IdempotencyTTL is how long an Idempotency-Key's answer is kept for
	// replay (default 24h).
	IdempotencyTTL time.Duration

	// RefreshWindow is the longest refresh_after the router hands out
	// (default 1m); a rotated credential outlives the last one handed out
	// for it by RevokeMargin (default 5s), so holders move before it ends.
	RefreshWindow time.Duration
	RevokeMargin  time.Duration
	// ChangePoll is how often Follow reads the change log (default 250ms);
	// cached answers are served only while the last successful read is at
	// most MaxStale old (default 30s).
	ChangePoll time.Duration
	MaxStale   time.Duration
	// ReceiptFlush is how often Follow writes buffered receipts (default
	// 1s); ReceiptRetention how long receipts are kept (default 30 days).
	ReceiptFlush     time.Duration
	ReceiptRetention time.Duration
	// MaxLiveCredentials caps active plus rotating credentials per database
	// and scope (default 2); MaxIssuedPerHour caps credentials issued per
	// environment in any hour (default 60). 0 means no cap.
	MaxLiveCredentials int
	MaxIssuedPerHour   int
	// UsageInterval is how often each database's usage is measured
	// (default 5m); UsageBatch caps the measurements of one Tick
	// (default 100), so a pass costs what is due, not what exists.
	UsageInterval time.Duration
	UsageBatch    int
	// People configures sign-in, sessions and invitations (adr/0023).
	People PeopleConfig
	// RolloutWaves orders a rollout's environments by type when the
	// request gives no order (default DefaultRolloutWaves);
	// RolloutParallelism is how many migrate at once (default 4).
	RolloutWaves       [][]EnvironmentType
	RolloutParallelism int
	// Backups is where backups are kept; nil means backups are off (503).
	// BackupSchedule gives, per environment type, how often Tick takes a
	// backup (none for a type absent); BackupRetention what is kept.
	Backups         BackupStore
	BackupSchedule  map[EnvironmentType]time.Duration
	BackupRetention map[EnvironmentType]BackupRetention

	ops      runner
	rollouts rolloutRuns
	retry    retries
	cache    *routeCache
	feed     changeFeed
	hub      watchHub
	receipts *receiptBuffer
}

// Defaults of the router's cache: how many answers and principals it
// holds, and how long one is trusted at most even if no change names it.
const (
	DefaultCacheSize = 100_000
	DefaultCacheTTL  = 5 * time.Minute
	// DefaultReceiptBuffer bounds the receipts buffered between flushes;
	// past it, resolutions are counted as dropped instead of recorded.
	DefaultReceiptBuffer = 100_000
)

// New returns a Service with defaults set for every optional dependency.
func New(store Store, keyring Keyring, targets []*Target, defaultTarget string) *Service {
	m := make(map[string]*Target, len(targets))
	for _, t := range targets {
		m[t.Name] = t
	}
	return &Service{
		Store:                  store,
		Keyring:                keyring,
		Targets:                m,
		DefaultTarget:          defaultTarget,
		Logger:                 slog.New(slog.DiscardHandler),
		Now:                    func() time.Time { return time.Now().UTC() },
		NewID:                  NewID,
		Sleep:                  sleepContext,
		Grace:                  15 * time.Minute,
		CredentialTTL:          map[EnvironmentType]time.Duration{},
		TokenTTL:               30 * 24 * time.Hour,
		Attempts:               3,
		Backoff:                defaultBackoff,
		RetryBackoff:           DefaultRetryBackoff,
		ProvisionTimeout:       2 * time.Minute,
		StepTimeout:            30 * time.Second,
		TargetCheck:            15 * time.Second,
		LeaseOwner:             "replica-" + strings.ToLower(ulid.Make().String()),
		Lease:                  5 * time.Second,
		LeaseRenewal:           time.Second,
		DefaultMaxEnvironments: 100,
		EnvironmentTTL:         map[EnvironmentType]time.Duration{},
		MaxEnvironmentTTL:      90 * 24 * time.Hour,
		IdempotencyTTL:         24 * time.Hour,
		RefreshWindow:          time.Minute,
		RevokeMargin:           5 * time.Second,
		ChangePoll:             250 * time.Millisecond,
		MaxStale:               30 * time.Second,
		ReceiptFlush:           time.Second,
		ReceiptRetention:       30 * 24 * time.Hour,
		MaxLiveCredentials:     2,
		MaxIssuedPerHour:       60,
		UsageInterval:          5 * time.Minute,
		UsageBatch:             100,
		People:                 DefaultPeopleConfig(),
		RolloutWaves:           DefaultRolloutWaves(),
		RolloutParallelism:     4,
		cache:                  newRouteCache(DefaultCacheSize, DefaultCacheTTL),
		feed:                   changeFeed{last: -1},
		receipts:               newReceiptBuffer(DefaultReceiptBuffer),
	}
}

// ConfigureCache sizes the router's cache (0 entries turns it off) and sets
// how long an entry is trusted at most. Call it before serving.
func (s *Service) ConfigureCache(size int, ttl time.Duration) {
	s.cache = newRouteCache(size, ttl)
}

// EnableReceipts turns resolution receipts on or off (on by default). It is
// safe to call while serving.
func (s *Service) EnableReceipts(on bool) { s.receipts.off.Store(!on) }

// NewID returns a new id: the prefix, an underscore and a lowercase ULID, so
// ids sort by creation time and never look like a slug. The ULID's entropy is
// monotonic within a millisecond (ulid.Make), so ids made in the same
// millisecond still sort in the order they were made.
func NewID(prefix string) string {
	return prefix + "_" + strings.ToLower(ulid.Make().String())
}

// newDatabaseName returns a generated database name: "env_" and 26 lowercase characters.
func newDatabaseName() string {
	return "env_" + strings.ToLower(ulid.MustNew(ulid.Now(), rand.Reader).String())
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func defaultBackoff(attempt int) time.Duration {
	return jitter(min(200*time.Millisecond<<min(attempt, 6), 10*time.Second))
}

type requestIDKey struct{}

// WithRequestID returns a context carrying the request id that audit events record.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id carried by ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// actor names a principal in audit events: the user, or the app key.
func actor(p *Principal) string {
	switch {
	case p == nil:
		return "system"
	case p.UserID != "":
		return "user:" + p.UserID
	case p.KeyID == "" && p.PlatformAdmin:
		return "operator"
	default:
		return "key:" + p.KeyID
	}
}

// additive lists the audited actions that cannot change an answer the
// router or the authentication cache already gave: they create, only ask,
// or only report (a storage limit crossed leaves every connection answer
// as it was). Every other audited action marks its organization changed.
func additive(action string) bool {
	switch action {
	case "platform.bootstrapped", "organization.created", "environment.created", "api_key.created",
		"member.added", "schema.migrated", "credentials.rotate_requested", "credentials.revoke_requested",
		"credentials.rotate_scheduled", "credentials.budget_exceeded", "environment.expiring",
		// A storage limit crossed changes no connection answer.
		"environment.over_limit", "environment.under_limit",
		// A target's health changes no answer: it is the platform's news.
		"target.available", "target.unavailable",
		// Sessions are never cached, and invitations grant nothing until accepted.
		"session.created", "session.signin_failed", "session.revoked", "session.context_set", "member.sessions_revoked",
		"invitation.created", "invitation.resent", "invitation.revoked", "invitation.accepted",
		"user.totp_enrolled", "user.password_set",
		// A rollout's own events; the migrations it runs change no answer.
		"rollout.created", "rollout.pause", "rollout.resume", "rollout.cancel", "rollout.finished",
		// Showing a secret to a person changes nothing.
		"connection.revealed":
		return true
	}
	return false
}

// audit appends an audit event through q (inside the mutation's
// transaction) and, unless the action is additive, marks the organization
// changed for the router's caches (s.changed).
func (s *Service) audit(ctx context.Context, q Queries, p *Principal, orgID, envID, action, target string, details map[string]any) error {
	e := &AuditEvent{
		ID:            s.NewID("evt"),
		OrgID:         orgID,
		EnvironmentID: envID,
		Actor:         actor(p),
		Action:        action,
		Target:        target,
		Details:       details,
		RequestID:     RequestID(ctx),
		CreatedAt:     s.Now(),
	}
	if err := q.AppendAuditEvent(ctx, e); err != nil {
		return fmt.Errorf("cannot append audit event: %w", err)
	}
	if additive(action) {
		return nil
	}
	return s.changed(ctx, q, orgID)
}

// target returns the named target, or ENOTFOUND-as-EINVALID for the field.
func (s *Service) target(name string) (*Target, error) {
	t, ok := s.Targets[name]
	if !ok {
		return nil, Invalid(FieldError{Field: "target", Message: "unknown target"})
	}
	return t, nil
}
