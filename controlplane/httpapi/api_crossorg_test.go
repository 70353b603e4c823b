package httpapi_test

import (
	"context"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/httpapi"
)

// victim is organization A as the cross-organization tests attack it: the
// ids and names that must never leak.
type victim struct {
	org      cp.Organization
	env      cp.EnvironmentView
	userID   string
	email    string
	keyID    string
	opID     string
	keyToken string
	// sessionID is a session of A's platform admin; invitationID a
	// pending invitation to A.
	sessionID    string
	invitationID string
	// rolloutID is a finished rollout of A.
	rolloutID string
}

// secrets lists what of A a body must not reveal.
func (v victim) secrets() []string {
	return []string{v.org.Slug, v.org.Name, v.org.ID, v.env.Slug, v.env.Name, v.env.ID, v.userID, v.email, v.keyID, v.opID, v.env.Database.DatabaseName, v.invitationID}
}

// snapshot is what of A the tests compare before and after an attack.
type snapshot struct {
	org, env, members, keys, envs, creds, audit string
	invitations, sessions                       string
}

func (h *harness) snapshotOf(tb testing.TB, v victim) snapshot {
	tb.Helper()
	get := func(path string) string {
		return string(h.must(tb, http.StatusOK, h.admin, "GET", path, nil).body)
	}
	org := "/v1/organizations/" + v.org.ID
	// As the last field it leaves a comma before it, elsewhere after it.
	lastUsed := regexp.MustCompile(`,"last_used_at":"[^"]*"|"last_used_at":"[^"]*",?`)
	return snapshot{
		org:     get(org),
		env:     get(org + "/environments/" + v.env.ID),
		members: get(org + "/members"),
		// last_used_at is written off the request's path, at the next
		// receipt flush after the victim's own use of its key in setUp;
		// it is not something an attacker can change.
		keys:  lastUsed.ReplaceAllString(get(org+"/api-keys"), ""),
		envs:  get(org + "/environments"),
		creds: get(org + "/environments/" + v.env.ID + "/credentials"),
		audit: get(org + "/audit-events?limit=500"),
		// The admin's key lists the admin user's sessions, A's victim one among them.
		invitations: get(org + "/invitations"),
		sessions:    get("/v1/sessions"),
	}
}

// setUpVictim creates organization A with an environment, a member with a
// key and a role on it, and a finished operation.
func setUpVictim(tb testing.TB, h *harness) victim {
	tb.Helper()
	var v victim
	resp := h.org(tb, "alpha-secret-org")
	h.must(tb, http.StatusOK, h.admin, "PATCH", "/v1/organizations/alpha-secret-org", map[string]any{"name": "Alpha Secret Org Name"}).decode(tb, &v.org)
	if resp.Organization.ID != v.org.ID {
		tb.Fatal("PATCH answered another organization")
	}
	v.env = h.env(tb, h.admin, "alpha-secret-org", "alpha-hidden-env", "development")
	v.email = "alice@alpha-secret.example"
	v.keyToken = h.member(tb, "alpha-secret-org", v.email, cp.OrgMember)
	var me cp.Me
	h.must(tb, http.StatusOK, v.keyToken, "GET", "/v1/me", nil).decode(tb, &me)
	v.userID, v.keyID = me.User.ID, me.KeyID
	h.must(tb, http.StatusOK, h.admin, "PUT", "/v1/organizations/alpha-secret-org/environments/alpha-hidden-env/members/"+v.email, map[string]any{"role": "env_admin"})
	var rot cp.CredentialsResponse
	h.must(tb, http.StatusOK, h.admin, "POST", "/v1/organizations/alpha-secret-org/environments/alpha-hidden-env/credentials/revoke", map[string]any{"reason": "set-up"}).decode(tb, &rot)
	v.opID = rot.Operation.ID
	withPeople(tb, h)
	_, v.sessionID = h.session(tb, "ops@example.com", adminPassword)
	var inv cp.InvitationResponse
	h.must(tb, http.StatusCreated, h.admin, "POST", "/v1/organizations/alpha-secret-org/invitations", map[string]any{"email": "ivy@alpha-secret.example", "role": "member"}).decode(tb, &inv)
	v.invitationID = inv.Invitation.ID
	now := h.clock.Now()
	ro := &cp.Rollout{ID: cp.NewID("ro"), OrgID: v.org.ID, Version: 1, Waves: cp.DefaultRolloutWaves(), Parallelism: 1,
		OnError: cp.OnErrorHalt, Status: cp.RolloutSucceeded, CreatedBy: "operator", CreatedAt: now, UpdatedAt: now, NextAt: now, FinishedAt: &now}
	if err := h.svc.Store.CreateRollout(cp.WithPlatformScope(context.Background()), ro, nil); err != nil {
		tb.Fatal(err)
	}
	v.rolloutID = ro.ID
	return v
}

