package controlplane

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Key rotation of the keyring's key-encryption keys, closed by a verified
// rewrap: rotate adds a version, rewrap moves every stored data key under
// it, retire stops older versions once nothing is wrapped under them
// (adr/0012). Each is a command (envplane keys ...) and a platform-admin API
// call with an audit event.

// KeyCoverage reports how many stored sealed secrets (credentials, revoked
// ones aside, users' TOTP secrets and completed backups) have their data key
// wrapped under the keyring's current key version, and how many under each
// key version. TOTP and Backups are the users' TOTP secrets' and the
// backups' shares of these counts.
type KeyCoverage struct {
	CurrentKeyID string         `json:"current_key_id"`
	Total        int            `json:"total"`
	Current      int            `json:"current"`
	ByKey        map[string]int `json:"by_key"`
	TOTP         KeyCount       `json:"totp"`
	Backups      KeyCount       `json:"backups"`
}

// KeyCount counts the sealed secrets of one kind: in all, under the current
// key version, and under each key version.
type KeyCount struct {
	Total   int            `json:"total"`
	Current int            `json:"current"`
	ByKey   map[string]int `json:"by_key"`
}

// Complete reports whether every sealed secret is under the current key, so
// older versions may be retired.
func (c KeyCoverage) Complete() bool { return c.Current == c.Total }

// rewrapBatch is how many sealed secrets one round of Rewrap reads and re-wraps.
const rewrapBatch = 100

// Coverage returns the current key coverage. EUNAVAILABLE if the keyring
// cannot be reached.
func (s *Service) Coverage(ctx context.Context) (KeyCoverage, error) {
	// Keyring coverage and rewraps read every organization's credentials (ADR 0027).
	ctx = WithPlatformScope(ctx)
	cur, err := s.Keyring.CurrentKeyID(ctx)
	if err != nil {
		return KeyCoverage{}, keyringUnavailable(err)
	}
	creds, err := s.Store.CountCredentialsByKey(ctx)
	if err != nil {
		return KeyCoverage{}, err
	}
	totp, err := s.Store.CountUserTOTPByKey(ctx)
	if err != nil {
		return KeyCoverage{}, err
	}
	backups, err := s.Store.CountBackupsByKey(ctx)
	if err != nil {
		return KeyCoverage{}, err
	}
	c := KeyCoverage{CurrentKeyID: cur, ByKey: map[string]int{}, TOTP: countKeys(totp, cur), Backups: countKeys(backups, cur)}
	for _, by := range []map[string]int{creds, totp, backups} {
		for k, n := range by {
			c.ByKey[k] += n
			c.Total += n
			if k == cur {
				c.Current += n
			}
		}
	}
	return c, nil
}

// countKeys sums what byKey counts under each key version, and under cur.
func countKeys(byKey map[string]int, cur string) KeyCount {
	c := KeyCount{ByKey: byKey}
	for k, n := range byKey {
		c.Total += n
		if k == cur {
			c.Current += n
		}
	}
	return c
}

// Rewrap re-wraps the data key of every credential and every user's TOTP
// secret not under the current key version, in batches of rewrapBatch (the
// secrets themselves are never decrypted; on Vault the data key never
// leaves it, and a batch is one transit/rewrap request), and returns the
// coverage afterwards. It is idempotent and resumable after a crash: each
// credential or TOTP secret is updated on its own, only while its key id is
// still the one it read. progress, when not nil, hears the coverage after
// each batch.
func (s *Service) Rewrap(ctx context.Context, progress func(KeyCoverage)) (KeyCoverage, error) {
	// Keyring coverage and rewraps read every organization's credentials (ADR 0027).
	ctx = WithPlatformScope(ctx)
	cur, err := s.Keyring.CurrentKeyID(ctx)
	if err != nil {
		return KeyCoverage{}, keyringUnavailable(err)
	}
	report := func() {
		if progress != nil {
			if cov, err := s.Coverage(ctx); err == nil {
				progress(cov)
			}
		}
	}
	if cur, err = s.rewrapCredentials(ctx, cur, report); err != nil {
		return KeyCoverage{}, err
	}
	if cur, err = s.rewrapTOTP(ctx, cur, report); err != nil {
		return KeyCoverage{}, err
	}
	if err := s.rewrapBackups(ctx, cur, report); err != nil {
		return KeyCoverage{}, err
	}
	// Cached answers name the key version their credential was sealed
	// under (receipts record it): drop them everywhere.
	if err := s.changed(ctx, s.Store, ""); err != nil {
		return KeyCoverage{}, err
	}
	return s.Coverage(ctx)
}

