package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/drivertest"
	"github.com/envplane/envplane/drivers/postgres"
)

// The descriptor points applications at the configured application address,
// which may differ from the admin one, and its DSN parses back to the parts.
func TestDescriptorUsesTheApplicationAddress(t *testing.T) {
	ctx := context.Background()
	d, err := postgres.New(ctx, postgres.Config{
		AdminURL:   "postgres://admin:admin-secret@10.0.0.5:5432/postgres",
		AppHost:    "db.example.com",
		AppPort:    6432,
		AppSSLMode: "verify-full",
	})
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	t.Cleanup(d.Close)
	db := drivers.Database{Name: "env_0123456789abcdefghjkmnpqrs"}
	secret := drivers.Secret("p@ss:w/rd?#%")
	desc, err := d.Descriptor(ctx, drivers.DescriptorRequest{Database: db, Credential: drivers.Credential{
		Scope: drivers.ScopeReadWrite, Slot: drivers.SlotB, Secret: secret,
	}})
	if err != nil {
		t.Fatalf("descriptor: %v", err)
	}
	user := db.Name + "_readwrite_b"
	if want := "postgres://" + user + "@db.example.com:6432/" + db.Name + "?sslmode=verify-full"; desc.URL != want {
		t.Errorf("URL = %q, want %q", desc.URL, want)
	}
	if desc.Host != "db.example.com" || desc.Port != 6432 || desc.Database != db.Name || desc.Username != user || desc.Params["sslmode"] != "verify-full" {
		t.Errorf("parts: %s:%d/%s as %s %v", desc.Host, desc.Port, desc.Database, desc.Username, desc.Params)
	}
	u, err := url.Parse(desc.DSN.Reveal())
	if err != nil {
		t.Fatal("the DSN does not parse as a URL")
	}
	if pw, _ := u.User.Password(); pw != secret.Reveal() || u.User.Username() != user || u.Host != "db.example.com:6432" {
		t.Error("the DSN does not carry the user, the secret and the application address")
	}
	if strings.Contains(fmt.Sprintf("%v %+v", desc, desc), secret.Reveal()) {
		t.Error("the descriptor prints its secret")
	}
}

// A malformed configuration is refused, and the error never quotes the
// admin URL's password.
func TestNewRejectsBadConfig(t *testing.T) {
	ctx := context.Background()
	for _, cfg := range []postgres.Config{
		{},
		{AdminURL: "postgres://admin:hunter2-secret@host:notaport/db"},
		{AdminURL: "postgres://admin:hunter2-secret@host/db", AppSSLMode: "sometimes"},
		{AdminURL: "postgres://admin:hunter2-secret@host/db", AppPort: 70000},
		{AdminURL: "postgres://admin:hunter2-secret@host/db", SCRAMIterations: -1},
	} {
		d, err := postgres.New(ctx, cfg)
		if err == nil {
			d.Close()
			t.Errorf("New accepted app sslmode %q, port %d, SCRAM iterations %d", cfg.AppSSLMode, cfg.AppPort, cfg.SCRAMIterations)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Error("New's error quotes the admin password")
		}
	}
}

// Errors from every failure path a caller can meet carry neither a secret,
// nor a DSN with one, nor the verifier sent to the server.
func TestErrorsCarryNoSecret(t *testing.T) {
	f := newFixture(t, drivertest.PasswordPostgresURL(t))
	ctx := context.Background()
	a, b := f.create(), f.create()
	c := f.issue(a, drivers.ScopeAdmin, drivers.SlotA, time.Time{})
	desc, err := f.driver.Descriptor(ctx, drivers.DescriptorRequest{Database: a, Credential: c})
	if err != nil {
		t.Fatalf("descriptor: %v", err)
	}
	var errs []error
	keep := func(_ any, err error) { errs = append(errs, err) }

	keep(f.driver.Open(ctx, drivers.OpenRequest{Database: b, Credential: c}))
	wrong := c
	wrong.Secret += "x"
	keep(f.driver.Open(ctx, drivers.OpenRequest{Database: a, Credential: wrong}))
	f.revoke(a, c)
	keep(f.driver.Open(ctx, drivers.OpenRequest{Database: a, Credential: c}))
	keep(f.driver.IssueCredential(ctx, drivers.IssueCredentialRequest{Database: drivers.Database{Name: f.name()}, Scope: drivers.ScopeAdmin, Slot: drivers.SlotA}))
	// A database whose roles are gone makes the ALTER ROLE that carries
	// the verifier fail on the server.
	half := f.name()
	f.exec("CREATE DATABASE " + q(half))
	keep(f.driver.IssueCredential(ctx, drivers.IssueCredentialRequest{Database: drivers.Database{Name: half}, Scope: drivers.ScopeAdmin, Slot: drivers.SlotA}))
	if _, err := f.driver.DropDatabase(ctx, drivers.DropDatabaseRequest{Database: a}); err != nil {
		t.Fatalf("drop: %v", err)
	}
	keep(f.driver.Open(ctx, drivers.OpenRequest{Database: a, Credential: c}))

	for i, err := range errs {
		if err == nil {
			t.Errorf("failure path %d returned no error", i)
			continue
		}
		msg := err.Error()
		if f.leaks(msg) || strings.Contains(msg, desc.DSN.Reveal()) || strings.Contains(msg, "SCRAM-SHA-256$") {
			t.Errorf("failure path %d: the error carries a secret", i)
		}
	}
	if !errors.Is(errs[4], drivers.ErrNotFound) {
		t.Errorf("issue on a database without roles: %s, want ErrNotFound", f.safe(errs[4]))
	}
}
