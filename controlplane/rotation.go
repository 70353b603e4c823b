package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/envplane/envplane/drivers"
)

// Credential rotation, in one place: the rotate and emergency-revoke
// requests, the rotate operation's step, the end of grace periods, scheduled
// rotation and the issuance budgets (adr/0011).
//
// The contract: a rotated credential is never revoked before every holder
// was told to move. The router records, per credential, the latest
// refresh_after it handed out (PromisedUntil); a rotation revokes the old
// credential only once both its grace and that promise (plus RevokeMargin)
// have passed, and says when (revoke_after). An emergency revocation is the
// exception: it revokes at once.

// maxGrace bounds a rotation's grace period.
const maxGrace = 7 * 24 * time.Hour

// rotateParams is the input of a rotate operation, stored on it so a resumed
// operation does the same thing.
type rotateParams struct {
	Scopes []drivers.Scope `json:"scopes"`
	// From maps a scope to the credential being rotated away from.
	From  map[drivers.Scope]string `json:"from,omitempty"`
	Grace time.Duration            `json:"grace"`
	// EndGrace lists rotating credentials whose revocation is due: the
	// rotation revokes them before it issues.
	EndGrace []string `json:"end_grace,omitempty"`
	// Revoke lists credentials to revoke at once (emergency revocation).
	Revoke []string `json:"revoke,omitempty"`
	Reason string   `json:"reason,omitempty"`
	// Retry counts the scheduled rotations of the database that failed
	// just before this one: a retry is not audited again (adr/0017).
	Retry int `json:"retry,omitempty"`
}

// rotateResult is what a rotate operation records on itself (its response):
// when the credentials it replaced will be revoked, and whether that is later
// than the grace asked for because holders were promised longer.
type rotateResult struct {
	RevokeAfter *time.Time `json:"revoke_after,omitempty"`
	Stretched   bool       `json:"grace_stretched,omitempty"`
}

// allRevoker is implemented by drivers whose RevokeCredential stops every
// credential of the database, not only the one named (Turso can only
// invalidate all tokens of a database).
type allRevoker interface {
	RevokesAllCredentials() bool
}

// revokesAll reports whether revoking one credential on t stops them all.
func revokesAll(t *Target) bool {
	r, ok := t.Driver.(allRevoker)
	return ok && r.RevokesAllCredentials()
}

// RotateCredentials issues new credentials on the standby slots of the asked
// scopes; the old ones keep working for the grace period, stretched to the
// latest refresh_after handed out for them, then the background loop revokes
// them (owner, admin, env_admin). ECONFLICT while the environment is not
// active or suspended, while another operation runs, or while a credential
// rotated earlier is still in its grace (with RetryAfter set to its end);
// ETOOMANY past the issuance budget.
func (s *Service) RotateCredentials(ctx context.Context, p *Principal, orgRef, envRef string, req RotateCredentialsRequest) (*Operation, <-chan struct{}, error) {
	if err := checkText(req); err != nil {
		return nil, nil, err
	}
	ctx, a, err := s.envAccess(ctx, p, orgRef, envRef, ActCredRotate)
	if err != nil {
		return nil, nil, err
	}
	var fields []FieldError
	scopes := drivers.Scopes()
	switch sc := Scope(req.Scope); {
	case req.Scope == "" || req.Scope == "all":
	case sc.Valid():
		scopes = []Scope{sc}
	default:
		fields = append(fields, FieldError{Field: "scope", Message: "must be all, admin, readwrite or readonly"})
	}
	grace := s.Grace
	if req.GraceSeconds != nil {
		// Checked before multiplying: a huge value would overflow into a short grace.
		if n := *req.GraceSeconds; n < 0 || n > int(maxGrace/time.Second) {
			fields = append(fields, FieldError{Field: "grace_seconds", Message: "must be between 0 and 604800"})
		} else {
			grace = time.Duration(n) * time.Second
		}
	}
	if len(req.Reason) > 500 {
		fields = append(fields, FieldError{Field: "reason", Message: "must be at most 500 characters"})
	}
	if len(fields) > 0 {
		return nil, nil, Invalid(fields...)
	}
	params := rotateParams{Scopes: scopes, From: map[Scope]string{}, Grace: grace, Reason: req.Reason}
	return s.startRotation(ctx, p, a, "credentials.rotate_requested", len(scopes), func(q Queries, db *Database) error {
		return s.prepareRotation(ctx, q, db, &params)
	}, &params)
}

