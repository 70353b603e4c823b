package storetest

import (
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
)

// testEnvironmentExpiry: expires_at and expiry_noticed_at round-trip through
// create and update; the expiring list reads across organizations what is
// due, soonest first, never protected, default, production, deleting or
// deleted environments; and an expiry is noticed once.
func testEnvironmentExpiry(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a, b := newOrg(t, s, "a"), newOrg(t, s, "b")
	expiring := func(org *controlplane.Organization, slug string, typ controlplane.EnvironmentType, in time.Duration) *controlplane.Environment {
		t.Helper()
		e := &controlplane.Environment{ID: newID("env_"), OrgID: org.ID, Slug: slug, Name: slug, Type: typ,
			Status: controlplane.StatusActive, CreatedAt: at(0), UpdatedAt: at(0), ExpiresAt: ptr(at(in))}
		must(t, s.CreateEnvironment(ctx, e))
		return e
	}
	late := expiring(a, "late", controlplane.TypePreview, 3*time.Hour)
	soon := expiring(b, "soon", controlplane.TypeTrial, time.Hour)
	later := expiring(a, "later", controlplane.TypePreview, 48*time.Hour)
	newEnv(t, s, a, "forever")
	prot := expiring(a, "prot", controlplane.TypePreview, time.Hour)
	prot.IsProtected = true
	must(t, s.UpdateEnvironment(ctx, prot))
	expiring(b, "prod", controlplane.TypeProduction, time.Hour)
	deleting := expiring(a, "deleting", controlplane.TypePreview, time.Hour)
	deleting.Status = controlplane.StatusDeleting
	must(t, s.SetEnvironmentStatus(ctx, deleting))
	gone := expiring(b, "gone", controlplane.TypePreview, time.Hour)
	deleteEnv(t, s, gone)

	got, err := s.GetEnvironment(ctx, a.ID, late.ID)
	must(t, err)
	same(t, "environment with expiry", late, got)

	list := func(before time.Duration, unnoticed bool) []string {
		t.Helper()
		envs, err := s.ListEnvironmentsExpiring(ctx, at(before), unnoticed, 10)
		must(t, err)
		return ids(envs, envID)
	}
	same(t, "expiring within 4h", []string{soon.ID, late.ID}, list(4*time.Hour, false))
	same(t, "expiring within 4h, limit 1", []string{soon.ID}, func() []string {
		envs, err := s.ListEnvironmentsExpiring(ctx, at(4*time.Hour), false, 1)
		must(t, err)
		return ids(envs, envID)
	}())
	same(t, "expiring within 1h", []string{soon.ID}, list(time.Hour, true))
	same(t, "expiring within 30m", []string{}, list(30*time.Minute, false))

	// One notice per expiry: the second caller, and a caller with a stale
	// expiry, get false.
	ok, err := s.NoticeEnvironmentExpiry(ctx, b.ID, soon.ID, *soon.ExpiresAt, at(time.Minute))
	must(t, err)
	if !ok {
		t.Fatal("first notice of an expiry reported false")
	}
	ok, err = s.NoticeEnvironmentExpiry(ctx, b.ID, soon.ID, *soon.ExpiresAt, at(2*time.Minute))
	must(t, err)
	if ok {
		t.Error("second notice of the same expiry reported true")
	}
	ok, err = s.NoticeEnvironmentExpiry(ctx, a.ID, late.ID, at(time.Hour), at(time.Minute))
	must(t, err)
	if ok {
		t.Error("notice with a stale expiry reported true")
	}
	ok, err = s.NoticeEnvironmentExpiry(ctx, a.ID, soon.ID, *soon.ExpiresAt, at(time.Minute))
	must(t, err)
	if ok {
		t.Error("notice through another organization reported true")
	}
	same(t, "unnoticed within 4h", []string{late.ID}, list(4*time.Hour, true))
	same(t, "all within 4h", []string{soon.ID, late.ID}, list(4*time.Hour, false))
	got, err = s.GetEnvironment(ctx, b.ID, soon.ID)
	must(t, err)
	same(t, "noticed at", ptr(at(time.Minute).UTC().Truncate(time.Microsecond)), got.ExpiryNoticedAt)

	// Update saves a new expiry and clears the notice; a nil expiry leaves
	// the environment out of every list.
	got.ExpiresAt, got.ExpiryNoticedAt, got.UpdatedAt = ptr(at(72*time.Hour)), nil, at(time.Hour)
	must(t, s.UpdateEnvironment(ctx, got))
	again, err := s.GetEnvironment(ctx, b.ID, soon.ID)
	must(t, err)
	same(t, "re-expired environment", got, again)
	late.ExpiresAt = nil
	must(t, s.UpdateEnvironment(ctx, late))
	same(t, "expiring within 100h", []string{later.ID, soon.ID}, list(100*time.Hour, false))
}
