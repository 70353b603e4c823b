package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/keyring/vault/vaulttest"
)

// envplane runs one command in-process with ENVPLANE_DATA_DIR set to dir.
func envplane(t *testing.T, dir string, args ...string) (string, string, error) {
	t.Helper()
	t.Setenv("ENVPLANE_DATA_DIR", dir)
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// TestBootstrapThenServeShareOneStore: bootstrap prints one token once;
// serve on the same data dir accepts it, and a second bootstrap prints
// nothing and changes nothing.
func TestBootstrapThenServeShareOneStore(t *testing.T) {
	dir := t.TempDir()
	out, _, err := envplane(t, dir, "bootstrap", "--org", "acme", "--email", "ops@example.com")
	if err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	token := strings.TrimSpace(out)
	if !strings.HasPrefix(token, cp.TokenPrefix) || strings.Count(out, "\n") != 1 {
		t.Fatalf("bootstrap printed %d lines, want the token alone on one", strings.Count(out, "\n"))
	}
	again, stderr, err := envplane(t, dir, "bootstrap")
	if err != nil || again != "" || !strings.Contains(stderr, "already bootstrapped") {
		t.Fatalf("second bootstrap: stdout %d bytes, stderr %q, err %v", len(again), stderr, err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	t.Setenv("ENVPLANE_LISTEN", addr)
	ctx, cancel := context.WithCancel(context.Background())
	var logs syncWriter
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, &bytes.Buffer{}, &logs) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if strings.Contains(logs.String(), token) {
			t.Error("the server logged the admin token")
		}
		if _, err := os.Stat(filepath.Join(dir, tokenFile)); !os.IsNotExist(err) {
			t.Error("serve wrote admin.token on a store that was already bootstrapped")
		}
	}()
	var resp *http.Response
	for range 100 {
		req, _ := http.NewRequest("GET", "http://"+addr+"/v1/organizations/acme", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if resp, err = http.DefaultClient.Do(req); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("serve never answered: %v", err)
	}
	defer resp.Body.Close()
	var org cp.Organization
	if err := json.NewDecoder(resp.Body).Decode(&org); err != nil || resp.StatusCode != http.StatusOK || org.Slug != "acme" {
		t.Fatalf("GET acme with the bootstrap token: %d, %+v, %v", resp.StatusCode, org, err)
	}
}

// TestServeAutoBootstrapsAnEmptyStore: serve on an empty data dir writes the
// admin token to admin.token (0600) and logs the path, never the token.
func TestServeAutoBootstrapsAnEmptyStore(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("ENVPLANE_DATA_DIR", dir)
	t.Setenv("ENVPLANE_LISTEN", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	var logs syncWriter
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, &bytes.Buffer{}, &logs) }()
	path := filepath.Join(dir, tokenFile)
	var info os.FileInfo
	var err error
	for range 200 {
		if info, err = os.Stat(path); err == nil && info.Size() > 0 {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	cancel()
	if serr := <-done; serr != nil {
		t.Fatalf("serve: %v", serr)
	}
	if err != nil {
		t.Fatalf("admin.token not written: %v", err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("admin.token has mode %o, want 600", info.Mode().Perm())
	}
	token, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(token), cp.TokenPrefix) {
		t.Fatal("admin.token does not hold a token")
	}
	if l := logs.String(); strings.Contains(l, strings.TrimSpace(string(token))) || !strings.Contains(l, path) {
		t.Errorf("the log must name the token's path and never the token")
	}
}

// TestKeysRotateRewrapRetire: a new key version, every credential re-wrapped
// under it, and the old version retired only at full coverage.
func TestKeysRotateRewrapRetire(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := envplane(t, dir, "bootstrap", "--org", "acme"); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	if out, _, err := envplane(t, dir, "keys", "rotate"); err != nil || !strings.Contains(out, "local:2") {
		t.Fatalf("keys rotate: %q, %v", out, err)
	}
	if _, _, err := envplane(t, dir, "keys", "retire", "--below", "2"); err == nil {
		t.Fatal("retired key version 1 while credentials are still wrapped under it")
	}
	out, _, err := envplane(t, dir, "keys", "rewrap")
	if err != nil {
		t.Fatalf("keys rewrap: %v", err)
	}
	var cov cp.KeyCoverage
	if err := json.Unmarshal([]byte(out), &cov); err != nil {
		t.Fatalf("rewrap output: %v", err)
	}
	if cov.CurrentKeyID != "local:2" || cov.Total == 0 || !cov.Complete() {
		t.Fatalf("coverage after rewrap: %+v", cov)
	}
	if _, _, err := envplane(t, dir, "keys", "retire", "--below", "2"); err != nil {
		t.Fatalf("retire at full coverage: %v", err)
	}
	// The store still opens every credential under the remaining key.
	if out, _, err := envplane(t, dir, "keys", "rewrap"); err != nil || !strings.Contains(out, `"current":`+jsonInt(cov.Total)) {
		t.Fatalf("after retiring: %q, %v", out, err)
	}
}

// TestVaultKeyringFromConfiguration: keyring.kind vault, set entirely by
// ENVPLANE_* variables with the token in another variable, provisions with
// Transit-wrapped data keys, and keys rotate, rewrap and retire close a key
// rotation on it; the token never reaches the output.
func TestVaultKeyringFromConfiguration(t *testing.T) {
	addr, token := vaulttest.Start(t)
	dir := t.TempDir()
	t.Setenv("ENVPLANE_KEYRING_KIND", "vault")
	t.Setenv("ENVPLANE_KEYRING_VAULT_ADDRESS", addr)
	t.Setenv("ENVPLANE_KEYRING_VAULT_TOKEN_ENV", "TEST_VAULT_TOKEN")
	t.Setenv("TEST_VAULT_TOKEN", token)
	var seen strings.Builder
	step := func(args ...string) string {
		t.Helper()
		out, stderr, err := envplane(t, dir, args...)
		seen.WriteString(out + stderr)
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
		return out
	}
	step("bootstrap", "--org", "acme")
	var cov cp.KeyCoverage
	if err := json.Unmarshal([]byte(step("keys", "status")), &cov); err != nil || cov.CurrentKeyID != "vault:transit/envplane:v1" || cov.Total == 0 {
		t.Fatalf("keys status: %+v, %v", cov, err)
	}
	step("keys", "rotate")
	if _, _, err := envplane(t, dir, "keys", "retire", "--below", "2"); err == nil {
		t.Fatal("retired version 1 while credentials are wrapped under it")
	}
	if err := json.Unmarshal([]byte(step("keys", "rewrap")), &cov); err != nil || cov.CurrentKeyID != "vault:transit/envplane:v2" || !cov.Complete() {
		t.Fatalf("keys rewrap: %+v, %v", cov, err)
	}
	step("keys", "retire", "--below", "2")
	if strings.Contains(seen.String(), token) {
		t.Fatal("the Vault token appears in envplane's output")
	}
	t.Setenv("ENVPLANE_KEYRING_VAULT_TOKEN_ENV", "")
	if _, _, err := envplane(t, dir, "keys", "status"); err == nil || !strings.Contains(err.Error(), "vault token") {
		t.Fatalf("no token configured: %v, want an error naming the vault token", err)
	}
}

// TestKeysFromTheEnvironmentDoNotRotate: keys in ENVPLANE_MASTER_KEY change
// only with the variable; keys rotate says so.
func TestKeysFromTheEnvironmentDoNotRotate(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("ENVPLANE_MASTER_KEY", "1:"+strings.Repeat("A", 43)+"=")
	if _, _, err := envplane(t, dir, "bootstrap", "--org", "acme"); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	if _, _, err := envplane(t, dir, "keys", "rotate"); err == nil || !strings.Contains(err.Error(), "ENVPLANE_MASTER_KEY") {
		t.Fatalf("keys rotate with keys from the environment: %v, want a refusal naming ENVPLANE_MASTER_KEY", err)
	}
}

// TestProvisioningBoundsAreChecked: the provisioning bounds come from
// ENVPLANE_PROVISIONING_*, and a bound that is not positive is refused,
// naming the setting.
func TestProvisioningBoundsAreChecked(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("ENVPLANE_PROVISIONING_TIMEOUT", "0s")
	if _, _, err := envplane(t, dir, "bootstrap", "--org", "acme"); err == nil || !strings.Contains(err.Error(), "provisioning.timeout") {
		t.Fatalf("provisioning.timeout 0: %v, want a refusal naming it", err)
	}
	t.Setenv("ENVPLANE_PROVISIONING_TIMEOUT", "45s")
	if _, _, err := envplane(t, dir, "bootstrap", "--org", "acme"); err != nil {
		t.Fatalf("provisioning.timeout 45s: %v", err)
	}
}

func jsonInt(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestUnknownConfigKeyIsAnError: a typo in the YAML is refused, not ignored.
func TestUnknownConfigKeyIsAnError(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "envplane.yaml")
	if err := os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\nlisten_adress: oops\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := envplane(t, dir, "migrate", "--config", cfg)
	if err == nil || !strings.Contains(err.Error(), "listen_adress") {
		t.Fatalf("unknown key: %v, want an error naming it", err)
	}
}

// TestExampleConfigsLoad: every file in configs/ is a valid configuration.
func TestExampleConfigsLoad(t *testing.T) {
	files, err := filepath.Glob("../../configs/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example configs: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			root := &cobra.Command{}
			root.Flags().String("config", f, "")
			cfg, err := loadConfig(root.Flags())
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if len(cfg.Targets) == 0 || cfg.DefaultTarget == "" {
				t.Fatalf("no targets: %+v", cfg)
			}
		})
	}
}

// TestTursoDatabaseURLNeedsHostname: a turso target's database_url that
// does not say where the hostname goes would send every environment to one
// database, so it is refused.
func TestTursoDatabaseURLNeedsHostname(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "envplane.yaml")
	yaml := `targets:
  - name: local
    driver: sqlite
    region: local
  - name: edge
    driver: turso
    region: aws-eu-west-1
    turso:
      organization: acme
      group: default
      location: aws-eu-west-1
      token_env: TEST_TURSO_TOKEN
      database_url: https://gateway.internal/db
`
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_TURSO_TOKEN", "not-a-real-token")
	_, _, err := envplane(t, dir, "reconcile", "--config", cfg)
	if err == nil || !strings.Contains(err.Error(), "turso.database_url") {
		t.Fatalf("database_url without {hostname}: %v, want a refusal naming turso.database_url", err)
	}
}

