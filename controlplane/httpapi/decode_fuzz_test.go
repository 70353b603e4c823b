package httpapi

// Internal tests: the decoders are unexported, and fuzzing them through a
// whole server would spend the fuzzing time on the store.

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	cp "github.com/envplane/envplane/controlplane"
)

// FuzzDecodeRequest feeds every request body type of the route table the
// same bytes, as the server reads them (checkBody, then decodeStrict): an
// answer is nil or a 4xx *controlplane.Error, never a panic or a 500; a body
// that passes is one UTF-8 JSON object sent as JSON.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []struct{ ct, body string }{
		{"application/json", `{"slug":"acme","name":"Acme"}`},
		{"application/json", `{"slug":"qa","type":"test","is_protected":true,"description":"x"}`},
		{"application/json; charset=utf-8", `{"name":"k","expires_at":"2030-01-01T00:00:00Z"}`},
		{"application/merge-patch+json", `{"grace_seconds":30,"scope":"all"}`},
		{"application/json", `{"below":2}`},
		{"application/json", `null`},
		{"application/json", `{"name":"a\u0000b"}`},
		{"application/json", "{\"name\":\"\xff\"}"},
		{"application/json", `{"grace_seconds":1e400}`},
		{"application/json", `{"expires_at":"tomorrow"}`},
		{"application/json", `{"a":1}{"b":2}`},
		{"text/plain", `{"slug":"acme"}`},
		{"", `{"role":"owner"}`},
		{"application/json", `[{"slug":"x"}]`},
	} {
		f.Add(s.ct, []byte(s.body))
	}
	var types []reflect.Type
	for _, r := range Routes() {
		if r.Request != nil {
			types = append(types, reflect.TypeOf(r.Request))
		}
	}
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		checked := checkBody(contentType, body)
		for _, typ := range types {
			err := checked
			if err == nil {
				err = decodeStrict(body, reflect.New(typ).Interface())
			}
			if err == nil {
				if !utf8.Valid(body) || !json.Valid(body) || !strings.HasPrefix(strings.TrimLeft(string(body), " \t\r\n"), "{") {
					t.Fatalf("%s: accepted a body that is not one UTF-8 JSON object: %q", typ, body)
				}
				continue
			}
			var e *cp.Error
			if p := ProblemFor(err); p.Status < 400 || p.Status >= 500 || !errors.As(err, &e) {
				t.Fatalf("%s: %q as %q answers %d %s (%v)", typ, body, contentType, p.Status, p.Code, err)
			}
		}
	})
}

// FuzzPreferWait: any Prefer header values give a wait from 0 to the cap, or
// no wait, or EMALFORMED naming Prefer; never a panic. A lone wait=N with
// digits is always read.
func FuzzPreferWait(f *testing.F) {
	for _, s := range []string{"", "wait=5", "respond-async, wait=30", `wait="10"; x=y`, "wait=abc", "wait=", "=5", "wait=99999999999999999999", "return=minimal;;", `x="a\"b", wait=1`, "wait=1,wait=2", "\x00", "wait=5 6"} {
		f.Add(s, "")
	}
	f.Add("wait=1", "wait=2")
	const maxWait = 120 * time.Second
	f.Fuzz(func(t *testing.T, a, b string) {
		var values []string
		for _, v := range []string{a, b} {
			if v != "" {
				values = append(values, v)
			}
		}
		d, ok, err := preferWait(values, maxWait)
		switch {
		case err != nil:
			var e *cp.Error
			if !errors.As(err, &e) || e.Code != cp.EMALFORMED || ProblemFor(err).Status != http.StatusBadRequest || len(e.Fields) != 1 || e.Fields[0].Field != "Prefer" {
				t.Fatalf("Prefer %q: %v, want EMALFORMED naming Prefer", values, err)
			}
		case ok && (d < 0 || d > maxWait):
			t.Fatalf("Prefer %q: wait %v outside 0..%v", values, d, maxWait)
		case !ok && d != 0:
			t.Fatalf("Prefer %q: no wait, yet %v", values, d)
		}
		if digits := strings.TrimPrefix(a, "wait="); b == "" && digits != a && digits != "" && strings.Trim(digits, "0123456789") == "" && (err != nil || !ok) {
			t.Fatalf("Prefer %q: a plain wait not read: ok=%v err=%v", a, ok, err)
		}
	})
}
