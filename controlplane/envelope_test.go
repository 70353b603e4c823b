package controlplane_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/keyring/local"
	"github.com/envplane/envplane/drivers"
)

const (
	sealSecret = drivers.Secret("pw-4f1c9a0e-very-secret-value")
	sealCredID = "cred_01hzx8k3q9w2e4r5t6y7u8i9o0"
	sealDBID   = "db_01hzx8k3q9w2e4r5t6y7u8i9o1"
)

// sealKeyring returns a real local keyring holding keys.
func sealKeyring(tb testing.TB, keys map[int][]byte) *local.Keyring {
	tb.Helper()
	kr, err := local.New(keys)
	if err != nil {
		tb.Fatalf("local.New: %v", err)
	}
	return kr
}

// sealKeys returns a random 32-byte key for each version.
func sealKeys(tb testing.TB, versions ...int) map[int][]byte {
	tb.Helper()
	keys := make(map[int][]byte, len(versions))
	for _, v := range versions {
		keys[v] = make([]byte, local.KeySize)
		rand.Read(keys[v])
	}
	return keys
}

// mustSeal seals secret or fails the test.
func mustSeal(tb testing.TB, kr controlplane.Keyring, secret drivers.Secret, credID, dbID string) controlplane.Sealed {
	tb.Helper()
	s, err := controlplane.Seal(context.Background(), kr, secret, credID, dbID)
	if err != nil {
		tb.Fatalf("Seal: %v", err)
	}
	return s
}

// assertNoSecret fails if err's text carries the secret.
func assertNoSealedSecret(tb testing.TB, err error) {
	tb.Helper()
	if strings.Contains(err.Error(), sealSecret.Reveal()) {
		tb.Fatal("error text contains the secret")
	}
}

func TestSealUnsealRoundTrip(t *testing.T) {
	ctx := context.Background()
	kr := sealKeyring(t, sealKeys(t, 1, 2))
	for _, secret := range []drivers.Secret{sealSecret, "", "ünïcødé🔑", drivers.Secret(strings.Repeat("x", 4096))} {
		s := mustSeal(t, kr, secret, sealCredID, sealDBID)
		if s.KeyID != "local:2" {
			t.Errorf("KeyID = %q, want the current version local:2", s.KeyID)
		}
		if len(secret) > 0 && bytes.Contains(s.SecretCipher, []byte(secret.Reveal())) {
			t.Error("SecretCipher contains the plaintext")
		}
		got, err := controlplane.Unseal(ctx, kr, s, sealCredID, sealDBID)
		if err != nil {
			t.Fatalf("Unseal: %v", err)
		}
		if got != secret {
			t.Errorf("Unseal returned a different secret (len %d, want len %d)", len(got), len(secret))
		}
	}
}

func TestSealRequiresIDs(t *testing.T) {
	kr := sealKeyring(t, sealKeys(t, 1))
	for _, ids := range [][2]string{{"", sealDBID}, {sealCredID, ""}, {"", ""}} {
		_, err := controlplane.Seal(context.Background(), kr, sealSecret, ids[0], ids[1])
		if err == nil {
			t.Errorf("Seal(%q, %q) succeeded, want an error", ids[0], ids[1])
			continue
		}
		assertNoSealedSecret(t, err)
	}
}

func TestSealTwiceDiffers(t *testing.T) {
	kr := sealKeyring(t, sealKeys(t, 1))
	a := mustSeal(t, kr, sealSecret, sealCredID, sealDBID)
	b := mustSeal(t, kr, sealSecret, sealCredID, sealDBID)
	if bytes.Equal(a.SecretCipher, b.SecretCipher) {
		t.Error("two Seals of the same secret gave the same SecretCipher")
	}
	if bytes.Equal(a.DEKCipher, b.DEKCipher) {
		t.Error("two Seals of the same secret gave the same DEKCipher")
	}
	if bytes.Equal(a.SecretCipher[:12], b.SecretCipher[:12]) {
		t.Error("two Seals reused a nonce")
	}
}

// TestUnsealBindsToRow proves a ciphertext copied to another row does not
// open, including ids that only differ in where one ends and the other starts.
func TestUnsealBindsToRow(t *testing.T) {
	ctx := context.Background()
	kr := sealKeyring(t, sealKeys(t, 1))
	s := mustSeal(t, kr, sealSecret, sealCredID, sealDBID)
	shifted := mustSeal(t, kr, sealSecret, "ab", "c")

	tests := []struct {
		name         string
		sealed       controlplane.Sealed
		credID, dbID string
	}{
		{"another credential", s, "cred_other", sealDBID},
		{"another database", s, sealCredID, "db_other"},
		{"ids swapped", s, sealDBID, sealCredID},
		{"boundary moved", shifted, "a", "bc"},
		{"boundary moved to empty", shifted, "abc", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := controlplane.Unseal(ctx, kr, tt.sealed, tt.credID, tt.dbID)
			if !errors.Is(err, controlplane.ErrUnseal) {
				t.Fatalf("Unseal = %v, want ErrUnseal", err)
			}
			assertNoSealedSecret(t, err)
		})
	}
	if _, err := controlplane.Unseal(ctx, kr, shifted, "ab", "c"); err != nil {
		t.Fatalf("Unseal with the right ids: %v", err)
	}
}

