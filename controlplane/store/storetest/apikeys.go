package storetest

import (
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
)

func testAPIKeys(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a, b := newOrg(t, s, "a"), newOrg(t, s, "b")
	u, root := newUser(t, s, "u@example.com"), newUser(t, s, "root@example.com")
	envA, envB := newEnv(t, s, a, "dev"), newEnv(t, s, b, "dev")

	userKey := &controlplane.APIKey{ID: newID("key_"), OrgID: a.ID, UserID: u.ID, Name: "laptop", Prefix: "ep_u1",
		Hash: "hash-user", CreatedAt: at(0), ExpiresAt: ptr(at(24 * time.Hour))}
	appKey := &controlplane.APIKey{ID: newID("key_"), OrgID: a.ID, EnvironmentID: envA.ID, MaxScope: "readonly",
		Name: "app", Prefix: "ep_a1", Hash: "hash-app", CreatedAt: at(0)}
	platformKey := &controlplane.APIKey{ID: newID("key_"), UserID: root.ID, Name: "bootstrap", Prefix: "ep_p1",
		Hash: "hash-platform", CreatedAt: at(0)}
	revokedPlatformKey := &controlplane.APIKey{ID: newID("key_"), UserID: root.ID, Name: "old", Prefix: "ep_p0",
		Hash: "hash-platform-old", CreatedAt: at(0), RevokedAt: ptr(at(time.Second))}
	otherKey := &controlplane.APIKey{ID: newID("key_"), OrgID: b.ID, UserID: u.ID, Name: "b", Prefix: "ep_b1",
		Hash: "hash-b", CreatedAt: at(0)}
	for _, k := range []*controlplane.APIKey{userKey, appKey, platformKey, revokedPlatformKey, otherKey} {
		must(t, s.CreateAPIKey(ctx, k))
	}

	for _, k := range []*controlplane.APIKey{userKey, appKey, platformKey, revokedPlatformKey, otherKey} {
		got, err := s.GetAPIKeyByHash(ctx, k.Hash)
		must(t, err)
		same(t, "key "+k.Name+" by hash", k, got)
	}
	_, err := s.GetAPIKeyByHash(ctx, "hash-none")
	wantCode(t, err, controlplane.ENOTFOUND)

	got, err := s.GetAPIKey(ctx, a.ID, userKey.ID)
	must(t, err)
	same(t, "key by org and id", userKey, got)
	_, err = s.GetAPIKey(ctx, a.ID, otherKey.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
	_, err = s.GetAPIKey(ctx, b.ID, userKey.ID)
	wantCode(t, err, controlplane.ENOTFOUND)

	wantCode(t, s.CreateAPIKey(ctx, &controlplane.APIKey{ID: newID("key_"), OrgID: a.ID, UserID: u.ID, Name: "dup",
		Prefix: "ep_", Hash: "hash-user", CreatedAt: at(0)}), controlplane.ECONFLICT)
	// An app key cannot be bound to another organization's environment.
	wantCode(t, s.CreateAPIKey(ctx, &controlplane.APIKey{ID: newID("key_"), OrgID: a.ID, EnvironmentID: envB.ID,
		MaxScope: "readonly", Name: "cross", Prefix: "ep_", Hash: "hash-cross", CreatedAt: at(0)}), controlplane.ENOTFOUND)

	keys, next, err := s.ListAPIKeys(ctx, a.ID, "", controlplane.Page{})
	must(t, err)
	same(t, "keys of a", []string{userKey.ID, appKey.ID}, ids(keys, keyID))
	if next != "" {
		t.Errorf("single page has next cursor %q", next)
	}
	keys, _, err = s.ListAPIKeys(ctx, a.ID, u.ID, controlplane.Page{})
	must(t, err)
	same(t, "keys of u in a", []string{userKey.ID}, ids(keys, keyID))

	platform, err := s.ListPlatformKeys(ctx)
	must(t, err)
	same(t, "live platform keys", []*controlplane.APIKey{platformKey}, platform)

	// Revoking twice keeps the first time.
	must(t, s.RevokeAPIKey(ctx, a.ID, userKey.ID, at(time.Minute)))
	must(t, s.RevokeAPIKey(ctx, a.ID, userKey.ID, at(time.Hour)))
	got, err = s.GetAPIKeyByHash(ctx, userKey.Hash)
	must(t, err)
	if got.RevokedAt == nil || !got.RevokedAt.Equal(us(at(time.Minute))) {
		t.Errorf("RevokedAt after revoking twice = %v, want the first time %v", got.RevokedAt, at(time.Minute))
	}
	wantCode(t, s.RevokeAPIKey(ctx, b.ID, appKey.ID, at(0)), controlplane.ENOTFOUND)
	wantCode(t, s.RevokeAPIKey(ctx, a.ID, newID("key_"), at(0)), controlplane.ENOTFOUND)
	got, err = s.GetAPIKeyByHash(ctx, appKey.Hash)
	must(t, err)
	if got.RevokedAt != nil {
		t.Errorf("a refused cross-organization revoke still revoked the key at %v", got.RevokedAt)
	}

	must(t, s.TouchAPIKey(ctx, appKey.ID, at(2*time.Hour)))
	got, err = s.GetAPIKeyByHash(ctx, appKey.Hash)
	must(t, err)
	if got.LastUsedAt == nil || !got.LastUsedAt.Equal(us(at(2*time.Hour))) {
		t.Errorf("LastUsedAt after touch = %v, want %v", got.LastUsedAt, at(2*time.Hour))
	}
	must(t, s.TouchAPIKey(ctx, newID("key_"), at(0)))
}
