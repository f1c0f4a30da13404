package app

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	holdfasthttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/overload"
	"github.com/holdfast/holdfast/ratelimit"
)

// openProtection builds the overload protection the configuration asks
// for: the CPU lane, admission control (unless --admission=false) and the
// per-tenant rate limiter it returns (nil with --rate-limit=0; in Redis with
// --redis-url, which must answer at start).
func (m *Main) openProtection(ctx context.Context) (holdfasthttp.RateLimiter, error) {
	c := m.Config
	var err error
	if m.Lane, err = overload.NewLane(overload.LaneConfig{Size: c.CPULaneSize, Queue: c.CPULaneQueue, Registerer: m.Registry}); err != nil {
		return nil, err
	}
	if c.Admission {
		m.Admission, err = overload.NewAdmission(overload.AdmissionConfig{
			Limiter: overload.LimiterConfig{MinLimit: c.AdmissionMinLimit, MaxLimit: c.AdmissionMaxLimit, MaxLatency: c.AdmissionMaxLatency,
				QueueInterval: c.AdmissionQueueWait, Tolerance: c.AdmissionTolerance},
			WriteMinLimit: c.AdmissionWriteMin,
			Registerer:    m.Registry,
		})
		if err != nil {
			return nil, err
		}
	}
	if c.RateLimit <= 0 {
		return nil, nil
	}
	rc := ratelimit.Config{Rate: c.RateLimit, Burst: c.RateLimitBurst}
	if c.RedisURL == "" {
		l, err := ratelimit.NewLocal(rc)
		if err != nil {
			return nil, fmt.Errorf("--rate-limit: %w", err)
		}
		return l, nil
	}
	opts, err := redis.ParseURL(c.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("--redis-url: %w", err)
	}
	m.redis = redis.NewClient(opts)
	if err := m.redis.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("redis at --redis-url: %w", err)
	}
	l, err := ratelimit.NewRedis(ratelimit.RedisConfig{Config: rc, Client: m.redis})
	if err != nil {
		return nil, fmt.Errorf("--rate-limit: %w", err)
	}
	return l, nil
}
