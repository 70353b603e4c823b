package main

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/drivers/drivertest"
)

// configuredApp loads the configuration from ENVPLANE_* variables alone
// and builds the app from it, closed when the test ends.
func configuredApp(t *testing.T) (*app, error) {
	t.Helper()
	root := &cobra.Command{}
	root.Flags().String("config", "", "")
	cfg, err := loadConfig(root.Flags())
	if err != nil {
		return nil, err
	}
	a, err := newApp(context.Background(), cfg, io.Discard)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if err := a.close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return a, nil
}

// TestLeaseConfiguration: by default an operation's lease lasts 5s and is
// renewed every second, so with the default reconcile interval another
// replica resumes an abandoned operation within 10s; ENVPLANE_OPERATIONS_*
// change both, and a renewal too slow to keep its lease is refused.
func TestLeaseConfiguration(t *testing.T) {
	t.Setenv("ENVPLANE_DATA_DIR", t.TempDir())
	a, err := configuredApp(t)
	if err != nil {
		t.Fatal(err)
	}
	if a.svc.Lease != 5*time.Second || a.svc.LeaseRenewal != time.Second {
		t.Fatalf("default lease %v renewed every %v, want 5s and 1s", a.svc.Lease, a.svc.LeaseRenewal)
	}
	if worst := a.svc.Lease + a.cfg.ReconcileInterval; worst > 10*time.Second {
		t.Fatalf("an abandoned operation waits up to %v by default, want at most 10s", worst)
	}

	t.Setenv("ENVPLANE_OPERATIONS_LEASE", "3s")
	t.Setenv("ENVPLANE_OPERATIONS_LEASE_RENEWAL", "500ms")
	if a, err = configuredApp(t); err != nil {
		t.Fatal(err)
	}
	if a.svc.Lease != 3*time.Second || a.svc.LeaseRenewal != 500*time.Millisecond {
		t.Fatalf("configured lease %v renewed every %v, want 3s and 500ms", a.svc.Lease, a.svc.LeaseRenewal)
	}

	t.Setenv("ENVPLANE_OPERATIONS_LEASE_RENEWAL", "2s")
	if _, err := configuredApp(t); err == nil || !strings.Contains(err.Error(), "operations.lease_renewal") {
		t.Fatalf("a renewal of 2s for a lease of 3s: %v, want a refusal naming operations.lease_renewal", err)
	}
}

