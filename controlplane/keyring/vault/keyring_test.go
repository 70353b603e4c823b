package vault_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/keyring/vault"
	"github.com/envplane/envplane/controlplane/keyring/vault/vaulttest"
	"github.com/envplane/envplane/drivers"
)

// keyringPolicy is the least a keyring's token needs for wrapping,
// unwrapping and rewrapping under transit/keys/envplane; rotation and
// retirement (operator commands) need more.
const keyringPolicy = `
path "transit/encrypt/envplane" { capabilities = ["update"] }
path "transit/decrypt/envplane" { capabilities = ["update"] }
path "transit/rewrap/envplane"  { capabilities = ["update"] }
path "transit/keys/envplane"    { capabilities = ["read"] }
`

// server is a running vaultdev with an admin client holding its root token.
type server struct {
	addr  string
	root  string
	admin *api.Client
	vs    *vaulttest.Server
}

func startServer(t *testing.T) *server {
	t.Helper()
	vs := vaulttest.StartServer(t)
	addr, root := vs.URL, vs.Token
	admin, err := api.NewClient(&api.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	admin.SetToken(root)
	s := &server{addr: addr, root: root, admin: admin, vs: vs}
	s.write(t, "sys/policies/acl/envplane", map[string]any{"policy": keyringPolicy})
	return s
}

func (s *server) write(t *testing.T, path string, data map[string]any) *api.Secret {
	t.Helper()
	secret, err := s.admin.Logical().Write(path, data)
	if err != nil {
		t.Fatalf("vault write %s: %v", path, err)
	}
	return secret
}

// token creates a child token with the keyring policy and the options.
func (s *server) token(t *testing.T, opts map[string]any) string {
	t.Helper()
	data := map[string]any{"policies": []string{"envplane"}}
	for k, v := range opts {
		data[k] = v
	}
	return s.write(t, "auth/token/create", data).Auth.ClientToken
}

// config returns a keyring config for the root token that creates the key.
func (s *server) config() vault.Config {
	return vault.Config{Address: s.addr, Token: drivers.Secret(s.root), CreateKey: true}
}

// createKey creates the Transit key envplane (what a keyring with
// CreateKey does on first use), for keyrings whose token may not create it.
func (s *server) createKey(t *testing.T) {
	t.Helper()
	if err := newKeyring(t, s.config()).Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
}

func newKeyring(t *testing.T, cfg vault.Config) *vault.Keyring {
	t.Helper()
	kr, err := vault.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { kr.Close() })
	return kr
}

func dataKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

func wrap(t *testing.T, kr *vault.Keyring, dek []byte) ([]byte, string) {
	t.Helper()
	wrapped, keyID, err := kr.Wrap(context.Background(), dek)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	return wrapped, keyID
}

func assertUnwraps(t *testing.T, kr *vault.Keyring, wrapped []byte, keyID string, want []byte) {
	t.Helper()
	got, err := kr.Unwrap(context.Background(), wrapped, keyID)
	if err != nil {
		t.Fatalf("Unwrap(%s): %v", keyID, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Unwrap(%s) returned another data key", keyID)
	}
}

func rotate(t *testing.T, kr *vault.Keyring) string {
	t.Helper()
	id, err := kr.Rotate(context.Background())
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	return id
}

// assertClean fails if an error message shows any of the secrets.
func assertClean(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if !strings.HasPrefix(err.Error(), "vault keyring: ") {
		t.Errorf("error does not name the keyring: %v", err)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error shows a secret: %v", err)
		}
	}
}

func TestWrapUnwrap(t *testing.T) {
	s := startServer(t)
	kr := newKeyring(t, s.config())
	var _ controlplane.Keyring = kr

	dek := dataKey(t)
	wrapped, keyID := wrap(t, kr, dek)
	if keyID != "vault:transit/envplane:v1" {
		t.Errorf("Wrap key id = %q, want vault:transit/envplane:v1", keyID)
	}
	if !bytes.HasPrefix(wrapped, []byte("vault:v1:")) {
		t.Errorf("wrapped key is not a Transit v1 ciphertext")
	}
	if bytes.Contains(wrapped, dek) || bytes.Contains(wrapped, []byte(base64.StdEncoding.EncodeToString(dek))) {
		t.Error("the wrapped key contains the data key")
	}
	again, _ := wrap(t, kr, dek)
	if bytes.Equal(wrapped, again) {
		t.Error("two wraps of the same data key are equal")
	}
	assertUnwraps(t, kr, wrapped, keyID, dek)
	assertUnwraps(t, kr, again, keyID, dek)

	if id, err := kr.CurrentKeyID(context.Background()); err != nil || id != keyID {
		t.Errorf("CurrentKeyID = %q, %v; want %s", id, err, keyID)
	}
}