// prepareRotation fills in, for each scope of params, the active credential
// to rotate away from and the rotating ones whose grace is over; a rotating
// credential still in its grace is ECONFLICT with the time it ends.
func (s *Service) prepareRotation(ctx context.Context, q Queries, db *Database, params *rotateParams) error {
	now := s.Now()
	for _, sc := range params.Scopes {
		cs, err := q.ListCredentials(ctx, CredentialFilter{DatabaseID: db.ID, Scope: sc, Statuses: []CredentialStatus{CredentialActive, CredentialRotating}})
		if err != nil {
			return err
		}
		for _, c := range cs {
			switch {
			case c.Status == CredentialRotating && c.ExpiresAt != nil && c.ExpiresAt.After(now):
				until := c.ExpiresAt.UTC().Format(time.RFC3339)
				return Errorf(ECONFLICT, "the %s credential rotated last is in its grace period until %s; rotate again after that, or revoke it", sc, until).
					After(c.ExpiresAt.Sub(now))
			case c.Status == CredentialRotating:
				params.EndGrace = append(params.EndGrace, c.ID)
			default:
				if _, seen := params.From[sc]; !seen {
					params.From[sc] = c.ID
				}
			}
		}
	}
	return nil
}

// RevokeCredentials is emergency revocation (owner, admin, env_admin): the
// named credential, or every credential of the environment, stops working at
// once, and every scope left without an active credential gets a new one.
// ETOOMANY past the issuance budget.
func (s *Service) RevokeCredentials(ctx context.Context, p *Principal, orgRef, envRef string, req RevokeCredentialsRequest) (*Operation, <-chan struct{}, error) {
	if err := checkText(req); err != nil {
		return nil, nil, err
	}
	ctx, a, err := s.envAccess(ctx, p, orgRef, envRef, ActCredRotate)
	if err != nil {
		return nil, nil, err
	}
	reason := req.Reason
	if l := len(reason); l == 0 || l > 500 {
		return nil, nil, Invalid(FieldError{Field: "reason", Message: "is required, at most 500 characters"})
	}
	params := rotateParams{Reason: reason}
	return s.startRotation(ctx, p, a, "credentials.revoke_requested", 1, func(q Queries, db *Database) error {
		if req.CredentialID != "" {
			c, err := q.GetCredential(ctx, db.ID, req.CredentialID)
			if IsCode(err, ENOTFOUND) {
				return Invalid(FieldError{Field: "credential_id", Message: "no such credential on this environment"})
			}
			if err != nil {
				return err
			}
			if c.Status == CredentialRevoked {
				return Errorf(ECONFLICT, "the credential is already revoked")
			}
			params.Revoke = []string{c.ID}
			return nil
		}
		cs, err := q.ListCredentials(ctx, CredentialFilter{DatabaseID: db.ID, Statuses: []CredentialStatus{CredentialActive, CredentialRotating}})
		if err != nil {
			return err
		}
		for _, c := range cs {
			params.Revoke = append(params.Revoke, c.ID)
		}
		return nil
	}, &params)
}

// startRotation records a rotate operation whose parameters prepare fills in
// from the environment's database, and starts it. issues is how many
// credentials the operation is expected to issue, checked against the
// issuance budget first.
func (s *Service) startRotation(ctx context.Context, p *Principal, a *access, action string, issues int, prepare func(q Queries, db *Database) error, params *rotateParams) (*Operation, <-chan struct{}, error) {
	env := a.env
	if env.Status != StatusActive && env.Status != StatusSuspended {
		return nil, nil, Errorf(ECONFLICT, "the environment is %s", env.Status)
	}
	db, err := s.Store.GetEnvironmentDatabase(ctx, env.ID)
	if err != nil {
		return nil, nil, err
	}
	if err := s.issueRateBudget(ctx, p, env, db, issues); err != nil {
		return nil, nil, err
	}
	var op *Operation
	err = s.tx(ctx, func(q Queries) error {
		if _, err := q.GetRunningOperation(ctx, env.ID); err == nil {
			return Errorf(ECONFLICT, "an operation is running on the environment")
		} else if !IsCode(err, ENOTFOUND) {
			return err
		}
		if err := prepare(q, db); err != nil {
			return err
		}
		raw, err := json.Marshal(params)
		if err != nil {
			return err
		}
		op = s.newOperation(env.OrgID, env.ID, OpRotate, stepRotate, raw)
		if err := q.CreateOperation(ctx, op); err != nil {
			return err
		}
		if params.Retry > 0 {
			return nil
		}
		return s.audit(ctx, q, p, env.OrgID, env.ID, action, env.ID, map[string]any{"operation": op.ID, "reason": params.Reason})
	})
	if err != nil {
		return nil, nil, err
	}
	return op, s.start(op), nil
}

