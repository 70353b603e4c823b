package tursotest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/envplane/envplane/drivers"
)

// PlatformOptions configure a Platform double. Every field has a default.
type PlatformOptions struct {
	// Organization is the one organization slug the double knows; "envplane-test" by default.
	Organization string
	// Group is the one group databases can be created in; "default" by default.
	Group string
	// Location is the group's location; "aws-eu-west-1" by default.
	Location string
	// DataPlane starts a real tursodb, behind a token-checking edge, for every
	// database created; without it databases exist only in the API. It needs
	// the tursodb binary (drivertest.MissingServer otherwise).
	DataPlane bool
	// Now is the clock tokens are issued and checked against; time.Now by default.
	Now func() time.Time
}

// Fault is an answer the double gives instead of serving a request.
type Fault struct {
	// Status is the HTTP status to answer (429, 500, 503...); 0 serves the
	// request normally after Delay.
	Status int
	// RetryAfter is sent as the Retry-After header when not empty.
	RetryAfter string
	// Delay holds the answer back, or until the client gives up; it simulates a timeout.
	Delay time.Duration
}

// Platform is a Turso Platform API double: an httptest server that keeps
// databases and their tokens, and checks every request it receives and every
// response it sends against the published OpenAPI contract. A violation fails
// the test that made the double.
//
// Answers the contract does not document, and which Turso sends anyway, are
// exempt from response validation: injected faults (429, 5xx) and 401 for a
// wrong API token. Every other answer is validated, status included.
type Platform struct {
	// URL is the API's base URL, to use as the driver's BaseURL.
	URL string
	// Token is the only Platform API token the double accepts.
	Token drivers.Secret
	// Organization, Group and Location are what the double was made with.
	Organization, Group, Location string

	tb       testing.TB
	contract *contract
	server   *httptest.Server
	gateway  *httptest.Server
	now      func() time.Time
	binary   string
	dir      string

	mu        sync.Mutex
	databases map[string]*database
	faults    []Fault
	issued    []string
	requests  int
}

// database is one database the double holds. key signs its tokens; replacing
// it invalidates every token issued before.
type database struct {
	name, id, hostname, group string
	created                   time.Time
	parent                    *parent
	key                       ed25519.PrivateKey
	edge                      *edge
}

type parent struct {
	id, name string
	at       time.Time
}

// NewPlatform starts a Platform double and closes it, with every tursodb it
// started, when the test ends. The contract is found with ContractPath.
func NewPlatform(tb testing.TB, opts PlatformOptions) *Platform {
	tb.Helper()
	c, err := loadContract(ContractPath(tb))
	if err != nil {
		tb.Fatalf("turso contract: %v", err)
	}
	p := &Platform{
		Token:        drivers.Secret("platform-" + randomHex(tb, 16)),
		Organization: opts.Organization,
		Group:        opts.Group,
		Location:     opts.Location,
		tb:           tb,
		contract:     c,
		now:          opts.Now,
		databases:    map[string]*database{},
	}
	if p.Organization == "" {
		p.Organization = "envplane-test"
	}
	if p.Group == "" {
		p.Group = "default"
	}
	if p.Location == "" {
		p.Location = "aws-eu-west-1"
	}
	if p.now == nil {
		p.now = time.Now
	}
	if opts.DataPlane {
		p.binary = TursodbBinary(tb)
		p.dir = tb.TempDir()
	}
	p.server = httptest.NewServer(http.HandlerFunc(p.serve))
	p.URL = p.server.URL
	tb.Cleanup(p.close)
	return p
}

func (p *Platform) close() {
	p.server.Close()
	// Edges close outside the lock: a request in flight at an edge takes it
	// to check its token, and closing waits for that request.
	var edges []*edge
	p.mu.Lock()
	for _, db := range p.databases {
		if db.edge != nil {
			edges = append(edges, db.edge)
		}
	}
	p.mu.Unlock()
	for _, e := range edges {
		e.close()
	}
}

// FailNext makes the next n requests answer with f instead of being served.
func (p *Platform) FailNext(n int, f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range n {
		p.faults = append(p.faults, f)
	}
}

