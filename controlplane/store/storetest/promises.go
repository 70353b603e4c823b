package storetest

import (
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
)

// testPromiseCredential checks that a promise only ever rises, survives
// UpdateCredential, and is refused once a rotation demoted the credential.
func testPromiseCredential(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a := newOrg(t, s, "a")
	d1, d2 := newDatabase(t, s, newEnv(t, s, a, "one"), "local"), newDatabase(t, s, newEnv(t, s, a, "two"), "local")
	c := newCredential(t, s, d1, nil)
	promised := func(what string, want time.Time) {
		t.Helper()
		got, err := s.GetCredential(ctx, d1.ID, c.ID)
		must(t, err)
		if got.PromisedUntil == nil || !got.PromisedUntil.Equal(us(want)) || got.PromisedUntil.Location() != time.UTC {
			t.Errorf("%s: promised until %v, want %v in UTC", what, got.PromisedUntil, us(want).UTC())
		}
	}
	got, err := s.GetCredential(ctx, d1.ID, c.ID)
	must(t, err)
	if got.PromisedUntil != nil {
		t.Errorf("a new credential is promised until %v, want no promise", got.PromisedUntil)
	}

	// CreateCredential writes the promise it is given.
	given := newCredential(t, s, d1, func(c *controlplane.Credential) {
		c.Scope, c.PromisedUntil = "readonly", ptr(at(time.Minute))
	})
	got, err = s.GetCredential(ctx, d1.ID, given.ID)
	must(t, err)
	same(t, "credential created with a promise", given, got)

	must(t, s.PromiseCredential(ctx, d1.ID, c.ID, at(time.Minute)))
	promised("first promise", at(time.Minute))
	must(t, s.PromiseCredential(ctx, d1.ID, c.ID, at(30*time.Second)))
	promised("after a lower promise", at(time.Minute))
	must(t, s.PromiseCredential(ctx, d1.ID, c.ID, at(2*time.Minute)))
	promised("after a higher promise", at(2*time.Minute))
	must(t, s.PromiseCredential(ctx, d1.ID, c.ID, at(2*time.Minute)))
	promised("after the same promise again", at(2*time.Minute))

	// UpdateCredential saves a value read before the promise, or one with a
	// later promise, and leaves the stored promise alone.
	stale := *c
	stale.ExpiresAt = ptr(at(24 * time.Hour))
	must(t, s.UpdateCredential(ctx, &stale))
	promised("after an update without a promise", at(2*time.Minute))
	stale.PromisedUntil = ptr(at(time.Hour))
	must(t, s.UpdateCredential(ctx, &stale))
	promised("after an update with a later promise", at(2*time.Minute))

	wantCode(t, s.PromiseCredential(ctx, d2.ID, c.ID, at(time.Hour)), controlplane.ENOTFOUND)
	wantCode(t, s.PromiseCredential(ctx, d1.ID, newID("cred_"), at(time.Hour)), controlplane.ENOTFOUND)

	// A rotation demoted the credential: no more promises.
	stale.Status = controlplane.CredentialRotating
	must(t, s.UpdateCredential(ctx, &stale))
	wantCode(t, s.PromiseCredential(ctx, d1.ID, c.ID, at(time.Hour)), controlplane.ECONFLICT)
	promised("after a refused promise", at(2*time.Minute))
	stale.Status, stale.RevokedAt = controlplane.CredentialRevoked, ptr(at(time.Hour))
	must(t, s.UpdateCredential(ctx, &stale))
	wantCode(t, s.PromiseCredential(ctx, d1.ID, c.ID, at(time.Hour)), controlplane.ECONFLICT)
}

