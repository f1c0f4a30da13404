package ratelimit

import (
	"context"
	"errors"
	"sync"
	"time"
)

// QuotaConfig is a quota of events and bytes per period, each a bucket
// that holds a period's worth and refills over the period.
type QuotaConfig struct {
	// Events is the most events per Period. Required.
	Events int64
	// Bytes is the most bytes per Period. Required.
	Bytes int64
	// Period is the quota's period. Default 1 minute.
	Period time.Duration
}

// WithDefaults returns c with zero fields set to their defaults.
func (c QuotaConfig) WithDefaults() QuotaConfig {
	if c.Period == 0 {
		c.Period = time.Minute
	}
	return c
}

func (c QuotaConfig) validate() error {
	if c.Events < 1 || c.Bytes < 1 || c.Period <= 0 {
		return errors.New("ratelimit: quota Events, Bytes and Period must be positive")
	}
	// A token must take at least a nanosecond to refill.
	if float64(c.Events)/c.Period.Seconds() > 1e8 || float64(c.Bytes)/c.Period.Seconds() > 1e8 {
		return errors.New("ratelimit: a quota may refill at most 100,000,000 events or bytes a second")
	}
	return nil
}

// Quota is a per-key quota of events and bytes held in this process's
// memory: a request of n events and b bytes takes n from the key's events
// bucket and b from its bytes bucket, or nothing when either lacks them.
type Quota struct {
	cfg           QuotaConfig
	events, bytes Config
	now           func() time.Time
	mu            sync.Mutex
	tats          map[string]quotaTAT
}

// quotaTAT is a key's theoretical arrival times, one a bucket.
type quotaTAT struct{ events, bytes time.Time }

// NewQuota returns an in-process quota, or an error for an invalid config.
func NewQuota(cfg QuotaConfig) (*Quota, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	per := cfg.Period.Seconds()
	return &Quota{cfg: cfg, now: time.Now, tats: map[string]quotaTAT{},
		events: Config{Rate: float64(cfg.Events) / per, Burst: int(cfg.Events)},
		bytes:  Config{Rate: float64(cfg.Bytes) / per, Burst: int(cfg.Bytes)}}, nil
}

// Policy returns the quota.
func (q *Quota) Policy() QuotaConfig { return q.cfg }

// QuotaDecision is the decision of one of a quota's buckets: the one that
// refused, else the events bucket.
type QuotaDecision struct {
	Decision
	Bytes bool // the bytes bucket decided
}

// Allow takes events and bytes from key's buckets if both hold them. It
// never fails.
func (q *Quota) Allow(_ context.Context, key string, events, bytes int64) (QuotaDecision, error) {
	now := q.now()
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.tats[key]
	de, events1 := gcraN(q.events, now, t.events, events)
	db, bytes1 := gcraN(q.bytes, now, t.bytes, bytes)
	if !db.Allowed && (de.Allowed || db.RetryAfter > de.RetryAfter) {
		return QuotaDecision{db, true}, nil
	}
	if !de.Allowed {
		return QuotaDecision{Decision: de}, nil
	}
	if len(q.tats) >= maxLocalKeys {
		for k, v := range q.tats {
			if !v.events.After(now) && !v.bytes.After(now) {
				delete(q.tats, k)
			}
		}
	}
	q.tats[key] = quotaTAT{events1, bytes1}
	return QuotaDecision{Decision: de}, nil
}

// gcraN is gcra for a request that costs n tokens.
func gcraN(c Config, now, tat time.Time, n int64) (Decision, time.Time) {
	interval := c.interval()
	tolerance := time.Duration(c.Burst) * interval
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(time.Duration(n) * interval)
	d := Decision{Limit: c.Burst}
	if allowAt := next.Add(-tolerance); allowAt.After(now) {
		d.RetryAfter = allowAt.Sub(now)
		d.Reset = tat.Sub(now)
		return d, tat
	}
	d.Allowed = true
	d.Remaining = int(now.Sub(next.Add(-tolerance)) / interval)
	d.Reset = next.Sub(now)
	return d, next
}
