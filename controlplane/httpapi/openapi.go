package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3gen"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/drivers"
)

// echoParam matches echo's path parameters (:org) so they become {org}.
var echoParam = regexp.MustCompile(`:([A-Za-z_][A-Za-z0-9_]*)`)

const (
	bearerScheme   = "bearer"
	problemRef     = "Problem"
	responseRefDir = "#/components/responses/"
)

// paramDoc describes a path, query or header parameter by its name.
func paramDoc(name string) string {
	switch name {
	case "org":
		return "Organization slug or id"
	case "env":
		return "Environment slug or id"
	case "user":
		return "User id or email"
	case "limit":
		return "Largest number of items in the page"
	case "cursor":
		return "The next value of the previous page"
	case "scope":
		return "Credential scope: admin, readwrite or readonly"
	case "Idempotency-Key":
		return "A retried POST with the same key and body replays the first answer; another body is 422"
	case "after":
		return "With wait: the credential id the client holds; the answer comes once the newest active credential is another"
	case "wait":
		return "Watch: hold the answer up to this long (1s to 60s, e.g. 30s) for a credential other than after"
	case "since", "until":
		return "RFC 3339 time bounding the receipts"
	case "credential":
		return "Only this credential's receipts"
	case "type":
		return "Only environments of this type"
	case "status":
		return "Only items in this status"
	case "target":
		return "Only environments whose database is on this target"
	case "environment":
		return "Only this environment's (slug or id)"
	case "kind":
		return "Only operations of this kind"
	case "Location":
		return "The operation to follow: /v1/operations/{id}"
	case "Prefer":
		return "RFC 7240; wait=N: hold the answer up to N seconds for the change to finish before answering 202. Other preferences are ignored; a header that does not parse is 400"
	}
	return "Identifier"
}

// enums lists the allowed values of the API's enumerated string types, so the
// document states them rather than "string".
func enums() map[reflect.Type][]any {
	return map[reflect.Type][]any{
		reflect.TypeFor[drivers.Scope]():        {drivers.ScopeAdmin, drivers.ScopeReadWrite, drivers.ScopeReadOnly},
		reflect.TypeFor[drivers.Slot]():         {drivers.SlotA, drivers.SlotB},
		reflect.TypeFor[cp.OrgRole]():           {cp.OrgOwner, cp.OrgAdmin, cp.OrgMember},
		reflect.TypeFor[cp.EnvRole]():           {cp.EnvAdmin, cp.EnvMaker, cp.EnvUser, cp.EnvViewer},
		reflect.TypeFor[cp.EnvironmentType]():   {cp.TypeDefault, cp.TypeDevelopment, cp.TypeTest, cp.TypeStaging, cp.TypeProduction, cp.TypeSandbox, cp.TypePreview, cp.TypeTrial},
		reflect.TypeFor[cp.EnvironmentStatus](): {cp.StatusProvisioning, cp.StatusActive, cp.StatusSuspended, cp.StatusDeleting, cp.StatusDeleted, cp.StatusFailed},
		reflect.TypeFor[cp.CredentialStatus]():  {cp.CredentialActive, cp.CredentialRotating, cp.CredentialRevoked},
		reflect.TypeFor[cp.OperationKind]():     {cp.OpProvision, cp.OpDeprovision, cp.OpRotate, cp.OpClone, cp.OpSuspend, cp.OpResume, cp.OpReset, cp.OpMigrate, cp.OpBackup, cp.OpRestore},
		reflect.TypeFor[cp.OperationStatus]():   {cp.OpPending, cp.OpRunning, cp.OpSucceeded, cp.OpFailed},
	}
}

