package httpapi_test

import (
	"bytes"
	"context"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/envplane/envplane/controlplane/httpapi"
)

// loadOpenAPI builds the document from the real route table and loads it
// back with kin-openapi's loader, as a consumer of /v1/openapi.json would.
func loadOpenAPI(tb testing.TB) (*openapi3.T, []byte) {
	tb.Helper()
	b, err := httpapi.OpenAPI(httpapi.Routes())
	if err != nil {
		tb.Fatalf("OpenAPI: %v", err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		tb.Fatalf("cannot load the generated document: %v", err)
	}
	return doc, b
}

func TestOpenAPIValidates(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("generated document does not validate after a round trip: %v", err)
	}
}

func TestOpenAPIDeterministic(t *testing.T) {
	first, err := httpapi.OpenAPI(httpapi.Routes())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		again, err := httpapi.OpenAPI(httpapi.Routes())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, again) {
			t.Fatalf("call %d produced different bytes", i+2)
		}
	}
}

var echoParam = regexp.MustCompile(`:([A-Za-z_]+)`)

func TestOpenAPIHasEveryRoute(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	ids := map[string]string{}
	for _, r := range httpapi.Routes() {
		path := echoParam.ReplaceAllString(r.Path, "{$1}")
		item := doc.Paths.Value(path)
		if item == nil {
			t.Errorf("%s %s: path %s missing", r.Method, r.Path, path)
			continue
		}
		op := item.GetOperation(r.Method)
		if op == nil {
			t.Errorf("%s %s: method missing", r.Method, r.Path)
			continue
		}
		if op.OperationID != r.OperationID {
			t.Errorf("%s %s: operationId %q, want %q", r.Method, r.Path, op.OperationID, r.OperationID)
		}
		if prev, ok := ids[op.OperationID]; ok {
			t.Errorf("operationId %q used by %s and %s %s", op.OperationID, prev, r.Method, r.Path)
		}
		ids[op.OperationID] = r.Method + " " + r.Path

		// Path parameters: every {name} of the path is declared, required.
		for _, m := range echoParam.FindAllStringSubmatch(r.Path, -1) {
			p := op.Parameters.GetByInAndName(openapi3.ParameterInPath, m[1])
			if p == nil || !p.Required {
				t.Errorf("%s %s: path parameter %q not declared as required", r.Method, r.Path, m[1])
			}
		}
		for _, q := range r.Query {
			if op.Parameters.GetByInAndName(openapi3.ParameterInQuery, q) == nil {
				t.Errorf("%s %s: query parameter %q not declared", r.Method, r.Path, q)
			}
		}
		if (r.Request != nil) != (op.RequestBody != nil) {
			t.Errorf("%s %s: request body declared %v, route has one %v", r.Method, r.Path, op.RequestBody != nil, r.Request != nil)
		}
		success := op.Responses.Status(r.Status)
		if success == nil {
			t.Errorf("%s %s: no %d response", r.Method, r.Path, r.Status)
		} else if hasJSON := success.Value.Content.Get("application/json") != nil; hasJSON != (r.Response != nil) {
			t.Errorf("%s %s: %d response has JSON body %v, route has one %v", r.Method, r.Path, r.Status, hasJSON, r.Response != nil)
		}
		if r.Accepted != nil && op.Responses.Status(http.StatusAccepted) == nil {
			t.Errorf("%s %s: no 202 alternative", r.Method, r.Path)
		}
		problem := op.Responses.Default()
		if problem == nil || problem.Value == nil || problem.Value.Content.Get(httpapi.ProblemContentType) == nil {
			t.Errorf("%s %s: no problem+json default response", r.Method, r.Path)
		}
		// A body can be refused as such: malformed, too large, not JSON.
		for _, status := range []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType} {
			resp := op.Responses.Status(status)
			if declared := resp != nil && resp.Value != nil && resp.Value.Content.Get(httpapi.ProblemContentType) != nil; declared != (r.Request != nil) {
				t.Errorf("%s %s: problem+json %d declared %v, route takes a body %v", r.Method, r.Path, status, declared, r.Request != nil)
			}
		}
		secured := op.Security != nil && len(*op.Security) > 0
		if secured == r.Public {
			t.Errorf("%s %s: bearer security %v on a route with Public %v", r.Method, r.Path, secured, r.Public)
		}
	}
}

