package controlplane

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/envplane/envplane/drivers"
)

// Targets that go down (adr/0017). Each replica keeps what it last learned
// of every target, from its own health probes and from its drivers' answers
// to saga steps and background work. Background work (scheduled rotation,
// revocation at grace end) leaves a target alone while it is down, until its
// next probe; probes of a down target back off exponentially with jitter,
// and so does background work that keeps failing for another reason. One
// audit event marks each change of a target's state, never each attempt.

// TargetState is what a replica last learned of a target.
type TargetState string

// Target states.
const (
	// TargetUnknown: not probed yet.
	TargetUnknown TargetState = "unknown"
	TargetUp      TargetState = "up"
	TargetDown    TargetState = "down"
)

// TargetHealth is a target's state as this replica last learned it.
type TargetHealth struct {
	State TargetState `json:"state"`
	// Since is when the target entered State (nil while unknown).
	Since *time.Time `json:"since,omitempty"`
	// CheckedAt is this replica's last probe or driver answer.
	CheckedAt *time.Time `json:"checked_at,omitempty"`
	// NextCheckAt is when the target is probed next; while it is down,
	// background work waits until then.
	NextCheckAt *time.Time `json:"next_check_at,omitempty"`
	// Failures counts consecutive failed probes and calls.
	Failures int `json:"failures,omitempty"`
	// Error is the class of the last failure ("target unavailable").
	Error string `json:"error,omitempty"`
}

// TargetView is a target as GET /v1/targets lists it: everyone sees the
// name and region, only the platform admin the rest.
type TargetView struct {
	Name     string        `json:"name"`
	Region   string        `json:"region"`
	Driver   string        `json:"driver,omitempty"`
	Default  bool          `json:"default,omitempty"`
	Capacity *int          `json:"capacity,omitempty"`
	Used     *int          `json:"used,omitempty"`
	Health   *TargetHealth `json:"health,omitempty"`
}

// retryState is one thing retried with backoff: a target's probes, or the
// scheduled rotation of one database.
type retryState struct {
	failures int
	next     time.Time
	// health is kept for targets only.
	health TargetHealth
}

// retries is a replica's memory of targets and background work that failed
// recently. Entries of work go away when the work succeeds.
type retries struct {
	mu sync.Mutex
	m  map[string]*retryState
}

func (r *retries) get(key string) *retryState {
	if r.m == nil {
		r.m = map[string]*retryState{}
	}
	st, ok := r.m[key]
	if !ok {
		st = &retryState{health: TargetHealth{State: TargetUnknown}}
		r.m[key] = st
	}
	return st
}

// due reports whether work under key may be tried at now: it never failed,
// or its backoff has passed.
func (r *retries) due(key string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.m[key]
	return !ok || !now.Before(st.next)
}

// failed records a failure of the work under key and returns how many in a
// row it has seen.
func (r *retries) failed(key string, now time.Time, backoff func(int) time.Duration) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.get(key)
	st.failures++
	st.next = now.Add(backoff(st.failures))
	return st.failures
}

// failures returns how many times in a row the work under key failed.
func (r *retries) failures(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st, ok := r.m[key]; ok {
		return st.failures
	}
	return 0
}

// succeeded forgets the work under key.
func (r *retries) succeeded(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, key)
}

// DefaultRetryBackoff is the wait before background work that failed
// failures times in a row is tried again: 5s doubling up to 5 minutes, each
// wait drawn at random from its upper half so replicas and environments do
// not retry in step.
func DefaultRetryBackoff(failures int) time.Duration {
	return jitter(min(5*time.Second<<min(max(failures-1, 0), 10), 5*time.Minute))
}

// jitter returns a duration drawn uniformly from [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// targetKey is the retries key of a target's health.
func targetKey(name string) string { return "target:" + name }

// targetDown reports whether background work should leave the target alone
// now: it is down and its next probe has not come.
func (s *Service) targetDown(name string) bool {
	s.retry.mu.Lock()
	defer s.retry.mu.Unlock()
	st, ok := s.retry.m[targetKey(name)]
	return ok && st.health.State == TargetDown && s.Now().Before(st.next)
}

