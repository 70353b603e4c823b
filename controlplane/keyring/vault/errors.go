package vault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/hashicorp/vault/api"
)

// Conditions a Vault keyring reports, checked with errors.Is. Every error the
// package returns starts with "vault keyring:" and names the operation and,
// where there is one, the key id; none carries a data key, a ciphertext, the
// token or the AppRole secret id.
var (
	// ErrDenied reports that Vault refused the keyring's token: invalid,
	// expired or revoked, or without a policy for the path (HTTP 403).
	ErrDenied = errors.New("vault denied the request: the token is invalid, expired or revoked, or lacks a policy for the path")
	// ErrUnavailable reports that Vault could not be reached or answered it
	// cannot serve now (sealed, standby, rate limited, 5xx), after retries.
	ErrUnavailable = errors.New("vault is unreachable or cannot serve the request")
	// ErrKeyNotFound reports that the Transit mount or key does not exist.
	ErrKeyNotFound = errors.New("transit key not found")
	// ErrKeyID reports a key id that is malformed or names another keyring,
	// mount or key than this keyring's.
	ErrKeyID = errors.New("not a key id of this keyring")
	// ErrUnknownVersion reports a key version newer than the key's latest.
	ErrUnknownVersion = errors.New("unknown key version")
	// ErrRetiredVersion reports a key version below the key's
	// min_decryption_version: data keys wrapped under it no longer unwrap.
	ErrRetiredVersion = errors.New("key version is retired")
	// ErrUnwrap reports a wrapped key that Vault could not decrypt: it was
	// altered, or wrapped under another key.
	ErrUnwrap = errors.New("wrapped key was altered or wrapped under another key")
	// ErrRejected reports any other request Vault refused as invalid.
	ErrRejected = errors.New("vault rejected the request")
)

// responseError is an error status from Vault. It keeps Vault's own messages,
// scrubbed of the secrets the keyring knows, and the condition it maps to.
type responseError struct {
	status   int
	messages []string
	kind     error
}

func (e *responseError) Error() string {
	if len(e.messages) == 0 {
		return fmt.Sprintf("%v (vault answered %d)", e.kind, e.status)
	}
	return fmt.Sprintf("%v (vault answered %d: %s)", e.kind, e.status, strings.Join(e.messages, "; "))
}

func (e *responseError) Unwrap() error { return e.kind }

// translate turns an error of the Vault client into one of the package's
// conditions. Vault's messages are kept for operators, with every secret in
// secrets replaced; a body Vault's client could not parse is dropped, since
// a proxy in the way may echo anything.
func translate(err error, secrets ...string) error {
	var re *api.ResponseError
	if errors.As(err, &re) {
		e := &responseError{status: re.StatusCode, kind: kindOf(re.StatusCode)}
		if re.RawError {
			e.messages = []string{"unparsable answer"}
		} else {
			for _, m := range re.Errors {
				e.messages = append(e.messages, scrub(m, secrets...))
			}
		}
		return e
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	// Transport errors name the method and URL (address and path, never the
	// token, which travels in a header) and the network cause; the message is
	// scrubbed all the same, and the cause stays reachable for errors.Is
	// (context.DeadlineExceeded, say).
	return &transportError{msg: ErrUnavailable.Error() + ": " + scrub(err.Error(), secrets...), cause: err}
}

// transportError is a call that got no answer from Vault.
type transportError struct {
	msg   string
	cause error
}

func (e *transportError) Error() string   { return e.msg }
func (e *transportError) Unwrap() []error { return []error{ErrUnavailable, e.cause} }

func kindOf(status int) error {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return ErrDenied
	case status == http.StatusNotFound:
		return ErrKeyNotFound
	case status == http.StatusTooManyRequests || status == http.StatusPreconditionFailed || status >= 500:
		return ErrUnavailable
	default:
		return ErrRejected
	}
}

// isStatus reports whether err is an error status from Vault with the code.
func isStatus(err error, status int) bool {
	var e *responseError
	return errors.As(err, &e) && e.status == status
}

// scrub replaces every non-empty secret in s.
func scrub(s string, secrets ...string) string {
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return s
}
