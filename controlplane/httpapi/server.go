// Package httpapi serves envplane's HTTP API with echo v4 (problem+json
// errors, bearer keys, idempotent POSTs, Prometheus metrics, the OpenAPI
// document) and holds the Go client of the same API.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"

	cp "github.com/envplane/envplane/controlplane"
)

// Server is the API's HTTP server. Build it with NewServer; it is an http.Handler.
type Server struct {
	svc     *cp.Service
	logger  *slog.Logger
	echo    *echo.Echo
	openapi []byte
	metrics *metrics
	// maxWait caps the Prefer: wait=N a client may ask for.
	maxWait time.Duration
	// defaultWait is how long a create waits without Prefer: wait.
	defaultWait time.Duration
}

// Options tunes a Server; zero values take the defaults.
type Options struct {
	// BodyLimit caps request bodies (default 1 MiB).
	BodyLimit string
	// DefaultWait is how long environment creation waits for provisioning
	// before answering 202 (default 30s); MaxWait caps Prefer: wait (default 120s).
	DefaultWait time.Duration
	MaxWait     time.Duration
}

// NewServer returns the API server over svc, logging to logger and registering
// its metrics with reg. It fails if the route table and the handlers disagree.
func NewServer(svc *cp.Service, logger *slog.Logger, reg prometheus.Registerer, opts Options) (*Server, error) {
	if opts.BodyLimit == "" {
		opts.BodyLimit = "1M"
	}
	if opts.DefaultWait == 0 {
		opts.DefaultWait = 30 * time.Second
	}
	if opts.MaxWait == 0 {
		opts.MaxWait = 120 * time.Second
	}
	doc, err := OpenAPI(Routes())
	if err != nil {
		return nil, fmt.Errorf("cannot build the OpenAPI document: %w", err)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	if err := reg.Register(newUsageCollector(svc, logger)); err != nil {
		return nil, err
	}
	s := &Server{svc: svc, logger: logger, echo: echo.New(), openapi: doc, metrics: m, maxWait: opts.MaxWait, defaultWait: opts.DefaultWait}
	e := s.echo
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.JSONSerializer = jsonSerializer{}
	e.Use(dropForeignRequestID, middleware.RequestID())
	e.Use(s.logRequests)
	e.Use(s.recoverPanics)
	e.Use(middleware.BodyLimit(opts.BodyLimit))

	handlers := s.handlers(reg)
	maps.Copy(handlers, s.peopleHandlers())
	maps.Copy(handlers, s.rolloutHandlers())
	for _, r := range Routes() {
		h, ok := handlers[r.OperationID]
		if !ok {
			return nil, fmt.Errorf("route %s %s has no handler", r.Method, r.Path)
		}
		delete(handlers, r.OperationID)
		mw := []echo.MiddlewareFunc{validText(r)}
		if !r.Public {
			mw = append(mw, s.authenticate)
		}
		if r.Request != nil {
			mw = append(mw, jsonBody)
		}
		if !r.Public && r.Method == http.MethodPost && !answersSecret(r.OperationID) {
			mw = append(mw, s.idempotent(r.OperationID == "createAPIKey"))
		}
		e.Add(r.Method, r.Path, h, mw...)
	}
	for id := range handlers {
		return nil, fmt.Errorf("handler %s has no route", id)
	}
	if err := s.mountConsole(); err != nil {
		return nil, fmt.Errorf("cannot build the console: %w", err)
	}
	return s, nil
}

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

// requestContext returns the request's context carrying its request id, for the service's audit events.
func requestContext(c echo.Context) context.Context {
	return cp.WithRequestID(c.Request().Context(), c.Response().Header().Get(echo.HeaderXRequestID))
}

// principal returns the authenticated caller.
func principal(c echo.Context) *cp.Principal {
	p, _ := c.Get("principal").(*cp.Principal)
	return p
}

// authenticate resolves the bearer key; no key or a bad one is 401.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		token, ok := bearer(c)
		if !ok {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="envplane"`)
			return cp.Errorf(cp.EUNAUTHORIZED, "invalid or missing API key")
		}
		p, err := s.svc.Authenticate(requestContext(c), token)
		if err != nil {
			if cp.IsCode(err, cp.EUNAUTHORIZED) {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="envplane"`)
			}
			return err
		}
		c.Set("principal", p)
		return next(c)
	}
}