func TestKeyCreatedOnFirstStart(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()

	cfg := s.config()
	cfg.CreateKey = false
	stopped := cfg
	stopped.Now = func() time.Time { return time.Unix(0, 0) } // no retry is due
	absent := newKeyring(t, stopped)
	if err := absent.Check(ctx); !errors.Is(err, vault.ErrKeyNotFound) {
		t.Fatalf("Check without the key and without CreateKey = %v, want ErrKeyNotFound", err)
	}
	if _, _, err := absent.Wrap(ctx, dataKey(t)); !errors.Is(err, vault.ErrKeyNotFound) || !errors.Is(err, vault.ErrUnavailable) {
		t.Fatalf("Wrap right after = %v, want the paced ErrUnavailable carrying ErrKeyNotFound", err)
	}

	first := newKeyring(t, s.config())
	info, err := first.Key(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != vault.KeyType || info.LatestVersion != 1 || info.MinDecryptionVersion != 1 {
		t.Errorf("created key = %+v, want %s at version 1", info, vault.KeyType)
	}
	dek := dataKey(t)
	wrapped, keyID := wrap(t, first, dek)

	// A second start (another replica, or a restart) finds the key and
	// neither recreates nor rotates it.
	second := newKeyring(t, s.config())
	if id, _ := second.CurrentKeyID(ctx); id != keyID {
		t.Errorf("CurrentKeyID after a second start = %q, want %s", id, keyID)
	}
	assertUnwraps(t, second, wrapped, keyID, dek)
	second.Close()
	third := newKeyring(t, cfg) // CreateKey false: the key exists now
	assertUnwraps(t, third, wrapped, keyID, dek)
}

func TestDerivedKeyRefused(t *testing.T) {
	s := startServer(t)
	s.write(t, "transit/keys/envplane", map[string]any{"derived": true})
	err := newKeyring(t, s.config()).Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "derived") {
		t.Fatalf("Check with a derived key = %v, want a refusal naming derivation", err)
	}
}

func TestUnwrapRefusesWhatIsNotItsOwn(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	kr := newKeyring(t, s.config())
	dek := dataKey(t)
	wrapped, keyID := wrap(t, kr, dek)
	body := string(wrapped[len("vault:v1:"):])

	otherCfg := s.config()
	otherCfg.Key = "other"
	other := newKeyring(t, otherCfg)
	foreign, foreignID := wrap(t, other, dek)

	// Flip one bit of the ciphertext's body, keeping valid base64.
	raw, err := base64.StdEncoding.DecodeString(body)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 1
	tampered := []byte("vault:v1:" + base64.StdEncoding.EncodeToString(raw))

	rotate(t, kr)
	for _, tc := range []struct {
		name    string
		wrapped []byte
		keyID   string
		want    error
	}{
		{"tampered", tampered, keyID, vault.ErrUnwrap},
		{"truncated", wrapped[:len(wrapped)-8], keyID, vault.ErrUnwrap},
		{"under another key id version", wrapped, "vault:transit/envplane:v2", vault.ErrUnwrap},
		{"wrapped by another key", foreign, keyID, vault.ErrUnwrap},
		{"key id of another key", foreign, foreignID, vault.ErrKeyID},
		{"key id of another mount", wrapped, "vault:elsewhere/envplane:v1", vault.ErrKeyID},
		{"local key id", wrapped, "local:1", vault.ErrKeyID},
		{"key id without version", wrapped, "vault:transit/envplane:v", vault.ErrKeyID},
		{"version zero", []byte("vault:v0:" + body), "vault:transit/envplane:v0", vault.ErrKeyID},
		{"not a ciphertext", []byte(body), keyID, vault.ErrUnwrap},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := kr.Unwrap(ctx, tc.wrapped, tc.keyID)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Unwrap = %v, want %v", err, tc.want)
			}
			if got != nil {
				t.Error("Unwrap returned a data key along with its error")
			}
			assertClean(t, err, body, string(tc.wrapped), base64.StdEncoding.EncodeToString(dek), s.root)
		})
	}
	assertUnwraps(t, kr, wrapped, keyID, dek)
}

