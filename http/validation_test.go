package http_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/holdfast/holdfast"
	holdfasthttp "github.com/holdfast/holdfast/http"
)

// Problem types, as Response.ProblemType returns them.
const (
	invalid      = holdfast.EINVALID
	notFound     = holdfast.ENOTFOUND
	unauthorized = holdfast.EUNAUTHORIZED
)

// unknownID is a well-formed UUID that names nothing.
const unknownID = "0190a0b0-c0d0-7e0f-8a0b-0c0d0e0f1a2b"

// mustProblem fails tb unless r is an application/problem+json document with
// the status and problem type.
func mustProblem(tb testing.TB, r *Response, status int, typ string) {
	tb.Helper()
	if got := r.MustStatus(tb, status).ProblemType(tb); got != typ {
		tb.Fatalf("problem type %q, want %q: %s", got, typ, r.Body)
	}
}

// sendRaw writes a request on a connection of its own with exactly the
// headers given (plus the client's key), for what Client.Do cannot express:
// no Content-Type, a repeated header.
func sendRaw(tb testing.TB, c *Client, method, path, body string, header http.Header) *Response {
	tb.Helper()
	req, err := http.NewRequest(method, c.URL+path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header = header
	req.Header.Set("Authorization", "Bearer "+c.Key)
	conn, err := net.Dial("tcp", req.URL.Host)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	if err := req.Write(conn); err != nil {
		tb.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// with returns a copy of body with field set to value (a json.RawMessage is
// sent as is, for numbers Go would not marshal).
func with(body map[string]any, field string, value any) map[string]any {
	out := make(map[string]any, len(body)+1)
	for k, v := range body {
		out[k] = v
	}
	out[field] = value
	return out
}

// notUTF8 stands, in a value given to invalidUTF8, for a byte that is not UTF-8.
const notUTF8 = "@not-utf8@"

// invalidUTF8 returns v as JSON in which every notUTF8 string is the byte 0xff.
func invalidUTF8(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return bytes.ReplaceAll(b, []byte(notUTF8), []byte{0xff})
}

// ledgerFixture is a tenant with accounts a valid transfer can use, so that
// a bad request differs from a good one by its fault alone.
type ledgerFixture struct {
	*TestServer
	c *Client
	// house is USD with overdraft, the debit of a valid transfer; usd is USD
	// without overdraft and empty; eur is EUR with overdraft.
	house, usd, eur string
}

func setupLedger(t *testing.T, cfg ...func(*holdfasthttp.Config)) *ledgerFixture {
	t.Helper()
	s := MustOpenServer(t, cfg...)
	c := s.MustTenant(t)
	return &ledgerFixture{TestServer: s, c: c,
		house: c.MustAccount(t, "USD", true), usd: c.MustAccount(t, "USD", false), eur: c.MustAccount(t, "EUR", true)}
}

// valid is a transfer the fixture would accept.
func (f *ledgerFixture) valid() map[string]any { return Transfer(f.house, f.usd, 100, "USD") }

// accountState is what a write could change on an account.
type accountState struct {
	Balance   int64
	Transfers int
}

// mustState returns the balance and the number of transfers of each account.
func mustState(tb testing.TB, c *Client, accounts ...string) map[string]accountState {
	tb.Helper()
	state := make(map[string]accountState, len(accounts))
	for _, a := range accounts {
		list := c.Do(tb, "GET", "/v1/accounts/"+a+"/transfers?limit=500", nil).MustStatus(tb, 200).JSON(tb)
		state[a] = accountState{Balance: c.Balance(tb, a), Transfers: len(list["data"].([]any))}
	}
	return state
}

// mustStateUnchanged fails tb unless the accounts are as before.
func mustStateUnchanged(tb testing.TB, c *Client, before map[string]accountState) {
	tb.Helper()
	for a, want := range before {
		if got := mustState(tb, c, a)[a]; got != want {
			tb.Errorf("account %s is %+v, want %+v: a rejected request wrote", a, got, want)
		}
	}
}

// mustUntouched fails tb unless the tenant has only the fixture's accounts,
// each with a zero balance and no transfers.
func (f *ledgerFixture) mustUntouched(tb testing.TB) {
	tb.Helper()
	zero := map[string]accountState{f.house: {}, f.usd: {}, f.eur: {}}
	mustStateUnchanged(tb, f.c, zero)
	if n := accountCount(tb, f.c); n != len(zero) {
		tb.Errorf("%d accounts, want the fixture's %d: a rejected request created one", n, len(zero))
	}
}

// accountCount returns how many accounts the client's tenant has.
func accountCount(tb testing.TB, c *Client) int {
	tb.Helper()
	return len(mustListAccounts(tb, c, 500))
}

// jsonRoute is a route that takes a JSON body.
type jsonRoute struct {
	path string
	c    *Client
	// body returns a valid body with text in one of its string fields.
	body func(text string) map[string]any
}

// jsonRoutes returns every route that takes a JSON body, as the fixture's
// tenant (or the admin) would call it.
func (f *ledgerFixture) jsonRoutes() []jsonRoute {
	return []jsonRoute{
		{"/v1/accounts", f.c, func(text string) map[string]any {
			return map[string]any{"currency": "USD", "metadata": map[string]string{"note": text}}
		}},
		{"/v1/transfers", f.c, func(text string) map[string]any { return with(f.valid(), "description", text) }},
		{"/v1/linked-transfers", f.c, func(text string) map[string]any {
			return linked(with(f.valid(), "description", text))
		}},
		{"/v1/admin/tenants", f.Admin(), func(text string) map[string]any { return map[string]any{"name": "tenant " + text} }},
	}
}

// TestValidation_BodyShapes sends every JSON route bodies that are not one
// JSON object of the route's fields: each is a 400 and writes nothing.
func TestValidation_BodyShapes(t *testing.T) {
	t.Parallel()
	f := setupLedger(t)
	// A shape turns a route's valid body into a bad one; valid(text) is the
	// valid body, encoded, with text in one of its string fields.
	type encoded func(text string) []byte
	shapes := []struct {
		name string
		body func(valid encoded) []byte
	}{
		{"cut short", func(valid encoded) []byte { v := valid("ok"); return v[:len(v)-1] }},
		{"syntax error", func(encoded) []byte { return []byte(`{"currency" "USD"}`) }},
		{"empty body", func(encoded) []byte { return nil }},
		{"only whitespace", func(encoded) []byte { return []byte(" \n") }},
		{"JSON array", func(valid encoded) []byte { return append(append([]byte("["), valid("ok")...), ']') }},
		{"JSON null", func(encoded) []byte { return []byte("null") }},
		{"JSON string", func(encoded) []byte { return []byte(`"{}"`) }},
		{"JSON number", func(encoded) []byte { return []byte("1") }},
		{"trailing garbage", func(valid encoded) []byte { return append(valid("ok"), "garbage"...) }},
		{"two objects", func(valid encoded) []byte { return append(valid("ok"), valid("ok")...) }},
		{"unknown field", func(valid encoded) []byte { return append([]byte(`{"unknown":1,`), valid("ok")[1:]...) }},
		{"invalid UTF-8", func(valid encoded) []byte { return valid(notUTF8) }},
		{"NUL in a string", func(valid encoded) []byte { return valid("a\x00b") }},
		{"escape character in a string", func(valid encoded) []byte { return valid("\x1b[2J") }},
		{"DEL in a string", func(valid encoded) []byte { return valid("a\x7fb") }},
	}
	for _, route := range f.jsonRoutes() {
		valid := func(text string) []byte { return invalidUTF8(t, route.body(text)) }
		for _, shape := range shapes {
			t.Run(route.path+"/"+shape.name, func(t *testing.T) {
				mustProblem(t, route.c.Do(t, "POST", route.path, shape.body(valid)), 400, invalid)
			})
		}
	}
	f.mustUntouched(t)
	for _, route := range f.jsonRoutes() {
		route.c.Do(t, "POST", route.path, route.body("ok")).MustStatus(t, 201) // the bodies above were one fault from valid
	}
}

// TestValidation_Transfer: each field fault of POST /v1/transfers is a 4xx
// problem and moves no money.
func TestValidation_Transfer(t *testing.T) {
	t.Parallel()
	f := setupLedger(t)
	valid := f.valid()
	tests := []struct {
		name   string
		body   any
		status int
		typ    string
	}{
		{"amount as a string", with(valid, "amount", "100"), 400, invalid},
		{"amount as a float", with(valid, "amount", 1.5), 400, invalid},
		{"amount in exponent form", with(valid, "amount", json.RawMessage("1e3")), 400, invalid},
		{"amount as a boolean", with(valid, "amount", true), 400, invalid},
		{"amount null", with(valid, "amount", nil), 400, invalid},
		{"amount missing", map[string]any{"debit_account_id": f.house, "credit_account_id": f.usd, "currency": "USD"}, 400, invalid},
		{"amount zero", Transfer(f.house, f.usd, 0, "USD"), 400, invalid},
		{"amount negative", Transfer(f.house, f.usd, -100, "USD"), 400, invalid},
		{"amount above MaxAmount", Transfer(f.house, f.usd, holdfast.MaxAmount+1, "USD"), 400, invalid},
		{"amount overflows int64", with(valid, "amount", json.RawMessage("99999999999999999999")), 400, invalid},
		{"amount underflows int64", with(valid, "amount", json.RawMessage("-99999999999999999999")), 400, invalid},
		{"currency lower case", Transfer(f.house, f.usd, 100, "usd"), 400, invalid},
		{"currency of 4 letters", Transfer(f.house, f.usd, 100, "USDX"), 400, invalid},
		{"currency empty", Transfer(f.house, f.usd, 100, ""), 400, invalid},
		{"currency as a number", with(valid, "currency", 840), 400, invalid},
		{"currency other than the accounts'", Transfer(f.house, f.usd, 100, "EUR"), 422, holdfast.ECURRENCY},
		{"accounts of two currencies", Transfer(f.house, f.eur, 100, "USD"), 422, holdfast.ECURRENCY},
		{"debit is credit", Transfer(f.house, f.house, 100, "USD"), 400, invalid},
		{"debit is credit in another case", Transfer(f.house, strings.ToUpper(f.house), 100, "USD"), 400, invalid},
		{"debit not a UUID", Transfer("not-a-uuid", f.usd, 100, "USD"), 400, invalid},
		{"credit not a UUID", Transfer(f.house, "{"+f.usd+"}", 100, "USD"), 400, invalid},
		{"debit missing", Transfer("", f.usd, 100, "USD"), 400, invalid},
		{"id not a UUID", with(valid, "id", "transfer-1"), 400, invalid},
		{"id as a number", with(valid, "id", 1), 400, invalid},
		{"unknown account", Transfer(unknownID, f.usd, 100, "USD"), 404, notFound},
		{"description of 501 bytes", with(valid, "description", strings.Repeat("a", 501)), 400, invalid},
		{"description of 167 three-byte runes", with(valid, "description", strings.Repeat("€", 167)), 400, invalid},
		{"description with NUL", with(valid, "description", "a\u0000b"), 400, invalid},
		{"description as an object", with(valid, "description", map[string]any{}), 400, invalid},
		{"insufficient funds", Transfer(f.usd, f.house, 100, "USD"), 422, holdfast.EINSUFFICIENT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustProblem(t, f.c.Do(t, "POST", "/v1/transfers", tt.body), tt.status, tt.typ)
		})
	}
	f.mustUntouched(t)
}

// TestValidation_LinkedTransfers: a bad set, or one bad member, is a 4xx
// problem naming the member, and none of the set is applied.
func TestValidation_LinkedTransfers(t *testing.T) {
	t.Parallel()
	f := setupLedger(t)
	valid := f.valid()
	many := make([]any, holdfast.MaxLinked+1)
	for i := range many {
		many[i] = valid
	}
	sets := []struct {
		name string
		body any
	}{
		{"no transfers", map[string]any{"transfers": []any{}}},
		{"101 transfers", map[string]any{"transfers": many}},
		{"transfers null", map[string]any{"transfers": nil}},
		{"transfers missing", map[string]any{}},
		{"transfers an object", map[string]any{"transfers": valid}},
	}
	for _, tt := range sets {
		t.Run(tt.name, func(t *testing.T) {
			mustProblem(t, f.c.Do(t, "POST", "/v1/linked-transfers", tt.body), 400, invalid)
		})
	}

	// The first member is valid; the second carries the fault.
	members := []struct {
		name    string
		second  any
		status  int
		typ     string
		indexed bool // the problem names the member (not so for a JSON error)
	}{
		{"amount as a string", with(valid, "amount", "1"), 400, invalid, false},
		{"unknown field", with(valid, "memo", "x"), 400, invalid, false},
		{"amount zero", Transfer(f.house, f.usd, 0, "USD"), 400, invalid, true},
		{"amount above MaxAmount", Transfer(f.house, f.usd, holdfast.MaxAmount+1, "USD"), 400, invalid, true},
		{"debit is credit", Transfer(f.usd, f.usd, 1, "USD"), 400, invalid, true},
		{"account not a UUID", Transfer(f.house, "usd", 1, "USD"), 400, invalid, true},
		{"description with NUL", with(valid, "description", "\x00"), 400, invalid, true},
		{"unknown account", Transfer(f.house, unknownID, 1, "USD"), 404, notFound, true},
		{"currency mismatch", Transfer(f.house, f.eur, 1, "USD"), 422, holdfast.ECURRENCY, true},
		// The first member credits usd with 100; the second takes 101 of it.
		{"insufficient funds after the first", Transfer(f.usd, f.house, 101, "USD"), 422, holdfast.EINSUFFICIENT, true},
	}
	for _, tt := range members {
		t.Run(tt.name, func(t *testing.T) {
			r := f.c.Do(t, "POST", "/v1/linked-transfers", linked(valid, tt.second))
			mustProblem(t, r, tt.status, tt.typ)
			if index := r.JSON(t)["index"]; tt.indexed && index != float64(1) {
				t.Errorf("index = %v, want 1: %s", index, r.Body)
			}
		})
	}
	f.mustUntouched(t)
}

// TestValidation_Account: each field fault of POST /v1/accounts is a 400
// and creates no account.
func TestValidation_Account(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	c := s.MustTenant(t)
	tooMany := make(map[string]string, holdfast.MaxMetadataKeys+1)
	for i := range holdfast.MaxMetadataKeys + 1 {
		tooMany[fmt.Sprint("k", i)] = "v"
	}
	account := func(field string, value any) map[string]any {
		return with(map[string]any{"currency": "USD"}, field, value)
	}
	tests := []struct {
		name string
		body any
	}{
		{"currency lower case", account("currency", "usd")},
		{"currency of 4 letters", account("currency", "USDX")},
		{"currency of 2 letters", account("currency", "US")},
		{"currency with a digit", account("currency", "US1")},
		{"currency missing", map[string]any{}},
		{"currency as a number", account("currency", 840)},
		{"allow_overdraft as a string", account("allow_overdraft", "true")},
		{"metadata with too many keys", account("metadata", tooMany)},
		{"metadata key of 41 bytes", account("metadata", map[string]string{strings.Repeat("k", 41): "v"})},
		{"metadata key empty", account("metadata", map[string]string{"": "v"})},
		{"metadata key with NUL", account("metadata", map[string]string{"a\x00": "v"})},
		{"metadata value of 501 bytes", account("metadata", map[string]string{"k": strings.Repeat("v", 501)})},
		{"metadata value with a control character", account("metadata", map[string]string{"k": "a\rb"})},
		{"metadata value a number", account("metadata", map[string]any{"k": 1})},
		{"metadata value nested", account("metadata", map[string]any{"k": map[string]any{}})},
		{"metadata an array", account("metadata", []string{"k"})},
		{"metadata key not UTF-8", invalidUTF8(t, account("metadata", map[string]string{notUTF8: "v"}))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustProblem(t, c.Do(t, "POST", "/v1/accounts", tt.body), 400, invalid)
		})
	}
	if n := accountCount(t, c); n != 0 {
		t.Errorf("%d accounts after only bad requests", n)
	}
}

// TestValidation_Tenant: POST /v1/admin/tenants refuses a bad name.
func TestValidation_Tenant(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	tests := []struct {
		name string
		body any
	}{
		{"name empty", map[string]any{"name": ""}},
		{"name missing", map[string]any{}},
		{"name of 201 bytes", map[string]any{"name": strings.Repeat("n", 201)}},
		{"name with NUL", map[string]any{"name": "a\x00b"}},
		{"name as a number", map[string]any{"name": 1}},
		{"name as an array", map[string]any{"name": []string{"a"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustProblem(t, s.Admin().Do(t, "POST", "/v1/admin/tenants", tt.body), 400, invalid)
		})
	}
}

// TestValidation_Page: a bad limit or cursor on either list is a 400.
func TestValidation_Page(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	c := s.MustTenant(t)
	account := c.MustAccount(t, "USD", false)
	bad := []string{"limit=0", "limit=-1", "limit=501", "limit=abc", "limit=1.5", "limit=99999999999999999999",
		"cursor=" + strings.Repeat("c", 201), "cursor=garbage", "cursor=" + url.QueryEscape("'; DROP TABLE accounts; --")}
	lists := []struct {
		path string
		bad  []string // besides the common ones
	}{
		{"/v1/accounts", []string{"cursor=" + account + "x"}},
		{"/v1/accounts/" + account + "/transfers", []string{"cursor=-1", "cursor=0", "cursor=1e3", "cursor=%2B5", "cursor=" + account}},
		{"/v1/api-keys", []string{"cursor=" + account, "cursor=1.", "cursor=x." + account, "cursor=1.5." + account,
			"cursor=-1." + account, "cursor=99999999999999999999." + account, "cursor=-9223372036854775808." + account,
			"cursor=9223372036854775807." + account}},
	}
	for _, list := range lists {
		for _, query := range slices.Concat(bad, list.bad) {
			t.Run(list.path+"?"+query, func(t *testing.T) {
				mustProblem(t, c.Do(t, "GET", list.path+"?"+query, nil), 400, invalid)
			})
		}
	}
}

// TestValidation_PathID: an id in the path that is not a UUID is a 404, like
// an unknown one, on every route that takes one.
func TestValidation_PathID(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	c := s.MustTenant(t)
	ids := []string{"not-a-uuid", "1", unknownID, unknownID + "b", strings.ReplaceAll(unknownID, "-", ""),
		url.PathEscape("' OR 1=1 --"), "%00"}
	routes := []struct{ method, path string }{
		{"GET", "/v1/accounts/%s"},
		{"GET", "/v1/accounts/%s/transfers"},
		{"GET", "/v1/transfers/%s"},
		{"DELETE", "/v1/api-keys/%s"},
	}
	for _, route := range routes {
		for _, id := range ids {
			path := fmt.Sprintf(route.path, id)
			t.Run(route.method+" "+path, func(t *testing.T) {
				mustProblem(t, c.Do(t, route.method, path, nil), 404, notFound)
			})
		}
	}
}

// TestValidation_MediaType: a body that is not declared JSON is a 415 on
// every JSON route.
func TestValidation_MediaType(t *testing.T) {
	t.Parallel()
	f := setupLedger(t)
	types := []string{"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
		"application/jsonx", "json", "application/json; charset"}
	for _, route := range f.jsonRoutes() {
		body, err := json.Marshal(route.body("ok"))
		if err != nil {
			t.Fatal(err)
		}
		for _, typ := range types {
			t.Run(route.path+"/"+typ, func(t *testing.T) {
				header := http.Header{}
				if typ != "" {
					header.Set("Content-Type", typ)
				}
				mustProblem(t, sendRaw(t, route.c, "POST", route.path, string(body), header), 415, "unsupported-media-type")
			})
		}
	}
	f.mustUntouched(t)
}

// TestValidation_BodyTooLarge: a body over the 1 MiB limit is a 413, with or
// without an Idempotency-Key.
func TestValidation_BodyTooLarge(t *testing.T) {
	t.Parallel()
	f := setupLedger(t)
	large := with(f.valid(), "description", strings.Repeat("a", 1<<20))
	mustProblem(t, f.c.Do(t, "POST", "/v1/transfers", large), 413, "payload-too-large")
	mustProblem(t, f.c.Do(t, "POST", "/v1/transfers", large, "Idempotency-Key", "large"), 413, "payload-too-large")
	f.mustUntouched(t)
}

// TestValidation_RefusalKeepsIdempotencyKey: a request refused before it ran
// does not spend its Idempotency-Key; the corrected request runs under it.
func TestValidation_RefusalKeepsIdempotencyKey(t *testing.T) {
	t.Parallel()
	f := setupLedger(t)
	const key = "corrected-later"
	large := with(f.valid(), "description", strings.Repeat("a", 1<<20))
	mustProblem(t, f.c.Do(t, "POST", "/v1/transfers", large, "Idempotency-Key", key), 413, "payload-too-large")
	mustProblem(t, f.c.Do(t, "POST", "/v1/transfers", with(f.valid(), "amount", "100"), "Idempotency-Key", key), 400, invalid)
	r := f.c.Do(t, "POST", "/v1/transfers", f.valid(), "Idempotency-Key", key, "Content-Type", "text/plain")
	mustProblem(t, r, 415, "unsupported-media-type")
	f.mustUntouched(t)

	r = f.c.Do(t, "POST", "/v1/transfers", f.valid(), "Idempotency-Key", key).MustStatus(t, 201)
	if r.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("the key of a refused request replayed: %s", r.Body)
	}
}

// TestValidation_AmbiguousFieldNames: a field name is matched exactly and
// once, so a body cannot mean one amount to a proxy and another to Holdfast.
func TestValidation_AmbiguousFieldNames(t *testing.T) {
	t.Parallel()
	f := setupLedger(t)
	fields := fmt.Sprintf(`"debit_account_id":%q,"credit_account_id":%q,"currency":"USD"`, f.house, f.usd)
	for _, tt := range []struct{ name, amounts string }{
		{"name in another case", `"Amount":100`},
		{"name given twice", `"amount":1,"amount":100`},
		{"name given twice in two cases", `"amount":1,"AMOUNT":100`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mustProblem(t, f.c.Do(t, "POST", "/v1/transfers", "{"+fields+","+tt.amounts+"}"), 400, invalid)
		})
	}
	f.mustUntouched(t)
}

