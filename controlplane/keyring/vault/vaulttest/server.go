package vaulttest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// Server is a running Vault dev server a test can stop before the test
// ends (a Vault that goes down), and mint and revoke tokens on.
type Server struct {
	// URL is the server's address (http://127.0.0.1:PORT); Token its root
	// token: never print it.
	URL, Token string
	s          *server
}

// StartServer is Start returning a Server.
func StartServer(tb testing.TB) *Server {
	tb.Helper()
	binary := Binary(tb)
	token := NewRootToken()
	s, err := start(binary, token)
	if err != nil {
		tb.Fatalf("start vaultdev: %s", redact(err.Error(), token))
	}
	tb.Cleanup(func() {
		s.stop()
		if tb.Failed() {
			tb.Logf("vaultdev output:\n%s", redact(s.log.String(), token))
		}
	})
	return &Server{URL: s.url, Token: token, s: s}
}

// Stop shuts the server down now; its in-memory keys are gone with it.
func (v *Server) Stop() { v.s.stop() }

// ChildToken creates a token under the root token, with the root policy,
// and returns it.
func (v *Server) ChildToken(tb testing.TB) string {
	tb.Helper()
	var out struct {
		Auth struct {
			ClientToken string `json:"client_token"`
		} `json:"auth"`
	}
	v.post(tb, "/v1/auth/token/create", map[string]any{"policies": []string{"root"}, "ttl": "1h"}, &out)
	if out.Auth.ClientToken == "" {
		tb.Fatal("vaultdev created no token")
	}
	return out.Auth.ClientToken
}

// RevokeToken revokes token with the root token.
func (v *Server) RevokeToken(tb testing.TB, token string) {
	tb.Helper()
	v.post(tb, "/v1/auth/token/revoke", map[string]any{"token": token}, nil)
}

func (v *Server) post(tb testing.TB, path string, body, out any) {
	tb.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		tb.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, v.URL+path, bytes.NewReader(raw))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", v.Token)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		tb.Fatalf("vaultdev %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		tb.Fatalf("vaultdev %s answered %s", path, resp.Status)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			tb.Fatalf("vaultdev %s: %v", path, err)
		}
	}
}