// Requests returns how many requests the double has received.
func (p *Platform) Requests() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests
}

// Databases returns the (Turso) names of the databases the double holds, sorted.
func (p *Platform) Databases() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	names := make([]string, 0, len(p.databases))
	for name := range p.databases {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Parent returns the (Turso) name of the database a seeded database was
// copied from and the point it was branched at (the seed's timestamp, or
// its creation); ok is false for a database that was not seeded.
func (p *Platform) Parent(name string) (source string, branchedAt time.Time, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	db := p.databases[name]
	if db == nil || db.parent == nil {
		return "", time.Time{}, false
	}
	return db.parent.name, db.parent.at, true
}

// HasDatabase reports whether the double holds a database of that (Turso) name.
func (p *Platform) HasDatabase(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.databases[name]
	return ok
}

// AddForeignDatabase creates a database in another group, as someone other
// than envplane would, so tests can check that the driver does not adopt it.
func (p *Platform) AddForeignDatabase(name, group string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.databases[name] = &database{
		name: name, id: newID(p.tb), group: group,
		hostname: name + "-" + p.Organization + ".turso.io",
		key:      newKey(p.tb),
	}
}

// DatabaseURL maps a database's Hostname to the URL of its edge, for the
// driver's DatabaseURL hook. An unknown hostname maps to libsql://hostname,
// which does not resolve, as for a deleted Turso database.
func (p *Platform) DatabaseURL(hostname string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, db := range p.databases {
		if db.hostname == hostname && db.edge != nil {
			return db.edge.server.URL
		}
	}
	return "libsql://" + hostname
}

// violation fails the test with a contract violation, scrubbed of every token
// the double issued.
func (p *Platform) violation(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.mu.Lock()
	for _, t := range p.issued {
		msg = strings.ReplaceAll(msg, t, "[redacted]")
	}
	p.mu.Unlock()
	msg = strings.ReplaceAll(msg, p.Token.Reveal(), "[redacted]")
	p.tb.Errorf("turso contract violation: %s", msg)
}

// contractServer is where the contract says the API lives; requests are routed
// as if they had been sent there.
const contractServer = "https://api.turso.tech"

func (p *Platform) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.requests++
	p.mu.Unlock()

	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "cannot read request", http.StatusBadRequest)
		return
	}
	routed := r.Clone(r.Context())
	routed.URL, _ = url.Parse(contractServer + r.URL.RequestURI())
	routed.Host = routed.URL.Host
	routed.Body = io.NopCloser(bytes.NewReader(body))
	route, params, err := p.contract.router.FindRoute(routed)
	if err != nil {
		p.violation("%s %s is no operation of the contract: %v", r.Method, r.URL.Path, err)
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
		return
	}
	in := &openapi3filter.RequestValidationInput{
		Request:    routed,
		PathParams: params,
		Route:      route,
		Options:    &openapi3filter.Options{MultiError: true},
	}
	if err := openapi3filter.ValidateRequest(r.Context(), in); err != nil {
		p.violation("request %s %s: %v", r.Method, r.URL.Path, err)
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "request violates the API contract"})
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+p.Token.Reveal() {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "token is invalid"})
		return
	}
	if p.fault(w, r) {
		return
	}

	rec := httptest.NewRecorder()
	p.handle(rec, route, params, routed.URL.Query(), body)
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 rec.Code,
		Header:                 rec.Header(),
		Options:                &openapi3filter.Options{MultiError: true, IncludeResponseStatus: true},
	}
	out.SetBodyBytes(rec.Body.Bytes())
	if err := openapi3filter.ValidateResponse(r.Context(), out); err != nil {
		p.violation("response %d to %s %s: %v", rec.Code, r.Method, r.URL.Path, err)
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// fault answers with the next injected fault, if any, and reports whether it did.
func (p *Platform) fault(w http.ResponseWriter, r *http.Request) bool {
	p.mu.Lock()
	if len(p.faults) == 0 {
		p.mu.Unlock()
		return false
	}
	f := p.faults[0]
	p.faults = p.faults[1:]
	p.mu.Unlock()
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return true
		}
	}
	if f.Status == 0 {
		return false
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	writeJSON(w, f.Status, map[string]string{"error": "injected fault"})
	return true
}