// testClock is a clock that moves only when the test says.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestConfiguredLeaseDrivesTakeover: a replica that stops in the middle of
// a provisioning (held at a crash point, renewing nothing, as good as dead)
// keeps its operation exactly as long as the configured lease; then
// another replica's reconcile pass takes it over and finishes it, and the
// stopped replica, once it wakes, cannot record anything on it. The clock
// is the test's.
func TestConfiguredLeaseDrivesTakeover(t *testing.T) {
	t.Setenv("ENVPLANE_DATA_DIR", t.TempDir())
	t.Setenv("ENVPLANE_OPERATIONS_LEASE", "7s")
	ctx := context.Background()
	dead, err := configuredApp(t)
	if err != nil {
		t.Fatal(err)
	}
	other, err := configuredApp(t)
	if err != nil {
		t.Fatal(err)
	}
	clk := &testClock{now: time.Now().UTC().Truncate(time.Second)}
	dead.svc.Now, other.svc.Now = clk.Now, clk.Now
	dead.svc.LeaseRenewal = time.Hour
	reached, wake := make(chan struct{}), make(chan struct{})
	dead.svc.CrashPoint = func(point string) {
		if point == "provision.create_database.before" {
			close(reached)
			<-wake
		}
	}

	token, err := other.svc.Bootstrap(ctx, cp.BootstrapRequest{})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := dead.svc.Authenticate(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	resp, _, err := dead.svc.CreateOrganization(ctx, admin, cp.CreateOrganizationRequest{Slug: "acme", Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	<-reached
	var once sync.Once
	resume := func() {
		once.Do(func() { close(wake) })
		dead.svc.Wait()
	}
	defer resume()

	clk.Advance(7*time.Second - time.Millisecond)
	if n, err := other.svc.Reconcile(ctx); err != nil || n != 0 {
		t.Fatalf("reconcile within the configured lease claimed %d (err %v), want 0", n, err)
	}
	clk.Advance(2 * time.Millisecond)
	if n, err := other.svc.Reconcile(ctx); err != nil || n != 1 {
		t.Fatalf("reconcile past the configured lease claimed %d (err %v), want 1", n, err)
	}
	op, err := other.svc.Store.GetOperation(ctx, resp.Operation.OrgID, resp.Operation.ID)
	if err != nil {
		t.Fatal(err)
	}
	if op.Status != cp.OpSucceeded || op.LeaseOwner != other.svc.LeaseOwner {
		t.Fatalf("taken-over operation %s at %s, leased to %q; want succeeded by the other replica", op.Status, op.Step, op.LeaseOwner)
	}
	env, err := other.svc.Store.GetEnvironment(ctx, op.OrgID, op.EnvironmentID)
	if err != nil || env.Status != cp.StatusActive {
		t.Fatalf("environment after the takeover: %+v, %v", env, err)
	}

	resume()
	after, err := other.svc.Store.GetOperation(ctx, op.OrgID, op.ID)
	if err != nil {
		t.Fatal(err)
	}
	if after.Status != cp.OpSucceeded || after.Step != op.Step || after.LeaseOwner != op.LeaseOwner {
		t.Fatalf("the stopped replica changed the operation it lost: %s at %s, leased to %q", after.Status, after.Step, after.LeaseOwner)
	}
}

// TestLeasesOnTheStoreClock: on a PostgreSQL store, a replica whose own
// clock runs 30 s ahead leaves alone an operation another replica is
// working on (held at a step, its lease renewed), because the time it
// claims with is the store's (cp.StoreClock over its wrong clock); on its
// own clock, the same replica takes that operation, which is what the
// store's clock prevents.
func TestLeasesOnTheStoreClock(t *testing.T) {
	t.Setenv("ENVPLANE_DATA_DIR", t.TempDir())
	t.Setenv("ENVPLANE_STORE_URL", drivertest.NewPostgresStoreDatabase(t))
	ctx := context.Background()
	holder, err := configuredApp(t)
	if err != nil {
		t.Fatal(err)
	}
	ahead, err := configuredApp(t)
	if err != nil {
		t.Fatal(err)
	}
	reached, wake := make(chan struct{}), make(chan struct{})
	holder.svc.CrashPoint = func(point string) {
		if point == "provision.create_database.before" {
			close(reached)
			<-wake
		}
	}
	token, err := ahead.svc.Bootstrap(ctx, cp.BootstrapRequest{})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := holder.svc.Authenticate(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := holder.svc.CreateOrganization(ctx, admin, cp.CreateOrganizationRequest{Slug: "acme", Name: "Acme"}); err != nil {
		t.Fatal(err)
	}
	<-reached
	var once sync.Once
	resume := func() {
		once.Do(func() { close(wake) })
		holder.svc.Wait()
		ahead.svc.Wait()
	}
	defer resume()

	wrong := func() time.Time { return time.Now().Add(30 * time.Second).UTC() }
	clock := cp.NewStoreClock(ahead.store.(cp.ClockReader).Clock, wrong)
	if err := clock.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	ahead.svc.Now = clock.Now
	if n, err := ahead.svc.Reconcile(ctx); err != nil || n != 0 {
		t.Fatalf("a replica 30 s ahead, on the store's clock, claimed %d operations (err %v), want none: another holds it", n, err)
	}
	ahead.svc.Now = wrong
	if n, err := ahead.svc.Reconcile(ctx); err != nil || n != 1 {
		t.Fatalf("the same replica on its own clock claimed %d operations (err %v); want the held one, or this test shows nothing", n, err)
	}
}
