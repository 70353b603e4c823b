package httpapi_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/drivers"
)

// TestDeleteEnvironment: protected and default environments refuse deletion;
// unprotected, an environment is deprovisioned to a tombstone, its database
// files are gone, its credentials revoked and its slug is free again.
func TestDeleteEnvironment(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	prod := h.env(t, h.admin, "acme", "prod", "production")
	if !prod.IsProtected {
		t.Fatal("a production environment is not protected by default")
	}
	staging := h.env(t, h.admin, "acme", "staging", "staging")
	h.must(t, http.StatusOK, h.admin, "PATCH", "/v1/organizations/acme/environments/staging", map[string]any{"is_protected": true})
	files := h.databaseFiles(t, prod.Database.DatabaseName)
	if len(files) == 0 {
		t.Fatal("the production database has no files to look for")
	}

	tests := []struct {
		name string
		path string
	}{
		{"protected by type", "/v1/organizations/acme/environments/prod"},
		{"protected by id", "/v1/organizations/acme/environments/" + prod.ID},
		{"protected by PATCH", "/v1/organizations/acme/environments/staging"},
		{"default", "/v1/organizations/acme/environments/default"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantProblem(t, h.do(t, h.admin, "DELETE", tc.path, nil), http.StatusConflict, cp.ECONFLICT, "")
		})
	}
	if v := h.envView(t, "acme", "staging"); v.Status != cp.StatusActive || v.ID != staging.ID {
		t.Fatalf("a refused delete touched the environment: %s", v.Status)
	}
	wantProblem(t, h.do(t, h.admin, "DELETE", "/v1/organizations/acme", nil), http.StatusConflict, cp.ECONFLICT, "")

	var unprotected cp.EnvironmentView
	h.must(t, http.StatusOK, h.admin, "PATCH", "/v1/organizations/acme/environments/prod", map[string]any{"is_protected": false}).decode(t, &unprotected)
	if unprotected.IsProtected {
		t.Fatal("PATCH did not unprotect")
	}
	var del cp.EnvironmentOperationResponse
	h.must(t, http.StatusAccepted, h.admin, "DELETE", "/v1/organizations/acme/environments/prod", nil).decode(t, &del)
	if del.Operation == nil || del.Operation.Kind != cp.OpDeprovision || del.Environment == nil || del.Environment.ID != prod.ID {
		t.Fatalf("DELETE answered %+v", del)
	}
	h.svc.Wait()

	var op cp.Operation
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/operations/"+del.Operation.ID, nil).decode(t, &op)
	if op.Status != cp.OpSucceeded {
		t.Fatalf("deprovisioning %s at %s: %s", op.Status, op.Step, op.Error)
	}
	stored := h.storedEnvironment(t, prod.OrgID, prod.ID)
	if stored.Status != cp.StatusDeleted || stored.DeletedAt == nil {
		t.Fatalf("environment %s (deleted_at %v), want a deleted tombstone", stored.Status, stored.DeletedAt)
	}
	for _, f := range files {
		if fileExists(f) {
			t.Errorf("%s is left behind", f)
		}
	}
	if live := h.liveCredentials(t, prod.ID); len(live) != 0 {
		t.Errorf("%d credentials of the deleted environment are not revoked", len(live))
	}
	wantProblem(t, h.do(t, h.admin, "GET", "/v1/organizations/acme/environments/prod", nil), http.StatusNotFound, cp.ENOTFOUND, "")
	wantProblem(t, h.do(t, h.admin, "GET", "/v1/environments/"+prod.ID+"/connection?scope=readonly", nil), http.StatusNotFound, cp.ENOTFOUND, "")
	wantProblem(t, h.do(t, h.admin, "DELETE", "/v1/organizations/acme/environments/"+prod.ID, nil), http.StatusNotFound, cp.ENOTFOUND, "")
	for _, action := range []string{"environment.delete_requested", "environment.deleted"} {
		if e := h.auditEvent(t, "acme", action); e == nil || e.EnvironmentID != prod.ID {
			t.Errorf("no %s audit event for the environment", action)
		}
	}

	again := h.env(t, h.admin, "acme", "prod", "production")
	if again.ID == prod.ID || !again.IsProtected || again.Database.DatabaseName == prod.Database.DatabaseName {
		t.Fatalf("the reused slug: id reused %v, protected %v", again.ID == prod.ID, again.IsProtected)
	}

	// Deleting the organization drops its default environment's database too.
	def := h.envView(t, "acme", "default")
	defFiles := h.databaseFiles(t, def.Database.DatabaseName)
	for _, slug := range []string{"prod", "staging"} {
		h.must(t, http.StatusOK, h.admin, "PATCH", "/v1/organizations/acme/environments/"+slug, map[string]any{"is_protected": false})
		h.must(t, http.StatusAccepted, h.admin, "DELETE", "/v1/organizations/acme/environments/"+slug, nil)
	}
	h.svc.Wait()
	h.must(t, http.StatusNoContent, h.admin, "DELETE", "/v1/organizations/acme", nil)
	for _, f := range defFiles {
		if fileExists(f) {
			t.Errorf("%s is left behind by the organization's deletion", f)
		}
	}
	wantProblem(t, h.do(t, h.admin, "GET", "/v1/organizations/acme", nil), http.StatusNotFound, cp.ENOTFOUND, "")
}