// CredentialsAfter returns the operation as stored and the environment's
// credentials' metadata, for rotate and revoke responses, with when the
// credentials it replaced will be revoked.
func (s *Service) CredentialsAfter(ctx context.Context, op *Operation) (*CredentialsResponse, error) {
	// The operation came from a call that authorized its organization.
	ctx = WithOrgScope(ctx, op.OrgID)
	op, err := s.Store.GetOperation(ctx, op.OrgID, op.ID)
	if err != nil {
		return nil, err
	}
	db, err := s.Store.GetEnvironmentDatabase(ctx, op.EnvironmentID)
	if err != nil {
		return nil, err
	}
	cs, err := s.Store.ListCredentials(ctx, CredentialFilter{DatabaseID: db.ID})
	if err != nil {
		return nil, err
	}
	resp := &CredentialsResponse{Operation: op, Credentials: cs}
	var res rotateResult
	if len(op.Response) > 0 && json.Unmarshal(op.Response, &res) == nil {
		resp.RevokeAfter, resp.GraceStretched = res.RevokeAfter, res.Stretched
	}
	return resp, nil
}

// rotateStep runs a rotate operation: emergency revocations first, then the
// end of graces that are over, then a new credential on the standby slot of
// every scope asked for, and finally an active credential for any scope left
// without one. Each part checks what is already done, so a resumed
// operation converges.
func (s *Service) rotateStep(ctx context.Context, op *Operation) error {
	env, db, t, err := s.envAndDatabase(ctx, op)
	if err != nil {
		return err
	}
	var params rotateParams
	if err := json.Unmarshal(op.Params, &params); err != nil {
		return fmt.Errorf("cannot read rotate parameters: %w", err)
	}
	for _, id := range params.Revoke {
		c, err := s.Store.GetCredential(ctx, db.ID, id)
		if err != nil {
			return err
		}
		if err := s.revoke(ctx, env, db, t, c); err != nil {
			return err
		}
	}
	if len(params.Revoke) > 0 && revokesAll(t) {
		// The engine stopped every credential of the database: record them
		// revoked, so the loop below re-issues every scope. Only those from
		// before this operation: a retried step must not mark the ones it
		// issued in an earlier attempt, which still work.
		if err := s.markAllRevoked(ctx, env, db, op.CreatedAt); err != nil {
			return err
		}
	}
	for _, id := range params.EndGrace {
		c, err := s.Store.GetCredential(ctx, db.ID, id)
		if err != nil {
			return err
		}
		if err := s.endGrace(ctx, env, db, t, c); err != nil {
			return err
		}
	}
	var res rotateResult
	for _, scope := range params.Scopes {
		from := params.From[scope]
		if from == "" {
			continue
		}
		old, err := s.Store.GetCredential(ctx, db.ID, from)
		if err != nil {
			return err
		}
		if old.Status != CredentialActive {
			if old.Status == CredentialRotating {
				res.add(old.ExpiresAt, s.Now().Add(params.Grace))
			}
			continue
		}
		var revokeAfter time.Time
		_, err = s.issue(ctx, env, db, t, scope, old.Slot.Other(), old.ID, func(q Queries) error {
			revokeAfter, err = s.demote(ctx, q, old, params.Grace)
			return err
		})
		if err != nil {
			return err
		}
		res.add(&revokeAfter, s.Now().Add(params.Grace))
		// Without a grace and without an outstanding promise the old
		// credential ends now, not at the background loop's next tick, and
		// does not block the next rotation. As any grace end: on a target
		// that revokes all or nothing, it ages out instead.
		if !revokeAfter.After(s.Now()) {
			if err := s.endGrace(ctx, env, db, t, old); err != nil {
				return err
			}
		}
	}
	if err := s.issueMissing(ctx, env, db, t); err != nil {
		return err
	}
	if env.Status == StatusSuspended {
		// What this rotation issued must not open a suspended database.
		if err := s.cutAccess(ctx, env, db, t); err != nil {
			return err
		}
	}
	if raw, err := json.Marshal(res); err == nil {
		op.Response = raw
	}
	return s.complete(ctx, op, func(q Queries) error {
		action := "credentials.rotated"
		if len(params.Revoke) > 0 {
			action = "credentials.revoked"
		}
		details := map[string]any{"operation": op.ID, "reason": params.Reason}
		if res.RevokeAfter != nil {
			details["revoke_after"] = res.RevokeAfter.UTC().Format(time.RFC3339Nano)
			details["grace_stretched"] = res.Stretched
		}
		return s.audit(ctx, q, nil, env.OrgID, env.ID, action, env.ID, details)
	})
}

