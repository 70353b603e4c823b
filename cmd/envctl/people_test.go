package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	cp "github.com/envplane/envplane/controlplane"
)

// person runs envctl as someone without an API key: the session envctl
// login keeps in dir is the only credential.
type person struct {
	tb       testing.TB
	url, dir string
	token    string // ENVPLANE_TOKEN, empty for none
}

func (p person) run(stdin string, args ...string) (stdout, stderr string, err error) {
	p.tb.Helper()
	env := map[string]string{"ENVPLANE_URL": p.url, "ENVPLANE_CONFIG_DIR": p.dir, "ENVPLANE_TOKEN": p.token}
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), err
}

func (p person) must(stdin string, args ...string) string {
	p.tb.Helper()
	out, stderr, err := p.run(stdin, args...)
	if err != nil {
		p.tb.Fatalf("envctl %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out
}

// TestLoginUseLogout: invited with envctl, a person accepts, signs in with
// the password on stdin, and the session (kept 0600 in the configuration
// directory) is their credential; envctl use sets the default
// organization; a TOTP enrolment makes login ask for a code; logout
// revokes the session on the server; an API key keeps working beside it.
func TestLoginUseLogout(t *testing.T) {
	url, admin := realAPI(t)
	adm := session{tb: t, url: url, token: admin}
	adm.must("org", "create", "acme")
	var inv cp.InvitationResponse
	adm.json(&inv, "--org", "acme", "invite", "create", "kai@example.com", "--role", "admin", "--env", "default=env_admin")
	if inv.Mail != cp.MailNotConfigured || inv.Link == "" {
		t.Fatalf("invitation: %+v", inv)
	}
	dir := t.TempDir()
	kai := person{tb: t, url: url, dir: dir}
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("kai-password-1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := kai.must("", "invite", "accept", inv.Link, "--password-file", pwFile); !strings.Contains(out, "joined acme as admin") {
		t.Fatalf("accept: %q", out)
	}
	if _, _, err := kai.run("", "me"); err == nil {
		t.Fatal("me without a session or key succeeded")
	}
	if _, _, err := kai.run("wrong-password-00\n", "login", "--email", "kai@example.com"); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	out := kai.must("kai-password-1234\n", "login", "--email", "kai@example.com")
	if !strings.Contains(out, "signed in as kai@example.com") || strings.Contains(out, cp.SessionPrefix) {
		t.Fatalf("login printed %q", out)
	}
	path := filepath.Join(dir, "session.json")
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("session file: %v, mode %v", err, fi.Mode())
	}
	var saved savedSession
	raw, _ := os.ReadFile(path)
	if json.Unmarshal(raw, &saved) != nil || !strings.HasPrefix(saved.Token, cp.SessionPrefix) || saved.URL != url {
		t.Fatalf("session file holds %d bytes that are not a session", len(raw))
	}
	if out := kai.must("", "me"); !strings.Contains(out, "kai@example.com") {
		t.Fatalf("me with the session: %q", out)
	}
	// Without --org, commands need one until envctl use sets it.
	if _, _, err := kai.run("", "env", "list"); err == nil {
		t.Fatal("env list without an organization succeeded")
	}
	kai.must("", "use", "acme/default")
	if out := kai.must("", "env", "list"); !strings.Contains(out, "default") {
		t.Fatalf("env list in the session's organization: %q", out)
	}
	if _, _, err := kai.run("", "use", "nope"); err == nil {
		t.Fatal("use of an unknown organization succeeded")
	}
	if out := kai.must("", "session", "list"); !strings.Contains(out, saved.SessionID) || strings.Contains(out, cp.SessionPrefix) {
		t.Fatalf("session list: %q", out)
	}

	var e cp.TOTPEnrolment
	if err := json.Unmarshal([]byte(kai.must("", "-o", "json", "totp", "enrol")), &e); err != nil || e.Secret == "" {
		t.Fatalf("totp enrol: %v", err)
	}
	now := time.Now()
	c, _ := totp.GenerateCode(e.Secret, now)
	kai.must("", "totp", "confirm", c)

	// An API key keeps working beside the session and wins over it.
	var key cp.CreateAPIKeyResponse
	adm.json(&key, "--org", "acme", "key", "create", "script", "--user", "kai@example.com")
	script := person{tb: t, url: url, dir: dir, token: key.Token}
	if out := script.must("", "me"); !strings.Contains(out, key.ID) {
		t.Fatalf("me with the API key: %q", out)
	}
	if _, _, err := script.run("", "logout"); err == nil {
		t.Fatal("logout with an API key succeeded")
	}

	kai.must("", "logout")
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the session file outlived logout: %v", err)
	}
	// The session was revoked on the server, not only forgotten.
	revoked := person{tb: t, url: url, dir: t.TempDir(), token: saved.Token}
	if _, _, err := revoked.run("", "me"); !cp.IsCode(err, cp.EUNAUTHORIZED) {
		t.Fatalf("the logged-out session: %v", err)
	}
	// Now login asks for a code after the password: the next step's code
	// (the current one confirmed the enrolment).
	next, _ := totp.GenerateCode(e.Secret, now.Add(30*time.Second))
	kai.must("kai-password-1234\n"+next+"\n", "login", "--email", "kai@example.com")
	kai.must("", "me")
	if _, _, err := kai.run("", "login", "--email", "kai@example.com", "--password-file", pwFile, "--recovery-code", "wrong-code"); !cp.IsCode(err, cp.EUNAUTHORIZED) {
		t.Fatalf("login with a wrong recovery code: %v", err)
	}
	kai.must("", "login", "--email", "kai@example.com", "--password-file", pwFile, "--recovery-code", e.RecoveryCodes[0])
}
