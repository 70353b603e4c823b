package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	cp "github.com/envplane/envplane/controlplane"
)

// TestOwnersReadQuotasButDoNotSetThem: an owner who PATCHes their own
// organization's max_environments or max_storage_mb gets 403 and nothing
// changes (they could raise their quota to 100,000); they still read both
// quotas and rename the organization. The platform admin sets them, within
// range (422 naming the field otherwise).
func TestOwnersReadQuotasButDoNotSetThem(t *testing.T) {
	bothStores(t, func(t *testing.T, h *harness) {
		h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations",
			map[string]any{"slug": "acme", "name": "Acme", "max_environments": 3, "max_storage_mb": 1024})
		owner := h.member(t, "acme", "olga@example.com", cp.OrgOwner)
		var org cp.Organization
		h.must(t, http.StatusOK, owner, "GET", "/v1/organizations/acme", nil).decode(t, &org)
		if org.MaxEnvironments != 3 || org.MaxStorageMB != 1024 {
			t.Fatalf("owner reads quotas %d environments, %d MB; want 3, 1024", org.MaxEnvironments, org.MaxStorageMB)
		}
		before := h.storeRows(t)
		for _, body := range []map[string]any{
			{"max_environments": 100000},
			{"max_storage_mb": 1 << 20},
			{"name": "Acme Ltd", "max_environments": 4},
		} {
			wantProblem(t, h.do(t, owner, "PATCH", "/v1/organizations/acme", body), http.StatusForbidden, cp.EFORBIDDEN, "")
		}
		h.unchanged(t, before)
		h.must(t, http.StatusOK, owner, "PATCH", "/v1/organizations/acme", map[string]any{"name": "Acme Ltd"})

		for _, tc := range []struct {
			body  map[string]any
			field string
		}{
			{map[string]any{"max_storage_mb": -1}, "max_storage_mb"},
			{map[string]any{"max_storage_mb": cp.MaxStorageQuotaMB + 1}, "max_storage_mb"},
			{map[string]any{"max_environments": 0}, "max_environments"},
		} {
			wantProblem(t, h.do(t, h.admin, "PATCH", "/v1/organizations/acme", tc.body), http.StatusUnprocessableEntity, cp.EINVALID, tc.field)
		}
		wantProblem(t, h.do(t, h.admin, "POST", "/v1/organizations", map[string]any{"slug": "big", "max_storage_mb": -5}),
			http.StatusUnprocessableEntity, cp.EINVALID, "max_storage_mb")

		h.must(t, http.StatusOK, h.admin, "PATCH", "/v1/organizations/acme", map[string]any{"max_environments": 5, "max_storage_mb": 0}).decode(t, &org)
		if org.MaxEnvironments != 5 || org.MaxStorageMB != 0 || org.Name != "Acme Ltd" {
			t.Fatalf("after the platform admin's change: %+v", org)
		}
		ev := h.auditEvent(t, "acme", "organization.updated")
		if ev == nil || ev.Details["max_environments"] != float64(5) || ev.Details["max_storage_mb"] != float64(0) {
			t.Fatalf("quota change audited as %+v", ev)
		}
	})
}

// TestFullEnvironmentQuotaIs429WithTheLimit: past max_environments (the
// default environment counts) creation is 429 naming the limit, and
// creates nothing.
func TestFullEnvironmentQuotaIs429WithTheLimit(t *testing.T) {
	h := newHarness(t)
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations", map[string]any{"slug": "acme", "max_environments": 2})
	owner := h.member(t, "acme", "olga@example.com", cp.OrgOwner)
	h.env(t, owner, "acme", "qa", "test")
	before := h.storeRows(t)
	r := h.do(t, owner, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "qa2", "type": "test"})
	wantProblem(t, r, http.StatusTooManyRequests, cp.ETOOMANY, "")
	if p := r.problem(t); !strings.Contains(p.Detail, "quota of 2 environments") {
		t.Fatalf("429 detail %q does not name the limit", p.Detail)
	}
	h.unchanged(t, before)
}
