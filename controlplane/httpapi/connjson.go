package httpapi

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends a's JSON to b, as encoding/json with HTML escaping off
// writes it (a newline ends it, as json.Encoder's does), and returns the
// extended slice. The router answers with it: reflection was the largest
// cost of a cached resolve.
func (a ConnectionAnswer) AppendJSON(b []byte) []byte {
	b = append(b, `{"environment_id":`...)
	b = appendJSONString(b, a.EnvironmentID)
	b = append(b, `,"organization":`...)
	b = appendJSONString(b, a.Organization)
	b = append(b, `,"environment":`...)
	b = appendJSONString(b, a.Environment)
	b = append(b, `,"driver":`...)
	b = appendJSONString(b, a.Driver)
	b = append(b, `,"scope":`...)
	b = appendJSONString(b, string(a.Scope))
	b = append(b, `,"dsn":`...)
	b = appendJSONString(b, a.DSN)
	b = append(b, `,"url":`...)
	b = appendJSONString(b, a.URL)
	if a.Host != "" {
		b = append(b, `,"host":`...)
		b = appendJSONString(b, a.Host)
	}
	if a.Port != 0 {
		b = append(b, `,"port":`...)
		b = strconv.AppendInt(b, int64(a.Port), 10)
	}
	b = append(b, `,"database":`...)
	b = appendJSONString(b, a.Database)
	if a.Username != "" {
		b = append(b, `,"username":`...)
		b = appendJSONString(b, a.Username)
	}
	b = append(b, `,"secret":`...)
	b = appendJSONString(b, a.Secret)
	b = append(b, `,"credential_id":`...)
	b = appendJSONString(b, a.CredentialID)
	if a.ExpiresAt != nil {
		b = append(b, `,"expires_at":`...)
		b = appendJSONTime(b, *a.ExpiresAt)
	}
	b = append(b, `,"refresh_after":`...)
	b = appendJSONTime(b, a.RefreshAfter)
	return append(b, "}\n"...)
}

// appendJSONTime appends t as encoding/json does: RFC 3339 with
// nanoseconds, quoted.
func appendJSONTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendJSONString appends s quoted as encoding/json does without HTML
// escaping: quote, backslash and control characters escaped (\n, \r, \t,
// else \u00XX), invalid UTF-8 as \ufffd, and U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
