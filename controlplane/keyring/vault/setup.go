package vault

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// SetupRetryInterval is the least time between two attempts to set the
// keyring up (log in, check the key) after one failed: while Vault is down,
// a flood of calls costs Vault one login a second at most.
const SetupRetryInterval = time.Second

// setup is the keyring's first-use state: not set up until an attempt
// succeeds, and set up for good afterwards.
type setup struct {
	done   atomic.Bool
	sem    chan struct{} // a lock that a caller can stop waiting for
	last   time.Time     // when the last attempt started; guarded by sem
	err    error         // the last attempt's error; guarded by sem
	closed bool          // guarded by sem
}

// errClosed reports a call on a closed keyring.
var errClosed = errors.New("vault keyring: the keyring is closed")

// notSetUpError is the answer while the keyring waits to try setting itself
// up again: Vault is not called, and the last attempt's error is kept.
type notSetUpError struct {
	last  error
	retry time.Duration
}

func (e *notSetUpError) Error() string {
	return fmt.Sprintf("vault keyring: not set up yet (next attempt in %s): %s",
		e.retry.Round(time.Millisecond), strings.TrimPrefix(e.last.Error(), "vault keyring: "))
}

func (e *notSetUpError) Unwrap() []error { return []error{ErrUnavailable, e.last} }

// Check sets the keyring up now if it is not yet: it logs in (token or
// AppRole), checks that the Transit key exists and can encrypt (creating it
// when Config.CreateKey is set and it is absent; creation is an upsert, so
// concurrent starts create one key), and starts renewing the token. It is
// for callers that want to fail fast at start rather than on first use. It
// is idempotent and calls Vault no more once the keyring is set up; call
// Health to know whether Vault can be used now. It fails with an error
// wrapping ErrDenied if Vault refuses the credentials, ErrKeyNotFound if the
// key (or the mount) is absent and may not be created, and ErrUnavailable
// if Vault cannot be reached or answers that it cannot serve (sealed).
// Within SetupRetryInterval of a failed attempt it does not call Vault and
// returns an error wrapping ErrUnavailable and that attempt's error.
func (k *Keyring) Check(ctx context.Context) error {
	return k.ready(ctx)
}

// Health returns nil when the keyring can wrap a data key now: it is set up,
// its token is valid and its Transit key is readable. Once the keyring is
// set up it sends Vault one request (it reads the key); before, it tries to
// set the keyring up, like Check, no more often than SetupRetryInterval
// whatever the number of calls. It fails like Check: with an error wrapping
// ErrDenied for a revoked or expired token, and ErrUnavailable for a Vault
// that is down, sealed or unreachable. The error names the keyring and the
// key, never the token.
func (k *Keyring) Health(ctx context.Context) error {
	if !k.setup.done.Load() {
		// A successful set-up has just read the key: nothing more to ask.
		return k.ready(ctx)
	}
	if _, err := k.readKey(ctx); err != nil {
		return fmt.Errorf("vault keyring: cannot wrap new data keys with %s: %w", k.mount+"/"+k.key, err)
	}
	return nil
}

// ready returns nil once the keyring is set up, and tries to set it up
// otherwise (see Check). Concurrent callers wait for one attempt, or until
// their ctx ends.
func (k *Keyring) ready(ctx context.Context) error {
	if k.setup.done.Load() {
		return nil
	}
	select {
	case k.setup.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("vault keyring: not set up yet: %w (%w)", ErrUnavailable, ctx.Err())
	}
	defer func() { <-k.setup.sem }()
	switch {
	case k.setup.done.Load():
		return nil
	case k.setup.closed:
		return errClosed
	}
	now := k.now()
	if k.setup.err != nil {
		since := now.Sub(k.setup.last)
		if since >= 0 && since < SetupRetryInterval {
			return &notSetUpError{last: k.setup.err, retry: SetupRetryInterval - since}
		}
	}
	k.setup.last = now
	err := k.session.login(ctx)
	if err == nil {
		err = k.ensureKey(ctx, k.createKey)
	}
	if err != nil {
		k.setup.err = err
		return err
	}
	k.setup.err = nil
	k.session.start()
	k.setup.done.Store(true)
	return nil
}