// add takes the revocation time of one replaced credential into r; asked is
// when its grace alone would have ended.
func (r *rotateResult) add(revokeAfter *time.Time, asked time.Time) {
	if revokeAfter == nil {
		return
	}
	if r.RevokeAfter == nil || revokeAfter.After(*r.RevokeAfter) {
		at := *revokeAfter
		r.RevokeAfter = &at
	}
	if revokeAfter.After(asked) {
		r.Stretched = true
	}
}

// demote makes old rotating inside the transaction that issues its
// successor, and returns when it may be revoked: when its grace ends, or
// RevokeMargin after the latest refresh_after handed out for it if that is
// later, but never after the credential expires anyway. The promise is read
// after old's row was written, so on PostgreSQL a concurrent promise either
// committed before (and is seen) or waits and then fails because old is no
// longer active.
func (s *Service) demote(ctx context.Context, q Queries, old *Credential, grace time.Duration) (time.Time, error) {
	revokeAfter := s.Now().Add(grace).UTC().Truncate(time.Microsecond)
	expires := old.ExpiresAt
	old.Status = CredentialRotating
	old.ExpiresAt = &revokeAfter
	if err := q.UpdateCredential(ctx, old); err != nil {
		return time.Time{}, err
	}
	cur, err := q.GetCredential(ctx, old.DatabaseID, old.ID)
	if err != nil {
		return time.Time{}, err
	}
	if cur.PromisedUntil != nil {
		if kept := cur.PromisedUntil.Add(s.RevokeMargin); kept.After(revokeAfter) {
			revokeAfter = kept
		}
	}
	if expires != nil && expires.Before(revokeAfter) {
		revokeAfter = *expires
	}
	if !revokeAfter.Equal(*old.ExpiresAt) {
		old.ExpiresAt = &revokeAfter
		if err := q.UpdateCredential(ctx, old); err != nil {
			return time.Time{}, err
		}
	}
	return revokeAfter, nil
}

// markAllRevoked records every live credential of the database issued
// before before revoked, without asking the driver (it already stopped them).
func (s *Service) markAllRevoked(ctx context.Context, env *Environment, db *Database, before time.Time) error {
	return s.tx(ctx, func(q Queries) error {
		cs, err := q.ListCredentials(ctx, CredentialFilter{DatabaseID: db.ID, Statuses: []CredentialStatus{CredentialActive, CredentialRotating}})
		if err != nil {
			return err
		}
		now := s.Now()
		for _, c := range cs {
			if !c.IssuedAt.Before(before) {
				continue
			}
			c.Status = CredentialRevoked
			c.RevokedAt = &now
			if err := q.UpdateCredential(ctx, c); err != nil {
				return err
			}
		}
		return s.changed(ctx, q, env.OrgID)
	})
}

