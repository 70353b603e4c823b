package httpapi_test

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	cp "github.com/envplane/envplane/controlplane"
)

// gate holds a driver call until the test opens it.
type gate struct {
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func newGate() *gate {
	return &gate{entered: make(chan struct{}), release: make(chan struct{})}
}

// hold blocks the first call made while the gate is armed.
func (g *gate) hold() {
	if g.armed.CompareAndSwap(true, false) {
		close(g.entered)
		<-g.release
	}
}

// TestOperationInFlight: while an environment's operation runs, changes that
// would race it are 409, and a create that does not finish within the
// request's wait answers 202 with the running operation.
func TestOperationInFlight(t *testing.T) {
	g := newGate()
	h, _ := newFaultHarness(t, func(method string, _ int) fault {
		if method == "CreateDatabase" || method == "IssueCredential" {
			g.hold()
		}
		return fault{}
	})
	h.org(t, "acme")
	env := "/v1/organizations/acme/environments/slow"

	g.armed.Store(true)
	var accepted cp.EnvironmentOperationResponse
	h.must(t, http.StatusAccepted, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "slow", "type": "test"}, "Prefer", "wait=0").decode(t, &accepted)
	<-g.entered
	if accepted.Operation.Status != cp.OpRunning || accepted.Environment.Status != cp.StatusProvisioning {
		t.Fatalf("202 with operation %s, environment %s", accepted.Operation.Status, accepted.Environment.Status)
	}
	tests := []struct {
		name   string
		method string
		path   string
		body   any
	}{
		{"delete while provisioning", "DELETE", env, nil},
		{"rotate while provisioning", "POST", env + "/credentials/rotate", map[string]any{}},
		{"revoke while provisioning", "POST", env + "/credentials/revoke", map[string]any{"reason": "x"}},
		{"connection while provisioning", "GET", env + "/connection?scope=readonly", nil},
		{"suspend while provisioning", "POST", env + "/suspend", nil},
		{"schema while provisioning", "GET", env + "/schema", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantProblem(t, h.do(t, h.admin, tc.method, tc.path, tc.body), http.StatusConflict, cp.ECONFLICT, "")
		})
	}
	close(g.release)
	h.svc.Wait()
	var op cp.Operation
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/operations/"+accepted.Operation.ID, nil).decode(t, &op)
	if op.Status != cp.OpSucceeded || h.envView(t, "acme", "slow").Status != cp.StatusActive {
		t.Fatalf("after release: operation %s", op.Status)
	}

	// A rotation in flight blocks deletion and another rotation.
	g = newGate()
	g.armed.Store(true)
	type answer struct {
		status int
		body   string
		err    error
	}
	done := make(chan answer, 1)
	go func() {
		req, err := http.NewRequest("POST", h.srv.URL+env+"/credentials/rotate", strings.NewReader(`{"scope":"readonly"}`))
		if err != nil {
			done <- answer{err: err}
			return
		}
		req.Header.Set("Authorization", "Bearer "+h.admin)
		resp, err := h.srv.Client().Do(req)
		if err != nil {
			done <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		done <- answer{status: resp.StatusCode, body: string(raw), err: err}
	}()
	<-g.entered
	wantProblem(t, h.do(t, h.admin, "DELETE", env, nil), http.StatusConflict, cp.ECONFLICT, "")
	wantProblem(t, h.do(t, h.admin, "POST", env+"/credentials/rotate", map[string]any{"scope": "admin"}), http.StatusConflict, cp.ECONFLICT, "")
	wantProblem(t, h.do(t, h.admin, "POST", env+"/credentials/revoke", map[string]any{"reason": "x"}), http.StatusConflict, cp.ECONFLICT, "")
	close(g.release)
	if a := <-done; a.err != nil || a.status != http.StatusOK {
		t.Fatalf("the rotation in flight: %d %v %s", a.status, a.err, a.body)
	}
	if v := h.envView(t, "acme", "slow"); v.Status != cp.StatusActive {
		t.Fatalf("environment %s after the refused changes", v.Status)
	}
	h.must(t, http.StatusAccepted, h.admin, "DELETE", env, nil)
}
