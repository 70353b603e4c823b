package httpapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"image/png"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
)

// TestSessionsAuthorizeLikeTheUser: on both stores, the platform admin
// signs in with the password bootstrap set; a member's session does what
// the member's role allows and no more (403 above the role, 404 in another
// organization), carries an active organization and environment checked
// against membership, is listed without its token, and stops working when
// revoked, idle too long or past its absolute end.
func TestSessionsAuthorizeLikeTheUser(t *testing.T) {
	for _, store := range []struct {
		name string
		opts []harnessOption
	}{{"sqlite", nil}, {"postgres", []harnessOption{withPostgresStore()}}} {
		t.Run(store.name, func(t *testing.T) {
			h := newHarness(t, store.opts...)
			withPeople(t, h)
			admin, _ := h.session(t, "ops@example.com", adminPassword)
			// The admin's session creates organizations, as the platform key does.
			h.must(t, http.StatusCreated, admin, "POST", "/v1/organizations", map[string]any{"slug": "acme", "name": "Acme"})
			h.org(t, "other")
			dev := h.env(t, h.admin, "acme", "dev", "development")
			h.env(t, h.admin, "acme", "stage", "staging")
			h.person(t, "acme", "mia@example.com", "mia-password-1234", cp.OrgMember, cp.InvitationEnvironment{Environment: "dev", Role: cp.EnvViewer})

			mia, miaID := h.session(t, "Mia@Example.com", "mia-password-1234")
			var me cp.Me
			h.must(t, http.StatusOK, mia, "GET", "/v1/me", nil).decode(t, &me)
			if me.User == nil || me.User.Email != "mia@example.com" || me.PlatformAdmin {
				t.Fatalf("me = %+v", me)
			}
			h.must(t, http.StatusOK, mia, "GET", "/v1/organizations/acme/environments/dev", nil)
			h.must(t, http.StatusNotFound, mia, "GET", "/v1/organizations/acme/environments/stage", nil)
			h.must(t, http.StatusForbidden, mia, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "x", "type": "development"})
			h.must(t, http.StatusForbidden, mia, "GET", "/v1/organizations/acme/members", nil)
			h.must(t, http.StatusNotFound, mia, "GET", "/v1/organizations/other", nil)
			h.must(t, http.StatusForbidden, mia, "POST", "/v1/organizations", map[string]any{"slug": "mine", "name": "m"})

			// The active organization and environment: validated, 404 across organizations.
			var sess cp.Session
			h.must(t, http.StatusOK, mia, "PUT", "/v1/sessions/current", map[string]string{"organization": "acme", "environment": "dev"}).decode(t, &sess)
			if sess.ID != miaID || sess.EnvironmentID != dev.ID || !sess.Current {
				t.Errorf("current session = %+v", sess)
			}
			h.must(t, http.StatusNotFound, mia, "PUT", "/v1/sessions/current", map[string]string{"organization": "other"})
			h.must(t, http.StatusNotFound, mia, "PUT", "/v1/sessions/current", map[string]string{"organization": "acme", "environment": "stage"})
			if p := h.must(t, http.StatusUnprocessableEntity, mia, "PUT", "/v1/sessions/current", map[string]string{"environment": "dev"}).problem(t); len(p.Errors) != 1 || p.Errors[0].Field != "organization" {
				t.Errorf("environment without organization: %+v", p)
			}
			// An API key has no session to set.
			h.must(t, http.StatusForbidden, h.admin, "PUT", "/v1/sessions/current", map[string]string{"organization": "acme"})

			second, secondID := h.session(t, "mia@example.com", "mia-password-1234")
			r := h.must(t, http.StatusOK, mia, "GET", "/v1/sessions", nil)
			if bytes.Contains(r.body, []byte(cp.SessionPrefix)) || bytes.Contains(r.body, []byte(`"hash"`)) {
				t.Errorf("session list shows a token or hash: %s", r.body)
			}
			var list cp.List[*cp.Session]
			r.decode(t, &list)
			if len(list.Items) != 2 || list.Items[0].ID != miaID || !list.Items[0].Current || list.Items[1].Current || list.Items[0].OrgID == "" || list.Items[0].Address == "" {
				t.Errorf("sessions = %s", r.body)
			}
			// Another user's session is absent.
			h.must(t, http.StatusNotFound, admin, "DELETE", "/v1/sessions/"+secondID, nil)
			h.must(t, http.StatusNoContent, mia, "DELETE", "/v1/sessions/"+secondID, nil)
			h.must(t, http.StatusUnauthorized, second, "GET", "/v1/me", nil)
			h.must(t, http.StatusOK, mia, "GET", "/v1/me", nil)

			// Idle: a session unused for SessionIdle ends; one used keeps going.
			h.svc.People.SessionIdle, h.svc.People.SessionAbsolute = time.Hour, 3*time.Hour
			idle, _ := h.session(t, "mia@example.com", "mia-password-1234")
			busy, _ := h.session(t, "mia@example.com", "mia-password-1234")
			for range 4 {
				h.clock.Advance(40 * time.Minute)
				h.must(t, http.StatusOK, busy, "GET", "/v1/me", nil)
				h.svc.FlushReceipts(t.Context())
			}
			h.must(t, http.StatusUnauthorized, idle, "GET", "/v1/me", nil)
			// Absolute: past three hours even a busy session ends.
			h.clock.Advance(40 * time.Minute)
			if p := h.must(t, http.StatusUnauthorized, busy, "GET", "/v1/me", nil).problem(t); p.Code != cp.EUNAUTHORIZED {
				t.Errorf("expired session: %+v", p)
			}
			h.must(t, http.StatusUnauthorized, "eps_forged-token", "GET", "/v1/me", nil)
			// API keys keep working beside sessions.
			h.must(t, http.StatusOK, h.admin, "GET", "/v1/me", nil)
		})
	}
}

