package httpapi_test

import (
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/envplane/envplane/controlplane/httpapi"
)

// readmeShell returns the shell lines of the README's ```sh blocks, with
// continued lines (ending in \) joined.
func readmeShell(tb testing.TB) (readme string, lines []string) {
	tb.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		tb.Fatalf("read README: %v", err)
	}
	readme = string(b)
	in, cont := false, ""
	for _, line := range strings.Split(readme, "\n") {
		switch {
		case strings.HasPrefix(line, "```sh"):
			in = true
		case strings.HasPrefix(line, "```"):
			in = false
		case in && strings.HasSuffix(line, `\`):
			cont += strings.TrimSuffix(line, `\`) + " "
		case in:
			lines = append(lines, cont+line)
			cont = ""
		}
	}
	return readme, lines
}

// TestReadmeWalkthrough checks the README's shell walkthrough against what
// it describes: its first lines give make run and make test; every curl
// shows errors (-f fails on an error status and -S says so, where -s alone
// hid them) and calls a route of the table with its method and query
// parameters; the token is read from $ENVPLANE_DATA_DIR when that is set.
func TestReadmeWalkthrough(t *testing.T) {
	readme, lines := readmeShell(t)
	first := strings.Split(readme, "\n")
	if len(first) < 4 || !strings.HasPrefix(strings.TrimSpace(first[2]), "make run ") || !strings.HasPrefix(strings.TrimSpace(first[3]), "make test ") {
		t.Errorf("the README does not open with make run and make test:\n%s", strings.Join(first[:min(4, len(first))], "\n"))
	}
	if !slices.ContainsFunc(lines, func(l string) bool {
		return strings.HasPrefix(l, "export ENVPLANE_TOKEN=") && strings.Contains(l, `${ENVPLANE_DATA_DIR:-data}/admin.token`)
	}) {
		t.Error("the walkthrough does not read the token from $ENVPLANE_DATA_DIR when it is set")
	}

	type route struct {
		method string
		path   *regexp.Regexp
		query  []string
	}
	var routes []route
	for _, r := range httpapi.Routes() {
		routes = append(routes, route{r.Method, regexp.MustCompile("^" + regexp.MustCompile(`:[a-z]+`).ReplaceAllString(r.Path, `[^/]+`) + "$"), r.Query})
	}
	curls := 0
	for _, line := range lines {
		_, call, ok := strings.Cut(line, "curl ")
		if !ok {
			continue
		}
		curls++
		call, _, _ = strings.Cut(call, " | ")
		fields := strings.Fields(call)
		var letters, method, target string
		for i, f := range fields {
			switch {
			case f == "-X" && i+1 < len(fields):
				method = fields[i+1]
			case f == "-d" && method == "":
				method = "POST"
			case f == "--fail-with-body":
				letters += "f"
			case strings.HasPrefix(f, "-") && !strings.HasPrefix(f, "--"):
				letters += f[1:]
			case strings.Contains(f, "$ENVPLANE_URL"):
				target = strings.Trim(f, `"`)
			}
		}
		if !strings.Contains(letters, "f") || strings.Contains(letters, "s") && !strings.Contains(letters, "S") {
			t.Errorf("curl hides errors (want -fsS): %s", line)
		}
		if method == "" {
			method = "GET"
		}
		u, err := url.Parse(strings.TrimPrefix(target, "$ENVPLANE_URL"))
		if err != nil || target == "" {
			t.Errorf("curl calls no $ENVPLANE_URL path: %s", line)
			continue
		}
		i := slices.IndexFunc(routes, func(r route) bool { return r.method == method && r.path.MatchString(u.Path) })
		if i < 0 {
			t.Errorf("curl calls %s %s, which no route serves", method, u.Path)
			continue
		}
		for name := range u.Query() {
			if !slices.Contains(routes[i].query, name) {
				t.Errorf("curl sends ?%s to %s %s, which does not read it", name, method, u.Path)
			}
		}
	}
	if curls < 5 {
		t.Fatalf("found %d curl calls in the README's walkthrough", curls)
	}
}