// TestValidation_IdempotencyKey: a malformed Idempotency-Key is a 400 and
// the request does not run.
func TestValidation_IdempotencyKey(t *testing.T) {
	t.Parallel()
	f := setupLedger(t)
	body, err := json.Marshal(f.valid())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		keys []string
	}{
		{"empty", []string{""}},
		{"only spaces", []string{"   "}},
		{"256 characters", []string{strings.Repeat("k", 256)}},
		{"a tab inside", []string{"key\twith-tab"}},
		{"a byte above ASCII", []string{"key\xff"}},
		{"UTF-8 outside ASCII", []string{"clé"}},
		{"two headers", []string{"key-1", "key-2"}},
		{"the same header twice", []string{"key-1", "key-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": tt.keys}
			mustProblem(t, sendRaw(t, f.c, "POST", "/v1/transfers", string(body), header), 400, invalid)
		})
	}
	f.mustUntouched(t)
}

// TestValidation_Unauthorized: a request without a live key of the right
// kind is a 401 before anything else is looked at.
func TestValidation_Unauthorized(t *testing.T) {
	t.Parallel()
	// Every case fails from one address: room for all of them before the
	// address is throttled (TestAuth_AFailingAddressIsThrottled).
	f := setupLedger(t, func(c *holdfasthttp.Config) { c.AuthFailureBurst = 1000 })
	key := f.c.Do(t, "POST", "/v1/api-keys", nil).MustStatus(t, 201).JSON(t)
	f.c.Do(t, "DELETE", "/v1/api-keys/"+key["id"].(string), nil).MustStatus(t, 204)
	revoked := key["secret"].(string)

	routes := []struct {
		method, path string
		body         any
	}{
		{"POST", "/v1/accounts", map[string]any{"currency": "USD"}},
		{"GET", "/v1/accounts", nil},
		{"GET", "/v1/accounts/" + f.house, nil},
		{"GET", "/v1/accounts/" + f.house + "/transfers", nil},
		{"POST", "/v1/transfers", f.valid()},
		{"GET", "/v1/transfers/" + unknownID, nil},
		{"POST", "/v1/linked-transfers", linked(f.valid())},
		{"POST", "/v1/api-keys", nil},
		{"GET", "/v1/api-keys", nil},
		{"DELETE", "/v1/api-keys/" + key["id"].(string), nil},
	}
	auths := []struct{ name, header string }{
		{"missing", ""},
		{"garbage", "Bearer garbage"},
		{"empty bearer", "Bearer "},
		{"not bearer", "Basic " + f.c.Key},
		{"key without scheme", f.c.Key},
		{"revoked", "Bearer " + revoked},
		{"admin token", "Bearer " + adminToken},
		{"too long", "Bearer " + strings.Repeat("k", 201)},
	}
	anonymous := &Client{URL: f.URL()}
	for _, route := range routes {
		for _, auth := range auths {
			t.Run(route.method+" "+route.path+"/"+auth.name, func(t *testing.T) {
				r := anonymous.Do(t, route.method, route.path, route.body, "Authorization", auth.header)
				mustProblem(t, r, 401, unauthorized)
				if r.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
			})
		}
	}
	for _, secret := range []string{f.c.Key, revoked, "garbage", ""} {
		r := (&Client{URL: f.URL(), Key: secret}).Do(t, "POST", "/v1/admin/tenants", map[string]any{"name": "intruder"})
		mustProblem(t, r, 401, unauthorized)
	}
	f.mustUntouched(t)
}

