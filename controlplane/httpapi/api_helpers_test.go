package httpapi_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/drivers"
)

// shown returns the body for a failure message: an error answer is a
// problem, which never carries a secret; a success may (a token, a
// connection), so it is withheld.
func (r response) shown() string {
	if r.status >= 400 {
		return string(r.body)
	}
	return "[success body withheld]"
}

// wantProblem fails the test unless r is a problem+json answer with status
// and code and, when field is not empty, names field among its errors.
func wantProblem(tb testing.TB, r response, status int, code, field string) {
	tb.Helper()
	if r.status != status {
		tb.Fatalf("status %d, want %d: %s", r.status, status, r.shown())
	}
	p := r.problem(tb)
	if p.Status != status || p.Code != code {
		tb.Fatalf("problem status %d code %q, want %d %q: %s", p.Status, p.Code, status, code, r.shown())
	}
	if field == "" {
		return
	}
	for _, f := range p.Errors {
		if f.Field == field {
			return
		}
	}
	tb.Fatalf("problem does not name field %q: %s", field, r.shown())
}

// fault is what a faultDriver does to one call: fail it with err, either
// before the real driver runs or, with late, after it ran (a reply lost on
// the way back).
type fault struct {
	err  error
	late bool
}

// faultDriver wraps the real SQLite driver and injects failures into
// CreateDatabase, IssueCredential and DropDatabase; every other method is the
// real one.
type faultDriver struct {
	drivers.Driver
	// inject decides the fault for the nth call (from 1) of a method.
	inject func(method string, n int) fault

	mu    sync.Mutex
	calls map[string]int
}

// decide counts the call and asks inject what to do with it; inject runs
// outside the lock, so it may block.
func (f *faultDriver) decide(method string) fault {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[method]++
	n := f.calls[method]
	f.mu.Unlock()
	if f.inject == nil {
		return fault{}
	}
	return f.inject(method, n)
}

// count returns how many times method was called.
func (f *faultDriver) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func (f *faultDriver) CreateDatabase(ctx context.Context, req drivers.CreateDatabaseRequest) (drivers.CreateDatabaseResponse, error) {
	ft := f.decide("CreateDatabase")
	if ft.err != nil && !ft.late {
		return drivers.CreateDatabaseResponse{}, ft.err
	}
	resp, err := f.Driver.CreateDatabase(ctx, req)
	if ft.err != nil {
		return drivers.CreateDatabaseResponse{}, ft.err
	}
	return resp, err
}

func (f *faultDriver) IssueCredential(ctx context.Context, req drivers.IssueCredentialRequest) (drivers.IssueCredentialResponse, error) {
	ft := f.decide("IssueCredential")
	if ft.err != nil && !ft.late {
		return drivers.IssueCredentialResponse{}, ft.err
	}
	resp, err := f.Driver.IssueCredential(ctx, req)
	if ft.err != nil {
		return drivers.IssueCredentialResponse{}, ft.err
	}
	return resp, err
}

func (f *faultDriver) DropDatabase(ctx context.Context, req drivers.DropDatabaseRequest) (drivers.DropDatabaseResponse, error) {
	ft := f.decide("DropDatabase")
	if ft.err != nil && !ft.late {
		return drivers.DropDatabaseResponse{}, ft.err
	}
	resp, err := f.Driver.DropDatabase(ctx, req)
	if ft.err != nil {
		return drivers.DropDatabaseResponse{}, ft.err
	}
	return resp, err
}

// newFaultHarness returns a harness whose target driver is a faultDriver
// using inject (nil injects nothing), and that driver.
func newFaultHarness(tb testing.TB, inject func(method string, n int) fault) (*harness, *faultDriver) {
	tb.Helper()
	fd := &faultDriver{inject: inject}
	h := newHarness(tb, withDriver(func(d drivers.Driver) drivers.Driver {
		fd.Driver = d
		return fd
	}))
	return h, fd
}

// databaseFiles lists the files of the named database in the SQLite target's
// directory (the database, its journals, its credential registry).
func (h *harness) databaseFiles(tb testing.TB, name string) []string {
	tb.Helper()
	if name == "" {
		tb.Fatal("no database name")
	}
	matches, err := filepath.Glob(filepath.Join(h.dataDir, "databases", name+"*"))
	if err != nil {
		tb.Fatalf("glob: %v", err)
	}
	return matches
}

// envView reads an environment through the API as the platform admin.
func (h *harness) envView(tb testing.TB, org, env string) cp.EnvironmentView {
	tb.Helper()
	var v cp.EnvironmentView
	h.must(tb, http.StatusOK, h.admin, "GET", "/v1/organizations/"+org+"/environments/"+env, nil).decode(tb, &v)
	return v
}

// storedEnvironment reads an environment straight from the store, deleted or
// not, for states the API no longer shows.
func (h *harness) storedEnvironment(tb testing.TB, orgID, envID string) *cp.Environment {
	tb.Helper()
	envs, _, err := h.svc.Store.ListEnvironments(cp.WithPlatformScope(context.Background()), cp.EnvironmentFilter{OrgID: orgID, IDs: []string{envID}, IncludeDeleted: true}, cp.Page{Limit: 1})
	if err != nil || len(envs) != 1 {
		tb.Fatalf("environment %s in the store: %d found, err %v", envID, len(envs), err)
	}
	return envs[0]
}

// credentials returns the environment's credentials straight from the
// store, newest first, restricted to statuses when any are given.
func (h *harness) credentials(tb testing.TB, envID string, statuses ...cp.CredentialStatus) []*cp.Credential {
	tb.Helper()
	ctx := context.Background()
	db, err := h.svc.Store.GetEnvironmentDatabase(cp.WithPlatformScope(ctx), envID)
	if err != nil {
		tb.Fatalf("database of %s: %v", envID, err)
	}
	cs, err := h.svc.Store.ListCredentials(cp.WithPlatformScope(ctx), cp.CredentialFilter{DatabaseID: db.ID, Statuses: statuses})
	if err != nil {
		tb.Fatalf("credentials of %s: %v", envID, err)
	}
	return cs
}

// liveCredentials returns the environment's active and rotating credentials.
func (h *harness) liveCredentials(tb testing.TB, envID string) []*cp.Credential {
	tb.Helper()
	return h.credentials(tb, envID, cp.CredentialActive, cp.CredentialRotating)
}

// auditActions returns the actions of the org's audit events, newest first.
func (h *harness) auditActions(tb testing.TB, org string) []string {
	tb.Helper()
	var events cp.List[*cp.AuditEvent]
	h.must(tb, http.StatusOK, h.admin, "GET", "/v1/organizations/"+org+"/audit-events?limit=500", nil).decode(tb, &events)
	out := make([]string, len(events.Items))
	for i, e := range events.Items {
		out[i] = e.Action
	}
	return out
}

// auditEvent returns the newest audit event of the org with action, or nil.
func (h *harness) auditEvent(tb testing.TB, org, action string) *cp.AuditEvent {
	tb.Helper()
	var events cp.List[*cp.AuditEvent]
	h.must(tb, http.StatusOK, h.admin, "GET", "/v1/organizations/"+org+"/audit-events?limit=500", nil).decode(tb, &events)
	for _, e := range events.Items {
		if e.Action == action {
			return e
		}
	}
	return nil
}

// fileExists reports whether path exists.
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
