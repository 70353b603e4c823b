package controlplane_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/store/postgres"
	sqlitestore "github.com/envplane/envplane/controlplane/store/sqlite"
	"github.com/envplane/envplane/drivers/drivertest"
)

// stores opens each control-plane store on a fresh database; each is
// closed when the test ends.
func stores(tb testing.TB) map[string]cp.Store {
	tb.Helper()
	ctx := context.Background()
	lite, err := sqlitestore.Open(ctx, filepath.Join(tb.TempDir(), "controlplane.db"))
	if err != nil {
		tb.Fatalf("open sqlite store: %v", err)
	}
	tb.Cleanup(func() { lite.Close() })
	pg, err := postgres.Open(ctx, drivertest.NewPostgresStoreDatabase(tb))
	if err != nil {
		tb.Fatalf("open postgres store: %v", err)
	}
	tb.Cleanup(func() { pg.Close() })
	return map[string]cp.Store{"sqlite": lite, "postgres": pg}
}

// TestLastOwnerUnderConcurrency: two owners removed (or demoted) at the same
// time, each by a different request, never leave an organization without an
// owner, on either store.
func TestLastOwnerUnderConcurrency(t *testing.T) {
	for name, store := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			svc := cp.New(store, nil, nil, "")
			admin := &cp.Principal{KeyID: "key_admin", PlatformAdmin: true}
			now := time.Now().UTC()
			for round := range 20 {
				org := &cp.Organization{ID: cp.NewID("org"), Slug: fmt.Sprintf("org-%d", round), Name: "org", MaxEnvironments: 10, CreatedAt: now, UpdatedAt: now}
				if err := store.CreateOrganization(cp.WithPlatformScope(ctx), org); err != nil {
					t.Fatalf("create organization: %v", err)
				}
				var owners []string
				for i := range 2 {
					u := &cp.User{ID: cp.NewID("usr"), Email: fmt.Sprintf("owner%d-%d@example.com", i, round), CreatedAt: now}
					if err := store.CreateUser(cp.WithPlatformScope(ctx), u); err != nil {
						t.Fatalf("create user: %v", err)
					}
					if err := store.PutOrgMembership(cp.WithPlatformScope(ctx), &cp.OrgMembership{OrgID: org.ID, UserID: u.ID, Role: cp.OrgOwner, CreatedAt: now}); err != nil {
						t.Fatalf("add owner: %v", err)
					}
					owners = append(owners, u.ID)
				}
				var wg sync.WaitGroup
				errs := make([]error, 2)
				for i, id := range owners {
					wg.Go(func() {
						if round%2 == 0 {
							errs[i] = svc.RemoveMember(ctx, admin, org.ID, id)
						} else {
							_, errs[i] = svc.UpdateMember(ctx, admin, org.ID, id, cp.UpdateMemberRequest{Role: cp.OrgMember})
						}
					})
				}
				wg.Wait()
				n, err := store.CountOrgOwners(cp.WithPlatformScope(ctx), org.ID)
				if err != nil {
					t.Fatalf("count owners: %v", err)
				}
				if n != 1 {
					t.Fatalf("round %d: %d owners left (errors %v, %v), want 1", round, n, errs[0], errs[1])
				}
				for _, err := range errs {
					if err != nil && !cp.IsCode(err, cp.ECONFLICT) {
						t.Fatalf("round %d: %v", round, err)
					}
				}
			}
		})
	}
}
