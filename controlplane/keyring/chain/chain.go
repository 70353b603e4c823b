// Package chain puts several keyrings behind one, for switching keyrings
// (local to vault, or one local key file to another) without a failed
// unwrap: new data keys are wrapped by the primary keyring, and a data key
// wrapped by any member still unwraps, until a rewrap has moved every one
// to the primary.
//
// Each member must tell its own key ids from the others'
// (controlplane.KeyOwner); a key id's owner unwraps it. Key ids are
// namespaced by keyring ("local:3", "vault:transit/envplane:v2"), so two
// local keyrings in one chain own the same ids: the chain then asks each
// owner in turn, the primary first, and since a wrapped key is
// authenticated (AES-GCM with its key id), only the keyring that wrapped it
// opens it.
package chain

import (
	"context"
	"errors"
	"fmt"

	"github.com/envplane/envplane/controlplane"
)

// ErrNoOwner reports a key id that no keyring of the chain owns.
var ErrNoOwner = errors.New("no keyring of the chain owns the key id")

// member is a keyring of the chain and its KeyOwner side.
type member struct {
	kr    controlplane.Keyring
	owner controlplane.KeyOwner
}

// Chain wraps with its primary keyring and unwraps with whichever member
// owns a key id. It is safe for concurrent use if its members are. It
// formats as [redacted].
type Chain struct {
	members []member // the primary first
}

var (
	_ controlplane.Keyring        = (*Chain)(nil)
	_ controlplane.KeyOwner       = (*Chain)(nil)
	_ controlplane.KeyManager     = (*Chain)(nil)
	_ controlplane.Rewrapper      = (*Chain)(nil)
	_ controlplane.BatchRewrapper = (*Chain)(nil)
	_ controlplane.KeyringHealth  = (*Chain)(nil)
)

// New returns a chain that wraps with primary and unwraps with primary or
// any of readable, in that order of preference. It fails if a keyring is
// nil or does not implement controlplane.KeyOwner (the chain could not tell
// which one opens a key id). It keeps the keyrings, which stay the caller's
// to close.
func New(primary controlplane.Keyring, readable ...controlplane.Keyring) (*Chain, error) {
	all := append([]controlplane.Keyring{primary}, readable...)
	c := &Chain{members: make([]member, 0, len(all))}
	for i, kr := range all {
		if kr == nil {
			return nil, fmt.Errorf("cannot build keyring chain: keyring %d is nil", i)
		}
		owner, ok := kr.(controlplane.KeyOwner)
		if !ok {
			return nil, fmt.Errorf("cannot build keyring chain: keyring %d (%T) cannot tell its key ids from others' (no Owns method)", i, kr)
		}
		c.members = append(c.members, member{kr: kr, owner: owner})
	}
	return c, nil
}

// Primary returns the keyring that wraps new data keys.
func (c *Chain) Primary() controlplane.Keyring { return c.members[0].kr }

// Wrap wraps dataKey with the primary keyring and fails like it.
func (c *Chain) Wrap(ctx context.Context, dataKey []byte) ([]byte, string, error) {
	return c.members[0].kr.Wrap(ctx, dataKey)
}

// CurrentKeyID returns the primary keyring's current key id and fails like
// it.
func (c *Chain) CurrentKeyID(ctx context.Context) (string, error) {
	return c.members[0].kr.CurrentKeyID(ctx)
}

// Unwrap unwraps with the member that owns keyID (each owner in turn, the
// primary first, when several do) and returns the first data key one of them
// opens. It fails with an error wrapping ErrNoOwner if no member owns keyID;
// with the owner's own error when one member owns it; and with every
// owner's error joined when several do and none opens it.
func (c *Chain) Unwrap(ctx context.Context, wrapped []byte, keyID string) ([]byte, error) {
	var errs []error
	for _, m := range c.members {
		if !m.owner.Owns(keyID) {
			continue
		}
		dataKey, err := m.kr.Unwrap(ctx, wrapped, keyID)
		if err == nil {
			return dataKey, nil
		}
		errs = append(errs, err)
	}
	switch len(errs) {
	case 0:
		return nil, fmt.Errorf("cannot unwrap under %q: %w", keyID, ErrNoOwner)
	case 1:
		return nil, errs[0]
	default:
		return nil, fmt.Errorf("cannot unwrap under %s with any keyring of the chain: %w", keyID, errors.Join(errs...))
	}
}