// rewrapCredentials is Rewrap's part for credentials, from key version cur;
// it returns the current version it ended under. Only the wrapped key
// changes: a revocation landing meanwhile is kept, and a concurrent rewrap
// wins (ECONFLICT) harmlessly.
func (s *Service) rewrapCredentials(ctx context.Context, cur string, report func()) (string, error) {
	return rewrapEach(ctx, s.Keyring, cur, report, rewrapSet[*Credential]{
		what: "credentials",
		list: func(cur string) ([]*Credential, error) { return s.Store.ListCredentialsByKey(ctx, cur, rewrapBatch) },
		name: func(c *Credential) string { return c.ID },
		sealed: func(c *Credential) Sealed {
			return Sealed{SecretCipher: c.SecretCipher, DEKCipher: c.DEKCipher, KeyID: c.KMSKeyID}
		},
		save: func(c *Credential, moved Sealed) error {
			from := c.KMSKeyID
			c.DEKCipher, c.KMSKeyID = moved.DEKCipher, moved.KeyID
			if err := s.Store.RewrapCredential(ctx, c, from); err != nil && !IsCode(err, ECONFLICT) {
				return err
			}
			return nil
		},
	})
}

// rewrapTOTP is Rewrap's part for users' TOTP secrets, from key version
// cur. Only the wrapped data key changes (the secret's cipher, and so its
// last accepted step, stay); a re-enrolment landing meanwhile wins
// (ECONFLICT) harmlessly, its secret already sealed under a current key.
func (s *Service) rewrapTOTP(ctx context.Context, cur string, report func()) (string, error) {
	return rewrapEach(ctx, s.Keyring, cur, report, rewrapSet[*UserAuth]{
		what:   "the TOTP secrets of users",
		list:   func(cur string) ([]*UserAuth, error) { return s.Store.ListUserTOTPByKey(ctx, cur, rewrapBatch) },
		name:   func(a *UserAuth) string { return a.UserID },
		sealed: func(a *UserAuth) Sealed { return a.TOTP },
		save: func(a *UserAuth, moved Sealed) error {
			if err := s.Store.RewrapUserTOTP(ctx, a.UserID, a.TOTP, moved); err != nil && !IsCode(err, ECONFLICT) && !IsCode(err, ENOTFOUND) {
				return err
			}
			return nil
		},
	})
}

// rewrapBackups is Rewrap's part for completed backups, from key version
// cur (adr/0031). Only the backup's row changes: its data key, wrapped
// anew, is kept there, and the stored stream (its header, its checksum)
// stays as it was written. A backup made before rows kept the key gives it
// from its stream's header. A backup deleted meanwhile, or moved by a
// concurrent rewrap, is left alone.
func (s *Service) rewrapBackups(ctx context.Context, cur string, report func()) error {
	_, err := rewrapEach(ctx, s.Keyring, cur, report, rewrapSet[*Backup]{
		what: "backups",
		list: func(cur string) ([]*Backup, error) {
			bs, err := s.Store.ListBackupsByKey(ctx, cur, rewrapBatch)
			if err != nil {
				return nil, err
			}
			for _, b := range bs {
				if len(b.DEKCipher) == 0 {
					if err := s.backupKeyFromStream(ctx, b); err != nil {
						return nil, err
					}
				}
			}
			return bs, nil
		},
		name:   func(b *Backup) string { return b.ID },
		sealed: (*Backup).dataKey,
		save: func(b *Backup, moved Sealed) error {
			from := b.KeyID
			b.DEKCipher, b.KeyID = moved.DEKCipher, moved.KeyID
			if err := s.Store.RewrapBackup(ctx, b, from); err != nil && !IsCode(err, ECONFLICT) && !IsCode(err, ENOTFOUND) {
				return err
			}
			return nil
		},
	})
	return err
}

// backupKeyFromStream fills in b's wrapped data key from its stored
// stream's header. ECONFLICT, naming the backup, when the stream is
// missing or not one: its key cannot move, and a key version under it
// could not be retired until the backup is deleted.
func (s *Service) backupKeyFromStream(ctx context.Context, b *Backup) error {
	rc, err := s.Backups.Open(ctx, b.ID)
	if err == nil {
		defer rc.Close()
		var key Sealed
		if key, err = backupDataKey(rc); err == nil {
			if key.KeyID != b.KeyID {
				err = ErrBackupCorrupt
			} else {
				b.DEKCipher = key.DEKCipher
				return nil
			}
		}
	}
	if IsCode(err, ENOTFOUND) || errors.Is(err, ErrBackupCorrupt) {
		return Errorf(ECONFLICT, "backup %s of organization %s cannot be rewrapped: its file is missing or corrupt; delete it, then rewrap again", b.ID, b.OrgID)
	}
	return fmt.Errorf("cannot read backup %s: %w", b.ID, err)
}