func TestUnsealRejectsTampering(t *testing.T) {
	ctx := context.Background()
	kr := sealKeyring(t, sealKeys(t, 1))
	s := mustSeal(t, kr, sealSecret, sealCredID, sealDBID)

	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		return c
	}
	other := mustSeal(t, kr, "another secret", sealCredID, sealDBID)
	tests := []struct {
		name    string
		mutate  func(controlplane.Sealed) controlplane.Sealed
		unseals bool // true if the failure is in the secret, not the data key
	}{
		{"nonce bit", func(s controlplane.Sealed) controlplane.Sealed { s.SecretCipher = flip(s.SecretCipher, 0); return s }, true},
		{"cipher bit", func(s controlplane.Sealed) controlplane.Sealed { s.SecretCipher = flip(s.SecretCipher, 13); return s }, true},
		{"tag bit", func(s controlplane.Sealed) controlplane.Sealed {
			s.SecretCipher = flip(s.SecretCipher, len(s.SecretCipher)-1)
			return s
		}, true},
		{"cipher truncated", func(s controlplane.Sealed) controlplane.Sealed { s.SecretCipher = s.SecretCipher[:10]; return s }, true},
		{"cipher empty", func(s controlplane.Sealed) controlplane.Sealed { s.SecretCipher = nil; return s }, true},
		{"data key of another secret", func(s controlplane.Sealed) controlplane.Sealed { s.DEKCipher = other.DEKCipher; return s }, true},
		{"wrapped key bit", func(s controlplane.Sealed) controlplane.Sealed { s.DEKCipher = flip(s.DEKCipher, 20); return s }, false},
		{"wrapped key truncated", func(s controlplane.Sealed) controlplane.Sealed { s.DEKCipher = s.DEKCipher[:8]; return s }, false},
		{"unknown key version", func(s controlplane.Sealed) controlplane.Sealed { s.KeyID = "local:9"; return s }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := controlplane.Unseal(ctx, kr, tt.mutate(s), sealCredID, sealDBID)
			if err == nil {
				t.Fatal("Unseal succeeded, want an error")
			}
			if tt.unseals != errors.Is(err, controlplane.ErrUnseal) {
				t.Errorf("errors.Is(err, ErrUnseal) = %v, want %v (err: %v)", !tt.unseals, tt.unseals, err)
			}
			assertNoSealedSecret(t, err)
		})
	}
	if _, err := controlplane.Unseal(ctx, kr, s, sealCredID, sealDBID); err != nil {
		t.Fatalf("the untouched original no longer opens: %v", err)
	}
}

// TestRewrap follows a key rotation: seal under v1, add v2, rewrap, retire v1.
func TestRewrap(t *testing.T) {
	ctx := context.Background()
	keys := sealKeys(t, 1, 2)
	v1 := sealKeyring(t, map[int][]byte{1: keys[1]})
	both := sealKeyring(t, keys)
	v2 := sealKeyring(t, map[int][]byte{2: keys[2]})

	old := mustSeal(t, v1, sealSecret, sealCredID, sealDBID)
	if old.KeyID != "local:1" {
		t.Fatalf("KeyID = %q, want local:1", old.KeyID)
	}
	if _, err := controlplane.Unseal(ctx, v2, old, sealCredID, sealDBID); err == nil {
		t.Fatal("a keyring without v1 opened a secret wrapped under v1")
	}

	re, err := controlplane.Rewrap(ctx, both, old)
	if err != nil {
		t.Fatalf("Rewrap: %v", err)
	}
	if re.KeyID != "local:2" {
		t.Errorf("rewrapped KeyID = %q, want local:2", re.KeyID)
	}
	if !bytes.Equal(re.SecretCipher, old.SecretCipher) {
		t.Error("Rewrap changed SecretCipher")
	}
	if bytes.Equal(re.DEKCipher, old.DEKCipher) {
		t.Error("Rewrap left DEKCipher unchanged")
	}
	// With v1 retired, the rewrapped secret still opens.
	got, err := controlplane.Unseal(ctx, v2, re, sealCredID, sealDBID)
	if err != nil {
		t.Fatalf("Unseal after rewrap with v1 retired: %v", err)
	}
	if got != sealSecret {
		t.Error("Unseal after rewrap returned a different secret")
	}

	// Rewrapping under a keyring that lacks the old version fails and says so.
	_, err = controlplane.Rewrap(ctx, v2, old)
	if !errors.Is(err, local.ErrUnknownVersion) {
		t.Errorf("Rewrap without the old version = %v, want ErrUnknownVersion", err)
	}
}

func BenchmarkSeal(b *testing.B) {
	ctx := context.Background()
	kr := sealKeyring(b, sealKeys(b, 1))
	for b.Loop() {
		if _, err := controlplane.Seal(ctx, kr, sealSecret, sealCredID, sealDBID); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnseal(b *testing.B) {
	ctx := context.Background()
	kr := sealKeyring(b, sealKeys(b, 1))
	s := mustSeal(b, kr, sealSecret, sealCredID, sealDBID)
	for b.Loop() {
		if _, err := controlplane.Unseal(ctx, kr, s, sealCredID, sealDBID); err != nil {
			b.Fatal(err)
		}
	}
}
