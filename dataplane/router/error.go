package router

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
)

// Sentinel errors. An *Error matches the one for its status with errors.Is;
// ErrUnavailable also wraps failures to reach the control plane at all.
var (
	// ErrUnauthorized reports that the token is missing, unknown, expired or revoked (401).
	ErrUnauthorized = errors.New("the control plane refused the token")
	// ErrForbidden reports that the token may see the environment but not use the scope (403).
	ErrForbidden = errors.New("the scope is not allowed")
	// ErrNotFound reports that the environment does not exist or is not visible to the token (404).
	ErrNotFound = errors.New("environment not found")
	// ErrSuspended reports that the environment is suspended (423).
	ErrSuspended = errors.New("environment suspended")
	// ErrUnavailable reports that the control plane could not be reached, or
	// answered 502, 503 or 504: a transient condition worth retrying.
	ErrUnavailable = errors.New("control plane unavailable")
	// ErrClosed reports that the Pool was closed.
	ErrClosed = errors.New("router: pool closed")
)

// FieldError names one field the control plane found invalid.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is a refusal from the router: the status and the problem+json body
// (RFC 9457) the control plane answered with. The control plane never puts a
// secret in a problem, and the client adds none.
type Error struct {
	// Status is the HTTP status.
	Status int `json:"status"`
	// Code is the control plane's error code ("not_found", "locked"...);
	// empty when the answer was not a problem.
	Code   string       `json:"code"`
	Type   string       `json:"type"`
	Title  string       `json:"title"`
	Detail string       `json:"detail"`
	Errors []FieldError `json:"errors"`
}

// Error returns "router: STATUS CODE: DETAIL".
func (e *Error) Error() string {
	msg := fmt.Sprintf("router: %d", e.Status)
	if e.Code != "" {
		msg += " " + e.Code
	}
	switch {
	case e.Detail != "":
		msg += ": " + e.Detail
	case e.Title != "":
		msg += ": " + e.Title
	}
	return msg
}

// Is reports whether target is the sentinel for e's status.
func (e *Error) Is(target error) bool {
	switch e.Status {
	case http.StatusUnauthorized:
		return target == ErrUnauthorized
	case http.StatusForbidden:
		return target == ErrForbidden
	case http.StatusNotFound:
		return target == ErrNotFound
	case http.StatusLocked:
		return target == ErrSuspended
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return target == ErrUnavailable
	}
	return false
}

// problem turns a refusal into an *Error: the problem+json body when there
// is one, the status text otherwise (a proxy's HTML page is not quoted).
func problem(status int, contentType string, body []byte) *Error {
	e := &Error{}
	if mt, _, err := mime.ParseMediaType(contentType); err == nil && (mt == "application/problem+json" || mt == "application/json") {
		if json.Unmarshal(body, e) != nil {
			e = &Error{}
		}
	}
	e.Status = status
	if e.Title == "" {
		e.Title = http.StatusText(status)
	}
	return e
}

// final reports whether e is a refusal that asking again will not change
// until someone acts: the token is refused (401), the scope is not allowed
// (403), or the environment is gone or hidden (404). A suspension (423) and
// the control plane's own failures are worth retrying.
func (e *Error) final() bool {
	switch e.Status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
		return true
	}
	return false
}

// finalError returns the *Error in err's chain when it is final, nil otherwise.
func finalError(err error) *Error {
	var e *Error
	if errors.As(err, &e) && e.final() {
		return e
	}
	return nil
}
