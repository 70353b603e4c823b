package httpapi_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/drivers"
)

// TestProvisioningFailure: a driver failure in the middle of provisioning
// runs out of attempts, compensation revokes and drops, and the environment
// ends failed naming the step, with no file and no live credential left,
// an operation.failed audit event, and its slug reusable after deletion.
func TestProvisioningFailure(t *testing.T) {
	// The organization's default environment takes CreateDatabase call 1 and
	// IssueCredential calls 1-3; the faults hit the next environment.
	tests := []struct {
		name    string
		inject  func(method string, n int) fault
		step    string
		issued  int // credentials issued before the fault
		creates int // CreateDatabase calls for the environment
	}{
		{
			name: "IssueCredential unavailable after the admin credential",
			inject: func(method string, n int) fault {
				if method == "IssueCredential" && n >= 5 {
					return fault{err: drivers.ErrUnavailable}
				}
				return fault{}
			},
			step: "issue_credentials", issued: 1, creates: 1,
		},
		{
			name: "CreateDatabase unavailable",
			inject: func(method string, n int) fault {
				if method == "CreateDatabase" && n >= 2 {
					return fault{err: drivers.ErrUnavailable}
				}
				return fault{}
			},
			step: "create_database", creates: 3,
		},
		{
			name: "CreateDatabase made the file but its answer was lost",
			inject: func(method string, n int) fault {
				if method == "CreateDatabase" && n >= 2 {
					return fault{err: drivers.ErrUnavailable, late: true}
				}
				return fault{}
			},
			step: "create_database", creates: 3,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var failing atomic.Bool
			failing.Store(true)
			h, fd := newFaultHarness(t, func(method string, n int) fault {
				if !failing.Load() {
					return fault{}
				}
				return tc.inject(method, n)
			})
			h.org(t, "acme")

			var resp cp.EnvironmentOperationResponse
			h.must(t, http.StatusAccepted, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "broken", "type": "development"}).decode(t, &resp)
			env, op := resp.Environment, resp.Operation
			wantErr := tc.step + ": target unavailable"
			if op.Status != cp.OpFailed || op.Error != wantErr {
				t.Fatalf("operation %s with error %q, want failed with %q", op.Status, op.Error, wantErr)
			}
			if env.Status != cp.StatusFailed || env.Error != wantErr {
				t.Fatalf("environment %s with error %q, want failed with %q", env.Status, env.Error, wantErr)
			}
			if got := fd.count("CreateDatabase") - 1; got != tc.creates {
				t.Errorf("CreateDatabase called %d times for the environment, want %d", got, tc.creates)
			}

			got := h.envView(t, "acme", "broken")
			if got.Status != cp.StatusFailed || got.Error != wantErr {
				t.Fatalf("GET: environment %s (%q)", got.Status, got.Error)
			}
			var stored cp.Operation
			h.must(t, http.StatusOK, h.admin, "GET", "/v1/operations/"+op.ID, nil).decode(t, &stored)
			if stored.Status != cp.OpFailed || stored.Error != wantErr {
				t.Fatalf("GET operation: %s (%q)", stored.Status, stored.Error)
			}
			e := h.auditEvent(t, "acme", "operation.failed")
			if e == nil || e.EnvironmentID != env.ID || e.Target != op.ID || e.Details["error"] != wantErr {
				t.Fatalf("operation.failed audit event: %+v", e)
			}

			if files := h.databaseFiles(t, env.Database.DatabaseName); len(files) != 0 {
				t.Fatalf("files left behind in the target directory: %v", files)
			}
			// What was issued before the fault is revoked; nothing is live.
			creds := h.credentials(t, env.ID)
			if len(creds) != tc.issued {
				t.Fatalf("%d credentials recorded for the failed environment, want %d", len(creds), tc.issued)
			}
			for _, c := range creds {
				if c.Status != cp.CredentialRevoked || c.RevokedAt == nil {
					t.Fatalf("the %s credential of the failed environment is %s", c.Scope, c.Status)
				}
			}

			wantProblem(t, h.do(t, h.admin, "GET", "/v1/organizations/acme/environments/broken/connection?scope=readonly", nil), http.StatusConflict, cp.ECONFLICT, "")
			wantProblem(t, h.do(t, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "broken", "type": "development"}), http.StatusConflict, cp.ECONFLICT, "slug")

			// A failed environment can be deleted, and then its slug provisions cleanly.
			failing.Store(false)
			h.must(t, http.StatusAccepted, h.admin, "DELETE", "/v1/organizations/acme/environments/broken", nil)
			h.svc.Wait()
			if st := h.storedEnvironment(t, env.OrgID, env.ID).Status; st != cp.StatusDeleted {
				t.Fatalf("deleting the failed environment ended %s", st)
			}
			h.env(t, h.admin, "acme", "broken", "development")
		})
	}
}

