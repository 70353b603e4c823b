package tursotest_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/envplane/envplane/drivers/turso/tursotest"
)

// recorder is a testing.TB that collects Errorf calls instead of failing, so a
// test can show that the double reports contract violations.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) reported() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errors...)
}

func send(t *testing.T, p *tursotest.Platform, method, path, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, p.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+p.Token.Reveal())
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func TestDoubleHoldsRequestsToTheContract(t *testing.T) {
	for _, tc := range []struct {
		name, method, path, body string
	}{
		{"missing required group", http.MethodPost, "/v1/organizations/envplane-test/databases", `{"name":"env-a"}`},
		{"wrong type for name", http.MethodPost, "/v1/organizations/envplane-test/databases", `{"name":7,"group":"default"}`},
		{"unknown seed type", http.MethodPost, "/v1/organizations/envplane-test/databases", `{"name":"env-a","group":"default","seed":{"type":"file"}}`},
		{"authorization outside the enum", http.MethodPost, "/v1/organizations/envplane-test/databases/env-a/auth/tokens?authorization=admin", ""},
		{"no such operation", http.MethodGet, "/v1/organizations/envplane-test/widgets", ""},
		{"wrong method", http.MethodPut, "/v1/locations", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{TB: t}
			p := tursotest.NewPlatform(rec, tursotest.PlatformOptions{})
			status := send(t, p, tc.method, tc.path, tc.body)
			if status < 400 {
				t.Errorf("double answered %d to a request outside the contract", status)
			}
			got := rec.reported()
			if len(got) != 1 || !strings.Contains(got[0], "turso contract violation") {
				t.Errorf("double reported %q, want one contract violation", got)
			}
		})
	}
}

func TestDoubleAcceptsRequestsWithinTheContract(t *testing.T) {
	rec := &recorder{TB: t}
	p := tursotest.NewPlatform(rec, tursotest.PlatformOptions{})
	steps := []struct {
		method, path, body string
		want               int
	}{
		{http.MethodPost, "/v1/organizations/envplane-test/databases", `{"name":"env-a","group":"default","size_limit":"1gb"}`, 200},
		{http.MethodPost, "/v1/organizations/envplane-test/databases", `{"name":"env-a","group":"default"}`, 409},
		{http.MethodPost, "/v1/organizations/envplane-test/databases", `{"name":"Env_A","group":"default"}`, 400},
		{http.MethodGet, "/v1/organizations/envplane-test/databases/env-a", "", 200},
		{http.MethodPost, "/v1/organizations/envplane-test/databases/env-a/auth/tokens?expiration=2w1d30m&authorization=read-only", "", 200},
		{http.MethodPost, "/v1/organizations/envplane-test/databases/env-a/auth/tokens?expiration=later", "", 400},
		{http.MethodPost, "/v1/organizations/envplane-test/databases/env-a/auth/rotate", "", 200},
		{http.MethodGet, "/v1/organizations/envplane-test/databases/env-a/usage", "", 200},
		{http.MethodDelete, "/v1/organizations/envplane-test/databases/env-a", "", 200},
		{http.MethodGet, "/v1/organizations/envplane-test/databases/env-a", "", 404},
		{http.MethodPost, "/v1/organizations/envplane-test/databases/env-a/auth/rotate", "", 404},
		{http.MethodGet, "/v1/locations", "", 200},
	}
	for _, s := range steps {
		if got := send(t, p, s.method, s.path, s.body); got != s.want {
			t.Errorf("%s %s answered %d, want %d", s.method, s.path, got, s.want)
		}
	}
	if got := rec.reported(); len(got) != 0 {
		t.Errorf("double reported violations for requests within the contract: %q", got)
	}
}

func TestDoubleRefusesAnotherAPIToken(t *testing.T) {
	p := tursotest.NewPlatform(t, tursotest.PlatformOptions{})
	req, err := http.NewRequest(http.MethodGet, p.URL+"/v1/locations", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer not-the-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("answered %d to a wrong API token, want 401", resp.StatusCode)
	}
}

// TestDoubleHoldsItsOwnResponsesToTheContract shows that responses are
// validated too: createDatabase documents no 404, which the double sends for
// an unknown organization, so that answer is reported.
func TestDoubleHoldsItsOwnResponsesToTheContract(t *testing.T) {
	rec := &recorder{TB: t}
	p := tursotest.NewPlatform(rec, tursotest.PlatformOptions{})
	status := send(t, p, http.MethodPost, "/v1/organizations/someone-else/databases", `{"name":"env-a","group":"default"}`)
	if status != http.StatusNotFound {
		t.Fatalf("answered %d, want 404", status)
	}
	got := rec.reported()
	if len(got) != 1 || !strings.Contains(got[0], "response 404") {
		t.Errorf("double reported %q, want one response violation", got)
	}
}
