// Package vault is envplane's HashiCorp Vault keyring: data keys are wrapped
// and unwrapped by a Transit key (the key-encryption key), which never
// leaves Vault.
//
// # Starting while Vault is down
//
// New does no network I/O, so a server starts while Vault is down, sealed
// or unreachable. The keyring sets itself up on first use: it logs in,
// checks that the Transit key exists and can encrypt (creating it when
// Config.CreateKey is set), and starts renewing its token. A failed set-up
// is tried again on a later call, at most once per SetupRetryInterval;
// calls in between fail at once with an error wrapping ErrUnavailable (and
// the last attempt's error). Callers that want to fail fast at start call
// Check; readiness probes call Health.
//
// # Key ids and wrapped keys
//
// A key id names the Transit mount, the key and its version:
// "vault:transit/envplane:v3" for version 3 of key "envplane" on the mount
// "transit". A wrapped data key is Transit's ciphertext as Vault returns it
// ("vault:v3:..."); its version must be the key id's, so a wrapped key stored
// under the wrong key id is refused rather than decrypted.
//
// # Rotation
//
// Rotate adds a key version in Vault. Wrap always uses the key's newest
// version and CurrentKeyID reads it from Vault, so every process sharing the
// key follows a rotation at once, without reloading anything. Rewrap and
// RewrapBatch move wrapped keys to the newest version inside Vault
// (transit/rewrap): the data keys never leave it. Retire sets the key's
// min_decryption_version, after which keys wrapped below it fail to unwrap
// with ErrRetiredVersion. Callers find these operator capabilities, which
// controlplane.Keyring does not have, by type assertion.
//
// # Authentication
//
// A token, or an AppRole role id and secret id. A renewable token is renewed
// in the background for as long as Vault allows; a token from AppRole is
// replaced by logging in again when it can no longer be renewed, or at once
// when Vault refuses it. Wrapping, unwrapping and rewrapping need this
// policy (for the default mount and key); Rotate needs update on
// transit/keys/envplane/rotate, Retire on transit/keys/envplane/config, and
// creating the key update on transit/keys/envplane:
//
//	path "transit/encrypt/envplane" { capabilities = ["update"] }
//	path "transit/decrypt/envplane" { capabilities = ["update"] }
//	path "transit/rewrap/envplane"  { capabilities = ["update"] }
//	path "transit/keys/envplane"    { capabilities = ["read"] }
//
// # Secrets
//
// The token, the AppRole secret id and data keys never appear in an error or
// a log line, and a Keyring formats as [redacted]. Errors start with
// "vault keyring:" and match the package's sentinel errors with errors.Is.
package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/drivers"
)

// Defaults for the zero values of Config.
const (
	DefaultMount        = "transit"
	DefaultKey          = "envplane"
	DefaultAppRoleMount = "approle"
	DefaultTimeout      = 10 * time.Second
	DefaultMaxRetries   = 2
)

// KeyType is the Transit key type New creates when Config.CreateKey is set.
const KeyType = "aes256-gcm96"

// Config says which Vault, Transit key and credentials a Keyring uses. It
// holds secrets only as drivers.Secret, so printing it shows [redacted].
type Config struct {
	// Address is Vault's URL, such as https://vault.example.com:8200.
	Address string
	// Namespace is the Vault Enterprise namespace; empty for the root.
	Namespace string
	// Mount is the Transit mount path; "transit" when empty.
	Mount string
	// Key is the Transit key name; "envplane" when empty.
	Key string
	// CreateKey makes the keyring create the key (type aes256-gcm96) when
	// it does not exist yet, on first use; otherwise first use fails with
	// ErrKeyNotFound.
	CreateKey bool

	// Token authenticates the keyring. When it is empty, AppRole is used.
	Token drivers.Secret
	// AppRole logs in with a role id and secret id when Token is empty.
	AppRole AppRole

	// TLS configures the connection to an https Address.
	TLS TLS
	// Timeout bounds each call to Vault, retries included; DefaultTimeout
	// when zero.
	Timeout time.Duration
	// MaxRetries is how many times a call is retried, with backoff, after a
	// connection error or a 5xx, 412 or 429 answer; DefaultMaxRetries when
	// zero, none when negative.
	MaxRetries int

	// Logger receives token renewal events; they never carry the token.
	// Nothing is logged when nil.
	Logger *slog.Logger

	// Now is the clock that paces set-up attempts (SetupRetryInterval);
	// time.Now when nil. Tests replace it.
	Now func() time.Time
}

// AppRole is an AppRole login.
type AppRole struct {
	// Mount is the auth mount path; "approle" when empty.
	Mount    string
	RoleID   string
	SecretID drivers.Secret
}

// TLS configures the TLS connection to Vault. Paths name PEM files.
type TLS struct {
	// CAFile is the CA bundle that verifies Vault's certificate; the
	// system's roots are used when empty.
	CAFile string
	// CertFile and KeyFile are a client certificate and its key, for Vault
	// listeners that require one. Both or neither.
	CertFile string
	KeyFile  string
	// ServerName is the name checked against Vault's certificate (and sent
	// as SNI) when it differs from Address's host.
	ServerName string
	// InsecureSkipVerify accepts any certificate. For development only.
	InsecureSkipVerify bool
}

// Keyring wraps data keys with a Vault Transit key. It is safe for
// concurrent use. Close stops its token renewal.
type Keyring struct {
	client    *api.Client
	mount     string
	key       string
	prefix    string // key ids are prefix + version
	createKey bool
	timeout   time.Duration
	logger    *slog.Logger
	now       func() time.Time
	session   *session
	setup     *setup // a pointer, so that a copied Keyring (formatted by value) copies no lock
}

