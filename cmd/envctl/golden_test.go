package main

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/httpapi"
	"github.com/envplane/envplane/drivers"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestTablesGolden pins what people read: each command's table, against
// testdata/<name>.golden (refresh with go test -run TestTablesGolden -update).
func TestTablesGolden(t *testing.T) {
	at := time.Date(2026, 11, 22, 6, 30, 0, 0, time.UTC)
	later := at.Add(24 * time.Hour)
	tables := int64(4)
	tests := []struct {
		name, method, path string
		body               any
		args               []string
	}{
		{"me", "GET", "/v1/me", cp.Me{KeyID: "key_01", User: &cp.User{ID: "usr_01", Email: "ada@example.com"}, PlatformAdmin: true,
			Organizations: []cp.MeMembership{{ID: "org_01", Slug: "acme", Name: "Acme", Role: cp.OrgOwner}, {ID: "org_02", Slug: "globex", Name: "Globex", Role: cp.OrgMember}}},
			[]string{"me"}},
		{"env-get", "GET", "/v1/organizations/acme/environments/dev", &cp.EnvironmentView{
			Environment: &cp.Environment{ID: "env_01", OrgID: "org_01", Slug: "dev", Name: "Development", Type: cp.TypeDevelopment, Status: cp.StatusActive, Region: "local", Target: "local", CreatedAt: at, UpdatedAt: at},
			Database:    &cp.DatabaseView{Driver: "sqlite", Target: "local", Region: "local", DatabaseName: "env_01abcdefghjkmnpqrstvwxyz0", SchemaVersion: 2, ProvisionedAt: &at}},
			[]string{"env", "get", "dev", "--org", "acme"}},
		{"connection", "GET", "/v1/organizations/acme/environments/dev/connection", httpapi.RevealConnection(&cp.Connection{
			EnvironmentID: "env_01", Organization: "acme", Environment: "dev", Driver: "postgres", Scope: drivers.ScopeReadWrite,
			DSN: "postgres://u:secret@db:5432/env_01", Host: "db", Port: 5432, Database: "env_01", Username: "env_01_readwrite_a", Secret: "secret",
			CredentialID: "cred_01", ExpiresAt: &later, RefreshAfter: at.Add(time.Hour)}),
			[]string{"connection", "acme", "dev"}},
		{"cred-list", "GET", "/v1/organizations/acme/environments/dev/credentials", cp.List[*cp.Credential]{Items: []*cp.Credential{
			{ID: "cred_02", Scope: drivers.ScopeReadWrite, Slot: drivers.SlotB, Username: "env_01_readwrite_b", Status: cp.CredentialActive, IssuedAt: at, RotatedFrom: "cred_01"},
			{ID: "cred_01", Scope: drivers.ScopeReadWrite, Slot: drivers.SlotA, Username: "env_01_readwrite_a", Status: cp.CredentialRotating, IssuedAt: at.Add(-time.Hour), ExpiresAt: &later},
		}}, []string{"cred", "list", "dev", "--org", "acme"}},
		{"schema-status", "GET", "/v1/organizations/acme/environments/dev/schema", cp.SchemaStatus{SchemaVersion: 2,
			Applied: []cp.SchemaMigration{{Namespace: "system", Version: 1, Name: "meta", Checksum: "c1", AppliedAt: &at}},
			Pending: []cp.SchemaMigration{{Namespace: "app", Version: 3, Name: "add_orders", Checksum: "c3"}},
			Drift:   []cp.SchemaMigration{{Namespace: "app", Version: 2, Name: "add_users", Checksum: "c2x", AppliedAt: &at}}},
			[]string{"schema", "status", "dev", "--org", "acme"}},
		{"env-usage", "GET", "/v1/organizations/acme/environments/dev/usage", cp.EnvironmentUsage{EnvironmentID: "env_01", Environment: "dev", Type: cp.TypeDevelopment,
			StorageLimitMB: 1, OverLimit: true, Usage: &cp.Usage{SizeBytes: 3 << 20, Tables: &tables, MeasuredAt: at}},
			[]string{"env", "usage", "dev", "--org", "acme"}},
		{"org-usage", "GET", "/v1/organizations/acme/usage", cp.OrganizationUsage{Organization: "acme", SizeBytes: 5 << 20, OverLimit: 1, Types: []*cp.UsageTotal{
			{Type: cp.TypeDevelopment, Environments: 2, Measured: 2, SizeBytes: 3 << 20, Tables: 4, OverLimit: 1},
			{Type: cp.TypeStaging, Environments: 1, Measured: 1, SizeBytes: 2 << 20, Tables: 0},
		}}, []string{"org", "usage", "acme"}},
		{"op-get", "GET", "/v1/operations/op_01", cp.Operation{ID: "op_01", OrgID: "org_01", EnvironmentID: "env_01", Kind: cp.OpProvision, Status: cp.OpFailed, Step: "create_database", Attempts: 3, Error: "target unavailable", CreatedAt: at, UpdatedAt: at},
			[]string{"op", "get", "op_01"}},
		{"op-list", "GET", "/v1/organizations/acme/operations", cp.List[*cp.Operation]{Items: []*cp.Operation{
			{ID: "op_02", OrgID: "org_01", EnvironmentID: "env_01", Kind: cp.OpRotate, Status: cp.OpRunning, Step: "issue", Attempts: 1, CreatedAt: later, UpdatedAt: later},
			{ID: "op_01", OrgID: "org_01", EnvironmentID: "env_01", Kind: cp.OpProvision, Status: cp.OpFailed, Step: "create_database", Attempts: 3, Error: "target unavailable", CreatedAt: at, UpdatedAt: at},
		}}, []string{"op", "list", "--org", "acme"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t)
			f.on(tt.method, tt.path, answer{body: tt.body})
			out, stderr, err := envctl(t, f, tt.args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			golden := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if out != string(want) {
				t.Errorf("table differs from %s:\n--- got\n%s--- want\n%s", golden, out, want)
			}
		})
	}
}
