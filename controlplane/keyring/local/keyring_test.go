package local_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/envplane/envplane/controlplane/keyring/local"
)

func randomKey(tb testing.TB) []byte {
	tb.Helper()
	key := make([]byte, local.KeySize)
	rand.Read(key)
	return key
}

func newKeyring(tb testing.TB, keys map[int][]byte) *local.Keyring {
	tb.Helper()
	kr, err := local.New(keys)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return kr
}

func wrap(tb testing.TB, kr *local.Keyring, dataKey []byte) ([]byte, string) {
	tb.Helper()
	wrapped, keyID, err := kr.Wrap(context.Background(), dataKey)
	if err != nil {
		tb.Fatalf("Wrap: %v", err)
	}
	return wrapped, keyID
}

// assertUnwraps fails unless kr unwraps wrapped under keyID back to want.
func assertUnwraps(tb testing.TB, kr *local.Keyring, wrapped []byte, keyID string, want []byte) {
	tb.Helper()
	got, err := kr.Unwrap(context.Background(), wrapped, keyID)
	if err != nil {
		tb.Fatalf("Unwrap(%s): %v", keyID, err)
	}
	if !bytes.Equal(got, want) {
		tb.Fatalf("Unwrap(%s) returned another data key", keyID)
	}
}

func currentKeyID(tb testing.TB, kr *local.Keyring) string {
	tb.Helper()
	id, err := kr.CurrentKeyID(context.Background())
	if err != nil {
		tb.Fatalf("CurrentKeyID: %v", err)
	}
	return id
}

// writeKeyFile writes a key file with the given mode, bypassing the umask.
func writeKeyFile(tb testing.TB, path, content string, mode os.FileMode) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		tb.Fatal(err)
	}
}

func b64(key []byte) string { return base64.StdEncoding.EncodeToString(key) }

func TestWrapUnwrap(t *testing.T) {
	ctx := context.Background()
	keys := map[int][]byte{1: randomKey(t), 3: randomKey(t), 2: randomKey(t)}
	kr := newKeyring(t, keys)
	if got := currentKeyID(t, kr); got != "local:3" {
		t.Fatalf("CurrentKeyID = %q, want the highest version local:3", got)
	}
	dek := randomKey(t)
	wrapped, keyID := wrap(t, kr, dek)
	if keyID != "local:3" {
		t.Errorf("Wrap key id = %q, want local:3", keyID)
	}
	if bytes.Contains(wrapped, dek) {
		t.Error("the wrapped key contains the data key")
	}
	again, _ := wrap(t, kr, dek)
	if bytes.Equal(wrapped, again) {
		t.Error("two wraps of the same data key are equal")
	}
	// New keeps no reference to the caller's key slices.
	for _, k := range keys {
		clear(k)
	}
	assertUnwraps(t, kr, wrapped, keyID, dek)

	// A wrapped key only opens under the key id it was wrapped with.
	if _, err := kr.Unwrap(ctx, wrapped, "local:2"); err == nil {
		t.Error("Unwrap under another version succeeded")
	}
	// The same version number with another key does not open it.
	impostor := newKeyring(t, map[int][]byte{3: randomKey(t)})
	if _, err := impostor.Unwrap(ctx, wrapped, keyID); err == nil {
		t.Error("Unwrap with another key of the same version succeeded")
	}
}

func TestUnwrapErrors(t *testing.T) {
	ctx := context.Background()
	kr := newKeyring(t, map[int][]byte{1: randomKey(t), 2: randomKey(t)})
	wrapped, keyID := wrap(t, kr, randomKey(t))

	tampered := bytes.Clone(wrapped)
	tampered[len(tampered)/2] ^= 0x80
	tests := []struct {
		name           string
		wrapped        []byte
		keyID          string
		unknownVersion bool
	}{
		{"unknown version", wrapped, "local:7", true},
		{"not a local key id", wrapped, "vault:envplane:2", false},
		{"no version", wrapped, "local:", false},
		{"version not a number", wrapped, "local:two", false},
		{"version zero", wrapped, "local:0", false},
		{"tampered", tampered, keyID, false},
		{"truncated", wrapped[:5], keyID, false},
		{"empty", nil, keyID, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kr.Unwrap(ctx, tt.wrapped, tt.keyID)
			if err == nil {
				t.Fatalf("Unwrap succeeded with %d bytes", len(got))
			}
			if errors.Is(err, local.ErrUnknownVersion) != tt.unknownVersion {
				t.Errorf("errors.Is(err, ErrUnknownVersion) = %v, want %v (err: %v)", !tt.unknownVersion, tt.unknownVersion, err)
			}
		})
	}
}

