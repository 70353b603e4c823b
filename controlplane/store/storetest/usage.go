package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
)

func testUsage(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a, b := newOrg(t, s, "a"), newOrg(t, s, "b")
	dev := newDatabase(t, s, newEnv(t, s, a, "dev"), "t1")
	stagingEnv := &controlplane.Environment{ID: newID("env_"), OrgID: a.ID, Slug: "staging", Name: "Staging",
		Type: controlplane.TypeStaging, Status: controlplane.StatusSuspended, CreatedAt: at(0), UpdatedAt: at(0)}
	must(t, s.CreateEnvironment(ctx, stagingEnv))
	staging := newDatabase(t, s, stagingEnv, "t1")
	provisioning := &controlplane.Environment{ID: newID("env_"), OrgID: a.ID, Slug: "new", Name: "New",
		Type: controlplane.TypeDevelopment, Status: controlplane.StatusProvisioning, CreatedAt: at(0), UpdatedAt: at(0)}
	must(t, s.CreateEnvironment(ctx, provisioning))
	newDatabase(t, s, provisioning, "t1")
	newDatabase(t, s, newEnv(t, s, a, "elsewhere"), "t2")
	gone := newEnv(t, s, a, "gone")
	newDatabase(t, s, gone, "t1")
	deleteEnv(t, s, gone)
	other := newDatabase(t, s, newEnv(t, s, b, "dev"), "t1")

	// Claims take what is due on the named targets, of active and
	// suspended environments only, and make it due again at until.
	claimed, err := s.ClaimUsageDue(ctx, at(0), at(time.Hour), []string{"t1"}, 10)
	must(t, err)
	same(t, "claimed databases", sortedIDs(dev.ID, staging.ID, other.ID), ids(claimed, dbID))
	claimed, err = s.ClaimUsageDue(ctx, at(time.Minute), at(time.Hour), []string{"t1"}, 10)
	must(t, err)
	same(t, "claimed before due", []string{}, ids(claimed, dbID))
	claimed, err = s.ClaimUsageDue(ctx, at(time.Hour), at(2*time.Hour), []string{"t1"}, 1)
	must(t, err)
	same(t, "claims up to the limit", 1, len(claimed))
	claimed, err = s.ClaimUsageDue(ctx, at(time.Hour), at(2*time.Hour), nil, 10)
	must(t, err)
	same(t, "claims of no target", []string{}, ids(claimed, dbID))

	// A measurement reads back as written; an unmeasured database has none.
	got, err := s.GetDatabase(ctx, staging.ID)
	must(t, err)
	same(t, "unmeasured usage", (*controlplane.Usage)(nil), got.Usage)
	u := &controlplane.Usage{SizeBytes: 3 << 20, Tables: ptr(int64(4)), MeasuredAt: at(time.Second)}
	must(t, s.RecordUsage(ctx, dev.ID, u))
	same(t, "measured at, truncated", us(at(time.Second)).UTC(), u.MeasuredAt)
	must(t, s.RecordUsage(ctx, staging.ID, &controlplane.Usage{SizeBytes: 1 << 20, Tables: ptr(int64(1)), Connections: ptr(int64(2)), MeasuredAt: at(time.Second)}))
	got, err = s.GetEnvironmentDatabase(ctx, dev.EnvironmentID)
	must(t, err)
	same(t, "usage", u, got.Usage)
	wantCode(t, s.RecordUsage(ctx, newID("db_"), u), controlplane.ENOTFOUND)

	// The over-limit flag changes once per transition.
	must(t, s.SetOverLimit(ctx, dev.ID, true))
	wantCode(t, s.SetOverLimit(ctx, dev.ID, true), controlplane.ECONFLICT)
	got, err = s.GetDatabase(ctx, dev.ID)
	must(t, err)
	same(t, "over limit", true, got.OverLimit)
	wantCode(t, s.SetOverLimit(ctx, newID("db_"), true), controlplane.ENOTFOUND)

	// Sums per type over live environments, optionally restricted.
	totals, err := s.SumUsage(ctx, a.ID, nil)
	must(t, err)
	same(t, "totals", []*controlplane.UsageTotal{
		{Type: controlplane.TypeDevelopment, Environments: 3, Measured: 1, SizeBytes: 3 << 20, Tables: 4, OverLimit: 1},
		{Type: controlplane.TypeStaging, Environments: 1, Measured: 1, SizeBytes: 1 << 20, Tables: 1},
	}, totals)
	totals, err = s.SumUsage(ctx, a.ID, []string{stagingEnv.ID})
	must(t, err)
	same(t, "restricted totals", []*controlplane.UsageTotal{
		{Type: controlplane.TypeStaging, Environments: 1, Measured: 1, SizeBytes: 1 << 20, Tables: 1},
	}, totals)
	totals, err = s.SumUsage(ctx, a.ID, []string{})
	must(t, err)
	same(t, "totals of no environment", []*controlplane.UsageTotal{}, totals)
	byOrg, err := s.SumUsageByOrg(ctx)
	must(t, err)
	same(t, "totals by organization", []*controlplane.OrgUsageTotal{
		{OrgSlug: "a", SizeBytes: 4 << 20, OverLimit: 1},
		{OrgSlug: "b"},
	}, byOrg)

	must(t, s.SetOverLimit(ctx, dev.ID, false))

	// A new limit is saved and makes the database due at once.
	must(t, s.SetStorageLimit(ctx, other.ID, 100, at(time.Hour)))
	got, err = s.GetDatabase(ctx, other.ID)
	must(t, err)
	same(t, "storage limit", 100, got.StorageLimitMB)
	claimed, err = s.ClaimUsageDue(ctx, at(time.Hour), at(3*time.Hour), []string{"t1"}, 10)
	must(t, err)
	if len(claimed) == 0 || !containsID(claimed, other.ID) {
		t.Fatalf("a database whose limit changed is not claimed: %v", ids(claimed, dbID))
	}
	wantCode(t, s.SetStorageLimit(ctx, newID("db_"), 1, at(0)), controlplane.ENOTFOUND)
}

func dbID(d *controlplane.Database) string { return d.ID }

func containsID(dbs []*controlplane.Database, id string) bool {
	for _, d := range dbs {
		if d.ID == id {
			return true
		}
	}
	return false
}

// Concurrent claimers share the due databases: each is claimed once.
func testClaimUsageConcurrently(t *testing.T, s controlplane.Store) {
	const databases, claimers = 40, 4
	ctx := t.Context()
	org := newOrg(t, s, "a")
	for i := range databases {
		newDatabase(t, s, newEnv(t, s, org, fmt.Sprintf("dev%d", i)), "t1")
	}
	var mu sync.Mutex
	claims := map[string]int{}
	errs := make(chan error, claimers)
	var wg sync.WaitGroup
	for range claimers {
		wg.Go(func() {
			for {
				dbs, err := s.ClaimUsageDue(ctx, at(0), at(time.Hour), []string{"t1"}, 3)
				if err != nil {
					errs <- err
					return
				}
				if len(dbs) == 0 {
					return
				}
				mu.Lock()
				for _, d := range dbs {
					claims[d.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("ClaimUsageDue: %v", err)
	}
	if len(claims) != databases {
		t.Errorf("%d databases claimed, want all %d", len(claims), databases)
	}
	for id, n := range claims {
		if n != 1 {
			t.Errorf("database %s claimed %d times, want once", id, n)
		}
	}
}
