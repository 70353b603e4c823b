package tursotest

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"time"
)

// edge is the libSQL endpoint of one database, standing where Turso's edge
// stands: it checks the bearer token of every Hrana request the way Turso
// does, then forwards the pipeline to the database's tursodb, which checks no
// tokens at all. So the isolation Turso enforces server-side is enforced here,
// by the double, against tokens the Platform double issued:
//
//   - a token signed with another database's key (a token of A at B) is refused;
//   - a token issued before the database's tokens were invalidated is refused
//     (invalidation replaces the key);
//   - an expired token is refused (against the double's clock);
//   - a read-only token cannot write: its requests run with PRAGMA query_only,
//     so tursodb itself refuses every write, and it may not switch that off.
//
// Refusals are 401 answers with a JSON error, as Turso sends.
type edge struct {
	p       *Platform
	name    string
	backend *Tursodb
	server  *httptest.Server
	client  *http.Client

	// mu serializes pipelines: tursodb runs every request on one shared
	// connection, so query_only and an unfinished transaction would otherwise
	// leak from one request into another.
	mu sync.Mutex
}

func newEdge(p *Platform, name string, backend *Tursodb) *edge {
	e := &edge{p: p, name: name, backend: backend, client: &http.Client{Timeout: time.Minute}}
	e.server = httptest.NewServer(http.HandlerFunc(e.serve))
	return e
}

func (e *edge) close() {
	e.server.Close()
	e.backend.Stop()
}

// copyFiles copies the database's files to path, for a seeded database, while
// no pipeline runs.
func (e *edge) copyFiles(path string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, suffix := range []string{"", "-wal"} {
		data, err := os.ReadFile(e.backend.Path + suffix)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return err
		}
		if err := os.WriteFile(path+suffix, data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// authorize returns the token's access ("rw" or "ro"), or why it is refused.
func (e *edge) authorize(header string) (string, error) {
	token, ok := strings.CutPrefix(header, "Bearer ")
	if !ok || token == "" {
		return "", fmt.Errorf("missing bearer token")
	}
	e.p.mu.Lock()
	db := e.p.databases[e.name]
	var key ed25519.PublicKey
	var id string
	if db != nil {
		key, id = db.key.Public().(ed25519.PublicKey), db.id
	}
	e.p.mu.Unlock()
	if db == nil {
		return "", fmt.Errorf("database not found")
	}
	claims, err := verifyToken(key, token)
	if err != nil {
		return "", err
	}
	if claims.DatabaseID != id {
		return "", fmt.Errorf("token is for another database")
	}
	if claims.Expires != 0 && !e.p.now().Before(time.Unix(claims.Expires, 0)) {
		return "", fmt.Errorf("token expired")
	}
	if claims.Access != "rw" && claims.Access != "ro" {
		return "", fmt.Errorf("token grants no access")
	}
	return claims.Access, nil
}

// pipeline is the envelope of a Hrana-over-HTTP pipeline request and response;
// the requests and results themselves pass through untouched.
type pipeline struct {
	Baton    *string           `json:"baton"`
	BaseURL  *string           `json:"base_url,omitempty"`
	Requests []json.RawMessage `json:"requests,omitempty"`
	Results  []json.RawMessage `json:"results,omitempty"`
}

func (e *edge) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || (r.URL.Path != "/v2/pipeline" && r.URL.Path != "/v3/pipeline") {
		http.NotFound(w, r)
		return
	}
	access, err := e.authorize(r.Header.Get("Authorization"))
	if err != nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "Unauthorized: " + err.Error()})
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "cannot read request"})
		return
	}
	var req pipeline
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid pipeline"})
		return
	}
	if access == "ro" && strings.Contains(strings.ToLower(string(body)), "query_only") {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "a read-only token cannot change query_only"})
		return
	}
	queryOnly := "0"
	if access == "ro" {
		queryOnly = "1"
	}
	// Before: the token's access. After: end any transaction the request left
	// open, as Turso does when a stream ends, and lift query_only again.
	before := json.RawMessage(`{"type":"execute","stmt":{"sql":"PRAGMA query_only=` + queryOnly + `"}}`)
	after := json.RawMessage(`{"type":"batch","batch":{"steps":[` +
		`{"stmt":{"sql":"ROLLBACK"},"condition":{"type":"not","cond":{"type":"is_autocommit"}}},` +
		`{"stmt":{"sql":"PRAGMA query_only=0"}}]}}`)
	req.Requests = append(append([]json.RawMessage{before}, req.Requests...), after)
	forward, err := json.Marshal(req)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "cannot encode pipeline"})
		return
	}

	e.mu.Lock()
	status, answer, err := e.send(r.URL.Path, forward)
	e.mu.Unlock()
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "database unavailable"})
		return
	}
	if status != http.StatusOK {
		w.WriteHeader(status)
		_, _ = w.Write(answer)
		return
	}
	var resp pipeline
	if err := json.Unmarshal(answer, &resp); err != nil || len(resp.Results) != len(req.Requests) {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "unexpected answer from the database"})
		return
	}
	resp.Results = resp.Results[1 : len(resp.Results)-1]
	writeJSON(w, http.StatusOK, resp)
}

func (e *edge) send(path string, body []byte) (int, []byte, error) {
	resp, err := e.client.Post(e.backend.URL+path, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}
