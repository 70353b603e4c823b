package vault

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// KeyInfo describes the keyring's Transit key as Vault has it now.
type KeyInfo struct {
	// Mount and Name locate the key: <Mount>/keys/<Name>.
	Mount string
	Name  string
	// Type is the Transit key type, such as aes256-gcm96.
	Type string
	// LatestVersion is the version Wrap and rewraps use.
	LatestVersion int
	// MinDecryptionVersion is the oldest version that still unwraps; the
	// versions below it are retired.
	MinDecryptionVersion int
	// CurrentKeyID is the key id of LatestVersion.
	CurrentKeyID string
}

// keyData is the part of transit/keys/:name the keyring uses.
type keyData struct {
	Type                 string `json:"type"`
	LatestVersion        int    `json:"latest_version"`
	MinDecryptionVersion int    `json:"min_decryption_version"`
	SupportsEncryption   bool   `json:"supports_encryption"`
	SupportsDecryption   bool   `json:"supports_decryption"`
	Derived              bool   `json:"derived"`
}

// Key reads the Transit key's versions from Vault. It fails like Check until
// the keyring is set up, and with an error wrapping ErrKeyNotFound if the
// key or the mount is absent, ErrDenied if the token may not read it, and
// ErrUnavailable if Vault cannot answer.
func (k *Keyring) Key(ctx context.Context) (KeyInfo, error) {
	if err := k.ready(ctx); err != nil {
		return KeyInfo{}, err
	}
	d, err := k.readKey(ctx)
	if err != nil {
		return KeyInfo{}, fmt.Errorf("vault keyring: cannot read key %s: %w", k.mount+"/"+k.key, err)
	}
	return KeyInfo{
		Mount:                k.mount,
		Name:                 k.key,
		Type:                 d.Type,
		LatestVersion:        d.LatestVersion,
		MinDecryptionVersion: d.MinDecryptionVersion,
		CurrentKeyID:         k.keyID(d.LatestVersion),
	}, nil
}

func (k *Keyring) readKey(ctx context.Context) (keyData, error) {
	var d keyData
	if err := k.read(ctx, k.mount+"/keys/"+k.key, &d); err != nil {
		return keyData{}, err
	}
	if d.LatestVersion < 1 {
		// Vault answers 404 with no body for an absent key; be sure.
		return keyData{}, ErrKeyNotFound
	}
	return d, nil
}

// ensureKey checks that the key exists and can wrap, creating it first when
// create is set and it is absent. Creation is an upsert in Vault, so
// concurrent starts create one key.
func (k *Keyring) ensureKey(ctx context.Context, create bool) error {
	name := k.mount + "/" + k.key
	d, err := k.readKey(ctx)
	if errors.Is(err, ErrKeyNotFound) && create {
		if err := k.write(ctx, k.mount+"/keys/"+k.key, []byte(`{"type":"`+KeyType+`"}`), nil); err != nil {
			return fmt.Errorf("vault keyring: cannot create key %s: %w", name, err)
		}
		d, err = k.readKey(ctx)
	}
	if err != nil {
		return fmt.Errorf("vault keyring: cannot read key %s: %w", name, err)
	}
	if !d.SupportsEncryption || !d.SupportsDecryption {
		return fmt.Errorf("vault keyring: key %s (type %s) cannot encrypt and decrypt", name, d.Type)
	}
	if d.Derived {
		return fmt.Errorf("vault keyring: key %s is derived and needs a context per call; use a key created without derivation", name)
	}
	return nil
}

// Rotate adds a version to the Transit key (transit/keys/:key/rotate) and
// returns the key id of the new latest version, which Wrap uses from then on
// in every process. It is not idempotent: each call adds a version (and a
// call retried after a lost answer may add two, which is harmless). It fails
// like Key.
func (k *Keyring) Rotate(ctx context.Context) (string, error) {
	if err := k.ready(ctx); err != nil {
		return "", err
	}
	if err := k.write(ctx, k.mount+"/keys/"+k.key+"/rotate", []byte("{}"), nil); err != nil {
		return "", fmt.Errorf("vault keyring: cannot rotate key %s: %w", k.mount+"/"+k.key, err)
	}
	return k.CurrentKeyID(ctx)
}

