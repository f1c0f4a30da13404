package http_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// openAPIOperations returns every operation of the document as "METHOD
// /path/template".
func openAPIOperations(t *testing.T, spec *openAPISpec) []string {
	t.Helper()
	var ops []string
	for path, item := range spec.obj(t, spec.root, "paths") {
		for method := range item.(map[string]any) {
			ops = append(ops, strings.ToUpper(method)+" "+path)
		}
	}
	slices.Sort(ops)
	return ops
}

// samplePath fills a path template's parameters with a well-formed id.
func samplePath(pattern string) string {
	return regexp.MustCompile(`\{[^}]+\}`).ReplaceAllString(pattern, "0190a8a0-0000-7000-8000-000000000000")
}

// TestQuery_UnknownParameterRefusedOnEveryRoute: a query parameter a route
// does not take is a 400 invalid-request problem, on every route, as an
// unknown JSON member is: ?foo=1 is never ignored silently. The 400 is
// documented on every operation.
func TestQuery_UnknownParameterRefusedOnEveryRoute(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	spec := loadOpenAPI(t)
	tenant, admin, anon := s.MustTenant(t), s.Admin(), &Client{URL: s.URL()}
	for _, op := range openAPIOperations(t, spec) {
		method, pattern, _ := strings.Cut(op, " ")
		c := anon
		switch {
		case strings.HasPrefix(pattern, "/v1/admin/"):
			c = admin
		case strings.HasPrefix(pattern, "/v1/"):
			c = tenant
		}
		r := c.Do(t, method, samplePath(pattern)+"?foo=1", nil)
		if r.Status != http.StatusBadRequest || r.ProblemType(t) != "invalid-request" || !strings.Contains(string(r.Body), "foo") {
			t.Errorf("%s?foo=1: %d %s; want 400 invalid-request naming foo", op, r.Status, r.Body)
			continue
		}
		spec.checkResponse(t, method, pattern, r)
	}
}

// TestQuery_MalformedValuesRefused: a known parameter given twice, or
// with a value it cannot take, is a 400 too.
func TestQuery_MalformedValuesRefused(t *testing.T) {
	t.Parallel()
	s := mustEventServer(t)
	c := s.MustTenant(t)
	a := c.MustAccount(t, "USD", false)
	for _, path := range []string{
		"/v1/accounts?limit=1&limit=2",
		"/v1/accounts?limit=abc",
		"/v1/accounts/" + a + "/transactions.csv?limit=abc", // no such parameter on an export
		"/v1/accounts/" + a + "/transactions.csv?after=-1",
		"/v1/accounts/" + a + "/transactions.ndjson?from=yesterday",
		"/v1/analytics/rollups?type=Not%20A%20Type",
		"/v1/accounts?%zz=1",
	} {
		if r := c.Do(t, "GET", path, nil); r.Status != http.StatusBadRequest || r.ProblemType(t) != "invalid-request" {
			t.Errorf("GET %s: %d %s; want 400 invalid-request", path, r.Status, r.Body)
		}
	}
	c.Do(t, "GET", "/v1/accounts?limit=1", nil).MustStatus(t, 200)
	c.Do(t, "GET", "/v1/analytics/rollups?type=page.view&limit=5", nil).MustStatus(t, 200)
}

// routeQueryPattern matches a route registration and the query parameters
// its chain is given: mux.Handle("GET /path", tenant(s.handleX, "limit", "cursor")).
var routeQueryPattern = regexp.MustCompile(`mux\.Handle\("([A-Z]+) (/[^"]*)", \w+\([^,)]+((?:, "[a-z_]+")*)\)\)`)

// TestOpenAPI_QueryParametersMatchTheRoutes: the query parameters each
// route accepts in server.go are exactly those the document lists.
func TestOpenAPI_QueryParametersMatchTheRoutes(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("server.go")
	if err != nil {
		t.Fatal(err)
	}
	accepted := map[string][]string{}
	for _, m := range routeQueryPattern.FindAllStringSubmatch(string(src), -1) {
		params := regexp.MustCompile(`"([a-z_]+)"`).FindAllStringSubmatch(m[3], -1)
		names := []string{}
		for _, p := range params {
			names = append(names, p[1])
		}
		slices.Sort(names)
		accepted[m[1]+" "+openAPIPath(m[2])] = names
	}
	spec := loadOpenAPI(t)
	ops := openAPIOperations(t, spec)
	if len(accepted) != len(ops) {
		t.Fatalf("%d routes of server.go list their query parameters, the document has %d operations", len(accepted), len(ops))
	}
	for _, op := range ops {
		method, pattern, _ := strings.Cut(op, " ")
		documented := []string{}
		for _, p := range spec.list(spec.operation(t, method, pattern)["parameters"]) {
			if p := spec.deref(t, p.(map[string]any)); p["in"] == "query" {
				documented = append(documented, p["name"].(string))
			}
		}
		slices.Sort(documented)
		if !slices.Equal(accepted[op], documented) {
			t.Errorf("%s accepts query parameters %v, the document lists %v", op, accepted[op], documented)
		}
	}
}

// TestOpenAPI_MethodNotAllowedDocumented: another method on a known path
// is a 405 with Allow, as the description promises, and every operation
// documents that response.
func TestOpenAPI_MethodNotAllowedDocumented(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	spec := loadOpenAPI(t)
	c := s.MustTenant(t)
	for path, item := range spec.obj(t, spec.root, "paths") {
		method := "PATCH"
		if _, ok := item.(map[string]any)["patch"]; ok {
			method = "PUT"
		}
		r := c.Do(t, method, samplePath(path), nil)
		if r.Status != http.StatusMethodNotAllowed || r.Header.Get("Allow") == "" || r.ProblemType(t) != "method-not-allowed" {
			t.Errorf("%s %s: %d, Allow %q: %s; want 405 method-not-allowed with Allow", method, path, r.Status, r.Header.Get("Allow"), r.Body)
			continue
		}
		for method := range item.(map[string]any) {
			spec.checkResponse(t, method, path, r)
		}
	}
}

// TestOpenAPI_Examples: every JSON request body has an example, and every
// example in the document is valid against its schema.
func TestOpenAPI_Examples(t *testing.T) {
	t.Parallel()
	spec := loadOpenAPI(t)
	n := 0
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if schema, ok := v["schema"].(map[string]any); ok {
				if examples, ok := v["examples"].(map[string]any); ok {
					for name, ex := range examples {
						n++
						for _, e := range spec.check("", schema, openAPIJSONNumbers(t, ex.(map[string]any)["value"])) {
							t.Errorf("%s: example %s: %s", where, name, e)
						}
					}
				}
			}
			for k, x := range v {
				walk(where+"/"+k, x)
			}
		case []any:
			for _, x := range v {
				walk(where, x)
			}
		}
	}
	walk("", spec.root)
	for _, op := range openAPIOperations(t, spec) {
		method, pattern, _ := strings.Cut(op, " ")
		rb, ok := spec.operation(t, method, pattern)["requestBody"].(map[string]any)
		if !ok {
			continue
		}
		if media, ok := rb["content"].(map[string]any)["application/json"].(map[string]any); ok && media["examples"] == nil {
			t.Errorf("%s: the JSON request body has no example", op)
		}
	}
	if n < 10 {
		t.Errorf("%d examples in the document, want at least one per JSON request body and per problem", n)
	}
}

// openAPIJSONNumbers returns v with its numbers as json.Number, as check
// expects of an instance.
func openAPIJSONNumbers(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}
