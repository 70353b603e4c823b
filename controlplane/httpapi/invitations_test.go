package httpapi_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/mail"
	"github.com/envplane/envplane/controlplane/mail/mailtest"
)

// mailedLink returns the invitation link of the only message to email.
func mailedLink(tb testing.TB, srv *mailtest.Server, email string) string {
	tb.Helper()
	var links []string
	for _, m := range srv.Messages() {
		if len(m.To) == 1 && m.To[0] == email {
			links = append(links, regexp.MustCompile(`https?://\S+/invitations/epi_[A-Za-z0-9_-]+`).FindString(string(m.Data)))
		}
	}
	if len(links) == 0 || links[len(links)-1] == "" {
		tb.Fatalf("no invitation link mailed to %s (%d messages)", email, len(srv.Messages()))
	}
	return links[len(links)-1]
}

// useSMTP makes h mail invitations through srv.
func useSMTP(tb testing.TB, h *harness, srv *mailtest.Server) {
	tb.Helper()
	m, err := mail.New(srv.Host, srv.Port, "envplane@example.com", mail.None)
	if err != nil {
		tb.Fatal(err)
	}
	m.Timeout = 5 * time.Second
	h.svc.People.Mailer = m
	h.svc.People.PublicURL = "https://envplane.example"
}