func (p *Platform) handle(w http.ResponseWriter, route *routers.Route, params map[string]string, query url.Values, body []byte) {
	if org, ok := params["organizationSlug"]; ok && org != p.Organization {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "organization not found"})
		return
	}
	name := params["databaseName"]
	switch route.Operation.OperationID {
	case "listLocations":
		writeJSON(w, http.StatusOK, map[string]any{"locations": map[string]string{
			p.Location:       "Test location",
			"aws-us-east-1":  "AWS US East (Virginia)",
			"aws-ap-south-1": "AWS AP South (Mumbai)",
		}})
	case "createDatabase":
		p.createDatabase(w, body)
	case "getDatabase":
		p.withDatabase(w, name, func(db *database) {
			writeJSON(w, http.StatusOK, map[string]any{"database": db.describe(p.Location)})
		})
	case "deleteDatabase":
		p.deleteDatabase(w, name)
	case "createDatabaseToken":
		p.createToken(w, name, query)
	case "invalidateDatabaseTokens":
		p.withDatabase(w, name, func(db *database) {
			db.key = newKey(p.tb)
			w.WriteHeader(http.StatusOK)
		})
	case "getDatabaseUsage":
		p.withDatabase(w, name, func(db *database) {
			writeJSON(w, http.StatusOK, map[string]any{"database": map[string]any{
				"uuid":      db.id,
				"instances": []any{},
				"total":     map[string]int64{"rows_read": 0, "rows_written": 0, "storage_bytes": db.size(), "bytes_synced": 0},
			}})
		})
	default:
		p.tb.Errorf("turso double: operation %s is in the contract but not implemented by the double", route.Operation.OperationID)
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not implemented by the double"})
	}
}

// withDatabase runs f on the named database under the lock, or answers 404.
func (p *Platform) withDatabase(w http.ResponseWriter, name string, f func(*database)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	db, ok := p.databases[name]
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "could not find database with name " + name + ": record not found"})
		return
	}
	f(db)
}

// databaseName is the rule the contract states for names.
// recoveryWindow is how far back a seed's timestamp may go: the last 24
// hours, the contract's bound outside the scaler plan.
const recoveryWindow = 24 * time.Hour

var databaseName = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