// noteTarget records what a call to the target answered: up on nil, down on
// an error wrapping drivers.ErrUnavailable; other errors say nothing of the
// target's health. A change of state is logged, counted in the target
// gauge and audited once, as a platform event.
func (s *Service) noteTarget(ctx context.Context, name string, err error) {
	if err != nil && !errors.Is(err, drivers.ErrUnavailable) {
		return
	}
	now := s.Now()
	s.retry.mu.Lock()
	st := s.retry.get(targetKey(name))
	was := st.health.State
	st.health.CheckedAt = &now
	if err == nil {
		st.failures = 0
		st.next = now.Add(s.TargetCheck)
		st.health.State, st.health.Failures, st.health.Error = TargetUp, 0, ""
	} else {
		st.failures++
		st.next = now.Add(s.RetryBackoff(st.failures))
		st.health.State, st.health.Failures, st.health.Error = TargetDown, st.failures, errorClass(err)
	}
	if st.health.State != was {
		st.health.Since = &now
	}
	next := st.next
	st.health.NextCheckAt = &next
	state := st.health.State
	s.retry.mu.Unlock()

	if s.Observer != nil {
		s.Observer.TargetChecked(name, state == TargetUp)
	}
	if state == was || (was == TargetUnknown && state == TargetUp) {
		return
	}
	if state == TargetDown {
		s.Logger.Warn("target unavailable", "target", name, "err", err)
	} else {
		s.Logger.Info("target available again", "target", name)
	}
	action := "target." + map[TargetState]string{TargetUp: "available", TargetDown: "unavailable"}[state]
	if err := s.audit(ctx, s.Store, nil, "", "", action, name, nil); err != nil {
		s.Logger.Error("cannot audit target state", "target", name, "err", err)
	}
}

// CheckTargets probes every target whose next check has come (drivers that
// can tell their health; others are judged by their answers alone), at most
// StepTimeout each, and returns how many it probed.
func (s *Service) CheckTargets(ctx context.Context) int {
	// Platform-wide background work: every organization's rows (ADR 0027).
	ctx = WithPlatformScope(ctx)
	n := 0
	for _, name := range s.targetNames() {
		hc, ok := s.Targets[name].Driver.(drivers.HealthChecker)
		if !ok || !s.retry.due(targetKey(name), s.Now()) {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, s.StepTimeout)
		err := hc.Health(pctx)
		cancel()
		if ctx.Err() != nil {
			return n
		}
		if err != nil && !errors.Is(err, drivers.ErrUnavailable) {
			err = errors.Join(drivers.ErrUnavailable, err)
		}
		s.noteTarget(ctx, name, err)
		n++
	}
	return n
}

func (s *Service) targetNames() []string {
	names := make([]string, 0, len(s.Targets))
	for name := range s.Targets {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// targetHealth returns a copy of what this replica knows of the target.
func (s *Service) targetHealth(name string) TargetHealth {
	s.retry.mu.Lock()
	defer s.retry.mu.Unlock()
	st, ok := s.retry.m[targetKey(name)]
	if !ok {
		return TargetHealth{State: TargetUnknown}
	}
	return st.health
}

// ListTargets lists the configured targets by name. Every user sees names
// and regions (to choose where an environment goes); the platform admin
// also sees the driver, capacity, databases used and health. App keys, which
// only resolve and read their own environment, are EFORBIDDEN.
func (s *Service) ListTargets(ctx context.Context, p *Principal) ([]TargetView, error) {
	if p == nil {
		return nil, Errorf(EUNAUTHORIZED, "authentication required")
	}
	if p.IsApp() {
		return nil, Errorf(EFORBIDDEN, "forbidden: not allowed for an app key")
	}
	full := Authorize(Subject{Principal: p}, ActTargetsInspect, Resource{}) == nil
	var used map[string]int
	if full {
		var err error
		if used, err = s.Store.CountDatabasesByTarget(ctx); err != nil {
			return nil, err
		}
	}
	out := make([]TargetView, 0, len(s.Targets))
	for _, name := range s.targetNames() {
		t := s.Targets[name]
		v := TargetView{Name: t.Name, Region: t.Region}
		if full {
			capacity, n, health := t.Capacity, used[name], s.targetHealth(name)
			v.Driver, v.Default = t.Driver.Name(), name == s.DefaultTarget
			v.Capacity, v.Used, v.Health = &capacity, &n, &health
		}
		out = append(out, v)
	}
	return out, nil
}
