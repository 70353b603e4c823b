package httpapi_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
)

// countActions counts the org's audit events with action.
func (h *harness) countActions(tb testing.TB, org, action string) int {
	tb.Helper()
	n := 0
	for _, a := range h.auditActions(tb, org) {
		if a == action {
			n++
		}
	}
	return n
}

// TestEnvironmentExpires: an environment created with a ttl shows its
// expiry; within 24 hours of it the view says expiring and Tick writes one
// `environment.expiring` event (not one per pass); past it, Tick
// deprovisions the environment with an `environment.expired` event, and
// the next Tick does nothing more.
func TestEnvironmentExpires(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	created := h.clock.Now()
	v := h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments",
		map[string]any{"slug": "pr-7", "type": "preview", "ttl": "72h"}).environment(t)
	if v.ExpiresAt == nil || !v.ExpiresAt.Equal(created.Add(72*time.Hour)) || v.Expiring {
		t.Fatalf("created with ttl 72h: expires_at %v expiring %v, want %v false", v.ExpiresAt, v.Expiring, created.Add(72*time.Hour))
	}
	ctx := context.Background()
	if r := h.svc.Tick(ctx); r.Expired != 0 || h.countActions(t, "acme", "environment.expiring") != 0 {
		t.Fatalf("three days early: tick %+v, %d expiring events", r, h.countActions(t, "acme", "environment.expiring"))
	}

	h.clock.Advance(49 * time.Hour)
	if v := h.envView(t, "acme", "pr-7"); !v.Expiring {
		t.Fatal("23h before expiry the environment is not shown expiring")
	}
	h.svc.Tick(ctx)
	h.svc.Tick(ctx)
	if n := h.countActions(t, "acme", "environment.expiring"); n != 1 {
		t.Fatalf("%d environment.expiring events after two passes, want 1", n)
	}
	if v := h.envView(t, "acme", "pr-7"); v.Status != cp.StatusActive {
		t.Fatalf("before expiry the environment is %s", v.Status)
	}

	h.clock.Advance(24 * time.Hour)
	if r := h.svc.Tick(ctx); r.Expired != 1 {
		t.Fatalf("tick after expiry: %+v, want one expired", r)
	}
	h.must(t, http.StatusNotFound, h.admin, "GET", "/v1/organizations/acme/environments/pr-7", nil)
	ev := h.auditEvent(t, "acme", "environment.expired")
	if ev == nil || ev.Actor != "system" || ev.Target != v.ID {
		t.Fatalf("expired event: %+v", ev)
	}
	var ops cp.List[*cp.Operation]
	h.must(t, http.StatusOK, h.admin, "GET", "/v1/organizations/acme/operations?kind=deprovision", nil).decode(t, &ops)
	if len(ops.Items) != 1 || ops.Items[0].Status != cp.OpSucceeded {
		t.Fatalf("deprovision operations: %+v", ops.Items)
	}
	if r := h.svc.Tick(ctx); r.Expired != 0 {
		t.Fatalf("tick after deprovisioning: %+v", r)
	}
}

