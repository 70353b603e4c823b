package controlplane

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/envplane/envplane/drivers"
)

// ErrUnseal reports that a sealed secret did not open: its cipher was altered,
// it was copied from another credential or database row, or its data key is
// not the one it was sealed with. It carries no detail on purpose.
var ErrUnseal = errors.New("cannot open sealed secret")

// dataKeySize is the length of a data key: AES-256.
const dataKeySize = 32

// aadLabel starts the additional data, so a credential ciphertext can never be
// confused with some other envelope that happens to share ids.
const aadLabel = "envplane.credential.v1"

// Sealed is a credential secret as stored: SecretCipher is the secret under
// its own data key (nonce first), DEKCipher is that data key wrapped by the
// keyring, and KeyID names the keyring key version that wrapped it.
type Sealed struct {
	SecretCipher []byte
	DEKCipher    []byte
	KeyID        string
}

// Seal encrypts secret under a fresh random 256-bit data key with AES-256-GCM,
// binding the ciphertext to credentialID and databaseID, and wraps the data
// key with kr's current key. Every call makes a new data key and nonce, so
// sealing the same secret twice gives different results. It fails if either
// id is empty or if the keyring cannot wrap; errors never contain the secret.
func Seal(ctx context.Context, kr Keyring, secret drivers.Secret, credentialID, databaseID string) (Sealed, error) {
	if credentialID == "" || databaseID == "" {
		return Sealed{}, errors.New("cannot seal secret: credential id and database id are required")
	}
	dek := make([]byte, dataKeySize)
	defer clear(dek)
	rand.Read(dek) // cannot fail since Go 1.24: it aborts the program instead
	aead, err := newAEAD(dek)
	if err != nil {
		return Sealed{}, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(secret)+aead.Overhead())
	rand.Read(nonce)
	plain := []byte(secret.Reveal())
	defer clear(plain)
	sealed := aead.Seal(nonce, nonce, plain, additionalData(credentialID, databaseID))

	wrapped, keyID, err := kr.Wrap(ctx, dek)
	if err != nil {
		return Sealed{}, fmt.Errorf("cannot wrap data key: %w", err)
	}
	return Sealed{SecretCipher: sealed, DEKCipher: wrapped, KeyID: keyID}, nil
}

// Unseal unwraps the data key with the key version named by s.KeyID and opens
// the secret, which must have been sealed for the same credentialID and
// databaseID. It returns an error wrapping ErrUnseal if the cipher was altered
// or belongs to another row, and the keyring's error (wrapped) if the data key
// cannot be unwrapped. Errors never contain the secret or key material.
func Unseal(ctx context.Context, kr Keyring, s Sealed, credentialID, databaseID string) (drivers.Secret, error) {
	dek, err := unwrap(ctx, kr, s)
	if err != nil {
		return "", err
	}
	defer clear(dek)
	aead, err := newAEAD(dek)
	if err != nil {
		return "", err
	}
	if len(s.SecretCipher) < aead.NonceSize()+aead.Overhead() {
		return "", ErrUnseal
	}
	nonce, body := s.SecretCipher[:aead.NonceSize()], s.SecretCipher[aead.NonceSize():]
	plain, err := aead.Open(nil, nonce, body, additionalData(credentialID, databaseID))
	if err != nil {
		return "", ErrUnseal
	}
	defer clear(plain)
	return drivers.Secret(plain), nil
}

// Rewrap unwraps s's data key with the key version that wrapped it and wraps
// it again under kr's current version. SecretCipher is returned unchanged, so
// the secret itself is never decrypted. Rewrapping a Sealed that is already
// under the current version is harmless (it gets a new wrapping of the same
// data key). It fails if the old version is unknown to kr or the wrapped key
// was altered.
//
// A keyring that is a Rewrapper re-wraps the data key itself (Vault's
// transit/rewrap: the data key never leaves Vault).
func Rewrap(ctx context.Context, kr Keyring, s Sealed) (Sealed, error) {
	if rw, ok := kr.(Rewrapper); ok {
		wrapped, keyID, err := rw.Rewrap(ctx, s.DEKCipher, s.KeyID)
		if err != nil {
			return Sealed{}, fmt.Errorf("cannot rewrap data key: %w", err)
		}
		return Sealed{SecretCipher: s.SecretCipher, DEKCipher: wrapped, KeyID: keyID}, nil
	}
	dek, err := unwrap(ctx, kr, s)
	if err != nil {
		return Sealed{}, err
	}
	defer clear(dek)
	wrapped, keyID, err := kr.Wrap(ctx, dek)
	if err != nil {
		return Sealed{}, fmt.Errorf("cannot wrap data key: %w", err)
	}
	return Sealed{SecretCipher: s.SecretCipher, DEKCipher: wrapped, KeyID: keyID}, nil
}

// RewrapAll is Rewrap for many sealed values, returned in order. A keyring
// that is a BatchRewrapper re-wraps them all in one call (Vault: one
// transit/rewrap request per 250 keys); any other keyring re-wraps them one
// by one. It fails as a whole, like Rewrap.
func RewrapAll(ctx context.Context, kr Keyring, ss []Sealed) ([]Sealed, error) {
	out := make([]Sealed, len(ss))
	brw, ok := kr.(BatchRewrapper)
	if !ok {
		for i, s := range ss {
			r, err := Rewrap(ctx, kr, s)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	}
	ws := make([]WrappedKey, len(ss))
	for i, s := range ss {
		ws[i] = WrappedKey{Cipher: s.DEKCipher, KeyID: s.KeyID}
	}
	moved, err := brw.RewrapBatch(ctx, ws)
	if err != nil {
		return nil, fmt.Errorf("cannot rewrap data keys: %w", err)
	}
	for i, s := range ss {
		out[i] = Sealed{SecretCipher: s.SecretCipher, DEKCipher: moved[i].Cipher, KeyID: moved[i].KeyID}
	}
	return out, nil
}

// unwrap returns s's data key, checked to be an AES-256 key.
func unwrap(ctx context.Context, kr Keyring, s Sealed) ([]byte, error) {
	dek, err := kr.Unwrap(ctx, s.DEKCipher, s.KeyID)
	if err != nil {
		return nil, fmt.Errorf("cannot unwrap data key: %w", err)
	}
	if len(dek) != dataKeySize {
		clear(dek)
		return nil, fmt.Errorf("cannot unwrap data key: %w", ErrUnseal)
	}
	return dek, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("cannot make cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("cannot make cipher: %w", err)
	}
	return aead, nil
}

// additionalData binds a ciphertext to its row. Each id is length-prefixed so
// that ("ab", "c") and ("a", "bc") differ.
func additionalData(credentialID, databaseID string) []byte {
	b := make([]byte, 0, len(aadLabel)+8+len(credentialID)+len(databaseID))
	b = append(b, aadLabel...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(credentialID)))
	b = append(b, credentialID...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(databaseID)))
	b = append(b, databaseID...)
	return b
}
