package storetest

import (
	"fmt"
	"slices"
	"testing"

	"github.com/envplane/envplane/controlplane"
)

// testEnvironmentFilters pages through environments narrowed by type, status
// and target: every page but the last is full and the cursor carries on
// past rows the filter skips.
func testEnvironmentFilters(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a, other := newOrg(t, s, "a"), newOrg(t, s, "other")
	var previews, suspendedEdge, all []string
	for i := range 9 {
		e := &controlplane.Environment{ID: newID("env_"), OrgID: a.ID, Slug: fmt.Sprintf("env-%d", i), Name: "e",
			Type: controlplane.TypeDevelopment, Target: "local", Status: controlplane.StatusActive, CreatedAt: at(0), UpdatedAt: at(0)}
		if i%2 == 0 {
			e.Type = controlplane.TypePreview
		}
		if i%3 == 0 {
			e.Target = "edge"
			e.Status = controlplane.StatusSuspended
		}
		must(t, s.CreateEnvironment(ctx, e))
		all = append(all, e.ID)
		if e.Type == controlplane.TypePreview {
			previews = append(previews, e.ID)
		}
		if e.Target == "edge" && e.Status == controlplane.StatusSuspended {
			suspendedEdge = append(suspendedEdge, e.ID)
		}
	}
	// Another organization's matching environment and a tombstone of a
	// matching type stay out of a's filtered lists.
	must(t, s.CreateEnvironment(ctx, &controlplane.Environment{ID: newID("env_"), OrgID: other.ID, Slug: "p", Name: "p",
		Type: controlplane.TypePreview, Target: "edge", Status: controlplane.StatusSuspended, CreatedAt: at(0), UpdatedAt: at(0)}))
	gone := newEnv(t, s, a, "gone")
	gone.Type = controlplane.TypePreview
	deleteEnv(t, s, gone)

	list := func(f controlplane.EnvironmentFilter) func(p controlplane.Page) ([]*controlplane.Environment, string, error) {
		f.OrgID = a.ID
		return func(p controlplane.Page) ([]*controlplane.Environment, string, error) {
			return s.ListEnvironments(ctx, f, p)
		}
	}
	same(t, "preview environments", previews, collectPages(t, 2, list(controlplane.EnvironmentFilter{Type: controlplane.TypePreview}), envID))
	same(t, "suspended environments on edge", suspendedEdge, collectPages(t, 2,
		list(controlplane.EnvironmentFilter{Status: controlplane.StatusSuspended, Target: "edge"}), envID))
	same(t, "active environments", sortedIDs(slices.DeleteFunc(slices.Clone(all), func(id string) bool { return slices.Contains(suspendedEdge, id) })...),
		collectPages(t, 4, list(controlplane.EnvironmentFilter{Status: controlplane.StatusActive}), envID))
	same(t, "environments on a target no environment uses", []string(nil),
		collectPages(t, 2, list(controlplane.EnvironmentFilter{Target: "nowhere"}), envID))
	// Tombstones need IncludeDeleted, as without a status filter.
	same(t, "deleted environments without tombstones", []string(nil),
		collectPages(t, 2, list(controlplane.EnvironmentFilter{Status: controlplane.StatusDeleted}), envID))
	same(t, "deleted environments", []string{gone.ID},
		collectPages(t, 2, list(controlplane.EnvironmentFilter{Status: controlplane.StatusDeleted, IncludeDeleted: true}), envID))
	// Filters narrow an id list too.
	same(t, "previews among picked ids", []string{previews[0]},
		collectPages(t, 2, list(controlplane.EnvironmentFilter{IDs: []string{previews[0], all[1]}, Type: controlplane.TypePreview}), envID))
}

// testListOperations pages through an organization's operations, newest
// first, narrowed by environment, status and kind.
func testListOperations(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a, b := newOrg(t, s, "a"), newOrg(t, s, "b")
	e1, e2, eB := newEnv(t, s, a, "one"), newEnv(t, s, a, "two"), newEnv(t, s, b, "one")
	kinds := []controlplane.OperationKind{controlplane.OpProvision, controlplane.OpRotate, controlplane.OpClone}
	var all, ofE1, failed, rotationsOfE2 []string
	for i := range 10 {
		e := e1
		if i%2 == 1 {
			e = e2
		}
		// Finished operations, so none trips the one-running-per-environment rule.
		op := newOperation(t, s, e, func(op *controlplane.Operation) {
			op.Kind, op.Status = kinds[i%3], controlplane.OpSucceeded
			if i%4 == 0 {
				op.Status = controlplane.OpFailed
			}
		})
		all = append(all, op.ID)
		if e == e1 {
			ofE1 = append(ofE1, op.ID)
		}
		if op.Status == controlplane.OpFailed {
			failed = append(failed, op.ID)
		}
		if e == e2 && op.Kind == controlplane.OpRotate {
			rotationsOfE2 = append(rotationsOfE2, op.ID)
		}
	}
	newOperation(t, s, eB, nil)
	for _, ids := range [][]string{all, ofE1, failed, rotationsOfE2} {
		slices.Reverse(ids)
	}

	list := func(f controlplane.OperationFilter) func(p controlplane.Page) ([]*controlplane.Operation, string, error) {
		f.OrgID = a.ID
		return func(p controlplane.Page) ([]*controlplane.Operation, string, error) {
			return s.ListOperations(ctx, f, p)
		}
	}
	same(t, "operations, newest first", all, collectPages(t, 3, list(controlplane.OperationFilter{}), opID))
	same(t, "operations of one environment", ofE1, collectPages(t, 2, list(controlplane.OperationFilter{EnvironmentIDs: []string{e1.ID}}), opID))
	same(t, "failed operations", failed, collectPages(t, 2, list(controlplane.OperationFilter{Status: controlplane.OpFailed}), opID))
	same(t, "rotations of the second environment", rotationsOfE2, collectPages(t, 1,
		list(controlplane.OperationFilter{EnvironmentIDs: []string{e2.ID, eB.ID}, Kind: controlplane.OpRotate}), opID))
	same(t, "operations of no environment", []string(nil), collectPages(t, 2, list(controlplane.OperationFilter{EnvironmentIDs: []string{}}), opID))

	_, _, err := s.ListOperations(ctx, controlplane.OperationFilter{}, controlplane.Page{})
	wantCode(t, err, controlplane.EINVALID)
}
