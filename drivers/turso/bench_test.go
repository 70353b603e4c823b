package turso_test

import (
	"context"
	"testing"
	"time"

	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/drivertest"
	"github.com/envplane/envplane/drivers/turso/tursotest"
)

// BenchmarkProvision is the driver's share of provisioning an environment on
// Turso: CreateDatabase and one credential per scope, through the Platform
// API double (which validates every request and response against the
// contract; no data plane, since real Turso creates databases remotely).
func BenchmarkProvision(b *testing.B) {
	d, _ := newDriver(b, tursotest.PlatformOptions{})
	ctx := context.Background()
	expires := time.Now().Add(24 * time.Hour)
	for b.Loop() {
		created, err := d.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: drivertest.NewDatabaseName(b)})
		if err != nil {
			b.Fatal(err)
		}
		for _, scope := range drivers.Scopes() {
			if _, err := d.IssueCredential(ctx, drivers.IssueCredentialRequest{
				Database: created.Database, Scope: scope, Slot: drivers.SlotA, ExpiresAt: expires,
			}); err != nil {
				b.Fatal(err)
			}
		}
	}
}