// attackBodies holds a valid body for every route that takes one, so the
// answer is about who asks, not about what was sent. A route with a body
// missing here fails the test: a new route cannot be forgotten.
func attackBodies(orgRef string) map[string]any {
	return map[string]any{
		"updateOrganization":              map[string]any{"name": "pwned"},
		"addMember":                       map[string]any{"email": "mallory@evil.example", "role": "owner"},
		"updateMember":                    map[string]any{"role": "owner"},
		"createAPIKey":                    map[string]any{"name": "stolen"},
		"createEnvironment":               map[string]any{"slug": "stolen", "type": "development"},
		"createEnvironmentInOrganization": map[string]any{"organization": orgRef, "slug": "stolen", "type": "development"},
		"updateEnvironment":               map[string]any{"name": "pwned", "is_protected": true},
		"rotateCredentials":               map[string]any{"scope": "all", "grace_seconds": 0},
		"revokeCredentials":               map[string]any{"reason": "pwned"},
		"putEnvironmentMember":            map[string]any{"role": "env_admin"},
		"resetEnvironment":                map[string]any{"mode": "schema"},
		"createInvitation":                map[string]any{"email": "mallory@evil.example", "role": "owner"},
		"setSessionContext":               map[string]any{"organization": orgRef},
		"confirmTOTP":                     map[string]any{"code": "123456"},
		"createRollout":                   map[string]any{},
		"createPlatformRollout":           map[string]any{},
		"restoreEnvironment":              map[string]any{"backup_id": "bk_01jzzzzzzzzzzzzzzzzzzzzzzz"},
	}
}

// attack is one request a principal of B sends at A.
type attack struct {
	route httpapi.Route
	path  string
	body  any
}

// attacks builds, from the route table, a request at A for every route that
// names an organization, environment, user, API key or operation. byID
// picks A's ids over its slugs and email; ownOrg puts B's organization in the
// path and A's ids everywhere else.
func attacks(tb testing.TB, v victim, byID bool, ownOrg string) []attack {
	tb.Helper()
	orgRef, envRef, userRef := v.org.Slug, v.env.Slug, v.email
	if byID {
		orgRef, envRef, userRef = v.org.ID, v.env.ID, v.userID
	}
	if ownOrg != "" {
		orgRef, envRef, userRef = ownOrg, v.env.ID, v.userID
	}
	bodies := attackBodies(orgRef)
	var out []attack
	for _, r := range httpapi.Routes() {
		if r.Public {
			continue
		}
		if strings.HasPrefix(r.Path, "/v1/rollouts") {
			// Platform-wide rollouts belong to no organization: the
			// platform admin's alone (403 for everyone else).
			continue
		}
		segs := strings.Split(r.Path, "/")
		params := 0
		for i, s := range segs {
			switch {
			case s == ":org":
				segs[i] = orgRef
				continue
			case s == ":env":
				segs[i] = envRef
			case s == ":user":
				segs[i] = userRef
			case s == ":id" && strings.Contains(r.Path, "/api-keys/"):
				segs[i] = v.keyID
			case s == ":id" && strings.HasPrefix(r.Path, "/v1/environments/"):
				segs[i] = v.env.ID
			case s == ":id" && strings.HasPrefix(r.Path, "/v1/operations/"):
				segs[i] = v.opID
			case s == ":id" && strings.HasPrefix(r.Path, "/v1/sessions/"):
				segs[i] = v.sessionID
			case s == ":id" && strings.Contains(r.Path, "/invitations/"):
				segs[i] = v.invitationID
			case s == ":id" && strings.Contains(r.Path, "/rollouts/"):
				segs[i] = v.rolloutID
			case strings.HasPrefix(s, ":"):
				tb.Fatalf("route %s %s: no value of A for parameter %s", r.Method, r.Path, s)
			default:
				continue
			}
			params++
		}
		takesA := params > 0 || (ownOrg == "" && (strings.Contains(r.Path, ":org") || r.OperationID == "createEnvironmentInOrganization"))
		if !takesA {
			continue
		}
		body, ok := bodies[r.OperationID]
		if r.Request != nil && !ok {
			tb.Fatalf("route %s %s takes a body; add a valid one to attackBodies", r.Method, r.Path)
		}
		path := strings.Join(segs, "/")
		if slices.Contains(r.Query, "scope") {
			path += "?scope=readonly"
		}
		out = append(out, attack{route: r, path: path, body: body})
	}
	return out
}

