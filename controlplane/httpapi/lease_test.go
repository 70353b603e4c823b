package httpapi_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
)

// TestLongStepKeepsItsLease: a step that outlasts the lease (here a database
// creation held back by the test) keeps its operation, because the running
// replica renews the lease; another replica's reconciler does not take it.
func TestLongStepKeepsItsLease(t *testing.T) {
	release := make(chan struct{})
	h, _ := newFaultHarness(t, func(method string, n int) fault {
		if method == "CreateDatabase" && n == 2 { // the first is the org's default environment
			<-release
		}
		return fault{}
	})
	h.svc.Lease, h.svc.LeaseRenewal = 300*time.Millisecond, 100*time.Millisecond
	h.org(t, "acme")

	var accepted cp.EnvironmentOperationResponse
	h.must(t, http.StatusAccepted, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "slow", "type": "development"}, "Prefer", "wait=0").decode(t, &accepted)
	op := accepted.Operation

	// The lease the request took has run out on the (test) clock (not the
	// provisioning's own bound, ProvisionTimeout)...
	h.clock.Advance(time.Minute)
	// ...and the heartbeat renews it from the new time.
	deadline := time.Now().Add(10 * time.Second)
	for {
		stored, err := h.svc.Store.GetOperation(cp.WithPlatformScope(context.Background()), op.OrgID, op.ID)
		if err != nil {
			t.Fatal(err)
		}
		if stored.LeaseExpiresAt != nil && stored.LeaseExpiresAt.After(h.clock.Now()) {
			break
		}
		if time.Now().After(deadline) {
			close(release)
			t.Fatal("the lease was not renewed while the step ran")
		}
		time.Sleep(10 * time.Millisecond)
	}

	targets := make([]*cp.Target, 0, len(h.svc.Targets))
	for _, tg := range h.svc.Targets {
		targets = append(targets, tg)
	}
	other := cp.New(h.svc.Store, h.svc.Keyring, targets, h.svc.DefaultTarget)
	other.Now, other.Schema, other.Lease, other.LeaseOwner = h.clock.Now, h.svc.Schema, h.svc.Lease, "replica-2"
	if n, err := other.Reconcile(context.Background()); err != nil || n != 0 {
		close(release)
		t.Fatalf("another replica claimed %d operations while the step ran (err %v)", n, err)
	}

	close(release)
	h.svc.Wait()
	if v := h.envView(t, "acme", "slow"); v.Status != cp.StatusActive {
		t.Fatalf("environment %s after the long step, want active", v.Status)
	}
}
