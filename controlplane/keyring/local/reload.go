package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/envplane/envplane/controlplane"
)

// ReloadInterval paces how often a File looks at its key file by itself:
// Wrap, CurrentKeyID and Unwrap compare the file's stat (inode, size,
// modification time, mode) with the one it loaded at most once per
// interval, and an Unwrap that meets an unknown version re-reads the file
// at most once per interval unless the stat shows that the file changed.
const ReloadInterval = time.Second

// File is a local keyring backed by a key file that it follows while the
// process runs, so running servers pick up `envplane keys rotate`, `keys
// rewrap` and `keys retire` done by another process without a restart:
//
//   - Unwrap that meets a version the File does not hold re-reads the file
//     at once and tries again. Concurrent misses share one re-read, and a
//     flood of unknown key ids re-reads the file at most once per
//     ReloadInterval (each miss costs one stat, which re-reads only when the
//     file did change).
//   - Wrap and CurrentKeyID (and Unwrap) stat the file at most once per
//     ReloadInterval and reload it when it changed, so a version added
//     elsewhere becomes current within ReloadInterval, and a retired one
//     stops unwrapping.
//
// Rotate and Retire change the file (atomically, by rename) and reload it
// at once. A key file that becomes unreadable or invalid while the process
// runs leaves the File with the versions it loaded last; Unwrap's and
// Rotate's errors say why.
//
// A File is safe for concurrent use. It formats as [redacted].
type File struct {
	// Now is the clock that paces the looks at the key file; OpenFile sets
	// time.Now. Replace it (in tests) before the File is used, never after.
	Now func() time.Time

	path      string
	state     atomic.Pointer[loaded]
	lastCheck atomic.Int64 // Now().UnixNano() of the last paced stat
	reads     atomic.Uint64

	mu       sync.Mutex // serialises re-reads and changes to the file
	missRead time.Time  // when an unknown version last caused a re-read; guarded by mu
}

// loaded is one reading of the key file: its keyring and the file's stat as
// of that reading. It is never changed once stored.
type loaded struct {
	kr   *Keyring
	info os.FileInfo
}

var (
	_ controlplane.Keyring    = (*File)(nil)
	_ controlplane.KeyOwner   = (*File)(nil)
	_ controlplane.KeyManager = (*File)(nil)
)

// OpenFile returns a File following the key file at path. Like EnsureFile,
// it creates the file when it does not exist, with one random key as
// version 1 (mode 0600; missing directories are made with mode 0700), and
// reports created; it is idempotent and safe against concurrent callers and
// other processes, and never overwrites an existing file. It fails if the
// file cannot be read, is accessible by group or others, or does not hold a
// valid key spec; the error names the path, never a key.
func OpenFile(path string) (f *File, created bool, err error) {
	created, err = createFile(path)
	if err != nil {
		return nil, false, err
	}
	f = &File{Now: time.Now, path: path}
	f.mu.Lock()
	err = f.reloadLocked()
	f.mu.Unlock()
	if err != nil {
		return nil, false, err
	}
	f.lastCheck.Store(f.Now().UnixNano())
	return f, created, nil
}

// Path returns the key file's path.
func (f *File) Path() string { return f.path }

// Reads returns how many times the File has read its key file, the read in
// OpenFile included: a measure (for tests and metrics) of how often it
// reloads.
func (f *File) Reads() uint64 { return f.reads.Load() }

// Wrap encrypts dataKey under the current key version, as Keyring.Wrap does,
// after looking at the key file if ReloadInterval has passed since the last
// look. It never fails.
func (f *File) Wrap(ctx context.Context, dataKey []byte) ([]byte, string, error) {
	return f.keyring().Wrap(ctx, dataKey)
}

// CurrentKeyID returns the key id Wrap uses, after looking at the key file if
// ReloadInterval has passed since the last look. It never fails.
func (f *File) CurrentKeyID(ctx context.Context) (string, error) {
	return f.keyring().CurrentKeyID(ctx)
}

// Unwrap decrypts a data key that Wrap returned with keyID. When keyID names
// a version the File does not hold, it re-reads the key file (see File) and
// tries again. It returns an error wrapping ErrUnknownVersion if the key
// file does not hold the version either (never added, or retired), and
// fails like Keyring.Unwrap otherwise.
func (f *File) Unwrap(ctx context.Context, wrapped []byte, keyID string) ([]byte, error) {
	seen := f.keyringState()
	dataKey, err := seen.kr.Unwrap(ctx, wrapped, keyID)
	if !errors.Is(err, ErrUnknownVersion) {
		return dataKey, err
	}
	now, rerr := f.refresh(seen)
	if rerr != nil {
		return nil, fmt.Errorf("%w (and the key file could not be read again: %v)", err, rerr)
	}
	if now == nil {
		return nil, err
	}
	return now.kr.Unwrap(ctx, wrapped, keyID)
}

