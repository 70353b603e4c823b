package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	cp "github.com/envplane/envplane/controlplane"
)

// TestRequire2FAIsEnforced: once an organization requires two factors, a
// member without one gets 403 two_factor_required on its resources (the
// router included), by session and by user key alike, told how to enrol;
// another organization's resources stay 404; enrolling lets them in.
func TestRequire2FAIsEnforced(t *testing.T) {
	h := newHarness(t)
	withPeople(t, h)
	h.org(t, "acme")
	h.org(t, "other")
	h.env(t, h.admin, "acme", "dev", "development")
	h.person(t, "acme", "noa@example.com", "noa-password-1234", cp.OrgAdmin)
	noa, _ := h.session(t, "noa@example.com", "noa-password-1234")
	var key cp.CreateAPIKeyResponse
	h.must(t, http.StatusCreated, noa, "POST", "/v1/organizations/acme/api-keys", map[string]any{"name": "noa"}).decode(t, &key)
	h.must(t, http.StatusOK, key.Token, "GET", "/v1/organizations/acme/environments/dev/connection?scope=admin", nil)

	// An app key has no user: the policy governs members, not apps.
	var app cp.CreateAPIKeyResponse
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/api-keys", map[string]any{"name": "app", "environment": "dev"}).decode(t, &app)
	h.must(t, http.StatusOK, h.admin, "PATCH", "/v1/organizations/acme", map[string]any{"require_2fa": true})
	h.must(t, http.StatusOK, app.Token, "GET", "/v1/organizations/acme/environments/dev/connection?scope=readonly", nil)
	for _, token := range []string{noa, key.Token} {
		for _, path := range []string{"/v1/organizations/acme", "/v1/organizations/acme/environments", "/v1/organizations/acme/environments/dev/connection?scope=admin"} {
			p := h.must(t, http.StatusForbidden, token, "GET", path, nil).problem(t)
			if p.Code != cp.ETWOFACTOR || p.Type != "https://envplane.dev/problems/two_factor_required" || !strings.Contains(p.Detail, "/v1/users/me/totp") {
				t.Errorf("GET %s: %+v", path, p)
			}
		}
		h.must(t, http.StatusNotFound, token, "GET", "/v1/organizations/other", nil)
	}
	// Enrolment is not an organization's resource: the session can enrol.
	h.enrol(t, noa)
	h.must(t, http.StatusOK, noa, "GET", "/v1/organizations/acme", nil)
	h.must(t, http.StatusOK, key.Token, "GET", "/v1/organizations/acme/environments/dev/connection?scope=admin", nil)
}

// TestOwnersRevokeMemberSessions: an admin ends a member's sessions; a
// member cannot; an admin cannot end an owner's; a user of another
// organization is 404.
func TestOwnersRevokeMemberSessions(t *testing.T) {
	h := newHarness(t)
	withPeople(t, h)
	h.org(t, "acme")
	h.org(t, "other")
	h.person(t, "acme", "ann@example.com", "ann-password-1234", cp.OrgAdmin)
	h.person(t, "acme", "bob@example.com", "bob-password-1234", cp.OrgMember)
	h.person(t, "acme", "own@example.com", "own-password-1234", cp.OrgOwner)
	h.person(t, "other", "zed@example.com", "zed-password-1234", cp.OrgMember)
	ann, _ := h.session(t, "ann@example.com", "ann-password-1234")
	bob1, _ := h.session(t, "bob@example.com", "bob-password-1234")
	bob2, _ := h.session(t, "bob@example.com", "bob-password-1234")
	own, _ := h.session(t, "own@example.com", "own-password-1234")
	zed, _ := h.session(t, "zed@example.com", "zed-password-1234")

	h.must(t, http.StatusForbidden, bob1, "DELETE", "/v1/organizations/acme/members/ann@example.com/sessions", nil)
	h.must(t, http.StatusForbidden, ann, "DELETE", "/v1/organizations/acme/members/own@example.com/sessions", nil)
	h.must(t, http.StatusNotFound, ann, "DELETE", "/v1/organizations/acme/members/zed@example.com/sessions", nil)
	h.must(t, http.StatusNotFound, ann, "DELETE", "/v1/organizations/other/members/zed@example.com/sessions", nil)
	var got struct{ Revoked int }
	h.must(t, http.StatusOK, ann, "DELETE", "/v1/organizations/acme/members/bob@example.com/sessions", nil).decode(t, &got)
	if got.Revoked != 2 {
		t.Errorf("revoked %d sessions, want 2", got.Revoked)
	}
	for _, s := range []string{bob1, bob2} {
		h.must(t, http.StatusUnauthorized, s, "GET", "/v1/me", nil)
	}
	for _, s := range []string{ann, own, zed} {
		h.must(t, http.StatusOK, s, "GET", "/v1/me", nil)
	}
	h.must(t, http.StatusOK, own, "DELETE", "/v1/organizations/acme/members/ann@example.com/sessions", nil)
	h.must(t, http.StatusUnauthorized, ann, "GET", "/v1/me", nil)
}

// TestNoSecretInLogs: a whole run of invitations (mailed and not), sign-in
// failures and successes, enrolment and sessions, with the server logging
// at debug level, never writes a password, TOTP secret or code, recovery
// code, session token or invitation token to the log.
func TestNoSecretInLogs(t *testing.T) {
	h := newHarness(t)
	withPeople(t, h)
	h.org(t, "acme")
	var secrets []string
	token := h.invite(t, "acme", "log@example.com", cp.OrgOwner)
	secrets = append(secrets, token, adminPassword, "log-password-1234", "wrong-password-77")
	h.must(t, http.StatusOK, "", "POST", "/v1/invitations/"+token+"/accept", map[string]string{"password": "log-password-1234"})
	h.must(t, http.StatusGone, "", "POST", "/v1/invitations/"+token+"/accept", map[string]string{"password": "log-password-1234"})
	h.signIn(t, "log@example.com", "wrong-password-77")
	s, _ := h.session(t, "log@example.com", "log-password-1234")
	e := h.enrol(t, s)
	secrets = append(secrets, s, e.Secret)
	secrets = append(secrets, e.RecoveryCodes...)
	c := code(t, e.Secret, h.clock.Now())
	s2, _ := h.session(t, "log@example.com", "log-password-1234", "totp", c)
	h.signIn(t, "log@example.com", "log-password-1234", "totp", c)
	s3, _ := h.session(t, "log@example.com", "log-password-1234", "recovery_code", e.RecoveryCodes[0])
	secrets = append(secrets, s2, s3, c)
	h.must(t, http.StatusOK, s2, "GET", "/v1/sessions", nil)
	h.must(t, http.StatusNotFound, s2, "DELETE", "/v1/sessions/ses_unknown", nil)
	logs := h.logs.String()
	if !strings.Contains(logs, `"route":"/v1/sessions"`) || !strings.Contains(logs, `"route":"/v1/invitations/:token/accept"`) {
		t.Fatalf("the log did not capture the requests:\n%s", logs)
	}
	for _, secret := range secrets {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds a secret (%d characters)", len(secret))
		}
	}
}
