package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
)

// newRollout returns an unsaved running rollout of org (nil: platform-wide)
// leased to owner until lease after at(0), and one pending item per env.
func newRollout(org *controlplane.Organization, owner string, lease time.Duration, envs ...*controlplane.Environment) (*controlplane.Rollout, []*controlplane.RolloutItem) {
	r := &controlplane.Rollout{ID: newID("ro_"), Version: 3, Waves: [][]controlplane.EnvironmentType{{controlplane.TypeDevelopment}, {controlplane.TypeProduction}},
		Parallelism: 2, Canary: 1, OnError: controlplane.OnErrorHalt, PauseSeconds: 5, Status: controlplane.RolloutRunning,
		CreatedBy: "operator", CreatedAt: at(0), UpdatedAt: at(0), NextAt: at(0), LeaseOwner: owner, LeaseExpiresAt: ptr(at(lease))}
	if org != nil {
		r.OrgID = org.ID
	}
	items := make([]*controlplane.RolloutItem, len(envs))
	for i, e := range envs {
		items[i] = &controlplane.RolloutItem{RolloutID: r.ID, EnvironmentID: e.ID, OrgID: e.OrgID, Environment: e.Slug, Type: e.Type,
			Phase: min(i, 1), Position: i, Status: controlplane.ItemPending, UpdatedAt: at(0)}
	}
	return r, items
}

