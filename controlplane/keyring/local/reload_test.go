package local_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/keyring/local"
)

// clock is a test clock that moves only when told.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// openFile opens (creating) the key file at path with a test clock.
func openFile(tb testing.TB, path string, c *clock) *local.File {
	tb.Helper()
	f, _, err := local.OpenFile(path)
	if err != nil {
		tb.Fatalf("OpenFile: %v", err)
	}
	if c != nil {
		f.Now = c.Now
	}
	return f
}

// assertUnwrapsWith fails unless kr unwraps wrapped under keyID to want.
func assertUnwrapsWith(tb testing.TB, kr controlplane.Keyring, wrapped []byte, keyID string, want []byte) {
	tb.Helper()
	got, err := kr.Unwrap(context.Background(), wrapped, keyID)
	if err != nil {
		tb.Fatalf("Unwrap(%s): %v", keyID, err)
	}
	if string(got) != string(want) {
		tb.Fatalf("Unwrap(%s) returned another data key", keyID)
	}
}

func wrapWith(tb testing.TB, kr controlplane.Keyring, dataKey []byte) ([]byte, string) {
	tb.Helper()
	wrapped, keyID, err := kr.Wrap(context.Background(), dataKey)
	if err != nil {
		tb.Fatalf("Wrap: %v", err)
	}
	return wrapped, keyID
}

func keyIDOf(tb testing.TB, kr controlplane.Keyring) string {
	tb.Helper()
	id, err := kr.CurrentKeyID(context.Background())
	if err != nil {
		tb.Fatalf("CurrentKeyID: %v", err)
	}
	return id
}

func TestOpenFileCreatesThenReuses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "master.keys")
	f, created, err := local.OpenFile(path)
	if err != nil || !created {
		t.Fatalf("OpenFile on a fresh path = created %v, %v; want created", created, err)
	}
	assertMode(t, path, 0o600)
	assertMode(t, filepath.Dir(path), 0o700)
	if got := keyIDOf(t, f); got != "local:1" {
		t.Errorf("CurrentKeyID = %q, want local:1", got)
	}
	dek := randomKey(t)
	wrapped, keyID := wrapWith(t, f, dek)

	again, created, err := local.OpenFile(path)
	if err != nil || created {
		t.Fatalf("OpenFile on an existing file = created %v, %v", created, err)
	}
	assertUnwrapsWith(t, again, wrapped, keyID, dek)
	if f.Path() != path {
		t.Errorf("Path = %q, want %q", f.Path(), path)
	}

	loose := filepath.Join(t.TempDir(), "loose.keys")
	writeKeyFile(t, loose, "1:"+b64(randomKey(t))+"\n", 0o644)
	if _, _, err := local.OpenFile(loose); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("OpenFile on a 0644 file = %v, want a refusal", err)
	}
}

func TestOpenFileConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.keys")
	const n = 8
	files := make([]*local.File, n)
	created := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { files[i], created[i], errs[i] = local.OpenFile(path) })
	}
	wg.Wait()
	count := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("OpenFile %d: %v", i, errs[i])
		}
		if created[i] {
			count++
		}
	}
	if count != 1 {
		t.Fatalf("%d callers created the key file, want exactly 1", count)
	}
	dek := randomKey(t)
	wrapped, keyID := wrapWith(t, files[0], dek)
	for _, f := range files[1:] {
		assertUnwrapsWith(t, f, wrapped, keyID, dek)
	}
}

