package storetest

import (
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
)

func testDatabases(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a := newOrg(t, s, "a")
	e1, e2, e3 := newEnv(t, s, a, "one"), newEnv(t, s, a, "two"), newEnv(t, s, a, "three")
	d := &controlplane.Database{ID: newID("db_"), EnvironmentID: e1.ID, Name: "env_01hzy", Driver: "postgres", Target: "pg-1",
		Region: "eu-west", URL: "postgres://pg-1.internal:5432/env_01hzy", StorageLimitMB: 1024, SchemaVersion: 3,
		ProvisionedAt: ptr(at(time.Minute)), Metadata: map[string]string{"cluster": "blue"}}
	must(t, s.CreateDatabase(ctx, d))

	got, err := s.GetDatabase(ctx, d.ID)
	must(t, err)
	same(t, "database by id", d, got)
	got, err = s.GetEnvironmentDatabase(ctx, e1.ID)
	must(t, err)
	same(t, "database by environment", d, got)
	_, err = s.GetDatabase(ctx, newID("db_"))
	wantCode(t, err, controlplane.ENOTFOUND)
	_, err = s.GetEnvironmentDatabase(ctx, e2.ID)
	wantCode(t, err, controlplane.ENOTFOUND)

	wantCode(t, s.CreateDatabase(ctx, &controlplane.Database{ID: newID("db_"), EnvironmentID: e1.ID, Name: "env_other",
		Driver: "postgres"}), controlplane.ECONFLICT)
	wantCode(t, s.CreateDatabase(ctx, &controlplane.Database{ID: newID("db_"), EnvironmentID: e2.ID, Name: d.Name,
		Driver: "postgres"}), controlplane.ECONFLICT)
	wantCode(t, s.CreateDatabase(ctx, &controlplane.Database{ID: newID("db_"), EnvironmentID: newID("env_"), Name: "env_orphan",
		Driver: "postgres"}), controlplane.ENOTFOUND)

	// Update saves url, schema_version, the times and metadata, nothing else.
	d.URL, d.SchemaVersion, d.ProvisionedAt = "postgres://pg-2.internal:5432/env_01hzy", 4, ptr(at(2*time.Minute))
	d.LastAccessedAt, d.Metadata = ptr(at(time.Hour)), nil
	d.Target = "pg-9"
	must(t, s.UpdateDatabase(ctx, d))
	got, err = s.GetDatabase(ctx, d.ID)
	must(t, err)
	d.Target = "pg-1"
	same(t, "updated database", d, got)
	wantCode(t, s.UpdateDatabase(ctx, &controlplane.Database{ID: newID("db_")}), controlplane.ENOTFOUND)

	newDatabase(t, s, e2, "pg-1")
	newDatabase(t, s, e3, "pg-2")
	counts, err := s.CountDatabasesByTarget(ctx)
	must(t, err)
	same(t, "databases per target", map[string]int{"pg-1": 2, "pg-2": 1}, counts)
	deleteEnv(t, s, e3)
	counts, err = s.CountDatabasesByTarget(ctx)
	must(t, err)
	same(t, "databases per target without deleted environments", map[string]int{"pg-1": 2}, counts)
}

