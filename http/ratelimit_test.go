package http_test

import (
	"context"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/testkit/apitest"
	"github.com/holdfast/holdfast/internal/testkit/dbtest"
	"github.com/holdfast/holdfast/internal/testkit/redistest"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/ratelimit"
)

// redisLimiter returns a limiter on REDIS_URL (or 127.0.0.1:6379) under
// a prefix of its own, or skips: the Redis mode is optional.
func redisLimiter(t *testing.T, cfg ratelimit.Config) *ratelimit.Redis {
	t.Helper()
	l, err := ratelimit.NewRedis(ratelimit.RedisConfig{Config: cfg, Client: redistest.Client(t), Prefix: redistest.Prefix(), Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestRateLimit_KeysOfATenantShareOneBudget: the rate limit is the
// tenant's, not the key's, so minting keys buys no more requests; another
// tenant keeps its own budget. Both in process and in Redis.
func TestRateLimit_KeysOfATenantShareOneBudget(t *testing.T) {
	t.Parallel()
	cfg := ratelimit.Config{Rate: 0.01, Burst: 2} // one request back per 100 s
	limiters := map[string]func(t *testing.T) holdfasthttp.RateLimiter{
		"local": func(t *testing.T) holdfasthttp.RateLimiter {
			l, err := ratelimit.NewLocal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			return l
		},
		"redis": func(t *testing.T) holdfasthttp.RateLimiter { return redisLimiter(t, cfg) },
	}
	for name, limiter := range limiters {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := MustOpenServer(t, func(c *holdfasthttp.Config) { c.RateLimiter = limiter(t) })
			a, b := s.Admin().MustTenant(t, "a"), s.Admin().MustTenant(t, "b")
			k, err := postgres.NewTenantService(s.DB).CreateAPIKey(context.Background(), a.Tenant, nil)
			if err != nil {
				t.Fatal(err)
			}
			a2 := &Client{URL: s.URL(), Key: k.Secret, Tenant: a.Tenant}

			a.Do(t, "GET", "/v1/accounts", nil).MustStatus(t, 200)
			a2.Do(t, "GET", "/v1/accounts", nil).MustStatus(t, 200)
			for _, c := range []*Client{a, a2} {
				mustProblem(t, c.Do(t, "GET", "/v1/accounts", nil), 429, "rate-limited")
			}
			b.Do(t, "GET", "/v1/accounts", nil).MustStatus(t, 200)
		})
	}
}

// TestAPIKeys_CapIsAProblem: past the tenant's cap of active keys, POST
// /v1/api-keys gets 409 api-key-limit and creates nothing; the refusal is
// not stored against its Idempotency-Key, so after a revocation the same
// request succeeds.
func TestAPIKeys_CapIsAProblem(t *testing.T) {
	t.Parallel()
	db := dbtest.MustOpenDB(t)
	capped := func(s *holdfasthttp.Server) {
		tenants, err := postgres.NewTenantServiceWith(db, postgres.TenantConfig{MaxActiveKeys: 2})
		if err != nil {
			t.Fatal(err)
		}
		s.TenantService = tenants
	}
	s := &TestServer{Server: apitest.MustServeWith(t, db, capped, func(c *holdfasthttp.Config) { c.AdminToken = adminToken }), DB: db}
	c := s.MustTenant(t)
	second := c.Do(t, "POST", "/v1/api-keys", nil).MustStatus(t, 201).JSON(t)

	r := c.Do(t, "POST", "/v1/api-keys", nil, "Idempotency-Key", "third")
	mustProblem(t, r, 409, holdfast.EKEYLIMIT)
	loadOpenAPI(t).checkResponse(t, "POST", "/v1/api-keys", r)
	keys := c.Do(t, "GET", "/v1/api-keys", nil).MustStatus(t, 200).JSON(t)["data"].([]any)
	if len(keys) != 2 {
		t.Fatalf("%d keys after a refused creation, want 2", len(keys))
	}

	c.Do(t, "DELETE", "/v1/api-keys/"+second["id"].(string), nil).MustStatus(t, 204)
	c.Do(t, "POST", "/v1/api-keys", nil, "Idempotency-Key", "third").MustStatus(t, 201)
}
