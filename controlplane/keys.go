package controlplane

import (
	"context"
	"fmt"
)

// KeyCoverage reports how many stored credentials have their data key
// wrapped under the keyring's current key version.
type KeyCoverage struct {
	CurrentKeyID string         `json:"current_key_id"`
	Total        int            `json:"total"`
	Current      int            `json:"current"`
	ByKey        map[string]int `json:"by_key"`
}

// Complete reports whether every credential is under the current key, so
// older versions may be retired.
func (c KeyCoverage) Complete() bool { return c.Current == c.Total }

// Coverage returns the current key coverage.
func (s *Service) Coverage(ctx context.Context) (KeyCoverage, error) {
	cur, err := s.Keyring.CurrentKeyID(ctx)
	if err != nil {
		return KeyCoverage{}, err
	}
	by, err := s.Store.CountCredentialsByKey(ctx)
	if err != nil {
		return KeyCoverage{}, err
	}
	c := KeyCoverage{CurrentKeyID: cur, ByKey: by}
	for k, n := range by {
		c.Total += n
		if k == cur {
			c.Current += n
		}
	}
	return c, nil
}

// Rewrap re-wraps the data key of every credential not under the current key
// version (the secrets themselves are not decrypted) and returns the coverage
// afterwards. It is idempotent and safe to interrupt: each credential is
// updated on its own.
func (s *Service) Rewrap(ctx context.Context) (KeyCoverage, error) {
	cur, err := s.Keyring.CurrentKeyID(ctx)
	if err != nil {
		return KeyCoverage{}, err
	}
	for {
		cs, err := s.Store.ListCredentialsByKey(ctx, cur, 100)
		if err != nil {
			return KeyCoverage{}, err
		}
		if len(cs) == 0 {
			break
		}
		for _, c := range cs {
			sealed, err := Rewrap(ctx, s.Keyring, Sealed{SecretCipher: c.SecretCipher, DEKCipher: c.DEKCipher, KeyID: c.KMSKeyID})
			if err != nil {
				return KeyCoverage{}, fmt.Errorf("cannot rewrap credential %s: %w", c.ID, err)
			}
			from := c.KMSKeyID
			c.DEKCipher, c.KMSKeyID = sealed.DEKCipher, sealed.KeyID
			// Only the wrapped key changes: a revocation landing meanwhile
			// is kept, and a concurrent rewrap wins (ECONFLICT) harmlessly.
			if err := s.Store.RewrapCredential(ctx, c, from); err != nil && !IsCode(err, ECONFLICT) {
				return KeyCoverage{}, err
			}
		}
	}
	// Cached answers name the key version their credential was sealed
	// under (receipts record it): drop them everywhere.
	if err := s.changed(ctx, s.Store, ""); err != nil {
		return KeyCoverage{}, err
	}
	return s.Coverage(ctx)
}
