package app_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/holdfast/holdfast/app"
	"github.com/holdfast/holdfast/internal/testkit/apptest"
	"github.com/holdfast/holdfast/internal/testkit/pgtest"
)

// TestMain_OverloadProtection: the real program sheds by default (its
// admission and lane metrics are served) and rate-limits each tenant
// with 429 and RateLimit headers; /healthz is never limited.
func TestMain_OverloadProtection(t *testing.T) {
	t.Parallel()
	m := apptest.MustStart(t, pgtest.NewDatabase(t), func(c *app.Config) { c.RateLimit, c.RateLimitBurst = 0.01, 3 })
	if m.Admission == nil || m.Lane == nil {
		t.Fatal("admission control and the CPU lane are not on by default")
	}
	c := apptest.Admin(m).MustTenant(t, "limited")
	for range 3 {
		r := c.Do(t, "GET", "/v1/accounts", nil).MustStatus(t, 200)
		if r.Header.Get("RateLimit-Policy") != `"per-tenant";q=3;w=300` {
			t.Fatalf("RateLimit-Policy %q", r.Header.Get("RateLimit-Policy"))
		}
	}
	r := c.Do(t, "GET", "/v1/accounts", nil).MustStatus(t, 429)
	if r.Header.Get("Retry-After") == "" || r.Header.Get("RateLimit") == "" {
		t.Fatalf("429 without Retry-After or RateLimit: %v", r.Header)
	}
	c.Do(t, "GET", "/healthz", nil).MustStatus(t, 200)
	metrics := string(c.Do(t, "GET", "/metrics", nil).MustStatus(t, 200).Body)
	for _, want := range []string{
		`holdfast_admission_limit{class="writes"}`,
		`holdfast_admission_inflight{class="reads"}`,
		`holdfast_admission_shed_total{class="reads",reason="rate-limited"} 1`,
		`holdfast_lane_running{lane="cpu"} 0`,
		`holdfast_lane_waiting{lane="cpu"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestMain_RedisRateLimitAcrossReplicas: two replicas with --redis-url
// share each key's limit. Skipped without a Redis (the suite needs none).
func TestMain_RedisRateLimitAcrossReplicas(t *testing.T) {
	t.Parallel()
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	probe := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	err = probe.Ping(ctx).Err()
	cancel()
	probe.Close()
	if err != nil {
		t.Skipf("no Redis at %s (%v): the shared rate limit is not tested; set REDIS_URL or start redis-server", url, err)
	}
	db := pgtest.NewDatabase(t)
	limited := func(c *app.Config) { c.RateLimit, c.RateLimitBurst, c.RedisURL = 0.01, 4, url }
	nats := sharedNATS(t)
	a, b := apptest.MustStart(t, db, limited, nats), apptest.MustStart(t, db, limited, nats)
	var suffix [6]byte
	rand.Read(suffix[:])
	c := apptest.Admin(a).MustTenant(t, "shared-"+hex.EncodeToString(suffix[:]))
	cb := *c
	cb.URL = b.HTTP.URL()
	allowed := 0
	for i := range 8 {
		client := c
		if i%2 == 1 {
			client = &cb
		}
		if client.Do(t, "GET", "/v1/accounts", nil).Status == 200 {
			allowed++
		}
	}
	if allowed != 4 {
		t.Fatalf("%d of 8 requests across two replicas allowed, want the shared burst of 4", allowed)
	}
}

func TestMain_RedisUnreachableFailsAtStart(t *testing.T) {
	t.Parallel()
	err := RunMainErr(t, func(c *app.Config) { c.RedisURL = "redis://127.0.0.1:1/0" })
	if err == nil || !strings.Contains(err.Error(), "redis") {
		t.Fatalf("Run with an unreachable Redis: %v, want an error naming redis", err)
	}
}