func TestNewRejectsBadKeys(t *testing.T) {
	short := []byte("0123456789abcdef") // 16 bytes: AES-128, not what we want
	tests := map[string]map[int][]byte{
		"no keys":          {},
		"nil map":          nil,
		"version zero":     {0: randomKey(t)},
		"negative version": {-1: randomKey(t)},
		"short key":        {1: short},
		"long key":         {1: append(randomKey(t), 0)},
	}
	for name, keys := range tests {
		t.Run(name, func(t *testing.T) {
			kr, err := local.New(keys)
			if err == nil {
				t.Fatalf("New succeeded: %v", kr)
			}
			if strings.Contains(err.Error(), string(short)) {
				t.Error("the error contains key material")
			}
		})
	}
}

func TestKeyringPrintsRedacted(t *testing.T) {
	key := bytes.Repeat([]byte{0xAB}, local.KeySize)
	kr := newKeyring(t, map[int][]byte{1: key})
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q"} {
		for _, v := range []any{kr, *kr} {
			got := fmt.Sprintf(verb, v)
			if got != "[redacted]" {
				t.Errorf("Sprintf(%q, %T) = %q, want [redacted]", verb, v, got)
			}
		}
	}
}

func TestParse(t *testing.T) {
	k1, k2, k3 := randomKey(t), randomKey(t), randomKey(t)
	tests := []struct {
		name    string
		spec    string
		current string
		keys    map[int][]byte
	}{
		{"bare key is version 1", b64(k1), "local:1", map[int][]byte{1: k1}},
		{"bare key with spaces", "  " + b64(k1) + "\n", "local:1", map[int][]byte{1: k1}},
		{"one versioned key", "4:" + b64(k1), "local:4", map[int][]byte{4: k1}},
		{"commas", "1:" + b64(k1) + ",2:" + b64(k2), "local:2", map[int][]byte{1: k1, 2: k2}},
		{"commas and spaces, trailing comma", " 1: " + b64(k1) + " , 2:" + b64(k2) + ",", "local:2", map[int][]byte{1: k1, 2: k2}},
		{"highest wins, any order", "3:" + b64(k3) + ",1:" + b64(k1) + ",2:" + b64(k2), "local:3", map[int][]byte{1: k1, 2: k2, 3: k3}},
		{"lines and comments", "# keys\n\n1:" + b64(k1) + "\r\n# retired 2\n3:" + b64(k3) + "\n", "local:3", map[int][]byte{1: k1, 3: k3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kr, err := local.Parse(tt.spec)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := currentKeyID(t, kr); got != tt.current {
				t.Errorf("CurrentKeyID = %q, want %q", got, tt.current)
			}
			// Each listed key must be the one held under its version.
			for version, key := range tt.keys {
				want := randomKey(t)
				wrapped, keyID := wrap(t, newKeyring(t, map[int][]byte{version: key}), want)
				assertUnwraps(t, kr, wrapped, keyID, want)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	good := b64(randomKey(t))
	short := b64([]byte("sixteen byte key"))
	tests := []struct {
		name, spec, wantInError string
	}{
		{"empty", "", "no keys"},
		{"only comments", "# nothing\n\n", "no keys"},
		{"bad version", "x:" + good, "entry 1: version"},
		{"version zero", "0:" + good, "entry 1: version"},
		{"negative version", "-2:" + good, "entry 1: version"},
		{"duplicate version", "1:" + good + ",1:" + good, "version 1 appears twice"},
		{"bare key among versioned", good + ",2:" + good, "entry 1 has no version"},
		{"short key", "1:" + short, "entry 1 (version 1): key is 16 bytes, want 32"},
		{"short bare key", short, "key is 16 bytes"},
		{"not base64", "2:" + good + ",3:" + strings.Repeat("!", 44), "entry 2 (version 3): key is not padded standard base64"},
		{"unpadded", "1:" + strings.TrimRight(good, "="), "not padded standard base64"},
		{"url alphabet", "1:" + strings.NewReplacer("+", "-", "/", "_").Replace(b64(bytes.Repeat([]byte{0xFB, 0xFF}, 16))), "not padded standard base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := local.Parse(tt.spec)
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantInError) {
				t.Errorf("error %q does not say %q", err, tt.wantInError)
			}
			for _, material := range []string{good, short, strings.TrimRight(good, "="), "sixteen byte key"} {
				if strings.Contains(err.Error(), material) {
					t.Error("the error contains key material")
				}
			}
		})
	}
}

func TestEnsureFileCreatesThenReuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "keys")
	path := filepath.Join(dir, "master.keys")

	first, created, err := local.EnsureFile(path)
	if err != nil {
		t.Fatalf("EnsureFile: %v", err)
	}
	if !created {
		t.Fatal("EnsureFile on a fresh path reported created = false")
	}
	if got := currentKeyID(t, first); got != "local:1" {
		t.Errorf("CurrentKeyID = %q, want local:1", got)
	}
	assertMode(t, path, 0o600)
	assertMode(t, dir, 0o700)
	assertNoTempFiles(t, dir)

	dek := randomKey(t)
	wrapped, keyID := wrap(t, first, dek)

	second, created, err := local.EnsureFile(path)
	if err != nil {
		t.Fatalf("EnsureFile again: %v", err)
	}
	if created {
		t.Error("EnsureFile on an existing file reported created = true")
	}
	assertUnwraps(t, second, wrapped, keyID, dek)

	loaded, err := local.LoadFile(path)
	if err != nil {
		t.Fatalf("LoadFile: %v", err)
	}
	assertUnwraps(t, loaded, wrapped, keyID, dek)
}

func TestEnsureFileConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.keys")
	const n = 8
	keyrings := make([]*local.Keyring, n)
	createdCount := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keyrings[i], createdCount[i], errs[i] = local.EnsureFile(path) })
	}
	wg.Wait()
	created := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("EnsureFile %d: %v", i, errs[i])
		}
		if createdCount[i] {
			created++
		}
	}
	if created != 1 {
		t.Fatalf("%d callers created the key file, want exactly 1", created)
	}
	dek := randomKey(t)
	wrapped, keyID := wrap(t, keyrings[0], dek)
	for i := 1; i < n; i++ {
		assertUnwraps(t, keyrings[i], wrapped, keyID, dek)
	}
	assertNoTempFiles(t, filepath.Dir(path))
}

func TestKeyFileRefusesLooseModes(t *testing.T) {
	spec := "1:" + b64(randomKey(t)) + "\n"
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o602} {
		t.Run(fmt.Sprintf("%04o", mode), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "master.keys")
			writeKeyFile(t, path, spec, mode)
			if _, _, err := local.EnsureFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
				t.Errorf("EnsureFile = %v, want a refusal", err)
			}
			if _, err := local.LoadFile(path); err == nil {
				t.Error("LoadFile accepted the file")
			}
			if _, err := local.AddVersion(path); err == nil {
				t.Error("AddVersion accepted the file")
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != spec {
				t.Error("the refused file was changed")
			}
			assertMode(t, path, mode)
		})
	}
	// 0400 is stricter than 0600 and fine.
	path := filepath.Join(t.TempDir(), "master.keys")
	writeKeyFile(t, path, spec, 0o400)
	if _, created, err := local.EnsureFile(path); err != nil || created {
		t.Errorf("EnsureFile on a 0400 file = created %v, %v", created, err)
	}
}

func TestEnsureFileKeepsBadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.keys")
	writeKeyFile(t, path, "not a key\n", 0o600)
	if _, _, err := local.EnsureFile(path); err == nil {
		t.Fatal("EnsureFile accepted a file with no valid key")
	}
	if got, _ := os.ReadFile(path); string(got) != "not a key\n" {
		t.Error("EnsureFile overwrote an existing file")
	}
}

