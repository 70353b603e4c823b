package controlplane

import (
	"context"
	"errors"
	"time"

	"github.com/envplane/envplane/drivers"
)

// ResolveConnection is the router: it returns what an application needs to
// connect to the environment with scope, using the newest active credential.
// A scope above the caller's role is EFORBIDDEN, a suspended environment
// ELOCKED, one not active yet ECONFLICT. A repeat resolve is answered from
// this replica's cache (no store read, no keyring call) while the change log
// says nothing changed.
func (s *Service) ResolveConnection(ctx context.Context, p *Principal, orgRef, envRef string, scope Scope) (*Connection, error) {
	c, _, err := s.resolve(ctx, p, routeKey{org: orgRef, env: envRef, scope: scope})
	return c, err
}

// ResolveConnectionByID is ResolveConnection for an environment named by id.
func (s *Service) ResolveConnectionByID(ctx context.Context, p *Principal, envID string, scope Scope) (*Connection, error) {
	c, _, err := s.resolve(ctx, p, routeKey{env: envID, scope: scope})
	return c, err
}

// WatchRequest is a long poll on an environment's connection.
type WatchRequest struct {
	// OrgRef is empty for an environment named by id (EnvRef).
	OrgRef, EnvRef string
	Scope          Scope
	// After is the credential the client holds.
	After string
	// Wait is how long to wait for another credential.
	Wait time.Duration
	// Authenticate checks the caller's API key again after a change, so a
	// watch of a key revoked meanwhile ends with EUNAUTHORIZED.
	Authenticate func(ctx context.Context) (*Principal, error)
}

// MaxWatch bounds WatchRequest.Wait.
const MaxWatch = time.Minute

