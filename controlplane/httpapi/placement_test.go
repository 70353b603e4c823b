package httpapi_test

import (
	"net/http"
	"path/filepath"
	"testing"

	cp "github.com/envplane/envplane/controlplane"
	sqlitedriver "github.com/envplane/envplane/drivers/sqlite"
)

// TestPlacement: a database goes to the requested target, else to the
// default when it serves the region and has room, else to the first target
// of the region with room; a full target is skipped; no room anywhere is 503;
// an unknown region is 422 naming the field.
func TestPlacement(t *testing.T) {
	target := func(name, region string, capacity int) *cp.Target {
		d, err := sqlitedriver.New(sqlitedriver.Config{Dir: filepath.Join(t.TempDir(), name)})
		if err != nil {
			t.Fatal(err)
		}
		return &cp.Target{Name: name, Region: region, Driver: d, Capacity: capacity}
	}
	// "local" (region local, no limit) is the default; two EU targets of one database each.
	h := newHarness(t, withTargets(target("eu-b", "eu", 1), target("eu-a", "eu", 1)))
	h.org(t, "acme")
	place := func(slug string, body map[string]any) (int, string) {
		body["slug"], body["type"] = slug, "development"
		r := h.do(t, h.admin, "POST", "/v1/organizations/acme/environments", body)
		if r.status != http.StatusCreated {
			return r.status, ""
		}
		return r.status, r.environment(t).Target
	}
	if _, got := place("plain", map[string]any{}); got != "local" {
		t.Errorf("no region, no target: placed on %q, want the default", got)
	}
	if _, got := place("eu1", map[string]any{"region": "eu"}); got != "eu-a" {
		t.Errorf("region eu: placed on %q, want eu-a (first by name)", got)
	}
	if _, got := place("eu2", map[string]any{"region": "eu"}); got != "eu-b" {
		t.Errorf("region eu with eu-a full: placed on %q, want eu-b", got)
	}
	if status, _ := place("eu3", map[string]any{"region": "eu"}); status != http.StatusServiceUnavailable {
		t.Errorf("region eu with every target full: %d, want 503", status)
	}
	if status, _ := place("named", map[string]any{"target": "eu-a"}); status != http.StatusServiceUnavailable {
		t.Errorf("a full target named explicitly: %d, want 503", status)
	}
	r := h.do(t, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "mars", "type": "development", "region": "mars"})
	if p := r.problem(t); r.status != http.StatusUnprocessableEntity || len(p.Errors) != 1 || p.Errors[0].Field != "region" {
		t.Errorf("unknown region: %d %s", r.status, r.body)
	}
	// Deleting an environment frees its place.
	h.must(t, http.StatusAccepted, h.admin, "DELETE", "/v1/organizations/acme/environments/eu1", nil)
	h.svc.Wait()
	if _, got := place("eu4", map[string]any{"region": "eu"}); got != "eu-a" {
		t.Errorf("after deleting eu1: placed on %q, want eu-a again", got)
	}
}
