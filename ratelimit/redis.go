package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// gcraScript is GCRA in one atomic step. KEYS[1] holds the key's
// theoretical arrival time in microseconds; ARGV are the refill interval
// and the tolerance (burst × interval) in microseconds. The clock is
// Redis's own, so replicas with skewed clocks agree. It returns allowed
// (0/1), remaining, retry after and reset (microseconds).
var gcraScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local nxt = tat + interval
local allow_at = nxt - tolerance
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], nxt, 'PX', math.ceil((nxt - now) / 1000) + 1)
return {1, math.floor((now - allow_at) / interval), 0, nxt - now}
`)

// RedisConfig configures a Redis-backed limit.
type RedisConfig struct {
	Config
	// Client is the Redis connection. Required.
	Client redis.UniversalClient
	// Prefix namespaces the keys. Default "holdfast:ratelimit:".
	Prefix string
	// Timeout bounds one check; a slow Redis must not slow every request.
	// Default 50ms.
	Timeout time.Duration
}

// Redis is a rate limit shared by every replica through Redis.
type Redis struct {
	cfg RedisConfig
}

// NewRedis returns a Redis-backed limit, or an error for an invalid Config.
// It does not contact Redis.
func NewRedis(cfg RedisConfig) (*Redis, error) {
	cfg.Config = cfg.Config.WithDefaults()
	if err := cfg.Config.validate(); err != nil {
		return nil, err
	}
	if cfg.Client == nil {
		return nil, fmt.Errorf("ratelimit: RedisConfig.Client is required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "holdfast:ratelimit:"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 50 * time.Millisecond
	}
	return &Redis{cfg: cfg}, nil
}

// Allow takes one token from key's bucket if it has one. It returns an
// error when Redis does not answer within the timeout; the caller decides
// whether to fail open (Holdfast's HTTP layer does, and counts it).
func (r *Redis) Allow(ctx context.Context, key string) (Decision, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	interval := r.cfg.interval()
	tolerance := time.Duration(r.cfg.Burst) * interval
	res, err := gcraScript.Run(ctx, r.cfg.Client, []string{r.cfg.Prefix + key},
		interval.Microseconds(), tolerance.Microseconds()).Int64Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("ratelimit: redis: %w", err)
	}
	if len(res) != 4 {
		return Decision{}, fmt.Errorf("ratelimit: redis: unexpected reply %v", res)
	}
	return Decision{
		Allowed: res[0] == 1, Limit: r.cfg.Burst, Remaining: int(res[1]),
		RetryAfter: time.Duration(res[2]) * time.Microsecond, Reset: time.Duration(res[3]) * time.Microsecond,
	}, nil
}

// Policy returns the limit (for the RateLimit-Policy header).
func (r *Redis) Policy() Config { return r.cfg.Config }
