package tursotest

import (
	"net/http"
	"net/http/httptest"
	"strings"
)

// Gateway returns a URL template, "http://127.0.0.1:<port>/{hostname}",
// under which the edge of every database the double holds answers, for a
// turso target's database_url. It lets a process other than the test (an
// envplane binary) reach the databases, which Platform.DatabaseURL cannot:
// that is a function. The gateway starts on first use and closes when the
// test ends.
func (p *Platform) Gateway() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gateway == nil {
		p.gateway = httptest.NewServer(http.HandlerFunc(p.route))
		p.tb.Cleanup(p.gateway.Close)
	}
	return p.gateway.URL + "/{hostname}"
}

// route hands a request for /<hostname>/<path> to that database's edge as a
// request for /<path>; an unknown hostname is 404, as for a deleted database.
func (p *Platform) route(w http.ResponseWriter, r *http.Request) {
	hostname, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	var e *edge
	p.mu.Lock()
	for _, db := range p.databases {
		if db.hostname == hostname && db.edge != nil {
			e = db.edge
		}
	}
	p.mu.Unlock()
	if e == nil {
		http.NotFound(w, r)
		return
	}
	r.URL.Path = "/" + rest
	e.serve(w, r)
}