func TestRotate(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	kr := newKeyring(t, s.config())
	replica := newKeyring(t, s.config()) // another process on the same key

	dek1 := dataKey(t)
	w1, id1 := wrap(t, kr, dek1)

	id2 := rotate(t, kr)
	if id2 != "vault:transit/envplane:v2" {
		t.Fatalf("Rotate = %q, want vault:transit/envplane:v2", id2)
	}
	// The replica follows without reloading: its current key and its next
	// wrap are the new version.
	if id, err := replica.CurrentKeyID(ctx); err != nil || id != id2 {
		t.Errorf("replica CurrentKeyID = %q, %v; want %s", id, err, id2)
	}
	dek2 := dataKey(t)
	w2, got := wrap(t, replica, dek2)
	if got != id2 || !bytes.HasPrefix(w2, []byte("vault:v2:")) {
		t.Errorf("replica wrapped under %s, want %s", got, id2)
	}
	// Both versions unwrap, on both keyrings.
	for _, k := range []*vault.Keyring{kr, replica} {
		assertUnwraps(t, k, w1, id1, dek1)
		assertUnwraps(t, k, w2, id2, dek2)
	}
	info, err := kr.Key(ctx)
	if err != nil || info.LatestVersion != 2 || info.MinDecryptionVersion != 1 || info.CurrentKeyID != id2 {
		t.Errorf("Key = %+v, %v; want latest 2, min decryption 1", info, err)
	}
}

func TestRewrap(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	kr := newKeyring(t, s.config())

	dek := dataKey(t)
	w1, id1 := wrap(t, kr, dek)
	rotate(t, kr)
	rotate(t, kr)

	w3, id3, err := kr.Rewrap(ctx, w1, id1)
	if err != nil {
		t.Fatalf("Rewrap: %v", err)
	}
	if id3 != "vault:transit/envplane:v3" || !bytes.HasPrefix(w3, []byte("vault:v3:")) {
		t.Fatalf("Rewrap moved to %s, want vault:transit/envplane:v3", id3)
	}
	assertUnwraps(t, kr, w3, id3, dek)

	// A batch longer than one request (250 items), under mixed versions
	// (3 to 8), keeps its order.
	const n = 600
	deks := make([][]byte, n)
	for i := range deks {
		deks[i] = dataKey(t)
	}
	var ws []vault.Wrapped
	for i := 0; i < n; i += 100 {
		part, err := kr.WrapBatch(ctx, deks[i:i+100])
		if err != nil {
			t.Fatalf("WrapBatch: %v", err)
		}
		ws = append(ws, part...)
		rotate(t, kr)
	}
	latest, err := kr.CurrentKeyID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ws[0].KeyID != id3 || ws[n-1].KeyID != "vault:transit/envplane:v8" || latest != "vault:transit/envplane:v9" {
		t.Fatalf("batch wrapped under %s to %s, latest %s; want v3 to v8, latest v9", ws[0].KeyID, ws[n-1].KeyID, latest)
	}
	moved, err := kr.RewrapBatch(ctx, ws)
	if err != nil {
		t.Fatalf("RewrapBatch: %v", err)
	}
	for i, w := range moved {
		if w.KeyID != latest {
			t.Fatalf("item %d rewrapped under %s, want %s", i, w.KeyID, latest)
		}
	}
	got, err := kr.UnwrapBatch(ctx, moved)
	if err != nil {
		t.Fatalf("UnwrapBatch: %v", err)
	}
	for i := range deks {
		if !bytes.Equal(got[i], deks[i]) {
			t.Fatalf("item %d unwrapped to another data key", i)
		}
	}
}

func TestRetire(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	kr := newKeyring(t, s.config())

	dek1 := dataKey(t)
	w1, id1 := wrap(t, kr, dek1)
	rotate(t, kr)
	dek2 := dataKey(t)
	w2, id2 := wrap(t, kr, dek2)

	if err := kr.Retire(ctx, 3); err == nil {
		t.Fatal("Retire below 3 with latest version 2 succeeded")
	}
	if err := kr.Retire(ctx, 2); err != nil {
		t.Fatalf("Retire(2): %v", err)
	}
	_, err := kr.Unwrap(ctx, w1, id1)
	if !errors.Is(err, vault.ErrRetiredVersion) {
		t.Fatalf("Unwrap under a retired version = %v, want ErrRetiredVersion", err)
	}
	if !strings.Contains(err.Error(), id1) || !strings.Contains(err.Error(), "retired") {
		t.Errorf("error does not name the key id and retirement: %v", err)
	}
	assertClean(t, err, string(w1), s.root)
	if _, _, err := kr.Rewrap(ctx, w1, id1); !errors.Is(err, vault.ErrRetiredVersion) {
		t.Errorf("Rewrap under a retired version = %v, want ErrRetiredVersion", err)
	}
	// In a batch, the failing item is named.
	_, err = kr.UnwrapBatch(ctx, []vault.Wrapped{{Cipher: w2, KeyID: id2}, {Cipher: w1, KeyID: id1}})
	if !errors.Is(err, vault.ErrRetiredVersion) || !strings.Contains(err.Error(), "item 1 ") {
		t.Errorf("UnwrapBatch with a retired item = %v, want ErrRetiredVersion naming item 1", err)
	}
	assertUnwraps(t, kr, w2, id2, dek2)

	// Idempotent, and never lowers the minimum.
	for _, below := range []int{2, 1} {
		if err := kr.Retire(ctx, below); err != nil {
			t.Errorf("Retire(%d) again: %v", below, err)
		}
	}
	if info, _ := kr.Key(ctx); info.MinDecryptionVersion != 2 {
		t.Errorf("min_decryption_version = %d, want 2", info.MinDecryptionVersion)
	}
}