// TestProvisioningResumesAfterCrash: a process that dies in the middle of
// provisioning leaves a leased, unfinished operation; no reconciler takes it
// while the lease holds, and once it expires the reconciler finishes it
// without issuing anything twice.
func TestProvisioningResumesAfterCrash(t *testing.T) {
	h, fd := newFaultHarness(t, func(method string, n int) fault {
		// Calls 1-3 are the default environment's; the 5th is the new
		// environment's readwrite credential, after its admin one.
		if method == "IssueCredential" && n == 5 {
			return fault{err: drivers.ErrUnavailable}
		}
		return fault{}
	})
	// The process dies while it waits to retry.
	var died atomic.Bool
	h.svc.Sleep = func(ctx context.Context, _ time.Duration) error {
		if died.CompareAndSwap(false, true) {
			return context.Canceled
		}
		return ctx.Err()
	}
	h.org(t, "acme")

	var resp cp.EnvironmentOperationResponse
	h.must(t, http.StatusAccepted, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "dev", "type": "development"}).decode(t, &resp)
	env, op := resp.Environment, resp.Operation
	if !died.Load() {
		t.Fatal("the step did not fail")
	}
	if op.Status != cp.OpRunning || op.Step != "issue_credentials" || op.Attempts != 1 || env.Status != cp.StatusProvisioning {
		t.Fatalf("after the crash: operation %s at %s (attempts %d), environment %s", op.Status, op.Step, op.Attempts, env.Status)
	}

	ctx := context.Background()
	h.clock.Advance(h.svc.Lease / 2)
	if n, err := h.svc.Reconcile(ctx); err != nil || n != 0 {
		t.Fatalf("reconcile inside the lease claimed %d (err %v), want 0", n, err)
	}
	if v := h.envView(t, "acme", "dev"); v.Status != cp.StatusProvisioning {
		t.Fatalf("environment %s before the lease expired", v.Status)
	}

	h.clock.Advance(h.svc.Lease)
	if n, err := h.svc.Reconcile(ctx); err != nil || n != 1 {
		t.Fatalf("reconcile after the lease claimed %d (err %v), want 1", n, err)
	}
	var stored cp.Operation
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/operations/"+op.ID, nil).decode(t, &stored)
	if stored.Status != cp.OpSucceeded {
		t.Fatalf("resumed operation %s at %s: %s", stored.Status, stored.Step, stored.Error)
	}
	v := h.envView(t, "acme", "dev")
	if v.Status != cp.StatusActive || v.Database.ProvisionedAt == nil {
		t.Fatalf("resumed environment %s", v.Status)
	}
	live := h.liveCredentials(t, env.ID)
	scopes := map[cp.Scope]int{}
	for _, c := range live {
		scopes[c.Scope]++
	}
	if len(live) != 3 || scopes["admin"] != 1 || scopes["readwrite"] != 1 || scopes["readonly"] != 1 {
		t.Fatalf("live credentials after the resume: %v", scopes)
	}
	// Admin once; readwrite failed once then succeeded; readonly once.
	if n := fd.count("IssueCredential") - 3; n != 4 {
		t.Fatalf("the environment's credentials were issued in %d calls, want 4", n)
	}
	if n, err := h.svc.Reconcile(ctx); err != nil || n != 0 {
		t.Fatalf("a finished operation was claimed again: %d (err %v)", n, err)
	}

	var conn cp.Connection
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments/dev/connection?scope=readwrite", nil).decode(t, &conn)
	db := openDSN(t, conn.DSN)
	var owner string
	if err := db.QueryRow("SELECT environment_id FROM _envplane_meta").Scan(&owner); err != nil || owner != env.ID {
		t.Fatalf("the resumed database's schema: owner %q, err %v", owner, err)
	}
	if e := h.auditEvent(t, "acme", "environment.provisioned"); e == nil || e.EnvironmentID != env.ID {
		t.Fatal("no environment.provisioned audit event after the resume")
	}
}

