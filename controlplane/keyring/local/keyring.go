// Package local is envplane's built-in keyring: versioned AES-256-GCM master
// keys (key-encryption keys) held in the process, loaded from a key file or
// from a string such as the ENVPLANE_MASTER_KEY environment variable.
//
// # Key spec and key file format
//
// A key spec lists key versions as "<version>:<base64 key>" entries separated
// by commas or newlines, for example
//
//	1:q3Yl...=,2:9FhG...=
//
// where each key is exactly 32 bytes in standard, padded base64 (what
// `openssl rand -base64 32` prints) and each version is a positive integer.
// The highest version is the current one: Wrap uses it. A spec that is a
// single key with no version ("q3Yl...=") means version 1. Blank lines and
// lines starting with '#' are ignored.
//
// A key file holds a key spec, one entry per line. Files written by EnsureFile
// and AddVersion start with a comment and are mode 0600. A key file that is
// readable, writable or executable by group or others is refused.
//
// # Two keyrings
//
// A Keyring is immutable: its versions are fixed when it is built, as they
// are for keys from the ENVPLANE_MASTER_KEY environment variable. A File
// (OpenFile) is backed by a key file and follows it while running: versions
// that another process adds or retires (envplane keys rotate, keys retire)
// take effect without a restart, within ReloadInterval for Wrap and at once
// for an Unwrap that meets a version it did not hold yet.
//
// Key ids are "local:<version>". The key material is never printed: a Keyring
// formats as [redacted] with every verb, and errors name versions and paths,
// never keys.
package local

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/envplane/envplane/controlplane"
)

// ErrUnknownVersion reports a key version that the keyring or key file does
// not hold (never added, or retired).
var ErrUnknownVersion = errors.New("unknown key version")

// ErrFixedVersions reports a rotation or retirement asked of a Keyring, whose
// versions are fixed where it was built (the ENVPLANE_MASTER_KEY variable,
// or a key spec): envplane cannot change them, the operator can.
var ErrFixedVersions = fmt.Errorf("keys come from ENVPLANE_MASTER_KEY; add a version there: %w", controlplane.ErrKeyVersionsFixed)

// KeySize is the length of a master key in bytes (AES-256).
const KeySize = 32

const keyIDPrefix = "local:"

// Keyring wraps data keys under versioned master keys. It is immutable once
// built, so it is safe for concurrent use; a process picks up versions added
// to its key file by loading the file again.
type Keyring struct {
	aeads   map[int]cipher.AEAD
	current int
}

var (
	_ controlplane.Keyring    = (*Keyring)(nil)
	_ controlplane.KeyOwner   = (*Keyring)(nil)
	_ controlplane.KeyManager = (*Keyring)(nil)
)

// New returns a keyring holding keys, a map from version (1 or more) to a
// 32-byte key; the highest version is current. It keeps no reference to the
// key slices, so the caller may clear them afterwards. It fails if keys is
// empty, a version is not positive or a key is not 32 bytes; the error names
// the version, never the key.
func New(keys map[int][]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("cannot build keyring: no keys")
	}
	kr := &Keyring{aeads: make(map[int]cipher.AEAD, len(keys))}
	for version, key := range keys {
		if version < 1 {
			return nil, fmt.Errorf("cannot build keyring: version %d is not positive", version)
		}
		if len(key) != KeySize {
			return nil, fmt.Errorf("cannot build keyring: key version %d is %d bytes, want %d", version, len(key), KeySize)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("cannot build keyring: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("cannot build keyring: %w", err)
		}
		kr.aeads[version] = aead
	}
	kr.current = currentVersion(keys)
	return kr, nil
}

