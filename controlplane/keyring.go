package controlplane

import (
	"context"
	"errors"
)

// ErrKeyVersionsFixed reports a rotation or retirement asked of a keyring
// whose versions envplane does not manage (keys from the environment).
var ErrKeyVersionsFixed = errors.New("this keyring's key versions are fixed")

// Keyring wraps and unwraps data keys under key-encryption keys it never
// reveals. Key ids name the key and its version ("local:3",
// "vault:envplane:2"), so a data key wrapped long ago still unwraps after
// newer versions are added.
//
// Implementations: keyring/local (versioned master keys) and keyring/vault (Transit).
type Keyring interface {
	// Wrap encrypts a data key under the newest key version and returns the
	// wrapped key and the id of the key version used.
	Wrap(ctx context.Context, dataKey []byte) (wrapped []byte, keyID string, err error)
	// Unwrap decrypts a data key wrapped under keyID. It fails if the key
	// version is unknown or the wrapped key was tampered with.
	Unwrap(ctx context.Context, wrapped []byte, keyID string) ([]byte, error)
	// CurrentKeyID returns the id of the key version Wrap uses now.
	CurrentKeyID(ctx context.Context) (string, error)
}

// KeyOwner is implemented by keyrings that can tell their own key ids from
// another keyring's (a chain of keyrings unwraps each data key with the
// keyring that owns its key id).
type KeyOwner interface {
	// Owns reports whether keyID names one of this keyring's key versions.
	Owns(keyID string) bool
}

// KeyManager is implemented by keyrings whose key versions envplane
// rotates and retires: local (its key file) and vault (Transit).
type KeyManager interface {
	// Rotate adds a key version and makes it current for Wrap, and returns
	// its key id. Data keys wrapped under older versions still unwrap.
	Rotate(ctx context.Context) (keyID string, err error)
	// Retire makes every version below below stop unwrapping (local: removed
	// from the key file; vault: min_decryption_version). It refuses to
	// retire the current version. Idempotent; it never brings a version back.
	Retire(ctx context.Context, below int) error
	// Version returns the version number of one of this keyring's key ids;
	// ok is false for a key id that is not this keyring's.
	Version(keyID string) (version int, ok bool)
}

// Rewrapper is implemented by keyrings that re-wrap a data key under their
// current version without the plaintext leaving them (Vault's
// transit/rewrap), or that stand for several keyrings (a chain). It returns
// the new wrapped key and its key id.
type Rewrapper interface {
	Rewrap(ctx context.Context, wrapped []byte, keyID string) ([]byte, string, error)
}

// WrappedKey is a wrapped data key and the id of the key version that
// wrapped it.
type WrappedKey struct {
	Cipher []byte
	KeyID  string
}

// BatchRewrapper is implemented by keyrings that re-wrap many data keys in
// one call (Vault's batched transit/rewrap). RewrapBatch returns the keys in
// order, each under the current version, and fails as a whole.
type BatchRewrapper interface {
	RewrapBatch(ctx context.Context, ws []WrappedKey) ([]WrappedKey, error)
}

// KeyringHealth is implemented by keyrings that depend on a service (Vault):
// Health returns nil when new data keys can be wrapped now.
type KeyringHealth interface {
	Health(ctx context.Context) error
}
