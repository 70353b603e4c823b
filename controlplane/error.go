package controlplane

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"
)

// Error codes. The HTTP layer maps each to one status; anything else is an
// internal error and is shown to clients only as "internal error".
const (
	EINVALID      = "invalid"            // 422: fields failed validation
	EMALFORMED    = "malformed"          // 400: the request could not be read
	EMETHOD       = "method_not_allowed" // 405: the route exists, not with this method
	ETOOLARGE     = "too_large"          // 413: the request body is over the limit
	EMEDIATYPE    = "unsupported_media"  // 415: the request body is not application/json
	EUNAUTHORIZED = "unauthorized"       // 401: no key, or a bad one
	EFORBIDDEN    = "forbidden"          // 403: visible, but the role is not enough
	ENOTFOUND     = "not_found"          // 404: absent, in another org, or not visible
	ECONFLICT     = "conflict"           // 409: taken, protected, last owner, operation running
	ETAMPERED     = "tampered"           // 409: a database's system tables were changed outside envplane
	ELOCKED       = "locked"             // 423: the environment is suspended
	ETOOMANY      = "too_many"           // 429: quota or rate
	EUNAVAILABLE  = "unavailable"        // 503: a target cannot be reached or has no room
	EINTERNAL     = "internal"           // 500
	EIDEMPOTENCY  = "idempotency"        // 422: an Idempotency-Key reused with another body
)

// Error codes of sign-in and invitations (adr/0023).
const (
	ETWOFACTOR = "two_factor_required" // 403: the organization requires a second factor the member has not enrolled
	ETOTP      = "totp_required"       // 401: the password was right; the account's second factor is needed too
	EGONE      = "gone"                // 410: an invitation accepted, revoked or expired
)

// FieldError names one invalid field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is the control plane's one error type: a code for machines, a message
// for people, and the fields at fault. Messages never carry secrets.
type Error struct {
	Code    string
	Message string
	Fields  []FieldError
	// RetryAfter, when positive, is how long the client should wait before
	// trying again (HTTP Retry-After), for ECONFLICT and ETOOMANY.
	RetryAfter time.Duration
	// Err is the underlying cause, for logs; it is never shown to clients.
	Err error
}

// Error returns the message, with the cause when there is one.
func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid returns an EINVALID error naming the fields at fault.
func Invalid(fields ...FieldError) *Error {
	msg := "invalid request"
	if len(fields) == 1 {
		msg = fields[0].Field + ": " + fields[0].Message
	}
	return &Error{Code: EINVALID, Message: msg, Fields: fields}
}

// ErrorCode returns the code of the first *Error in err's chain; for an
// error without one, EUNAVAILABLE when it is a failure to reach a server
// (unreachable), else EINTERNAL.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if unreachable(err) {
		return EUNAVAILABLE
	}
	return EINTERNAL
}

// ErrorMessage returns the message of the first *Error in err's chain, a
// fixed message for a failure to reach a server, and "internal error" for
// any other error, so causes never reach clients.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Code != EINTERNAL {
		return e.Message
	}
	if e == nil && unreachable(err) {
		return storeUnreachable
	}
	return "internal error"
}

// storeUnreachable is what a client is told when the store cannot be
// reached, by ErrorMessage and by the router (storeUnavailable).
const storeUnreachable = "the control plane's store cannot be reached; try again"

// unreachable reports whether err is a failure to reach a server rather
// than an answer from one: a network operation that failed (refused,
// reset, cut off), a connection that closed under a statement, or a
// PostgreSQL server shutting down, crashing or starting up (SQLSTATE
// class 08 and 57P01-57P03). Drivers report their targets' outages as
// their own errors, so what arrives here unclassified is the store's: a
// 503 tells the client to try again, where a 500 would blame the server.
func unreachable(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var st interface{ SQLState() string }
	if errors.As(err, &st) {
		code := st.SQLState()
		return strings.HasPrefix(code, "08") || code == "57P01" || code == "57P02" || code == "57P03"
	}
	return false
}

// IsCode reports whether err carries the code.
func IsCode(err error, code string) bool { return ErrorCode(err) == code }

// Wrap returns e with err as its cause, for logs; clients see only the message.
func (e *Error) Wrap(err error) *Error {
	e.Err = err
	return e
}

// After returns e with RetryAfter set to d.
func (e *Error) After(d time.Duration) *Error {
	e.RetryAfter = d
	return e
}

// RetryAfterOf returns the RetryAfter of the first *Error in err's chain, 0 when none.
func RetryAfterOf(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// withCode returns e with another code, keeping message and fields.
func (e *Error) withCode(code string) *Error {
	e.Code = code
	return e
}