// Retire makes every version below `below` unusable for unwrapping, by
// raising the key's min_decryption_version to it; data keys still wrapped
// under those versions fail with ErrRetiredVersion from then on, so callers
// must first rewrap everything (100% coverage). Vault keeps the versions, so
// lowering min_decryption_version by hand in Vault undoes a mistake. It is
// idempotent: retiring at or below the current minimum does nothing. It
// refuses to retire the latest version (below greater than the latest) and
// fails like Key.
func (k *Keyring) Retire(ctx context.Context, below int) error {
	if err := k.ready(ctx); err != nil {
		return err
	}
	name := k.mount + "/" + k.key
	d, err := k.readKey(ctx)
	if err != nil {
		return fmt.Errorf("vault keyring: cannot retire versions of %s: %w", name, err)
	}
	if below <= d.MinDecryptionVersion {
		return nil
	}
	if below > d.LatestVersion {
		return fmt.Errorf("vault keyring: cannot retire versions below %d of %s: the latest version is %d", below, name, d.LatestVersion)
	}
	body := []byte(`{"min_decryption_version":` + strconv.Itoa(below) + `}`)
	if err := k.write(ctx, k.mount+"/keys/"+k.key+"/config", body, nil); err != nil {
		return fmt.Errorf("vault keyring: cannot retire versions below %d of %s: %w", below, name, err)
	}
	return nil
}

// KeyID returns the key id of a version of a Transit key:
// "vault:<mount>/<key>:v<version>".
func KeyID(mount, key string, version int) string {
	return "vault:" + mount + "/" + key + ":v" + strconv.Itoa(version)
}

// ParseKeyID splits a Vault key id into its mount, key and version. It fails
// with an error wrapping ErrKeyID if keyID is not one.
func ParseKeyID(keyID string) (mount, key string, version int, err error) {
	rest, ok := strings.CutPrefix(keyID, "vault:")
	i := strings.LastIndex(rest, ":v")
	j := strings.LastIndex(rest[:max(i, 0)], "/")
	if !ok || i < 0 || j <= 0 || j == i-1 {
		return "", "", 0, fmt.Errorf("key id %q: %w", keyID, ErrKeyID)
	}
	version, err = strconv.Atoi(rest[i+2:])
	if err != nil || version < 1 {
		return "", "", 0, fmt.Errorf("key id %q has no valid version: %w", keyID, ErrKeyID)
	}
	return rest[:j], rest[j+1 : i], version, nil
}

// Owns reports whether keyID is a key id of this keyring's mount and key
// ("vault:<mount>/<key>:v<N>", N 1 or more), whatever the version: one
// Vault has not made yet or has retired included, so that Unwrap says what
// is wrong with it. It calls no one.
func (k *Keyring) Owns(keyID string) bool {
	_, err := k.parseKeyID(keyID)
	return err == nil
}

// Version returns the version one of this keyring's key ids names
// ("vault:transit/envplane:v3" is 3); ok is false for a key id of another
// keyring, mount or key. It calls no one.
func (k *Keyring) Version(keyID string) (version int, ok bool) {
	v, err := k.parseKeyID(keyID)
	return v, err == nil
}

func (k *Keyring) keyID(version int) string { return k.prefix + strconv.Itoa(version) }

// parseKeyID returns the version a key id of this keyring names, or an error
// wrapping ErrKeyID.
func (k *Keyring) parseKeyID(keyID string) (int, error) {
	digits, ok := strings.CutPrefix(keyID, k.prefix)
	if !ok {
		return 0, fmt.Errorf("key id %q does not name %s: %w", keyID, k.mount+"/"+k.key, ErrKeyID)
	}
	version, err := strconv.Atoi(digits)
	if err != nil || version < 1 || digits != strconv.Itoa(version) {
		return 0, fmt.Errorf("key id %q has no valid version: %w", keyID, ErrKeyID)
	}
	return version, nil
}
