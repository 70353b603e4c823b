package httpapi_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
)

// TestScheduledRotation: credentials with a lifetime are rotated once three
// quarters of it have passed, one operation per environment, and the rotated
// ones are revoked after the grace — long before they would have expired.
func TestScheduledRotation(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	h.svc.CredentialTTL[cp.TypeDevelopment] = time.Hour
	h.org(t, "acme")
	h.env(t, h.admin, "acme", "dev", "development")
	h.env(t, h.admin, "acme", "qa", "test") // no TTL for test: never rotated

	list := func() []*cp.Credential {
		var l cp.List[*cp.Credential]
		h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/environments/dev/credentials", nil).decode(t, &l)
		return l.Items
	}
	before := list()
	if n, err := h.svc.RotateDue(ctx); err != nil || n != 0 {
		t.Fatalf("fresh credentials rotated: %d, %v", n, err)
	}
	h.clock.Advance(44 * time.Minute)
	if n, err := h.svc.RotateDue(ctx); err != nil || n != 0 {
		t.Fatalf("credentials rotated before three quarters of their life: %d, %v", n, err)
	}
	h.clock.Advance(2 * time.Minute)
	if n, err := h.svc.RotateDue(ctx); err != nil || n != 1 {
		t.Fatalf("scheduled rotation started %d operations, want 1 (one environment): %v", n, err)
	}
	after := list()
	status := map[string]cp.CredentialStatus{}
	for _, c := range after {
		status[c.ID] = c.Status
	}
	active := 0
	for _, c := range after {
		if c.Status == cp.CredentialActive {
			active++
			if c.ExpiresAt == nil || !c.ExpiresAt.Equal(h.clock.Now().Add(time.Hour)) {
				t.Errorf("new %s credential expires at %v, want an hour from now", c.Scope, c.ExpiresAt)
			}
		}
	}
	for _, c := range before {
		if status[c.ID] != cp.CredentialRotating {
			t.Errorf("%s credential is %s after the scheduled rotation, want rotating", c.Scope, status[c.ID])
		}
	}
	if active != 3 {
		t.Fatalf("%d active credentials after the scheduled rotation, want 3", active)
	}
	if n, err := h.svc.RotateDue(ctx); err != nil || n != 0 {
		t.Fatalf("a second pass rotated again: %d, %v", n, err)
	}
	h.clock.Advance(15 * time.Minute)
	if n, err := h.svc.RevokeDue(ctx); err != nil || n != 3 {
		t.Fatalf("grace end revoked %d, want 3: %v", n, err)
	}
}
