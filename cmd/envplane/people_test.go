package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBootstrapSetsTheFirstPassword: bootstrap --password-file sets the
// platform admin's first password, so the admin signs in; a later
// bootstrap with ENVPLANE_ADMIN_PASSWORD leaves it unchanged; a password
// too short is refused; the password never reaches the log.
func TestBootstrapSetsTheFirstPassword(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("first-admin-password-9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := envplane(t, dir, "bootstrap", "--email", "ops@example.com", "--password-file", filepath.Join(dir, "missing")); err == nil {
		t.Fatal("bootstrap with a missing password file succeeded")
	}
	short := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(short, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := envplane(t, dir, "bootstrap", "--email", "ops@example.com", "--password-file", short); err == nil || !strings.Contains(err.Error(), "password") {
		t.Fatalf("a short password: %v", err)
	}
	_, stderr, err := envplane(t, dir, "bootstrap", "--email", "ops@example.com", "--password-file", pwFile)
	if err != nil || !strings.Contains(stderr, "password is set") {
		t.Fatalf("bootstrap: %v, %q", err, stderr)
	}
	t.Setenv(adminPasswordEnv, "second-admin-password-9")
	if _, stderr, err := envplane(t, dir, "bootstrap", "--email", "ops@example.com"); err != nil || !strings.Contains(stderr, "left unchanged") {
		t.Fatalf("second bootstrap: %v, %q", err, stderr)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	t.Setenv("ENVPLANE_LISTEN", addr)
	ctx, cancel := context.WithCancel(context.Background())
	var logs syncWriter
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--log-level", "debug"}, &bytes.Buffer{}, &logs) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if strings.Contains(logs.String(), "admin-password") {
			t.Error("the server logged a password")
		}
	}()
	signIn := func(pw string) int {
		for range 100 {
			resp, err := http.Post("http://"+addr+"/v1/sessions", "application/json",
				strings.NewReader(`{"email":"ops@example.com","password":"`+pw+`"}`))
			if err == nil {
				resp.Body.Close()
				return resp.StatusCode
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatal("serve never answered")
		return 0
	}
	if got := signIn("second-admin-password-9"); got != http.StatusUnauthorized {
		t.Errorf("sign in with the unchanged-by password: %d", got)
	}
	if got := signIn("first-admin-password-9"); got != http.StatusCreated {
		t.Errorf("sign in with the first password: %d", got)
	}
}