// TestExpiryDefaultsAndProtection: a type's default ttl applies when the
// request gives none, but never to a protected environment; protecting an
// environment removes its expiry, so the pass leaves it; a PATCHed ttl
// replaces the expiry and earns a new notice.
func TestExpiryDefaultsAndProtection(t *testing.T) {
	h := newHarness(t)
	h.svc.EnvironmentTTL[cp.TypePreview] = 7 * 24 * time.Hour
	h.org(t, "acme")
	now := h.clock.Now()
	envs := "/v1/organizations/acme/environments"
	pr := h.must(t, http.StatusCreated, h.admin, "POST", envs, map[string]any{"slug": "pr-1", "type": "preview"}).environment(t)
	if pr.ExpiresAt == nil || !pr.ExpiresAt.Equal(now.Add(7*24*time.Hour)) {
		t.Fatalf("preview default expiry %v, want %v", pr.ExpiresAt, now.Add(7*24*time.Hour))
	}
	kept := h.must(t, http.StatusCreated, h.admin, "POST", envs, map[string]any{"slug": "pr-2", "type": "preview", "is_protected": true}).environment(t)
	dev := h.env(t, h.admin, "acme", "dev", "development")
	if kept.ExpiresAt != nil || dev.ExpiresAt != nil {
		t.Fatalf("protected preview expires %v, development %v; want neither", kept.ExpiresAt, dev.ExpiresAt)
	}
	h.must(t, http.StatusCreated, h.admin, "POST", envs, map[string]any{"slug": "pr-3", "type": "preview", "ttl": "1h"})
	h.svc.Tick(context.Background())

	var v cp.EnvironmentView
	h.must(t, http.StatusOK, h.admin, "PATCH", envs+"/pr-3", map[string]any{"is_protected": true}).decode(t, &v)
	if v.ExpiresAt != nil || v.Expiring {
		t.Fatalf("protected environment still expires at %v", v.ExpiresAt)
	}
	at := now.Add(30 * time.Hour).Truncate(time.Second)
	h.must(t, http.StatusOK, h.admin, "PATCH", envs+"/pr-1", map[string]any{"expires_at": at}).decode(t, &v)
	if v.ExpiresAt == nil || !v.ExpiresAt.Equal(at) {
		t.Fatalf("PATCHed expires_at %v, want %v", v.ExpiresAt, at)
	}

	h.clock.Advance(8 * time.Hour)
	h.svc.Tick(context.Background())
	h.must(t, http.StatusOK, h.admin, "PATCH", envs+"/pr-1", map[string]any{"ttl": "2h"})
	h.clock.Advance(3 * time.Hour)
	if r := h.svc.Tick(context.Background()); r.Expired != 1 {
		t.Fatalf("tick: %+v, want pr-1 expired", r)
	}
	h.must(t, http.StatusNotFound, h.admin, "GET", envs+"/pr-1", nil)
	for _, slug := range []string{"pr-2", "pr-3", "dev", "default"} {
		h.must(t, http.StatusOK, h.admin, "GET", envs+"/"+slug, nil)
	}
	// pr-3 noticed once at creation; pr-1 once for 30h from creation and
	// once for its new 2h expiry.
	if n := h.countActions(t, "acme", "environment.expiring"); n != 3 {
		t.Fatalf("%d expiring events, want 3", n)
	}
}