func TestOpenAPIDescribesBodies(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	schema := func(name string) *openapi3.Schema {
		t.Helper()
		ref, ok := doc.Components.Schemas[name]
		if !ok || ref.Value == nil {
			t.Fatalf("component schema %q missing", name)
		}
		return ref.Value
	}

	// The embedded *Environment is flattened as encoding/json does.
	view := schema("EnvironmentView")
	for _, field := range []string{"id", "slug", "status", "is_protected", "database"} {
		if view.Properties[field] == nil {
			t.Errorf("EnvironmentView lacks %q", field)
		}
	}
	// Quotas and expiry are part of the contract; the notice bookkeeping is not.
	for schemaName, fields := range map[string][]string{
		"EnvironmentView":           {"expires_at", "expiring"},
		"CreateEnvironmentRequest":  {"ttl", "expires_at"},
		"UpdateEnvironmentRequest":  {"ttl", "expires_at"},
		"Organization":              {"max_environments", "max_storage_mb"},
		"CreateOrganizationRequest": {"max_environments", "max_storage_mb"},
		"UpdateOrganizationRequest": {"max_environments", "max_storage_mb"},
	} {
		for _, field := range fields {
			if schema(schemaName).Properties[field] == nil {
				t.Errorf("%s lacks %q", schemaName, field)
			}
		}
	}
	if view.Properties["ExpiryNoticedAt"] != nil || view.Properties["expiry_noticed_at"] != nil {
		t.Error("EnvironmentView describes the expiry notice")
	}
	// Fields encoding/json never writes are not described.
	if schema("Credential").Properties["SecretCipher"] != nil || schema("APIKey").Properties["hash"] != nil {
		t.Error("a json:\"-\" field is described")
	}
	// Enumerations are stated.
	status := view.Properties["status"].Value
	if len(status.Enum) != 6 {
		t.Errorf("environment status enum = %v", status.Enum)
	}
	// Required mirrors omitempty.
	req := schema("CreateEnvironmentRequest")
	if !slices.Equal(req.Required, []string{"slug", "type"}) {
		t.Errorf("CreateEnvironmentRequest required = %v, want [slug type]", req.Required)
	}
	// The problem shape is the one the server sends.
	problem := schema("Problem")
	for _, field := range []string{"type", "title", "status", "detail", "code", "errors"} {
		if problem.Properties[field] == nil {
			t.Errorf("Problem lacks %q", field)
		}
	}
	// Generic lists get readable names.
	list := schema("OrganizationList")
	if list.Properties["items"] == nil || list.Properties["next"] == nil {
		t.Errorf("OrganizationList = %v", list.Properties)
	}
	// The Prefer header is offered where a 202 is possible.
	op := doc.Paths.Value("/v1/organizations/{org}/environments").Post
	if op.Parameters.GetByInAndName(openapi3.ParameterInHeader, "Prefer") == nil {
		t.Error("createEnvironment lacks the Prefer header")
	}
}

func TestOpenAPIRejectsDuplicateRoute(t *testing.T) {
	routes := httpapi.Routes()
	routes = append(routes, routes[len(routes)-1])
	if _, err := httpapi.OpenAPI(routes); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("OpenAPI with a route listed twice: err = %v", err)
	}
}

func TestOpenAPIRejectsDuplicateOperationID(t *testing.T) {
	routes := httpapi.Routes()
	dup := routes[len(routes)-1]
	dup.Path = "/v1/other/:id"
	routes = append(routes, dup)
	if _, err := httpapi.OpenAPI(routes); err == nil {
		t.Fatalf("OpenAPI with operation id %q twice: no error", dup.OperationID)
	}
}
