package http_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
	"github.com/holdfast/holdfast/overload"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/ratelimit"
)

// mustAdmission returns admission control with a fixed limit per class and
// no queue, so a test can fill a class by holding its permits.
func mustAdmission(tb testing.TB, limit int) *overload.Admission {
	tb.Helper()
	a, err := overload.NewAdmission(overload.AdmissionConfig{Limiter: overload.LimiterConfig{
		InitialLimit: limit, MinLimit: limit, MaxLimit: limit, QueueSize: -1}})
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// countAccounts returns the tenant's accounts, straight from the database.
func countAccounts(tb testing.TB, s *TestServer, tenant string) int {
	tb.Helper()
	var n int
	if err := s.DB.Pool.QueryRow(context.Background(), "SELECT count(*) FROM accounts WHERE tenant_id = $1", tenant).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// TestAdmission_ExpiredDeadlineDropped: a request whose Request-Timeout has
// already run out gets 503 timeout + Retry-After, and nothing is done for
// it; one with time left is served.
func TestAdmission_ExpiredDeadlineDropped(t *testing.T) {
	t.Parallel()
	s := MustOpenServer(t, func(c *holdfasthttp.Config) { c.Admission = mustAdmission(t, 10) })
	c := s.MustTenant(t)
	body := map[string]any{"currency": "USD"}

	r := c.Do(t, "POST", "/v1/accounts", body, "Request-Timeout", "0", "Idempotency-Key", "expired-1").MustStatus(t, 503)
	if got := r.ProblemType(t); got != "timeout" {
		t.Fatalf("problem type %s, want timeout", got)
	}
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After on a dropped request")
	}
	if n := countAccounts(t, s, c.Tenant); n != 0 {
		t.Fatalf("%d accounts after a dropped request, want 0: the handler ran", n)
	}
	// The key was never claimed: the same key with time left is a first request.
	c.Do(t, "POST", "/v1/accounts", body, "Request-Timeout", "5000", "Idempotency-Key", "expired-1").MustStatus(t, 201)
	c.Do(t, "POST", "/v1/accounts", body, "Request-Timeout", "not-a-number").MustStatus(t, 201)
	if n := countAccounts(t, s, c.Tenant); n != 2 {
		t.Fatalf("%d accounts, want 2", n)
	}
}

// TestAdmission_ShedsAClassWhenFull: with every write permit taken, a
// write is refused at once with 503 overloaded + Retry-After and does
// nothing, while reads (another class), /healthz, /readyz and /metrics are
// served; a freed permit admits writes again.
func TestAdmission_ShedsAClassWhenFull(t *testing.T) {
	t.Parallel()
	adm := mustAdmission(t, 1)
	s := MustOpenServer(t, func(c *holdfasthttp.Config) { c.Admission = adm })
	c := s.MustTenant(t)

	p, err := adm.Acquire(context.Background(), overload.Writes)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Do(t, "POST", "/v1/accounts", map[string]any{"currency": "USD"}).MustStatus(t, 503)
	if got := r.ProblemType(t); got != "overloaded" {
		t.Fatalf("problem type %s, want overloaded", got)
	}
	if r.Header.Get("Retry-After") != "1" {
		t.Fatalf("Retry-After %q, want 1", r.Header.Get("Retry-After"))
	}
	if n := countAccounts(t, s, c.Tenant); n != 0 {
		t.Fatalf("%d accounts after a shed request, want 0", n)
	}
	c.Do(t, "GET", "/v1/accounts", nil).MustStatus(t, 200)
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		c.Do(t, "GET", path, nil).MustStatus(t, 200)
	}
	c.Do(t, "GET", "/healthz", nil, "Request-Timeout", "0").MustStatus(t, 200) // liveness is never dropped
	// Operators can act during an overload: admin routes are not admitted.
	s.Admin().Do(t, "POST", "/v1/admin/tenants", map[string]any{"name": "during-overload"}).MustStatus(t, 201)

	p.Release()
	c.Do(t, "POST", "/v1/accounts", map[string]any{"currency": "USD"}).MustStatus(t, 201)
	if got := adm.Limiter(overload.Writes).InFlight(); got != 0 {
		t.Fatalf("%d write permits held after the requests, want 0", got)
	}
}

