package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/envplane/envplane/drivers"
	"github.com/envplane/envplane/drivers/postgres"
)

// BenchmarkCreateDatabaseFloor is the raw floor provisioning is measured
// against: CREATE DATABASE with the driver's strategy and six CREATE ROLE in
// one round trip, by plain SQL. Dropping is not timed.
func BenchmarkCreateDatabaseFloor(b *testing.B) {
	f := newFixture(b, serverURL(b))
	for b.Loop() {
		floorOnce(b, f)
	}
}

// floorOnce times one floor provisioning and undoes it untimed.
func floorOnce(b *testing.B, f *fixture) time.Duration {
	b.Helper()
	ctx := context.Background()
	name := f.name()
	var roles strings.Builder
	for _, r := range expectedRoles(name)[1:] {
		roles.WriteString("CREATE ROLE " + q(r) + " NOLOGIN;")
	}
	start := time.Now()
	if _, err := f.admin.Exec(ctx, "CREATE DATABASE "+q(name)+" "+"TEMPLATE template0 STRATEGY WAL_LOG"); err != nil {
		b.Fatalf("create database: %v", err)
	}
	if _, err := f.admin.Exec(ctx, roles.String()); err != nil {
		b.Fatalf("create roles: %v", err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	f.exec("DROP DATABASE " + q(name))
	f.exec("DROP ROLE " + strings.Join(quoteAll(expectedRoles(name)[1:]), ", "))
	b.StartTimer()
	return elapsed
}

func quoteAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = q(n)
	}
	return out
}

// BenchmarkCreateDatabaseStrategy measures CREATE DATABASE alone for each
// strategy and template, the measurement behind ADR 0004. The four variants
// take turns within each iteration, so load from other work on the server
// falls on all of them alike; each reports its median as <variant>-ms.
func BenchmarkCreateDatabaseStrategy(b *testing.B) {
	f := newFixture(b, serverURL(b))
	ctx := context.Background()
	variants := []string{
		"TEMPLATE template0 STRATEGY WAL_LOG", "TEMPLATE template1 STRATEGY WAL_LOG",
		"TEMPLATE template0 STRATEGY FILE_COPY", "TEMPLATE template1 STRATEGY FILE_COPY",
	}
	samples := make([][]time.Duration, len(variants))
	for b.Loop() {
		for i, v := range variants {
			name := f.name()
			start := time.Now()
			if _, err := f.admin.Exec(ctx, "CREATE DATABASE "+q(name)+" "+v); err != nil {
				b.Fatalf("create database %s: %v", v, err)
			}
			samples[i] = append(samples[i], time.Since(start))
			b.StopTimer()
			f.exec("DROP DATABASE " + q(name))
			b.StartTimer()
		}
	}
	for i, v := range variants {
		unit := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(v, "TEMPLATE "), " STRATEGY ", "-"))
		b.ReportMetric(medianMS(samples[i]), unit+"-ms")
	}
}

// BenchmarkProvisionAgainstFloor runs the floor and a provisioning in turn
// within each iteration and reports both medians and the median of their
// per-pair ratio, the figure the 1.5× goal is about, so that load from other
// work on a shared server does not fall on one side only. overhead-ms, the
// median of provision minus floor, is the part the driver adds; it moves
// far less than CREATE DATABASE does with the server's WAL and checkpoints. It runs with the
// default SCRAM iteration count and with one iteration, the lever ADR 0004
// weighs.
func BenchmarkProvisionAgainstFloor(b *testing.B) {
	for _, iterations := range []int{4096, 1} {
		b.Run(fmt.Sprintf("scram-iterations=%d", iterations), func(b *testing.B) {
			f := newFixture(b, serverURL(b), func(c *postgres.Config) { c.SCRAMIterations = iterations })
			var floors, provisions, overheads []time.Duration
			var ratios []float64
			for b.Loop() {
				fl := floorOnce(b, f)
				pr := provisionOnce(b, f)
				floors, provisions = append(floors, fl), append(provisions, pr)
				overheads = append(overheads, pr-fl)
				ratios = append(ratios, float64(pr)/float64(fl))
			}
			slices.Sort(ratios)
			b.ReportMetric(medianMS(floors), "floor-ms")
			b.ReportMetric(medianMS(provisions), "provision-ms")
			b.ReportMetric(medianMS(overheads), "overhead-ms")
			b.ReportMetric(ratios[len(ratios)/2], "ratio")
		})
	}
}

func medianMS(ds []time.Duration) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[len(s)/2]) / float64(time.Millisecond)
}

// BenchmarkProvision is what the provisioning saga asks of the driver:
// CreateDatabase and a credential for each scope. Dropping is not timed.
func BenchmarkProvision(b *testing.B) {
	f := newFixture(b, serverURL(b))
	for b.Loop() {
		provisionOnce(b, f)
	}
}

// provisionOnce times one provisioning through the driver and undoes it untimed.
func provisionOnce(b *testing.B, f *fixture) time.Duration {
	b.Helper()
	ctx := context.Background()
	start := time.Now()
	resp, err := f.driver.CreateDatabase(ctx, drivers.CreateDatabaseRequest{Name: f.name()})
	if err != nil {
		b.Fatalf("create: %v", err)
	}
	for _, s := range drivers.Scopes() {
		if _, err := f.driver.IssueCredential(ctx, drivers.IssueCredentialRequest{
			Database: resp.Database, Scope: s, Slot: drivers.SlotA,
		}); err != nil {
			b.Fatal("issue failed")
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if _, err := f.driver.DropDatabase(ctx, drivers.DropDatabaseRequest{Database: resp.Database}); err != nil {
		b.Fatalf("drop: %v", err)
	}
	b.StartTimer()
	return elapsed
}

// BenchmarkRotate is one rotation of a scope: issue on the standby slot,
// then revoke the slot it replaces (the end of the grace period).
func BenchmarkRotate(b *testing.B) {
	f := newFixture(b, serverURL(b))
	db := f.create()
	ctx := context.Background()
	active := f.issue(db, drivers.ScopeReadWrite, drivers.SlotA, time.Time{})
	for b.Loop() {
		resp, err := f.driver.IssueCredential(ctx, drivers.IssueCredentialRequest{
			Database: db, Scope: active.Scope, Slot: active.Slot.Other(), ExpiresAt: time.Now().Add(24 * time.Hour),
		})
		if err != nil {
			b.Fatal("issue failed")
		}
		if _, err := f.driver.RevokeCredential(ctx, drivers.RevokeCredentialRequest{
			Database: db, Scope: active.Scope, Slot: active.Slot, Username: active.Username,
		}); err != nil {
			b.Fatalf("revoke: %v", err)
		}
		active = resp.Credential
	}
}