// bearer returns the request's bearer token; ok is false when there is none.
func bearer(c echo.Context) (token string, ok bool) {
	// The scheme is case-insensitive (RFC 9110 §11.1).
	scheme, token, ok := strings.Cut(c.Request().Header.Get(echo.HeaderAuthorization), " ")
	token = strings.TrimSpace(token)
	return token, ok && strings.EqualFold(scheme, "Bearer") && token != ""
}

// validText refuses, before anything else reads them, the route's path
// parameters, query parameters and Idempotency-Key when they hold text no
// store can (cp.StorableText): a path parameter so is 404 (no slug or id
// holds such text), a cursor that is not one this API gave out 400, any
// other query parameter 422 naming it. The service checks the same; this
// answers before authentication costs a store read.
func validText(r Route) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			for _, v := range c.ParamValues() {
				if !cp.StorableText(v) {
					return cp.Errorf(cp.ENOTFOUND, "not found")
				}
			}
			query := c.QueryParams()
			for _, name := range r.Query {
				for _, v := range query[name] {
					if name == "cursor" {
						if err := (cp.Page{Cursor: v}).Check(); err != nil {
							return err
						}
					} else if !cp.StorableText(v) {
						return cp.Invalid(cp.FieldError{Field: name, Message: "must be UTF-8 text without NUL characters"})
					}
				}
			}
			if !cp.StorableText(c.Request().Header.Get("Idempotency-Key")) {
				return cp.Errorf(cp.EMALFORMED, "the Idempotency-Key must be UTF-8 text")
			}
			return next(c)
		}
	}
}

// handleError answers every error as application/problem+json.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		err = fromEcho(he)
	}
	p := ProblemFor(err)
	if d := cp.RetryAfterOf(err); d > 0 {
		// Whole seconds, rounded up: a client that waits that long finds the way clear.
		c.Response().Header().Set("Retry-After", strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10))
	}
	if p.Status >= 500 {
		s.logger.Error("request failed", "request_id", c.Response().Header().Get(echo.HeaderXRequestID), "err", err)
	}
	body, mErr := json.Marshal(p)
	if mErr != nil {
		body = []byte(`{"title":"Internal Server Error","status":500,"code":"internal","detail":"internal error"}`)
	}
	c.Response().Header().Set(echo.HeaderContentType, ProblemContentType)
	c.Response().WriteHeader(p.Status)
	if c.Request().Method != http.MethodHead {
		_, _ = c.Response().Write(body)
	}
}

// fromEcho turns echo's own errors (no route, wrong method, body too large) into domain errors.
func fromEcho(he *echo.HTTPError) error {
	switch he.Code {
	case http.StatusNotFound:
		return cp.Errorf(cp.ENOTFOUND, "no such route")
	case http.StatusMethodNotAllowed:
		return cp.Errorf(cp.EMETHOD, "method not allowed on this route")
	case http.StatusRequestEntityTooLarge:
		return cp.Errorf(cp.ETOOLARGE, "request body too large")
	case http.StatusUnauthorized:
		return cp.Errorf(cp.EUNAUTHORIZED, "invalid or missing API key")
	}
	if he.Code >= 400 && he.Code < 500 {
		return cp.Errorf(cp.EMALFORMED, "%s", http.StatusText(he.Code))
	}
	return he
}

// recoverPanics turns a panic into a 500 without echoing its value: a panic
// value may hold anything, secrets included, so only its type is logged.
func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				s.logger.Error("handler panicked", "request_id", c.Response().Header().Get(echo.HeaderXRequestID), "panic_type", fmt.Sprintf("%T", r))
				err = cp.Errorf(cp.EINTERNAL, "internal error")
			}
		}()
		return next(c)
	}
}

// logRequests writes one JSON line per request: method, route, status,
// latency, request id. Never headers, bodies or query strings.
func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		status := c.Response().Status
		elapsed := time.Since(start)
		s.metrics.observe(c.Request().Method, route, status, elapsed)
		// A successful resolve is logged at debug level: the router answers
		// thousands a second, and receipts and metrics already count them.
		level := slog.LevelInfo
		if status < http.StatusBadRequest && routerRoute(route) {
			level = slog.LevelDebug
		}
		if !s.logger.Enabled(c.Request().Context(), level) {
			return nil
		}
		s.logger.Log(c.Request().Context(), level, "request",
			"request_id", c.Response().Header().Get(echo.HeaderXRequestID),
			"method", c.Request().Method,
			"route", route,
			"status", status,
			"duration_ms", float64(elapsed.Microseconds())/1000,
		)
		return nil
	}
}