// TestLastOwner: an organization always keeps an owner; only owners change owners.
func TestLastOwner(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	var me cp.Me
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/me", nil).decode(t, &me)
	members := "/v1/organizations/acme/members/"

	// The platform admin created acme and is its only owner.
	wantProblem(t, h.do(t, h.admin, "PATCH", members+"ops@example.com", map[string]any{"role": "admin"}), http.StatusConflict, cp.ECONFLICT, "")
	wantProblem(t, h.do(t, h.admin, "DELETE", members+me.User.ID, nil), http.StatusConflict, cp.ECONFLICT, "")

	bob := h.member(t, "acme", "bob@example.com", cp.OrgOwner)
	erin := h.member(t, "acme", "erin@example.com", cp.OrgAdmin)
	var bobMe cp.Me
	h.must(t, http.StatusOK, bob, "GET", "/v1/me", nil).decode(t, &bobMe)

	// Two owners: one may step down.
	h.must(t, http.StatusOK, bob, "PATCH", members+"ops@example.com", map[string]any{"role": "member"})

	tests := []struct {
		name   string
		token  string
		method string
		user   string
		body   any
		status int
		code   string
	}{
		{"the last owner demotes themself", bob, "PATCH", "bob@example.com", map[string]any{"role": "admin"}, http.StatusConflict, cp.ECONFLICT},
		{"the last owner removes themself by id", bob, "DELETE", bobMe.User.ID, nil, http.StatusConflict, cp.ECONFLICT},
		{"the platform admin removes the last owner", h.admin, "DELETE", "bob@example.com", nil, http.StatusConflict, cp.ECONFLICT},
		{"the platform admin demotes the last owner", h.admin, "PATCH", bobMe.User.ID, map[string]any{"role": "member"}, http.StatusConflict, cp.ECONFLICT},
		{"an admin removes an owner", erin, "DELETE", "bob@example.com", nil, http.StatusForbidden, cp.EFORBIDDEN},
		{"an admin makes themself owner", erin, "PATCH", "erin@example.com", map[string]any{"role": "owner"}, http.StatusForbidden, cp.EFORBIDDEN},
		{"an admin adds an owner", erin, "POST", "", map[string]any{"email": "new@example.com", "role": "owner"}, http.StatusForbidden, cp.EFORBIDDEN},
		{"an unknown role", bob, "PATCH", "erin@example.com", map[string]any{"role": "root"}, http.StatusUnprocessableEntity, cp.EINVALID},
		{"a user who is not a member", bob, "DELETE", "nobody@example.com", nil, http.StatusNotFound, cp.ENOTFOUND},
		{"a member added twice", bob, "POST", "", map[string]any{"email": "erin@example.com", "role": "member"}, http.StatusConflict, cp.ECONFLICT},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := members + tc.user
			if tc.method == "POST" {
				path = "/v1/organizations/acme/members"
			}
			wantProblem(t, h.do(t, tc.token, tc.method, path, tc.body), tc.status, tc.code, "")
		})
	}

	var list cp.List[*cp.OrgMembership]
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/members", nil).decode(t, &list)
	roles := map[string]cp.OrgRole{}
	for _, m := range list.Items {
		roles[m.Email] = m.Role
	}
	if roles["bob@example.com"] != cp.OrgOwner || roles["erin@example.com"] != cp.OrgAdmin || roles["ops@example.com"] != cp.OrgMember || len(roles) != 3 {
		t.Fatalf("members after the refused changes: %v", roles)
	}
	// Another owner makes it possible again.
	h.must(t, http.StatusOK, bob, "PATCH", members+"erin@example.com", map[string]any{"role": "owner"})
	h.must(t, http.StatusNoContent, erin, "DELETE", members+"bob@example.com", nil)
	wantProblem(t, h.do(t, erin, "DELETE", members+"erin@example.com", nil), http.StatusConflict, cp.ECONFLICT, "")
}

