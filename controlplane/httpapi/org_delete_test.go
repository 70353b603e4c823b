package httpapi_test

import (
	"net/http"
	"sync/atomic"
	"testing"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/drivers"
)

// TestDeleteOrganizationClosesItFirst: deleting an organization marks its
// default environment deleting before it drops the database, so no
// environment can be created meanwhile (its database would be orphaned by the
// cascade); a drop that fails leaves the deletion to be retried.
func TestDeleteOrganizationClosesItFirst(t *testing.T) {
	var failing atomic.Bool
	h, _ := newFaultHarness(t, func(method string, _ int) fault {
		if method == "DropDatabase" && failing.Load() {
			return fault{err: drivers.ErrUnavailable}
		}
		return fault{}
	})
	org := h.org(t, "acme")
	files := h.databaseFiles(t, org.DefaultEnvironment.Database.DatabaseName)

	failing.Store(true)
	wantProblem(t, h.do(t, h.admin, "DELETE", "/v1/organizations/acme", nil), http.StatusServiceUnavailable, cp.EUNAVAILABLE, "")
	wantProblem(t, h.do(t, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "late", "type": "development"}),
		http.StatusConflict, cp.ECONFLICT, "")

	failing.Store(false)
	h.must(t, http.StatusNoContent, h.admin, "DELETE", "/v1/organizations/acme", nil)
	h.must(t, http.StatusNotFound, h.admin, "GET", "/v1/organizations/acme", nil)
	for _, f := range files {
		if fileExists(f) {
			t.Errorf("%s is left behind", f)
		}
	}
}