// TestValidation_Routing: an unknown route is a 404 and a known route with
// another method a 405 naming the allowed ones, both as problems.
func TestValidation_Routing(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	c := s.MustTenant(t)
	for _, path := range []string{"/", "/v1", "/v1/nope", "/v1/account", "/v1/accounts/x/y", "/v2/accounts"} {
		t.Run("GET "+path, func(t *testing.T) {
			mustProblem(t, c.Do(t, "GET", path, nil), 404, notFound)
		})
	}
	wrong := []struct{ method, path, allow string }{
		{"PUT", "/v1/accounts", "POST"},
		{"DELETE", "/v1/accounts/" + unknownID, "GET"},
		{"DELETE", "/v1/transfers", "POST"},
		{"PUT", "/v1/transfers/" + unknownID, "GET"},
		{"GET", "/v1/linked-transfers", "POST"},
		{"GET", "/v1/admin/tenants", "POST"},
		{"POST", "/v1/api-keys/" + unknownID, "DELETE"},
	}
	for _, tt := range wrong {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := c.Do(t, tt.method, tt.path, nil)
			mustProblem(t, r, 405, "method-not-allowed")
			if allow := r.Header.Get("Allow"); !strings.Contains(allow, tt.allow) {
				t.Errorf("Allow = %q, want it to name %s", allow, tt.allow)
			}
		})
	}
}

