package storetest

import (
	"errors"
	"testing"

	"github.com/envplane/envplane/controlplane"
)

func testWithTxCommits(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	var org *controlplane.Organization
	var env *controlplane.Environment
	must(t, s.WithTx(ctx, func(q controlplane.Queries) error {
		org = newOrg(t, q, "acme")
		env = newEnv(t, q, org, "default")
		// The transaction reads its own writes.
		if _, err := q.GetEnvironment(ctx, org.ID, "default"); err != nil {
			return err
		}
		return nil
	}))
	got, err := s.GetOrganization(ctx, "acme")
	must(t, err)
	same(t, "committed organization", org, got)
	gotEnv, err := s.GetEnvironment(ctx, org.ID, env.ID)
	must(t, err)
	same(t, "committed environment", env, gotEnv)
}

func testWithTxRollsBack(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	boom := errors.New("boom")
	var org *controlplane.Organization
	var env *controlplane.Environment
	err := s.WithTx(ctx, func(q controlplane.Queries) error {
		org = newOrg(t, q, "acme")
		env = newEnv(t, q, org, "default")
		newEvent(t, q, org.ID)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("WithTx returned %v, want fn's error", err)
	}
	_, err = s.GetOrganization(ctx, "acme")
	wantCode(t, err, controlplane.ENOTFOUND)
	_, err = s.OrgOf(ctx, controlplane.KindEnvironment, env.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
	events, _, err := s.ListAuditEvents(ctx, org.ID, controlplane.Page{})
	must(t, err)
	if len(events) != 0 {
		t.Errorf("a rolled-back transaction left %d audit events", len(events))
	}

	// A store error inside the transaction keeps its code and undoes the
	// writes before it.
	newOrg(t, s, "taken")
	err = s.WithTx(ctx, func(q controlplane.Queries) error {
		newOrg(t, q, "first")
		return q.CreateOrganization(ctx, &controlplane.Organization{ID: newID("org_"), Slug: "taken", Name: "dup",
			CreatedAt: at(0), UpdatedAt: at(0)})
	})
	wantCode(t, err, controlplane.ECONFLICT)
	_, err = s.GetOrganization(ctx, "first")
	wantCode(t, err, controlplane.ENOTFOUND)

	// A panic in fn rolls back too.
	func() {
		defer func() {
			if recover() == nil {
				t.Errorf("WithTx swallowed fn's panic")
			}
		}()
		_ = s.WithTx(ctx, func(q controlplane.Queries) error {
			newOrg(t, q, "panicked")
			panic("fn panics")
		})
	}()
	_, err = s.GetOrganization(ctx, "panicked")
	wantCode(t, err, controlplane.ENOTFOUND)
}
