// Package storetest is the one conformance suite that every
// controlplane.Store implementation passes: the SQLite and PostgreSQL stores
// run the same tests, so they behave the same way.
package storetest

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/oklog/ulid/v2"

	"github.com/envplane/envplane/controlplane"
)

// Run runs the conformance suite as subtests of t. open must return a fresh,
// empty store each time it is called and close it in a cleanup registered on
// tb. Run fails t for every contract the store breaks; it is safe to call
// from any test, and it writes only to the stores open returns.
func Run(t *testing.T, open func(tb testing.TB) controlplane.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s controlplane.Store)
	}{
		{"Ping", testPing},
		{"Organizations", testOrganizations},
		{"DeleteOrganization", testDeleteOrganization},
		{"Users", testUsers},
		{"OrgMemberships", testOrgMemberships},
		{"DeleteOrgMembershipRemovesEnvironmentRoles", testDeleteOrgMembershipRemovesEnvironmentRoles},
		{"APIKeys", testAPIKeys},
		{"Environments", testEnvironments},
		{"EnvironmentSlugReuse", testEnvironmentSlugReuse},
		{"EnvironmentExpiry", testEnvironmentExpiry},
		{"Databases", testDatabases},
		{"Usage", testUsage},
		{"ClaimUsageConcurrently", testClaimUsageConcurrently},
		{"SumsFollowEveryChange", testSumsFollowEveryChange},
		{"ListEnvironmentDatabases", testListEnvironmentDatabases},
		{"UsageClaimsSkipDeletedEnvironments", testUsageClaimsSkipDeletedEnvironments},
		{"Credentials", testCredentials},
		{"CredentialsDueAndByKey", testCredentialsDueAndByKey},
		{"CountCredentials", testCountCredentials},
		{"PromiseCredential", testPromiseCredential},
		{"PromiseRacesDemotion", testPromiseRacesDemotion},
		{"ResolveRoute", testResolveRoute},
		{"EnvironmentMembers", testEnvironmentMembers},
		{"Operations", testOperations},
		{"ClaimOperations", testClaimOperations},
		{"ClaimOperationsConcurrently", testClaimOperationsConcurrently},
		{"AuditEvents", testAuditEvents},
		{"Changes", testChanges},
		{"ChangesConcurrentAppenders", testChangesConcurrentAppenders},
		{"Receipts", testReceipts},
		{"IdempotencyRecords", testIdempotencyRecords},
		{"Pagination", testPagination},
		{"EnvironmentFilters", testEnvironmentFilters},
		{"ListOperations", testListOperations},
		{"PageLimits", testPageLimits},
		{"Lock", testLock},
		{"WithTxCommits", testWithTxCommits},
		{"WithTxRollsBack", testWithTxRollsBack},
		{"UserAuth", testUserAuth},
		{"UserTOTPByKey", testUserTOTPByKey},
		{"SignInFailures", testSignInFailures},
		{"Sessions", testSessions},
		{"Invitations", testInvitations},
		{"Rollouts", testRollouts},
		{"ClaimRolloutsConcurrently", testClaimRolloutsConcurrently},
		{"Backups", testBackups},
		{"BackupsByKey", testBackupsByKey},
		{"BackupsDue", testBackupsDue},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

func testPing(t *testing.T, s controlplane.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// newID returns a lowercase ULID with the prefix: unique, and increasing in
// the order of calls, as the control plane's ids are.
func newID(prefix string) string { return prefix + strings.ToLower(ulid.Make().String()) }

// at returns d after a fixed instant that has a sub-microsecond part and a
// zone other than UTC, so every round trip checks that the store truncates
// times to microseconds in UTC, consistently.
func at(d time.Duration) time.Time {
	return time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.FixedZone("UTC+2", 2*60*60)).Add(d)
}

// us truncates t to the microsecond, as the store keeps times.
func us(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

// sortedIDs returns the ids in the order lists return them.
func sortedIDs(ids ...string) []string {
	slices.Sort(ids)
	return ids
}

func ptr[T any](v T) *T { return &v }

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatalf("unexpected error: %v", err)
	}
}

// wantCode fails unless err carries the code.
func wantCode(tb testing.TB, err error, code string) {
	tb.Helper()
	if !controlplane.IsCode(err, code) {
		tb.Fatalf("got error %v (code %q), want code %q", err, controlplane.ErrorCode(err), code)
	}
}

// same fails when got differs from want; times compare with Equal.
func same(tb testing.TB, what string, want, got any) {
	tb.Helper()
	if d := cmp.Diff(want, got); d != "" {
		tb.Errorf("%s mismatch (-want +got):\n%s", what, d)
	}
}

// ids returns the ids of items, in order.
func ids[T any](items []T, id func(T) string) []string {
	out := make([]string, len(items))
	for i, v := range items {
		out[i] = id(v)
	}
	return out
}

func orgID(o *controlplane.Organization) string            { return o.ID }
func envID(e *controlplane.Environment) string             { return e.ID }
func keyID(k *controlplane.APIKey) string                  { return k.ID }
func credID(c *controlplane.Credential) string             { return c.ID }
func opID(o *controlplane.Operation) string                { return o.ID }
func eventID(e *controlplane.AuditEvent) string            { return e.ID }
func memberUser(m *controlplane.OrgMembership) string      { return m.UserID }
func envMemberID(m *controlplane.EnvironmentMember) string { return m.ID }

