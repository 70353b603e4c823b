package controlplane

import (
	"context"
	"fmt"
	"time"
)

// ExpiryNotice is how long before its expiry an environment is expiring:
// its view says so and its one `environment.expiring` audit event is written.
const ExpiryNotice = 24 * time.Hour

// neverExpires reports whether env may not have an expiry: protected,
// default and production environments are kept until someone deletes them.
func neverExpires(typ EnvironmentType, isDefault, isProtected bool) bool {
	return isDefault || isProtected || typ == TypeProduction
}

// requestedExpiry checks a request's ttl (a duration from now, such as
// "72h") and expires_at, and returns the expiry they ask for; nil, nil when
// they ask for none. Field errors: both given, a ttl that is not a
// positive duration, an expires_at not in the future, either beyond
// MaxEnvironmentTTL from now, or either on an environment that never
// expires (keep).
func (s *Service) requestedExpiry(ttl string, at *time.Time, keep bool) (*time.Time, []FieldError) {
	if ttl == "" && at == nil {
		return nil, nil
	}
	field := "expires_at"
	if ttl != "" {
		field = "ttl"
	}
	switch {
	case ttl != "" && at != nil:
		return nil, []FieldError{{Field: "ttl", Message: "give ttl or expires_at, not both"}}
	case keep:
		return nil, []FieldError{{Field: field, Message: "a protected, default or production environment does not expire"}}
	}
	now := s.Now()
	if ttl != "" {
		d, err := time.ParseDuration(ttl)
		switch {
		case err != nil:
			return nil, []FieldError{{Field: "ttl", Message: "must be a duration such as 72h"}}
		case d <= 0:
			return nil, []FieldError{{Field: "ttl", Message: "must be positive"}}
		case d > s.MaxEnvironmentTTL:
			return nil, []FieldError{{Field: "ttl", Message: "must be at most " + hours(s.MaxEnvironmentTTL)}}
		}
		t := now.Add(d)
		return &t, nil
	}
	switch {
	case !at.After(now):
		return nil, []FieldError{{Field: "expires_at", Message: "must be in the future"}}
	case at.Sub(now) > s.MaxEnvironmentTTL:
		return nil, []FieldError{{Field: "expires_at", Message: "must be at most " + hours(s.MaxEnvironmentTTL) + " from now"}}
	}
	t := at.UTC()
	return &t, nil
}

// hours writes d the way ttl is given: "2160h".
func hours(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}

// creationExpiry is the expiry of a new environment: the one req asks for,
// or else its type's default from EnvironmentTTL, or none.
func (s *Service) creationExpiry(req CreateEnvironmentRequest) (*time.Time, []FieldError) {
	keep := neverExpires(req.Type, false, req.IsProtected != nil && *req.IsProtected)
	if req.TTL != "" || req.ExpiresAt != nil {
		return s.requestedExpiry(req.TTL, req.ExpiresAt, keep)
	}
	if d := s.EnvironmentTTL[req.Type]; d > 0 && !keep {
		t := s.Now().Add(d)
		return &t, nil
	}
	return nil, nil
}

// expiring reports whether env expires within ExpiryNotice.
func (s *Service) expiring(env *Environment) bool {
	return env.ExpiresAt != nil && !env.ExpiresAt.After(s.Now().Add(ExpiryNotice))
}

// ExpireDue is the expiry pass of Tick. It writes one
// `environment.expiring` audit event for each environment that expires
// within ExpiryNotice, and starts the deprovisioning of each environment
// whose expiry has passed (never a protected, default or production one),
// with an `environment.expired` audit event, waiting for each. It is safe
// on every replica at once: a notice is written once (the store's
// conditional update), and a second deprovisioning of an environment is
// refused by its first. Environments that are busy (an operation running)
// or whose target is down are left for the next pass. It returns how many
// deprovisionings it started.
func (s *Service) ExpireDue(ctx context.Context) (int, error) {
	// Platform-wide background work: every organization's rows (ADR 0027).
	ctx = WithPlatformScope(ctx)
	now := s.Now()
	soon, err := s.Store.ListEnvironmentsExpiring(ctx, now.Add(ExpiryNotice), true, MaxPageLimit)
	if err != nil {
		return 0, fmt.Errorf("cannot list expiring environments: %w", err)
	}
	for _, env := range soon {
		err := s.tx(ctx, func(q Queries) error {
			ok, err := q.NoticeEnvironmentExpiry(ctx, env.OrgID, env.ID, *env.ExpiresAt, now)
			if err != nil || !ok {
				return err
			}
			return s.audit(ctx, q, nil, env.OrgID, env.ID, "environment.expiring", env.ID,
				map[string]any{"slug": env.Slug, "expires_at": env.ExpiresAt})
		})
		if err != nil {
			s.Logger.Error("expiry notice failed", "environment", env.ID, "err", err)
		}
	}
	due, err := s.Store.ListEnvironmentsExpiring(ctx, now, false, MaxPageLimit)
	if err != nil {
		return 0, fmt.Errorf("cannot list expired environments: %w", err)
	}
	started := 0
	for _, env := range due {
		if s.targetDown(env.Target) {
			continue
		}
		op, err := s.deprovision(ctx, nil, env, "environment.expired", func(cur *Environment) error {
			if cur.ExpiresAt == nil || cur.ExpiresAt.After(now) {
				return Errorf(ECONFLICT, "the environment's expiry changed meanwhile")
			}
			return nil
		})
		if IsCode(err, ECONFLICT) {
			continue
		}
		if err != nil {
			s.Logger.Error("expiry failed to start deprovisioning", "environment", env.ID, "err", err)
			continue
		}
		started++
		select {
		case <-s.start(op):
		case <-ctx.Done():
			return started, ctx.Err()
		}
	}
	return started, nil
}