// issueMissing issues an active credential for every scope that has none.
// Idempotent: a scope that has one is left alone.
func (s *Service) issueMissing(ctx context.Context, env *Environment, db *Database, t *Target) error {
	for _, scope := range drivers.Scopes() {
		if _, err := s.activeCredential(ctx, db, scope); err == nil {
			continue
		} else if !IsCode(err, EUNAVAILABLE) {
			return err
		}
		slot, from, err := s.reissueSlot(ctx, db, scope)
		if err != nil {
			return err
		}
		if _, err := s.issue(ctx, env, db, t, scope, slot, from); err != nil {
			return err
		}
	}
	return nil
}

// reissueSlot picks the slot for a scope that has no active credential: the
// one its newest credential did not use, so a rotating credential in grace
// keeps its slot.
func (s *Service) reissueSlot(ctx context.Context, db *Database, scope drivers.Scope) (drivers.Slot, string, error) {
	cs, err := s.Store.ListCredentials(ctx, CredentialFilter{DatabaseID: db.ID, Scope: scope})
	if err != nil {
		return "", "", err
	}
	if len(cs) == 0 {
		return drivers.SlotA, "", nil
	}
	newest := cs[0]
	if newest.Status == CredentialRevoked {
		return newest.Slot, newest.ID, nil
	}
	return newest.Slot.Other(), newest.ID, nil
}

// endGrace revokes a rotating credential whose grace is over, and records
// it. On a target that cannot revoke one credential, revoking would stop the
// active ones too: the rotated one ages out at its own expiry (adr/0005) and
// is only recorded revoked. Idempotent.
func (s *Service) endGrace(ctx context.Context, env *Environment, db *Database, t *Target, c *Credential) error {
	if c.Status == CredentialRevoked {
		return nil
	}
	agedOut := revokesAll(t)
	if !agedOut {
		// c may have been read before a rotation ended its grace and
		// reissued its slot: the slot's role is the new credential's now.
		// Read it again under the slot's lock, which an issue takes too,
		// on every replica, and hold it until the grace's end is stored.
		unlock, err := s.lockSlot(ctx, db, c.Scope, c.Slot)
		if err != nil {
			return err
		}
		defer unlock()
		cur, err := s.Store.GetCredential(ctx, c.DatabaseID, c.ID)
		if err != nil {
			return err
		}
		if cur.Status == CredentialRevoked {
			c.Status, c.RevokedAt = cur.Status, cur.RevokedAt
			return nil
		}
		if s.CrashPoint != nil {
			s.CrashPoint("credential.grace_end.revoke")
		}
		if _, err := t.Driver.RevokeCredential(ctx, drivers.RevokeCredentialRequest{Database: db.DriverDatabase(), Scope: c.Scope, Slot: c.Slot, Username: c.Username}); err != nil {
			return fmt.Errorf("cannot revoke credential: %w", err)
		}
	}
	now := s.Now()
	err := s.tx(ctx, func(q Queries) error {
		// Every replica's RevokeDue may find this credential due at once
		// (adr/0028): the grace ends once. Rewriting the credential's key
		// with itself takes its row until this transaction ends (another
		// replica's end of this grace waits here), and the read after it
		// sees what such a replica committed meanwhile.
		if err := q.RewrapCredential(ctx, c, c.KMSKeyID); err != nil {
			return err
		}
		cur, err := q.GetCredential(ctx, c.DatabaseID, c.ID)
		if err != nil {
			return err
		}
		if cur.Status == CredentialRevoked {
			return errGraceEnded
		}
		cur.Status, cur.RevokedAt = CredentialRevoked, &now
		if err := q.UpdateCredential(ctx, cur); err != nil {
			return err
		}
		return s.audit(ctx, q, nil, env.OrgID, env.ID, "credential.grace_ended", c.ID, map[string]any{"scope": string(c.Scope), "slot": string(c.Slot), "aged_out": agedOut})
	})
	if errors.Is(err, errGraceEnded) {
		err = nil
	}
	if err == nil {
		c.Status, c.RevokedAt = CredentialRevoked, &now
	}
	return err
}

// errGraceEnded says another replica ended the grace first.
var errGraceEnded = errors.New("the grace was ended by another replica")