// TestCrossOrganization: members, owners and app keys of organization B
// touching organization A, by slug and by id, on every route that names
// something of A, get 404 (never 403), learn none of A's names, and change
// nothing of A.
func TestCrossOrganization(t *testing.T) {
	h := newHarness(t)
	v := setUpVictim(t, h)

	h.org(t, "bravo")
	bEnv := h.env(t, h.admin, "bravo", "b-env", "development")
	principals := map[string]string{
		"member of B": h.member(t, "bravo", "bob@bravo.example", cp.OrgMember),
		"admin of B":  h.member(t, "bravo", "erin@bravo.example", cp.OrgAdmin),
		"owner of B":  h.member(t, "bravo", "carol@bravo.example", cp.OrgOwner),
	}
	var app cp.CreateAPIKeyResponse
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/bravo/api-keys", map[string]any{"name": "app", "environment": bEnv.ID, "max_scope": "admin"}).decode(t, &app)
	principals["app key of B"] = app.Token
	// An owner of A holding a key of B reaches nothing of A with it.
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/alpha-secret-org/members", map[string]any{"email": "dave@both.example", "role": "owner"})
	principals["owner of A with a key of B"] = h.member(t, "bravo", "dave@both.example", cp.OrgMember)

	before := h.snapshotOf(t, v)
	checked := 0
	for name, token := range principals {
		for _, byID := range []bool{false, true} {
			for _, a := range attacks(t, v, byID, "") {
				label := name + " " + a.route.Method + " " + a.path
				r := h.do(t, token, a.route.Method, a.path, a.body)
				if r.status != http.StatusNotFound {
					t.Errorf("%s: status %d, want 404: %s", label, r.status, r.shown())
					continue
				}
				wantProblem(t, r, http.StatusNotFound, cp.ENOTFOUND, "")
				for _, s := range v.secrets() {
					if strings.Contains(string(r.body), s) {
						t.Errorf("%s: the answer reveals %q", label, s)
					}
				}
				checked++
			}
		}
	}
	// B's owner, through B's own organization, naming A's environment, user, key or operation.
	for _, a := range attacks(t, v, true, "bravo") {
		r := h.do(t, principals["owner of B"], a.route.Method, a.path, a.body)
		if r.status != http.StatusNotFound {
			t.Errorf("owner of B %s %s: status %d, want 404: %s", a.route.Method, a.path, r.status, r.shown())
			continue
		}
		wantProblem(t, r, http.StatusNotFound, cp.ENOTFOUND, "")
		checked++
	}
	if checked < 100 {
		t.Fatalf("only %d cross-organization requests checked", checked)
	}

	// Lists and /v1/me show nothing of A.
	for name, token := range principals {
		for _, path := range []string{"/v1/organizations", "/v1/me"} {
			body := string(h.must(t, http.StatusOK, token, "GET", path, nil).body)
			for _, s := range []string{v.org.Slug, v.org.ID, v.org.Name} {
				if strings.Contains(body, s) {
					t.Errorf("%s GET %s reveals %q", name, path, s)
				}
			}
		}
	}

	if after := h.snapshotOf(t, v); after != before {
		t.Fatalf("organization A changed under attack:\nbefore %+v\nafter  %+v", before, after)
	}
	h.must(t, http.StatusOK, v.keyToken, "GET", "/v1/organizations/"+v.org.Slug+"/environments/"+v.env.Slug, nil)
}