func testCredentials(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a := newOrg(t, s, "a")
	d1, d2 := newDatabase(t, s, newEnv(t, s, a, "one"), "local"), newDatabase(t, s, newEnv(t, s, a, "two"), "local")

	admin := newCredential(t, s, d1, func(c *controlplane.Credential) {
		c.Scope, c.IssuedAt = "admin", at(0)
	})
	rw := newCredential(t, s, d1, func(c *controlplane.Credential) {
		c.Scope, c.IssuedAt, c.ExpiresAt = "readwrite", at(time.Second), ptr(at(30*24*time.Hour))
	})
	roA := newCredential(t, s, d1, func(c *controlplane.Credential) {
		c.Scope, c.Slot, c.IssuedAt, c.Status, c.ExpiresAt = "readonly", "a", at(2*time.Second), controlplane.CredentialRotating, ptr(at(time.Hour))
	})
	roB := newCredential(t, s, d1, func(c *controlplane.Credential) {
		c.Scope, c.Slot, c.IssuedAt, c.RotatedFrom = "readonly", "b", at(3*time.Second), roA.ID
	})
	revoked := newCredential(t, s, d1, func(c *controlplane.Credential) {
		c.Scope, c.IssuedAt, c.Status, c.RevokedAt = "readwrite", at(-time.Hour), controlplane.CredentialRevoked, ptr(at(-time.Minute))
	})
	elsewhere := newCredential(t, s, d2, nil)

	got, err := s.GetCredential(ctx, d1.ID, roB.ID)
	must(t, err)
	same(t, "credential", roB, got)
	_, err = s.GetCredential(ctx, d2.ID, roB.ID)
	wantCode(t, err, controlplane.ENOTFOUND)
	_, err = s.GetCredential(ctx, d1.ID, elsewhere.ID)
	wantCode(t, err, controlplane.ENOTFOUND)

	all, err := s.ListCredentials(ctx, controlplane.CredentialFilter{DatabaseID: d1.ID})
	must(t, err)
	same(t, "credentials newest first", []string{roB.ID, roA.ID, rw.ID, admin.ID, revoked.ID}, ids(all, credID))
	same(t, "listed credential", roA, all[1])
	readonly, err := s.ListCredentials(ctx, controlplane.CredentialFilter{DatabaseID: d1.ID, Scope: "readonly"})
	must(t, err)
	same(t, "readonly credentials", []string{roB.ID, roA.ID}, ids(readonly, credID))
	working, err := s.ListCredentials(ctx, controlplane.CredentialFilter{DatabaseID: d1.ID,
		Statuses: []controlplane.CredentialStatus{controlplane.CredentialActive, controlplane.CredentialRotating}})
	must(t, err)
	same(t, "active and rotating credentials", []string{roB.ID, roA.ID, rw.ID, admin.ID}, ids(working, credID))
	rwRevoked, err := s.ListCredentials(ctx, controlplane.CredentialFilter{DatabaseID: d1.ID, Scope: "readwrite",
		Statuses: []controlplane.CredentialStatus{controlplane.CredentialRevoked}})
	must(t, err)
	same(t, "revoked readwrite credentials", []string{revoked.ID}, ids(rwRevoked, credID))

	// Update saves status and times, nothing else; Rewrap the key only.
	keyID, secretCipher, dekCipher, username := roA.KMSKeyID, roA.SecretCipher, roA.DEKCipher, roA.Username
	roA.Status, roA.RevokedAt, roA.ExpiresAt = controlplane.CredentialRevoked, ptr(at(time.Hour)), ptr(at(time.Hour))
	roA.KMSKeyID, roA.SecretCipher, roA.DEKCipher = "local:2", []byte("new secret cipher"), []byte("new dek cipher")
	roA.Username = "changed"
	must(t, s.UpdateCredential(ctx, roA))
	got, err = s.GetCredential(ctx, d1.ID, roA.ID)
	must(t, err)
	roA.KMSKeyID, roA.SecretCipher, roA.DEKCipher, roA.Username = keyID, secretCipher, dekCipher, username
	same(t, "updated credential", roA, got)

	rewrapped := *roA
	rewrapped.KMSKeyID, rewrapped.DEKCipher, rewrapped.Status, rewrapped.SecretCipher = "local:9", []byte("dek under 9"), controlplane.CredentialActive, []byte("ignored")
	wantCode(t, s.RewrapCredential(ctx, &rewrapped, "local:8"), controlplane.ECONFLICT)
	must(t, s.RewrapCredential(ctx, &rewrapped, keyID))
	got, err = s.GetCredential(ctx, d1.ID, roA.ID)
	must(t, err)
	roA.KMSKeyID, roA.DEKCipher = "local:9", []byte("dek under 9")
	same(t, "rewrapped credential (status and secret cipher kept)", roA, got)
	gone := rewrapped
	gone.ID = newID("cred_")
	wantCode(t, s.RewrapCredential(ctx, &gone, "local:9"), controlplane.ENOTFOUND)
	moved := *roB
	moved.DatabaseID = d2.ID
	wantCode(t, s.UpdateCredential(ctx, &moved), controlplane.ENOTFOUND)

	wantCode(t, s.CreateCredential(ctx, &controlplane.Credential{ID: newID("cred_"), DatabaseID: newID("db_"), Scope: "admin",
		Slot: "a", Username: "x", SecretCipher: []byte{1}, DEKCipher: []byte{1}, KMSKeyID: "k", Status: controlplane.CredentialActive,
		IssuedAt: at(0)}), controlplane.ENOTFOUND)
	wantCode(t, s.CreateCredential(ctx, &controlplane.Credential{ID: newID("cred_"), DatabaseID: d1.ID, Scope: "superuser",
		Slot: "a", Username: "x", SecretCipher: []byte{1}, DEKCipher: []byte{1}, KMSKeyID: "k", Status: controlplane.CredentialActive,
		IssuedAt: at(0)}), controlplane.EINVALID)
}

