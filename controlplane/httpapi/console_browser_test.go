package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/mail/mailtest"
	"github.com/envplane/envplane/drivers/drivertest"
)

// chromiumPath is Debian's Chromium, which .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

// chromium starts a headless Chromium with a fresh profile and returns a
// browser context; a missing Chromium fails under CI=true and skips elsewhere.
func chromium(t *testing.T) context.Context {
	t.Helper()
	if _, err := exec.LookPath(chromiumPath); err != nil {
		drivertest.MissingServer(t, "Chromium at %s (apt-get install chromium): %v", chromiumPath, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	// The first run starts the browser, which lives as long as ctx.
	if err := chromedp.Do(ctx); err != nil {
		drivertest.MissingServer(t, "Chromium at %s does not start: %v", chromiumPath, err)
	}
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancelTimeout)
	return ctx
}

// artifacts returns the directory for the test's screenshots:
// $ENVPLANE_ARTIFACTS/<test> when set, else a temporary directory.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if root := os.Getenv("ENVPLANE_ARTIFACTS"); root != "" {
		dir = filepath.Join(root, t.Name())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("console screenshots: %s", dir)
	return dir
}

// TestConsoleInBrowser drives the console in a real Chromium: the admin
// invites a person through the API, the link arrives at a real SMTP server,
// and in the browser the person accepts it and sets a password, enrols
// TOTP (reading the secret from the page), signs out and in again with a
// code, creates an environment and watches it provision, reveals its
// connection, rotates its credentials and finds both in the audit log. A
// member of another organization, signed in in the same browser, sees none
// of it. Each page is saved as a screenshot.
func TestConsoleInBrowser(t *testing.T) {
	ctx := chromium(t)
	h := newHarness(t)
	withPeople(t, h)
	h.org(t, "acme")
	h.org(t, "other")
	h.person(t, "other", "mo@example.com", "mo-password-12345", cp.OrgAdmin)
	smtpSrv := mailtest.Start(t, mailtest.Options{})
	useSMTP(t, h, smtpSrv)
	h.svc.People.PublicURL = h.srv.URL
	dir := artifacts(t)
	shots := 0
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			// A page that refreshes itself may be between two loads: try again.
			var png []byte
			var err error
			for range 10 {
				if png, err = chromedp.FullScreenshot(100)(ctx, tg); err == nil {
					break
				}
				time.Sleep(300 * time.Millisecond)
			}
			if err != nil {
				return err
			}
			shots++
			return os.WriteFile(filepath.Join(dir, fmt.Sprintf("%02d-%s.png", shots, name)), png, 0o644)
		})
	}
	run := func(step string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	// waitText waits until the element's text holds want; the page
	// refreshes itself while work runs, or a form's answer loads.
	waitText := func(step, sel, want string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			attempt, cancel := context.WithTimeout(ctx, 3*time.Second)
			got, err := chromedp.Run(attempt, chromedp.Text(chromedp.CSS(sel)))
			cancel()
			if err == nil && strings.Contains(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s shows %q (err %v), want %q", step, sel, got, err, want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// The admin invites Ana through the API; the link comes by mail.
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/invitations", map[string]any{"email": "ana@example.com", "role": "admin"})
	link := mailedLink(t, smtpSrv, "ana@example.com")
	if !strings.HasPrefix(link, h.srv.URL+"/invitations/epi_") {
		t.Fatalf("mailed link does not lead to the console")
	}

	const password = "ana-password-12345"
	run("accept the invitation",
		chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("#accept")), shot("invitation"),
		chromedp.SendKeys(chromedp.CSS("#name"), "Ana"),
		chromedp.SendKeys(chromedp.CSS("#password"), password),
		chromedp.Click(chromedp.CSS("#submit")),
		chromedp.WaitVisible(chromedp.CSS("#accepted")), shot("invitation-accepted"))
	if got := text("#accepted"); !strings.Contains(got, "ana@example.com joined acme as admin") {
		t.Fatalf("accepted page says %q", got)
	}

	signIn := func(email, password string) {
		t.Helper()
		run("sign in as "+email,
			chromedp.Navigate(h.srv.URL+"/signin"), chromedp.WaitVisible(chromedp.CSS("#signin")),
			chromedp.SendKeys(chromedp.CSS("#email"), email),
			chromedp.SendKeys(chromedp.CSS("#password"), password),
			chromedp.Click(chromedp.CSS("#submit")))
	}
	signIn("ana@example.com", password)
	run("organizations", chromedp.WaitVisible(chromedp.CSS("#organizations")), shot("organizations"))

	run("start a TOTP enrolment",
		chromedp.Navigate(h.srv.URL+"/account"), chromedp.WaitVisible(chromedp.CSS("#enrol-button")),
		chromedp.Click(chromedp.CSS("#enrol-button")),
		chromedp.WaitVisible(chromedp.CSS("#totp-secret")), shot("totp-enrolment"))
	secret := text("#totp-secret")
	run("confirm the enrolment",
		chromedp.SendKeys(chromedp.CSS("#code"), code(t, secret, h.clock.Now())),
		chromedp.Click(chromedp.CSS("#submit")),
		chromedp.WaitVisible(chromedp.CSS("#confirmed")), shot("totp-confirmed"))
	// The confirming code's step is spent: the next sign-in takes the next one.
	h.clock.Advance(30 * time.Second)

	run("sign out", chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#signin")))
	signIn("ana@example.com", password)
	run("second factor",
		chromedp.WaitVisible(chromedp.CSS("#totp")), shot("signin-totp"),
		chromedp.SendKeys(chromedp.CSS("#totp"), code(t, secret, h.clock.Now())),
		chromedp.Click(chromedp.CSS("#submit")),
		chromedp.WaitVisible(chromedp.CSS("#organizations")))

	run("create an environment",
		chromedp.Navigate(h.srv.URL+"/orgs/acme"), chromedp.WaitVisible(chromedp.CSS("#create")), shot("environments"),
		chromedp.SendKeys(chromedp.CSS("#slug"), "web"),
		chromedp.SendKeys(chromedp.CSS("#name"), "Web <b>app</b>"),
		chromedp.SetValue(chromedp.CSS("#type"), "development"),
		chromedp.Click(chromedp.CSS("#submit")),
		chromedp.WaitVisible(chromedp.CSS("#status")))
	waitText("provisioning", "#status", "active")
	run("environment page", shot("environment"))
	if got := text("h1"); got != "Web <b>app</b>" {
		t.Errorf("the environment's name shows as %q, want the text as typed", got)
	}

	run("reveal the connection",
		chromedp.Click(chromedp.CSS("#reveal-button")),
		chromedp.WaitVisible(chromedp.CSS("#secret")), shot("connection"))
	if text("#secret") == "" {
		t.Error("the revealed connection has no secret")
	}
	credentialID := text("#credential-id")
	if !strings.HasPrefix(credentialID, "cred") {
		t.Fatalf("revealed credential id %q", credentialID)
	}
	run("rotate the credentials",
		chromedp.SendKeys(chromedp.CSS("#reason"), "browser test"),
		chromedp.Click(chromedp.CSS("#rotate-button")))
	waitText("rotation", "#operations", "rotate")
	// The newest operation (first row) is the rotation; the page refreshes until it ends.
	waitText("rotation finished", "#operations tr:nth-child(2) td.status", "succeeded")
	if got := text("#credentials"); !strings.Contains(got, "readwrite_b") || !strings.Contains(got, "rotating") {
		t.Errorf("after a rotation the credentials table shows %q", got)
	}
	// The new readwrite credential is issued: revealing again shows another one.
	run("after rotation", shot("rotation"),
		chromedp.Click(chromedp.CSS("#reveal-button")), chromedp.WaitVisible(chromedp.CSS("#secret")))
	if got := text("#credential-id"); got == credentialID {
		t.Errorf("after a rotation the connection still uses credential %s", got)
	}

	run("operations", chromedp.Navigate(h.srv.URL+"/orgs/acme/operations"), chromedp.WaitVisible(chromedp.CSS("#operations")), shot("operations"))
	run("audit log",
		chromedp.Navigate(h.srv.URL+"/orgs/acme/audit"), chromedp.WaitVisible(chromedp.CSS("#filters")),
		chromedp.SendKeys(chromedp.CSS("#action"), "credentials.rotate"),
		chromedp.Click(chromedp.CSS("#filter")))
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if loc, err := chromedp.Run(ctx, chromedp.Location()); err == nil && strings.Contains(loc, "action=credentials.rotate") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the audit filter form did not load the filtered page")
		}
	}
	waitText("filtered audit log", "#audit", "credentials.rotate_requested")
	run("audit log", shot("audit"))
	if got := text("#audit"); !strings.Contains(got, "credentials.rotate_requested") || strings.Contains(got, "environment.created") {
		t.Errorf("audit log filtered on credentials.rotate shows %q", got)
	}
	run("revealed in the audit log", chromedp.Navigate(h.srv.URL+"/orgs/acme/audit?action=connection.revealed"), chromedp.WaitVisible(chromedp.CSS("#audit")))
	if got := text("#audit"); !strings.Contains(got, "connection.revealed") {
		t.Errorf("no connection.revealed event in the audit log: %q", got)
	}
	run("members", chromedp.Navigate(h.srv.URL+"/orgs/acme/members"), chromedp.WaitVisible(chromedp.CSS("#members")), shot("members"))
	if got := text("#members"); !strings.Contains(got, "ana@example.com") {
		t.Errorf("members page: %q", got)
	}

	// Mo, admin of another organization, sees none of it.
	run("sign out", chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#signin")))
	signIn("mo@example.com", "mo-password-12345")
	run("Mo's organizations", chromedp.WaitVisible(chromedp.CSS("#organizations")), shot("other-organizations"))
	if got := text("#organizations"); strings.Contains(got, "acme") {
		t.Errorf("another organization's admin lists %q", got)
	}
	for _, path := range []string{"/orgs/acme/envs/web", "/orgs/acme", "/orgs/acme/audit"} {
		run("Mo opens "+path, chromedp.Navigate(h.srv.URL+path), chromedp.WaitVisible(chromedp.CSS("#error")))
		if got := text("h1"); got != "Not Found" {
			t.Errorf("%s for another organization's admin: %q", path, got)
		}
	}
	run("cross-organization page", shot("other-organization-404"))

	// The admin's targets page, with health.
	run("sign out", chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#signin")))
	signIn("ops@example.com", adminPassword)
	run("targets", chromedp.WaitVisible(chromedp.CSS("#organizations")),
		chromedp.Navigate(h.srv.URL+"/targets"), chromedp.WaitVisible(chromedp.CSS("#targets")), shot("targets"))
	if got := text("#targets"); !strings.Contains(got, "local") {
		t.Errorf("targets page: %q", got)
	}
	logs := h.logs.String()
	for name, s := range map[string]string{"invitation token": linkToken(t, link), "password": password, "TOTP secret": secret} {
		if strings.Contains(logs, s) {
			t.Errorf("the server log holds the %s", name)
		}
	}
}