func TestLoadFileMissing(t *testing.T) {
	_, err := local.LoadFile(filepath.Join(t.TempDir(), "absent.keys"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadFile = %v, want fs.ErrNotExist", err)
	}
}

func TestLoadFileRejectsDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := local.LoadFile(dir); err == nil {
		t.Error("LoadFile accepted a directory")
	}
}

func TestAddVersionThenRetire(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.keys")
	v1, _, err := local.EnsureFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dek1 := randomKey(t)
	wrapped1, id1 := wrap(t, v1, dek1)

	version, err := local.AddVersion(path)
	if err != nil {
		t.Fatalf("AddVersion: %v", err)
	}
	if version != 2 {
		t.Errorf("AddVersion = %d, want 2", version)
	}
	assertMode(t, path, 0o600)
	assertNoTempFiles(t, filepath.Dir(path))

	both, err := local.LoadFile(path)
	if err != nil {
		t.Fatalf("LoadFile after AddVersion: %v", err)
	}
	dek2 := randomKey(t)
	wrapped2, id2 := wrap(t, both, dek2)
	if id2 != "local:2" {
		t.Errorf("Wrap after AddVersion used %q, want local:2", id2)
	}
	assertUnwraps(t, both, wrapped1, id1, dek1)
	assertUnwraps(t, both, wrapped2, id2, dek2)
	// The process that loaded only v1 does not know v2 until it reloads.
	if _, err := v1.Unwrap(context.Background(), wrapped2, id2); !errors.Is(err, local.ErrUnknownVersion) {
		t.Errorf("old keyring Unwrap(local:2) = %v, want ErrUnknownVersion", err)
	}

	if err := local.Retire(path, 2); err == nil {
		t.Error("Retire of the current version succeeded")
	}
	if err := local.Retire(path, 5); !errors.Is(err, local.ErrUnknownVersion) {
		t.Errorf("Retire(5) = %v, want ErrUnknownVersion", err)
	}
	if err := local.Retire(path, 1); err != nil {
		t.Fatalf("Retire(1): %v", err)
	}
	assertMode(t, path, 0o600)
	if err := local.Retire(path, 1); !errors.Is(err, local.ErrUnknownVersion) {
		t.Errorf("Retire(1) again = %v, want ErrUnknownVersion", err)
	}

	retired, err := local.LoadFile(path)
	if err != nil {
		t.Fatalf("LoadFile after Retire: %v", err)
	}
	if _, err := retired.Unwrap(context.Background(), wrapped1, id1); !errors.Is(err, local.ErrUnknownVersion) {
		t.Errorf("Unwrap(local:1) after Retire = %v, want ErrUnknownVersion", err)
	}
	assertUnwraps(t, retired, wrapped2, id2, dek2)

	// Versions keep counting up after a retirement.
	if version, err := local.AddVersion(path); err != nil || version != 3 {
		t.Errorf("AddVersion after Retire = %d, %v; want 3", version, err)
	}
}

func TestAddVersionKeepsHandWrittenKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.keys")
	k7 := randomKey(t)
	writeKeyFile(t, path, "# ours\n7:"+b64(k7)+"\n", 0o600)
	version, err := local.AddVersion(path)
	if err != nil || version != 8 {
		t.Fatalf("AddVersion = %d, %v; want 8", version, err)
	}
	kr, err := local.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dek := randomKey(t)
	wrapped, keyID := wrap(t, newKeyring(t, map[int][]byte{7: k7}), dek)
	assertUnwraps(t, kr, wrapped, keyID, dek)
}

func assertMode(tb testing.TB, path string, want os.FileMode) {
	tb.Helper()
	info, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	if got := info.Mode().Perm(); got != want {
		tb.Errorf("%s has mode %04o, want %04o", filepath.Base(path), got, want)
	}
}

func assertNoTempFiles(tb testing.TB, dir string) {
	tb.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			tb.Errorf("temporary file %s left behind", e.Name())
		}
	}
}