// rewrapSet is one kind of sealed thing Rewrap moves: how to list a batch
// of them not under a key version, name one, read its sealed data key, and
// save it re-wrapped.
type rewrapSet[T any] struct {
	what   string
	list   func(cur string) ([]T, error)
	name   func(T) string
	sealed func(T) Sealed
	save   func(item T, moved Sealed) error
}

// rewrapEach re-wraps set's items a batch (one keyring request) at a time
// until none is left outside the current key version, starting from cur,
// reporting after each batch, and returns the current version it ended
// under: when the keyring moved on meanwhile (a rotation elsewhere), it
// goes on from the new one.
func rewrapEach[T any](ctx context.Context, kr Keyring, cur string, report func(), set rewrapSet[T]) (string, error) {
	for {
		items, err := set.list(cur)
		if err != nil {
			return "", err
		}
		if len(items) == 0 {
			return cur, nil
		}
		sealed := make([]Sealed, len(items))
		for i, it := range items {
			sealed[i] = set.sealed(it)
		}
		moved, err := RewrapAll(ctx, kr, sealed)
		if err != nil {
			return "", unwrappable(ctx, kr, set, items, sealed,
				keyringUnavailable(fmt.Errorf("cannot rewrap %s %s to %s: %w", set.what, set.name(items[0]), set.name(items[len(items)-1]), err)))
		}
		for i, it := range items {
			cur = moved[i].KeyID
			if err := set.save(it, moved[i]); err != nil {
				return "", err
			}
		}
		report()
	}
}

// unwrappable explains a batch that failed to rewrap: when the keyring is
// up and one item alone fails, that item's data key is under a version the
// keyring no longer opens (retired outside envplane, or not its key), and
// every rewrap would stop on it; ECONFLICT names it. Otherwise the batch's
// own error, err, stands.
func unwrappable[T any](ctx context.Context, kr Keyring, set rewrapSet[T], items []T, sealed []Sealed, err error) error {
	if h, ok := kr.(KeyringHealth); ok && h.Health(ctx) != nil {
		return err
	}
	for i, it := range items {
		if _, ierr := Rewrap(ctx, kr, sealed[i]); ierr != nil {
			return Errorf(ECONFLICT, "%s %s cannot be rewrapped: the keyring cannot unwrap its data key under %s (retired, or not this keyring's); remove it, then rewrap again",
				set.what, set.name(it), sealed[i].KeyID).Wrap(ierr)
		}
	}
	return err
}

// RotateKeys adds a key version to the keyring and makes it current, and
// returns the coverage (nothing is under the new version yet: rewrap next).
// EUNAVAILABLE when the keyring does not rotate (keys from the environment).
func (s *Service) RotateKeys(ctx context.Context, p *Principal) (KeyCoverage, error) {
	if err := Authorize(Subject{Principal: p}, ActKeyringManage, Resource{}); err != nil {
		return KeyCoverage{}, err
	}
	// The keyring is the platform's: every organization's secrets (ADR 0027).
	ctx = WithPlatformScope(ctx)
	km, err := s.keyManager()
	if err != nil {
		return KeyCoverage{}, err
	}
	keyID, err := km.Rotate(ctx)
	if err != nil {
		return KeyCoverage{}, keyManagerError("rotate the keyring's key", err)
	}
	if err := s.audit(ctx, s.Store, p, "", "", "keyring.rotated", keyID, nil); err != nil {
		return KeyCoverage{}, err
	}
	return s.Coverage(ctx)
}

// RewrapKeys is Rewrap for the platform admin, with an audit event.
func (s *Service) RewrapKeys(ctx context.Context, p *Principal) (KeyCoverage, error) {
	if err := Authorize(Subject{Principal: p}, ActKeyringManage, Resource{}); err != nil {
		return KeyCoverage{}, err
	}
	// The keyring is the platform's: every organization's secrets (ADR 0027).
	ctx = WithPlatformScope(ctx)
	cov, err := s.Rewrap(ctx, nil)
	if err != nil {
		return KeyCoverage{}, err
	}
	if err := s.audit(ctx, s.Store, p, "", "", "keyring.rewrapped", cov.CurrentKeyID, map[string]any{"current": cov.Current, "total": cov.Total}); err != nil {
		return KeyCoverage{}, err
	}
	return cov, nil
}