// WatchConnection answers as ResolveConnection does, but only once the
// newest active credential is another than req.After, or the caller may no
// longer resolve it (the error at once), or req.Wait has passed (the
// connection as it is), or the service closes its watches. A watch naming
// an unknown or older credential answers at once. While the environment has
// no active credential of the scope (an emergency revocation between revoke
// and re-issue) it keeps waiting.
func (s *Service) WatchConnection(ctx context.Context, p *Principal, req WatchRequest) (*Connection, error) {
	if req.Wait <= 0 || req.Wait > MaxWatch {
		return nil, Invalid(FieldError{Field: "wait", Message: "must be between 1s and 60s"})
	}
	if err := checkText(req); err != nil {
		return nil, err
	}
	k := routeKey{org: req.OrgRef, env: req.EnvRef, scope: req.Scope}
	conn, e, err := s.resolve(ctx, p, k)
	if err != nil || req.After == "" || conn.CredentialID != req.After {
		return conn, err
	}
	timer := time.NewTimer(req.Wait)
	defer timer.Stop()
	for {
		changed, closing := s.hub.subscribe(e.orgID)
		// Look again once subscribed: a change between the last look and
		// the subscription would otherwise go unseen.
		if req.Authenticate != nil {
			if p, err = req.Authenticate(ctx); err != nil {
				return nil, err
			}
		}
		next, ne, err := s.resolve(ctx, p, k)
		switch {
		case IsCode(err, EUNAVAILABLE):
			// No credential to hand out right now: wait for the next change.
		case err != nil:
			return nil, err
		case next.CredentialID != req.After:
			return next, nil
		default:
			conn, e = next, ne
		}
		select {
		case <-changed:
		case <-closing:
			return conn, nil
		case <-timer.C:
			return conn, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// resolve answers k for p from the cache or, on a miss, from one store read,
// and records a receipt. It returns the cache entry the answer came from.
func (s *Service) resolve(ctx context.Context, p *Principal, k routeKey) (*Connection, *routeEntry, error) {
	action, ok := ConnectionAction(k.scope)
	if !ok {
		return nil, nil, Invalid(FieldError{Field: "scope", Message: "must be admin, readwrite or readonly"})
	}
	if p == nil {
		return nil, nil, Errorf(EUNAUTHORIZED, "authentication required")
	}
	if !StorableText(k.org) || !StorableText(k.env) {
		return nil, nil, Errorf(ENOTFOUND, "environment not found")
	}
	k.keyID = p.KeyID
	now := s.Now()
	if s.cacheTrusted(now) {
		if e := s.cache.route(k, now); e != nil {
			if conn, ok := s.answer(ctx, k, e, now); ok {
				s.receipts.add(p, e, now)
				return conn, e, nil
			}
		}
	}
	// A second try covers a credential rotated between the read and the
	// promise (answer refuses to hand it out).
	for range 2 {
		epoch := s.cache.begin()
		e, err := s.loadRoute(ctx, p, k, action, now)
		if err != nil {
			return nil, nil, err
		}
		e.epoch = epoch
		if conn, ok := s.answer(ctx, k, e, now); ok {
			s.cache.putRoute(k, e)
			s.receipts.add(p, e, now)
			return conn, e, nil
		}
	}
	return nil, nil, Errorf(EUNAVAILABLE, "the credential is rotating; try again")
}

// loadRoute reads and authorizes k in one store read, opens the credential
// and builds the descriptor.
func (s *Service) loadRoute(ctx context.Context, p *Principal, k routeKey, action Action, now time.Time) (*routeEntry, error) {
	q := RouteQuery{OrgRef: k.org, EnvRef: k.env, Scope: k.scope, UserID: p.UserID}
	if q.OrgRef == "" && p.OrgID != "" {
		// A key bound to an organization looks only there.
		q.OrgRef = p.OrgID
	}
	// One round trip in resolveScope: a key bound to an organization reads
	// only that organization's rows; the rest is authorized below.
	r, err := s.Store.ResolveRoute(resolveScope(ctx, p), q)
	if err != nil {
		return nil, storeUnavailable(err)
	}
	ctx = WithOrgScope(ctx, r.Org.ID)
	sub := Subject{Principal: p, OrgRole: r.OrgRole}
	if sub.OrgRole == OrgMember {
		sub.EnvRole = r.EnvRole
	}
	// As envAccess: an organization the caller may not see is absent, then
	// the environment is judged.
	if err := Authorize(sub, ActOrgRead, Resource{OrgID: r.Org.ID}); err != nil {
		return nil, err
	}
	if err := s.requireSecondFactor(ctx, sub, r.Org); err != nil {
		return nil, err
	}
	env := r.Environment
	if err := Authorize(sub, action, Resource{OrgID: r.Org.ID, EnvironmentID: env.ID}); err != nil {
		return nil, err
	}
	switch env.Status {
	case StatusActive:
	case StatusSuspended:
		return nil, Errorf(ELOCKED, "the environment is suspended")
	default:
		return nil, Errorf(ECONFLICT, "the environment is %s", env.Status)
	}
	if r.Database == nil {
		return nil, Errorf(EUNAVAILABLE, "the environment has no database")
	}
	db := r.Database
	t, ok := s.Targets[db.Target]
	if !ok {
		return nil, Errorf(EUNAVAILABLE, "the environment's target is not configured")
	}
	c := r.Credential
	if c == nil {
		return nil, Errorf(EUNAVAILABLE, "no active %s credential", k.scope)
	}
	dc, err := s.driverCredential(ctx, c)
	if err != nil {
		return nil, err
	}
	d, err := t.Driver.Descriptor(ctx, drivers.DescriptorRequest{Database: db.DriverDatabase(), Credential: dc})
	if err != nil {
		return nil, Errorf(EUNAVAILABLE, "cannot describe the connection").Wrap(err)
	}
	e := &routeEntry{
		conn: Connection{
			EnvironmentID: env.ID,
			Organization:  r.Org.Slug,
			Environment:   env.Slug,
			Driver:        db.Driver,
			Scope:         k.scope,
			DSN:           d.DSN,
			URL:           d.URL,
			Host:          d.Host,
			Port:          d.Port,
			Database:      d.Database,
			Username:      d.Username,
			Secret:        dc.Secret,
			CredentialID:  c.ID,
			ExpiresAt:     c.ExpiresAt,
		},
		entry:      entry{orgID: r.Org.ID, expires: c.ExpiresAt, filled: now},
		dbID:       db.ID,
		keyVersion: c.KMSKeyID,
	}
	if c.PromisedUntil != nil {
		e.promised.Store(c.PromisedUntil.UnixNano())
	}
	return e, nil
}

// answer returns e's connection with a refresh_after that is never later
// than the earliest moment its credential could be revoked by a rotation:
// the store holds, for each credential, the latest refresh_after handed out
// (promised_until), and a rotation revokes only after it. The promise is
// raised in the store, to now + RefreshWindow, once less than half a window
// of it is left, so it costs one write per credential every half window,
// not one per resolve. ok is false when the credential is no longer active
// (a rotation demoted it) or the promise cannot be recorded and the one on
// record is used up: the caller reads the store again.
func (s *Service) answer(ctx context.Context, k routeKey, e *routeEntry, now time.Time) (*Connection, bool) {
	want := now.Add(s.RefreshWindow)
	if e.expires != nil {
		if !now.Before(*e.expires) {
			return nil, false
		}
		// Half the credential's remaining life: well before it expires.
		if half := now.Add(e.expires.Sub(now) / 2); half.Before(want) {
			want = half
		}
	}
	promised := time.Unix(0, e.promised.Load())
	if floor := now.Add(s.RefreshWindow / 2); promised.Before(floor) && promised.Before(want) {
		until := now.Add(s.RefreshWindow).UTC().Truncate(time.Microsecond)
		err := s.Store.PromiseCredential(WithOrgScope(ctx, e.orgID), e.dbID, e.conn.CredentialID, until)
		switch {
		case err == nil:
			e.promised.Store(until.UnixNano())
			promised = until
		case IsCode(err, ECONFLICT), IsCode(err, ENOTFOUND):
			s.cache.drop(k, e)
			return nil, false
		case !promised.After(now):
			// The store is unreachable and nothing is left of the promise.
			return nil, false
		default:
			// Debug: while the store is down this happens on every resolve.
			s.Logger.Debug("cannot record a refresh promise; handing out what is on record", "credential", e.conn.CredentialID, "err", err)
		}
	}
	conn := e.conn
	conn.RefreshAfter = want
	if promised.Before(want) {
		conn.RefreshAfter = promised
	}
	return &conn, true
}

// storeUnavailable answers a store failure on the router's path as
// EUNAVAILABLE (503: try again), keeping the domain's own errors
// (ENOTFOUND...) as they are.
func storeUnavailable(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return Errorf(EUNAVAILABLE, "%s", storeUnreachable).Wrap(err)
}
