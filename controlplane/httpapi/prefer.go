package httpapi

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	cp "github.com/envplane/envplane/controlplane"
)

// preferWait reads the wait preference of RFC 7240 from the values of the
// Prefer header: ok is false when none names one, and a wait above max is
// max. Other preferences are ignored, as the RFC asks, and only the first
// wait counts. A header that does not parse as the RFC's grammar, or a wait
// that is not a whole number of seconds, is EMALFORMED naming Prefer.
func preferWait(values []string, max time.Duration) (d time.Duration, ok bool, err error) {
	for _, v := range values {
		prefs, err := parsePrefer(v)
		if err != nil {
			return 0, false, malformedHeader("Prefer", err.Error())
		}
		for _, p := range prefs {
			if ok || !strings.EqualFold(p.name, "wait") {
				continue
			}
			if d, err = waitSeconds(p.value, max); err != nil {
				return 0, false, malformedHeader("Prefer", "wait must be a whole number of seconds")
			}
			ok = true
		}
	}
	return d, ok, nil
}

// waitSeconds reads a wait value: digits only, capped at max.
func waitSeconds(raw string, max time.Duration) (time.Duration, error) {
	if raw == "" || strings.Trim(raw, "0123456789") != "" {
		return 0, strconv.ErrSyntax
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n > int64(max/time.Second) {
		// Only digits: an overflow is a very long wait, and so the longest.
		return max, nil
	}
	return time.Duration(n) * time.Second, nil
}

// malformedHeader is the 400 for a request header that does not parse, naming it.
func malformedHeader(name, msg string) error {
	return &cp.Error{Code: cp.EMALFORMED, Message: name + ": " + msg, Fields: []cp.FieldError{{Field: name, Message: msg}}}
}

// preference is one element of a Prefer header; its parameters are parsed
// and dropped, since no preference envplane reads takes any.
type preference struct {
	name, value string
}

// parsePrefer parses one Prefer header value (RFC 7240 §2):
//
//	1#( token [ BWS "=" BWS word ] *( OWS ";" [ OWS token [ BWS "=" BWS word ] ] ) )
//
// where word is a token or a quoted-string. Empty list elements are allowed
// (RFC 9110 §5.6.1). The error says what was expected where.
func parsePrefer(v string) ([]preference, error) {
	p := headerScanner{s: v}
	var prefs []preference
	for {
		p.skipSpace()
		if p.done() {
			return prefs, nil
		}
		if p.peek() == ',' {
			p.i++
			continue
		}
		pref, err := p.param()
		if err != nil {
			return nil, err
		}
		prefs = append(prefs, pref)
		for p.skipSpace(); !p.done() && p.peek() == ';'; p.skipSpace() {
			p.i++
			p.skipSpace()
			if p.done() || p.peek() == ',' || p.peek() == ';' {
				continue
			}
			if _, err := p.param(); err != nil {
				return nil, err
			}
		}
		if !p.done() && p.peek() != ',' {
			return nil, p.expected("',' or ';'")
		}
	}
}

// headerScanner reads an HTTP header value left to right.
type headerScanner struct {
	s string
	i int
}

func (p *headerScanner) done() bool { return p.i >= len(p.s) }
func (p *headerScanner) peek() byte { return p.s[p.i] }

func (p *headerScanner) skipSpace() {
	for !p.done() && (p.peek() == ' ' || p.peek() == '\t') {
		p.i++
	}
}

func (p *headerScanner) expected(what string) error {
	return fmt.Errorf("expected %s at byte %d", what, p.i)
}

// param reads token [ BWS "=" BWS word ].
func (p *headerScanner) param() (preference, error) {
	name := p.token()
	if name == "" {
		return preference{}, p.expected("a token")
	}
	pref := preference{name: name}
	p.skipSpace()
	if p.done() || p.peek() != '=' {
		return pref, nil
	}
	p.i++
	p.skipSpace()
	if !p.done() && p.peek() == '"' {
		v, err := p.quoted()
		pref.value = v
		return pref, err
	}
	if pref.value = p.token(); pref.value == "" {
		return preference{}, p.expected("a token or a quoted string")
	}
	return pref, nil
}

// token reads 1*tchar (RFC 9110 §5.6.2); "" when there is none.
func (p *headerScanner) token() string {
	start := p.i
	for !p.done() && tchar(p.peek()) {
		p.i++
	}
	return p.s[start:p.i]
}

// quoted reads a quoted-string (RFC 9110 §5.6.4) and returns its content.
func (p *headerScanner) quoted() (string, error) {
	p.i++ // the opening quote
	var b strings.Builder
	for !p.done() {
		c := p.peek()
		p.i++
		switch {
		case c == '"':
			return b.String(), nil
		case c == '\\' && !p.done() && qdtext(p.peek(), true):
			b.WriteByte(p.peek())
			p.i++
		case qdtext(c, false):
			b.WriteByte(c)
		default:
			return "", fmt.Errorf("unexpected byte 0x%02x at byte %d", c, p.i-1)
		}
	}
	return "", p.expected("a closing quote")
}

// tchar reports whether c may appear in a token.
func tchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// qdtext reports whether c may appear in a quoted-string; escaped (after a
// backslash) admits the quote and the backslash too.
func qdtext(c byte, escaped bool) bool {
	switch {
	case c == '\t' || c == ' ' || c >= 0x80:
		return true
	case c == '"' || c == '\\':
		return escaped
	}
	return c > 0x20 && c < 0x7f
}