// RevokeDue revokes rotating credentials whose grace (stretched to their
// promise) has ended. It returns how many it revoked; a failure on one is
// logged and the rest go on.
func (s *Service) RevokeDue(ctx context.Context) (int, error) {
	// Platform-wide background work: every organization's rows (ADR 0027).
	ctx = WithPlatformScope(ctx)
	cs, err := s.Store.ListCredentialsDue(ctx, s.Now(), 100)
	if err != nil {
		return 0, fmt.Errorf("cannot list credentials due: %w", err)
	}
	n := 0
	for _, c := range cs {
		db, err := s.Store.GetDatabase(ctx, c.DatabaseID)
		if err != nil {
			return n, err
		}
		t, ok := s.Targets[db.Target]
		if !ok {
			s.Logger.Error("credential on unconfigured target", "credential", c.ID, "target", db.Target)
			continue
		}
		key := "revoke:" + c.ID
		if s.targetDown(db.Target) || !s.retry.due(key, s.Now()) {
			continue
		}
		env, err := s.environmentOf(ctx, db)
		if err != nil {
			return n, err
		}
		if err := s.endGrace(ctx, env, db, t, c); err != nil {
			s.noteTarget(ctx, db.Target, err)
			failures := s.retry.failed(key, s.Now(), s.RetryBackoff)
			s.Logger.Error("cannot revoke credential after grace", "credential", c.ID, "failures", failures, "err", err)
			continue
		}
		s.retry.succeeded(key)
		n++
	}
	return n, nil
}