// TestExpiryConfiguration: by default previews expire after 7 days and
// trials after 30; a ttl for a type that never expires, an unknown type, or
// a ttl out of (0, max_ttl] is refused, as is a negative storage quota.
func TestExpiryConfiguration(t *testing.T) {
	t.Setenv("ENVPLANE_CONFIG", "")
	root := &cobra.Command{}
	root.Flags().String("config", "", "")
	cfg, err := loadConfig(root.Flags())
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	svc := cp.New(nil, nil, nil, "")
	if err := configureExpiry(svc, cfg); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	want := map[cp.EnvironmentType]time.Duration{cp.TypePreview: 7 * 24 * time.Hour, cp.TypeTrial: 30 * 24 * time.Hour}
	if diff := cmp.Diff(want, svc.EnvironmentTTL); diff != "" || svc.MaxEnvironmentTTL != 90*24*time.Hour {
		t.Fatalf("default expiry (-want +got):\n%s max %v", diff, svc.MaxEnvironmentTTL)
	}
	for name, mutate := range map[string]func(c *Config){
		"production ttl":    func(c *Config) { c.Environments.TTL = map[string]time.Duration{"production": time.Hour} },
		"default ttl":       func(c *Config) { c.Environments.TTL = map[string]time.Duration{"default": time.Hour} },
		"unknown type":      func(c *Config) { c.Environments.TTL = map[string]time.Duration{"previews": time.Hour} },
		"zero ttl":          func(c *Config) { c.Environments.TTL = map[string]time.Duration{"preview": 0} },
		"ttl beyond max":    func(c *Config) { c.Environments.TTL = map[string]time.Duration{"trial": 91 * 24 * time.Hour} },
		"zero max":          func(c *Config) { c.Environments.MaxTTL = 0 },
		"negative storage":  func(c *Config) { c.MaxStorageMB = -1 },
		"storage too large": func(c *Config) { c.MaxStorageMB = cp.MaxStorageQuotaMB + 1 },
	} {
		bad := *cfg
		mutate(&bad)
		if err := configureExpiry(cp.New(nil, nil, nil, ""), &bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
