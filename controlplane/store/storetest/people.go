package storetest

import (
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
)

func testUserAuth(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	u := newUser(t, s, "auth@example.com")
	_, err := s.GetUserAuth(ctx, u.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
	wantCode(t, s.PutUserAuth(ctx, &controlplane.UserAuth{UserID: newID("usr_"), PasswordHash: "x", UpdatedAt: at(0)}), controlplane.ENOTFOUND)

	a := &controlplane.UserAuth{UserID: u.ID, PasswordHash: "$argon2id$pw1", UpdatedAt: at(0)}
	must(t, s.PutUserAuth(ctx, a))
	got, err := s.GetUserAuth(ctx, u.ID)
	must(t, err)
	same(t, "auth without totp", a, got)

	// An enrolment, confirmed, then the steps only go up.
	a.TOTP = controlplane.Sealed{SecretCipher: []byte("secret-1"), DEKCipher: []byte("dek-1"), KeyID: "local:1"}
	a.TOTPConfirmedAt, a.UpdatedAt = ptr(at(time.Minute)), at(time.Minute)
	must(t, s.PutUserAuth(ctx, a))
	must(t, s.AdvanceTOTPStep(ctx, u.ID, 100))
	wantCode(t, s.AdvanceTOTPStep(ctx, u.ID, 100), controlplane.ECONFLICT)
	wantCode(t, s.AdvanceTOTPStep(ctx, u.ID, 99), controlplane.ECONFLICT)
	must(t, s.AdvanceTOTPStep(ctx, u.ID, 101))
	wantCode(t, s.AdvanceTOTPStep(ctx, newID("usr_"), 1), controlplane.ENOTFOUND)
	// A password change keeps the last step; a new enrolment restarts it.
	a.PasswordHash = "$argon2id$pw2"
	must(t, s.PutUserAuth(ctx, a))
	got, err = s.GetUserAuth(ctx, u.ID)
	must(t, err)
	a.TOTPLastStep = 101
	same(t, "auth after password change", a, got)
	a.TOTP.SecretCipher = []byte("secret-2")
	must(t, s.PutUserAuth(ctx, a))
	got, err = s.GetUserAuth(ctx, u.ID)
	must(t, err)
	if got.TOTPLastStep != 0 {
		t.Errorf("last step after a new enrolment = %d, want 0", got.TOTPLastStep)
	}

	must(t, s.ReplaceRecoveryCodes(ctx, u.ID, []string{"h1", "h2", "h3"}))
	must(t, s.UseRecoveryCode(ctx, u.ID, "h2", at(time.Hour)))
	wantCode(t, s.UseRecoveryCode(ctx, u.ID, "h2", at(time.Hour)), controlplane.ENOTFOUND)
	wantCode(t, s.UseRecoveryCode(ctx, u.ID, "h9", at(time.Hour)), controlplane.ENOTFOUND)
	n, err := s.CountRecoveryCodes(ctx, u.ID)
	must(t, err)
	if n != 2 {
		t.Errorf("unused recovery codes = %d, want 2", n)
	}
	must(t, s.ReplaceRecoveryCodes(ctx, u.ID, []string{"h2"}))
	must(t, s.UseRecoveryCode(ctx, u.ID, "h2", at(time.Hour)))
	wantCode(t, s.UseRecoveryCode(ctx, u.ID, "h1", at(time.Hour)), controlplane.ENOTFOUND)
}

func testSignInFailures(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	n, last, err := s.GetSignInFailures(ctx, "account:a@example.com")
	must(t, err)
	if n != 0 || !last.IsZero() {
		t.Fatalf("failures of an unknown key = %d at %v, want 0", n, last)
	}
	for i := 1; i <= 3; i++ {
		n, err := s.RecordSignInFailure(ctx, "account:a@example.com", at(time.Duration(i)*time.Second), at(-time.Hour))
		must(t, err)
		if n != i {
			t.Fatalf("failure %d counted as %d", i, n)
		}
	}
	n, last, err = s.GetSignInFailures(ctx, "account:a@example.com")
	must(t, err)
	if n != 3 || !last.Equal(us(at(3*time.Second))) {
		t.Errorf("failures = %d at %v, want 3 at %v", n, last, at(3*time.Second))
	}
	// A failure after the window restarts the count.
	n, err = s.RecordSignInFailure(ctx, "account:a@example.com", at(2*time.Hour), at(time.Hour))
	must(t, err)
	if n != 1 {
		t.Errorf("failure after the window counted as %d, want 1", n)
	}
	_, err = s.RecordSignInFailure(ctx, "address:10.0.0.1", at(time.Hour), at(0))
	must(t, err)
	pruned, err := s.DeleteSignInFailuresBefore(ctx, at(90*time.Minute))
	must(t, err)
	if pruned != 1 {
		t.Errorf("pruned %d failure counts, want the address's 1", pruned)
	}
	n, _, err = s.GetSignInFailures(ctx, "account:a@example.com")
	must(t, err)
	if n != 1 {
		t.Errorf("a recent count was pruned: %d", n)
	}
	must(t, s.ClearSignInFailures(ctx, "account:a@example.com"))
	must(t, s.ClearSignInFailures(ctx, "account:a@example.com"))
	n, _, err = s.GetSignInFailures(ctx, "account:a@example.com")
	must(t, err)
	if n != 0 {
		t.Errorf("failures after clear = %d", n)
	}
}

func testSessions(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	org := newOrg(t, s, "sess")
	u, v := newUser(t, s, "s1@example.com"), newUser(t, s, "s2@example.com")
	mk := func(user *controlplane.User, hash string, expires time.Duration) *controlplane.Session {
		x := &controlplane.Session{ID: newID("ses_"), UserID: user.ID, Hash: hash, Address: "127.0.0.1", UserAgent: "test",
			CreatedAt: at(0), LastSeenAt: at(0), ExpiresAt: at(expires)}
		must(t, s.CreateSession(ctx, x))
		return x
	}
	a, b, old := mk(u, "h-a", time.Hour), mk(u, "h-b", time.Hour), mk(u, "h-old", time.Minute)
	other := mk(v, "h-v", time.Hour)
	wantCode(t, s.CreateSession(ctx, &controlplane.Session{ID: newID("ses_"), UserID: u.ID, Hash: "h-a", CreatedAt: at(0), LastSeenAt: at(0), ExpiresAt: at(time.Hour)}), controlplane.ECONFLICT)
	wantCode(t, s.CreateSession(ctx, &controlplane.Session{ID: newID("ses_"), UserID: newID("usr_"), Hash: "h-x", CreatedAt: at(0), LastSeenAt: at(0), ExpiresAt: at(time.Hour)}), controlplane.ENOTFOUND)

	got, err := s.GetSessionByHash(ctx, "h-a")
	must(t, err)
	same(t, "session by hash", a, got)
	_, err = s.GetSessionByHash(ctx, "h-none")
	wantCode(t, err, controlplane.ENOTFOUND)

	list, err := s.ListUserSessions(ctx, u.ID, at(30*time.Minute))
	must(t, err)
	same(t, "live sessions", []string{a.ID, b.ID}, ids(list, func(x *controlplane.Session) string { return x.ID }))
	_ = old

	must(t, s.SetSessionContext(ctx, a.ID, org.ID, "env_1"))
	wantCode(t, s.SetSessionContext(ctx, a.ID, newID("org_"), ""), controlplane.ENOTFOUND)
	wantCode(t, s.SetSessionContext(ctx, newID("ses_"), org.ID, ""), controlplane.ENOTFOUND)
	must(t, s.TouchSession(ctx, a.ID, at(10*time.Minute)))
	must(t, s.TouchSession(ctx, a.ID, at(5*time.Minute)))
	must(t, s.TouchSession(ctx, newID("ses_"), at(0)))
	got, err = s.GetSessionByHash(ctx, "h-a")
	must(t, err)
	if got.OrgID != org.ID || got.EnvironmentID != "env_1" || !got.LastSeenAt.Equal(us(at(10*time.Minute))) {
		t.Errorf("after context and touches: org %q env %q last seen %v", got.OrgID, got.EnvironmentID, got.LastSeenAt)
	}

	// Another user's session is absent; revoking twice keeps the first time.
	wantCode(t, s.RevokeSession(ctx, u.ID, other.ID, at(time.Minute)), controlplane.ENOTFOUND)
	must(t, s.RevokeSession(ctx, u.ID, a.ID, at(time.Minute)))
	must(t, s.RevokeSession(ctx, u.ID, a.ID, at(2*time.Minute)))
	got, err = s.GetSessionByHash(ctx, "h-a")
	must(t, err)
	if got.RevokedAt == nil || !got.RevokedAt.Equal(us(at(time.Minute))) {
		t.Errorf("revoked at %v, want %v", got.RevokedAt, at(time.Minute))
	}
	n, err := s.RevokeUserSessions(ctx, u.ID, at(3*time.Minute))
	must(t, err)
	if n != 2 { // b and old; a was revoked already
		t.Errorf("revoked %d sessions, want 2", n)
	}
	list, err = s.ListUserSessions(ctx, u.ID, at(0))
	must(t, err)
	if len(list) != 0 {
		t.Errorf("sessions after revoking all: %v", ids(list, func(x *controlplane.Session) string { return x.ID }))
	}
	list, err = s.ListUserSessions(ctx, v.ID, at(0))
	must(t, err)
	if len(list) != 1 {
		t.Errorf("another user's sessions were revoked too: %d left", len(list))
	}

	// Pruning removes what ended: revoked, expired, or idle; v's live session stays.
	idle := mk(v, "h-idle", time.Hour)
	must(t, s.TouchSession(ctx, other.ID, at(50*time.Minute)))
	pruned, err := s.DeleteSessionsEnded(ctx, at(10*time.Minute), at(40*time.Minute))
	must(t, err)
	if pruned != 4 { // b and old (revoked), a (revoked), idle (last seen at 0)
		t.Errorf("pruned %d sessions, want 4", pruned)
	}
	_, err = s.GetSessionByHash(ctx, idle.Hash)
	wantCode(t, err, controlplane.ENOTFOUND)
	_, err = s.GetSessionByHash(ctx, other.Hash)
	must(t, err)
	must(t, s.CreateSession(ctx, &controlplane.Session{ID: newID("ses_"), UserID: u.ID, Hash: "h-a2", CreatedAt: at(0), LastSeenAt: at(0), ExpiresAt: at(time.Hour)}))
	must(t, s.SetSessionContext(ctx, sessionIDOf(s, t, "h-a2"), org.ID, "env_1"))

	// Deleting the organization clears the active organization and environment.
	must(t, s.DeleteOrganization(ctx, org.ID))
	got, err = s.GetSessionByHash(ctx, "h-a2")
	must(t, err)
	if got.OrgID != "" || got.EnvironmentID != "" {
		t.Errorf("after the organization was deleted: org %q env %q", got.OrgID, got.EnvironmentID)
	}
}

func testInvitations(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a, b := newOrg(t, s, "inv-a"), newOrg(t, s, "inv-b")
	u := newUser(t, s, "new@example.com")
	mk := func(org *controlplane.Organization, hash string, expires time.Duration) *controlplane.Invitation {
		i := &controlplane.Invitation{ID: newID("inv_"), OrgID: org.ID, Email: "new@example.com", Role: controlplane.OrgMember,
			Environments: []controlplane.InvitationEnvironment{{Environment: "dev", Role: controlplane.EnvUser}},
			Hash:         hash, InvitedBy: "user:x", CreatedAt: at(0), ExpiresAt: at(expires)}
		must(t, s.CreateInvitation(ctx, i))
		return i
	}
	i1, i2, expired := mk(a, "ih-1", time.Hour), mk(a, "ih-2", time.Hour), mk(a, "ih-3", time.Minute)
	ib := mk(b, "ih-b", time.Hour)
	wantCode(t, s.CreateInvitation(ctx, &controlplane.Invitation{ID: newID("inv_"), OrgID: a.ID, Email: "x@example.com", Role: "root", Hash: "ih-bad", CreatedAt: at(0), ExpiresAt: at(time.Hour)}), controlplane.EINVALID)
	wantCode(t, s.CreateInvitation(ctx, &controlplane.Invitation{ID: newID("inv_"), OrgID: a.ID, Email: "x@example.com", Role: "member", Hash: "ih-1", CreatedAt: at(0), ExpiresAt: at(time.Hour)}), controlplane.ECONFLICT)

	got, err := s.GetInvitationByHash(ctx, "ih-1")
	must(t, err)
	same(t, "invitation by hash", i1, got)
	got, err = s.GetInvitation(ctx, a.ID, i2.ID)
	must(t, err)
	same(t, "invitation by id", i2, got)
	_, err = s.GetInvitation(ctx, a.ID, ib.ID)
	wantCode(t, err, controlplane.ENOTFOUND)

	list, _, err := s.ListPendingInvitations(ctx, a.ID, at(30*time.Minute), controlplane.Page{})
	must(t, err)
	same(t, "pending", []string{i1.ID, i2.ID}, ids(list, func(i *controlplane.Invitation) string { return i.ID }))
	_ = expired

	must(t, s.RenewInvitation(ctx, a.ID, i2.ID, "ih-2b", at(2*time.Hour)))
	_, err = s.GetInvitationByHash(ctx, "ih-2")
	wantCode(t, err, controlplane.ENOTFOUND)
	wantCode(t, s.RenewInvitation(ctx, b.ID, i2.ID, "ih-2c", at(2*time.Hour)), controlplane.ENOTFOUND)
	must(t, s.MarkInvitationMailed(ctx, i2.ID, at(time.Second)))
	got, err = s.GetInvitationByHash(ctx, "ih-2b")
	must(t, err)
	if !got.ExpiresAt.Equal(us(at(2*time.Hour))) || got.MailSentAt == nil {
		t.Errorf("renewed invitation expires %v, mailed %v", got.ExpiresAt, got.MailSentAt)
	}

	// Accepting is once; a revoked invitation cannot be accepted; an accepted one cannot be revoked.
	must(t, s.AcceptInvitation(ctx, i1.ID, u.ID, at(time.Minute)))
	wantCode(t, s.AcceptInvitation(ctx, i1.ID, u.ID, at(time.Minute)), controlplane.ECONFLICT)
	wantCode(t, s.RevokeInvitation(ctx, a.ID, i1.ID, at(time.Minute)), controlplane.ECONFLICT)
	wantCode(t, s.RenewInvitation(ctx, a.ID, i1.ID, "ih-1b", at(time.Hour)), controlplane.ECONFLICT)
	must(t, s.RevokeInvitation(ctx, a.ID, i2.ID, at(time.Minute)))
	must(t, s.RevokeInvitation(ctx, a.ID, i2.ID, at(time.Hour)))
	wantCode(t, s.AcceptInvitation(ctx, i2.ID, u.ID, at(time.Minute)), controlplane.ECONFLICT)
	wantCode(t, s.RevokeInvitation(ctx, b.ID, i2.ID, at(time.Minute)), controlplane.ENOTFOUND)
	wantCode(t, s.AcceptInvitation(ctx, newID("inv_"), u.ID, at(time.Minute)), controlplane.ENOTFOUND)
	got, err = s.GetInvitation(ctx, a.ID, i1.ID)
	must(t, err)
	if got.AcceptedAt == nil || got.AcceptedBy != u.ID {
		t.Errorf("accepted invitation: at %v by %q", got.AcceptedAt, got.AcceptedBy)
	}
	got, err = s.GetInvitation(ctx, a.ID, i2.ID)
	must(t, err)
	if got.RevokedAt == nil || !got.RevokedAt.Equal(us(at(time.Minute))) {
		t.Errorf("revoked at %v, want the first time", got.RevokedAt)
	}
	list, _, err = s.ListPendingInvitations(ctx, a.ID, at(0), controlplane.Page{})
	must(t, err)
	same(t, "pending after accept and revoke", []string{expired.ID}, ids(list, func(i *controlplane.Invitation) string { return i.ID }))
}

// sessionIDOf returns the id of the session with hash.
func sessionIDOf(s controlplane.Store, tb testing.TB, hash string) string {
	tb.Helper()
	x, err := s.GetSessionByHash(tb.Context(), hash)
	must(tb, err)
	return x.ID
}

func testUserTOTPByKey(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	enrol := func(email, keyID string, confirmed bool) *controlplane.UserAuth {
		u := newUser(t, s, email)
		a := &controlplane.UserAuth{UserID: u.ID, PasswordHash: "$argon2id$pw", UpdatedAt: at(0)}
		if keyID != "" {
			a.TOTP = controlplane.Sealed{SecretCipher: []byte("secret-" + email), DEKCipher: []byte("dek-" + email), KeyID: keyID}
		}
		if confirmed {
			a.TOTPConfirmedAt = ptr(at(time.Minute))
		}
		must(t, s.PutUserAuth(ctx, a))
		return a
	}
	old := enrol("old@example.com", "local:1", true)
	enrol("new@example.com", "local:2", true)
	enrol("password@example.com", "", false)
	pending := enrol("pending@example.com", "local:1", false)

	counts, err := s.CountUserTOTPByKey(ctx)
	must(t, err)
	same(t, "totp secrets per key", map[string]int{"local:1": 2, "local:2": 1}, counts)
	stale, err := s.ListUserTOTPByKey(ctx, "local:2", 10)
	must(t, err)
	same(t, "totp secrets not under local:2", []*controlplane.UserAuth{old, pending}, stale)
	stale, err = s.ListUserTOTPByKey(ctx, "local:2", 1)
	must(t, err)
	same(t, "first totp secret not under local:2", []*controlplane.UserAuth{old}, stale)

	// The rewrap changes the wrapped key only while it is the one read,
	// and keeps the secret and its last step.
	must(t, s.AdvanceTOTPStep(ctx, old.UserID, 42))
	moved := controlplane.Sealed{SecretCipher: old.TOTP.SecretCipher, DEKCipher: []byte("dek-rewrapped"), KeyID: "local:2"}
	wantCode(t, s.RewrapUserTOTP(ctx, old.UserID, controlplane.Sealed{DEKCipher: old.TOTP.DEKCipher, KeyID: "local:9"}, moved), controlplane.ECONFLICT)
	wantCode(t, s.RewrapUserTOTP(ctx, old.UserID, controlplane.Sealed{DEKCipher: []byte("dek-other"), KeyID: "local:1"}, moved), controlplane.ECONFLICT)
	wantCode(t, s.RewrapUserTOTP(ctx, newID("usr_"), old.TOTP, moved), controlplane.ENOTFOUND)
	must(t, s.RewrapUserTOTP(ctx, old.UserID, old.TOTP, moved))
	wantCode(t, s.RewrapUserTOTP(ctx, old.UserID, old.TOTP, moved), controlplane.ECONFLICT)
	got, err := s.GetUserAuth(ctx, old.UserID)
	must(t, err)
	old.TOTP, old.TOTPLastStep = moved, 42
	same(t, "rewrapped auth", old, got)

	counts, err = s.CountUserTOTPByKey(ctx)
	must(t, err)
	same(t, "totp secrets per key after a rewrap", map[string]int{"local:1": 1, "local:2": 2}, counts)
}
