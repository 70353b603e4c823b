package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
)

// Benchmark measures the store's hot paths against the store that open
// returns (a fresh one per sub-benchmark): the key lookup every API request
// makes, the environment lookup every connection request makes, the audit
// append every mutation makes, and one reconciler cycle (claim, then finish).
func Benchmark(b *testing.B, open func(tb testing.TB) controlplane.Store) {
	b.Run("GetAPIKeyByHash", func(b *testing.B) {
		s := open(b)
		org := newOrg(b, s, "a")
		var hashes []string
		for i := range 100 {
			k := &controlplane.APIKey{ID: newID("key_"), OrgID: org.ID, Name: "k", Prefix: "ep_",
				Hash: fmt.Sprintf("hash-%03d", i), CreatedAt: at(0)}
			must(b, s.CreateAPIKey(b.Context(), k))
			hashes = append(hashes, k.Hash)
		}
		i := 0
		for b.Loop() {
			if _, err := s.GetAPIKeyByHash(b.Context(), hashes[i%len(hashes)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("GetEnvironmentBySlug", func(b *testing.B) {
		s := open(b)
		org := newOrg(b, s, "a")
		for i := range 100 {
			newEnv(b, s, org, fmt.Sprintf("env-%03d", i))
		}
		i := 0
		for b.Loop() {
			if _, err := s.GetEnvironment(b.Context(), org.ID, fmt.Sprintf("env-%03d", i%100)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("AppendAuditEvent", func(b *testing.B) {
		s := open(b)
		org := newOrg(b, s, "a")
		for b.Loop() {
			newEvent(b, s, org.ID)
		}
	})
	b.Run("ClaimAndFinishOperation", func(b *testing.B) {
		s := open(b)
		e := newEnv(b, s, newOrg(b, s, "a"), "dev")
		for b.Loop() {
			b.StopTimer()
			newOperation(b, s, e, nil)
			b.StartTimer()
			ops, err := s.ClaimOperations(b.Context(), "bench", at(0), at(time.Minute), 1)
			if err != nil || len(ops) != 1 {
				b.Fatalf("claim: %d operations, %v", len(ops), err)
			}
			op := ops[0]
			op.Status, op.UpdatedAt = controlplane.OpSucceeded, at(time.Second)
			if err := s.UpdateOperation(b.Context(), op); err != nil {
				b.Fatal(err)
			}
		}
	})
}
