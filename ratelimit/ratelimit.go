// Package ratelimit limits how fast each key may call the service
// (Holdfast's HTTP layer keys it by tenant, so that all of a tenant's API
// keys share one allowance and minting keys buys no more): a token bucket of Burst tokens refilled at Rate per second,
// computed as GCRA (the generic cell rate algorithm), which keeps one
// timestamp per key instead of a token count and a refill time. Local holds
// the state in this process; Redis holds it in Redis, updated atomically by
// a Lua script, so that the limit holds across replicas.
package ratelimit

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"
)

// Config is a limit: Burst requests at once, refilled at Rate per second.
type Config struct {
	// Rate is the sustained requests per second. Required.
	Rate float64
	// Burst is how many requests may arrive at once after a quiet spell.
	// Default: Rate, at least 1.
	Burst int
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Burst == 0 {
		c.Burst = max(1, int(math.Ceil(c.Rate)))
	}
	return c
}

func (c Config) validate() error {
	if !(c.Rate > 0) || c.Burst < 1 {
		return errors.New("ratelimit: Rate and Burst must be positive")
	}
	return nil
}

// interval is the time one token takes to refill.
func (c Config) interval() time.Duration { return time.Duration(float64(time.Second) / c.Rate) }

// Decision is the outcome of one request against a key's limit.
type Decision struct {
	Allowed    bool
	Limit      int           // the burst: requests a full bucket allows
	Remaining  int           // requests still allowed at once after this one
	RetryAfter time.Duration // when not allowed: until one request is allowed
	Reset      time.Duration // until the bucket is full again
}

// gcra decides one request given the key's theoretical arrival time tat
// (zero for an unknown key) and returns the decision and the new tat.
func gcra(c Config, now, tat time.Time) (Decision, time.Time) {
	interval := c.interval()
	tolerance := time.Duration(c.Burst) * interval
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(interval)
	d := Decision{Limit: c.Burst}
	if allowAt := next.Add(-tolerance); allowAt.After(now) {
		d.RetryAfter = allowAt.Sub(now)
		d.Reset = tat.Sub(now)
		return d, tat
	}
	d.Allowed = true
	d.Remaining = int((now.Sub(next.Add(-tolerance))) / interval)
	d.Reset = next.Sub(now)
	return d, next
}

// Local is a rate limit held in this process's memory.
type Local struct {
	cfg     Config
	now     func() time.Time
	maxKeys int // the map's bound: maxLocalKeys
	mu      sync.Mutex
	tat     map[string]time.Time
}

// NewLocal returns an in-process limit, or an error for an invalid Config.
func NewLocal(cfg Config) (*Local, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Local{cfg: cfg, now: time.Now, maxKeys: maxLocalKeys, tat: map[string]time.Time{}}, nil
}

// maxLocalKeys bounds the map: at it, keys whose bucket is full again
// (which are the same as absent) are swept, and if that frees too little
// (a flood of distinct keys, each with a debt) arbitrary keys are evicted
// down to nine tenths of it, so that the next sweep is many requests away.
// An evicted key loses its debt: it may burst once more, which is the
// price of a bound that holds whatever the rate.
const maxLocalKeys = 100_000

// Allow takes one token from key's bucket if it has one. It never fails.
func (l *Local) Allow(_ context.Context, key string) (Decision, error) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	d, tat := gcra(l.cfg, now, l.tat[key])
	if _, ok := l.tat[key]; !ok && len(l.tat) >= l.maxKeys {
		l.sweep(now)
	}
	l.tat[key] = tat
	return d, nil
}

// sweep makes room in the map (see maxLocalKeys); l.mu is held.
func (l *Local) sweep(now time.Time) {
	for k, t := range l.tat {
		if !t.After(now) {
			delete(l.tat, k)
		}
	}
	for k := range l.tat { // Go's map order is random: an arbitrary eviction
		if len(l.tat) < l.maxKeys*9/10 {
			break
		}
		delete(l.tat, k)
	}
}

// Policy returns the limit (for the RateLimit-Policy header).
func (l *Local) Policy() Config { return l.cfg }