// Rewrap moves a wrapped data key to the primary keyring's current version.
// When the primary owns keyID and is a controlplane.Rewrapper (Vault), the
// primary re-wraps it itself, so the data key never leaves it. Otherwise the
// owner unwraps it and the primary wraps it, and the chain's copy of the
// data key is cleared afterwards. It fails like Unwrap or the primary's
// Wrap.
func (c *Chain) Rewrap(ctx context.Context, wrapped []byte, keyID string) ([]byte, string, error) {
	primary := c.members[0]
	if rw, ok := primary.kr.(controlplane.Rewrapper); ok && primary.owner.Owns(keyID) {
		return rw.Rewrap(ctx, wrapped, keyID)
	}
	dataKey, err := c.Unwrap(ctx, wrapped, keyID)
	if err != nil {
		return nil, "", err
	}
	defer clear(dataKey)
	return primary.kr.Wrap(ctx, dataKey)
}

// RewrapBatch moves each wrapped data key to the primary keyring's current
// version, like Rewrap, and returns them in order. The keys the primary owns
// go to it in one batch when it is a controlplane.BatchRewrapper (Vault);
// the others move one by one. It fails as a whole, like Rewrap.
func (c *Chain) RewrapBatch(ctx context.Context, ws []controlplane.WrappedKey) ([]controlplane.WrappedKey, error) {
	out := make([]controlplane.WrappedKey, len(ws))
	primary := c.members[0]
	brw, batched := primary.kr.(controlplane.BatchRewrapper)
	var own []controlplane.WrappedKey
	var at []int
	for i, w := range ws {
		if batched && primary.owner.Owns(w.KeyID) {
			own, at = append(own, w), append(at, i)
			continue
		}
		cipher, keyID, err := c.Rewrap(ctx, w.Cipher, w.KeyID)
		if err != nil {
			return nil, err
		}
		out[i] = controlplane.WrappedKey{Cipher: cipher, KeyID: keyID}
	}
	if len(own) > 0 {
		moved, err := brw.RewrapBatch(ctx, own)
		if err != nil {
			return nil, err
		}
		for j, i := range at {
			out[i] = moved[j]
		}
	}
	return out, nil
}

// Owns reports whether any member owns keyID.
func (c *Chain) Owns(keyID string) bool {
	for _, m := range c.members {
		if m.owner.Owns(keyID) {
			return true
		}
	}
	return false
}

// Rotate rotates the primary keyring's key. It fails if the primary is not a
// controlplane.KeyManager, and like the primary's Rotate otherwise.
func (c *Chain) Rotate(ctx context.Context) (string, error) {
	km, err := c.manager()
	if err != nil {
		return "", err
	}
	return km.Rotate(ctx)
}

// Retire retires the primary keyring's versions below below; the other
// members' keys are left alone (they leave the chain instead). It fails if
// the primary is not a controlplane.KeyManager, and like the primary's
// Retire otherwise.
func (c *Chain) Retire(ctx context.Context, below int) error {
	km, err := c.manager()
	if err != nil {
		return err
	}
	return km.Retire(ctx, below)
}

// Version returns the version of one of the primary keyring's key ids; ok is
// false for another keyring's key id, or if the primary is not a
// controlplane.KeyManager.
func (c *Chain) Version(keyID string) (version int, ok bool) {
	km, err := c.manager()
	if err != nil {
		return 0, false
	}
	return km.Version(keyID)
}

// Health returns the primary keyring's health: nil when it can wrap new
// data keys now, and always nil for a primary that depends on no service
// (not a controlplane.KeyringHealth).
func (c *Chain) Health(ctx context.Context) error {
	h, ok := c.members[0].kr.(controlplane.KeyringHealth)
	if !ok {
		return nil
	}
	return h.Health(ctx)
}

// String returns [redacted].
func (c *Chain) String() string { return "[redacted]" }

// Format writes [redacted] for every verb.
func (c *Chain) Format(f fmt.State, _ rune) { fmt.Fprint(f, c.String()) }

func (c *Chain) manager() (controlplane.KeyManager, error) {
	km, ok := c.members[0].kr.(controlplane.KeyManager)
	if !ok {
		return nil, fmt.Errorf("the chain's primary keyring (%T) does not rotate or retire key versions", c.members[0].kr)
	}
	return km, nil
}