// Owns reports whether keyID is a local key id, like Keyring.Owns: a
// version the File does not hold yet may be in its key file.
func (f *File) Owns(keyID string) bool {
	_, ok := versionOf(keyID)
	return ok
}

// Version returns the version a local key id names ("local:3" is 3); ok is
// false for any other key id.
func (f *File) Version(keyID string) (version int, ok bool) {
	return versionOf(keyID)
}

// Rotate adds a random key one version above the highest in the key file
// (AddVersion), reloads the file, and returns the new version's key id,
// which Wrap uses from then on; other processes following the file use it
// within ReloadInterval. It is not idempotent: each call adds a version. It
// fails if the key file cannot be read or written. Calls on one File are
// serialised; two processes must not rotate or retire the same file at the
// same moment.
func (f *File) Rotate(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	version, err := AddVersion(f.path)
	if err != nil {
		return "", fmt.Errorf("cannot rotate the local keyring: %w", err)
	}
	if err := f.reloadLocked(); err != nil {
		return "", fmt.Errorf("cannot rotate the local keyring: added %s to the key file, but cannot load it: %w", KeyID(version), err)
	}
	return KeyID(version), nil
}

// Retire removes every version below below from the key file, atomically
// (RetireBelow), and reloads it: data keys wrapped under those versions then
// fail to unwrap with ErrUnknownVersion, here at once and in other
// processes following the file within ReloadInterval. The caller must first
// make sure nothing is wrapped under them (100% rewrap coverage). It refuses
// to remove the file's current version. It is idempotent: with nothing
// below below it changes nothing, and it never brings a version back.
func (f *File) Retire(_ context.Context, below int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := RetireBelow(f.path, below); err != nil {
		return err
	}
	if err := f.reloadLocked(); err != nil {
		return fmt.Errorf("retired local key versions below %d, but cannot load the key file: %w", below, err)
	}
	return nil
}

// String returns [redacted].
func (f *File) String() string { return "[redacted]" }

// Format writes [redacted] for every verb.
func (f *File) Format(s fmt.State, _ rune) { fmt.Fprint(s, f.String()) }

// keyring returns the keyring to wrap with, after a paced look at the file.
func (f *File) keyring() *Keyring { return f.keyringState().kr }

func (f *File) keyringState() *loaded {
	f.check()
	return f.state.Load()
}

// check stats the key file if ReloadInterval has passed since the last
// look (or the clock went back), and reloads it if it changed. Only one
// caller looks per interval; the others go on with the keyring they have.
func (f *File) check() {
	now := f.Now().UnixNano()
	last := f.lastCheck.Load()
	if d := now - last; d >= 0 && d < int64(ReloadInterval) {
		return
	}
	if !f.lastCheck.CompareAndSwap(last, now) {
		return
	}
	seen := f.state.Load()
	if !f.changed(seen) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state.Load() != seen {
		return // reloaded meanwhile
	}
	// A file that cannot be read keeps the versions loaded last; Unwrap
	// and Rotate report the reason.
	_ = f.reloadLocked()
}

// refresh re-reads the key file after seen's keyring lacked a version, and
// returns the new reading, or nil when there is none: another reading was
// stored meanwhile (returned, so concurrent misses share one re-read), the
// stat shows a change, or the last re-read for a miss was ReloadInterval
// ago or more. It returns the error of a re-read that failed.
func (f *File) refresh(seen *loaded) (*loaded, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cur := f.state.Load(); cur != seen {
		return cur, nil
	}
	if !f.changed(seen) {
		now := f.Now()
		if since := now.Sub(f.missRead); since >= 0 && since < ReloadInterval {
			return nil, nil
		}
		f.missRead = now
	}
	if err := f.reloadLocked(); err != nil {
		return nil, err
	}
	return f.state.Load(), nil
}

// changed reports whether the key file's stat differs from l's: another
// inode (AddVersion and Retire replace the file by rename), size,
// modification time or mode. A file that cannot be stat'ed counts as
// unchanged; the paced re-read of a miss reports why it cannot be read.
func (f *File) changed(l *loaded) bool {
	info, err := os.Stat(f.path)
	if err != nil {
		return false
	}
	return !os.SameFile(info, l.info) ||
		info.Size() != l.info.Size() ||
		!info.ModTime().Equal(l.info.ModTime()) ||
		info.Mode() != l.info.Mode()
}

// reloadLocked reads the key file and makes its keyring current. f.mu must
// be held. On failure the current keyring stays.
func (f *File) reloadLocked() error {
	f.reads.Add(1)
	keys, info, err := readFile(f.path)
	if err != nil {
		return err
	}
	defer clearKeys(keys)
	kr, err := New(keys)
	if err != nil {
		return fmt.Errorf("cannot load key file %s: %w", f.path, err)
	}
	f.state.Store(&loaded{kr: kr, info: info})
	return nil
}
