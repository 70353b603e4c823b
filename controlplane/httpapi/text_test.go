package httpapi_test

import (
	"net/http"
	"testing"

	cp "github.com/envplane/envplane/controlplane"
)

// TestNonUTF8Input: path parameters, cursors and Idempotency-Keys that are
// not UTF-8 are the client's mistake (404, 400, 400), on both stores —
// PostgreSQL refuses such text with an error of its own.
func TestNonUTF8Input(t *testing.T) {
	for name, opts := range map[string][]harnessOption{"sqlite": nil, "postgres": {withPostgresStore()}} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, opts...)
			h.org(t, "acme")
			for _, path := range []string{"/v1/organizations/%FF", "/v1/operations/%FF", "/v1/organizations/acme/environments/%00x", "/v1/environments/%C3%28/connection?scope=readonly"} {
				wantProblem(t, h.do(t, h.admin, "GET", path, nil), http.StatusNotFound, cp.ENOTFOUND, "")
			}
			wantProblem(t, h.do(t, h.admin, "GET", "/v1/organizations/acme/environments?cursor=%FF", nil), http.StatusBadRequest, cp.EMALFORMED, "cursor")
			wantProblem(t, h.do(t, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "dev", "type": "development"}, "Idempotency-Key", "\xff"), http.StatusBadRequest, cp.EMALFORMED, "")
		})
	}
}
