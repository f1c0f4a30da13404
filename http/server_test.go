package http_test

import (
	"context"
	"testing"
	"time"

	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/apitest"
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
