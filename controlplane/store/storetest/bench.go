package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
)

// Benchmark measures the store's hot paths against the store that open
// returns (a fresh one per sub-benchmark): the key lookup every API request
// makes, the environment lookup every connection request makes, the one read
// of a router resolve that missed its cache, the receipts a replica writes
// every second, the audit append every mutation makes, and one reconciler
// cycle (claim, then finish).
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
	b.Run("ResolveRoute", func(b *testing.B) {
		s := open(b)
		org := newOrg(b, s, "a")
		u := newUser(b, s, "member@example.com")
		newMember(b, s, org, u, controlplane.OrgMember)
		const envs = 100
		for i := range envs {
			e := newEnv(b, s, org, fmt.Sprintf("env-%03d", i))
			d := newDatabase(b, s, e, "local")
			// A database's history: revoked credentials, one rotating, the
			// active ones of each scope.
			for j := range 8 {
				newCredential(b, s, d, func(c *controlplane.Credential) {
					c.Status, c.IssuedAt, c.RevokedAt = controlplane.CredentialRevoked, at(time.Duration(j)*time.Hour), ptr(at(time.Duration(j+1)*time.Hour))
				})
			}
			newCredential(b, s, d, func(c *controlplane.Credential) {
				c.Status, c.IssuedAt, c.ExpiresAt = controlplane.CredentialRotating, at(9*time.Hour), ptr(at(10*time.Hour))
			})
			for _, scope := range []controlplane.Scope{"admin", "readwrite", "readonly"} {
				newCredential(b, s, d, func(c *controlplane.Credential) { c.Scope, c.IssuedAt = scope, at(10*time.Hour) })
			}
			if i%2 == 0 {
				must(b, s.PutEnvironmentMember(b.Context(), &controlplane.EnvironmentMember{ID: newID("em_"), EnvironmentID: e.ID,
					OrgID: org.ID, UserID: u.ID, Role: controlplane.EnvUser, CreatedAt: at(0)}))
			}
		}
		i := 0
		for b.Loop() {
			r, err := s.ResolveRoute(b.Context(), controlplane.RouteQuery{OrgRef: "a", EnvRef: fmt.Sprintf("env-%03d", i%envs),
				Scope: "readwrite", UserID: u.ID})
			if err != nil || r.Credential == nil {
				b.Fatalf("resolve: %+v, %v", r, err)
			}
			i++
		}
	})
	b.Run("RecordReceipts", func(b *testing.B) {
		s := open(b)
		org := newOrg(b, s, "a")
		var envs []*controlplane.Environment
		for i := range 10 {
			envs = append(envs, newEnv(b, s, org, fmt.Sprintf("env-%03d", i)))
		}
		// One flush of a busy replica: 300 rows, each a new one or an
		// addition to the last flush's.
		const batch = 300
		minute := 0
		for b.Loop() {
			b.StopTimer()
			rs := make([]*controlplane.Receipt, batch)
			for i := range rs {
				rs[i] = newReceipt(envs[i%len(envs)], fmt.Sprintf("key_%03d", i), "cred_1", at(time.Duration(minute/2)*time.Minute))
			}
			minute++
			b.StartTimer()
			must(b, s.RecordReceipts(b.Context(), rs))
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