// Fixtures. Each inserts a valid row through q, fails tb on error, and
// returns the value as the store normalized it.

func newOrg(tb testing.TB, q controlplane.Queries, slug string) *controlplane.Organization {
	tb.Helper()
	o := &controlplane.Organization{ID: newID("org_"), Slug: slug, Name: "Org " + slug, MaxEnvironments: 10,
		CreatedAt: at(0), UpdatedAt: at(0)}
	must(tb, q.CreateOrganization(tb.Context(), o))
	return o
}

func newUser(tb testing.TB, q controlplane.Queries, email string) *controlplane.User {
	tb.Helper()
	u := &controlplane.User{ID: newID("usr_"), Email: email, Name: "User " + email, CreatedAt: at(0)}
	must(tb, q.CreateUser(tb.Context(), u))
	return u
}

func newMember(tb testing.TB, q controlplane.Queries, org *controlplane.Organization, u *controlplane.User, role controlplane.OrgRole) {
	tb.Helper()
	must(tb, q.PutOrgMembership(tb.Context(), &controlplane.OrgMembership{OrgID: org.ID, UserID: u.ID, Role: role, CreatedAt: at(0)}))
}

func newEnv(tb testing.TB, q controlplane.Queries, org *controlplane.Organization, slug string) *controlplane.Environment {
	tb.Helper()
	e := &controlplane.Environment{ID: newID("env_"), OrgID: org.ID, Slug: slug, Name: "Env " + slug,
		Type: controlplane.TypeDevelopment, Region: "eu-west", Target: "local", Status: controlplane.StatusActive,
		CreatedBy: "usr_creator", CreatedAt: at(0), UpdatedAt: at(0)}
	must(tb, q.CreateEnvironment(tb.Context(), e))
	return e
}

// deleteEnv makes e a tombstone.
func deleteEnv(tb testing.TB, q controlplane.Queries, e *controlplane.Environment) {
	tb.Helper()
	e.Status, e.DeletedAt, e.UpdatedAt = controlplane.StatusDeleted, ptr(at(time.Hour)), at(time.Hour)
	must(tb, q.SetEnvironmentStatus(tb.Context(), e))
}

func newDatabase(tb testing.TB, q controlplane.Queries, e *controlplane.Environment, target string) *controlplane.Database {
	tb.Helper()
	d := &controlplane.Database{ID: newID("db_"), EnvironmentID: e.ID, Name: newID("env_"), Driver: "sqlite",
		Target: target, Region: "eu-west"}
	must(tb, q.CreateDatabase(tb.Context(), d))
	return d
}

func newCredential(tb testing.TB, q controlplane.Queries, d *controlplane.Database, mutate func(c *controlplane.Credential)) *controlplane.Credential {
	tb.Helper()
	c := &controlplane.Credential{ID: newID("cred_"), DatabaseID: d.ID, Scope: controlplane.Scope("readwrite"), Slot: "a",
		Username: "u_" + d.Name, SecretCipher: []byte{1, 2, 3, 0, 255}, DEKCipher: []byte{9, 8, 7}, KMSKeyID: "local:1",
		Status: controlplane.CredentialActive, IssuedAt: at(0)}
	if mutate != nil {
		mutate(c)
	}
	must(tb, q.CreateCredential(tb.Context(), c))
	return c
}

func newOperation(tb testing.TB, q controlplane.Queries, e *controlplane.Environment, mutate func(op *controlplane.Operation)) *controlplane.Operation {
	tb.Helper()
	op := &controlplane.Operation{ID: newID("op_"), OrgID: e.OrgID, EnvironmentID: e.ID, Kind: controlplane.OpProvision,
		Status: controlplane.OpPending, Step: "reserve", CreatedAt: at(0), UpdatedAt: at(0)}
	if mutate != nil {
		mutate(op)
	}
	must(tb, q.CreateOperation(tb.Context(), op))
	return op
}

func newEvent(tb testing.TB, q controlplane.Queries, orgID string) *controlplane.AuditEvent {
	tb.Helper()
	e := &controlplane.AuditEvent{ID: newID("evt_"), OrgID: orgID, Actor: "usr_actor", Action: "environment.create",
		Target: "env_target", RequestID: "req_1", CreatedAt: at(0)}
	must(tb, q.AppendAuditEvent(tb.Context(), e))
	return e
}

// collectPages walks a list from its first page with pages of size, checks
// that every page but the last is full and that only the last has no next
// cursor, and returns the ids in the order listed.
func collectPages[T any](tb testing.TB, size int, list func(p controlplane.Page) ([]T, string, error), id func(T) string) []string {
	tb.Helper()
	var all []string
	cursor := ""
	for range 1000 {
		items, next, err := list(controlplane.Page{Limit: size, Cursor: cursor})
		if err != nil {
			tb.Fatalf("list page after %q: %v", cursor, err)
		}
		all = append(all, ids(items, id)...)
		if next == "" {
			if len(items) > size {
				tb.Fatalf("last page has %d items, limit %d", len(items), size)
			}
			return all
		}
		if len(items) != size {
			tb.Fatalf("page with a next cursor has %d items, want %d", len(items), size)
		}
		cursor = next
	}
	tb.Fatalf("list never reached its last page")
	return nil
}