// TestExpiryBadInput: a ttl of zero, negative, beyond the maximum or not a
// duration, an expires_at in the past, both at once, and an expiry on a
// protected, default or production environment are 422 naming the field,
// on create and PATCH; hostile text in ttl too. Nothing changes.
func TestExpiryBadInput(t *testing.T) {
	bothStores(t, func(t *testing.T, h *harness) {
		h.org(t, "acme")
		h.env(t, h.admin, "acme", "pr", "preview")
		h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "safe", "type": "staging", "is_protected": true})
		before := h.storeRows(t)
		envs := "/v1/organizations/acme/environments"
		past := h.clock.Now().Add(-time.Minute)
		far := h.clock.Now().Add(91 * 24 * time.Hour)
		create := func(extra map[string]any) map[string]any {
			b := map[string]any{"slug": "qa", "type": "preview"}
			for k, v := range extra {
				b[k] = v
			}
			return b
		}
		tests := []struct {
			name, method, path string
			body               any
			field              string
		}{
			{"zero ttl", "POST", envs, create(map[string]any{"ttl": "0s"}), "ttl"},
			{"negative ttl", "POST", envs, create(map[string]any{"ttl": "-1h"}), "ttl"},
			{"ttl beyond the maximum", "POST", envs, create(map[string]any{"ttl": "2161h"}), "ttl"},
			{"ttl not a duration", "POST", envs, create(map[string]any{"ttl": "3 days"}), "ttl"},
			{"ttl and expires_at", "POST", envs, create(map[string]any{"ttl": "1h", "expires_at": far}), "ttl"},
			{"expires_at in the past", "POST", envs, create(map[string]any{"expires_at": past}), "expires_at"},
			{"expires_at not a time", "POST", envs, create(map[string]any{"expires_at": "tomorrow"}), "expires_at"},
			{"expires_at beyond the maximum", "POST", envs, create(map[string]any{"expires_at": far}), "expires_at"},
			{"production with ttl", "POST", envs, map[string]any{"slug": "qa", "type": "production", "ttl": "1h"}, "ttl"},
			{"protected with expires_at", "POST", envs, create(map[string]any{"is_protected": true, "expires_at": far.Add(-48 * time.Hour)}), "expires_at"},
			{"NUL in ttl", "POST", envs, create(map[string]any{"ttl": "1h\x00"}), "ttl"},
			{"invalid UTF-8 in ttl", "POST", envs, "{\"slug\":\"qa\",\"type\":\"preview\",\"ttl\":\"1\xffh\"}", "ttl"},
			{"PATCH zero ttl", "PATCH", envs + "/pr", map[string]any{"ttl": "0h"}, "ttl"},
			{"PATCH negative ttl", "PATCH", envs + "/pr", map[string]any{"ttl": "-5m"}, "ttl"},
			{"PATCH ttl beyond the maximum", "PATCH", envs + "/pr", map[string]any{"ttl": "100000h"}, "ttl"},
			{"PATCH past expires_at", "PATCH", envs + "/pr", map[string]any{"expires_at": past}, "expires_at"},
			{"PATCH both", "PATCH", envs + "/pr", map[string]any{"ttl": "1h", "expires_at": far}, "ttl"},
			{"PATCH default", "PATCH", envs + "/default", map[string]any{"ttl": "1h"}, "ttl"},
			{"PATCH protected", "PATCH", envs + "/safe", map[string]any{"ttl": "1h"}, "ttl"},
			{"PATCH protect and expire", "PATCH", envs + "/pr", map[string]any{"is_protected": true, "ttl": "1h"}, "ttl"},
			{"PATCH NUL in ttl", "PATCH", envs + "/pr", map[string]any{"ttl": "\x00"}, "ttl"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				wantProblem(t, h.do(t, h.admin, tc.method, tc.path, tc.body), http.StatusUnprocessableEntity, cp.EINVALID, tc.field)
			})
		}
		h.unchanged(t, before)
	})
}

// TestExpiryAcrossReplicas: two replicas over one PostgreSQL store run the
// pass at once; the expiring notice is written once and the environment
// deprovisioned once.
func TestExpiryAcrossReplicas(t *testing.T) {
	clk := newClock()
	a := newHarness(t, withPostgresStore(), withClock(clk))
	b := newHarness(t, asReplicaOf(a), withClock(clk))
	a.org(t, "acme")
	for _, slug := range []string{"pr-1", "pr-2", "pr-3"} {
		a.must(t, http.StatusCreated, a.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": slug, "type": "preview", "ttl": "2h"})
	}
	clk.Advance(3 * time.Hour)
	var wg sync.WaitGroup
	reports := make([]cp.TickReport, 2)
	for i, h := range []*harness{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reports[i] = h.svc.Tick(context.Background())
		}()
	}
	wg.Wait()
	if got := reports[0].Expired + reports[1].Expired; got != 3 {
		t.Fatalf("replicas expired %d + %d environments, want 3 in all", reports[0].Expired, reports[1].Expired)
	}
	for _, action := range []string{"environment.expiring", "environment.expired"} {
		if n := a.countActions(t, "acme", action); n != 3 {
			t.Fatalf("%d %s events, want 3", n, action)
		}
	}
	var ops cp.List[*cp.Operation]
	a.must(t, http.StatusOK, a.admin, "GET", "/v1/organizations/acme/operations?kind=deprovision", nil).decode(t, &ops)
	if len(ops.Items) != 3 {
		t.Fatalf("%d deprovision operations, want 3", len(ops.Items))
	}
}