// A running server keeps unwrapping after another process rotated the key
// file and re-wrapped data keys under the new version: the bug of issue 8
// ("cannot unwrap under local:2: unknown key version" until a restart).
func TestFileFollowsRotationByAnotherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.keys")
	c := newClock()
	server := openFile(t, path, c)
	dek := randomKey(t)
	w1, id1 := wrapWith(t, server, dek)

	t.Run("another File rotates", func(t *testing.T) {
		operator := openFile(t, path, nil)
		id2, err := operator.Rotate(context.Background())
		if err != nil || id2 != "local:2" {
			t.Fatalf("Rotate = %q, %v; want local:2", id2, err)
		}
		// keys rewrap: unwrap under the old version, wrap under the new.
		w2, got := wrapWith(t, operator, dek)
		if got != id2 {
			t.Fatalf("the operator wrapped under %s after rotating, want %s", got, id2)
		}
		// The server has not looked at the file yet (its clock stands
		// still), and unwraps at once all the same.
		before := server.Reads()
		assertUnwrapsWith(t, server, w2, id2, dek)
		assertUnwrapsWith(t, server, w1, id1, dek)
		if reads := server.Reads() - before; reads != 1 {
			t.Errorf("the server read the key file %d times, want 1", reads)
		}
	})

	t.Run("AddVersion on the path", func(t *testing.T) {
		version, err := local.AddVersion(path)
		if err != nil || version != 3 {
			t.Fatalf("AddVersion = %d, %v; want 3", version, err)
		}
		loaded, err := local.LoadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		w3, id3 := wrap(t, loaded, dek)
		if id3 != "local:3" {
			t.Fatalf("the reloaded keyring wrapped under %s, want local:3", id3)
		}
		assertUnwrapsWith(t, server, w3, id3, dek)
	})
}

func TestFileWrapMovesToNewVersionWithinInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.keys")
	c := newClock()
	server := openFile(t, path, c)
	if got := keyIDOf(t, server); got != "local:1" {
		t.Fatalf("CurrentKeyID = %q, want local:1", got)
	}
	if _, err := local.AddVersion(path); err != nil {
		t.Fatal(err)
	}
	c.Add(local.ReloadInterval - time.Millisecond)
	if got := keyIDOf(t, server); got != "local:1" {
		t.Errorf("CurrentKeyID before the interval passed = %q, want local:1 (no look at the file yet)", got)
	}
	c.Add(time.Millisecond)
	if got := keyIDOf(t, server); got != "local:2" {
		t.Errorf("CurrentKeyID once the interval passed = %q, want local:2", got)
	}
	dek := randomKey(t)
	wrapped, keyID := wrapWith(t, server, dek)
	if keyID != "local:2" {
		t.Errorf("Wrap used %s, want local:2", keyID)
	}
	other, err := local.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	assertUnwraps(t, other, wrapped, keyID, dek)

	// Within an interval Wrap costs no look at all: an unchanged file is
	// stat'ed once per interval and read again never.
	before := server.Reads()
	for range 1000 {
		wrapWith(t, server, dek)
	}
	c.Add(local.ReloadInterval)
	wrapWith(t, server, dek)
	if reads := server.Reads() - before; reads != 0 {
		t.Errorf("wrapping with an unchanged key file read it %d times, want 0", reads)
	}
}

func TestFileUnknownVersionFloodIsBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.keys")
	c := newClock()
	server := openFile(t, path, c)
	dek := randomKey(t)
	wrapped, _ := wrapWith(t, server, dek)
	ctx := context.Background()

	flood := func(n int) {
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				_, err := server.Unwrap(ctx, wrapped, "local:99")
				if !errors.Is(err, local.ErrUnknownVersion) {
					t.Errorf("Unwrap(local:99) = %v, want ErrUnknownVersion", err)
				}
			})
		}
		wg.Wait()
	}
	before := server.Reads()
	flood(200)
	for range 200 {
		if _, err := server.Unwrap(ctx, wrapped, "local:98"); !errors.Is(err, local.ErrUnknownVersion) {
			t.Fatalf("Unwrap(local:98) = %v, want ErrUnknownVersion", err)
		}
	}
	if reads := server.Reads() - before; reads != 1 {
		t.Errorf("400 unwraps under unknown versions read the key file %d times, want 1", reads)
	}

	// A version added meanwhile is still found at once: the file's stat
	// changed, so the miss re-reads it although the interval has not
	// passed.
	if _, err := local.AddVersion(path); err != nil {
		t.Fatal(err)
	}
	added, err := local.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	w2, id2 := wrap(t, added, dek)
	assertUnwrapsWith(t, server, w2, id2, dek)
	if reads := server.Reads() - before; reads != 2 {
		t.Errorf("reads after a changed file = %d, want 2", reads)
	}

	// Once the interval has passed, one more re-read for a flood.
	c.Add(local.ReloadInterval)
	flood(100)
	if reads := server.Reads() - before; reads != 3 {
		t.Errorf("reads after the interval = %d, want 3", reads)
	}
}

