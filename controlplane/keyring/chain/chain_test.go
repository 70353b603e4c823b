package chain_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/keyring/chain"
	"github.com/envplane/envplane/controlplane/keyring/local"
	"github.com/envplane/envplane/controlplane/keyring/vault"
	"github.com/envplane/envplane/controlplane/keyring/vault/vaulttest"
	"github.com/envplane/envplane/drivers"
)

func dataKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

// sealed is a data key as the store holds it: wrapped, with its key id.
type sealed struct {
	dek     []byte
	wrapped []byte
	keyID   string
}

func wrapWith(t *testing.T, kr controlplane.Keyring) sealed {
	t.Helper()
	dek := dataKey(t)
	wrapped, keyID, err := kr.Wrap(context.Background(), dek)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	return sealed{dek: dek, wrapped: wrapped, keyID: keyID}
}

func assertUnwraps(t *testing.T, kr controlplane.Keyring, s sealed) {
	t.Helper()
	got, err := kr.Unwrap(context.Background(), s.wrapped, s.keyID)
	if err != nil {
		t.Fatalf("Unwrap(%s): %v", s.keyID, err)
	}
	if !bytes.Equal(got, s.dek) {
		t.Fatalf("Unwrap(%s) returned another data key", s.keyID)
	}
}

// rewrap moves s to the chain's primary and checks that the primary alone
// opens it afterwards.
func rewrap(t *testing.T, c *chain.Chain, s sealed) sealed {
	t.Helper()
	wrapped, keyID, err := c.Rewrap(context.Background(), s.wrapped, s.keyID)
	if err != nil {
		t.Fatalf("Rewrap(%s): %v", s.keyID, err)
	}
	moved := sealed{dek: s.dek, wrapped: wrapped, keyID: keyID}
	assertUnwraps(t, c.Primary(), moved)
	return moved
}