func (p *Platform) createDatabase(w http.ResponseWriter, body []byte) {
	var in struct {
		Name      string `json:"name"`
		Group     string `json:"group"`
		SizeLimit string `json:"size_limit"`
		Seed      *struct {
			Type      string `json:"type"`
			Name      string `json:"name"`
			Timestamp string `json:"timestamp"`
		} `json:"seed"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid body"})
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case !databaseName.MatchString(in.Name):
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid database name"})
		return
	case in.Group != p.Group:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "group not found"})
		return
	case p.databases[in.Name] != nil:
		writeJSON(w, http.StatusConflict, map[string]string{"error": "database with name " + in.Name + " already exists"})
		return
	}
	db := &database{
		name: in.Name, id: newID(p.tb), group: in.Group, created: p.now().UTC(),
		hostname: in.Name + "-" + p.Organization + ".turso.io",
		key:      newKey(p.tb),
	}
	var source *database
	if in.Seed != nil {
		if in.Seed.Type != "database" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "the double seeds only from databases"})
			return
		}
		if source = p.databases[in.Seed.Name]; source == nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "seed database not found"})
			return
		}
		at := p.now().UTC()
		if in.Seed.Timestamp != "" {
			// A recovery point, which the contract bounds to the last 24
			// hours. The double keeps no history: the copy is of the
			// source as it is now, branched at the point asked for.
			ts, err := time.Parse(time.RFC3339, in.Seed.Timestamp)
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid timestamp"})
				return
			}
			if ts.After(at) || ts.Before(at.Add(-recoveryWindow)) || ts.Before(source.created) {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "timestamp is outside the database's recovery window"})
				return
			}
			at = ts.UTC()
		}
		db.parent = &parent{id: source.id, name: source.name, at: at}
	}
	if p.binary != "" {
		e, err := p.startEdge(db, source)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "cannot start the database: " + err.Error()})
			return
		}
		db.edge = e
	}
	p.databases[db.name] = db
	writeJSON(w, http.StatusOK, map[string]any{"database": map[string]string{
		"DbId": db.id, "Hostname": db.hostname, "Name": db.name,
	}})
}

// startEdge starts tursodb on a new file, a copy of source's files when seeded,
// and the edge in front of it.
func (p *Platform) startEdge(db, source *database) (*edge, error) {
	path := filepath.Join(p.dir, db.name+"-"+db.id+".db")
	if source != nil && source.edge != nil {
		if err := source.edge.copyFiles(path); err != nil {
			return nil, err
		}
	}
	backend, err := startTursodb(p.binary, path)
	if err != nil {
		return nil, err
	}
	return newEdge(p, db.name, backend), nil
}

func (p *Platform) deleteDatabase(w http.ResponseWriter, name string) {
	p.mu.Lock()
	db, ok := p.databases[name]
	delete(p.databases, name)
	p.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "could not find database with name " + name + ": record not found"})
		return
	}
	if db.edge != nil {
		db.edge.close()
		for _, suffix := range []string{"", "-wal", "-shm"} {
			_ = os.Remove(db.edge.backend.Path + suffix)
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"database": name})
}

// expiration is the contract's duration syntax ("2w1d30m"), or "never";
// expirationPart is one number and unit of it.
var (
	expiration     = regexp.MustCompile(`^(\d+[wdhms])+$`)
	expirationPart = regexp.MustCompile(`\d+[wdhms]`)
)

func parseExpiration(s string) (time.Duration, bool) {
	if s == "" || s == "never" {
		return 0, true
	}
	if !expiration.MatchString(s) {
		return 0, false
	}
	units := map[byte]time.Duration{'w': 7 * 24 * time.Hour, 'd': 24 * time.Hour, 'h': time.Hour, 'm': time.Minute, 's': time.Second}
	var total time.Duration
	for _, part := range expirationPart.FindAllString(s, -1) {
		n, err := strconv.Atoi(part[:len(part)-1])
		if err != nil {
			return 0, false
		}
		total += time.Duration(n) * units[part[len(part)-1]]
	}
	return total, total > 0
}

func (p *Platform) createToken(w http.ResponseWriter, name string, q url.Values) {
	ttl, ok := parseExpiration(q.Get("expiration"))
	if !ok {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "Invalid expiration format"})
		return
	}
	access := "rw"
	if q.Get("authorization") == "read-only" {
		access = "ro"
	}
	p.withDatabase(w, name, func(db *database) {
		now := p.now()
		c := tokenClaims{Access: access, DatabaseID: db.id, TokenID: newID(p.tb), IssuedAt: now.Unix()}
		if ttl > 0 {
			c.Expires = now.Add(ttl).Unix()
		}
		token, err := signToken(db.key, c)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "cannot sign"})
			return
		}
		p.issued = append(p.issued, token)
		writeJSON(w, http.StatusOK, map[string]string{"jwt": token})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (db *database) describe(location string) map[string]any {
	out := map[string]any{
		"Name": db.name, "DbId": db.id, "Hostname": db.hostname,
		"group": db.group, "primaryRegion": location, "regions": []string{location},
		"block_reads": false, "block_writes": false, "delete_protection": false,
		"parent": nil,
	}
	if db.parent != nil {
		out["parent"] = map[string]string{
			"id": db.parent.id, "name": db.parent.name,
			"branched_at": db.parent.at.Format(time.RFC3339Nano),
		}
	}
	return out
}

// size is the bytes the database's files hold.
func (db *database) size() int64 {
	if db.edge == nil {
		return 0
	}
	var n int64
	for _, suffix := range []string{"", "-wal"} {
		if info, err := os.Stat(db.edge.backend.Path + suffix); err == nil {
			n += info.Size()
		}
	}
	return n
}

func randomHex(tb testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Errorf("random: %v", err)
	}
	return hex.EncodeToString(b)
}

func newID(tb testing.TB) string {
	h := randomHex(tb, 16)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func newKey(tb testing.TB) ed25519.PrivateKey {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Errorf("generate key: %v", err)
	}
	return key
}