// testRollouts: a rollout and its items round-trip; one unfinished rollout
// per organization (and a platform-wide one blocks every organization's);
// another organization never sees it; status changes are guarded by the
// expected status, lease writes by the lease; paused rollouts are never
// claimed and cancelled ones are claimed before their next_at.
func testRollouts(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a, b := newOrg(t, s, "a"), newOrg(t, s, "b")
	e1, e2 := newEnv(t, s, a, "one"), newEnv(t, s, a, "two")
	r, items := newRollout(a, "me", time.Minute, e1, e2)
	must(t, s.CreateRollout(ctx, r, items))

	got, err := s.GetRollout(ctx, a.ID, r.ID)
	must(t, err)
	same(t, "rollout", r, got)
	_, err = s.GetRollout(ctx, b.ID, r.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
	_, err = s.GetRollout(ctx, "", r.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
	gotItems, err := s.ListRolloutItems(ctx, r.ID)
	must(t, err)
	same(t, "items", items, gotItems)

	busy := func(orgID string) bool {
		t.Helper()
		ok, err := s.HasUnfinishedRollout(ctx, orgID)
		must(t, err)
		return ok
	}
	if !busy(a.ID) || busy(b.ID) || !busy("") {
		t.Fatal("HasUnfinishedRollout does not see the organization's rollout alone")
	}
	second, _ := newRollout(a, "me", time.Minute)
	wantCode(t, s.CreateRollout(ctx, second, nil), controlplane.ECONFLICT)
	other, _ := newRollout(b, "me", time.Minute)
	must(t, s.CreateRollout(ctx, other, nil))

	items[0].Status, items[0].Reason, items[0].OperationID, items[0].SchemaVersion, items[0].UpdatedAt =
		controlplane.ItemFailed, "migrate: app/0002_x.sql failed", "op_1", 2, at(time.Second)
	must(t, s.UpdateRolloutItem(ctx, items[0]))
	gotItems, err = s.ListRolloutItems(ctx, r.ID)
	must(t, err)
	same(t, "updated items", items, gotItems)

	// Leases: held until at(1m); another owner claims only after it.
	claimed, err := s.ClaimRollouts(ctx, "other", at(30*time.Second), at(time.Hour), 10)
	must(t, err)
	same(t, "claimed under a live lease", []string{}, ids(claimed, rolloutID))
	r.Phase, r.NextAt, r.LeaseExpiresAt, r.UpdatedAt = 1, at(10*time.Minute), ptr(at(2*time.Minute)), at(time.Second)
	must(t, s.UpdateRolloutLease(ctx, r))
	must(t, s.RenewRolloutLease(ctx, r.ID, "me", at(3*time.Minute)))
	claimed, err = s.ClaimRollouts(ctx, "other", at(5*time.Minute), at(time.Hour), 10)
	must(t, err)
	same(t, "claimed before next_at", []string{other.ID}, ids(claimed, rolloutID))
	other.Status, other.FinishedAt, other.UpdatedAt = controlplane.RolloutSucceeded, ptr(at(6*time.Minute)), at(6*time.Minute)
	must(t, s.SetRolloutStatus(ctx, other, controlplane.RolloutRunning))
	claimed, err = s.ClaimRollouts(ctx, "other", at(11*time.Minute), at(time.Hour), 10)
	must(t, err)
	same(t, "claimed once due", []string{r.ID}, ids(claimed, rolloutID))
	if claimed[0].LeaseOwner != "other" || claimed[0].Phase != 1 {
		t.Fatalf("claimed rollout: %+v", claimed[0])
	}
	wantCode(t, s.UpdateRolloutLease(ctx, r), controlplane.ECONFLICT)
	wantCode(t, s.RenewRolloutLease(ctx, r.ID, "me", at(time.Hour)), controlplane.ECONFLICT)

	// Status changes are guarded.
	r.Status, r.UpdatedAt = controlplane.RolloutPaused, at(12*time.Minute)
	must(t, s.SetRolloutStatus(ctx, r, controlplane.RolloutRunning))
	wantCode(t, s.SetRolloutStatus(ctx, r, controlplane.RolloutRunning), controlplane.ECONFLICT)
	claimed, err = s.ClaimRollouts(ctx, "third", at(24*time.Hour), at(25*time.Hour), 10)
	must(t, err)
	same(t, "claimed while paused", []string{}, ids(claimed, rolloutID))
	r.Status = controlplane.RolloutCancelled
	must(t, s.SetRolloutStatus(ctx, r, controlplane.RolloutPaused))
	r.LeaseOwner, r.NextAt, r.LeaseExpiresAt = "other", at(48*time.Hour), ptr(at(12*time.Minute))
	must(t, s.UpdateRolloutLease(ctx, r))
	claimed, err = s.ClaimRollouts(ctx, "third", at(13*time.Minute), at(time.Hour), 10)
	must(t, err)
	same(t, "cancelled, claimed before next_at", []string{r.ID}, ids(claimed, rolloutID))
	r.FinishedAt, r.Error = ptr(at(14*time.Minute)), "the rollout was cancelled"
	must(t, s.SetRolloutStatus(ctx, r))
	wantCode(t, s.SetRolloutStatus(ctx, r), controlplane.ECONFLICT)
	got, err = s.GetRollout(ctx, a.ID, r.ID)
	must(t, err)
	if got.Status != controlplane.RolloutCancelled || got.FinishedAt == nil || !got.FinishedAt.Equal(us(at(14*time.Minute))) || got.Error != r.Error {
		t.Fatalf("finished rollout: %+v", got)
	}
	if busy(a.ID) {
		t.Fatal("a finished rollout still counts as unfinished")
	}

	// Platform-wide: its own scope; it blocks every organization.
	platform, _ := newRollout(nil, "me", time.Minute)
	must(t, s.CreateRollout(ctx, platform, nil))
	if !busy(a.ID) {
		t.Fatal("a platform-wide rollout does not block the organization")
	}
	got, err = s.GetRollout(ctx, "", platform.ID)
	must(t, err)
	same(t, "platform rollout", platform, got)
	_, err = s.GetRollout(ctx, a.ID, platform.ID)
	wantCode(t, err, controlplane.ENOTFOUND)

	newer, _ := newRollout(a, "me", time.Minute)
	must(t, s.CreateRollout(ctx, newer, nil))
	list, next, err := s.ListRollouts(ctx, a.ID, controlplane.Page{Limit: 1})
	must(t, err)
	same(t, "first page", []string{newer.ID}, ids(list, rolloutID))
	list, _, err = s.ListRollouts(ctx, a.ID, controlplane.Page{Limit: 1, Cursor: next})
	must(t, err)
	same(t, "second page", []string{r.ID}, ids(list, rolloutID))
	list, _, err = s.ListRollouts(ctx, "", controlplane.Page{})
	must(t, err)
	same(t, "platform list", []string{platform.ID}, ids(list, rolloutID))
}

func rolloutID(r *controlplane.Rollout) string { return r.ID }

// testClaimRolloutsConcurrently: claimers racing for expired rollouts never
// get the same one.
func testClaimRolloutsConcurrently(t *testing.T, s controlplane.Store) {
	const rollouts, claimers = 20, 4
	ctx := t.Context()
	for i := range rollouts {
		r, _ := newRollout(newOrg(t, s, fmt.Sprintf("o%d", i)), "dead", 0)
		must(t, s.CreateRollout(ctx, r, nil))
	}
	var mu sync.Mutex
	owners := map[string]int{}
	var wg sync.WaitGroup
	for i := range claimers {
		wg.Go(func() {
			for {
				rs, err := s.ClaimRollouts(ctx, fmt.Sprintf("w%d", i), at(time.Second), at(time.Hour), 3)
				if err != nil {
					t.Errorf("ClaimRollouts: %v", err)
					return
				}
				if len(rs) == 0 {
					return
				}
				mu.Lock()
				for _, r := range rs {
					owners[r.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(owners) != rollouts {
		t.Errorf("%d rollouts claimed, want %d", len(owners), rollouts)
	}
	for id, n := range owners {
		if n != 1 {
			t.Errorf("rollout %s claimed %d times", id, n)
		}
	}
}