func openFile(t *testing.T, name string) *local.File {
	t.Helper()
	f, _, err := local.OpenFile(filepath.Join(t.TempDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func newChain(t *testing.T, primary controlplane.Keyring, readable ...controlplane.Keyring) *chain.Chain {
	t.Helper()
	c, err := chain.New(primary, readable...)
	if err != nil {
		t.Fatalf("chain.New: %v", err)
	}
	return c
}

// From one local key file to another. Both hold a version 1 (and later a
// version 2) of their own: the chain finds the one that opens each data key.
func TestLocalToLocal(t *testing.T) {
	ctx := context.Background()
	old := openFile(t, "old.keys")
	old1 := wrapWith(t, old)
	if _, err := old.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	old2 := wrapWith(t, old)
	next := openFile(t, "next.keys")
	c := newChain(t, next, old)

	if id, err := c.CurrentKeyID(ctx); err != nil || id != "local:1" {
		t.Fatalf("CurrentKeyID = %q, %v; want the new file's local:1", id, err)
	}
	fresh := wrapWith(t, c)
	assertUnwraps(t, next, fresh)
	for _, s := range []sealed{old1, old2, fresh} {
		assertUnwraps(t, c, s)
	}

	// Rewrap moves the old file's data keys to the new file.
	for _, s := range []sealed{old1, old2} {
		moved := rewrap(t, c, s)
		if moved.keyID != "local:1" {
			t.Errorf("Rewrap(%s) moved to %s, want local:1", s.keyID, moved.keyID)
		}
		if _, err := old.Unwrap(ctx, moved.wrapped, moved.keyID); err == nil {
			t.Error("the old file opens a data key moved to the new one")
		}
	}

	// Key management is the primary's.
	id, err := c.Rotate(ctx)
	if err != nil || id != "local:2" {
		t.Fatalf("Rotate = %q, %v; want local:2 of the new file", id, err)
	}
	if v, ok := c.Version(id); !ok || v != 2 {
		t.Errorf("Version(%s) = %d, %v", id, v, ok)
	}
	next2 := wrapWith(t, c)
	assertUnwraps(t, c, next2)
	assertUnwraps(t, c, old2) // local:2 of each file, told apart
	if err := c.Retire(ctx, 2); err != nil {
		t.Fatalf("Retire(2): %v", err)
	}
	if _, err := next.Unwrap(ctx, fresh.wrapped, fresh.keyID); !errors.Is(err, local.ErrUnknownVersion) {
		t.Errorf("the primary unwraps a retired version: %v", err)
	}
	assertUnwraps(t, c, old1) // the old file's versions are not the primary's to retire
	if err := c.Health(ctx); err != nil {
		t.Errorf("Health of a local primary = %v, want nil", err)
	}

	// A data key that neither opens fails with both keyrings' reasons.
	tampered := bytes.Clone(old1.wrapped)
	tampered[len(tampered)-1] ^= 1
	_, err = c.Unwrap(ctx, tampered, old1.keyID)
	if err == nil || !strings.Contains(err.Error(), "any keyring of the chain") || !errors.Is(err, local.ErrUnknownVersion) {
		t.Errorf("Unwrap of an altered key = %v, want every owner's error", err)
	}
}

func TestKeyIDNobodyOwns(t *testing.T) {
	c := newChain(t, openFile(t, "a.keys"), openFile(t, "b.keys"))
	s := wrapWith(t, c)
	for _, keyID := range []string{"vault:transit/envplane:v1", "turso:1", "local:0", "local:x", ""} {
		if c.Owns(keyID) {
			t.Errorf("Owns(%q) = true", keyID)
		}
		_, err := c.Unwrap(context.Background(), s.wrapped, keyID)
		if !errors.Is(err, chain.ErrNoOwner) {
			t.Errorf("Unwrap under %q = %v, want ErrNoOwner", keyID, err)
		}
		if _, _, err := c.Rewrap(context.Background(), s.wrapped, keyID); !errors.Is(err, chain.ErrNoOwner) {
			t.Errorf("Rewrap under %q = %v, want ErrNoOwner", keyID, err)
		}
	}
	if !c.Owns(s.keyID) {
		t.Errorf("Owns(%s) = false", s.keyID)
	}
}

// plain is a keyring with none of the optional interfaces.
type plain struct{ controlplane.Keyring }

func TestNewRefuses(t *testing.T) {
	f := openFile(t, "a.keys")
	for name, members := range map[string][]controlplane.Keyring{
		"nil primary":        {nil, f},
		"nil readable":       {f, nil},
		"primary not owner":  {plain{f}, f},
		"readable not owner": {f, plain{f}},
	} {
		if _, err := chain.New(members[0], members[1:]...); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestPrimaryWithoutKeyManager(t *testing.T) {
	kr, err := local.Parse("1:" + strings.Repeat("A", 43) + "=")
	if err != nil {
		t.Fatal(err)
	}
	type onlyOwner struct {
		controlplane.Keyring
		controlplane.KeyOwner
	}
	c := newChain(t, onlyOwner{kr, kr})
	if _, err := c.Rotate(context.Background()); err == nil {
		t.Error("Rotate with a primary that has no KeyManager succeeded")
	}
	if err := c.Retire(context.Background(), 2); err == nil {
		t.Error("Retire with a primary that has no KeyManager succeeded")
	}
	if _, ok := c.Version("local:1"); ok {
		t.Error("Version with a primary that has no KeyManager said ok")
	}
	if err := c.Health(context.Background()); err != nil {
		t.Errorf("Health with a primary that has no KeyringHealth = %v, want nil", err)
	}
	// The static keyring refuses to rotate, through the chain too.
	if _, err := newChain(t, kr).Rotate(context.Background()); !errors.Is(err, local.ErrFixedVersions) {
		t.Errorf("Rotate with a static local primary = %v, want ErrFixedVersions", err)
	}
}

// paths records the paths of the requests it passes to Vault.
type paths struct {
	url  string
	mu   sync.Mutex
	seen []string
}

func (p *paths) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.seen
	p.seen = nil
	return out
}

func recordPaths(t *testing.T, target string) *paths {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &paths{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/auth/token/renew-self" {
			p.mu.Lock()
			p.seen = append(p.seen, r.URL.Path)
			p.mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

func newVault(t *testing.T, addr, token string) *vault.Keyring {
	t.Helper()
	kr, err := vault.New(context.Background(), vault.Config{Address: addr, Token: drivers.Secret(token), CreateKey: true, MaxRetries: -1})
	if err != nil {
		t.Fatalf("vault.New: %v", err)
	}
	t.Cleanup(func() { kr.Close() })
	return kr
}

// The documented switch from local to vault (adr/0012): both readable while
// every data key moves to Vault.
func TestLocalToVault(t *testing.T) {
	ctx := context.Background()
	addr, root := vaulttest.Start(t)
	vp := recordPaths(t, addr)
	lk := openFile(t, "master.keys")
	vk := newVault(t, vp.url, root)

	var stored []sealed
	for range 5 {
		stored = append(stored, wrapWith(t, lk))
	}
	c := newChain(t, vk, lk)
	var _ controlplane.Rewrapper = c

	fresh := wrapWith(t, c)
	if !strings.HasPrefix(fresh.keyID, "vault:transit/envplane:v") {
		t.Fatalf("the chain wrapped under %s, want Vault", fresh.keyID)
	}
	stored = append(stored, fresh)

	// During the switch, replicas unwrap both kinds while a rewrap moves
	// the local ones to Vault.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, s := range stored {
					got, err := c.Unwrap(ctx, s.wrapped, s.keyID)
					if err != nil || !bytes.Equal(got, s.dek) {
						t.Errorf("Unwrap(%s) during the switch: %v", s.keyID, err)
						return
					}
				}
			}
		})
	}
	moved := make([]sealed, len(stored))
	for i, s := range stored[:5] {
		moved[i] = rewrap(t, c, s)
		if moved[i].keyID != fresh.keyID {
			t.Errorf("Rewrap(%s) moved to %s, want %s", s.keyID, moved[i].keyID, fresh.keyID)
		}
	}
	close(stop)
	wg.Wait()

	// A Vault data key is re-wrapped inside Vault: it never leaves it.
	id2, err := c.Rotate(ctx)
	if err != nil || id2 != "vault:transit/envplane:v2" {
		t.Fatalf("Rotate = %q, %v; want Vault's v2", id2, err)
	}
	vp.take()
	wrapped, keyID, err := c.Rewrap(ctx, fresh.wrapped, fresh.keyID)
	if err != nil || keyID != id2 {
		t.Fatalf("Rewrap(%s) = %s, %v; want %s", fresh.keyID, keyID, err, id2)
	}
	if got := vp.take(); !slices.Contains(got, "/v1/transit/rewrap/envplane") || slices.Contains(got, "/v1/transit/decrypt/envplane") {
		t.Errorf("Rewrap of a Vault data key called %v, want transit/rewrap and no decrypt", got)
	}
	moved[5] = sealed{dek: fresh.dek, wrapped: wrapped, keyID: keyID}

	// Once everything is in Vault, the local keyring can leave the chain.
	for _, s := range moved {
		assertUnwraps(t, vk, s)
	}
	if v, ok := c.Version(id2); !ok || v != 2 {
		t.Errorf("Version(%s) = %d, %v", id2, v, ok)
	}
	if _, ok := c.Version("local:1"); ok {
		t.Error("Version of a local key id said ok: only the primary's versions count")
	}
	if err := c.Health(ctx); err != nil {
		t.Errorf("Health = %v", err)
	}
	_, err = c.Unwrap(ctx, fresh.wrapped, "vault:elsewhere/envplane:v1")
	if !errors.Is(err, chain.ErrNoOwner) {
		t.Errorf("Unwrap under another mount = %v, want ErrNoOwner", err)
	}
}

// A rewrap in batches sends every Vault data key of the batch in one
// transit/rewrap request, moves the local ones through the primary's Wrap,
// and keeps the batch's order.
func TestRewrapBatchMixesMembers(t *testing.T) {
	ctx := context.Background()
	addr, root := vaulttest.Start(t)
	vp := recordPaths(t, addr)
	lk := openFile(t, "master.keys")
	vk := newVault(t, vp.url, root)
	c := newChain(t, vk, lk)

	var stored []sealed
	for i := range 12 {
		if i%3 == 0 {
			stored = append(stored, wrapWith(t, lk))
		} else {
			stored = append(stored, wrapWith(t, c))
		}
	}
	id2, err := c.Rotate(ctx)
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	ws := make([]controlplane.WrappedKey, len(stored))
	for i, s := range stored {
		ws[i] = controlplane.WrappedKey{Cipher: s.wrapped, KeyID: s.keyID}
	}
	vp.take()
	moved, err := c.RewrapBatch(ctx, ws)
	if err != nil {
		t.Fatalf("RewrapBatch: %v", err)
	}
	rewraps := 0
	for _, p := range vp.take() {
		switch p {
		case "/v1/transit/rewrap/envplane":
			rewraps++
		case "/v1/transit/decrypt/envplane":
			t.Errorf("RewrapBatch decrypted a Vault data key")
		}
	}
	if rewraps != 1 {
		t.Errorf("RewrapBatch sent %d transit/rewrap requests for 8 Vault keys, want 1", rewraps)
	}
	if len(moved) != len(stored) {
		t.Fatalf("RewrapBatch returned %d keys for %d", len(moved), len(stored))
	}
	for i, s := range stored {
		if moved[i].KeyID != id2 {
			t.Errorf("key %d (%s) moved to %s, want %s", i, s.keyID, moved[i].KeyID, id2)
		}
		assertUnwraps(t, vk, sealed{dek: s.dek, wrapped: moved[i].Cipher, keyID: moved[i].KeyID})
	}

	// One key the chain cannot open fails the whole batch.
	ws[4].KeyID = "vault:elsewhere/envplane:v1"
	if _, err := c.RewrapBatch(ctx, ws); !errors.Is(err, chain.ErrNoOwner) {
		t.Errorf("RewrapBatch with a foreign key id = %v, want ErrNoOwner", err)
	}
}

// While Vault is down, data keys still under the local keyring keep
// opening, and the chain's health says Vault is unavailable.
func TestLocalToVaultWhileVaultIsDown(t *testing.T) {
	ctx := context.Background()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	lk := openFile(t, "master.keys")
	old := wrapWith(t, lk)
	c := newChain(t, newVault(t, "http://"+addr, "s.unused-token"), lk)

	assertUnwraps(t, c, old)
	if err := c.Health(ctx); !errors.Is(err, vault.ErrUnavailable) {
		t.Errorf("Health with Vault down = %v, want ErrUnavailable", err)
	}
	if _, _, err := c.Wrap(ctx, dataKey(t)); !errors.Is(err, vault.ErrUnavailable) {
		t.Errorf("Wrap with Vault down = %v, want ErrUnavailable", err)
	}
	if _, _, err := c.Rewrap(ctx, old.wrapped, old.keyID); !errors.Is(err, vault.ErrUnavailable) {
		t.Errorf("Rewrap with Vault down = %v, want ErrUnavailable", err)
	}
}

func TestChainPrintsRedacted(t *testing.T) {
	c := newChain(t, openFile(t, "a.keys"))
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
		if got := fmt.Sprintf(verb, c); got != "[redacted]" {
			t.Errorf("Sprintf(%q, chain) = %q", verb, got)
		}
	}
}
