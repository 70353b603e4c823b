package storetest

import (
	"fmt"
	"slices"
	"testing"

	"github.com/envplane/envplane/controlplane"
)

// testPagination walks every paginated list in pages of 3 over 7 rows.
func testPagination(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	const rows, size = 7, 3
	var orgs, envs, keys, members, events []string
	a := newOrg(t, s, "a")
	orgs = append(orgs, a.ID)
	other := newOrg(t, s, "other")
	orgs = append(orgs, other.ID)
	for i := range rows {
		if i >= 2 {
			orgs = append(orgs, newOrg(t, s, fmt.Sprintf("org-%d", i)).ID)
		}
		envs = append(envs, newEnv(t, s, a, fmt.Sprintf("env-%d", i)).ID)
		u := newUser(t, s, fmt.Sprintf("user-%d@example.com", i))
		newMember(t, s, a, u, controlplane.OrgMember)
		members = append(members, u.ID)
		k := &controlplane.APIKey{ID: newID("key_"), OrgID: a.ID, UserID: u.ID, Name: "k", Prefix: "ep_",
			Hash: newID("hash_"), CreatedAt: at(0)}
		must(t, s.CreateAPIKey(ctx, k))
		keys = append(keys, k.ID)
		events = append(events, newEvent(t, s, a.ID).ID)
	}
	// Rows of another organization stay out of a's lists.
	newEnv(t, s, other, "env-0")
	newEvent(t, s, other.ID)
	slices.Sort(members)
	slices.Reverse(events)

	same(t, "organizations", orgs, collectPages(t, size, func(p controlplane.Page) ([]*controlplane.Organization, string, error) {
		return s.ListOrganizations(ctx, nil, p)
	}, orgID))
	same(t, "environments", envs, collectPages(t, size, func(p controlplane.Page) ([]*controlplane.Environment, string, error) {
		return s.ListEnvironments(ctx, controlplane.EnvironmentFilter{OrgID: a.ID}, p)
	}, envID))
	same(t, "api keys", keys, collectPages(t, size, func(p controlplane.Page) ([]*controlplane.APIKey, string, error) {
		return s.ListAPIKeys(ctx, a.ID, "", p)
	}, keyID))
	same(t, "memberships", members, collectPages(t, size, func(p controlplane.Page) ([]*controlplane.OrgMembership, string, error) {
		return s.ListOrgMemberships(ctx, a.ID, p)
	}, memberUser))
	same(t, "audit events, newest first", events, collectPages(t, size, func(p controlplane.Page) ([]*controlplane.AuditEvent, string, error) {
		return s.ListAuditEvents(ctx, a.ID, p)
	}, eventID))
	// A page that ends exactly at the last row has no next cursor.
	same(t, "environments in one exact page", envs, collectPages(t, rows, func(p controlplane.Page) ([]*controlplane.Environment, string, error) {
		return s.ListEnvironments(ctx, controlplane.EnvironmentFilter{OrgID: a.ID}, p)
	}, envID))
}

// testPageLimits checks that limit 0 means DefaultPageLimit and that a
// larger limit is capped at MaxPageLimit.
func testPageLimits(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a := newOrg(t, s, "a")
	total := controlplane.MaxPageLimit + 5
	must(t, s.WithTx(ctx, func(q controlplane.Queries) error {
		for range total {
			newEvent(t, q, a.ID)
		}
		return nil
	}))

	events, next, err := s.ListAuditEvents(ctx, a.ID, controlplane.Page{})
	must(t, err)
	if len(events) != controlplane.DefaultPageLimit || next == "" {
		t.Errorf("limit 0 gave %d events and next %q, want %d and a cursor", len(events), next, controlplane.DefaultPageLimit)
	}
	events, next, err = s.ListAuditEvents(ctx, a.ID, controlplane.Page{Limit: 10 * controlplane.MaxPageLimit})
	must(t, err)
	if len(events) != controlplane.MaxPageLimit || next == "" {
		t.Fatalf("a huge limit gave %d events and next %q, want %d and a cursor", len(events), next, controlplane.MaxPageLimit)
	}
	rest, next, err := s.ListAuditEvents(ctx, a.ID, controlplane.Page{Limit: 10 * controlplane.MaxPageLimit, Cursor: next})
	must(t, err)
	if len(rest) != total-controlplane.MaxPageLimit || next != "" {
		t.Errorf("the page after the cap gave %d events and next %q, want %d and no cursor", len(rest), next, total-controlplane.MaxPageLimit)
	}
}