func TestUnknownVersion(t *testing.T) {
	s := startServer(t)
	kr := newKeyring(t, s.config())
	w, _ := wrap(t, kr, dataKey(t))
	future := []byte("vault:v9:" + string(w[len("vault:v1:"):]))
	_, err := kr.Unwrap(context.Background(), future, "vault:transit/envplane:v9")
	if !errors.Is(err, vault.ErrUnknownVersion) {
		t.Fatalf("Unwrap under a version the key does not have = %v, want ErrUnknownVersion", err)
	}
}

func TestBadToken(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	s.createKey(t)

	wrong := "hvs.not-a-token-" + base64.RawURLEncoding.EncodeToString(dataKey(t))
	err := newKeyring(t, vault.Config{Address: s.addr, Token: drivers.Secret(wrong)}).Check(ctx)
	if !errors.Is(err, vault.ErrDenied) {
		t.Fatalf("Check with a wrong token = %v, want ErrDenied", err)
	}
	assertClean(t, err, wrong)

	token := s.token(t, nil)
	kr := newKeyring(t, vault.Config{Address: s.addr, Token: drivers.Secret(token)})
	dek := dataKey(t)
	w, id := wrap(t, kr, dek)
	assertUnwraps(t, kr, w, id, dek)

	// The policy allows wrapping but not the operator commands.
	if _, err := kr.Rotate(ctx); !errors.Is(err, vault.ErrDenied) {
		t.Errorf("Rotate without the policy = %v, want ErrDenied", err)
	}

	s.write(t, "auth/token/revoke", map[string]any{"token": token})
	_, _, err = kr.Wrap(ctx, dek)
	if !errors.Is(err, vault.ErrDenied) {
		t.Fatalf("Wrap with a revoked token = %v, want ErrDenied", err)
	}
	assertClean(t, err, token, base64.StdEncoding.EncodeToString(dek))
	_, err = kr.Unwrap(ctx, w, id)
	if !errors.Is(err, vault.ErrDenied) {
		t.Fatalf("Unwrap with a revoked token = %v, want ErrDenied", err)
	}
	assertClean(t, err, token, string(w))
}

// syncBuffer collects log output written from the renewal goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// keepWrapping wraps and unwraps every 100ms for d and fails at the first
// error: the keyring's token must stay valid throughout.
func keepWrapping(t *testing.T, kr *vault.Keyring, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		dek := dataKey(t)
		w, id := wrap(t, kr, dek)
		assertUnwraps(t, kr, w, id, dek)
	}
}

