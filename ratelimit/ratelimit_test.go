package ratelimit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/holdfast/holdfast/internal/testkit/redistest"
)

// limiter is what Local and Redis share.
type limiter interface {
	Allow(ctx context.Context, key string) (Decision, error)
}

func mustAllow(t *testing.T, l limiter, key string) Decision {
	t.Helper()
	d, err := l.Allow(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// checkBurst checks a fresh key of a limit of burst 3 at a negligible rate:
// three requests pass with 2, 1, 0 remaining, the fourth is refused with a
// positive Retry-After, and another key is not affected.
func checkBurst(t *testing.T, l limiter, a, b string) {
	t.Helper()
	for want := 2; want >= 0; want-- {
		d := mustAllow(t, l, a)
		if !d.Allowed || d.Remaining != want || d.Limit != 3 {
			t.Fatalf("request %d of key a: %+v, want allowed with %d remaining of 3", 3-want, d, want)
		}
	}
	d := mustAllow(t, l, a)
	if d.Allowed || d.Remaining != 0 || d.RetryAfter <= 0 || d.Reset <= 0 {
		t.Fatalf("fourth request of key a: %+v, want refused with a Retry-After", d)
	}
	if d := mustAllow(t, l, b); !d.Allowed || d.Remaining != 2 {
		t.Fatalf("key b after key a ran out: %+v, want its own full bucket", d)
	}
}

func TestLocal_KeysAreIndependent(t *testing.T) {
	t.Parallel()
	l, err := NewLocal(Config{Rate: 0.001, Burst: 3})
	if err != nil {
		t.Fatal(err)
	}
	checkBurst(t, l, "a", "b")
}

// A flood of distinct keys, each refused at once (rate negligible, burst 1,
// so no bucket is ever full again), never grows the map past its bound,
// and a key used just before still has its debt unless it was evicted.
func TestLocal_KeysStayBoundedWhateverTheRate(t *testing.T) {
	t.Parallel()
	l, err := NewLocal(Config{Rate: 0.001, Burst: 1})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_000_000, 0)
	l.now = func() time.Time { return now }
	l.maxKeys = 1000
	for i := range 50_000 {
		mustAllow(t, l, fmt.Sprintf("k%d", i))
		if n := len(l.tat); n > l.maxKeys {
			t.Fatalf("%d keys held after %d distinct ones, want at most %d", n, i+1, l.maxKeys)
		}
	}
	mustAllow(t, l, "last")
	if d := mustAllow(t, l, "last"); d.Allowed {
		t.Fatal("the key used last lost its debt at once")
	}
}

// TestLocal_Refill: a refused key gets one request back after one refill
// interval, and a full bucket after Burst intervals (on a fake clock).
func TestLocal_Refill(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	l, err := NewLocal(Config{Rate: 10, Burst: 5})
	if err != nil {
		t.Fatal(err)
	}
	l.now = func() time.Time { return now }
	for range 5 {
		mustAllow(t, l, "k")
	}
	d := mustAllow(t, l, "k")
	if d.Allowed || d.RetryAfter != 100*time.Millisecond || d.Reset != 500*time.Millisecond {
		t.Fatalf("sixth request: %+v, want refused, retry after 100ms, full in 500ms", d)
	}
	now = now.Add(100 * time.Millisecond)
	if d := mustAllow(t, l, "k"); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("after one interval: %+v, want one allowed with 0 remaining", d)
	}
	now = now.Add(time.Second)
	if d := mustAllow(t, l, "k"); !d.Allowed || d.Remaining != 4 {
		t.Fatalf("after a quiet second: %+v, want a full bucket (4 remaining)", d)
	}
}

func TestConfig_Invalid(t *testing.T) {
	t.Parallel()
	if _, err := NewLocal(Config{}); err == nil {
		t.Fatal("NewLocal accepted a zero rate")
	}
	if c := (Config{Rate: 2.5}).WithDefaults(); c.Burst != 3 {
		t.Fatalf("default burst %d for rate 2.5, want 3", c.Burst)
	}
}

// TestRedis_KeysAreIndependent runs the same checks as for Local against
// a real Redis.
func TestRedis_KeysAreIndependent(t *testing.T) {
	t.Parallel()
	l, err := NewRedis(RedisConfig{Config: Config{Rate: 0.001, Burst: 3}, Client: redistest.Client(t), Prefix: redistest.Prefix(), Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	checkBurst(t, l, "a", "b")
}

// TestRedis_SharedAcrossReplicas: two limiters on the same Redis (two
// replicas) draw from one bucket per key.
func TestRedis_SharedAcrossReplicas(t *testing.T) {
	t.Parallel()
	prefix := redistest.Prefix()
	cfg := Config{Rate: 0.001, Burst: 4}
	r1, err := NewRedis(RedisConfig{Config: cfg, Client: redistest.Client(t), Prefix: prefix, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := NewRedis(RedisConfig{Config: cfg, Client: redistest.Client(t), Prefix: prefix, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	allowed := 0
	for i := range 8 {
		l := r1
		if i%2 == 1 {
			l = r2
		}
		if mustAllow(t, l, "key").Allowed {
			allowed++
		}
	}
	if allowed != 4 {
		t.Fatalf("%d of 8 requests through two replicas allowed, want the shared burst of 4", allowed)
	}
}

// TestRedis_Unreachable: a Redis that does not answer is an error (the
// HTTP layer then lets the request through), not a refusal.
func TestRedis_Unreachable(t *testing.T) {
	t.Parallel()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer c.Close()
	l, err := NewRedis(RedisConfig{Config: Config{Rate: 1}, Client: c})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Allow(context.Background(), "k"); err == nil {
		t.Fatal("Allow against no Redis returned no error")
	}
}