// TestLastOwnersRemovedAtOnce: two owners removing each other at the same
// time leave exactly one owner; the store serializes the check and the change.
func TestLastOwnersRemovedAtOnce(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	bob := h.member(t, "acme", "bob@example.com", cp.OrgOwner)
	carol := h.member(t, "acme", "carol@example.com", cp.OrgOwner)
	h.must(t, http.StatusOK, h.admin, "PATCH", "/v1/organizations/acme/members/ops@example.com", map[string]any{"role": "member"})

	type result struct {
		status int
		err    error
	}
	remove := func(token, email string, out chan<- result) {
		req, err := http.NewRequest("DELETE", h.srv.URL+"/v1/organizations/acme/members/"+email, nil)
		if err != nil {
			out <- result{err: err}
			return
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := h.srv.Client().Do(req)
		if err != nil {
			out <- result{err: err}
			return
		}
		resp.Body.Close()
		out <- result{status: resp.StatusCode}
	}
	out := make(chan result, 2)
	go remove(bob, "carol@example.com", out)
	go remove(carol, "bob@example.com", out)
	statuses := map[int]int{}
	for range 2 {
		r := <-out
		if r.err != nil {
			t.Fatalf("request: %v", r.err)
		}
		statuses[r.status]++
	}
	// The loser is 409 (it still saw the other owner's removal), 404 (its
	// own key's user was removed first and can no longer see the
	// organization) or 401 (its removal, which revokes a removed member's
	// keys, committed before its request was authenticated).
	if statuses[http.StatusNoContent] != 1 || statuses[http.StatusConflict]+statuses[http.StatusNotFound]+statuses[http.StatusUnauthorized] != 1 {
		t.Fatalf("concurrent removals answered %v, want one 204", statuses)
	}
	n, err := h.svc.Store.CountOrgOwners(cp.WithPlatformScope(context.Background()), h.envView(t, "acme", "default").OrgID)
	if err != nil || n != 1 {
		t.Fatalf("%d owners left (err %v), want 1", n, err)
	}
}

// TestSuspendAndResume: a suspended environment's connection lookups are 423
// by path and by id; resuming brings them back. Both are idempotent.
func TestSuspendAndResume(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	dev := h.env(t, h.admin, "acme", "dev", "development")
	env := "/v1/organizations/acme/environments/dev"

	var v cp.EnvironmentView
	h.must(t, http.StatusOK, h.admin, "POST", env+"/suspend", nil).decode(t, &v)
	if v.Status != cp.StatusSuspended {
		t.Fatalf("suspend answered %s", v.Status)
	}
	h.must(t, http.StatusOK, h.admin, "POST", env+"/suspend", nil)
	for _, path := range []string{env + "/connection?scope=readwrite", "/v1/environments/" + dev.ID + "/connection?scope=readonly"} {
		r := h.do(t, h.admin, "GET", path, nil)
		wantProblem(t, r, http.StatusLocked, cp.ELOCKED, "")
	}
	h.must(t, http.StatusOK, h.admin, "POST", env+"/resume", nil).decode(t, &v)
	if v.Status != cp.StatusActive {
		t.Fatalf("resume answered %s", v.Status)
	}
	h.must(t, http.StatusOK, h.admin, "POST", env+"/resume", nil)
	var conn cp.Connection
	h.must(t, http.StatusOK, h.admin, "GET", env+"/connection?scope=readwrite", nil).decode(t, &conn)
	if _, err := openDSN(t, conn.DSN).Exec("CREATE TABLE t (x)"); err != nil {
		t.Fatalf("write after resume: %v", err)
	}
	actions := map[string]bool{}
	for _, a := range h.auditActions(t, "acme") {
		actions[a] = true
	}
	if !actions["environment.suspended"] || !actions["environment.resumed"] {
		t.Fatal("suspend and resume left no audit events")
	}
}

// TestRotationInGrace: a scope whose last rotation is still in its grace
// cannot rotate again (409) until the grace ends or the old credential is
// revoked; other scopes can.
func TestRotationInGrace(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	h.env(t, h.admin, "acme", "dev", "development")
	rotate := "/v1/organizations/acme/environments/dev/credentials/rotate"

	h.must(t, http.StatusOK, h.admin, "POST", rotate, map[string]any{"scope": "readwrite", "grace_seconds": 60})
	wantProblem(t, h.do(t, h.admin, "POST", rotate, map[string]any{"scope": "readwrite"}), http.StatusConflict, cp.ECONFLICT, "")
	wantProblem(t, h.do(t, h.admin, "POST", rotate, map[string]any{"scope": "all"}), http.StatusConflict, cp.ECONFLICT, "")
	wantProblem(t, h.do(t, h.admin, "POST", rotate, map[string]any{}), http.StatusConflict, cp.ECONFLICT, "")
	wantProblem(t, h.do(t, h.admin, "POST", rotate, map[string]any{"scope": "root"}), http.StatusUnprocessableEntity, cp.EINVALID, "scope")
	wantProblem(t, h.do(t, h.admin, "POST", rotate, map[string]any{"grace_seconds": -1}), http.StatusUnprocessableEntity, cp.EINVALID, "grace_seconds")
	wantProblem(t, h.do(t, h.admin, "POST", rotate, map[string]any{"grace_seconds": 8 * 24 * 3600}), http.StatusUnprocessableEntity, cp.EINVALID, "grace_seconds")
	h.must(t, http.StatusOK, h.admin, "POST", rotate, map[string]any{"scope": "readonly", "grace_seconds": 60})

	h.clock.Advance(61 * time.Second)
	if n, err := h.svc.RevokeDue(context.Background()); err != nil || n != 2 {
		t.Fatalf("revoke due: %d revoked, err %v; want 2", n, err)
	}
	var rot cp.CredentialsResponse
	h.must(t, http.StatusOK, h.admin, "POST", rotate, map[string]any{"scope": "readwrite", "grace_seconds": 600}).decode(t, &rot)
	if rot.Operation.Status != cp.OpSucceeded {
		t.Fatalf("rotation after the grace: %s", rot.Operation.Status)
	}

	// Revoking the credential in its grace ends it early.
	var rotating *cp.Credential
	for _, c := range rot.Credentials {
		if c.Status == cp.CredentialRotating {
			rotating = c
		}
	}
	if rotating == nil {
		t.Fatal("no rotating credential after a rotation with grace")
	}
	h.must(t, http.StatusOK, h.admin, "POST", "/v1/organizations/acme/environments/dev/credentials/revoke", map[string]any{"credential_id": rotating.ID, "reason": "end the grace"})
	h.must(t, http.StatusOK, h.admin, "POST", rotate, map[string]any{"scope": "readwrite"})

	// Without a grace the old credential is revoked at once, so the scope
	// may rotate again straight away.
	for range 2 {
		var zero cp.CredentialsResponse
		h.must(t, http.StatusOK, h.admin, "POST", rotate, map[string]any{"scope": "admin", "grace_seconds": 0}).decode(t, &zero)
		for _, c := range zero.Credentials {
			if c.Scope == "admin" && c.Status == cp.CredentialRotating {
				t.Fatalf("credential %s rotated without grace is still rotating", c.ID)
			}
		}
	}
}

// TestEmergencyRevoke: a revoked credential stops working at once, the
// router hands out a new one, and bad revocations are refused.
func TestEmergencyRevoke(t *testing.T) {
	h, fd := newFaultHarness(t, nil)
	h.org(t, "acme")
	dev := h.env(t, h.admin, "acme", "dev", "development")
	env := "/v1/organizations/acme/environments/dev"
	ctx := context.Background()
	db := drivers.Database{Name: dev.Database.DatabaseName}
	// credential is the driver's view of the credential a connection carries.
	credential := func(c cp.Connection) drivers.Credential {
		t.Helper()
		var list cp.List[*cp.Credential]
		h.must(t, http.StatusOK, h.admin, "GET", env+"/credentials", nil).decode(t, &list)
		for _, m := range list.Items {
			if m.ID == c.CredentialID {
				return drivers.Credential{Scope: m.Scope, Slot: m.Slot, Username: m.Username, Secret: drivers.Secret(c.Secret)}
			}
		}
		t.Fatalf("credential %s not listed", c.CredentialID)
		return drivers.Credential{}
	}

	var old cp.Connection
	h.must(t, http.StatusOK, h.admin, "GET", env+"/connection?scope=readwrite", nil).decode(t, &old)
	oldCred := credential(old)
	conn, err := fd.Open(ctx, drivers.OpenRequest{Database: db, Credential: oldCred})
	if err != nil {
		t.Fatalf("the live credential does not open its database: %v", err)
	}
	conn.DB.Close()

	var resp cp.CredentialsResponse
	h.must(t, http.StatusOK, h.admin, "POST", env+"/credentials/revoke", map[string]any{"credential_id": old.CredentialID, "reason": "leaked in a log"}).decode(t, &resp)
	if resp.Operation.Status != cp.OpSucceeded {
		t.Fatalf("revocation %s: %s", resp.Operation.Status, resp.Operation.Error)
	}
	if _, err := fd.Open(ctx, drivers.OpenRequest{Database: db, Credential: oldCred}); !errors.Is(err, drivers.ErrDenied) {
		t.Fatalf("the revoked credential still opens the database: err %v", err)
	}
	if st := h.credentialStatus(t, "acme", "dev", old.CredentialID); st != cp.CredentialRevoked {
		t.Fatalf("revoked credential is %s", st)
	}

	var fresh cp.Connection
	h.must(t, http.StatusOK, h.admin, "GET", env+"/connection?scope=readwrite", nil).decode(t, &fresh)
	if fresh.CredentialID == old.CredentialID || fresh.Secret == old.Secret {
		t.Fatal("the router still hands out the revoked credential")
	}
	conn, err = fd.Open(ctx, drivers.OpenRequest{Database: db, Credential: credential(fresh)})
	if err != nil {
		t.Fatalf("the re-issued credential does not open the database: %v", err)
	}
	if _, err := conn.DB.Exec("CREATE TABLE after_revoke (x)"); err != nil {
		t.Fatalf("write with the re-issued credential: %v", err)
	}
	conn.DB.Close()
	if e := h.auditEvent(t, "acme", "credentials.revoked"); e == nil || e.Details["reason"] != "leaked in a log" {
		t.Fatal("no credentials.revoked audit event with the reason")
	}

	wantProblem(t, h.do(t, h.admin, "POST", env+"/credentials/revoke", map[string]any{"credential_id": old.CredentialID, "reason": "again"}), http.StatusConflict, cp.ECONFLICT, "")
	wantProblem(t, h.do(t, h.admin, "POST", env+"/credentials/revoke", map[string]any{"credential_id": "cred_nope", "reason": "x"}), http.StatusUnprocessableEntity, cp.EINVALID, "credential_id")
	var other cp.Connection
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments/default/connection?scope=readonly", nil).decode(t, &other)
	wantProblem(t, h.do(t, h.admin, "POST", env+"/credentials/revoke", map[string]any{"credential_id": other.CredentialID, "reason": "wrong environment"}), http.StatusUnprocessableEntity, cp.EINVALID, "credential_id")
	if st := h.credentialStatus(t, "acme", "default", other.CredentialID); st != cp.CredentialActive {
		t.Fatalf("revoking through another environment changed its credential to %s", st)
	}
	wantProblem(t, h.do(t, h.admin, "POST", env+"/credentials/revoke", map[string]any{"credential_id": fresh.CredentialID}), http.StatusUnprocessableEntity, cp.EINVALID, "reason")
	if st := h.credentialStatus(t, "acme", "dev", fresh.CredentialID); st != cp.CredentialActive {
		t.Fatalf("a refused revocation changed the credential to %s", st)
	}

	// Revoking everything leaves one new active credential per scope.
	before := h.liveCredentials(t, dev.ID)
	h.must(t, http.StatusOK, h.admin, "POST", env+"/credentials/revoke", map[string]any{"reason": "breach"})
	after := h.liveCredentials(t, dev.ID)
	scopes := map[cp.Scope]int{}
	for _, c := range after {
		scopes[c.Scope]++
		for _, b := range before {
			if b.ID == c.ID {
				t.Errorf("credential %s survived revoking everything", c.ID)
			}
		}
	}
	if len(after) != 3 || scopes["admin"] != 1 || scopes["readwrite"] != 1 || scopes["readonly"] != 1 {
		t.Fatalf("after revoking everything: %v", scopes)
	}
	logs := h.logs.String()
	for i, s := range []string{old.Secret.Reveal(), fresh.Secret.Reveal(), other.Secret.Reveal()} {
		if strings.Contains(logs, s) {
			t.Errorf("secret %d appears in the server log", i)
		}
	}
}