// OpenAPI builds the OpenAPI 3 document (JSON) of the API described by
// routes: one operation per route, schemas generated from the Go types of
// its bodies, problem+json errors, bearer security on non-public routes. The
// output is deterministic: the same routes give the same bytes. It returns an
// error when a type cannot be described or the document does not validate.
func OpenAPI(routes []Route) ([]byte, error) {
	schemas := openapi3.Schemas{}
	gen := schemaGenerator(schemas)
	problem, err := gen(Problem{})
	if err != nil {
		return nil, err
	}
	doc := &openapi3.T{
		OpenAPI: "3.0.3",
		Info: &openapi3.Info{
			Title:       "envplane",
			Version:     "v1",
			Description: "One physically isolated database per environment: organizations, environments, credentials and the router.",
		},
		Paths: openapi3.NewPaths(),
		Components: &openapi3.Components{
			Schemas: schemas,
			SecuritySchemes: openapi3.SecuritySchemes{
				bearerScheme: {Value: &openapi3.SecurityScheme{Type: "http", Scheme: "bearer", Description: "An API key: Authorization: Bearer <key>"}},
			},
			Responses: openapi3.ResponseBodies{
				problemRef: {Value: openapi3.NewResponse().
					WithDescription("An error: RFC 9457 problem with the envplane error code and the fields at fault").
					WithContent(openapi3.NewContentWithSchemaRef(problem, []string{ProblemContentType}))},
			},
		},
	}
	for _, r := range routes {
		op, err := operation(r, gen)
		if err != nil {
			return nil, fmt.Errorf("cannot describe %s %s: %w", r.Method, r.Path, err)
		}
		path := echoParam.ReplaceAllString(r.Path, "{$1}")
		item := doc.Paths.Value(path)
		if item == nil {
			item = &openapi3.PathItem{}
			doc.Paths.Set(path, item)
		}
		if item.GetOperation(r.Method) != nil {
			return nil, fmt.Errorf("cannot describe %s %s: route listed twice", r.Method, r.Path)
		}
		item.SetOperation(r.Method, op)
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("cannot encode openapi document: %w", err)
	}
	// Validate what a consumer reads: the generator leaves $refs unresolved
	// in memory, and loading the bytes resolves them.
	loaded, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		return nil, fmt.Errorf("cannot load openapi document: %w", err)
	}
	if err := loaded.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("invalid openapi document: %w", err)
	}
	return b, nil
}

// operation describes one route.
func operation(r Route, gen func(any) (*openapi3.SchemaRef, error)) (*openapi3.Operation, error) {
	op := &openapi3.Operation{
		OperationID: r.OperationID,
		Summary:     r.Summary,
		Tags:        []string{tagOf(r.Path)},
		Responses:   openapi3.NewResponses(),
	}
	for _, m := range echoParam.FindAllStringSubmatch(r.Path, -1) {
		op.AddParameter(openapi3.NewPathParameter(m[1]).WithDescription(paramDoc(m[1])).WithSchema(openapi3.NewStringSchema()))
	}
	for _, q := range r.Query {
		schema := openapi3.NewStringSchema()
		switch q {
		case "limit":
			schema = openapi3.NewIntegerSchema().WithMin(1)
		case "scope":
			schema.Enum = enums()[reflect.TypeFor[drivers.Scope]()]
		}
		if v, ok := r.QueryEnums[q]; ok {
			values, known := enums()[reflect.TypeOf(v)]
			if !known {
				return nil, fmt.Errorf("query parameter %s: no enumeration of %T", q, v)
			}
			schema.Enum = values
		}
		op.AddParameter(openapi3.NewQueryParameter(q).WithDescription(paramDoc(q)).WithSchema(schema))
	}
	if r.Method == http.MethodPost {
		op.AddParameter(openapi3.NewHeaderParameter("Idempotency-Key").WithDescription(paramDoc("Idempotency-Key")).WithSchema(openapi3.NewStringSchema()))
	}
	if r.Method == http.MethodPost && r.Accepted != nil {
		op.AddParameter(openapi3.NewHeaderParameter("Prefer").WithDescription(paramDoc("Prefer")).WithSchema(openapi3.NewStringSchema()))
	}
	if r.Request != nil {
		schema, err := gen(r.Request)
		if err != nil {
			return nil, err
		}
		op.RequestBody = &openapi3.RequestBodyRef{Value: openapi3.NewRequestBody().WithRequired(true).WithJSONSchemaRef(schema)}
	}
	success, err := response(r.Status, r.Response, gen)
	if err != nil {
		return nil, err
	}
	op.Responses.Set(strconv.Itoa(r.Status), success)
	if r.Accepted != nil {
		accepted, err := response(http.StatusAccepted, r.Accepted, gen)
		if err != nil {
			return nil, err
		}
		op.Responses.Set(strconv.Itoa(http.StatusAccepted), accepted)
	}
	if r.Request != nil {
		// The answers of the body itself, before its fields are read.
		for _, status := range []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType} {
			op.Responses.Set(strconv.Itoa(status), &openapi3.ResponseRef{Ref: responseRefDir + problemRef})
		}
	}
	op.Responses.Set("default", &openapi3.ResponseRef{Ref: responseRefDir + problemRef})
	if r.Public {
		op.Security = &openapi3.SecurityRequirements{}
	} else {
		op.Security = openapi3.NewSecurityRequirements().With(openapi3.NewSecurityRequirement().Authenticate(bearerScheme))
	}
	return op, nil
}