func TestTokenRenewal(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.createKey(t)

	// Without renewal this token is gone after 2 seconds.
	token := s.token(t, map[string]any{"ttl": "2s", "renewable": true})
	var logs syncBuffer
	kr := newKeyring(t, vault.Config{
		Address: s.addr,
		Token:   drivers.Secret(token),
		Logger:  slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	keepWrapping(t, kr, 5*time.Second)
	if !strings.Contains(logs.String(), "token renewed") {
		t.Errorf("no renewal logged:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), token) {
		t.Error("the log shows the token")
	}
}

func TestAppRole(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	ctx := context.Background()
	s.createKey(t)

	s.write(t, "sys/auth/approle", map[string]any{"type": "approle"})
	// Tokens live 2 seconds and cannot be renewed past 3: the keyring must
	// log in again to keep working.
	s.write(t, "auth/approle/role/envplane", map[string]any{
		"token_policies": []string{"envplane"}, "token_ttl": "2s", "token_max_ttl": "3s",
	})
	roleID := s.admin.Logical()
	rid, err := roleID.Read("auth/approle/role/envplane/role-id")
	if err != nil {
		t.Fatal(err)
	}
	secretID := s.write(t, "auth/approle/role/envplane/secret-id", nil).Data["secret_id"].(string)
	role := vault.AppRole{RoleID: rid.Data["role_id"].(string), SecretID: drivers.Secret(secretID)}

	wrong := vault.AppRole{RoleID: role.RoleID, SecretID: drivers.Secret("bad-" + secretID[4:])}
	err = newKeyring(t, vault.Config{Address: s.addr, AppRole: wrong}).Check(ctx)
	if !errors.Is(err, vault.ErrDenied) {
		t.Fatalf("Check with a wrong secret id = %v, want ErrDenied", err)
	}
	assertClean(t, err, secretID, secretID[4:])

	var logs syncBuffer
	kr := newKeyring(t, vault.Config{
		Address: s.addr,
		AppRole: role,
		Logger:  slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	// A revoked token is replaced by a new login at once.
	dek := dataKey(t)
	w, id := wrap(t, kr, dek)
	s.write(t, "sys/leases/revoke-prefix/auth/approle/", nil)
	assertUnwraps(t, kr, w, id, dek)

	keepWrapping(t, kr, 6*time.Second)
	if !strings.Contains(logs.String(), "logged in again") {
		t.Errorf("no new login logged:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), secretID) {
		t.Error("the log shows the secret id")
	}
}

func TestMountAndKeyInKeyID(t *testing.T) {
	s := startServer(t)
	s.write(t, "sys/mounts/kms/transit", map[string]any{"type": "transit"})
	cfg := s.config()
	cfg.Mount, cfg.Key = "/kms/transit/", "app-keys"
	kr := newKeyring(t, cfg)
	dek := dataKey(t)
	w, id := wrap(t, kr, dek)
	if id != "vault:kms/transit/app-keys:v1" {
		t.Fatalf("key id = %q, want vault:kms/transit/app-keys:v1", id)
	}
	assertUnwraps(t, kr, w, id, dek)
	mount, key, version, err := vault.ParseKeyID(id)
	if err != nil || mount != "kms/transit" || key != "app-keys" || version != 1 {
		t.Errorf("ParseKeyID(%q) = %q, %q, %d, %v", id, mount, key, version, err)
	}
	if vault.KeyID(mount, key, version) != id {
		t.Errorf("KeyID does not invert ParseKeyID")
	}
}

func TestParseKeyIDRefuses(t *testing.T) {
	for _, id := range []string{"", "local:1", "vault:", "vault:transit:v1", "vault:/k:v1", "vault:transit/:v1", "vault:transit/k:v0", "vault:transit/k:vx", "vault:transit/k:1"} {
		if _, _, _, err := vault.ParseKeyID(id); !errors.Is(err, vault.ErrKeyID) {
			t.Errorf("ParseKeyID(%q) = %v, want ErrKeyID", id, err)
		}
	}
}

func TestConfigRefused(t *testing.T) {
	token := drivers.Secret("s.a-token-that-must-not-show")
	for name, cfg := range map[string]vault.Config{
		"no address":       {Token: token},
		"not a url":        {Address: "vault:8200", Token: token},
		"no credentials":   {Address: "http://127.0.0.1:1"},
		"half an approle":  {Address: "http://127.0.0.1:1", AppRole: vault.AppRole{RoleID: "r"}},
		"key with a colon": {Address: "http://127.0.0.1:1", Token: token, Key: "a:b"},
		"cert without key": {Address: "http://127.0.0.1:1", Token: token, TLS: vault.TLS{CertFile: "c.pem"}},
		"missing ca file":  {Address: "https://127.0.0.1:1", Token: token, TLS: vault.TLS{CAFile: "/nonexistent/ca.pem"}},
	} {
		_, err := vault.New(context.Background(), cfg)
		if err == nil {
			t.Errorf("%s: New succeeded", name)
			continue
		}
		assertClean(t, err, token.Reveal())
	}
}

func TestFormatsRedacted(t *testing.T) {
	s := startServer(t)
	kr := newKeyring(t, s.config())
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%d", "%q"} {
		if got := fmt.Sprintf(verb, kr); got != "[redacted]" {
			t.Errorf("Sprintf(%s, keyring) = %q", verb, got)
		}
		if got := fmt.Sprintf(verb, *kr); got != "[redacted]" {
			t.Errorf("Sprintf(%s, *keyring) = %q", verb, got)
		}
	}
	cfg := s.config()
	cfg.AppRole.SecretID = "secret-id-value"
	for _, verb := range []string{"%v", "%+v", "%#v"} {
		if got := fmt.Sprintf(verb, cfg); strings.Contains(got, s.root) || strings.Contains(got, "secret-id-value") {
			t.Errorf("Sprintf(%s, config) shows a secret", verb)
		}
	}
}
