package sqlopen_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/envplane/envplane/dataplane/router/sqlopen"
	"github.com/envplane/envplane/drivers"
)

// FuzzConnectorDSN parses any DSN for each driver without connecting: no
// panic, and neither the error nor the connector prints the secret put in
// it. The DSN is template with {secret} replaced by secret, an alphanumeric
// value of 8 characters or more (so that no escaping hides it).
func FuzzConnectorDSN(f *testing.F) {
	for _, s := range []struct{ driver, template string }{
		{"postgres", "postgres://u:{secret}@host:5432/db?sslmode=disable"},
		{"postgres", "postgres://u:{secret}@host:notaport/db"},
		{"postgres", "host=h user=u password={secret} dbname=d"},
		{"postgres", "postgres://u@h/db?password={secret}&sslmode=%zz"},
		{"turso", "libsql://db.example.com?authToken={secret}"},
		{"turso", "libsql://host/%zz?authToken={secret}"},
		{"turso", "http://127.0.0.1:8080?authToken={secret}&x=1"},
		{"turso", "libsql://u:{secret}@host/%zz"},
		{"turso", "ftp://u:{secret}@host/db"},
		// A token written where a parameter's name or the scheme goes.
		{"turso", "libsql://db.example.com?{secret}"},
		{"turso", "{secret}://db.example.com"},
		{"postgres", "postgres://u:{secret}@[::1/db"},
		{"sqlite", "file:env.db?_pragma=%zz{secret}"},
		{"sqlite", "file:/tmp/env.db?mode=ro&_pragma=busy_timeout(5000)&x={secret}"},
	} {
		f.Add(s.driver, s.template, "pw"+strings.Repeat("Q", 14))
	}
	f.Fuzz(func(t *testing.T, driver, template, secret string) {
		if len(secret) < 8 || strings.Trim(secret, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != "" {
			t.Skip()
		}
		// Only a secret put in by the template is one: the same characters
		// elsewhere in the input are not (an error may name the driver, or
		// a DSN without a secret may hold them, quoted or not).
		rest := strings.ReplaceAll(template, "{secret}", "\x00")
		for _, other := range []string{driver, strconv.Quote(driver), rest, strconv.Quote(rest)} {
			if strings.Contains(other, secret) {
				t.Skip()
			}
		}
		dsn := strings.ReplaceAll(template, "{secret}", secret)
		c, err := sqlopen.Connector(driver, drivers.Secret(dsn))
		if err != nil {
			if strings.Contains(printed(err), secret) {
				t.Fatalf("%s: the error for %q quotes its secret", driver, template)
			}
			return
		}
		if strings.Contains(printed(c), secret) {
			t.Fatalf("%s: the connector for %q prints its secret", driver, template)
		}
	})
}
