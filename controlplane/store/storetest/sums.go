package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
)

// testSumsFollowEveryChange checks the per-organization usage sums and the
// per-target database counts (kept as rows change, not recomputed) through
// every change that moves them: a database made, measured, over its limit,
// its environment deleted and restored, a rolled-back transaction, the
// organization deleted.
func testSumsFollowEveryChange(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	want := func(step string, byOrg []*controlplane.OrgUsageTotal, byTarget map[string]int) {
		t.Helper()
		got, err := s.SumUsageByOrg(ctx)
		must(t, err)
		if byOrg == nil {
			byOrg = []*controlplane.OrgUsageTotal{}
		}
		same(t, step+": usage by organization", byOrg, got)
		counts, err := s.CountDatabasesByTarget(ctx)
		must(t, err)
		same(t, step+": databases by target", byTarget, counts)
	}
	a, b := newOrg(t, s, "a"), newOrg(t, s, "b")
	want("empty", nil, map[string]int{})

	e1, e2, e3 := newEnv(t, s, a, "one"), newEnv(t, s, a, "two"), newEnv(t, s, b, "three")
	d1, d2, d3 := newDatabase(t, s, e1, "t1"), newDatabase(t, s, e2, "t2"), newDatabase(t, s, e3, "t1")
	want("made", []*controlplane.OrgUsageTotal{{OrgSlug: "a"}, {OrgSlug: "b"}}, map[string]int{"t1": 2, "t2": 1})

	must(t, s.RecordUsage(ctx, d1.ID, &controlplane.Usage{SizeBytes: 5 << 20, MeasuredAt: at(0)}))
	must(t, s.RecordUsage(ctx, d2.ID, &controlplane.Usage{SizeBytes: 1 << 20, MeasuredAt: at(0)}))
	must(t, s.RecordUsage(ctx, d3.ID, &controlplane.Usage{SizeBytes: 2 << 20, MeasuredAt: at(0)}))
	must(t, s.RecordUsage(ctx, d1.ID, &controlplane.Usage{SizeBytes: 3 << 20, MeasuredAt: at(1)}))
	must(t, s.SetOverLimit(ctx, d2.ID, true))
	want("measured", []*controlplane.OrgUsageTotal{{OrgSlug: "a", SizeBytes: 4 << 20, OverLimit: 1}, {OrgSlug: "b", SizeBytes: 2 << 20}},
		map[string]int{"t1": 2, "t2": 1})

	// A rolled-back measurement leaves the sums as they were.
	err := s.WithTx(ctx, func(q controlplane.Queries) error {
		must(t, q.RecordUsage(ctx, d3.ID, &controlplane.Usage{SizeBytes: 9 << 20, MeasuredAt: at(2)}))
		return controlplane.Errorf(controlplane.ECONFLICT, "roll back")
	})
	wantCode(t, err, controlplane.ECONFLICT)
	want("rolled back", []*controlplane.OrgUsageTotal{{OrgSlug: "a", SizeBytes: 4 << 20, OverLimit: 1}, {OrgSlug: "b", SizeBytes: 2 << 20}},
		map[string]int{"t1": 2, "t2": 1})

	// A deleted environment counts no more, and a measurement of its
	// database while deleted does not count either.
	deleteEnv(t, s, e2)
	must(t, s.RecordUsage(ctx, d2.ID, &controlplane.Usage{SizeBytes: 7 << 20, MeasuredAt: at(3)}))
	want("deleted", []*controlplane.OrgUsageTotal{{OrgSlug: "a", SizeBytes: 3 << 20}, {OrgSlug: "b", SizeBytes: 2 << 20}},
		map[string]int{"t1": 2})

	// Restored, it counts with what it holds now.
	e2.Status, e2.DeletedAt = controlplane.StatusActive, nil
	must(t, s.SetEnvironmentStatus(ctx, e2))
	want("restored", []*controlplane.OrgUsageTotal{{OrgSlug: "a", SizeBytes: 10 << 20, OverLimit: 1}, {OrgSlug: "b", SizeBytes: 2 << 20}},
		map[string]int{"t1": 2, "t2": 1})
	must(t, s.SetOverLimit(ctx, d2.ID, false))

	// An organization whose environments are all deleted is not listed.
	deleteEnv(t, s, e3)
	want("b emptied", []*controlplane.OrgUsageTotal{{OrgSlug: "a", SizeBytes: 10 << 20}}, map[string]int{"t1": 1, "t2": 1})

	must(t, s.DeleteOrganization(ctx, a.ID))
	want("a deleted", nil, map[string]int{})
	must(t, s.DeleteOrganization(ctx, b.ID))
	want("all deleted", nil, map[string]int{})
}

// testUsageClaimsSkipDeletedEnvironments: a database whose environment is
// deleted or failed is never claimed for measurement; once the environment
// is live again, its database is due at once.
func testUsageClaimsSkipDeletedEnvironments(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a := newOrg(t, s, "a")
	live, gone, failed := newEnv(t, s, a, "live"), newEnv(t, s, a, "gone"), newEnv(t, s, a, "failed")
	dl, dg := newDatabase(t, s, live, "t1"), newDatabase(t, s, gone, "t1")
	newDatabase(t, s, failed, "t1")
	deleteEnv(t, s, gone)
	failed.Status, failed.Error = controlplane.StatusFailed, "target refused"
	must(t, s.SetEnvironmentStatus(ctx, failed))
	claimed, err := s.ClaimUsageDue(ctx, at(0), at(time.Minute), []string{"t1"}, 10)
	must(t, err)
	same(t, "claimed", []string{dl.ID}, ids(claimed, dbID))

	gone.Status, gone.DeletedAt = controlplane.StatusActive, nil
	must(t, s.SetEnvironmentStatus(ctx, gone))
	claimed, err = s.ClaimUsageDue(ctx, at(0), at(time.Minute), []string{"t1"}, 10)
	must(t, err)
	same(t, "claimed once restored", []string{dg.ID}, ids(claimed, dbID))
}

// testListEnvironmentDatabases: the databases of the named environments,
// each as GetEnvironmentDatabase reads it; environments without one, and
// other environments, are left out.
func testListEnvironmentDatabases(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a := newOrg(t, s, "a")
	e1, e2, e3, bare := newEnv(t, s, a, "one"), newEnv(t, s, a, "two"), newEnv(t, s, a, "three"), newEnv(t, s, a, "bare")
	d1, d2 := newDatabase(t, s, e1, "t1"), newDatabase(t, s, e2, "t2")
	newDatabase(t, s, e3, "t1")
	must(t, s.RecordUsage(ctx, d2.ID, &controlplane.Usage{SizeBytes: 1 << 20, MeasuredAt: at(0)}))
	got, err := s.ListEnvironmentDatabases(ctx, []string{e1.ID, e2.ID, bare.ID})
	must(t, err)
	want := []string{d1.ID, d2.ID}
	slices.Sort(want)
	same(t, "databases", want, sortedDatabaseIDs(got))
	for _, d := range got {
		one, err := s.GetEnvironmentDatabase(ctx, d.EnvironmentID)
		must(t, err)
		same(t, "listed database", one, d)
	}
	got, err = s.ListEnvironmentDatabases(ctx, nil)
	must(t, err)
	same(t, "databases of no environment", 0, len(got))
}

// sortedDatabaseIDs returns the databases' ids, sorted.
func sortedDatabaseIDs(dbs []*controlplane.Database) []string {
	out := make([]string, len(dbs))
	for i, d := range dbs {
		out[i] = d.ID
	}
	slices.Sort(out)
	return out
}
