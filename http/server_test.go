package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/pgtest"
	"github.com/holdfast/holdfast/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const adminToken = "test-admin-token"

// TestServer is a real server on loopback over real PostgreSQL services.
type TestServer struct {
	*holdfasthttp.Server
	DB *postgres.DB
}

// MustOpenServer starts a server on :0 against a fresh database, with group
// commit on; cfg may adjust the server's configuration.
func MustOpenServer(tb testing.TB, cfg ...func(*holdfasthttp.Config)) *TestServer {
	tb.Helper()
	ctx := context.Background()
	db, err := postgres.Open(ctx, postgres.Config{URL: pgtest.NewDatabase(tb), MaxConns: 20})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(db.Close)
	if err := postgres.Migrate(ctx, db); err != nil {
		tb.Fatal(err)
	}
	return MustOpenServerOn(tb, db, cfg...)
}

// MustOpenServerOn starts another server on an existing database (a second replica).
func MustOpenServerOn(tb testing.TB, db *postgres.DB, cfg ...func(*holdfasthttp.Config)) *TestServer {
	tb.Helper()
	c := holdfasthttp.Config{Addr: "127.0.0.1:0", AdminToken: adminToken, AuthCacheTTL: -1}
	for _, f := range cfg {
		f(&c)
	}
	s, err := holdfasthttp.NewServer(c)
	if err != nil {
		tb.Fatal(err)
	}
	transfers := postgres.NewTransferService(db)
	w, err := postgres.NewWriter(transfers, postgres.WriterConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	s.TenantService = postgres.NewTenantService(db)
	s.AccountService = postgres.NewAccountService(db)
	s.TransferService = transfers
	s.IdempotencyService = postgres.NewIdempotencyService(db, 0)
	s.Ready = db.Ping
	if err := s.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Close(ctx)
		w.Stop()
	})
	return &TestServer{Server: s, DB: db}
}

// Client calls the API as one tenant.
type Client struct {
	URL, Key, Tenant string
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
// the response is application/problem+json.
func (r *Response) ProblemType(tb testing.TB) string {
	tb.Helper()
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		tb.Fatalf("status %d with Content-Type %q, want application/problem+json: %s", r.Status, ct, r.Body)
	}
	typ, _ := r.JSON(tb)["type"].(string)
	if !strings.HasPrefix(typ, holdfasthttp.ProblemBase) {
		tb.Fatalf("problem type %q lacks the base %s", typ, holdfasthttp.ProblemBase)
	}
	return strings.TrimPrefix(typ, holdfasthttp.ProblemBase)
}

// Do sends a request. body may be nil, a string or []byte (sent as is), or a
// value (sent as JSON); a JSON Content-Type is set unless headers name one.
// headers are name, value pairs.
func (c *Client) Do(tb testing.TB, method, path string, body any, headers ...string) *Response {
	tb.Helper()
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
			tb.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, c.URL+path, r)
	if err != nil {
		tb.Fatal(err)
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
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// MustStatus fails tb unless the response has the status.
func (r *Response) MustStatus(tb testing.TB, status int) *Response {
	tb.Helper()
	if r.Status != status {
		tb.Fatalf("status %d, want %d: %s", r.Status, status, r.Body)
	}
	return r
}

// Admin returns a client holding the admin token.
func (s *TestServer) Admin() *Client { return &Client{URL: s.URL(), Key: adminToken} }

// MustTenant creates a tenant through the admin API and returns its client.
func (s *TestServer) MustTenant(tb testing.TB) *Client {
	tb.Helper()
	m := s.Admin().Do(tb, "POST", "/v1/admin/tenants", map[string]any{"name": tb.Name()}).MustStatus(tb, 201).JSON(tb)
	key := m["api_key"].(map[string]any)["secret"].(string)
	tenant := m["tenant"].(map[string]any)["id"].(string)
	return &Client{URL: s.URL(), Key: key, Tenant: tenant}
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

func TestHealthz(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	c := &Client{URL: s.URL()}
	if r := c.Do(t, "GET", "/healthz", nil); r.Status != 200 || r.Header.Get("X-Request-Id") == "" {
		t.Fatalf("healthz: %d %v", r.Status, r.Header)
	}
	c.Do(t, "GET", "/readyz", nil).MustStatus(t, 200)
	s.Drain()
	if got := c.Do(t, "GET", "/readyz", nil).MustStatus(t, 503).ProblemType(t); got != "overloaded" {
		t.Fatalf("draining readyz type = %s", got)
	}
	c.Do(t, "GET", "/healthz", nil).MustStatus(t, 200)
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t)
	c := s.MustTenant(t)
	c.MustAccount(t, "USD", false)
	// The test server registers no metrics (a nil Registerer); the real
	// wiring is checked end to end in cmd/holdfast. Here: /metrics answers.
	r := c.Do(t, "GET", "/metrics", nil).MustStatus(t, 200)
	if len(r.Body) == 0 {
		t.Fatal("empty /metrics")
	}
}
