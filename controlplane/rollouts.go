package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/envplane/envplane/dataplane"
)

// Fleet rollouts of app migrations, in one place (adr/0022): the requests
// that create, read, pause, resume and cancel a rollout; the runner that
// advances it in the background under a lease; and the migrate operation
// that moves one environment, leased and resumable like every operation.

// OpMigrate is the operation that applies app migrations up to a version to
// one environment's database, for a rollout.
const OpMigrate OperationKind = "migrate"

// stepMigrate is the migrate operation's one step.
const stepMigrate = "migrate"

// RolloutStatus is where a rollout is.
type RolloutStatus string

// Rollout statuses: running ⇄ paused; running → succeeded or failed (an
// environment failed); running or paused → cancelled.
const (
	RolloutRunning   RolloutStatus = "running"
	RolloutPaused    RolloutStatus = "paused"
	RolloutSucceeded RolloutStatus = "succeeded"
	RolloutFailed    RolloutStatus = "failed"
	RolloutCancelled RolloutStatus = "cancelled"
)

// RolloutItemStatus is where one environment of a rollout is.
type RolloutItemStatus string

// Rollout item statuses.
const (
	ItemPending   RolloutItemStatus = "pending"
	ItemRunning   RolloutItemStatus = "running"
	ItemSucceeded RolloutItemStatus = "succeeded"
	ItemFailed    RolloutItemStatus = "failed"
	ItemSkipped   RolloutItemStatus = "skipped"
)

// Done reports whether the item has finished, either way.
func (s RolloutItemStatus) Done() bool {
	return s == ItemSucceeded || s == ItemFailed || s == ItemSkipped
}

// Error policies of a rollout.
const (
	OnErrorHalt     = "halt"
	OnErrorContinue = "continue"
)

// DefaultRolloutWaves is the order environments are migrated in when
// neither the request nor the configuration gives one: what developers
// use first, production last.
func DefaultRolloutWaves() [][]EnvironmentType {
	return [][]EnvironmentType{
		{TypeDevelopment, TypeSandbox, TypePreview, TypeTrial, TypeDefault},
		{TypeTest},
		{TypeStaging},
		{TypeProduction},
	}
}

