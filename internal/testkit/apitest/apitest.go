// Package apitest holds what tests of the HTTP API share: a client that
// speaks to a running server as one tenant, and servers over the real
// services (MustServe), with the event log and the receipt pipeline when a
// test asks for them. It links the whole HTTP layer: a test that needs only
// a database takes it from package dbtest.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// Client calls the API as one tenant (or the admin).
type Client struct {
	URL, Key, Tenant string
	HTTP             *http.Client // default http.DefaultClient
}

// Response is what came back.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a map.
func (r *Response) JSON(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		tb.Fatalf("response is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

// ProblemType returns the problem type's last path segment, after checking
// the response is application/problem+json with a type under ProblemBase.
func (r *Response) ProblemType(tb testing.TB) string {
	tb.Helper()
	const base = "https://holdfast.dev/problems/"
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		tb.Fatalf("status %d with Content-Type %q, want application/problem+json: %s", r.Status, ct, r.Body)
	}
	typ, _ := r.JSON(tb)["type"].(string)
	if !strings.HasPrefix(typ, base) {
		tb.Fatalf("problem type %q lacks the base %s", typ, base)
	}
	return strings.TrimPrefix(typ, base)
}

// MustStatus fails tb unless the response has the status.
func (r *Response) MustStatus(tb testing.TB, status int) *Response {
	tb.Helper()
	if r.Status != status {
		tb.Fatalf("status %d, want %d: %s", r.Status, status, r.Body)
	}
	return r
}

// Send sends a request and returns the response or the transport error.
// body may be nil, a string or []byte (sent as is), or a value (sent as
// JSON); a JSON Content-Type is set unless headers name one. headers are
// name, value pairs.
func (c *Client) Send(ctx context.Context, method, path string, body any, headers ...string) (*Response, error) {
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, r)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Key != "" {
		req.Header.Set("Authorization", "Bearer "+c.Key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// Do is Send that fails tb on a transport error.
func (c *Client) Do(tb testing.TB, method, path string, body any, headers ...string) *Response {
	tb.Helper()
	r, err := c.Send(context.Background(), method, path, body, headers...)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// MustTenant creates a tenant through the admin API (c holds the admin
// token) and returns a client for it.
func (c *Client) MustTenant(tb testing.TB, name string) *Client {
	tb.Helper()
	m := c.Do(tb, "POST", "/v1/admin/tenants", map[string]any{"name": name}).MustStatus(tb, 201).JSON(tb)
	key := m["api_key"].(map[string]any)["secret"].(string)
	tenant := m["tenant"].(map[string]any)["id"].(string)
	return &Client{URL: c.URL, Key: key, Tenant: tenant, HTTP: c.HTTP}
}

// MustAccount creates an account and returns its id.
func (c *Client) MustAccount(tb testing.TB, currency string, overdraft bool) string {
	tb.Helper()
	m := c.Do(tb, "POST", "/v1/accounts", map[string]any{"currency": currency, "allow_overdraft": overdraft}).MustStatus(tb, 201).JSON(tb)
	return m["id"].(string)
}

// MustFund moves amount from a fresh overdraft account into account.
func (c *Client) MustFund(tb testing.TB, account, currency string, amount int64) {
	tb.Helper()
	house := c.MustAccount(tb, currency, true)
	c.Do(tb, "POST", "/v1/transfers", Transfer(house, account, amount, currency)).MustStatus(tb, 201)
}

// Balance returns an account's balance.
func (c *Client) Balance(tb testing.TB, account string) int64 {
	tb.Helper()
	m := c.Do(tb, "GET", "/v1/accounts/"+account, nil).MustStatus(tb, 200).JSON(tb)
	return int64(m["balance"].(float64))
}

// Transfer is a transfer request body.
func Transfer(from, to string, amount int64, currency string) map[string]any {
	return map[string]any{"debit_account_id": from, "credit_account_id": to, "amount": amount, "currency": currency}
}