// TestValidation_SQLLookingText: text that looks like SQL is data, stored
// and returned byte for byte.
func TestValidation_SQLLookingText(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	c := s.MustTenant(t)
	texts := []string{`'; DROP TABLE accounts; --`, `" OR 1=1 --`, `\'; SELECT pg_sleep(10); --`, `$1 $$ E'\x00'`}
	metadata := map[string]string{}
	for i, text := range texts {
		metadata[text] = texts[len(texts)-1-i]
	}
	m := c.Do(t, "POST", "/v1/accounts", map[string]any{"currency": "USD", "metadata": metadata}).MustStatus(t, 201).JSON(t)
	account := m["id"].(string)
	got := c.Do(t, "GET", "/v1/accounts/"+account, nil).MustStatus(t, 200).JSON(t)["metadata"].(map[string]any)
	if len(got) != len(metadata) {
		t.Errorf("metadata = %q, want %q", got, metadata)
	}
	for k, v := range metadata {
		if got[k] != v {
			t.Errorf("metadata[%q] = %q, want %q", k, got[k], v)
		}
	}

	house := c.MustAccount(t, "USD", true)
	for _, text := range texts {
		id := c.Do(t, "POST", "/v1/transfers", with(Transfer(house, account, 1, "USD"), "description", text)).MustStatus(t, 201).JSON(t)["id"].(string)
		if got := c.Do(t, "GET", "/v1/transfers/"+id, nil).MustStatus(t, 200).JSON(t)["description"]; got != text {
			t.Errorf("description = %q, want %q", got, text)
		}
	}
	if n := accountCount(t, c); n != 2 {
		t.Errorf("%d accounts, want 2", n)
	}
}

// TestValidation_InsufficientFunds: a transfer, alone or linked, that would
// overdraw an account is a 422 and writes nothing.
func TestValidation_InsufficientFunds(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	c := s.MustTenant(t)
	from, to := c.MustAccount(t, "USD", false), c.MustAccount(t, "USD", false)
	c.MustFund(t, from, "USD", 50)
	before := mustState(t, c, from, to)

	r := c.Do(t, "POST", "/v1/transfers", Transfer(from, to, 51, "USD"))
	mustProblem(t, r, 422, holdfast.EINSUFFICIENT)
	r = c.Do(t, "POST", "/v1/linked-transfers", linked(Transfer(from, to, 30, "USD"), Transfer(from, to, 30, "USD")),
		"Idempotency-Key", "overdraw")
	mustProblem(t, r, 422, holdfast.EINSUFFICIENT)
	mustStateUnchanged(t, c, before)
}