func TestFileRetire(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.keys")
	c := newClock()
	operator := openFile(t, path, c)
	replica := openFile(t, path, c)
	ctx := context.Background()

	dek1, dek2 := randomKey(t), randomKey(t)
	w1, id1 := wrapWith(t, operator, dek1)
	if _, err := operator.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	w2, id2 := wrapWith(t, operator, dek2)
	assertUnwrapsWith(t, replica, w1, id1, dek1)

	for _, below := range []int{3, 9} {
		err := operator.Retire(ctx, below)
		if err == nil || !strings.Contains(err.Error(), "local:2 is the current version") {
			t.Errorf("Retire(%d) with local:2 current = %v, want a refusal", below, err)
		}
	}
	if err := operator.Retire(ctx, 2); err != nil {
		t.Fatalf("Retire(2): %v", err)
	}
	assertMode(t, path, 0o600)
	assertNoTempFiles(t, filepath.Dir(path))
	if _, err := operator.Unwrap(ctx, w1, id1); !errors.Is(err, local.ErrUnknownVersion) {
		t.Errorf("Unwrap(%s) after Retire = %v, want ErrUnknownVersion", id1, err)
	}
	assertUnwrapsWith(t, operator, w2, id2, dek2)
	// Idempotent, and never brings a version back.
	for _, below := range []int{2, 1, 0} {
		if err := operator.Retire(ctx, below); err != nil {
			t.Errorf("Retire(%d) again: %v", below, err)
		}
	}
	if _, err := operator.Unwrap(ctx, w1, id1); !errors.Is(err, local.ErrUnknownVersion) {
		t.Errorf("Unwrap(%s) after a second Retire = %v, want ErrUnknownVersion", id1, err)
	}

	// Another process following the file stops unwrapping the retired
	// version within the interval.
	c.Add(local.ReloadInterval)
	if _, err := replica.Unwrap(ctx, w1, id1); !errors.Is(err, local.ErrUnknownVersion) {
		t.Errorf("replica Unwrap(%s) after Retire = %v, want ErrUnknownVersion", id1, err)
	}
	assertUnwrapsWith(t, replica, w2, id2, dek2)
	if got := keyIDOf(t, replica); got != "local:2" {
		t.Errorf("replica CurrentKeyID = %q, want local:2", got)
	}

	// Versions keep counting up after a retirement.
	if id, err := operator.Rotate(ctx); err != nil || id != "local:3" {
		t.Errorf("Rotate after Retire = %q, %v; want local:3", id, err)
	}
}

func TestRetireBelow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.keys")
	if _, _, err := local.EnsureFile(path); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := local.AddVersion(path); err != nil {
			t.Fatal(err)
		}
	}
	if err := local.RetireBelow(path, 5); err == nil {
		t.Error("RetireBelow(5) with local:4 current succeeded")
	}
	if err := local.RetireBelow(path, 3); err != nil {
		t.Fatalf("RetireBelow(3): %v", err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := local.RetireBelow(path, 3); err != nil {
		t.Fatalf("RetireBelow(3) again: %v", err)
	}
	if again, _ := os.Stat(path); !os.SameFile(info, again) {
		t.Error("a RetireBelow with nothing to remove rewrote the key file")
	}
	if err := local.Retire(path, 2); !errors.Is(err, local.ErrUnknownVersion) {
		t.Errorf("Retire(2) after RetireBelow(3) = %v, want ErrUnknownVersion", err)
	}
	if err := local.RetireBelow(path, 4); err != nil {
		t.Fatalf("RetireBelow(4), the current version: %v", err)
	}
	kr, err := local.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := currentKeyID(t, kr); got != "local:4" {
		t.Errorf("CurrentKeyID = %q, want local:4", got)
	}
}

// A key file broken while the server runs leaves it with the versions it
// has, and the error of an unknown version says why it did not find more.
func TestFileKeepsVersionsWhenTheFileBreaks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.keys")
	c := newClock()
	server := openFile(t, path, c)
	dek := randomKey(t)
	wrapped, keyID := wrapWith(t, server, dek)
	secret := b64(randomKey(t))
	writeKeyFile(t, path, "1:"+secret+"\n", 0o644)

	c.Add(local.ReloadInterval)
	if got := keyIDOf(t, server); got != "local:1" {
		t.Errorf("CurrentKeyID = %q, want local:1", got)
	}
	assertUnwrapsWith(t, server, wrapped, keyID, dek)
	_, err := server.Unwrap(context.Background(), wrapped, "local:2")
	if !errors.Is(err, local.ErrUnknownVersion) || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("Unwrap(local:2) = %v, want ErrUnknownVersion and the file's problem", err)
	}
	if _, err := server.Rotate(context.Background()); err == nil {
		t.Error("Rotate on a loose key file succeeded")
	}
	if err != nil && strings.Contains(err.Error(), secret) {
		t.Error("an error shows key material")
	}
}

func TestFileConcurrentRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.keys")
	server := openFile(t, path, nil) // the real clock
	operator := openFile(t, path, nil)
	ctx := context.Background()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				dek := randomKey(t)
				// Wrapped by either process, unwrapped by the other.
				for _, pair := range [][2]*local.File{{server, operator}, {operator, server}} {
					wrapped, keyID, err := pair[0].Wrap(ctx, dek)
					if err != nil {
						t.Errorf("Wrap: %v", err)
						return
					}
					got, err := pair[1].Unwrap(ctx, wrapped, keyID)
					if err != nil || string(got) != string(dek) {
						t.Errorf("Unwrap(%s) = %v", keyID, err)
						return
					}
				}
				server.Owns("local:1")
				server.Version("local:1")
			}
		})
	}
	for i := range 10 {
		rotator := operator
		if i%2 == 1 {
			rotator = server
		}
		if _, err := rotator.Rotate(ctx); err != nil {
			t.Fatalf("Rotate: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if got := keyIDOf(t, server); got != "local:11" {
		t.Errorf("CurrentKeyID after 10 rotations = %q, want local:11", got)
	}
}

func TestOwnsAndVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.keys")
	file := openFile(t, path, nil)
	static := newKeyring(t, map[int][]byte{1: randomKey(t)})
	for _, tc := range []struct {
		keyID   string
		version int
		ok      bool
	}{
		{"local:1", 1, true},
		{"local:42", 42, true}, // not held, but a local key id
		{"local:0", 0, false},
		{"local:-1", 0, false},
		{"local:07", 0, false},
		{"local:+7", 0, false},
		{"local:", 0, false},
		{"local:x", 0, false},
		{"vault:transit/envplane:v1", 0, false},
		{"", 0, false},
	} {
		for name, kr := range map[string]interface {
			controlplane.KeyOwner
			controlplane.KeyManager
		}{"File": file, "Keyring": static} {
			if got := kr.Owns(tc.keyID); got != tc.ok {
				t.Errorf("%s.Owns(%q) = %v, want %v", name, tc.keyID, got, tc.ok)
			}
			if v, ok := kr.Version(tc.keyID); v != tc.version || ok != tc.ok {
				t.Errorf("%s.Version(%q) = %d, %v; want %d, %v", name, tc.keyID, v, ok, tc.version, tc.ok)
			}
		}
	}
}

func TestStaticKeyringRefusesToManageKeys(t *testing.T) {
	kr, err := local.Parse(b64(randomKey(t)))
	if err != nil {
		t.Fatal(err)
	}
	var km controlplane.KeyManager = kr
	if _, err := km.Rotate(context.Background()); !errors.Is(err, local.ErrFixedVersions) || !strings.Contains(err.Error(), "ENVPLANE_MASTER_KEY; add a version there") {
		t.Errorf("Rotate = %v, want ErrFixedVersions", err)
	}
	if err := km.Retire(context.Background(), 2); !errors.Is(err, local.ErrFixedVersions) {
		t.Errorf("Retire = %v, want ErrFixedVersions", err)
	}
}

func TestFilePrintsRedacted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.keys")
	f := openFile(t, path, nil)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%d", "%q"} {
		if got := fmt.Sprintf(verb, f); got != "[redacted]" {
			t.Errorf("Sprintf(%q, file) = %q, want [redacted]", verb, got)
		}
	}
}
