package http_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	holdfasthttp "github.com/holdfast/holdfast/http"
)

// TestOpenAPI checks the served document: 200, JSON, OpenAPI 3.1, the
// embedded bytes.
func TestOpenAPI(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	r := (&Client{URL: s.URL()}).Do(t, "GET", "/openapi.json", nil).MustStatus(t, 200)
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	var doc map[string]any
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatalf("/openapi.json is not JSON: %v", err)
	}
	if doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi = %v, want 3.1.0", doc["openapi"])
	}
	if !bytes.Equal(r.Body, holdfasthttp.OpenAPI()) {
		t.Fatal("served document differs from OpenAPI()")
	}
	loadOpenAPI(t).checkResponse(t, "GET", "/openapi.json", r)
}

// openAPIRoutePattern matches a route registration in server.go.
var openAPIRoutePattern = regexp.MustCompile(`mux\.Handle(?:Func)?\("([A-Z]+) (/[^"]*)"`)

// TestOpenAPIRoutes checks that the document describes exactly the routes
// server.go registers.
func TestOpenAPIRoutes(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("server.go")
	if err != nil {
		t.Fatal(err)
	}
	registered := map[string]bool{}
	for _, m := range openAPIRoutePattern.FindAllStringSubmatch(string(src), -1) {
		registered[m[1]+" "+openAPIPath(m[2])] = true
	}
	if len(registered) < 10 {
		t.Fatalf("found only %d routes in server.go; has the registration changed shape?", len(registered))
	}

	spec := loadOpenAPI(t)
	documented := map[string]bool{}
	for path, item := range spec.obj(t, spec.root, "paths") {
		for method := range item.(map[string]any) {
			if slices.Contains([]string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}, method) {
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	for _, r := range openAPISortedKeys(registered) {
		if !documented[r] {
			t.Errorf("route %s is registered in server.go but not in openapi.json", r)
		}
	}
	for _, d := range openAPISortedKeys(documented) {
		if !registered[d] {
			t.Errorf("operation %s is in openapi.json but not registered in server.go", d)
		}
	}
}

// openAPIPath turns a ServeMux path pattern into an OpenAPI path template.
func openAPIPath(p string) string {
	p = strings.TrimSuffix(p, "{$}")
	return regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*)(?:\.\.\.)?\}`).ReplaceAllString(p, "{$1}")
}

// TestOpenAPIDocument checks the document's own consistency: a license and
// a contact, every $ref
// resolves, operation ids are unique, path parameters are declared, every
// POST takes Idempotency-Key, request bodies are closed, and the security of
// each operation matches its middleware.
func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	spec := loadOpenAPI(t)
	info := spec.obj(t, spec.root, "info")
	if l, _ := info["license"].(map[string]any); l["name"] == nil {
		t.Error("info names no license")
	}
	if c, _ := info["contact"].(map[string]any); c["url"] == nil && c["email"] == nil {
		t.Error("info gives no contact")
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				spec.ref(t, ref)
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(spec.root)

	ids := map[string]string{}
	for path, item := range spec.obj(t, spec.root, "paths") {
		for method, o := range item.(map[string]any) {
			op := o.(map[string]any)
			name := strings.ToUpper(method) + " " + path
			id, _ := op["operationId"].(string)
			if id == "" {
				t.Errorf("%s has no operationId", name)
			} else if other, dup := ids[id]; dup {
				t.Errorf("operationId %s is on %s and %s", id, other, name)
			}
			ids[id] = name

			params := map[string]map[string]any{}
			for _, p := range spec.list(op["parameters"]) {
				p := spec.deref(t, p.(map[string]any))
				params[p["in"].(string)+":"+p["name"].(string)] = p
			}
			for _, m := range regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(path, -1) {
				p, ok := params["path:"+m[1]]
				if !ok || p["required"] != true {
					t.Errorf("%s: path parameter %s is not declared as required", name, m[1])
				}
			}
			if method == "post" {
				if _, ok := params["header:Idempotency-Key"]; !ok {
					t.Errorf("%s takes no Idempotency-Key parameter", name)
				}
			}
			if rb, ok := op["requestBody"].(map[string]any); ok && rb["content"].(map[string]any)["application/json"] != nil {
				schema := spec.deref(t, rb["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any))
				if schema["additionalProperties"] != false {
					t.Errorf("%s: the request body schema allows unknown fields; the server rejects them", name)
				}
			}
			for status := range spec.obj(t, op, "responses") {
				if _, err := strconv.Atoi(status); err != nil {
					t.Errorf("%s: response %q is not a status code", name, status)
				}
			}

			var want []any
			switch {
			case strings.HasPrefix(path, "/v1/admin/"):
				want = []any{map[string]any{"adminAuth": []any{}}}
			case strings.HasPrefix(path, "/v1/"):
				want = []any{map[string]any{"bearerAuth": []any{}}}
			default:
				want = []any{}
			}
			if !reflect.DeepEqual(op["security"], want) {
				t.Errorf("%s: security %v, want %v", name, op["security"], want)
			}
			if _, ok := spec.obj(t, op, "responses")["401"]; ok != strings.HasPrefix(path, "/v1/") {
				t.Errorf("%s: documents 401 = %v, want %v", name, ok, strings.HasPrefix(path, "/v1/"))
			}
		}
	}
}

// TestOpenAPIResponses drives every operation and checks each real response,
// and each accepted request body, against the document.
func TestOpenAPIResponses(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	call := loadOpenAPI(t).caller(t)

	// Tenants, with a replay.
	admin := s.Admin()
	tenantBody := map[string]any{"name": "openapi"}
	created := call(admin, "POST", "/v1/admin/tenants", "/v1/admin/tenants", tenantBody, "Idempotency-Key", "tenant-1").MustStatus(t, 201)
	replay := call(admin, "POST", "/v1/admin/tenants", "/v1/admin/tenants", tenantBody, "Idempotency-Key", "tenant-1").MustStatus(t, 201)
	// The stored response is the created one without the key's secret.
	withoutSecret := bytes.Replace(created.Body, []byte(`"secret":"`+created.JSON(t)["api_key"].(map[string]any)["secret"].(string)+`"`), []byte(`"secret":null,"secret_redacted":true`), 1)
	if replay.Header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(replay.Body, withoutSecret) {
		t.Fatalf("replay: %v %s, want the stored %s", replay.Header, replay.Body, withoutSecret)
	}
	call(&Client{URL: s.URL(), Key: "wrong"}, "POST", "/v1/admin/tenants", "/v1/admin/tenants", tenantBody).MustStatus(t, 401)
	call(admin, "POST", "/v1/admin/tenants", "/v1/admin/tenants", map[string]any{"name": ""}).MustStatus(t, 400)
	m := created.JSON(t)
	c := &Client{URL: s.URL(), Key: m["api_key"].(map[string]any)["secret"].(string)}

	// Accounts.
	call(&Client{URL: s.URL()}, "GET", "/v1/accounts", "/v1/accounts", nil).MustStatus(t, 401)
	acctBody := map[string]any{"currency": "USD", "allow_overdraft": false, "metadata": map[string]any{"owner": "alice"}}
	a := call(c, "POST", "/v1/accounts", "/v1/accounts", acctBody, "Idempotency-Key", "acct-a").MustStatus(t, 201).JSON(t)["id"].(string)
	call(c, "POST", "/v1/accounts", "/v1/accounts", map[string]any{"currency": "EUR"}, "Idempotency-Key", "acct-a").MustStatus(t, 422)
	call(c, "POST", "/v1/accounts", "/v1/accounts", acctBody, "Idempotency-Key", strings.Repeat("k", 256)).MustStatus(t, 400)
	call(c, "POST", "/v1/accounts", "/v1/accounts", map[string]any{"currency": "usd"}).MustStatus(t, 400)
	call(c, "POST", "/v1/accounts", "/v1/accounts", `{"currency":"USD"}`, "Content-Type", "text/plain").MustStatus(t, 415)
	call(c, "POST", "/v1/accounts", "/v1/accounts", strings.Repeat(" ", 1<<20+1)).MustStatus(t, 413)
	house := call(c, "POST", "/v1/accounts", "/v1/accounts", map[string]any{"currency": "USD", "allow_overdraft": true}).MustStatus(t, 201).JSON(t)["id"].(string)
	b := call(c, "POST", "/v1/accounts", "/v1/accounts", map[string]any{"currency": "USD"}).MustStatus(t, 201).JSON(t)["id"].(string)
	page := call(c, "GET", "/v1/accounts", "/v1/accounts?limit=2", nil).MustStatus(t, 200).JSON(t)
	if page["next_cursor"] == nil {
		t.Fatalf("a full page has no next_cursor: %v", page)
	}
	call(c, "GET", "/v1/accounts", "/v1/accounts?cursor="+page["next_cursor"].(string), nil).MustStatus(t, 200)
	call(c, "GET", "/v1/accounts", "/v1/accounts?limit=501", nil).MustStatus(t, 400)
	call(c, "GET", "/v1/accounts/{id}", "/v1/accounts/"+a, nil).MustStatus(t, 200)
	call(c, "GET", "/v1/accounts/{id}", "/v1/accounts/not-a-uuid", nil).MustStatus(t, 404)

	// Transfers.
	tr := call(c, "POST", "/v1/transfers", "/v1/transfers",
		map[string]any{"debit_account_id": house, "credit_account_id": a, "amount": 1000, "currency": "USD", "description": "top-up"},
		"Idempotency-Key", "fund-a").MustStatus(t, 201).JSON(t)["id"].(string)
	call(c, "POST", "/v1/transfers", "/v1/transfers", Transfer(b, a, 5, "USD"), "Idempotency-Key", "short").MustStatus(t, 422)
	call(c, "POST", "/v1/transfers", "/v1/transfers", Transfer(b, a, 5, "USD"), "Idempotency-Key", "short").MustStatus(t, 422)
	call(c, "POST", "/v1/transfers", "/v1/transfers", Transfer(a, b, 0, "USD")).MustStatus(t, 400)
	call(c, "POST", "/v1/transfers", "/v1/transfers", Transfer(a, "0190a8a0-0000-7000-8000-000000000000", 5, "USD")).MustStatus(t, 404)
	call(c, "GET", "/v1/transfers/{id}", "/v1/transfers/"+tr, nil).MustStatus(t, 200)
	call(c, "GET", "/v1/transfers/{id}", "/v1/transfers/0190a8a0-0000-7000-8000-000000000000", nil).MustStatus(t, 404)
	linked := map[string]any{"transfers": []any{Transfer(a, b, 100, "USD"), Transfer(b, a, 50, "USD")}}
	call(c, "POST", "/v1/linked-transfers", "/v1/linked-transfers", linked).MustStatus(t, 201)
	failed := call(c, "POST", "/v1/linked-transfers", "/v1/linked-transfers",
		map[string]any{"transfers": []any{Transfer(a, b, 100, "USD"), Transfer(b, a, 1_000_000, "USD")}}).MustStatus(t, 422).JSON(t)
	if failed["index"] != float64(1) {
		t.Fatalf("linked failure index = %v, want 1: %v", failed["index"], failed)
	}
	call(c, "POST", "/v1/linked-transfers", "/v1/linked-transfers", map[string]any{"transfers": []any{}}).MustStatus(t, 400)
	call(c, "GET", "/v1/accounts/{id}/transfers", "/v1/accounts/"+a+"/transfers?limit=1", nil).MustStatus(t, 200)
	call(c, "GET", "/v1/accounts/{id}/transfers", "/v1/accounts/"+a+"/transfers?cursor=x", nil).MustStatus(t, 400)

	// Holds, search, metadata and balances.
	hold := Transfer(a, b, 300, "USD")
	hold["pending"], hold["timeout"], hold["metadata"] = true, 3600, map[string]any{"order": "A-17"}
	h := call(c, "POST", "/v1/transfers", "/v1/transfers", hold).MustStatus(t, 201).JSON(t)["id"].(string)
	call(c, "POST", "/v1/transfers/{id}/post", "/v1/transfers/"+h+"/post", map[string]any{"amount": 301}).MustStatus(t, 422)
	call(c, "POST", "/v1/transfers/{id}/post", "/v1/transfers/"+h+"/post", map[string]any{"amount": 200}, "Idempotency-Key", "capture").MustStatus(t, 201)
	call(c, "POST", "/v1/transfers/{id}/post", "/v1/transfers/"+h+"/post", map[string]any{"amount": 200}, "Idempotency-Key", "capture").MustStatus(t, 201)
	call(c, "POST", "/v1/transfers/{id}/void", "/v1/transfers/"+h+"/void", nil).MustStatus(t, 409)
	call(c, "POST", "/v1/transfers/{id}/void", "/v1/transfers/"+tr+"/void", map[string]any{"amount": 1}).MustStatus(t, 400)
	call(c, "POST", "/v1/transfers/{id}/void", "/v1/transfers/0190a8a0-0000-7000-8000-000000000000/void", nil).MustStatus(t, 404)
	call(c, "GET", "/v1/transfers", "/v1/transfers?limit=1&status=posted&metadata[order]=A-17", nil).MustStatus(t, 200)
	call(c, "GET", "/v1/transfers", "/v1/transfers?account_id="+a+"&amount[gte]=1&created[gte]=2000-01-01T00:00:00Z", nil).MustStatus(t, 200)
	call(c, "GET", "/v1/transfers", "/v1/transfers?status=lost", nil).MustStatus(t, 400)
	call(c, "PATCH", "/v1/transfers/{id}", "/v1/transfers/"+h, map[string]any{"metadata": map[string]any{"order": nil, "note": "x"}}).MustStatus(t, 200)
	call(c, "PATCH", "/v1/transfers/{id}", "/v1/transfers/"+h, map[string]any{"metadata": map[string]any{"": "x"}}).MustStatus(t, 400)
	call(c, "PATCH", "/v1/accounts/{id}", "/v1/accounts/"+a, map[string]any{"metadata": map[string]any{"tier": "gold"}}).MustStatus(t, 200)
	call(c, "PATCH", "/v1/accounts/{id}", "/v1/accounts/0190a8a0-0000-7000-8000-000000000000", map[string]any{"metadata": map[string]any{}}).MustStatus(t, 404)
	call(c, "GET", "/v1/accounts/{id}/balance", "/v1/accounts/"+a+"/balance?at=2000-01-01T00:00:00Z", nil).MustStatus(t, 200)
	call(c, "GET", "/v1/accounts/{id}/balance", "/v1/accounts/"+a+"/balance", nil).MustStatus(t, 200)
	call(c, "GET", "/v1/accounts/{id}/balance", "/v1/accounts/"+a+"/balance?at=yesterday", nil).MustStatus(t, 400)
	call(c, "GET", "/v1/accounts/{id}/balances", "/v1/accounts/"+a+"/balances?from=2026-01-01T00:00:00Z&to=2025-01-01T00:00:00Z", nil).MustStatus(t, 400)

	// API keys.
	k := call(c, "POST", "/v1/api-keys", "/v1/api-keys", nil, "Idempotency-Key", "key-1").MustStatus(t, 201).JSON(t)["id"].(string)
	call(c, "POST", "/v1/api-keys", "/v1/api-keys", nil, "Idempotency-Key", "key-1").MustStatus(t, 201) // the replay, without the secret
	call(c, "GET", "/v1/api-keys", "/v1/api-keys", nil).MustStatus(t, 200)
	call(c, "DELETE", "/v1/api-keys/{id}", "/v1/api-keys/"+k, nil).MustStatus(t, 204)
	call(c, "GET", "/v1/api-keys", "/v1/api-keys", nil).MustStatus(t, 200) // with revoked_at
	call(c, "DELETE", "/v1/api-keys/{id}", "/v1/api-keys/nope", nil).MustStatus(t, 404)

	// System routes; draining last.
	anon := &Client{URL: s.URL()}
	call(anon, "GET", "/healthz", "/healthz", nil).MustStatus(t, 200)
	call(anon, "GET", "/readyz", "/readyz", nil).MustStatus(t, 200)
	call(anon, "GET", "/metrics", "/metrics", nil).MustStatus(t, 200)
	s.Drain()
	call(anon, "GET", "/readyz", "/readyz", nil).MustStatus(t, 503)
}

// spec is a parsed OpenAPI document with a tiny JSON Schema checker: $ref,
// allOf, type, const, enum, pattern, length, range, required, properties,
// additionalProperties, propertyNames, items. An object schema that lists
// properties and does not set additionalProperties is treated as closed, so
// a response field the document does not describe is an error.
type openAPISpec struct{ root map[string]any }

func loadOpenAPI(tb testing.TB) *openAPISpec {
	tb.Helper()
	var root map[string]any
	if err := json.Unmarshal(holdfasthttp.OpenAPI(), &root); err != nil {
		tb.Fatalf("openapi.json: %v", err)
	}
	return &openAPISpec{root}
}

func (s *openAPISpec) obj(tb testing.TB, m map[string]any, key string) map[string]any {
	tb.Helper()
	v, ok := m[key].(map[string]any)
	if !ok {
		tb.Fatalf("openapi.json: no object %q", key)
	}
	return v
}

func (s *openAPISpec) list(v any) []any { l, _ := v.([]any); return l }

// ref returns the object a local $ref points to.
func (s *openAPISpec) ref(tb testing.TB, ref string) map[string]any {
	tb.Helper()
	if !strings.HasPrefix(ref, "#/") {
		tb.Fatalf("openapi.json: non-local $ref %q", ref)
	}
	var cur any = s.root
	for _, part := range strings.Split(ref[2:], "/") {
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			tb.Fatalf("openapi.json: $ref %q does not resolve", ref)
		}
		if cur, ok = m[part]; !ok {
			tb.Fatalf("openapi.json: $ref %q does not resolve", ref)
		}
	}
	m, ok := cur.(map[string]any)
	if !ok {
		tb.Fatalf("openapi.json: $ref %q is not an object", ref)
	}
	return m
}

// deref follows the $ref of a parameter, response, header or schema object.
func (s *openAPISpec) deref(tb testing.TB, m map[string]any) map[string]any {
	tb.Helper()
	for i := 0; i < 10; i++ {
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		m = s.ref(tb, ref)
	}
	tb.Fatal("openapi.json: $ref loop")
	return nil
}

func (s *openAPISpec) operation(tb testing.TB, method, pattern string) map[string]any {
	tb.Helper()
	item, ok := s.obj(tb, s.root, "paths")[pattern].(map[string]any)
	if !ok {
		tb.Fatalf("openapi.json has no path %s", pattern)
	}
	op, ok := item[strings.ToLower(method)].(map[string]any)
	if !ok {
		tb.Fatalf("openapi.json has no operation %s %s", method, pattern)
	}
	return op
}

// checkResponse checks a real response against the documented one for its
// status: documented at all, required headers present, present headers
// documented, media type, and body against the schema.
// caller returns a function that sends a request to path (of the route
// pattern), checks the response (and a successful request's body) against
// the document, and returns the response.
func (s *openAPISpec) caller(t *testing.T) func(c *Client, method, pattern, path string, body any, headers ...string) *Response {
	return func(c *Client, method, pattern, path string, body any, headers ...string) *Response {
		t.Helper()
		r := c.Do(t, method, path, body, headers...)
		s.checkResponse(t, method, pattern, r)
		if r.Status < 300 && body != nil {
			if _, binary := body.([]byte); !binary {
				s.checkRequest(t, method, pattern, body)
			}
		}
		return r
	}
}

func (s *openAPISpec) checkResponse(tb testing.TB, method, pattern string, r *Response) {
	tb.Helper()
	name := fmt.Sprintf("%s %s → %d", method, pattern, r.Status)
	op := s.operation(tb, method, pattern)
	doc, ok := s.obj(tb, op, "responses")[strconv.Itoa(r.Status)].(map[string]any)
	if !ok {
		tb.Errorf("%s: status not documented: %s", name, r.Body)
		return
	}
	doc = s.deref(tb, doc)
	headers, _ := doc["headers"].(map[string]any)
	for h, hd := range headers {
		if s.deref(tb, hd.(map[string]any))["required"] == true && r.Header.Get(h) == "" {
			tb.Errorf("%s: required header %s missing", name, h)
		}
	}
	for _, h := range []string{"X-Request-Id", "Idempotent-Replayed", "Retry-After", "WWW-Authenticate"} {
		if _, documented := headers[h]; r.Header.Get(h) != "" && !documented {
			tb.Errorf("%s: header %s: %s is sent but not documented", name, h, r.Header.Get(h))
		}
	}
	content, _ := doc["content"].(map[string]any)
	if content == nil {
		if len(r.Body) != 0 {
			tb.Errorf("%s: documented without content, got %q", name, r.Body)
		}
		return
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		tb.Errorf("%s: Content-Type %q: %v", name, r.Header.Get("Content-Type"), err)
		return
	}
	media, ok := content[mt].(map[string]any)
	if !ok {
		tb.Errorf("%s: Content-Type %s not documented (have %v)", name, mt, openAPISortedKeys(content))
		return
	}
	if mt != "application/json" && !strings.HasSuffix(mt, "+json") {
		return
	}
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.UseNumber()
	var body any
	if err := dec.Decode(&body); err != nil {
		tb.Errorf("%s: body is not JSON: %v", name, err)
		return
	}
	for _, e := range s.check("", media["schema"].(map[string]any), body) {
		tb.Errorf("%s: %s\n%s", name, e, r.Body)
	}
}

// checkRequest checks a request body the server accepted against the
// documented request body schema.
func (s *openAPISpec) checkRequest(tb testing.TB, method, pattern string, body any) {
	tb.Helper()
	rb, ok := s.operation(tb, method, pattern)["requestBody"].(map[string]any)
	if !ok {
		return
	}
	var b []byte
	switch v := body.(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		b, _ = json.Marshal(v)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		tb.Fatalf("%s %s: accepted request body is not JSON: %v", method, pattern, err)
	}
	schema := rb["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)
	for _, e := range s.check("", schema, v) {
		tb.Errorf("%s %s: the server accepted a body the document rejects: %s\n%s", method, pattern, e, b)
	}
}

// check returns the ways v fails schema, each prefixed by its JSON path.
func (s *openAPISpec) check(path string, schema map[string]any, v any) []string {
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, "$"+path+": "+fmt.Sprintf(format, args...)) }
	if ref, ok := schema["$ref"].(string); ok {
		errs = append(errs, s.check(path, s.mustRef(ref), v)...)
	}
	for _, sub := range s.list(schema["allOf"]) {
		errs = append(errs, s.check(path, sub.(map[string]any), v)...)
	}
	if typ, ok := schema["type"]; ok {
		types := []any{typ}
		if l, ok := typ.([]any); ok {
			types = l
		}
		if !slices.ContainsFunc(types, func(t any) bool { return openAPIJSONType(v) == t || t == "number" && openAPIJSONType(v) == "integer" }) {
			fail("%s, want type %v", openAPIJSONType(v), typ)
			return errs
		}
	}
	if c, ok := schema["const"]; ok && !openAPIJSONEqual(c, v) {
		fail("%v, want %v", v, c)
	}
	if enum, ok := schema["enum"].([]any); ok && !slices.ContainsFunc(enum, func(e any) bool { return openAPIJSONEqual(e, v) }) {
		fail("%v not in %v", v, enum)
	}
	switch v := v.(type) {
	case string:
		n := float64(utf8.RuneCountInString(v))
		if min, ok := schema["minLength"].(float64); ok && n < min {
			fail("%q shorter than %v", v, min)
		}
		if max, ok := schema["maxLength"].(float64); ok && n > max {
			fail("%q longer than %v", v, max)
		}
		if p, ok := schema["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(v) {
			fail("%q does not match %s", v, p)
		}
	case json.Number:
		f, _ := v.Float64()
		if min, ok := schema["minimum"].(float64); ok && f < min {
			fail("%v below %v", v, min)
		}
		if max, ok := schema["maximum"].(float64); ok && f > max {
			fail("%v above %v", v, max)
		}
	case []any:
		if min, ok := schema["minItems"].(float64); ok && float64(len(v)) < min {
			fail("%d items, want at least %v", len(v), min)
		}
		if max, ok := schema["maxItems"].(float64); ok && float64(len(v)) > max {
			fail("%d items, want at most %v", len(v), max)
		}
		if items, ok := schema["items"].(map[string]any); ok {
			for i, x := range v {
				errs = append(errs, s.check(fmt.Sprintf("%s[%d]", path, i), items, x)...)
			}
		}
	case map[string]any:
		for _, r := range s.list(schema["required"]) {
			if _, ok := v[r.(string)]; !ok {
				fail("required property %q missing", r)
			}
		}
		if max, ok := schema["maxProperties"].(float64); ok && float64(len(v)) > max {
			fail("%d properties, want at most %v", len(v), max)
		}
		props, hasProps := schema["properties"].(map[string]any)
		for _, k := range openAPISortedKeys(v) {
			if names, ok := schema["propertyNames"].(map[string]any); ok {
				errs = append(errs, s.check(path+".<name>", names, k)...)
			}
			if p, ok := props[k].(map[string]any); ok {
				errs = append(errs, s.check(path+"."+k, p, v[k])...)
				continue
			}
			switch ap := schema["additionalProperties"].(type) {
			case map[string]any:
				errs = append(errs, s.check(path+"."+k, ap, v[k])...)
			case bool:
				if !ap {
					fail("property %q not allowed", k)
				}
			case nil:
				if hasProps {
					fail("property %q not documented", k)
				}
			}
		}
	}
	return errs
}

func (s *openAPISpec) mustRef(ref string) map[string]any {
	var cur any = s.root
	for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		cur = cur.(map[string]any)[part]
	}
	return cur.(map[string]any)
}

// openAPIJSONType names the JSON Schema type of a value decoded with UseNumber.
func openAPIJSONType(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		if _, err := v.Int64(); err == nil {
			return "integer"
		}
		return "number"
	case float64:
		if v == float64(int64(v)) {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// openAPIJSONEqual compares a schema value (numbers as float64) with an instance
// value (numbers as json.Number).
func openAPIJSONEqual(a, b any) bool {
	norm := func(v any) any {
		if n, ok := v.(json.Number); ok {
			f, _ := n.Float64()
			return f
		}
		return v
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func openAPISortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
