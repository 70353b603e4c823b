package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	cp "github.com/envplane/envplane/controlplane"
)

// jsonSerializer is echo's JSON codec without HTML escaping: answers carry
// DSNs and URLs ("?mode=ro&_pragma=..."), which must read verbatim, not as
// \u0026, to anyone who copies them from a terminal.
type jsonSerializer struct{}

// Serialize writes i as JSON.
func (jsonSerializer) Serialize(c echo.Context, i any, indent string) error {
	enc := json.NewEncoder(c.Response())
	enc.SetEscapeHTML(false)
	if indent != "" {
		enc.SetIndent("", indent)
	}
	return enc.Encode(i)
}

// Deserialize reads JSON into i; handlers use bind instead, this serves echo's own Bind.
func (jsonSerializer) Deserialize(c echo.Context, i any) error {
	if err := json.NewDecoder(c.Request().Body).Decode(i); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("malformed JSON: %v", err))
	}
	return nil
}

// jsonBody checks the body of a route that takes one before anything is
// recorded for the request (an idempotency key included), and puts it back
// for bind: over the body limit is 413, checkBody's answers otherwise.
func jsonBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return readError(err)
		}
		if err := checkBody(req.Header.Get(echo.HeaderContentType), body); err != nil {
			return err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		return next(c)
	}
}

// readError turns a failure to read the body into the answer: echo's body
// limit is 413, anything else (a client gone mid-body) 400.
func readError(err error) error {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return fromEcho(he)
	}
	return cp.Errorf(cp.EMALFORMED, "cannot read the request body")
}

// checkBody decides whether body, sent as contentType, is a request body the
// API reads: an empty body is 400; a type other than application/json (or
// application/*+json, charset UTF-8 if one is named) 415, while no type at
// all is read as JSON (RFC 9110 §8.3 lets a recipient examine the data); JSON that does not
// parse, or parses to anything but one object (null included), 400; bytes
// that are not UTF-8 are 422 naming the top-level field that holds them (400
// when none does), because encoding/json would silently turn them into
// U+FFFD and store other text than was sent.
func checkBody(contentType string, body []byte) error {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return cp.Errorf(cp.EMALFORMED, "a JSON body is required")
	}
	if contentType != "" && !jsonMediaType(contentType) {
		return cp.Errorf(cp.EMEDIATYPE, "the body must be sent as application/json")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		var syntaxErr *json.SyntaxError
		if errors.As(err, &syntaxErr) {
			return cp.Errorf(cp.EMALFORMED, "malformed JSON at byte %d", syntaxErr.Offset)
		}
		return cp.Errorf(cp.EMALFORMED, "the body must be a JSON object")
	}
	if trimmed[0] != '{' {
		return cp.Errorf(cp.EMALFORMED, "the body must be a JSON object")
	}
	if utf8.Valid(body) {
		return nil
	}
	var bad []cp.FieldError
	for name, raw := range fields {
		if !utf8.Valid(raw) || strings.ContainsRune(name, utf8.RuneError) {
			bad = append(bad, cp.FieldError{Field: name, Message: "must be UTF-8 text"})
		}
	}
	if len(bad) == 0 {
		return cp.Errorf(cp.EMALFORMED, "the body must be UTF-8")
	}
	slices.SortFunc(bad, func(a, b cp.FieldError) int { return strings.Compare(a.Field, b.Field) })
	return cp.Invalid(bad...)
}

// jsonMediaType reports whether a Content-Type names JSON in UTF-8.
func jsonMediaType(contentType string) bool {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return false
	}
	return mt == echo.MIMEApplicationJSON || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}