// RetireKeys makes every key version below below stop unwrapping. It is
// ECONFLICT while any credential (revoked ones aside), user's TOTP secret
// or completed backup is still wrapped under such a version, or a backup is
// running of the keyring, naming how many;
// EINVALID for a version that is not below the current one.
func (s *Service) RetireKeys(ctx context.Context, p *Principal, below int) (KeyCoverage, error) {
	if err := Authorize(Subject{Principal: p}, ActKeyringManage, Resource{}); err != nil {
		return KeyCoverage{}, err
	}
	// The keyring is the platform's: every organization's secrets (ADR 0027).
	ctx = WithPlatformScope(ctx)
	km, err := s.keyManager()
	if err != nil {
		return KeyCoverage{}, err
	}
	cov, err := s.Coverage(ctx)
	if err != nil {
		return KeyCoverage{}, err
	}
	current, _ := km.Version(cov.CurrentKeyID)
	if below < 2 || below > current {
		return KeyCoverage{}, Invalid(FieldError{Field: "below", Message: fmt.Sprintf("must be from 2 to the current version, %d", current)})
	}
	left, totp, backups := 0, 0, 0
	for keyID, n := range cov.ByKey {
		if v, ok := km.Version(keyID); ok && v < below {
			left += n
			totp += cov.TOTP.ByKey[keyID]
			backups += cov.Backups.ByKey[keyID]
		}
	}
	if left > 0 {
		return KeyCoverage{}, Errorf(ECONFLICT, "%d sealed secrets (%d credentials, %d TOTP secrets, %d backups) are still wrapped below version %d: run keys rewrap first",
			left, left-totp-backups, totp, backups, below)
	}
	// A running backup's data key was wrapped when it started, under the
	// version current then; it moves under the current one as it completes.
	running, err := s.Store.CountRunningBackups(ctx)
	if err != nil {
		return KeyCoverage{}, err
	}
	if running > 0 {
		return KeyCoverage{}, Errorf(ECONFLICT, "%d backups are running, their data keys perhaps wrapped below version %d: retire once they have finished", running, below)
	}
	if err := km.Retire(ctx, below); err != nil {
		return KeyCoverage{}, keyManagerError("retire key versions", err)
	}
	if err := s.audit(ctx, s.Store, p, "", "", "keyring.retired", cov.CurrentKeyID, map[string]any{"below": below}); err != nil {
		return KeyCoverage{}, err
	}
	return cov, nil
}

// KeyringStatus is the platform admin's view of the keyring: coverage, and
// whether new data keys can be wrapped now.
func (s *Service) KeyringStatus(ctx context.Context, p *Principal) (KeyCoverage, error) {
	if err := Authorize(Subject{Principal: p}, ActKeyringManage, Resource{}); err != nil {
		return KeyCoverage{}, err
	}
	// The keyring is the platform's: every organization's secrets (ADR 0027).
	ctx = WithPlatformScope(ctx)
	return s.Coverage(ctx)
}

// keyManager returns the keyring as a KeyManager, or EUNAVAILABLE.
func (s *Service) keyManager() (KeyManager, error) {
	km, ok := s.Keyring.(KeyManager)
	if !ok {
		return nil, Errorf(EUNAVAILABLE, "this keyring's versions are not managed by envplane")
	}
	return km, nil
}

// KeyringHealth returns nil when the keyring can wrap new data keys now; a
// keyring that depends on no service is always healthy.
func (s *Service) KeyringHealth(ctx context.Context) error {
	h, ok := s.Keyring.(KeyringHealth)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return h.Health(ctx)
}

// keyManagerError answers a failed rotation or retirement: ECONFLICT with
// the keyring's reason when its versions are fixed, else as keyringUnavailable.
func keyManagerError(what string, err error) error {
	if errors.Is(err, ErrKeyVersionsFixed) {
		return Errorf(ECONFLICT, "cannot %s: %s", what, err.Error())
	}
	return keyringUnavailable(fmt.Errorf("cannot %s: %w", what, err))
}

// keyringUnavailable answers a keyring failure as EUNAVAILABLE (503: the
// keyring cannot be reached, or cannot open what it is given), keeping the
// domain's own errors as they are. The keyring's message names the keyring,
// never a key or token; it stays in the logs.
func keyringUnavailable(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return Errorf(EUNAVAILABLE, "the keyring cannot be used right now").Wrap(err)
}