// response describes a success answer; body nil means no JSON body.
func response(status int, body any, gen func(any) (*openapi3.SchemaRef, error)) (*openapi3.ResponseRef, error) {
	resp := openapi3.NewResponse().WithDescription(http.StatusText(status))
	if body != nil {
		schema, err := gen(body)
		if err != nil {
			return nil, err
		}
		resp.WithJSONSchemaRef(schema)
	}
	if status == http.StatusAccepted {
		resp.Headers = openapi3.Headers{"Location": {Value: &openapi3.Header{Parameter: openapi3.Parameter{
			Description: paramDoc("Location"), Required: true, Schema: openapi3.NewStringSchema().NewRef()}}}}
	}
	return &openapi3.ResponseRef{Value: resp}, nil
}

// tagOf groups operations by the resource their path names last.
func tagOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i := len(parts) - 1; i >= 0; i-- {
		p := parts[i]
		switch {
		case p == "v1", strings.HasPrefix(p, ":"):
			continue
		case p == "suspend" || p == "resume":
			return "environments"
		case p == "rotate" || p == "revoke":
			return "credentials"
		case p == "migrate":
			return "schema"
		}
		return p
	}
	return "system"
}

// schemaGenerator returns a function that describes a Go value's type,
// registering struct types as components in schemas and answering a $ref to
// them. Fields without omitempty are required: the server always sends them,
// and requests must carry them.
func schemaGenerator(schemas openapi3.Schemas) func(any) (*openapi3.SchemaRef, error) {
	enumOf := enums()
	customize := func(_ string, t reflect.Type, _ reflect.StructTag, s *openapi3.Schema) error {
		if values, ok := enumOf[t]; ok {
			s.Enum = values
		}
		if t.Kind() == reflect.Struct && s.Properties != nil {
			s.Required = requiredFields(t)
		}
		return nil
	}
	return func(v any) (*openapi3.SchemaRef, error) {
		g := openapi3gen.NewGenerator(
			openapi3gen.SchemaCustomizer(customize),
			openapi3gen.CreateTypeNameGenerator(typeName),
			openapi3gen.CreateComponentSchemas(openapi3gen.ExportComponentSchemasOptions{
				ExportComponentSchemas: true,
				ExportTopLevelSchema:   true,
				ExportGenerics:         true,
			}),
		)
		ref, err := g.NewSchemaRefForValue(v, schemas)
		if err != nil {
			return nil, fmt.Errorf("cannot describe %T: %w", v, err)
		}
		return ref, nil
	}
}

// typeName names a component: the Go type's name, and ElemList for List[Elem].
func typeName(t reflect.Type) string {
	if !strings.Contains(t.Name(), "[") {
		return t.Name()
	}
	if f, ok := t.FieldByName("Items"); ok && f.Type.Kind() == reflect.Slice {
		elem := f.Type.Elem()
		for elem.Kind() == reflect.Pointer {
			elem = elem.Elem()
		}
		return elem.Name() + "List"
	}
	return strings.NewReplacer("[", "_", "]", "", "*", "", "/", "_").Replace(t.Name())
}

// requiredFields lists the JSON names of t's fields that encoding/json always
// writes (no omitempty), looking through embedded structs as encoding/json does.
func requiredFields(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		tag, hasTag := f.Tag.Lookup("json")
		name, opts, _ := strings.Cut(tag, ",")
		if tag == "-" || !f.IsExported() && !f.Anonymous {
			continue
		}
		if f.Anonymous && name == "" {
			inner := f.Type
			for inner.Kind() == reflect.Pointer {
				inner = inner.Elem()
			}
			if inner.Kind() == reflect.Struct {
				names = append(names, requiredFields(inner)...)
			}
			continue
		}
		if !hasTag || strings.Contains(","+opts+",", ",omitempty,") {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}