// TestEnvironmentVisibility: inside one organization, an environment a
// member has no role on does not exist for them; a role too small is 403; an
// app key sees its own environment only, up to its maximum scope.
func TestEnvironmentVisibility(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	prod := h.env(t, h.admin, "acme", "prod", "production")
	dev := h.env(t, h.admin, "acme", "dev", "development")
	nobody := h.member(t, "acme", "nobody@example.com", cp.OrgMember)
	viewer := h.member(t, "acme", "viewer@example.com", cp.OrgMember)
	h.must(t, http.StatusOK, h.admin, "PUT", "/v1/organizations/acme/environments/dev/members/viewer@example.com", map[string]any{"role": "env_viewer"})
	var rot cp.CredentialsResponse
	h.must(t, http.StatusOK, h.admin, "POST", "/v1/organizations/acme/environments/prod/credentials/rotate", map[string]any{"scope": "readonly", "grace_seconds": 0}).decode(t, &rot)
	var app cp.CreateAPIKeyResponse
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/api-keys", map[string]any{"name": "app", "environment": "dev", "max_scope": "readonly"}).decode(t, &app)

	envPath := func(ref string) string { return "/v1/organizations/acme/environments/" + ref }
	tests := []struct {
		name   string
		token  string
		method string
		path   string
		body   any
		status int
	}{
		{"no role: get by slug", nobody, "GET", envPath("prod"), nil, http.StatusNotFound},
		{"no role: get by id", nobody, "GET", envPath(prod.ID), nil, http.StatusNotFound},
		{"no role: connection", nobody, "GET", envPath("prod") + "/connection?scope=readonly", nil, http.StatusNotFound},
		{"no role: connection by id", nobody, "GET", "/v1/environments/" + prod.ID + "/connection?scope=readonly", nil, http.StatusNotFound},
		{"no role: schema", nobody, "GET", envPath("prod") + "/schema", nil, http.StatusNotFound},
		{"no role: rotate", nobody, "POST", envPath("prod") + "/credentials/rotate", map[string]any{}, http.StatusNotFound},
		{"no role: the environment's operation", nobody, "GET", "/v1/operations/" + rot.Operation.ID, nil, http.StatusNotFound},
		{"no role: delete", nobody, "DELETE", envPath("dev"), nil, http.StatusNotFound},
		{"viewer: get", viewer, "GET", envPath("dev"), nil, http.StatusOK},
		{"viewer: readonly connection", viewer, "GET", envPath("dev") + "/connection?scope=readonly", nil, http.StatusOK},
		{"viewer: readwrite connection", viewer, "GET", envPath("dev") + "/connection?scope=readwrite", nil, http.StatusForbidden},
		{"viewer: rotate", viewer, "POST", envPath("dev") + "/credentials/rotate", map[string]any{"scope": "readonly"}, http.StatusForbidden},
		{"viewer: revoke", viewer, "POST", envPath("dev") + "/credentials/revoke", map[string]any{"reason": "x"}, http.StatusForbidden},
		{"viewer: credentials", viewer, "GET", envPath("dev") + "/credentials", nil, http.StatusForbidden},
		{"viewer: migrate", viewer, "POST", envPath("dev") + "/schema/migrate", nil, http.StatusForbidden},
		{"viewer: suspend", viewer, "POST", envPath("dev") + "/suspend", nil, http.StatusForbidden},
		{"viewer: another environment", viewer, "GET", envPath("prod"), nil, http.StatusNotFound},
		{"app: readonly", app.Token, "GET", envPath("dev") + "/connection?scope=readonly", nil, http.StatusOK},
		{"app: readonly by id", app.Token, "GET", "/v1/environments/" + dev.ID + "/connection?scope=readonly", nil, http.StatusOK},
		{"app: above its scope", app.Token, "GET", envPath("dev") + "/connection?scope=readwrite", nil, http.StatusForbidden},
		{"app: admin scope", app.Token, "GET", "/v1/environments/" + dev.ID + "/connection?scope=admin", nil, http.StatusForbidden},
		{"app: another environment", app.Token, "GET", envPath("prod") + "/connection?scope=readonly", nil, http.StatusNotFound},
		{"app: another environment by id", app.Token, "GET", "/v1/environments/" + prod.ID + "/connection?scope=readonly", nil, http.StatusNotFound},
		{"app: the default environment", app.Token, "GET", envPath("default"), nil, http.StatusNotFound},
		{"app: another environment's operation", app.Token, "GET", "/v1/operations/" + rot.Operation.ID, nil, http.StatusNotFound},
		{"app: rotate its own", app.Token, "POST", envPath("dev") + "/credentials/rotate", map[string]any{}, http.StatusForbidden},
		{"app: create an environment", app.Token, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "x", "type": "test"}, http.StatusForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(t, tc.token, tc.method, tc.path, tc.body)
			switch tc.status {
			case http.StatusNotFound:
				wantProblem(t, r, tc.status, cp.ENOTFOUND, "")
				if strings.Contains(string(r.body), "prod") {
					t.Fatalf("the 404 names the environment: %s", r.body)
				}
			case http.StatusForbidden:
				wantProblem(t, r, tc.status, cp.EFORBIDDEN, "")
			default:
				if r.status != tc.status {
					t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.shown())
				}
			}
		})
	}

	listed := func(token string) []string {
		var list cp.List[*cp.EnvironmentView]
		h.must(t, http.StatusOK, token, "GET", "/v1/organizations/acme/environments", nil).decode(t, &list)
		var slugs []string
		for _, e := range list.Items {
			slugs = append(slugs, e.Slug)
		}
		return slugs
	}
	if got := listed(nobody); len(got) != 0 {
		t.Errorf("a member without roles lists %v", got)
	}
	if got := listed(viewer); len(got) != 1 || got[0] != "dev" {
		t.Errorf("a viewer of dev lists %v", got)
	}
	if got := listed(app.Token); len(got) != 1 || got[0] != "dev" {
		t.Errorf("an app key of dev lists %v", got)
	}
}
