package controlplane

import "context"

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