// Wrap encrypts dataKey under the current key version with a random nonce
// (prepended to the result) and returns it with the version's key id. The
// wrapped key is bound to that key id. It never fails.
func (k *Keyring) Wrap(_ context.Context, dataKey []byte) ([]byte, string, error) {
	keyID := KeyID(k.current)
	aead := k.aeads[k.current]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(dataKey)+aead.Overhead())
	rand.Read(nonce) // cannot fail since Go 1.24: it aborts the program instead
	return aead.Seal(nonce, nonce, dataKey, []byte(keyID)), keyID, nil
}

// Unwrap decrypts a data key that Wrap returned with keyID. It returns an
// error wrapping ErrUnknownVersion if keyID names a version the keyring does
// not hold, and an error if keyID is not a local key id or the wrapped key
// was altered or wrapped under another key.
func (k *Keyring) Unwrap(_ context.Context, wrapped []byte, keyID string) ([]byte, error) {
	version, err := parseKeyID(keyID)
	if err != nil {
		return nil, err
	}
	aead, ok := k.aeads[version]
	if !ok {
		return nil, fmt.Errorf("cannot unwrap under %s: %w", keyID, ErrUnknownVersion)
	}
	if len(wrapped) < aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("cannot unwrap under %s: wrapped key is too short", keyID)
	}
	nonce, body := wrapped[:aead.NonceSize()], wrapped[aead.NonceSize():]
	dataKey, err := aead.Open(nil, nonce, body, []byte(keyID))
	if err != nil {
		return nil, fmt.Errorf("cannot unwrap under %s: wrapped key was altered or wrapped under another key", keyID)
	}
	return dataKey, nil
}

// CurrentKeyID returns the key id Wrap uses: "local:<highest version>". It
// never fails.
func (k *Keyring) CurrentKeyID(context.Context) (string, error) {
	return KeyID(k.current), nil
}

// Owns reports whether keyID is a local key id ("local:<version>", version
// 1 or more), whether or not this keyring holds that version: local key ids
// are one namespace, and Unwrap says which versions it lacks
// (ErrUnknownVersion).
func (k *Keyring) Owns(keyID string) bool {
	_, ok := k.Version(keyID)
	return ok
}

// Version returns the version a local key id names ("local:3" is 3); ok is
// false for any other key id.
func (k *Keyring) Version(keyID string) (version int, ok bool) {
	return versionOf(keyID)
}

// Rotate refuses: a Keyring's versions are fixed where it was built. It
// returns an error wrapping ErrFixedVersions.
func (k *Keyring) Rotate(context.Context) (string, error) {
	return "", fmt.Errorf("cannot rotate the local keyring: %w", ErrFixedVersions)
}

// Retire refuses, like Rotate: it returns an error wrapping
// ErrFixedVersions.
func (k *Keyring) Retire(_ context.Context, below int) error {
	return fmt.Errorf("cannot retire local key versions below %d: %w", below, ErrFixedVersions)
}

// String returns [redacted]. It has a value receiver, like Format, so a
// copied Keyring cannot print its keys either.
func (k Keyring) String() string { return "[redacted]" }

// Format writes [redacted] for every verb (%v, %+v, %#v, %x, %d, ...), so no
// formatting of a Keyring reaches the key schedule.
func (k Keyring) Format(f fmt.State, _ rune) { fmt.Fprint(f, k.String()) }

// KeyID returns the key id of a version: "local:<version>".
func KeyID(version int) string { return keyIDPrefix + strconv.Itoa(version) }

// versionOf returns the version of a well-formed local key id.
func versionOf(keyID string) (int, bool) {
	v, err := parseKeyID(keyID)
	return v, err == nil
}

func parseKeyID(keyID string) (int, error) {
	rest, ok := strings.CutPrefix(keyID, keyIDPrefix)
	if !ok {
		return 0, fmt.Errorf("cannot unwrap: key id %q is not a local key id", keyID)
	}
	version, err := strconv.Atoi(rest)
	if err != nil || version < 1 || rest != strconv.Itoa(version) {
		return 0, fmt.Errorf("cannot unwrap: key id %q has no valid version", keyID)
	}
	return version, nil
}