func testCredentialsDueAndByKey(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a := newOrg(t, s, "a")
	d := newDatabase(t, s, newEnv(t, s, a, "one"), "local")
	rotating := func(expires time.Duration, key string) *controlplane.Credential {
		return newCredential(t, s, d, func(c *controlplane.Credential) {
			c.Status, c.ExpiresAt, c.KMSKeyID = controlplane.CredentialRotating, ptr(at(expires)), key
		})
	}
	// Created out of order, so "oldest first" cannot come from ids.
	dueLater := rotating(0, "local:1") // grace ends exactly now: due
	dueFirst := rotating(-5*time.Minute, "local:2")
	rotating(time.Microsecond, "local:2") // grace ends just after now
	rotating(5*time.Minute, "local:1")
	expired := newCredential(t, s, d, func(c *controlplane.Credential) { // expired, but active
		c.ExpiresAt, c.KMSKeyID = ptr(at(-time.Hour)), "local:2"
	})
	expiring := newCredential(t, s, d, func(c *controlplane.Credential) {
		c.ExpiresAt, c.KMSKeyID = ptr(at(time.Hour)), "local:1"
	})
	newCredential(t, s, d, func(c *controlplane.Credential) { // expires later than asked
		c.ExpiresAt, c.KMSKeyID = ptr(at(3*time.Hour)), "local:1"
	})
	newCredential(t, s, d, func(c *controlplane.Credential) { // never expires
		c.KMSKeyID = "local:1"
	})
	newCredential(t, s, d, func(c *controlplane.Credential) {
		c.Status, c.ExpiresAt, c.RevokedAt, c.KMSKeyID = controlplane.CredentialRevoked, ptr(at(-time.Hour)), ptr(at(-time.Hour)), "local:1"
	})

	due, err := s.ListCredentialsDue(ctx, at(0), 10)
	must(t, err)
	same(t, "due credentials", []string{dueFirst.ID, dueLater.ID}, ids(due, credID))
	same(t, "due credential", dueFirst, due[0])
	due, err = s.ListCredentialsDue(ctx, at(0), 1)
	must(t, err)
	same(t, "first due credential", []string{dueFirst.ID}, ids(due, credID))

	soon, err := s.ListCredentialsExpiring(ctx, at(2*time.Hour), 10)
	must(t, err)
	same(t, "active credentials expiring within 2h", []string{expired.ID, expiring.ID}, ids(soon, credID))
	soon, err = s.ListCredentialsExpiring(ctx, at(2*time.Hour), 1)
	must(t, err)
	same(t, "first expiring credential", []string{expired.ID}, ids(soon, credID))

	counts, err := s.CountCredentialsByKey(ctx)
	must(t, err)
	same(t, "credentials per key", map[string]int{"local:1": 5, "local:2": 3}, counts)
	stale, err := s.ListCredentialsByKey(ctx, "local:2", 10)
	must(t, err)
	if len(stale) != 5 {
		t.Fatalf("ListCredentialsByKey(not local:2) returned %d credentials, want the 5 live ones under local:1", len(stale))
	}
	for _, c := range stale {
		if c.KMSKeyID != "local:1" || c.Status == controlplane.CredentialRevoked {
			t.Errorf("ListCredentialsByKey returned %s under %s with status %s", c.ID, c.KMSKeyID, c.Status)
		}
	}
	one, err := s.ListCredentialsByKey(ctx, "local:2", 1)
	must(t, err)
	if len(one) != 1 {
		t.Errorf("ListCredentialsByKey with limit 1 returned %d", len(one))
	}
}