// Rollout applies the configured app migrations up to Version across the
// environments of one organization (OrgID) or, for the platform admin, of
// every organization (OrgID empty), phase by phase: the Canary first
// environments alone (phase 0), then one phase per wave of types.
type Rollout struct {
	ID    string `json:"id"`
	OrgID string `json:"organization_id,omitempty"`
	// Version is the app migration version environments are moved to.
	Version     int64               `json:"version"`
	Waves       [][]EnvironmentType `json:"waves"`
	Parallelism int                 `json:"parallelism"`
	Canary      int                 `json:"canary"`
	OnError     string              `json:"on_error"`
	// PauseSeconds is the wait between two phases.
	PauseSeconds int           `json:"pause_seconds"`
	Status       RolloutStatus `json:"status"`
	// Phase is the phase being migrated (0 is the canary).
	Phase int `json:"phase"`
	// Error says why a rollout failed.
	Error      string     `json:"error,omitempty"`
	CreatedBy  string     `json:"created_by"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// NextAt is when the runner may take the rollout up again (a pause
	// between phases).
	NextAt         time.Time  `json:"-"`
	LeaseOwner     string     `json:"-"`
	LeaseExpiresAt *time.Time `json:"-"`
}

// RolloutItem is one environment of a rollout and what happened to it.
type RolloutItem struct {
	RolloutID     string          `json:"-"`
	EnvironmentID string          `json:"environment_id"`
	OrgID         string          `json:"organization_id"`
	Environment   string          `json:"environment"`
	Type          EnvironmentType `json:"type"`
	// Phase is when the environment is migrated; Position its place in
	// the rollout's order.
	Phase    int               `json:"phase"`
	Position int               `json:"position"`
	Status   RolloutItemStatus `json:"status"`
	// Reason says why the environment was skipped or failed.
	Reason      string `json:"reason,omitempty"`
	OperationID string `json:"operation_id,omitempty"`
	// SchemaVersion is the environment's version once migrated.
	SchemaVersion int64     `json:"schema_version,omitempty"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// RolloutCounts counts a rollout's environments by status.
type RolloutCounts struct {
	Total     int `json:"total"`
	Pending   int `json:"pending"`
	Running   int `json:"running"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	Skipped   int `json:"skipped"`
}

// RolloutView is a rollout with its environments.
type RolloutView struct {
	Rollout      *Rollout       `json:"rollout"`
	Counts       RolloutCounts  `json:"counts"`
	Environments []*RolloutItem `json:"environments"`
}

// CreateRolloutRequest is the body of POST …/rollouts.
type CreateRolloutRequest struct {
	// Version is the app version to reach; omitted means the newest
	// configured.
	Version *int64 `json:"version,omitempty"`
	// Waves orders environment types; omitted means the configured order.
	// Environments of a type in no wave are left out.
	Waves [][]EnvironmentType `json:"waves,omitempty"`
	// Parallelism is how many environments migrate at once; omitted means
	// the configured default.
	Parallelism *int `json:"parallelism,omitempty"`
	// Canary is how many of the first environments migrate alone first.
	Canary int `json:"canary,omitempty"`
	// OnError is halt (default: stop at the first failure) or continue.
	OnError string `json:"on_error,omitempty"`
	// PauseSeconds waits between phases.
	PauseSeconds int `json:"pause_seconds,omitempty"`
}

// RolloutQueries are the store's reads and writes of rollouts (part of Queries).
type RolloutQueries interface {
	// CreateRollout inserts r and its items. ECONFLICT if r's organization
	// (or, for a platform-wide rollout, the platform) has an unfinished one.
	CreateRollout(ctx context.Context, r *Rollout, items []*RolloutItem) error
	// GetRollout finds a rollout of the organization (orgID empty: a
	// platform-wide one). ENOTFOUND if absent or another's.
	GetRollout(ctx context.Context, orgID, id string) (*Rollout, error)
	// ListRollouts lists the organization's rollouts (orgID empty: the
	// platform-wide ones), newest first; the cursor is the id below which
	// the page starts.
	ListRollouts(ctx context.Context, orgID string, p Page) (rs []*Rollout, next string, err error)
	// HasUnfinishedRollout reports whether any rollout is unfinished;
	// with orgID set, only that organization's and platform-wide ones.
	HasUnfinishedRollout(ctx context.Context, orgID string) (bool, error)
	// ListRolloutItems lists a rollout's items by position.
	ListRolloutItems(ctx context.Context, rolloutID string) ([]*RolloutItem, error)
	// UpdateRolloutItem saves the item's status, reason, operation_id,
	// schema_version and updated_at. ENOTFOUND if absent.
	UpdateRolloutItem(ctx context.Context, it *RolloutItem) error
	// SetRolloutStatus saves r's status, error, finished_at and
	// updated_at, only while the stored status is one of from (any when
	// from is empty) and the rollout is unfinished. ECONFLICT otherwise;
	// ENOTFOUND if absent.
	SetRolloutStatus(ctx context.Context, r *Rollout, from ...RolloutStatus) error
	// ClaimRollouts leases to owner until until up to limit unfinished
	// rollouts that are not paused, whose lease is free or expired at now
	// and whose next_at has passed (a cancelled one at once). Concurrent
	// claimers never get the same rollout.
	ClaimRollouts(ctx context.Context, owner string, now, until time.Time, limit int) ([]*Rollout, error)
	// RenewRolloutLease extends to until the lease owner holds on an
	// unfinished rollout, touching nothing else. ECONFLICT if owner no
	// longer holds it; ENOTFOUND if absent.
	RenewRolloutLease(ctx context.Context, id, owner string, until time.Time) error
	// UpdateRolloutLease saves r's phase, next_at, lease and updated_at,
	// only while r.LeaseOwner holds the lease. ECONFLICT if it was lost.
	UpdateRolloutLease(ctx context.Context, r *Rollout) error
}

// migrateParams is a migrate operation's input.
type migrateParams struct {
	RolloutID string `json:"rollout_id"`
	Version   int64  `json:"version"`
}

// migrateOutcome is a finished migrate operation's response.
type migrateOutcome struct {
	SchemaVersion int64  `json:"schema_version"`
	Skipped       string `json:"skipped,omitempty"`
}

// rolloutScope resolves who asks for a rollout: an organization's owner or
// admin (orgRef set), or the platform admin for a platform-wide rollout.
// It returns the organization id, empty for platform-wide, and ctx scoped
// to that organization, or to the platform for a platform-wide rollout.
func (s *Service) rolloutScope(ctx context.Context, p *Principal, orgRef string) (context.Context, string, error) {
	if orgRef == "" {
		if p == nil {
			return ctx, "", Errorf(EUNAUTHORIZED, "authentication required")
		}
		if err := Authorize(Subject{Principal: p}, ActPlatformRollout, Resource{}); err != nil {
			return ctx, "", err
		}
		// A platform-wide rollout spans every organization (ADR 0027).
		return WithPlatformScope(ctx), "", nil
	}
	ctx, a, err := s.orgAccess(ctx, p, orgRef, ActRollout)
	if err != nil {
		return ctx, "", err
	}
	return ctx, a.org.ID, nil
}

// CreateRollout starts a rollout of the app migrations up to req.Version
// over the organization's environments (orgRef empty: every
// organization's, platform admin only) and returns it running. Invalid
// fields are EINVALID naming the field; ECONFLICT while another rollout of
// the organization (or a platform-wide one) is unfinished.
func (s *Service) CreateRollout(ctx context.Context, p *Principal, orgRef string, req CreateRolloutRequest) (*RolloutView, error) {
	ctx, orgID, err := s.rolloutScope(ctx, p, orgRef)
	if err != nil {
		return nil, err
	}
	r, err := s.newRollout(p, orgID, req)
	if err != nil {
		return nil, err
	}
	var items []*RolloutItem
	err = s.tx(ctx, func(q Queries) error {
		busy, err := q.HasUnfinishedRollout(ctx, orgID)
		if err != nil {
			return err
		}
		if busy {
			return Errorf(ECONFLICT, "another rollout is unfinished")
		}
		if items, err = s.rolloutItems(ctx, q, r); err != nil {
			return err
		}
		if err := q.CreateRollout(ctx, r, items); err != nil {
			if IsCode(err, ECONFLICT) {
				return Errorf(ECONFLICT, "another rollout is unfinished")
			}
			return err
		}
		return s.audit(ctx, q, p, orgID, "", "rollout.created", r.ID, map[string]any{"version": r.Version, "environments": len(items)})
	})
	if err != nil {
		return nil, err
	}
	// The runner changes r and items from now on: answer with copies.
	answer := *r
	shown := make([]*RolloutItem, len(items))
	for i, it := range items {
		c := *it
		shown[i] = &c
	}
	s.startRollout(r)
	return rolloutView(&answer, shown), nil
}

// newRollout checks req and returns the rollout it asks for, leased to
// this replica.
func (s *Service) newRollout(p *Principal, orgID string, req CreateRolloutRequest) (*Rollout, error) {
	var fields []FieldError
	versions, err := s.appVersions()
	if err != nil {
		return nil, err
	}
	var version int64
	switch {
	case len(versions) == 0:
		fields = append(fields, FieldError{Field: "version", Message: "no app migrations are configured"})
	case req.Version == nil:
		version = versions[len(versions)-1]
	case *req.Version <= 0:
		fields = append(fields, FieldError{Field: "version", Message: "must be positive"})
	case !slices.Contains(versions, *req.Version):
		fields = append(fields, FieldError{Field: "version", Message: fmt.Sprintf("is not a configured app migration (newest is %d)", versions[len(versions)-1])})
	default:
		version = *req.Version
	}
	waves := req.Waves
	if waves == nil {
		waves = s.RolloutWaves
	}
	if err := checkWaves(waves); err != "" {
		fields = append(fields, FieldError{Field: "waves", Message: err})
	}
	parallelism := s.RolloutParallelism
	if req.Parallelism != nil {
		parallelism = *req.Parallelism
	}
	switch {
	case parallelism <= 0:
		fields = append(fields, FieldError{Field: "parallelism", Message: "must be positive"})
	case parallelism > MaxRolloutParallelism:
		fields = append(fields, FieldError{Field: "parallelism", Message: fmt.Sprintf("must be at most %d", MaxRolloutParallelism)})
	}
	if req.Canary < 0 {
		fields = append(fields, FieldError{Field: "canary", Message: "must not be negative"})
	}
	onError := req.OnError
	if onError == "" {
		onError = OnErrorHalt
	}
	if onError != OnErrorHalt && onError != OnErrorContinue {
		fields = append(fields, FieldError{Field: "on_error", Message: "must be halt or continue"})
	}
	if req.PauseSeconds < 0 || req.PauseSeconds > 86400 {
		fields = append(fields, FieldError{Field: "pause_seconds", Message: "must be between 0 and 86400"})
	}
	if len(fields) > 0 {
		return nil, Invalid(fields...)
	}
	now := s.Now()
	until := now.Add(s.Lease)
	return &Rollout{
		ID: s.NewID("ro"), OrgID: orgID, Version: version, Waves: waves, Parallelism: parallelism,
		Canary: req.Canary, OnError: onError, PauseSeconds: req.PauseSeconds, Status: RolloutRunning,
		CreatedBy: actor(p), CreatedAt: now, UpdatedAt: now, NextAt: now,
		LeaseOwner: s.LeaseOwner, LeaseExpiresAt: &until,
	}, nil
}

// MaxRolloutParallelism caps how many environments one rollout migrates at once.
const MaxRolloutParallelism = 64

// CheckRolloutWaves returns an error saying what is wrong with waves: none,
// an empty wave, an unknown type, or a type in two waves.
func CheckRolloutWaves(waves [][]EnvironmentType) error {
	if msg := checkWaves(waves); msg != "" {
		return errors.New(msg)
	}
	return nil
}

// checkWaves returns what is wrong with waves, "" when nothing is.
func checkWaves(waves [][]EnvironmentType) string {
	if len(waves) == 0 {
		return "must name at least one wave"
	}
	seen := map[EnvironmentType]bool{}
	for _, w := range waves {
		if len(w) == 0 {
			return "a wave must name at least one environment type"
		}
		for _, t := range w {
			if !t.Valid() {
				return fmt.Sprintf("unknown environment type %q", t)
			}
			if seen[t] {
				return fmt.Sprintf("type %q is in two waves", t)
			}
			seen[t] = true
		}
	}
	return ""
}

// appVersions returns the configured app migration versions.
func (s *Service) appVersions() ([]int64, error) {
	if s.Schema == nil {
		return nil, nil
	}
	v, err := s.Schema.AppVersions()
	if err != nil {
		return nil, fmt.Errorf("cannot read the app migrations: %w", err)
	}
	return v, nil
}

// rolloutItems lists the live environments a rollout covers, in wave order
// (then by age), and sets r.Phase to the first phase that has any.
func (s *Service) rolloutItems(ctx context.Context, q Queries, r *Rollout) ([]*RolloutItem, error) {
	wave := map[EnvironmentType]int{}
	for i, w := range r.Waves {
		for _, t := range w {
			wave[t] = i
		}
	}
	orgIDs := []string{r.OrgID}
	if r.OrgID == "" {
		orgIDs = nil
		for cursor := ""; ; {
			orgs, next, err := q.ListOrganizations(ctx, nil, Page{Limit: MaxPageLimit, Cursor: cursor})
			if err != nil {
				return nil, err
			}
			for _, o := range orgs {
				orgIDs = append(orgIDs, o.ID)
			}
			if next == "" {
				break
			}
			cursor = next
		}
	}
	var envs []*Environment
	for _, orgID := range orgIDs {
		for cursor := ""; ; {
			page, next, err := q.ListEnvironments(ctx, EnvironmentFilter{OrgID: orgID}, Page{Limit: MaxPageLimit, Cursor: cursor})
			if err != nil {
				return nil, err
			}
			for _, e := range page {
				if _, ok := wave[e.Type]; ok {
					envs = append(envs, e)
				}
			}
			if next == "" {
				break
			}
			cursor = next
		}
	}
	// Ids sort by creation time: within a wave, oldest first.
	slices.SortStableFunc(envs, func(a, b *Environment) int {
		if c := wave[a.Type] - wave[b.Type]; c != 0 {
			return c
		}
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	items := make([]*RolloutItem, len(envs))
	for i, e := range envs {
		phase := 1 + wave[e.Type]
		if i < r.Canary {
			phase = 0
		}
		items[i] = &RolloutItem{RolloutID: r.ID, EnvironmentID: e.ID, OrgID: e.OrgID, Environment: e.Slug, Type: e.Type,
			Phase: phase, Position: i, Status: ItemPending, UpdatedAt: r.CreatedAt}
	}
	if len(items) > 0 {
		r.Phase = items[0].Phase
	}
	return items, nil
}

// rolloutView counts items into a view of r.
func rolloutView(r *Rollout, items []*RolloutItem) *RolloutView {
	v := &RolloutView{Rollout: r, Environments: items}
	if v.Environments == nil {
		v.Environments = []*RolloutItem{}
	}
	for _, it := range items {
		v.Counts.Total++
		switch it.Status {
		case ItemPending:
			v.Counts.Pending++
		case ItemRunning:
			v.Counts.Running++
		case ItemSucceeded:
			v.Counts.Succeeded++
		case ItemFailed:
			v.Counts.Failed++
		case ItemSkipped:
			v.Counts.Skipped++
		}
	}
	return v
}

// GetRollout returns a rollout with each environment's status (owner,
// admin; orgRef empty: a platform-wide rollout, platform admin). ENOTFOUND
// if absent or another organization's.
func (s *Service) GetRollout(ctx context.Context, p *Principal, orgRef, id string) (*RolloutView, error) {
	ctx, orgID, err := s.rolloutScope(ctx, p, orgRef)
	if err != nil {
		return nil, err
	}
	if !validCursor(id) {
		return nil, Errorf(ENOTFOUND, "rollout not found")
	}
	r, err := s.Store.GetRollout(ctx, orgID, id)
	if err != nil {
		return nil, err
	}
	items, err := s.Store.ListRolloutItems(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	return rolloutView(r, items), nil
}

// ListRollouts lists rollouts, newest first (owner, admin; orgRef empty:
// the platform-wide ones, platform admin).
func (s *Service) ListRollouts(ctx context.Context, p *Principal, orgRef string, page Page) ([]*Rollout, string, error) {
	ctx, orgID, err := s.rolloutScope(ctx, p, orgRef)
	if err != nil {
		return nil, "", err
	}
	if err := page.Check(); err != nil {
		return nil, "", err
	}
	return s.Store.ListRollouts(ctx, orgID, page)
}

// Rollout controls.
const (
	RolloutPause  = "pause"
	RolloutResume = "resume"
	RolloutCancel = "cancel"
)

// ControlRollout pauses, resumes or cancels a rollout (owner, admin; orgRef
// empty: a platform-wide one, platform admin). Pausing lets the migrations
// running finish and starts no more; cancelling also skips every
// environment not yet started. Pausing a paused rollout or resuming a
// running one is answered as it is; anything else on a finished rollout,
// or resuming a cancelled one, is ECONFLICT.
func (s *Service) ControlRollout(ctx context.Context, p *Principal, orgRef, id, control string) (*RolloutView, error) {
	ctx, orgID, err := s.rolloutScope(ctx, p, orgRef)
	if err != nil {
		return nil, err
	}
	if !validCursor(id) {
		return nil, Errorf(ENOTFOUND, "rollout not found")
	}
	var to RolloutStatus
	var from []RolloutStatus
	switch control {
	case RolloutPause:
		to, from = RolloutPaused, []RolloutStatus{RolloutRunning}
	case RolloutResume:
		to, from = RolloutRunning, []RolloutStatus{RolloutPaused}
	case RolloutCancel:
		to, from = RolloutCancelled, []RolloutStatus{RolloutRunning, RolloutPaused}
	default:
		return nil, Errorf(EINTERNAL, "unknown rollout control %q", control)
	}
	err = s.tx(ctx, func(q Queries) error {
		r, err := q.GetRollout(ctx, orgID, id)
		if err != nil {
			return err
		}
		if r.Status == to {
			return nil
		}
		if !slices.Contains(from, r.Status) {
			return Errorf(ECONFLICT, "the rollout is %s", r.Status)
		}
		r.Status, r.UpdatedAt = to, s.Now()
		if err := q.SetRolloutStatus(ctx, r, from...); err != nil {
			return err
		}
		return s.audit(ctx, q, p, orgID, "", "rollout."+control, r.ID, nil)
	})
	if err != nil {
		return nil, err
	}
	if to != RolloutPaused {
		if _, err := s.AdvanceRollouts(ctx); err != nil {
			s.Logger.Warn("cannot take up rollouts", "err", err)
		}
	}
	return s.GetRollout(ctx, p, orgRef, id)
}

// AdvanceRollouts claims unfinished rollouts that are not paused, whose
// lease is free (their runner stopped or died) and whose wait between
// phases has passed (cancelled ones at once), and drives each in
// the background. Every replica runs it (Tick); the store's leases make
// sure one runner drives a rollout at a time. It returns how many it claimed.
func (s *Service) AdvanceRollouts(ctx context.Context) (int, error) {
	// Platform-wide background work: every organization's rows (ADR 0027).
	ctx = WithPlatformScope(ctx)
	now := s.Now()
	rs, err := s.Store.ClaimRollouts(ctx, s.LeaseOwner, now, now.Add(s.Lease), 10)
	if err != nil {
		return 0, fmt.Errorf("cannot claim rollouts: %w", err)
	}
	for _, r := range rs {
		s.startRollout(r)
	}
	return len(rs), nil
}

// rolloutRuns tracks the rollouts this process drives. A rollout claimed
// again while its runner is finishing (it handed its lease back a moment
// ago) is driven again by that runner, never by two at once.
type rolloutRuns struct {
	mu      sync.Mutex
	running map[string]bool
	again   map[string]*Rollout
}

// startRollout drives r in the background, tracked like operations so
// Wait and Shutdown include it.
func (s *Service) startRollout(r *Rollout) {
	rr := &s.rollouts
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if rr.running == nil {
		rr.running, rr.again = map[string]bool{}, map[string]*Rollout{}
	}
	if rr.running[r.ID] {
		rr.again[r.ID] = r
		return
	}
	rr.running[r.ID] = true
	s.ops.mu.Lock()
	if s.ops.done == nil {
		s.ops.done = map[string]chan struct{}{}
		// Operations and rollouts are platform-wide background work (ADR 0027).
		s.ops.ctx, s.ops.cancel = context.WithCancel(WithPlatformScope(context.Background()))
	}
	ctx := s.ops.ctx
	s.ops.wg.Add(1)
	s.ops.mu.Unlock()
	go func() {
		defer s.ops.wg.Done()
		for {
			if err := s.driveRollout(ctx, r); err != nil && ctx.Err() == nil {
				s.Logger.Error("rollout stopped", "rollout", r.ID, "err", err)
			}
			rr.mu.Lock()
			next := rr.again[r.ID]
			delete(rr.again, r.ID)
			if next == nil || ctx.Err() != nil {
				delete(rr.running, r.ID)
				rr.mu.Unlock()
				return
			}
			rr.mu.Unlock()
			r = next
		}
	}()
}

// rolloutHeartbeat renews r's lease while its runner works; the returned
// context ends when the lease is lost.
func (s *Service) rolloutHeartbeat(ctx context.Context, r *Rollout) (context.Context, func()) {
	id, owner := r.ID, r.LeaseOwner
	return s.renewWhile(ctx, "rollout", id, func(ctx context.Context, until time.Time) error {
		return s.Store.RenewRolloutLease(ctx, id, owner, until)
	})
}

// driveRollout advances r phase by phase until it finishes, is paused or
// waits out a pause between phases, then hands its lease back. Every
// write is idempotent and each environment is its own operation, so a
// runner that dies leaves work the next claimer continues: items running
// are followed through their operations, pending ones are started.
func (s *Service) driveRollout(ctx context.Context, r *Rollout) error {
	ctx, stop := s.rolloutHeartbeat(ctx, r)
	defer stop()
	items, err := s.Store.ListRolloutItems(ctx, r.ID)
	if err != nil {
		return err
	}
	for {
		cur, err := s.Store.GetRollout(ctx, r.OrgID, r.ID)
		if err != nil {
			return err
		}
		r.Status, r.Error = cur.Status, cur.Error
		if r.Status != RolloutRunning {
			// Paused or cancelled: follow what runs to its end, start nothing.
			s.runItems(ctx, r, running(items), nil)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if r.Status == RolloutCancelled {
				return s.finishRollout(ctx, r, items, RolloutCancelled, "the rollout was cancelled")
			}
			if s.stillRunning(ctx, r) {
				continue // resumed meanwhile
			}
			// A paused rollout is not claimed; resuming makes it claimable.
			return s.releaseRollout(ctx, r, r.NextAt)
		}
		phase, ok := nextPhase(items)
		if !ok {
			return s.finishRollout(ctx, r, items, "", "")
		}
		if phase != r.Phase {
			r.Phase = phase
			if r.PauseSeconds > 0 {
				return s.releaseRollout(ctx, r, s.Now().Add(time.Duration(r.PauseSeconds)*time.Second))
			}
			now := s.Now()
			until := now.Add(s.Lease)
			r.UpdatedAt, r.LeaseExpiresAt = now, &until
			if err := s.Store.UpdateRolloutLease(ctx, r); err != nil {
				return err
			}
		}
		var mu sync.Mutex
		halted := ""
		s.runItems(ctx, r, phaseItems(items, phase), func(it *RolloutItem) bool {
			mu.Lock()
			defer mu.Unlock()
			if it.Status == ItemFailed && r.OnError == OnErrorHalt && halted == "" {
				halted = it.Environment
			}
			return halted != ""
		})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if env := halted; env != "" {
			s.runItems(ctx, r, running(items), nil)
			return s.finishRollout(ctx, r, items, RolloutFailed, fmt.Sprintf("halted: environment %s failed", env))
		}
	}
}

// nextPhase returns the lowest phase with unfinished items.
func nextPhase(items []*RolloutItem) (int, bool) {
	phase, ok := 0, false
	for _, it := range items {
		if !it.Status.Done() && (!ok || it.Phase < phase) {
			phase, ok = it.Phase, true
		}
	}
	return phase, ok
}

func phaseItems(items []*RolloutItem, phase int) []*RolloutItem {
	var out []*RolloutItem
	for _, it := range items {
		if it.Phase == phase && !it.Status.Done() {
			out = append(out, it)
		}
	}
	return out
}

func running(items []*RolloutItem) []*RolloutItem {
	var out []*RolloutItem
	for _, it := range items {
		if it.Status == ItemRunning {
			out = append(out, it)
		}
	}
	return out
}

// runItems migrates items, r.Parallelism at a time: a running item is
// followed through its operation, a pending one started, unless stop
// (called after each item finishes; nil: start nothing new) said to stop
// or the rollout is no longer running.
func (s *Service) runItems(ctx context.Context, r *Rollout, items []*RolloutItem, stop func(*RolloutItem) bool) {
	var mu sync.Mutex
	stopped := stop == nil
	isStopped := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return stopped
	}
	setStopped := func() {
		mu.Lock()
		stopped = true
		mu.Unlock()
	}
	sem := make(chan struct{}, max(r.Parallelism, 1))
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, it := range items {
		if it.Status == ItemPending && isStopped() {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if it.Status == ItemPending && (isStopped() || !s.stillRunning(ctx, r)) {
			setStopped()
			<-sem
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.runItem(ctx, r, it); err != nil {
				if ctx.Err() == nil {
					s.Logger.Warn("rollout environment not advanced", "rollout", r.ID, "environment", it.EnvironmentID, "err", err)
				}
				return
			}
			if stop != nil && it.Status.Done() && stop(it) {
				setStopped()
			}
		})
	}
}

// stillRunning reads whether r is still running (a pause or a cancel may
// have come meanwhile).
func (s *Service) stillRunning(ctx context.Context, r *Rollout) bool {
	cur, err := s.Store.GetRollout(ctx, r.OrgID, r.ID)
	return err == nil && cur.Status == RolloutRunning
}

// runItem starts it's migrate operation (unless it has one) and waits
// for it to finish, then records the outcome on it.
func (s *Service) runItem(ctx context.Context, r *Rollout, it *RolloutItem) error {
	if it.Status == ItemPending {
		op, skip, err := s.startMigration(ctx, r, it)
		if err != nil {
			return err
		}
		if skip != "" {
			return s.recordItem(ctx, it, ItemSkipped, skip, 0)
		}
		<-s.start(op)
		if op.Status.Done() {
			return s.recordOutcome(ctx, it, op)
		}
	}
	for {
		op, err := s.Store.GetOperation(ctx, it.OrgID, it.OperationID)
		if err != nil {
			return err
		}
		if op.Status.Done() {
			return s.recordOutcome(ctx, it, op)
		}
		// Another replica's (or an earlier runner's) operation: its lease
		// or the reconciler brings it to an end.
		if err := sleepContext(ctx, rolloutPoll); err != nil {
			return err
		}
	}
}

// rolloutPoll is how often a runner looks at an operation it did not start.
const rolloutPoll = 200 * time.Millisecond

// startMigration records it running with a new migrate operation, in one
// transaction, leased to this replica. It returns why the environment is
// skipped instead when it is no longer there, not active, or busy with
// another operation.
func (s *Service) startMigration(ctx context.Context, r *Rollout, it *RolloutItem) (*Operation, string, error) {
	params, err := json.Marshal(migrateParams{RolloutID: r.ID, Version: r.Version})
	if err != nil {
		return nil, "", err
	}
	var op *Operation
	skip := ""
	err = s.tx(ctx, func(q Queries) error {
		env, err := q.GetEnvironment(ctx, it.OrgID, it.EnvironmentID)
		if IsCode(err, ENOTFOUND) {
			skip = "the environment was deleted"
			return nil
		}
		if err != nil {
			return err
		}
		if env.Status != StatusActive {
			skip = fmt.Sprintf("the environment is %s", env.Status)
			return nil
		}
		if _, err := q.GetRunningOperation(ctx, env.ID); err == nil {
			skip = "another operation is running on the environment"
			return nil
		} else if !IsCode(err, ENOTFOUND) {
			return err
		}
		op = s.newOperation(env.OrgID, env.ID, OpMigrate, stepMigrate, params)
		if err := q.CreateOperation(ctx, op); err != nil {
			return err
		}
		it.Status, it.OperationID, it.UpdatedAt = ItemRunning, op.ID, s.Now()
		return q.UpdateRolloutItem(ctx, it)
	})
	if IsCode(err, ECONFLICT) {
		// The one-unfinished-operation index: another operation won the race.
		it.Status, it.OperationID = ItemPending, ""
		return nil, "another operation is running on the environment", nil
	}
	if err != nil {
		it.Status, it.OperationID = ItemPending, ""
		return nil, "", err
	}
	return op, skip, nil
}

// recordOutcome records on it how its finished operation ended. A
// migrate operation that succeeded (migrated or skipped) recorded it in
// its own last transaction already; a failed one is recorded here.
func (s *Service) recordOutcome(ctx context.Context, it *RolloutItem, op *Operation) error {
	if op.Status == OpFailed {
		return s.recordItem(ctx, it, ItemFailed, op.Error, 0)
	}
	var out migrateOutcome
	if len(op.Response) > 0 {
		if err := json.Unmarshal(op.Response, &out); err != nil {
			return fmt.Errorf("cannot read the migration's outcome: %w", err)
		}
	}
	it.Status, it.Reason, it.SchemaVersion = outcomeItem(out)
	it.UpdatedAt = op.UpdatedAt
	return nil
}

// outcomeItem is what a rollout item records of a migrate operation that
// succeeded.
func outcomeItem(out migrateOutcome) (RolloutItemStatus, string, int64) {
	if out.Skipped != "" {
		return ItemSkipped, out.Skipped, 0
	}
	return ItemSucceeded, "", out.SchemaVersion
}

func (s *Service) recordItem(ctx context.Context, it *RolloutItem, status RolloutItemStatus, reason string, version int64) error {
	prev := *it
	it.Status, it.Reason, it.SchemaVersion, it.UpdatedAt = status, reason, version, s.Now()
	if err := s.Store.UpdateRolloutItem(ctx, it); err != nil {
		*it = prev
		return err
	}
	return nil
}

// releaseRollout hands r's lease back, to be taken up at next.
func (s *Service) releaseRollout(ctx context.Context, r *Rollout, next time.Time) error {
	now := s.Now()
	r.NextAt, r.LeaseExpiresAt, r.UpdatedAt = next, &now, now
	return s.Store.UpdateRolloutLease(ctx, r)
}

// finishRollout skips every item not started (with why) and ends r: with
// status, or when status is empty, failed if an environment failed and
// succeeded otherwise.
func (s *Service) finishRollout(ctx context.Context, r *Rollout, items []*RolloutItem, status RolloutStatus, why string) error {
	failed := 0
	for _, it := range items {
		if it.Status == ItemPending {
			if err := s.recordItem(ctx, it, ItemSkipped, why, 0); err != nil {
				return err
			}
		}
		if it.Status == ItemFailed {
			failed++
		}
	}
	if status == "" {
		status = RolloutSucceeded
		if failed > 0 {
			status, why = RolloutFailed, fmt.Sprintf("%d environments failed", failed)
		}
	}
	now := s.Now()
	from := r.Status
	r.Status, r.Error, r.FinishedAt, r.UpdatedAt = status, why, &now, now
	if status == RolloutSucceeded {
		r.Error = ""
	}
	if err := s.Store.SetRolloutStatus(ctx, r, from); err != nil {
		if IsCode(err, ECONFLICT) {
			// A pause or cancel came meanwhile: the next claim decides.
			return s.releaseRollout(ctx, r, s.Now())
		}
		return err
	}
	return s.audit(ctx, s.Store, nil, r.OrgID, "", "rollout.finished", r.ID, map[string]any{"status": string(r.Status), "version": r.Version})
}

// migrateStep runs a migrate operation: it applies the app migrations up
// to the rollout's version, in the environment's database. An environment
// that is no longer active, whose system tables were changed outside
// envplane or whose applied migrations drifted is left untouched and the
// operation ends with why (skipped); a migration that fails ends it failed
// at once, naming the file (retrying SQL that failed cannot help; each
// migration is atomic with its ledger row, so the failing one left
// nothing). A target that does not answer is retried like any step.
func (s *Service) migrateStep(ctx context.Context, op *Operation) error {
	var params migrateParams
	if err := json.Unmarshal(op.Params, &params); err != nil {
		return fmt.Errorf("cannot read migrate parameters: %w", err)
	}
	env, db, t, err := s.envAndDatabase(ctx, op)
	if err != nil {
		return err
	}
	finish := func(out migrateOutcome) error {
		resp, err := json.Marshal(out)
		if err != nil {
			return err
		}
		return s.complete(ctx, op, func(q Queries) error {
			op.Response = resp
			if params.RolloutID != "" {
				it := &RolloutItem{RolloutID: params.RolloutID, EnvironmentID: env.ID, OperationID: op.ID}
				it.Status, it.Reason, it.SchemaVersion = outcomeItem(out)
				it.UpdatedAt = s.Now()
				if err := q.UpdateRolloutItem(ctx, it); err != nil {
					return err
				}
			}
			if out.Skipped != "" {
				return nil
			}
			if out.SchemaVersion != db.SchemaVersion {
				db.SchemaVersion = out.SchemaVersion
				if err := q.UpdateDatabase(ctx, db); err != nil {
					return err
				}
			}
			return s.audit(ctx, q, nil, env.OrgID, env.ID, "schema.migrated", env.ID, map[string]any{"schema_version": out.SchemaVersion, "rollout": params.RolloutID, "operation": op.ID})
		})
	}
	if err := openable(env); err != nil {
		return finish(migrateOutcome{Skipped: errorClass(err)})
	}
	conn, err := s.openAdmin(ctx, db, t)
	if err != nil {
		return err
	}
	defer conn.DB.Close()
	verr := s.Schema.Verify(ctx, conn.DB, conn.Dialect, expected(env, db))
	if found, ok := tamperFindings(verr); ok {
		return finish(migrateOutcome{Skipped: tampered(found, verr).Message})
	}
	if verr != nil {
		return verr
	}
	res, err := s.Schema.ApplyTo(ctx, conn.DB, conn.Dialect, dataplane.Owner{EnvironmentID: env.ID, OrgID: env.OrgID}, params.Version)
	var drift *dataplane.DriftError
	var failed *dataplane.MigrationError
	if found, ok := tamperFindings(err); ok {
		return finish(migrateOutcome{Skipped: tampered(found, err).Message})
	}
	switch {
	case errors.As(err, &drift):
		return finish(migrateOutcome{Skipped: drift.Error()})
	case errors.As(err, &failed):
		s.Logger.Warn("app migration failed", "operation", op.ID, "environment", env.ID, "file", failed.Migration.File, "err", err)
		op.Error = fmt.Sprintf("%s: %s/%s failed", stepMigrate, failed.Migration.Namespace, failed.Migration.File)
		op.Step, op.Attempts = stepCompensate, 0
		if len(res.Applied) > 0 {
			// Those before the failing one committed: record them.
			if st, serr := s.Schema.Status(ctx, conn.DB, conn.Dialect); serr == nil && st.SchemaVersion != db.SchemaVersion {
				db.SchemaVersion = st.SchemaVersion
				if err := s.Store.UpdateDatabase(ctx, db); err != nil {
					return err
				}
			}
		}
		return s.save(ctx, s.Store, op)
	case err != nil:
		return err
	}
	return finish(migrateOutcome{SchemaVersion: res.SchemaVersion})
}