var (
	_ controlplane.Keyring        = (*Keyring)(nil)
	_ controlplane.KeyOwner       = (*Keyring)(nil)
	_ controlplane.KeyManager     = (*Keyring)(nil)
	_ controlplane.Rewrapper      = (*Keyring)(nil)
	_ controlplane.BatchRewrapper = (*Keyring)(nil)
	_ controlplane.KeyringHealth  = (*Keyring)(nil)
)

// New returns a keyring for cfg without calling Vault: it logs in, checks
// the Transit key (creating it when cfg.CreateKey is set) and starts
// renewing its token on first use (see the package comment), so it succeeds
// while Vault is down or sealed. It fails only on a configuration that
// cannot work (no address, no credentials, unreadable TLS files); the error
// names fields, never secrets. ctx is not used, since New does no I/O; call
// Check to fail fast when Vault cannot be used.
func New(_ context.Context, cfg Config) (*Keyring, error) {
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	client, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	k := &Keyring{
		client:    client,
		mount:     cfg.Mount,
		key:       cfg.Key,
		prefix:    "vault:" + cfg.Mount + "/" + cfg.Key + ":v",
		createKey: cfg.CreateKey,
		timeout:   cfg.Timeout,
		logger:    logger,
		now:       now,
		setup:     &setup{sem: make(chan struct{}, 1)},
	}
	k.session = newSession(client, cfg, logger)
	return k, nil
}

// validate applies Config's defaults and checks what can be checked before
// calling Vault. Errors name fields, never values of secrets.
func validate(cfg *Config) error {
	if cfg.Address == "" {
		return errors.New("vault keyring: address is required")
	}
	if u, err := url.Parse(cfg.Address); err != nil || u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("vault keyring: address %q is not a URL such as https://vault.example.com:8200", cfg.Address)
	}
	cfg.Mount = strings.Trim(cfg.Mount, "/")
	if cfg.Mount == "" {
		cfg.Mount = DefaultMount
	}
	if cfg.Key == "" {
		cfg.Key = DefaultKey
	}
	if strings.ContainsAny(cfg.Key, "/:") {
		return fmt.Errorf("vault keyring: key %q must not contain '/' or ':'", cfg.Key)
	}
	if strings.Contains(cfg.Mount, ":") {
		return fmt.Errorf("vault keyring: mount %q must not contain ':'", cfg.Mount)
	}
	if cfg.Token == "" && (cfg.AppRole.RoleID == "" || cfg.AppRole.SecretID == "") {
		return errors.New("vault keyring: a token, or an AppRole role id and secret id, is required")
	}
	cfg.AppRole.Mount = strings.Trim(cfg.AppRole.Mount, "/")
	if cfg.AppRole.Mount == "" {
		cfg.AppRole.Mount = DefaultAppRoleMount
	}
	if (cfg.TLS.CertFile == "") != (cfg.TLS.KeyFile == "") {
		return errors.New("vault keyring: tls needs both a client certificate and its key, or neither")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Timeout < 0 {
		return errors.New("vault keyring: timeout must not be negative")
	}
	switch {
	case cfg.MaxRetries == 0:
		cfg.MaxRetries = DefaultMaxRetries
	case cfg.MaxRetries < 0:
		cfg.MaxRetries = 0
	}
	return nil
}

// Close stops the token renewal and, when the keyring logged in with AppRole,
// revokes the token it got; calls afterwards fail. It waits for a set-up
// attempt in progress. It is idempotent and returns no error: revocation is
// best effort, since the token expires anyway.
func (k *Keyring) Close() error {
	k.setup.sem <- struct{}{}
	defer func() { <-k.setup.sem }()
	k.setup.closed = true
	k.session.close()
	return nil
}

// Wrap encrypts dataKey with the Transit key's newest version and returns
// Transit's ciphertext with the key id of that version. It fails like Check
// until the keyring is set up, and with an error wrapping ErrDenied,
// ErrKeyNotFound or ErrUnavailable when Vault does not encrypt; the error
// never carries the data key.
func (k *Keyring) Wrap(ctx context.Context, dataKey []byte) ([]byte, string, error) {
	ws, err := k.WrapBatch(ctx, [][]byte{dataKey})
	if err != nil {
		return nil, "", err
	}
	return ws[0].Cipher, ws[0].KeyID, nil
}

// Unwrap decrypts a data key that Wrap (or a rewrap) returned with keyID. It
// fails with an error wrapping ErrKeyID if keyID is not this keyring's,
// ErrRetiredVersion if the version is below the key's
// min_decryption_version, ErrUnknownVersion if it is newer than the key's
// latest, ErrUnwrap if the wrapped key was altered or is not under keyID's
// version, and ErrDenied or ErrUnavailable when Vault refuses or cannot
// answer (or like Check, until the keyring is set up). Errors never carry
// the wrapped key.
func (k *Keyring) Unwrap(ctx context.Context, wrapped []byte, keyID string) ([]byte, error) {
	keys, err := k.UnwrapBatch(ctx, []Wrapped{{Cipher: wrapped, KeyID: keyID}})
	if err != nil {
		return nil, err
	}
	return keys[0], nil
}

// CurrentKeyID reads the Transit key from Vault and returns the key id of
// its newest version, the one Wrap uses. It fails like Key.
func (k *Keyring) CurrentKeyID(ctx context.Context) (string, error) {
	info, err := k.Key(ctx)
	if err != nil {
		return "", err
	}
	return info.CurrentKeyID, nil
}

// String returns [redacted]. It has a value receiver, like Format, so a
// copied Keyring cannot print its client or token either.
func (k Keyring) String() string { return "[redacted]" }

// Format writes [redacted] for every verb.
func (k Keyring) Format(f fmt.State, _ rune) { fmt.Fprint(f, k.String()) }
