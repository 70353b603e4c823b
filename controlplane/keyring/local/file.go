package local

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

const fileHeader = `# envplane local keyring. Keep it secret: never print, copy or commit this file.
# One key version per line, <version>:<base64 of 32 bytes>; the highest version is current.
`

// Parse returns the keyring a key spec describes (see the package comment):
// "1:<base64>,2:<base64>", or a single bare base64 key meaning version 1. It
// fails on an empty spec, a bad version, a duplicate version, a key that is
// not padded standard base64 or not 32 bytes; the error names the entry's
// position and version, never the key.
func Parse(spec string) (*Keyring, error) {
	keys, err := parseSpec(spec)
	if err != nil {
		return nil, fmt.Errorf("cannot parse key spec: %w", err)
	}
	defer clearKeys(keys)
	return New(keys)
}

// LoadFile reads the keyring from a key file. It fails if the file cannot be
// read (the error wraps fs.ErrNotExist when it is absent), is not a regular
// file, is accessible by group or others, or does not hold a valid key spec.
func LoadFile(path string) (*Keyring, error) {
	keys, _, err := readFile(path)
	if err != nil {
		return nil, err
	}
	defer clearKeys(keys)
	return New(keys)
}

// EnsureFile loads the key file at path, or, when it does not exist, creates
// it with one random key as version 1 (file mode 0600; missing directories
// are made with mode 0700) and reports created. It is idempotent and safe
// against concurrent callers: the file appears complete or not at all, and
// only one caller creates it. It refuses an existing file that group or
// others can access, and never overwrites an existing file.
func EnsureFile(path string) (kr *Keyring, created bool, err error) {
	created, err = createFile(path)
	if err != nil {
		return nil, false, err
	}
	kr, err = LoadFile(path)
	return kr, created, err
}

