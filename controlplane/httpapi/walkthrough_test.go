package httpapi_test

import (
	"context"
	"database/sql"
	"net/http"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/drivers"
)

// openDSN opens a router DSN with the SQLite driver an application would use.
func openDSN(tb testing.TB, dsn drivers.Secret) *sql.DB {
	tb.Helper()
	db, err := sql.Open("sqlite", dsn.Reveal())
	if err != nil {
		tb.Fatalf("open router DSN: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// TestWalkthrough is the README's five minutes: an org, a development
// environment, its connection, a write through it, a rotation with grace, and
// the old credential revoked once the grace ends. Then it scans the server's
// log for every secret and token the walk saw.
func TestWalkthrough(t *testing.T) {
	h := newHarness(t)
	secrets := []string{h.admin}

	org := h.org(t, "acme")
	if org.DefaultEnvironment == nil || org.DefaultEnvironment.Status != cp.StatusActive || !org.DefaultEnvironment.IsDefault {
		t.Fatalf("default environment not provisioned with the org: %+v", org.DefaultEnvironment)
	}
	dev := h.env(t, h.admin, "acme", "dev", "development")
	if dev.Database == nil || !strings.HasPrefix(dev.Database.DatabaseName, "env_") || dev.Database.Driver != "sqlite" || dev.Database.ProvisionedAt == nil {
		t.Fatalf("database not described: %+v", dev.Database)
	}

	var conn cp.Connection
	r := h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments/dev/connection?scope=readwrite", nil)
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	r.decode(t, &conn)
	secrets = append(secrets, conn.Secret.Reveal(), conn.DSN.Reveal())
	if !strings.Contains(string(r.body), `"dsn":"`+conn.DSN.Reveal()+`"`) {
		t.Errorf("the DSN is escaped in the answer, so it cannot be copied verbatim: %s", r.body)
	}
	if conn.EnvironmentID != dev.ID || conn.Scope != "readwrite" || conn.CredentialID == "" || conn.Secret == "" {
		t.Fatalf("connection incomplete: env=%s scope=%s cred=%s", conn.EnvironmentID, conn.Scope, conn.CredentialID)
	}
	db := openDSN(t, conn.DSN)
	if _, err := db.Exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"); err != nil {
		t.Fatalf("write through the router's DSN: %v", err)
	}
	if _, err := db.Exec("INSERT INTO notes (body) VALUES ('hello')"); err != nil {
		t.Fatalf("insert: %v", err)
	}
	var owner string
	if err := db.QueryRow("SELECT environment_id FROM _envplane_meta").Scan(&owner); err != nil || owner != dev.ID {
		t.Fatalf("database does not prove whose it is: owner=%q err=%v", owner, err)
	}

	var byID cp.Connection
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/environments/"+dev.ID+"/connection?scope=readonly", nil).decode(t, &byID)
	secrets = append(secrets, byID.Secret.Reveal(), byID.DSN.Reveal())
	ro := openDSN(t, byID.DSN)
	if _, err := ro.Exec("INSERT INTO notes (body) VALUES ('nope')"); err == nil {
		t.Fatal("the readonly DSN wrote")
	}

	// Rotate readwrite with a 60s grace: a new credential on the other slot;
	// the old one keeps working until the grace ends.
	var rot cp.CredentialsResponse
	h.must(t, http.StatusOK, h.admin, "POST", "/v1/organizations/acme/environments/dev/credentials/rotate", map[string]any{"scope": "readwrite", "grace_seconds": 60, "reason": "walkthrough"}).decode(t, &rot)
	if rot.Operation == nil || rot.Operation.Status != cp.OpSucceeded {
		t.Fatalf("rotation did not succeed: %+v", rot.Operation)
	}
	var old, fresh *cp.Credential
	for _, c := range rot.Credentials {
		if c.Scope != "readwrite" {
			continue
		}
		switch c.Status {
		case cp.CredentialRotating:
			old = c
		case cp.CredentialActive:
			fresh = c
		}
	}
	if old == nil || fresh == nil || old.ID != conn.CredentialID || fresh.RotatedFrom != old.ID || fresh.Slot == old.Slot {
		t.Fatalf("rotation did not move readwrite to the standby slot: old=%+v new=%+v", old, fresh)
	}
	if strings.Contains(string(h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments/dev/credentials", nil).body), conn.Secret.Reveal()) {
		t.Fatal("the credential listing carries a secret")
	}
	var after cp.Connection
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments/dev/connection?scope=readwrite", nil).decode(t, &after)
	secrets = append(secrets, after.Secret.Reveal(), after.DSN.Reveal())
	if after.CredentialID != fresh.ID || after.Secret == conn.Secret {
		t.Fatalf("the router did not hand out the new credential")
	}
	if _, err := h.svc.RevokeDue(context.Background()); err != nil {
		t.Fatalf("revoke due: %v", err)
	}
	if status := h.credentialStatus(t, "acme", "dev", old.ID); status != cp.CredentialRotating {
		t.Fatalf("old credential %q before its grace ended, want rotating", status)
	}

	// The old credential lives out its grace, stretched to the refresh_after
	// handed out for it (plus a margin): the rotation said until when.
	if rot.RevokeAfter == nil || rot.RevokeAfter.Before(h.clock.Now().Add(60*time.Second)) {
		t.Fatalf("revoke_after %v is before the end of the 60 s grace", rot.RevokeAfter)
	}
	h.clock.Advance(rot.RevokeAfter.Sub(h.clock.Now()) - time.Second)
	if n, err := h.svc.RevokeDue(context.Background()); err != nil || n != 0 {
		t.Fatalf("revoke due a second before revoke_after: revoked %d, err %v; want 0", n, err)
	}
	h.clock.Advance(time.Second)
	n, err := h.svc.RevokeDue(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("revoke due after grace: revoked %d, err %v; want 1", n, err)
	}
	if status := h.credentialStatus(t, "acme", "dev", old.ID); status != cp.CredentialRevoked {
		t.Fatalf("old credential %q after its grace, want revoked", status)
	}

	// Lists filter: the development environment, and its rotation.
	var devs cp.List[*cp.EnvironmentView]
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments?type=development&status=active", nil).decode(t, &devs)
	if len(devs.Items) != 1 || devs.Items[0].ID != dev.ID {
		t.Fatalf("active development environments: %d, want dev alone", len(devs.Items))
	}
	var rotations cp.List[*cp.Operation]
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/operations?environment=dev&kind=rotate", nil).decode(t, &rotations)
	if len(rotations.Items) != 1 || rotations.Items[0].ID != rot.Operation.ID {
		t.Fatalf("dev's rotations: %d, want the one of the walkthrough", len(rotations.Items))
	}

	var events cp.List[*cp.AuditEvent]
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/audit-events", nil).decode(t, &events)
	seen := map[string]bool{}
	for _, e := range events.Items {
		seen[e.Action] = true
		if e.RequestID == "" && strings.HasPrefix(e.Actor, "user:") {
			t.Errorf("audit event %s by %s has no request id", e.Action, e.Actor)
		}
	}
	for _, want := range []string{"organization.created", "environment.created", "environment.provisioned", "credentials.rotate_requested", "credentials.rotated", "credential.grace_ended"} {
		if !seen[want] {
			t.Errorf("no %s audit event", want)
		}
	}

	logs := h.logs.String()
	if !strings.Contains(logs, `"route":"/v1/organizations/:org/environments/:env/connection"`) {
		t.Fatal("the server log did not capture the walkthrough")
	}
	for i, s := range secrets {
		if s == "" {
			t.Fatalf("secret %d is empty", i)
		}
		if strings.Contains(logs, s) {
			t.Errorf("secret %d (of %d) appears in the server log", i, len(secrets))
		}
	}
}

// credentialStatus reads one credential's status from the listing.
func (h *harness) credentialStatus(tb testing.TB, org, env, id string) cp.CredentialStatus {
	tb.Helper()
	var list cp.List[*cp.Credential]
	h.must(tb, http.StatusOK, h.admin, "GET", "/v1/organizations/"+org+"/environments/"+env+"/credentials", nil).decode(tb, &list)
	for _, c := range list.Items {
		if c.ID == id {
			return c.Status
		}
	}
	return "absent"
}
