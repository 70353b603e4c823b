package controlplane_test

import (
	"context"
	"errors"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
)

// TestServiceRefusesTextNoStoreCanHold calls the service directly, as the
// CLI and Go callers do, with NUL and bytes that are not UTF-8 in requests,
// references and cursors: every answer is a 4xx code naming the field, never
// an internal error, on both stores, and nothing is created.
func TestServiceRefusesTextNoStoreCanHold(t *testing.T) {
	for name, store := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			svc := cp.New(store, nil, nil, "")
			admin := &cp.Principal{KeyID: "key_admin", PlatformAdmin: true}
			now := time.Now().UTC()
			org := &cp.Organization{ID: cp.NewID("org"), Slug: "acme", Name: "acme", MaxEnvironments: 10, CreatedAt: now, UpdatedAt: now}
			if err := store.CreateOrganization(cp.WithPlatformScope(ctx), org); err != nil {
				t.Fatalf("create organization: %v", err)
			}
			nul, latin1 := "a\x00b", "caf\xe9"
			check := func(what string, err error, code, field string) {
				t.Helper()
				if !cp.IsCode(err, code) {
					t.Errorf("%s: %v (code %q), want %q", what, err, cp.ErrorCode(err), code)
					return
				}
				if field == "" {
					return
				}
				var e *cp.Error
				if !errors.As(err, &e) || len(e.Fields) == 0 || e.Fields[0].Field != field {
					t.Errorf("%s: %v does not name %s", what, err, field)
				}
			}
			_, _, err := svc.CreateOrganization(ctx, admin, cp.CreateOrganizationRequest{Slug: "other", Name: nul})
			check("organization name", err, cp.EINVALID, "name")
			_, err = svc.UpdateOrganization(ctx, admin, "acme", cp.UpdateOrganizationRequest{Name: &latin1})
			check("organization rename", err, cp.EINVALID, "name")
			_, err = svc.AddMember(ctx, admin, "acme", cp.AddMemberRequest{Email: "eve@example.com", Name: latin1, Role: cp.OrgMember})
			check("member name", err, cp.EINVALID, "name")
			_, err = svc.CreateAPIKey(ctx, admin, "acme", cp.CreateAPIKeyRequest{Name: nul})
			check("key name", err, cp.EINVALID, "name")
			_, _, _, err = svc.CreateEnvironment(ctx, admin, "", cp.CreateEnvironmentRequest{Organization: "acme\x00", Slug: "qa", Type: cp.TypeTest})
			check("organization in the request", err, cp.EINVALID, "organization")
			_, err = svc.Bootstrap(ctx, cp.BootstrapRequest{Email: "ops\x00@example.com"})
			check("bootstrap email", err, cp.EINVALID, "email")

			for _, ref := range []string{nul, latin1} {
				_, err = svc.GetOrganization(ctx, admin, ref)
				check("organization ref", err, cp.ENOTFOUND, "")
				_, err = svc.GetEnvironment(ctx, admin, "acme", ref)
				check("environment ref", err, cp.ENOTFOUND, "")
				_, err = svc.ResolveConnectionByID(ctx, admin, ref, cp.Scope("readonly"))
				check("environment id", err, cp.ENOTFOUND, "")
				_, err = svc.GetAPIKey(ctx, admin, "acme", ref)
				check("key id", err, cp.ENOTFOUND, "")
				_, err = svc.GetOperation(ctx, admin, ref)
				check("operation id", err, cp.ENOTFOUND, "")
				check("member ref", svc.RemoveMember(ctx, admin, "acme", ref+"@example.com"), cp.ENOTFOUND, "")
			}
			for _, cursor := range []string{"' OR 1=1--", "garbage", "org_\x00", "usr_" + latin1} {
				_, _, err = svc.ListOrganizations(ctx, admin, cp.Page{Cursor: cursor})
				check("organizations cursor", err, cp.EMALFORMED, "cursor")
				_, _, err = svc.ListMembers(ctx, admin, "acme", cp.Page{Cursor: cursor})
				check("members cursor", err, cp.EMALFORMED, "cursor")
				_, _, err = svc.ListAuditEvents(ctx, admin, "acme", cp.Page{Cursor: cursor})
				check("audit cursor", err, cp.EMALFORMED, "cursor")
			}

			orgs, _, err := store.ListOrganizations(cp.WithPlatformScope(ctx), nil, cp.Page{})
			if err != nil || len(orgs) != 1 {
				t.Fatalf("%d organizations (%v), want acme alone", len(orgs), err)
			}
			if users, _, err := store.ListOrgMemberships(cp.WithPlatformScope(ctx), org.ID, cp.Page{}); err != nil || len(users) != 0 {
				t.Fatalf("%d members (%v), want none", len(users), err)
			}
		})
	}
}
