package postgres_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/drivertest"
	"github.com/envplane/envplane/drivers/postgres"
)

// On a server that checks passwords: the issued secret logs in, a wrong one
// and an expired one do not (SQLSTATE 28P01, ErrDenied from Open), and the
// server stores only a SCRAM verifier, never the password; with the default
// iteration count and with the lowest one.
func TestPasswordsAreChecked(t *testing.T) {
	server := drivertest.PasswordPostgresURL(t)
	for _, iterations := range []int{0, 1} {
		t.Run(fmt.Sprintf("scram-iterations=%d", iterations), func(t *testing.T) {
			passwordsAreChecked(t, newFixture(t, server, func(c *postgres.Config) { c.SCRAMIterations = iterations }), iterations)
		})
	}
}

func passwordsAreChecked(t *testing.T, f *fixture, iterations int) {
	if iterations == 0 {
		iterations = 4096
	}
	db := f.create()
	ctx := context.Background()

	c := f.issue(db, drivers.ScopeReadWrite, drivers.SlotA, time.Now().Add(time.Hour))
	if _, err := f.connect(db.Name, c); err != nil {
		t.Fatalf("the issued secret does not log in: %s", f.safe(err))
	}
	var stored string
	if err := f.admin.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", c.Username).Scan(&stored); err != nil {
		t.Fatalf("read stored password: %v", err)
	}
	if !strings.HasPrefix(stored, fmt.Sprintf("SCRAM-SHA-256$%d:", iterations)) || strings.Contains(stored, c.Secret.Reveal()) {
		t.Fatal("the server does not hold a SCRAM-SHA-256 verifier for the role")
	}

	wrong := c
	wrong.Secret = drivers.Secret(strings.Repeat("A", len(c.Secret.Reveal())))
	assertDenied(t, f, db, wrong, "a wrong secret")

	expired := f.issue(db, drivers.ScopeReadOnly, drivers.SlotA, time.Now().Add(-time.Minute))
	assertDenied(t, f, db, expired, "a secret whose VALID UNTIL has passed")
}

func assertDenied(t *testing.T, f *fixture, db drivers.Database, c drivers.Credential, what string) {
	t.Helper()
	_, err := f.connect(db.Name, c)
	if code := sqlState(err); code != "28P01" {
		t.Errorf("%s: login SQLSTATE %q, want 28P01", what, code)
	}
	if _, err := f.tryOpen(db, c); !errors.Is(err, drivers.ErrDenied) {
		t.Errorf("%s: Open is not ErrDenied (err != nil: %v)", what, err != nil)
	}
}

// psql, PostgreSQL's own client, connects with the descriptor's DSN and runs
// a query; after a revoke the same DSN is refused.
func TestPsqlConnectsWithDescriptorDSN(t *testing.T) {
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Skip("psql is not installed")
	}
	f := newFixture(t, drivertest.PasswordPostgresURL(t))
	db := f.create()
	ctx := context.Background()
	c := f.issue(db, drivers.ScopeReadOnly, drivers.SlotB, time.Time{})
	d, err := f.driver.Descriptor(ctx, drivers.DescriptorRequest{Database: db, Credential: c})
	if err != nil {
		t.Fatalf("descriptor: %v", err)
	}
	if strings.Contains(d.URL, c.Secret.Reveal()) || d.Username != c.Username || d.Database != db.Name || d.Params["sslmode"] != "disable" {
		t.Fatalf("descriptor parts: URL %q, user %q, database %q, params %v", d.URL, d.Username, d.Database, d.Params)
	}
	run := func() (string, error) {
		out, err := exec.CommandContext(ctx, psql, "--no-psqlrc", "-At", "-c", "select 1", d.DSN.Reveal()).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	out, err := run()
	if f.leaks(out) {
		t.Fatal("psql printed the secret")
	}
	if err != nil || out != "1" {
		t.Fatalf("psql with the descriptor's DSN: %v: %s", err, out)
	}
	f.revoke(db, c)
	if out, err := run(); err == nil || f.leaks(out) {
		t.Fatalf("psql with a revoked DSN: err = %v, leak = %v", err, f.leaks(out))
	}
}

// The verifier computed in Go is the one PostgreSQL computes itself for the
// same password, salt and iteration count.
func TestScramVerifierMatchesServer(t *testing.T) {
	f := newFixture(t, serverURL(t))
	ctx := context.Background()
	role := "env_" + f.prefix + "_scram"
	password := "pencil-" + f.prefix
	f.exec("CREATE ROLE " + q(role) + " NOLOGIN")
	conn, err := f.admin.Acquire(ctx)
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SET password_encryption = 'scram-sha-256'; ALTER ROLE "+q(role)+" PASSWORD '"+password+"'"); err != nil {
		t.Fatalf("set password: %v", err)
	}
	var stored string
	if err := conn.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role).Scan(&stored); err != nil {
		t.Fatalf("read verifier: %v", err)
	}
	// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
	head, _, ok := strings.Cut(strings.TrimPrefix(stored, "SCRAM-SHA-256$"), "$")
	iterText, saltText, ok2 := strings.Cut(head, ":")
	if !ok || !ok2 {
		t.Fatalf("unexpected verifier format %q", stored)
	}
	iterations, err := strconv.Atoi(iterText)
	if err != nil {
		t.Fatalf("iterations %q: %v", iterText, err)
	}
	salt, err := base64.StdEncoding.DecodeString(saltText)
	if err != nil {
		t.Fatalf("salt %q: %v", saltText, err)
	}
	ours, err := postgres.ScramVerifier(password, salt, iterations)
	if err != nil {
		t.Fatalf("verifier: %v", err)
	}
	if ours != stored {
		t.Fatalf("verifier\n got %s\nwant %s", ours, stored)
	}
}