// TestSignInFailuresLookAlikeAndLockOut: a wrong password, an unknown
// email and a wrong TOTP code get one answer; MaxAccountFailures failures
// lock the account out (even with the right password) until Lockout has
// passed; every success and failure is audited without the password.
func TestSignInFailuresLookAlikeAndLockOut(t *testing.T) {
	h := newHarness(t)
	withPeople(t, h)
	h.org(t, "acme")
	h.person(t, "acme", "ty@example.com", "ty-password-12345", cp.OrgMember)
	h.person(t, "acme", "two@example.com", "two-password-12345", cp.OrgMember)
	two, _ := h.session(t, "two@example.com", "two-password-12345")
	h.enrol(t, two)

	answers := []response{
		h.signIn(t, "ty@example.com", "wrong-password-000"),
		h.signIn(t, "nobody@example.com", "ty-password-12345"),
		h.signIn(t, "two@example.com", "two-password-12345", "totp", "000000"),
		h.signIn(t, "two@example.com", "wrong-password-000", "totp", "000000"),
		h.signIn(t, "two@example.com", "two-password-12345", "recovery_code", "aaaaa-bbbbb"),
	}
	for i, r := range answers {
		if r.status != http.StatusUnauthorized || string(r.body) != string(answers[0].body) {
			t.Errorf("answer %d: %d %s, want the same as answer 0: %s", i, r.status, r.body, answers[0].body)
		}
	}
	// Without a code, the account with a second factor asks for one.
	if p := h.signIn(t, "two@example.com", "two-password-12345").problem(t); p.Status != http.StatusUnauthorized || p.Code != cp.ETOTP {
		t.Errorf("no code: %+v", p)
	}

	h.svc.People.MaxAccountFailures, h.svc.People.Lockout = 3, 10*time.Minute
	for range 2 { // one failure already counted for ty
		h.must(t, http.StatusUnauthorized, "", "POST", "/v1/sessions", map[string]string{"email": "ty@example.com", "password": "guess-password-01"})
	}
	r := h.signIn(t, "ty@example.com", "ty-password-12345")
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "600" {
		t.Fatalf("locked account with the right password: %d (Retry-After %q) %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	h.clock.Advance(9 * time.Minute)
	h.must(t, http.StatusTooManyRequests, "", "POST", "/v1/sessions", map[string]string{"email": "ty@example.com", "password": "ty-password-12345"})
	h.clock.Advance(time.Minute)
	h.session(t, "ty@example.com", "ty-password-12345")
	// A success clears the account's count.
	h.must(t, http.StatusUnauthorized, "", "POST", "/v1/sessions", map[string]string{"email": "ty@example.com", "password": "guess-password-01"})
	h.session(t, "ty@example.com", "ty-password-12345")

	// Per address: failures across accounts from one address lock it.
	h.svc.People.MaxAddressFailures = 4
	h.clock.Advance(11 * time.Minute) // the address's earlier failures are forgotten
	for i := range 4 {
		h.signIn(t, "someone"+string(rune('a'+i))+"@example.com", "guess-password-01")
	}
	h.must(t, http.StatusTooManyRequests, "", "POST", "/v1/sessions", map[string]string{"email": "ty@example.com", "password": "ty-password-12345"})
	h.clock.Advance(11 * time.Minute)
	h.session(t, "ty@example.com", "ty-password-12345")

	events, _, err := h.svc.Store.ListAuditEvents(cp.WithPlatformScope(t.Context()), "", cp.Page{Limit: cp.MaxPageLimit})
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]int{}
	created := 0
	for _, e := range events {
		switch e.Action {
		case "session.signin_failed":
			reasons[e.Details["reason"].(string)]++
		case "session.created":
			created++
		}
	}
	if reasons["password"] < 4 || reasons["unknown_email"] < 5 || reasons["second_factor"] < 2 || reasons["locked"] < 3 || reasons["second_factor_missing"] != 1 || created < 4 {
		t.Errorf("audited failures %v and %d successes", reasons, created)
	}
	for _, secret := range []string{"ty-password-12345", "guess-password-01", "two-password-12345", "wrong-password-000"} {
		if strings.Contains(h.audit(t), secret) {
			t.Errorf("the audit log holds a password")
		}
	}
	// Bad input changes nothing and names the field.
	if p := h.must(t, http.StatusUnprocessableEntity, "", "POST", "/v1/sessions", map[string]string{"email": "ty@example.com"}).problem(t); len(p.Errors) != 1 || p.Errors[0].Field != "password" {
		t.Errorf("missing password: %+v", p)
	}
	h.must(t, http.StatusUnprocessableEntity, "", "POST", "/v1/sessions", map[string]any{"email": "ty@example.com", "password": 5})
	if p := h.must(t, http.StatusUnprocessableEntity, "", "POST", "/v1/sessions", map[string]any{"email": strings.Repeat("a", 300) + "@example.com", "password": "x"}).problem(t); p.Errors[0].Field != "email" {
		t.Errorf("a 300-character email: %+v", p)
	}
	h.must(t, http.StatusBadRequest, "", "POST", "/v1/sessions", "{")
}

// audit returns every platform audit event's JSON, for "never in the audit log" checks.
func (h *harness) audit(tb testing.TB) string {
	tb.Helper()
	events, _, err := h.svc.Store.ListAuditEvents(cp.WithPlatformScope(tb.Context()), "", cp.Page{Limit: cp.MaxPageLimit})
	if err != nil {
		tb.Fatal(err)
	}
	var b strings.Builder
	for _, e := range events {
		for k, v := range e.Details {
			b.WriteString(k + "=" + strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(toString(v), "\n", " "), "\r", " ")) + " ")
		}
	}
	return b.String()
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