// testPromiseRacesDemotion runs a promise while a transaction that demoted
// the credential is still open: the promise waits for it and is refused, and
// the demoting transaction, reading the promise after its write, sees none
// that it could miss.
func testPromiseRacesDemotion(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	d := newDatabase(t, s, newEnv(t, s, newOrg(t, s, "a"), "one"), "local")
	c := newCredential(t, s, d, func(c *controlplane.Credential) { c.PromisedUntil = ptr(at(time.Minute)) })

	promise := make(chan error, 1)
	must(t, s.WithTx(ctx, func(q controlplane.Queries) error {
		demoted := *c
		demoted.Status, demoted.ExpiresAt = controlplane.CredentialRotating, ptr(at(15*time.Minute))
		if err := q.UpdateCredential(ctx, &demoted); err != nil {
			return err
		}
		go func() { promise <- s.PromiseCredential(ctx, d.ID, c.ID, at(time.Hour)) }()
		// Long enough for the promise to be waiting on the credential's row.
		time.Sleep(100 * time.Millisecond)
		got, err := q.GetCredential(ctx, d.ID, c.ID)
		if err != nil {
			return err
		}
		if got.PromisedUntil == nil || !got.PromisedUntil.Equal(us(at(time.Minute))) {
			t.Errorf("the demoting transaction reads a promise until %v, want the one before it, %v", got.PromisedUntil, us(at(time.Minute)))
		}
		return nil
	}))
	wantCode(t, <-promise, controlplane.ECONFLICT)
	got, err := s.GetCredential(ctx, d.ID, c.ID)
	must(t, err)
	if got.PromisedUntil == nil || !got.PromisedUntil.Equal(us(at(time.Minute))) {
		t.Errorf("a refused promise left the credential promised until %v, want %v", got.PromisedUntil, us(at(time.Minute)))
	}
}

func testCountCredentials(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a := newOrg(t, s, "a")
	d, other := newDatabase(t, s, newEnv(t, s, a, "one"), "local"), newDatabase(t, s, newEnv(t, s, a, "two"), "local")
	issued := func(scope controlplane.Scope, status controlplane.CredentialStatus, when time.Duration) *controlplane.Credential {
		return newCredential(t, s, d, func(c *controlplane.Credential) {
			c.Scope, c.Status, c.IssuedAt = scope, status, at(when)
		})
	}
	oldRW := issued("readwrite", controlplane.CredentialActive, -2*time.Hour)
	adminAtHour := issued("admin", controlplane.CredentialActive, -time.Hour)
	rotating := issued("readwrite", controlplane.CredentialRotating, -30*time.Minute)
	revoked := issued("readwrite", controlplane.CredentialRevoked, -10*time.Minute)
	ro := issued("readonly", controlplane.CredentialActive, 0)
	newCredential(t, s, other, func(c *controlplane.Credential) { c.IssuedAt = at(0) })
	live := []controlplane.CredentialStatus{controlplane.CredentialActive, controlplane.CredentialRotating}

	for _, tc := range []struct {
		name string
		f    controlplane.CredentialFilter
		want []string // newest first
	}{
		{"all", controlplane.CredentialFilter{}, []string{ro.ID, revoked.ID, rotating.ID, adminAtHour.ID, oldRW.ID}},
		{"readwrite", controlplane.CredentialFilter{Scope: "readwrite"}, []string{revoked.ID, rotating.ID, oldRW.ID}},
		{"live", controlplane.CredentialFilter{Statuses: live}, []string{ro.ID, rotating.ID, adminAtHour.ID, oldRW.ID}},
		{"no status", controlplane.CredentialFilter{Statuses: []controlplane.CredentialStatus{}}, []string{}},
		// Issued at or after: the credential issued exactly then counts.
		{"issued in the last hour", controlplane.CredentialFilter{IssuedSince: at(-time.Hour)},
			[]string{ro.ID, revoked.ID, rotating.ID, adminAtHour.ID}},
		{"issued just after", controlplane.CredentialFilter{IssuedSince: at(-time.Hour + time.Microsecond)},
			[]string{ro.ID, revoked.ID, rotating.ID}},
		{"live readwrite in the last hour", controlplane.CredentialFilter{Scope: "readwrite", Statuses: live, IssuedSince: at(-time.Hour)},
			[]string{rotating.ID}},
		{"issued later", controlplane.CredentialFilter{IssuedSince: at(time.Second)}, []string{}},
	} {
		f := tc.f
		f.DatabaseID = d.ID
		n, err := s.CountCredentials(ctx, f)
		must(t, err)
		if n != len(tc.want) {
			t.Errorf("CountCredentials(%s) = %d, want %d", tc.name, n, len(tc.want))
		}
		listed, err := s.ListCredentials(ctx, f)
		must(t, err)
		same(t, "ListCredentials("+tc.name+")", tc.want, ids(listed, credID))
	}
	n, err := s.CountCredentials(ctx, controlplane.CredentialFilter{DatabaseID: newID("db_")})
	must(t, err)
	if n != 0 {
		t.Errorf("CountCredentials of an absent database = %d, want 0", n)
	}
}