// environmentOf returns the environment (deleted or not) of a database.
func (s *Service) environmentOf(ctx context.Context, db *Database) (*Environment, error) {
	orgID, err := s.Store.OrgOf(ctx, KindEnvironment, db.EnvironmentID)
	if err != nil {
		return nil, err
	}
	envs, _, err := s.Store.ListEnvironments(ctx, EnvironmentFilter{OrgID: orgID, IDs: []string{db.EnvironmentID}, IncludeDeleted: true}, Page{Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(envs) == 0 {
		return nil, Errorf(ENOTFOUND, "environment not found")
	}
	return envs[0], nil
}

// RotateDue starts the scheduled rotations: every active credential past
// three quarters of its life (issued to expiry) is rotated onto its standby
// slot with the default grace, one operation per environment, long before it
// would stop working. Environments that are busy (an operation running, a
// previous rotation still in grace, the issuance budget spent) are left for
// the next pass. It returns how many rotations it started.
func (s *Service) RotateDue(ctx context.Context) (int, error) {
	// Platform-wide background work: every organization's rows (ADR 0027).
	ctx = WithPlatformScope(ctx)
	now := s.Now()
	longest := s.TokenTTL
	for _, ttl := range s.CredentialTTL {
		longest = max(longest, ttl)
	}
	cs, err := s.Store.ListCredentialsExpiring(ctx, now.Add(longest/4), 100)
	if err != nil {
		return 0, fmt.Errorf("cannot list expiring credentials: %w", err)
	}
	due := map[string][]*Credential{}
	var order []string
	for _, c := range cs {
		life := c.ExpiresAt.Sub(c.IssuedAt)
		if now.Before(c.ExpiresAt.Add(-life / 4)) {
			continue
		}
		if _, seen := due[c.DatabaseID]; !seen {
			order = append(order, c.DatabaseID)
		}
		due[c.DatabaseID] = append(due[c.DatabaseID], c)
	}
	started := 0
	for _, dbID := range order {
		ok, err := s.rotateScheduled(ctx, dbID, due[dbID])
		if err != nil {
			s.Logger.Error("scheduled rotation failed to start", "database", dbID, "err", err)
			continue
		}
		if ok {
			started++
		}
	}
	return started, nil
}

// rotateScheduled starts one rotation of the database's due credentials and
// waits for it; ok is false when the environment was busy, its target is
// down, or its last scheduled rotation failed and RetryBackoff has not
// passed since.
func (s *Service) rotateScheduled(ctx context.Context, dbID string, creds []*Credential) (bool, error) {
	db, err := s.Store.GetDatabase(ctx, dbID)
	if err != nil {
		return false, err
	}
	key := "rotate:" + db.ID
	if s.targetDown(db.Target) || !s.retry.due(key, s.Now()) {
		return false, nil
	}
	env, err := s.environmentOf(ctx, db)
	if err != nil {
		return false, err
	}
	params := rotateParams{From: map[Scope]string{}, Grace: s.Grace, Reason: "scheduled: credential past three quarters of its life", Retry: s.retry.failures(key)}
	for _, c := range creds {
		params.Scopes = append(params.Scopes, c.Scope)
	}
	op, done, err := s.startRotation(ctx, nil, &access{env: env}, "credentials.rotate_scheduled", len(creds), func(q Queries, db *Database) error {
		return s.prepareRotation(ctx, q, db, &params)
	}, &params)
	if IsCode(err, ETOOMANY) {
		s.retry.failed(key, s.Now(), s.RetryBackoff)
		return false, nil
	}
	if IsCode(err, ECONFLICT) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// Its steps are bounded (StepTimeout, Attempts), so it ends soon; the
	// outcome decides the database's backoff.
	select {
	case <-done:
	case <-ctx.Done():
		return true, ctx.Err()
	}
	if op.Status == OpSucceeded {
		s.retry.succeeded(key)
	} else {
		s.retry.failed(key, s.Now(), s.RetryBackoff)
	}
	return true, nil
}

// quietRetry reports whether op is a scheduled rotation retried after a
// failure, whose failure is not audited again.
func quietRetry(op *Operation) bool {
	if op.Kind != OpRotate {
		return false
	}
	var params rotateParams
	return json.Unmarshal(op.Params, &params) == nil && params.Retry > 0
}

// issueRateBudget refuses (ETOOMANY, with an audit event) issuing n more
// credentials on db when that would pass MaxIssuedPerHour within the last
// hour, so a crash loop, a retry storm or a script cannot mint thousands.
func (s *Service) issueRateBudget(ctx context.Context, p *Principal, env *Environment, db *Database, n int) error {
	if s.MaxIssuedPerHour <= 0 {
		return nil
	}
	now := s.Now()
	recent, err := s.Store.ListCredentials(ctx, CredentialFilter{DatabaseID: db.ID, IssuedSince: now.Add(-time.Hour)})
	if err != nil {
		return err
	}
	if len(recent)+n <= s.MaxIssuedPerHour {
		return nil
	}
	// Room comes back as the oldest issuances of the window age out of it.
	i := max(len(recent)+n-s.MaxIssuedPerHour-1, 0)
	wait := time.Second
	if i < len(recent) {
		oldest := recent[len(recent)-1-i].IssuedAt
		wait = max(oldest.Add(time.Hour).Sub(now), time.Second)
	}
	return s.budgetExceeded(ctx, p, env, "rate", Errorf(ETOOMANY,
		"the environment's credential issuance budget is spent: %d issued in the last hour, at most %d; try again in %s",
		len(recent), s.MaxIssuedPerHour, wait.Round(time.Second)).After(wait))
}

// liveBudget refuses (ETOOMANY, with an audit event) a new credential of
// scope on db while MaxLiveCredentials active and rotating ones exist.
func (s *Service) liveBudget(ctx context.Context, env *Environment, db *Database, scope Scope) error {
	if s.MaxLiveCredentials <= 0 {
		return nil
	}
	live, err := s.Store.CountCredentials(ctx, CredentialFilter{DatabaseID: db.ID, Scope: scope, Statuses: []CredentialStatus{CredentialActive, CredentialRotating}})
	if err != nil {
		return err
	}
	if live < s.MaxLiveCredentials {
		return nil
	}
	return s.budgetExceeded(ctx, nil, env, "live", Errorf(ETOOMANY,
		"the environment already has %d live %s credentials, the most allowed; revoke one first", live, scope))
}

// budgetExceeded records that a budget refused an issuance, and returns refusal.
func (s *Service) budgetExceeded(ctx context.Context, p *Principal, env *Environment, budget string, refusal *Error) error {
	if err := s.audit(ctx, s.Store, p, env.OrgID, env.ID, "credentials.budget_exceeded", env.ID, map[string]any{"budget": budget, "detail": refusal.Message}); err != nil {
		s.Logger.Error("cannot record a refused issuance", "environment", env.ID, "err", err)
	}
	return refusal
}
