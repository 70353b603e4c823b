package httpapi

import (
	"errors"
	"net/http"

	cp "github.com/envplane/envplane/controlplane"
)

// ProblemContentType is the media type of every error answer (RFC 9457).
const ProblemContentType = "application/problem+json"

// problemTypeBase prefixes the code to make a problem's type URI.
const problemTypeBase = "https://envplane.dev/problems/"

// Problem is the body of every error answer: an RFC 9457 problem with the
// control plane's error code and the fields at fault.
type Problem struct {
	Type   string          `json:"type"`
	Title  string          `json:"title"`
	Status int             `json:"status"`
	Detail string          `json:"detail"`
	Code   string          `json:"code"`
	Errors []cp.FieldError `json:"errors,omitempty"`
}

// codeStatus maps each error code to its one HTTP status; codes absent here
// are internal errors (500).
func codeStatus(code string) int {
	switch code {
	case cp.EINVALID, cp.EIDEMPOTENCY:
		return http.StatusUnprocessableEntity
	case cp.EMALFORMED:
		return http.StatusBadRequest
	case cp.EMETHOD:
		return http.StatusMethodNotAllowed
	case cp.ETOOLARGE:
		return http.StatusRequestEntityTooLarge
	case cp.EMEDIATYPE:
		return http.StatusUnsupportedMediaType
	case cp.EUNAUTHORIZED, cp.ETOTP:
		return http.StatusUnauthorized
	case cp.EFORBIDDEN, cp.ETWOFACTOR:
		return http.StatusForbidden
	case cp.EGONE:
		return http.StatusGone
	case cp.ENOTFOUND:
		return http.StatusNotFound
	case cp.ECONFLICT, cp.ETAMPERED:
		return http.StatusConflict
	case cp.ELOCKED:
		return http.StatusLocked
	case cp.ETOOMANY:
		return http.StatusTooManyRequests
	case cp.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// ProblemFor maps err to the problem the API answers with. A *controlplane.Error
// with a known code keeps its code, message and fields; any other error
// (including EINTERNAL) becomes a 500 with the detail "internal error", so the
// cause never reaches a client. It returns nil for a nil error.
func ProblemFor(err error) *Problem {
	if err == nil {
		return nil
	}
	code := cp.ErrorCode(err)
	status := codeStatus(code)
	p := &Problem{Code: code, Status: status, Detail: cp.ErrorMessage(err)}
	if status == http.StatusInternalServerError {
		p.Code, p.Detail = cp.EINTERNAL, "internal error"
	} else if e := (*cp.Error)(nil); errors.As(err, &e) {
		p.Errors = e.Fields
	}
	p.Type = problemTypeBase + p.Code
	p.Title = http.StatusText(status)
	return p
}

// Error returns the problem as text for people: the detail (or the title when
// the server sent none) and the fields at fault. It holds only what the server
// sent, which never carries a secret.
func (p *Problem) Error() string {
	msg := p.Detail
	if msg == "" {
		msg = p.Title
	}
	if msg == "" {
		msg = http.StatusText(p.Status)
	}
	for _, f := range p.Errors {
		msg += "; " + f.Field + ": " + f.Message
	}
	return msg
}

// Err turns a received problem back into a *controlplane.Error with the same
// code, message and fields, so callers test it with controlplane.IsCode. A
// problem without a code gets the code its status maps to (EINTERNAL when
// none does).
func (p *Problem) Err() error {
	code := p.Code
	if code == "" {
		code = statusCode(p.Status)
	}
	msg := p.Detail
	if msg == "" {
		msg = p.Title
	}
	return &cp.Error{Code: code, Message: msg, Fields: p.Errors}
}

// statusCode is codeStatus read backwards, for answers that carry no code
// (a proxy's 502, an echo 404 for an unknown route).
func statusCode(status int) string {
	for _, code := range []string{cp.EINVALID, cp.EMALFORMED, cp.EMETHOD, cp.ETOOLARGE, cp.EMEDIATYPE, cp.EUNAUTHORIZED, cp.EFORBIDDEN, cp.ENOTFOUND, cp.ECONFLICT, cp.ELOCKED, cp.ETOOMANY, cp.EUNAVAILABLE, cp.EGONE} {
		if codeStatus(code) == status {
			return code
		}
	}
	return cp.EINTERNAL
}