// TestRateLimit_PerTenant: each tenant has its own bucket; past it a
// request gets 429 rate-limited with Retry-After and the RateLimit headers,
// and another tenant is unaffected; /healthz and /metrics are never limited.
func TestRateLimit_PerTenant(t *testing.T) {
	t.Parallel()
	limiter, err := ratelimit.NewLocal(ratelimit.Config{Rate: 0.01, Burst: 2}) // one request back per 100 s
	if err != nil {
		t.Fatal(err)
	}
	s := MustOpenServer(t, func(c *holdfasthttp.Config) { c.RateLimiter = limiter })
	a, b := s.Admin().MustTenant(t, "a"), s.Admin().MustTenant(t, "b")

	for want := 1; want >= 0; want-- {
		r := a.Do(t, "GET", "/v1/accounts", nil).MustStatus(t, 200)
		if got := r.Header.Get("RateLimit"); got != `"per-tenant";r=`+strconv.Itoa(want)+";t="+strconv.Itoa(100*(2-want)) {
			t.Fatalf("RateLimit %q with %d remaining", got, want)
		}
		if got := r.Header.Get("RateLimit-Policy"); got != `"per-tenant";q=2;w=200` {
			t.Fatalf("RateLimit-Policy %q", got)
		}
	}
	r := a.Do(t, "POST", "/v1/accounts", map[string]any{"currency": "USD"}).MustStatus(t, 429)
	if got := r.ProblemType(t); got != "rate-limited" {
		t.Fatalf("problem type %s, want rate-limited", got)
	}
	if got := r.Header.Get("Retry-After"); got != "100" {
		t.Fatalf("Retry-After %q, want 100", got)
	}
	if got := r.Header.Get("RateLimit"); got != `"per-tenant";r=0;t=200` {
		t.Fatalf("RateLimit %q on the 429", got)
	}
	if n := countAccounts(t, s, a.Tenant); n != 0 {
		t.Fatalf("%d accounts after a rate-limited request, want 0", n)
	}

	b.Do(t, "GET", "/v1/accounts", nil).MustStatus(t, 200)
	for _, path := range []string{"/healthz", "/metrics"} {
		if r := a.Do(t, "GET", path, nil).MustStatus(t, 200); r.Header.Get("RateLimit") != "" {
			t.Fatalf("%s carries RateLimit headers", path)
		}
	}
}

// TestPoolExhausted_Overloaded: a request that cannot get a database
// connection within the acquire timeout fails fast with 503 overloaded
// (not after its whole deadline, and not as an internal error).
func TestPoolExhausted_Overloaded(t *testing.T) {
	t.Parallel()
	db, err := postgres.Open(context.Background(), postgres.Config{URL: pgtest.NewDatabase(t), MaxConns: 2, AcquireTimeout: 250 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := postgres.Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	// hold takes both connections. Connecting happens inside Acquire, within
	// the acquire timeout: on a busy machine it may take longer, so retry.
	hold := func() (held []*pgxpool.Conn) {
		for len(held) < 2 {
			conn, err := db.Pool.Acquire(context.Background())
			if errors.Is(err, context.DeadlineExceeded) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, conn)
		}
		return held
	}
	for _, conn := range hold() { // connect both before the server needs them
		conn.Release()
	}
	s := MustOpenServerOn(t, db)
	c := s.MustTenant(t)
	held := hold()
	r := c.Do(t, "GET", "/v1/accounts", nil).MustStatus(t, 503)
	if got := r.ProblemType(t); got != "overloaded" {
		t.Fatalf("problem type %s, want overloaded", got)
	}
	for _, conn := range held {
		conn.Release()
	}
	c.Do(t, "GET", "/v1/accounts", nil).MustStatus(t, 200)
}
