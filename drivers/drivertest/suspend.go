package drivertest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/envplane/envplane/drivers"
)

// suspender returns the driver's Suspender; every envplane driver must
// implement it, so the suite fails rather than skips without one.
func (s *suite) suspender(tb testing.TB) drivers.Suspender {
	tb.Helper()
	sp, ok := s.h.Driver.(drivers.Suspender)
	if !ok {
		tb.Fatalf("%s does not implement drivers.Suspender: suspension must cut access at the database", s.h.Driver.Name())
	}
	return sp
}

func (s *suite) suspend(tb testing.TB, db drivers.Database) drivers.SuspendDatabaseResponse {
	tb.Helper()
	resp, err := s.suspender(tb).SuspendDatabase(context.Background(), drivers.SuspendDatabaseRequest{Database: db})
	if err != nil {
		s.fail(tb, "suspend", err)
	}
	return resp
}

func (s *suite) resume(tb testing.TB, db drivers.Database, live ...drivers.Credential) {
	tb.Helper()
	_, err := s.suspender(tb).ResumeDatabase(context.Background(), drivers.ResumeDatabaseRequest{Database: db, Credentials: live})
	if err != nil {
		s.fail(tb, "resume", err)
	}
}

// testSuspendStopsEveryCredential: after SuspendDatabase no credential of
// any scope or slot opens the database, a second suspend changes nothing,
// and where the engine has sessions, one held from before is ended.
func (s *suite) testSuspendStopsEveryCredential(t *testing.T) {
	db := s.create(t)
	var creds []drivers.Credential
	for _, scope := range drivers.Scopes() {
		creds = append(creds, s.issue(t, db, scope, drivers.SlotA, time.Time{}))
	}
	creds = append(creds, s.issue(t, db, drivers.ScopeReadWrite, drivers.SlotB, time.Now().Add(time.Hour)))
	for _, c := range creds {
		s.works(t, db, c, fmt.Sprintf("%s/%s before suspension", c.Scope, c.Slot))
	}
	ctx := context.Background()
	held := s.open(t, db, creds[1])
	conn, err := held.DB.Conn(ctx)
	if err != nil {
		s.fail(t, "hold a connection", err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.ExecContext(ctx, "SELECT 1"); err != nil {
		s.fail(t, "query before suspension", err)
	}

	s.suspend(t, db)
	for _, c := range creds {
		s.denied(t, db, c, fmt.Sprintf("%s/%s of a suspended database", c.Scope, c.Slot))
	}
	s.suspend(t, db) // a retried suspension converges
	for _, c := range creds {
		s.denied(t, db, c, fmt.Sprintf("%s/%s after a second suspend", c.Scope, c.Slot))
	}
	if s.h.EndsSessionsOnRevoke {
		_, err := conn.ExecContext(ctx, "SELECT 1")
		s.check(t, "query on a connection held across the suspension", err)
		if err == nil {
			t.Error("a connection opened before the suspension still works")
		}
	}
}

// testResumeRestoresAccess: ResumeDatabase brings back the credentials it is
// given (with their secrets, unless the suspension revoked them, in which
// case new ones work), leaves a credential revoked before the suspension
// refused, and rotation works afterwards.
func (s *suite) testResumeRestoresAccess(t *testing.T) {
	db := s.create(t)
	live := []drivers.Credential{
		s.issue(t, db, drivers.ScopeAdmin, drivers.SlotA, time.Time{}),
		s.issue(t, db, drivers.ScopeReadWrite, drivers.SlotA, time.Now().Add(time.Hour)),
		s.issue(t, db, drivers.ScopeReadOnly, drivers.SlotA, time.Time{}),
	}
	var revoked drivers.Credential
	if !s.h.RevokeInvalidatesAllSlots {
		revoked = s.issue(t, db, drivers.ScopeReadWrite, drivers.SlotB, time.Time{})
		s.revoke(t, db, revoked)
	}
	a := s.open(t, db, live[0])
	s.createTable(t, a.DB)
	if err := s.insert(t, a.DB, a.Dialect, 1); err != nil {
		s.fail(t, "admin insert", err)
	}

	resp := s.suspend(t, db)
	s.resume(t, db, live...)
	s.resume(t, db, live...) // a retried resume converges
	if resp.CredentialsRevoked {
		// The engine could not keep them: they stay refused, and
		// credentials issued now work.
		for _, c := range live {
			s.denied(t, db, c, fmt.Sprintf("%s/%s that the suspension revoked", c.Scope, c.Slot))
		}
		for i, c := range live {
			live[i] = s.issue(t, db, c.Scope, c.Slot.Other(), time.Time{})
		}
	}
	for _, c := range live {
		s.works(t, db, c, fmt.Sprintf("%s/%s after resume", c.Scope, c.Slot))
	}
	if revoked.Secret != "" {
		s.denied(t, db, revoked, "a credential revoked before the suspension, after resume")
	}
	w := s.open(t, db, live[1])
	if err := s.insert(t, w.DB, w.Dialect, 2); err != nil {
		s.fail(t, "readwrite insert after resume", err)
	}
	if n := s.count(t, s.open(t, db, live[2]).DB); n != 2 {
		t.Fatalf("after resume readonly sees %d rows, want 2: suspension must keep the data", n)
	}

	// Rotation after resume: a new secret on the other slot works, and
	// the old one can be revoked.
	rw := live[1]
	next := s.issue(t, db, rw.Scope, rw.Slot.Other(), time.Time{})
	s.works(t, db, next, "readwrite rotated after resume")
	s.revoke(t, db, rw)
	s.denied(t, db, rw, "the rotated-out readwrite credential after its revoke")
	if s.h.RevokeInvalidatesAllSlots {
		next = s.issue(t, db, next.Scope, next.Slot, time.Time{})
	}
	s.works(t, db, next, "readwrite rotated after resume, after the old one's revoke")
}

// testIssueWhileSuspended: a credential issued while the database is
// suspended is refused once the database is suspended again (what the
// control plane does after issuing in a suspended environment), and works
// once resumed with it.
func (s *suite) testIssueWhileSuspended(t *testing.T) {
	db := s.create(t)
	s.issue(t, db, drivers.ScopeAdmin, drivers.SlotA, time.Time{})
	resp := s.suspend(t, db)
	c := s.issue(t, db, drivers.ScopeReadWrite, drivers.SlotB, time.Time{})
	s.suspend(t, db)
	s.denied(t, db, c, "a credential issued while suspended, after suspending again")
	s.resume(t, db, c)
	if resp.CredentialsRevoked {
		c = s.issue(t, db, c.Scope, c.Slot, time.Time{})
	}
	s.works(t, db, c, "a credential issued while suspended, after resume")
}

// testSuspendMissing: suspending a database that does not exist is success
// (a retry after a drop converges); resuming one is ErrNotFound.
func (s *suite) testSuspendMissing(t *testing.T) {
	never := drivers.Database{Name: NewDatabaseName(t), Region: s.h.Region}
	s.suspend(t, never)
	_, err := s.suspender(t).ResumeDatabase(context.Background(), drivers.ResumeDatabaseRequest{Database: never})
	s.check(t, "resume a missing database", err)
	if !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("ResumeDatabase of a missing database: %v, want ErrNotFound", s.redacted(err))
	}
}
