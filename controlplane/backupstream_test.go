package controlplane_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"testing"

	"github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/keyring/local"
)

// sealedBackup seals plain as backup id under kr and returns the stream.
func sealedBackup(tb testing.TB, kr controlplane.Keyring, id string, plain []byte) []byte {
	tb.Helper()
	var out bytes.Buffer
	w, key, err := controlplane.SealBackup(context.Background(), kr, id, &out)
	if err != nil {
		tb.Fatalf("SealBackup: %v", err)
	}
	if key.KeyID == "" || len(key.DEKCipher) == 0 {
		tb.Fatal("SealBackup returned no wrapped data key")
	}
	// Odd-sized writes cross chunk boundaries.
	for p := plain; len(p) > 0; {
		n := min(len(p), 1000+len(p)%7777)
		if _, err := w.Write(p[:n]); err != nil {
			tb.Fatalf("write: %v", err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		tb.Fatalf("close: %v", err)
	}
	return out.Bytes()
}

func openedBackup(kr controlplane.Keyring, id string, stream []byte) ([]byte, error) {
	r, err := controlplane.OpenBackup(context.Background(), kr, id, controlplane.Sealed{}, bytes.NewReader(stream))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func TestBackupStreamRoundTrip(t *testing.T) {
	kr := sealKeyring(t, sealKeys(t, 1))
	for _, size := range []int{0, 1, 64 << 10, 64<<10 + 1, 300_000} {
		plain := make([]byte, size)
		rand.Read(plain)
		stream := sealedBackup(t, kr, "bk_one", plain)
		if size > 16 && bytes.Contains(stream, plain[:16]) {
			t.Fatalf("size %d: the stream carries plaintext", size)
		}
		got, err := openedBackup(kr, "bk_one", stream)
		if err != nil {
			t.Fatalf("size %d: open: %v", size, err)
		}
		if !bytes.Equal(got, plain) {
			t.Fatalf("size %d: got %d bytes back, not the %d written", size, len(got), len(plain))
		}
	}
}

func TestBackupStreamRefusesDamage(t *testing.T) {
	kr := sealKeyring(t, sealKeys(t, 1))
	plain := make([]byte, 200_000)
	rand.Read(plain)
	stream := sealedBackup(t, kr, "bk_one", plain)
	flipped := bytes.Clone(stream)
	flipped[len(flipped)/2] ^= 1
	cases := map[string]struct {
		id     string
		stream []byte
	}{
		"a flipped bit":             {"bk_one", flipped},
		"cut short":                 {"bk_one", stream[:100_000]},
		"without its last byte":     {"bk_one", stream[:len(stream)-1]},
		"with a byte added":         {"bk_one", append(bytes.Clone(stream), 0)},
		"under another backup's id": {"bk_two", stream},
		"not a backup":              {"bk_one", []byte("SQLite format 3\x00")},
		"empty":                     {"bk_one", nil},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := openedBackup(kr, c.id, c.stream)
			if !errors.Is(err, controlplane.ErrBackupCorrupt) {
				t.Fatalf("open: %v, want ErrBackupCorrupt", err)
			}
		})
	}
}

func TestBackupStreamUnderARetiredKey(t *testing.T) {
	keys := sealKeys(t, 1, 2)
	old := sealKeyring(t, map[int][]byte{1: keys[1]})
	stream := sealedBackup(t, old, "bk_one", []byte("rows"))
	retired := sealKeyring(t, map[int][]byte{2: keys[2]})
	_, err := openedBackup(retired, "bk_one", stream)
	if !errors.Is(err, local.ErrUnknownVersion) {
		t.Fatalf("open under a keyring without version 1: %v, want local.ErrUnknownVersion", err)
	}
}