// TestInvitationByMail: an owner invites by email with an environment role;
// the link arrives at a real SMTP server; accepting it creates the user,
// applies both roles and sets the password the person then signs in with.
// Accepting again, a revoked and an expired invitation are 410; a signed-in
// user of another email is 409; with the mail server down the invitation
// is kept, the answer says the mail was not sent, and a resend works once
// the server is back (the old link is dead).
func TestInvitationByMail(t *testing.T) {
	h := newHarness(t)
	withPeople(t, h)
	h.org(t, "acme")
	h.org(t, "other")
	h.env(t, h.admin, "acme", "dev", "development")
	smtpSrv := mailtest.Start(t, mailtest.Options{})
	useSMTP(t, h, smtpSrv)

	var inv cp.InvitationResponse
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/invitations", map[string]any{
		"email": "Lee@Example.com", "role": "member", "environments": []map[string]string{{"environment": "dev", "role": "env_user"}},
	}).decode(t, &inv)
	if inv.Mail != cp.MailSent || inv.Link != "" || inv.Invitation.MailSentAt == nil || inv.Invitation.Email != "lee@example.com" {
		t.Fatalf("invitation answer: %+v", inv)
	}
	link := mailedLink(t, smtpSrv, "lee@example.com")
	if !strings.HasPrefix(link, "https://envplane.example/invitations/epi_") {
		t.Fatalf("link %q", link)
	}
	token := linkToken(t, link)
	var pending cp.List[*cp.Invitation]
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/invitations", nil).decode(t, &pending)
	if len(pending.Items) != 1 || pending.Items[0].ID != inv.Invitation.ID {
		t.Fatalf("pending: %+v", pending.Items)
	}
	// Too short a password changes nothing.
	if p := h.must(t, http.StatusUnprocessableEntity, "", "POST", "/v1/invitations/"+token+"/accept", map[string]string{"password": "short"}).problem(t); p.Errors[0].Field != "password" {
		t.Errorf("short password: %+v", p)
	}
	var acc cp.AcceptInvitationResponse
	h.must(t, http.StatusOK, "", "POST", "/v1/invitations/"+token+"/accept", map[string]string{"password": "lee-password-1234", "name": "Lee"}).decode(t, &acc)
	if acc.Organization != "acme" || acc.Role != cp.OrgMember || acc.Email != "lee@example.com" {
		t.Errorf("accepted: %+v", acc)
	}
	lee, _ := h.session(t, "lee@example.com", "lee-password-1234")
	h.must(t, http.StatusOK, lee, "GET", "/v1/organizations/acme/environments/dev/connection?scope=readwrite", nil)
	h.must(t, http.StatusForbidden, lee, "GET", "/v1/organizations/acme/environments/dev/connection?scope=admin", nil)
	if p := h.must(t, http.StatusGone, "", "POST", "/v1/invitations/"+token+"/accept", map[string]string{"password": "lee-password-1234"}).problem(t); p.Code != cp.EGONE {
		t.Errorf("accepting twice: %+v", p)
	}
	h.must(t, http.StatusNotFound, "", "POST", "/v1/invitations/epi_unknown/accept", map[string]string{"password": "lee-password-1234"})
	h.must(t, http.StatusNotFound, "", "POST", "/v1/invitations/"+strings.Replace(token, "epi_", "envp_", 1)+"/accept", map[string]string{"password": "lee-password-1234"})
	h.must(t, http.StatusConflict, h.admin, "DELETE", "/v1/organizations/acme/invitations/"+inv.Invitation.ID, nil)
	h.must(t, http.StatusConflict, h.admin, "POST", "/v1/organizations/acme/invitations", map[string]any{"email": "lee@example.com", "role": "member"})

	// An existing user with a password joins another organization: signed in
	// as that user, or giving that password; not as someone else.
	var other cp.InvitationResponse
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/other/invitations", map[string]any{"email": "lee@example.com", "role": "admin"}).decode(t, &other)
	otherToken := linkToken(t, mailedLink(t, smtpSrv, "lee@example.com"))
	admin, _ := h.session(t, "ops@example.com", adminPassword)
	if p := h.must(t, http.StatusConflict, admin, "POST", "/v1/invitations/"+otherToken+"/accept", map[string]string{"password": "x"}).problem(t); !strings.Contains(p.Detail, "another email") {
		t.Errorf("another user's acceptance: %+v", p)
	}
	h.must(t, http.StatusUnauthorized, "", "POST", "/v1/invitations/"+otherToken+"/accept", map[string]string{"password": "not-lees-password"})
	h.must(t, http.StatusOK, lee, "POST", "/v1/invitations/"+otherToken+"/accept", map[string]string{"password": ""})
	h.must(t, http.StatusOK, lee, "GET", "/v1/organizations/other/members", nil)
	// The password did not change.
	h.session(t, "lee@example.com", "lee-password-1234")

	// Revoked and expired are gone too.
	var r1, r2 cp.InvitationResponse
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/invitations", map[string]any{"email": "rev@example.com", "role": "member"}).decode(t, &r1)
	revToken := linkToken(t, mailedLink(t, smtpSrv, "rev@example.com"))
	h.must(t, http.StatusNoContent, h.admin, "DELETE", "/v1/organizations/acme/invitations/"+r1.Invitation.ID, nil)
	h.must(t, http.StatusNoContent, h.admin, "DELETE", "/v1/organizations/acme/invitations/"+r1.Invitation.ID, nil)
	h.must(t, http.StatusGone, "", "POST", "/v1/invitations/"+revToken+"/accept", map[string]string{"password": "rev-password-1234"})
	h.must(t, http.StatusGone, h.admin, "POST", "/v1/organizations/acme/invitations/"+r1.Invitation.ID+"/resend", nil)
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/invitations", map[string]any{"email": "late@example.com", "role": "member"}).decode(t, &r2)
	lateToken := linkToken(t, mailedLink(t, smtpSrv, "late@example.com"))
	h.clock.Advance(7*24*time.Hour + time.Second)
	h.must(t, http.StatusGone, "", "POST", "/v1/invitations/"+lateToken+"/accept", map[string]string{"password": "late-password-1234"})
	// Another organization's invitation is absent.
	h.must(t, http.StatusNotFound, h.admin, "DELETE", "/v1/organizations/other/invitations/"+r2.Invitation.ID, nil)
	otherAdmin := h.member(t, "other", "oa@example.com", cp.OrgAdmin)
	h.must(t, http.StatusNotFound, otherAdmin, "POST", "/v1/organizations/acme/invitations/"+r2.Invitation.ID+"/resend", nil)
	// Lee's session ended with the week; a key of Lee's acts for Lee.
	var leeKey cp.CreateAPIKeyResponse
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/api-keys", map[string]any{"name": "lee", "user": "lee@example.com"}).decode(t, &leeKey)
	lee = leeKey.Token

	// The mail server goes down: the invitation is kept and says so.
	smtpSrv.Close()
	var down cp.InvitationResponse
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/invitations", map[string]any{"email": "sam@example.com", "role": "admin"}).decode(t, &down)
	if down.Mail != cp.MailFailed || down.Link != "" || down.Invitation.MailSentAt != nil {
		t.Fatalf("invitation with the mail server down: %+v", down)
	}
	back := mailtest.Start(t, mailtest.Options{})
	useSMTP(t, h, back)
	var resent cp.InvitationResponse
	h.must(t, http.StatusOK, h.admin, "POST", "/v1/organizations/acme/invitations/"+down.Invitation.ID+"/resend", nil).decode(t, &resent)
	if resent.Mail != cp.MailSent || resent.Invitation.ID != down.Invitation.ID {
		t.Fatalf("resent: %+v", resent)
	}
	h.must(t, http.StatusOK, "", "POST", "/v1/invitations/"+linkToken(t, mailedLink(t, back, "sam@example.com"))+"/accept", map[string]string{"password": "sam-password-1234"})

	// Bad input names the field and changes nothing.
	for _, body := range []map[string]any{
		{"email": "not-an-email", "role": "member"},
		{"email": "x@example.com", "role": "root"},
		{"email": "x@example.com", "role": "member", "environments": []map[string]string{{"environment": "nope", "role": "env_user"}}},
		{"email": "x@example.com", "role": "member", "environments": []map[string]string{{"environment": "dev", "role": "boss"}}},
		{"email": "x@example.com", "role": "member", "environments": []map[string]string{{"environment": "d\u0000ev", "role": "env_user"}}},
		{"email": "x@example.com", "role": "member", "environments": []map[string]string{{"environment": "", "role": "env_user"}}},
	} {
		h.must(t, http.StatusUnprocessableEntity, h.admin, "POST", "/v1/organizations/acme/invitations", body)
	}
	h.must(t, http.StatusUnprocessableEntity, h.admin, "POST", "/v1/organizations/acme/invitations", map[string]any{"email": "x@example.com", "role": "member", "extra": 1})
	h.must(t, http.StatusForbidden, lee, "POST", "/v1/organizations/acme/invitations", map[string]any{"email": "x@example.com", "role": "member"})
	h.must(t, http.StatusNotFound, lee, "GET", "/v1/organizations/nobody/invitations", nil)
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/invitations", nil).decode(t, &pending)
	if len(pending.Items) != 0 {
		t.Errorf("pending after bad input: %d", len(pending.Items))
	}
}