// TestTOTPEnrolmentReplayAndRecoveryCodes: enrolment answers a secret, an
// otpauth URL, a QR code PNG and recovery codes; it takes effect once a
// first code confirms it; then sign-in needs a code, a code is used once
// (a replay is refused even within its 30 seconds), and a recovery code
// works once.
func TestTOTPEnrolmentReplayAndRecoveryCodes(t *testing.T) {
	h := newHarness(t)
	withPeople(t, h)
	h.org(t, "acme")
	h.person(t, "acme", "kim@example.com", "kim-password-1234", cp.OrgAdmin)
	s, _ := h.session(t, "kim@example.com", "kim-password-1234")

	// Only a session enrols; a user key is refused.
	kimKey := h.must(t, http.StatusCreated, s, "POST", "/v1/organizations/acme/api-keys", map[string]any{"name": "kim"})
	var key cp.CreateAPIKeyResponse
	kimKey.decode(t, &key)
	h.must(t, http.StatusForbidden, key.Token, "POST", "/v1/users/me/totp", nil)
	h.must(t, http.StatusConflict, s, "POST", "/v1/users/me/totp/confirm", map[string]string{"code": "123456"})

	var e cp.TOTPEnrolment
	h.must(t, http.StatusCreated, s, "POST", "/v1/users/me/totp", nil).decode(t, &e)
	if !strings.HasPrefix(e.URL, "otpauth://totp/") || !strings.Contains(e.URL, "secret="+e.Secret) || len(e.RecoveryCodes) != 10 {
		t.Fatalf("enrolment: url %q, %d recovery codes", e.URL, len(e.RecoveryCodes))
	}
	raw, err := base64.StdEncoding.DecodeString(e.QRCodePNG)
	if err != nil {
		t.Fatalf("QR code is not base64: %v", err)
	}
	if img, err := png.Decode(bytes.NewReader(raw)); err != nil || img.Bounds().Dx() != 256 {
		t.Fatalf("QR code is not a 256px PNG: %v", err)
	}
	// Not confirmed yet: sign-in needs no code.
	h.session(t, "kim@example.com", "kim-password-1234")
	if p := h.must(t, http.StatusUnprocessableEntity, s, "POST", "/v1/users/me/totp/confirm", map[string]string{"code": "000000"}).problem(t); p.Errors[0].Field != "code" {
		t.Errorf("wrong confirming code: %+v", p)
	}
	h.must(t, http.StatusNoContent, s, "POST", "/v1/users/me/totp/confirm", map[string]string{"code": code(t, e.Secret, h.clock.Now())})
	h.must(t, http.StatusConflict, s, "POST", "/v1/users/me/totp", nil)
	// The confirming code cannot sign in: its step is used.
	h.must(t, http.StatusUnauthorized, "", "POST", "/v1/sessions", map[string]string{"email": "kim@example.com", "password": "kim-password-1234", "totp": code(t, e.Secret, h.clock.Now())})

	h.clock.Advance(30 * time.Second)
	c := code(t, e.Secret, h.clock.Now())
	h.session(t, "kim@example.com", "kim-password-1234", "totp", c)
	// The same code again, within its step: a replay.
	h.clock.Advance(5 * time.Second)
	h.must(t, http.StatusUnauthorized, "", "POST", "/v1/sessions", map[string]string{"email": "kim@example.com", "password": "kim-password-1234", "totp": c})
	// A code one step late is still taken (clock drift); one two steps early is not.
	h.clock.Advance(90 * time.Second)
	h.must(t, http.StatusUnauthorized, "", "POST", "/v1/sessions", map[string]string{"email": "kim@example.com", "password": "kim-password-1234", "totp": code(t, e.Secret, h.clock.Now().Add(60*time.Second))})
	h.session(t, "kim@example.com", "kim-password-1234", "totp", code(t, e.Secret, h.clock.Now().Add(-30*time.Second)))

	rc := strings.ToUpper(e.RecoveryCodes[3])
	h.session(t, "kim@example.com", "kim-password-1234", "recovery_code", rc)
	h.must(t, http.StatusUnauthorized, "", "POST", "/v1/sessions", map[string]string{"email": "kim@example.com", "password": "kim-password-1234", "recovery_code": rc})
	// Both factors at once are refused as input.
	h.must(t, http.StatusUnprocessableEntity, "", "POST", "/v1/sessions", map[string]string{"email": "kim@example.com", "password": "kim-password-1234", "totp": "1", "recovery_code": "2"})
}

