package httpapi_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/httpapi"
)

func TestProblemForMapsEveryCode(t *testing.T) {
	tests := []struct {
		code   string
		status int
	}{
		{cp.EINVALID, http.StatusUnprocessableEntity},
		{cp.EMALFORMED, http.StatusBadRequest},
		{cp.EMETHOD, http.StatusMethodNotAllowed},
		{cp.ETOOLARGE, http.StatusRequestEntityTooLarge},
		{cp.EMEDIATYPE, http.StatusUnsupportedMediaType},
		{cp.EUNAUTHORIZED, http.StatusUnauthorized},
		{cp.EFORBIDDEN, http.StatusForbidden},
		{cp.ENOTFOUND, http.StatusNotFound},
		{cp.ECONFLICT, http.StatusConflict},
		{cp.ELOCKED, http.StatusLocked},
		{cp.ETOOMANY, http.StatusTooManyRequests},
		{cp.EUNAVAILABLE, http.StatusServiceUnavailable},
		{cp.EIDEMPOTENCY, http.StatusUnprocessableEntity},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			err := fmt.Errorf("cannot do it: %w", cp.Errorf(tt.code, "the %s message", tt.code))
			p := httpapi.ProblemFor(err)
			want := httpapi.Problem{
				Type:   "https://envplane.dev/problems/" + tt.code,
				Title:  http.StatusText(tt.status),
				Status: tt.status,
				Detail: "the " + tt.code + " message",
				Code:   tt.code,
			}
			if p == nil || p.Type != want.Type || p.Title != want.Title || p.Status != want.Status || p.Detail != want.Detail || p.Code != want.Code {
				t.Fatalf("ProblemFor = %+v, want %+v", p, want)
			}
		})
	}
}

func TestProblemForHidesInternalCauses(t *testing.T) {
	const cause = "dial tcp: password=hunter2"
	for name, err := range map[string]error{
		"plain error":      errors.New(cause),
		"EINTERNAL":        &cp.Error{Code: cp.EINTERNAL, Message: cause, Err: errors.New(cause)},
		"unknown code":     &cp.Error{Code: "made_up", Message: cause},
		"wrapped internal": fmt.Errorf("cannot open store: %w", errors.New(cause)),
	} {
		t.Run(name, func(t *testing.T) {
			p := httpapi.ProblemFor(err)
			if p.Status != http.StatusInternalServerError || p.Code != cp.EINTERNAL || p.Detail != "internal error" {
				t.Fatalf("ProblemFor: status %d code %q, want a 500 internal error", p.Status, p.Code)
			}
			b, _ := json.Marshal(p)
			if strings.Contains(string(b), "hunter2") || strings.Contains(p.Error(), "hunter2") {
				t.Fatal("the cause reached the problem")
			}
		})
	}
}

func TestProblemForKeepsFieldsButNotCause(t *testing.T) {
	err := &cp.Error{
		Code:    cp.EINVALID,
		Message: "invalid request",
		Fields:  []cp.FieldError{{Field: "slug", Message: "must match ^[a-z0-9]"}, {Field: "type", Message: "unknown"}},
		Err:     errors.New("secret-cause"),
	}
	p := httpapi.ProblemFor(err)
	if len(p.Errors) != 2 || p.Errors[0].Field != "slug" || p.Errors[1].Field != "type" {
		t.Fatalf("Errors = %+v", p.Errors)
	}
	if p.Detail != "invalid request" || strings.Contains(p.Error(), "secret-cause") {
		t.Fatalf("detail %q / Error %q", p.Detail, p.Error())
	}
	if got := p.Error(); got != "invalid request; slug: must match ^[a-z0-9]; type: unknown" {
		t.Fatalf("Error() = %q", got)
	}
	if httpapi.ProblemFor(nil) != nil {
		t.Fatal("ProblemFor(nil) is not nil")
	}
}

func TestProblemErrRoundTrip(t *testing.T) {
	for _, code := range []string{cp.EINVALID, cp.EMALFORMED, cp.EUNAUTHORIZED, cp.EFORBIDDEN, cp.ENOTFOUND, cp.ECONFLICT, cp.ELOCKED, cp.ETOOMANY, cp.EUNAVAILABLE, cp.EIDEMPOTENCY} {
		t.Run(code, func(t *testing.T) {
			sent := &cp.Error{Code: code, Message: "message for " + code, Fields: []cp.FieldError{{Field: "f", Message: "m"}}}
			b, err := json.Marshal(httpapi.ProblemFor(sent))
			if err != nil {
				t.Fatal(err)
			}
			var got httpapi.Problem
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			back := got.Err()
			if !cp.IsCode(back, code) {
				t.Fatalf("code after round trip = %q, want %q", cp.ErrorCode(back), code)
			}
			var e *cp.Error
			if !errors.As(back, &e) || e.Message != sent.Message || len(e.Fields) != 1 || e.Fields[0] != sent.Fields[0] {
				t.Fatalf("after round trip: %+v, want %+v", e, sent)
			}
		})
	}
}

func TestProblemErrWithoutCode(t *testing.T) {
	tests := []struct {
		status int
		code   string
	}{
		{http.StatusNotFound, cp.ENOTFOUND},
		{http.StatusUnauthorized, cp.EUNAUTHORIZED},
		{http.StatusMethodNotAllowed, cp.EMETHOD},
		{http.StatusBadGateway, cp.EINTERNAL},
	}
	for _, tt := range tests {
		p := &httpapi.Problem{Status: tt.status, Title: http.StatusText(tt.status)}
		err := p.Err()
		if !cp.IsCode(err, tt.code) || err.Error() != http.StatusText(tt.status) {
			t.Errorf("status %d: code %q message %q, want %q", tt.status, cp.ErrorCode(err), err.Error(), tt.code)
		}
	}
}
