package httpapi_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane/httpapi"
)

// TestConnectionJSONMatchesEncodingJSON: the router's hand-written JSON is
// byte for byte what encoding/json (HTML escaping off) writes, for plain
// values, empty optional fields, and text that needs escaping.
func TestConnectionJSONMatchesEncodingJSON(t *testing.T) {
	at := time.Unix(1_900_000_000, 123_456_789).UTC()
	zone := time.FixedZone("x", 5*3600+1800)
	odd := "q\"b\\s/<>&\n\r\t\x00\x1f\x7f é \u2028\u2029 \xff\xfe 𝄞 end"
	for name, a := range map[string]httpapi.ConnectionAnswer{
		"postgres": {EnvironmentID: "env_01", Organization: "acme", Environment: "dev", Driver: "postgres", Scope: "readwrite",
			DSN: "postgres://u:p%40ss@db:5432/env?sslmode=require&x=1", URL: "postgres://u@db:5432/env", Host: "db", Port: 5432,
			Database: "env", Username: "u", Secret: "p@ss", CredentialID: "cred_01", ExpiresAt: &at, RefreshAfter: at.Add(time.Minute)},
		"sqlite, no optional fields": {EnvironmentID: "env_02", Driver: "sqlite", Scope: "readonly", DSN: "file:/x.db?mode=ro&_pragma=busy_timeout(5000)",
			RefreshAfter: at.In(zone)},
		"escaping": {EnvironmentID: odd, Organization: odd, Environment: odd, Driver: odd, Scope: "admin", DSN: odd, URL: odd, Host: odd,
			Port: -1, Database: odd, Username: odd, Secret: odd, CredentialID: odd, ExpiresAt: &at, RefreshAfter: time.Time{}},
	} {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(a); err != nil {
			t.Fatalf("%s: encoding/json: %v", name, err)
		}
		if got := a.AppendJSON(nil); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%s:\n got %q\nwant %q", name, got, want.Bytes())
		}
	}
}
