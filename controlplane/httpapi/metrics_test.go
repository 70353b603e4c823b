package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/envplane/envplane/drivers"
)

// TestMetrics: /metrics (no key needed) counts requests by route and status,
// and finished operations by kind and outcome — a failed provisioning too.
func TestMetrics(t *testing.T) {
	h, _ := newFaultHarness(t, func(method string, n int) fault {
		if method == "CreateDatabase" && n >= 3 { // the default environment and dev succeed
			return fault{err: drivers.ErrUnavailable}
		}
		return fault{}
	})
	h.org(t, "acme")
	h.env(t, h.admin, "acme", "dev", "development")
	h.must(t, http.StatusAccepted, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "broken", "type": "development"})
	h.svc.Wait()
	h.do(t, "", "GET", "/v1/me", nil)

	body := string(h.must(t, http.StatusOK, "", "GET", "/metrics", nil).body)
	for _, want := range []string{
		`envplane_operations_finished_total{kind="provision",status="succeeded"} 2`,
		`envplane_operations_finished_total{kind="provision",status="failed"} 1`,
		`envplane_operation_duration_seconds_count{kind="provision",status="succeeded"} 2`,
		`envplane_http_requests_total{method="GET",route="/v1/me",status="401"} 1`,
		`envplane_http_requests_total{method="POST",route="/v1/organizations/:org/environments",status="201"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, h.admin) {
		t.Error("/metrics shows the admin token")
	}
}
