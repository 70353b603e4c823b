package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/alexedwards/argon2id"
	"github.com/pquerna/otp/totp"

	cp "github.com/envplane/envplane/controlplane"
)

// adminPassword is the platform admin's password in these tests.
const adminPassword = "admin-pass-5b0c9e2d"

// withPeople readies h for sign-in tests: a cheap argon2id cost (the cost
// is configuration, what is tested is the behaviour) and the platform
// admin's first password, as `envplane bootstrap --password-file` sets it.
func withPeople(tb testing.TB, h *harness) {
	tb.Helper()
	h.svc.People.Password = &argon2id.Params{Memory: 8 * 1024, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32}
	set, err := h.svc.SetFirstPassword(tb.Context(), "ops@example.com", adminPassword)
	if err != nil || !set {
		tb.Fatalf("SetFirstPassword: set=%v err=%v", set, err)
	}
}

// signIn signs in and returns the answer.
func (h *harness) signIn(tb testing.TB, email, password string, extra ...string) response {
	tb.Helper()
	body := map[string]string{"email": email, "password": password}
	for i := 0; i+1 < len(extra); i += 2 {
		body[extra[i]] = extra[i+1]
	}
	return h.do(tb, "", "POST", "/v1/sessions", body)
}

// session signs in and returns the session token, failing tb otherwise.
func (h *harness) session(tb testing.TB, email, password string, extra ...string) (token, id string) {
	tb.Helper()
	r := h.signIn(tb, email, password, extra...)
	if r.status != http.StatusCreated {
		tb.Fatalf("sign in as %s: status %d: %s", email, r.status, r.body)
	}
	var resp cp.SignInResponse
	r.decode(tb, &resp)
	if !strings.HasPrefix(resp.Token, cp.SessionPrefix) {
		tb.Fatalf("session token %q lacks the prefix %q", resp.Token[:4], cp.SessionPrefix)
	}
	return resp.Token, resp.Session.ID
}

// invite invites email to org as the admin (no mail server: the link is
// answered) and returns the invitation token.
func (h *harness) invite(tb testing.TB, org, email string, role cp.OrgRole, envs ...cp.InvitationEnvironment) string {
	tb.Helper()
	var resp cp.InvitationResponse
	h.must(tb, http.StatusCreated, h.admin, "POST", "/v1/organizations/"+org+"/invitations",
		cp.CreateInvitationRequest{Email: email, Role: role, Environments: envs}).decode(tb, &resp)
	if resp.Mail != cp.MailNotConfigured || resp.Link == "" {
		tb.Fatalf("invitation without a mail server: mail %q, link given %v", resp.Mail, resp.Link != "")
	}
	return linkToken(tb, resp.Link)
}

// linkToken returns the invitation token at the end of a link.
func linkToken(tb testing.TB, link string) string {
	tb.Helper()
	i := strings.LastIndex(link, "/invitations/")
	if i < 0 {
		tb.Fatalf("not an invitation link: %q", link)
	}
	return strings.TrimSpace(link[i+len("/invitations/"):])
}

// person invites email to org with role, accepts with password and returns
// the user's id.
func (h *harness) person(tb testing.TB, org, email, password string, role cp.OrgRole, envs ...cp.InvitationEnvironment) string {
	tb.Helper()
	token := h.invite(tb, org, email, role, envs...)
	var acc cp.AcceptInvitationResponse
	h.must(tb, http.StatusOK, "", "POST", "/v1/invitations/"+token+"/accept", map[string]string{"password": password}).decode(tb, &acc)
	return acc.UserID
}

// code returns the TOTP code of secret at t.
func code(tb testing.TB, secret string, t time.Time) string {
	tb.Helper()
	c, err := totp.GenerateCode(secret, t)
	if err != nil {
		tb.Fatalf("totp: %v", err)
	}
	return c
}

// enrol enrols TOTP for the session's user and confirms it; it returns the
// enrolment (secret and recovery codes).
func (h *harness) enrol(tb testing.TB, session string) cp.TOTPEnrolment {
	tb.Helper()
	var e cp.TOTPEnrolment
	h.must(tb, http.StatusCreated, session, "POST", "/v1/users/me/totp", nil).decode(tb, &e)
	h.must(tb, http.StatusNoContent, session, "POST", "/v1/users/me/totp/confirm", map[string]string{"code": code(tb, e.Secret, h.clock.Now())})
	// The confirming code's step is used: sign-ins take the next one.
	h.clock.Advance(30 * time.Second)
	return e
}
