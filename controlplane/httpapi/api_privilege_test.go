package httpapi_test

import (
	"net/http"
	"slices"
	"testing"

	cp "github.com/envplane/envplane/controlplane"
)

// TestKeysCannotImpersonateAbove: a key minted for another user acts as that
// user, so only a caller who could already do what that user can may mint
// it: an admin cannot mint an owner's key and act as owner with it.
func TestKeysCannotImpersonateAbove(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	bob := h.member(t, "acme", "bob@example.com", cp.OrgOwner)
	erin := h.member(t, "acme", "erin@example.com", cp.OrgAdmin)
	mallory := h.member(t, "acme", "mallory@example.com", cp.OrgMember)
	keys := "/v1/organizations/acme/api-keys"

	tests := []struct {
		name   string
		token  string
		user   string
		status int
	}{
		{"an admin mints an owner's key", erin, "bob@example.com", http.StatusForbidden},
		{"an admin mints the platform admin's key", erin, "ops@example.com", http.StatusForbidden},
		{"a member mints an admin's key", mallory, "erin@example.com", http.StatusForbidden},
		{"a member mints another member's key", mallory, "ops@example.com", http.StatusForbidden},
		{"an admin mints a member's key", erin, "mallory@example.com", http.StatusCreated},
		{"an admin mints their own key", erin, "erin@example.com", http.StatusCreated},
		{"an owner mints an admin's key", bob, "erin@example.com", http.StatusCreated},
		{"an owner mints another owner's key", bob, "ops@example.com", http.StatusCreated},
		{"a member mints their own key", mallory, "mallory@example.com", http.StatusCreated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(t, tc.token, "POST", keys, map[string]any{"name": "k", "user": tc.user})
			if tc.status == http.StatusForbidden {
				wantProblem(t, r, tc.status, cp.EFORBIDDEN, "")
				return
			}
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.shown())
			}
		})
	}

	// ops@example.com is the org's first owner; the platform admin's own org
	// membership makes it one. An admin holding no owner's key cannot act as one.
	wantProblem(t, h.do(t, erin, "PATCH", "/v1/organizations/acme", map[string]any{"name": "mine"}), http.StatusForbidden, cp.EFORBIDDEN, "")
	var list cp.List[*cp.APIKey]
	h.must(t, http.StatusOK, h.admin, "GET", keys, nil).decode(t, &list)
	var me cp.Me
	h.must(t, http.StatusOK, bob, "GET", "/v1/me", nil).decode(t, &me)
	for _, k := range list.Items {
		if k.Name == "k" && k.UserID == me.User.ID {
			t.Fatal("an owner's key was minted by an admin")
		}
	}
}

// TestMeNamesOnlyMemberships: /v1/me lists the organizations the key may act
// in with its role: a platform key its user's memberships, a user key its
// organization while its user is a member, and nothing once they are removed.
func TestMeNamesOnlyMemberships(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	h.org(t, "globex")
	bob := h.member(t, "acme", "bob@example.com", cp.OrgAdmin)
	var app cp.CreateAPIKeyResponse
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/api-keys", map[string]any{"name": "app", "environment": "default"}).decode(t, &app)

	orgs := func(token string) map[string]cp.OrgRole {
		t.Helper()
		var me cp.Me
		h.must(t, http.StatusOK, token, "GET", "/v1/me", nil).decode(t, &me)
		out := map[string]cp.OrgRole{}
		for _, m := range me.Organizations {
			out[m.Slug] = m.Role
		}
		return out
	}
	if got := orgs(h.admin); len(got) != 2 || got["acme"] != cp.OrgOwner || got["globex"] != cp.OrgOwner {
		t.Errorf("platform admin's organizations: %v, want owner of acme and globex", got)
	}
	if got := orgs(bob); len(got) != 1 || got["acme"] != cp.OrgAdmin {
		t.Errorf("bob's organizations: %v, want admin of acme", got)
	}
	if got := orgs(app.Token); len(got) != 1 || got["acme"] != "" {
		t.Errorf("the app key's organizations: %v, want acme without a role", got)
	}

	// Removing a member revokes their keys of the organization, so they stop
	// working at once and do not come back if the user is added again.
	h.must(t, http.StatusNoContent, h.admin, "DELETE", "/v1/organizations/acme/members/bob@example.com", nil)
	for _, path := range []string{"/v1/me", "/v1/organizations/acme", "/v1/organizations"} {
		wantProblem(t, h.do(t, bob, "GET", path, nil), http.StatusUnauthorized, cp.EUNAUTHORIZED, "")
	}
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/members", map[string]any{"email": "bob@example.com", "role": "admin"})
	wantProblem(t, h.do(t, bob, "GET", "/v1/me", nil), http.StatusUnauthorized, cp.EUNAUTHORIZED, "")
	if !slices.Contains(h.auditActions(t, "acme"), "member.removed") {
		t.Error("no member.removed audit event")
	}
}