// routerRoute reports whether route is one of the router's connection routes.
func routerRoute(route string) bool {
	return strings.HasSuffix(route, "/connection")
}

// bind decodes the JSON body, which jsonBody has checked, into v strictly:
// malformed JSON is 400, an unknown field or a field of the wrong type 422
// naming the field.
func bind(c echo.Context, v any) error {
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		return readError(err)
	}
	return decodeStrict(body, v)
}

// decodeStrict decodes body into the request struct v: unknown fields and
// fields of the wrong JSON type are EINVALID naming the field, anything
// else that does not decode EMALFORMED.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		var syntaxErr *json.SyntaxError
		switch {
		case errors.As(err, &typeErr) && typeErr.Field == "":
			return cp.Errorf(cp.EMALFORMED, "the body must be a JSON object")
		case errors.As(err, &typeErr):
			return cp.Invalid(cp.FieldError{Field: typeErr.Field, Message: "must be " + jsonKind(typeErr.Type)})
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return cp.Invalid(cp.FieldError{Field: field, Message: "unknown field"})
		case errors.As(err, &syntaxErr):
			return cp.Errorf(cp.EMALFORMED, "malformed JSON at byte %d", syntaxErr.Offset)
		case errors.Is(err, io.EOF):
			return cp.Errorf(cp.EMALFORMED, "a JSON body is required")
		}
		if field, typ := fieldAtFault(body, v); field != "" {
			return cp.Invalid(cp.FieldError{Field: field, Message: "must be " + jsonKind(typ)})
		}
		return cp.Errorf(cp.EMALFORMED, "malformed JSON body")
	}
	if dec.More() {
		return cp.Errorf(cp.EMALFORMED, "the body must hold one JSON value")
	}
	return nil
}

// fieldAtFault finds the field of the request struct v whose value in body
// does not decode, for failures encoding/json does not attribute to a field
// (a time that does not parse). It returns "" when it finds none.
func fieldAtFault(body []byte, v any) (string, reflect.Type) {
	var fields map[string]json.RawMessage
	t := reflect.TypeOf(v)
	if json.Unmarshal(body, &fields) != nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return "", nil
	}
	t = t.Elem()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		raw, ok := fields[name]
		if ok && json.Unmarshal(raw, reflect.New(f.Type).Interface()) != nil {
			return name, f.Type
		}
	}
	return "", nil
}

// jsonKind names the JSON type a Go type decodes from, for field errors:
// clients know JSON's types, not the server's Go type names.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[time.Time]() {
		return "an RFC 3339 time"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "an object"
}

// page reads ?limit= and ?cursor=.
func page(c echo.Context) (cp.Page, error) {
	p := cp.Page{Cursor: c.QueryParam("cursor")}
	if raw := c.QueryParam("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > cp.MaxPageLimit {
			return p, cp.Invalid(cp.FieldError{Field: "limit", Message: fmt.Sprintf("must be a whole number from 1 to %d", cp.MaxPageLimit)})
		}
		p.Limit = n
	}
	return p, nil
}

// wait returns how long the request may wait for a long operation: Prefer:
// wait=N (RFC 7240) or the default, capped. A Prefer header that does not
// parse is EMALFORMED (400).
func (s *Server) wait(c echo.Context) (time.Duration, error) {
	d, ok, err := preferWait(c.Request().Header.Values("Prefer"), s.maxWait)
	if err != nil || !ok {
		return s.defaultWait, err
	}
	return d, nil
}

// awaitDone waits for done up to d, or until the request ends.
func awaitDone(c echo.Context, done <-chan struct{}, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-c.Request().Context().Done():
	}
}

// list answers a list endpoint.
func list[T any](c echo.Context, items []T, next string) error {
	if items == nil {
		items = []T{}
	}
	return c.JSON(http.StatusOK, cp.List[T]{Items: items, Next: next})
}

// dropForeignRequestID removes a client's X-Request-ID that is not 1 to 64
// characters of [A-Za-z0-9._-], so the request gets a generated id: the id
// is logged and stored with audit events, where bytes a store cannot hold
// (or a page of text) must not go.
func dropForeignRequestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header
		if id := h.Get(echo.HeaderXRequestID); id != "" && !plainRequestID(id) {
			h.Del(echo.HeaderXRequestID)
		}
		return next(c)
	}
}

func plainRequestID(id string) bool {
	if len(id) > 64 {
		return false
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}