// TestInvitationWithoutMailServer: with no SMTP configured the link is
// answered once, and the answer says so; on both stores, text no store can
// hold in an environment role is 422, not 500.
func TestInvitationWithoutMailServer(t *testing.T) {
	for _, store := range []struct {
		name string
		opts []harnessOption
	}{{"sqlite", nil}, {"postgres", []harnessOption{withPostgresStore()}}} {
		t.Run(store.name, func(t *testing.T) { testInvitationWithoutMailServer(t, newHarness(t, store.opts...)) })
	}
}

func testInvitationWithoutMailServer(t *testing.T, h *harness) {
	withPeople(t, h)
	h.org(t, "acme")
	h.must(t, http.StatusUnprocessableEntity, h.admin, "POST", "/v1/organizations/acme/invitations",
		map[string]any{"email": "x@example.com", "role": "member", "environments": []map[string]string{{"environment": "d\u0000ev", "role": "env_user"}}})
	h.must(t, http.StatusNotFound, "", "POST", "/v1/invitations/epi_\u00ff/accept", map[string]string{"password": "long-enough-password"})
	var inv cp.InvitationResponse
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/invitations", map[string]any{"email": "a@example.com", "role": "member"}).decode(t, &inv)
	if inv.Mail != cp.MailNotConfigured || !strings.Contains(inv.Link, "/invitations/epi_") {
		t.Fatalf("answer: %+v", inv)
	}
	var list cp.List[*cp.Invitation]
	r := h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/invitations", nil)
	r.decode(t, &list)
	if strings.Contains(string(r.body), "epi_") || len(list.Items) != 1 {
		t.Errorf("list shows a token or misses the invitation: %s", r.body)
	}
	// An admin cannot invite an owner; only owners can.
	adminKey := h.member(t, "acme", "adm@example.com", cp.OrgAdmin)
	h.must(t, http.StatusForbidden, adminKey, "POST", "/v1/organizations/acme/invitations", map[string]any{"email": "o@example.com", "role": "owner"})
}