// TestSignInWithHostileHeaders: a user agent a store cannot hold (invalid
// UTF-8) or one far too long does not reach a 500; the session keeps
// what can be kept.
func TestSignInWithHostileHeaders(t *testing.T) {
	for _, store := range []struct {
		name string
		opts []harnessOption
	}{{"sqlite", nil}, {"postgres", []harnessOption{withPostgresStore()}}} {
		t.Run(store.name, func(t *testing.T) {
			h := newHarness(t, store.opts...)
			withPeople(t, h)
			for _, ua := range []string{"bad\xff\xfeagent", strings.Repeat("é", 1000)} {
				r := h.do(t, "", "POST", "/v1/sessions", map[string]string{"email": "ops@example.com", "password": adminPassword}, "User-Agent", ua)
				if r.status != http.StatusCreated {
					t.Fatalf("user agent %q: %d %s", ua[:5], r.status, r.body)
				}
				var resp cp.SignInResponse
				r.decode(t, &resp)
				if len(resp.Session.UserAgent) > 300 || !cp.StorableText(resp.Session.UserAgent) {
					t.Errorf("kept user agent of %d bytes", len(resp.Session.UserAgent))
				}
			}
		})
	}
}

// sessionTouches counts TouchSession calls.
type sessionTouches struct {
	cp.Store
	n atomic.Int64
}