// TestDeprovisioningFailure: a deletion whose database cannot be dropped
// ends the environment failed (its credentials are already revoked, so it
// must not claim to be active), and deleting it again once the target
// answers finishes the job.
func TestDeprovisioningFailure(t *testing.T) {
	var failing atomic.Bool
	h, _ := newFaultHarness(t, func(method string, _ int) fault {
		if method == "DropDatabase" && failing.Load() {
			return fault{err: drivers.ErrUnavailable}
		}
		return fault{}
	})
	h.org(t, "acme")
	dev := h.env(t, h.admin, "acme", "dev", "development")
	files := h.databaseFiles(t, dev.Database.DatabaseName)

	failing.Store(true)
	var del cp.EnvironmentOperationResponse
	h.must(t, http.StatusAccepted, h.admin, "DELETE", "/v1/organizations/acme/environments/dev", nil).decode(t, &del)
	h.svc.Wait()
	var op cp.Operation
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/operations/"+del.Operation.ID, nil).decode(t, &op)
	wantErr := "drop_database: target unavailable"
	if op.Status != cp.OpFailed || op.Error != wantErr {
		t.Fatalf("deprovisioning %s (%q), want failed with %q", op.Status, op.Error, wantErr)
	}
	v := h.envView(t, "acme", "dev")
	if v.Status != cp.StatusFailed || v.Error != wantErr {
		t.Fatalf("environment %s (%q) after a failed deletion, want failed", v.Status, v.Error)
	}
	if live := h.liveCredentials(t, dev.ID); len(live) != 0 {
		t.Fatalf("%d credentials live after the deletion revoked them", len(live))
	}
	if e := h.auditEvent(t, "acme", "operation.failed"); e == nil || e.Target != op.ID {
		t.Fatal("no operation.failed audit event for the deletion")
	}

	failing.Store(false)
	h.must(t, http.StatusAccepted, h.admin, "DELETE", "/v1/organizations/acme/environments/dev", nil)
	h.svc.Wait()
	if st := h.storedEnvironment(t, dev.OrgID, dev.ID).Status; st != cp.StatusDeleted {
		t.Fatalf("the second deletion ended %s", st)
	}
	for _, f := range files {
		if fileExists(f) {
			t.Errorf("%s is left behind", f)
		}
	}
}

// TestDefaultEnvironmentFailure: an organization whose default environment
// cannot be provisioned exists with that environment failed and nothing
// left on the target, and can be deleted and made again.
func TestDefaultEnvironmentFailure(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	h, _ := newFaultHarness(t, func(method string, _ int) fault {
		if method == "IssueCredential" && failing.Load() {
			return fault{err: drivers.ErrUnavailable}
		}
		return fault{}
	})
	var resp cp.CreateOrganizationResponse
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations", map[string]any{"slug": "acme"}).decode(t, &resp)
	def := resp.DefaultEnvironment
	if def == nil || def.Status != cp.StatusFailed || def.Error != "issue_credentials: target unavailable" {
		t.Fatalf("default environment %+v, want failed at issue_credentials", def)
	}
	if files := h.databaseFiles(t, def.Database.DatabaseName); len(files) != 0 {
		t.Fatalf("files left behind: %v", files)
	}
	wantProblem(t, h.do(t, h.admin, "DELETE", "/v1/organizations/acme/environments/default", nil), http.StatusConflict, cp.ECONFLICT, "")

	failing.Store(false)
	h.must(t, http.StatusNoContent, h.admin, "DELETE", "/v1/organizations/acme", nil)
	if org := h.org(t, "acme"); org.DefaultEnvironment.Status != cp.StatusActive {
		t.Fatalf("the organization made again has its default environment %s", org.DefaultEnvironment.Status)
	}
}