// createFile creates the key file at path with one random key as version 1
// unless a file is there already, and reports whether it created it.
func createFile(path string) (bool, error) {
	_, err := os.Stat(path)
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("cannot open key file: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, fmt.Errorf("cannot create key file directory: %w", err)
	}
	keys := map[int][]byte{1: newKey()}
	defer clearKeys(keys)
	data := encode(keys)
	defer clear(data)
	err = writeNew(path, data)
	if errors.Is(err, fs.ErrExist) {
		return false, nil // another caller created it first
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

// AddVersion adds a random key one version above the highest in the key file
// at path and returns that version, which becomes current for keyrings
// loaded from the file afterwards. The file is replaced atomically (mode
// 0600). It fails if the file cannot be read or is accessible by group or
// others. It is not idempotent: each call adds a version. Callers must not
// run it concurrently with itself or Retire on the same file.
func AddVersion(path string) (int, error) {
	keys, _, err := readFile(path)
	if err != nil {
		return 0, err
	}
	defer clearKeys(keys)
	version := currentVersion(keys) + 1
	keys[version] = newKey()
	data := encode(keys)
	defer clear(data)
	if err := writeReplace(path, data); err != nil {
		return 0, err
	}
	return version, nil
}

// Retire removes an old key version from the key file at path, atomically.
// The caller must first make sure no data key is still wrapped under it
// (100% rewrap coverage): anything still wrapped under it can no longer be
// unwrapped. It returns an error wrapping ErrUnknownVersion if the file does
// not hold the version, so a repeated call is detectable; it refuses to
// retire the current (highest) version. Callers must not run it
// concurrently with itself or AddVersion on the same file.
func Retire(path string, version int) error {
	keys, _, err := readFile(path)
	if err != nil {
		return err
	}
	defer clearKeys(keys)
	if _, ok := keys[version]; !ok {
		return fmt.Errorf("cannot retire %s: %w", KeyID(version), ErrUnknownVersion)
	}
	if version == currentVersion(keys) {
		return fmt.Errorf("cannot retire %s: it is the current version", KeyID(version))
	}
	clear(keys[version])
	delete(keys, version)
	data := encode(keys)
	defer clear(data)
	return writeReplace(path, data)
}

// RetireBelow removes every key version below below from the key file at
// path, atomically (one rename), so that data keys wrapped under them no
// longer unwrap. The caller must first make sure nothing is still wrapped
// under them (100% rewrap coverage). It refuses when below is above the
// current (highest) version, since that would remove it. It is idempotent:
// when no version is below below, it succeeds without writing. Callers must
// not run it concurrently with itself, Retire or AddVersion on the same
// file (a File serialises its own calls).
func RetireBelow(path string, below int) error {
	keys, _, err := readFile(path)
	if err != nil {
		return err
	}
	defer clearKeys(keys)
	if current := currentVersion(keys); below > current {
		return fmt.Errorf("cannot retire local key versions below %d: %s is the current version", below, KeyID(current))
	}
	removed := 0
	for version, key := range keys {
		if version < below {
			clear(key)
			delete(keys, version)
			removed++
		}
	}
	if removed == 0 {
		return nil
	}
	data := encode(keys)
	defer clear(data)
	return writeReplace(path, data)
}

// newKey returns a random master key.
func newKey() []byte {
	key := make([]byte, KeySize)
	rand.Read(key) // cannot fail since Go 1.24: it aborts the program instead
	return key
}

func clearKeys(keys map[int][]byte) {
	for _, key := range keys {
		clear(key)
	}
}

// readFile reads and parses a key file, refusing one that group or others
// can access: such a file may already have leaked. It also returns the
// file's info as of the read (from the open file, so it describes the
// contents returned even if the path is replaced meanwhile).
func readFile(path string) (map[int][]byte, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot open key file: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("cannot open key file: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("cannot open key file %s: not a regular file", path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, nil, fmt.Errorf("cannot use key file %s: mode %04o lets group or others access it; chmod 600 it and consider the keys leaked", path, perm)
	}
	data, err := io.ReadAll(f)
	defer clear(data)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read key file %s: %w", path, err)
	}
	keys, err := parseSpec(string(data))
	if err != nil {
		return nil, nil, fmt.Errorf("cannot parse key file %s: %w", path, err)
	}
	return keys, info, nil
}

// parseSpec splits a key spec into versions and decoded keys. Errors name an
// entry by position and version only.
func parseSpec(spec string) (_ map[int][]byte, err error) {
	var entries []string
	for line := range strings.Lines(spec) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for entry := range strings.SplitSeq(line, ",") {
			if entry = strings.TrimSpace(entry); entry != "" {
				entries = append(entries, entry)
			}
		}
	}
	if len(entries) == 0 {
		return nil, errors.New("no keys")
	}
	keys := make(map[int][]byte, len(entries))
	defer func() {
		if err != nil {
			clearKeys(keys)
		}
	}()
	for i, entry := range entries {
		n := i + 1
		versionText, encoded, versioned := strings.Cut(entry, ":")
		version := 1
		if !versioned {
			if len(entries) > 1 {
				return nil, fmt.Errorf("entry %d has no version; only a single key may omit it", n)
			}
			encoded = versionText
		} else {
			v, err := strconv.Atoi(strings.TrimSpace(versionText))
			if err != nil || v < 1 {
				return nil, fmt.Errorf("entry %d: version is not a positive integer", n)
			}
			version = v
		}
		if _, dup := keys[version]; dup {
			return nil, fmt.Errorf("entry %d: version %d appears twice", n, version)
		}
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(encoded))
		if err != nil {
			clear(key)
			return nil, fmt.Errorf("entry %d (version %d): key is not padded standard base64", n, version)
		}
		if len(key) != KeySize {
			clear(key)
			return nil, fmt.Errorf("entry %d (version %d): key is %d bytes, want %d", n, version, len(key), KeySize)
		}
		keys[version] = key
	}
	return keys, nil
}

// encode writes keys as a key file, lowest version first. The buffer is
// sized up front so the caller can clear the only copy.
func encode(keys map[int][]byte) []byte {
	lineSize := 12 + base64.StdEncoding.EncodedLen(KeySize)
	b := make([]byte, 0, len(fileHeader)+len(keys)*lineSize)
	b = append(b, fileHeader...)
	for _, version := range slices.Sorted(maps.Keys(keys)) {
		b = strconv.AppendInt(b, int64(version), 10)
		b = append(b, ':')
		b = base64.StdEncoding.AppendEncode(b, keys[version])
		b = append(b, '\n')
	}
	return b
}

// writeNew puts data at path only if nothing is there: the data goes to a
// synced temporary file that is then hard-linked into place, which fails
// with fs.ErrExist rather than replace a file another process made first.
func writeNew(path string, data []byte) error {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("cannot create key file: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// writeReplace atomically replaces path with data through a synced
// temporary file and a rename.
func writeReplace(path string, data []byte) error {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cannot replace key file: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// writeTemp writes data to a new mode-0600 file next to path, synced, and
// returns its name.
func writeTemp(path string, data []byte) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return "", fmt.Errorf("cannot write key file: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("cannot write key file: %w", err)
	}
	return f.Name(), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cannot sync key file directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("cannot sync key file directory: %w", err)
	}
	return nil
}

// currentVersion returns the highest version of keys, the one Wrap uses.
func currentVersion(keys map[int][]byte) int {
	return slices.Max(slices.Collect(maps.Keys(keys)))
}