func (s *sessionTouches) TouchSession(ctx context.Context, id string, at time.Time) error {
	s.n.Add(1)
	return s.Store.TouchSession(ctx, id, at)
}

// TestSessionUseIsRecordedOffThePath: like an API key's last_used_at, a
// session's last_seen_at is not written by each request that uses it: at
// most once a minute per session, by the receipt flush.
func TestSessionUseIsRecordedOffThePath(t *testing.T) {
	touches := &sessionTouches{}
	h := newHarness(t, func(c *harnessConfig) { c.wrapStore = func(s cp.Store) cp.Store { touches.Store = s; return touches } })
	withPeople(t, h)
	token, _ := h.session(t, "ops@example.com", adminPassword)
	seen := func() time.Time {
		s, err := h.svc.Store.GetSessionByHash(cp.WithPlatformScope(t.Context()), cp.HashToken(token))
		if err != nil {
			t.Fatal(err)
		}
		return s.LastSeenAt
	}
	signedIn := seen()
	h.clock.Advance(2 * time.Minute)
	for range 5 {
		h.must(t, http.StatusOK, token, "GET", "/v1/me", nil)
	}
	h.svc.FlushReceipts(t.Context())
	if got := seen(); !got.Equal(signedIn.Add(2 * time.Minute)) {
		t.Fatalf("last_seen_at after the flush = %v, want %v", got, signedIn.Add(2*time.Minute))
	}
	if n := touches.n.Load(); n != 1 {
		t.Fatalf("5 requests wrote last_seen_at %d times, want once", n)
	}
	// Within the minute, uses are not recorded again.
	h.clock.Advance(30 * time.Second)
	h.must(t, http.StatusOK, token, "GET", "/v1/me", nil)
	h.svc.FlushReceipts(t.Context())
	if n := touches.n.Load(); n != 1 || !seen().Equal(signedIn.Add(2*time.Minute)) {
		t.Fatalf("a use within the minute was recorded: %d writes, last seen %v", n, seen())
	}
}

// TestTickPrunesEndedSessionsAndOldFailures: the reconcile pass removes a
// revoked session and failure counts past the lockout, and keeps a live
// session and a recent count.
func TestTickPrunesEndedSessionsAndOldFailures(t *testing.T) {
	h := newHarness(t)
	withPeople(t, h)
	live, _ := h.session(t, "ops@example.com", adminPassword)
	ended, endedID := h.session(t, "ops@example.com", adminPassword)
	h.must(t, http.StatusNoContent, live, "DELETE", "/v1/sessions/"+endedID, nil)
	h.signIn(t, "old@example.com", "wrong-password-00")
	h.clock.Advance(h.svc.People.Lockout + time.Minute)
	h.signIn(t, "new@example.com", "wrong-password-00")
	h.svc.Tick(t.Context())
	ctx := t.Context()
	if _, err := h.svc.Store.GetSessionByHash(cp.WithPlatformScope(ctx), cp.HashToken(ended)); !cp.IsCode(err, cp.ENOTFOUND) {
		t.Errorf("the revoked session is still stored: %v", err)
	}
	if _, err := h.svc.Store.GetSessionByHash(cp.WithPlatformScope(ctx), cp.HashToken(live)); err != nil {
		t.Errorf("the live session was pruned: %v", err)
	}
	if n, _, _ := h.svc.Store.GetSignInFailures(cp.WithPlatformScope(ctx), "account:old@example.com"); n != 0 {
		t.Errorf("an old failure count survived: %d", n)
	}
	if n, _, _ := h.svc.Store.GetSignInFailures(cp.WithPlatformScope(ctx), "account:new@example.com"); n != 1 {
		t.Errorf("a recent failure count was pruned: %d", n)
	}
	h.must(t, http.StatusOK, live, "GET", "/v1/me", nil)
	h.must(t, http.StatusUnauthorized, ended, "GET", "/v1/me", nil)
}
