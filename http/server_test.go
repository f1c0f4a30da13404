package http_test

import (
	"strings"
	"testing"

	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// adminToken is the test servers' admin token (at least 32 characters).
const adminToken = "test-admin-token-0123456789abcdef"

// TestServer is a real server on loopback over real PostgreSQL services.
type TestServer struct {
	*holdfasthttp.Server
	DB *postgres.DB
}

// MustOpenServer starts a server on :0 against a fresh database, with group
// commit on; cfg may adjust the server's configuration.
func MustOpenServer(tb testing.TB, cfg ...func(*holdfasthttp.Config)) *TestServer {
	tb.Helper()
	return MustOpenServerOn(tb, dbtest.MustOpenDB(tb), cfg...)
}

// MustOpenServerOn starts another server on an existing database (a second replica).
func MustOpenServerOn(tb testing.TB, db *postgres.DB, cfg ...func(*holdfasthttp.Config)) *TestServer {
	tb.Helper()
	withAdmin := func(c *holdfasthttp.Config) { c.AdminToken = adminToken }
	return &TestServer{Server: apitest.MustServe(tb, db, append([]func(*holdfasthttp.Config){withAdmin}, cfg...)...), DB: db}
}

// The client and its helpers are shared with the end-to-end tests.
type (
	Client   = apitest.Client
	Response = apitest.Response
)

// Transfer is a transfer request body.
var Transfer = apitest.Transfer

// Admin returns a client holding the admin token.
func (s *TestServer) Admin() *Client { return &Client{URL: s.URL(), Key: adminToken} }

// MustTenant creates a tenant through the admin API and returns its client.
func (s *TestServer) MustTenant(tb testing.TB) *Client {
	tb.Helper()
	return s.Admin().MustTenant(tb, tb.Name())
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

// TestNewServer_RefusesAShortAdminToken: an admin token shorter than 32
// characters could be guessed; the server refuses to start with one, and
// says why. No token (no admin API) is fine.
func TestNewServer_RefusesAShortAdminToken(t *testing.T) {
	t.Parallel()
	for _, tok := range []string{"x", "e2e-admin", strings.Repeat("k", 31)} {
		_, err := holdfasthttp.NewServer(holdfasthttp.Config{AdminToken: tok})
		if err == nil || !strings.Contains(err.Error(), "at least 32") {
			t.Errorf("admin token of %d characters: %v, want an error saying it needs at least 32", len(tok), err)
		}
	}
	for _, tok := range []string{"", strings.Repeat("k", 32), adminToken} {
		if _, err := holdfasthttp.NewServer(holdfasthttp.Config{AdminToken: tok}); err != nil {
			t.Errorf("admin token of %d characters: %v", len(tok), err)
		}
	}
}
