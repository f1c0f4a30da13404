package overload

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast"
)

// Errors a Limiter refuses with; both are EOVERLOADED.
var (
	// ErrLimit: the concurrency limit is reached and the queue is full.
	ErrLimit = holdfast.Errorf(holdfast.EOVERLOADED, "too many requests in progress; retry shortly")
	// ErrQueueTimeout: the request waited its queue timeout for capacity.
	ErrQueueTimeout = holdfast.Errorf(holdfast.EOVERLOADED, "no capacity within the queue timeout; retry shortly")
)

// LimiterConfig configures an adaptive concurrency limit.
type LimiterConfig struct {
	// InitialLimit is the limit before any latency is known. Default 40.
	InitialLimit int
	// MinLimit and MaxLimit bound the limit. Defaults 20 (as Netflix's
	// Gradient2: a floor low enough to protect, high enough that group
	// commit still fills batches when latency is inflated by CPU starvation
	// rather than by queueing downstream) and 1000.
	MinLimit, MaxLimit int
	// Tolerance is how many times the baseline latency a window's mean
	// latency may reach before the limit shrinks. Default 4: under group
	// commit latency grows with the batch, and so with concurrency, well
	// before the service is saturated (2 cut the write limit below what
	// capacity needs in the benchmark).
	Tolerance float64
	// MaxLatency, if positive, shrinks the limit whenever a window's mean
	// latency exceeds it, whatever the baseline: a guard against a baseline
	// that has crept up during a long degradation. Default 0 (off).
	MaxLatency time.Duration
	// Window is the shortest time over which latencies are averaged before
	// the limit moves; a window also needs MinSamples (fewer make noisy
	// means, and the baseline, their minimum, biased low). Defaults 100ms, 50.
	Window     time.Duration
	MinSamples int
	// BaselineHorizon is how long the baseline (the lowest window mean)
	// remembers a window: after a lasting change of the service's speed the
	// baseline has re-learned it within the horizon. Default 60s.
	BaselineHorizon time.Duration
	// Smoothing is the share of the way to its new value the limit moves
	// per window, in (0, 1]. Default 0.5.
	Smoothing float64
	// QueueSize is how many requests may wait for capacity. Default (0):
	// half the current limit, at least 1. Negative: no queue.
	QueueSize int
	// QueueTarget and QueueInterval are CoDel's: a request waits at most
	// QueueInterval while the queue has been empty within the last
	// QueueInterval, and at most QueueTarget once it has stayed non-empty
	// longer (a standing queue). Defaults 5ms and 100ms.
	QueueTarget, QueueInterval time.Duration
	// Now is the clock. Default time.Now; tests inject a fake.
	Now func() time.Time
}

// WithDefaults returns c with zero fields set to their defaults.
func (c LimiterConfig) WithDefaults() LimiterConfig {
	if c.InitialLimit == 0 {
		c.InitialLimit = 40
	}
	if c.MinLimit == 0 {
		c.MinLimit = 20
	}
	if c.MaxLimit == 0 {
		c.MaxLimit = 1000
	}
	if c.Tolerance == 0 {
		c.Tolerance = 4
	}
	if c.Window == 0 {
		c.Window = 100 * time.Millisecond
	}
	if c.MinSamples == 0 {
		c.MinSamples = 50
	}
	if c.BaselineHorizon == 0 {
		c.BaselineHorizon = 60 * time.Second
	}
	if c.Smoothing == 0 {
		c.Smoothing = 0.5
	}
	if c.QueueTarget == 0 {
		c.QueueTarget = 5 * time.Millisecond
	}
	if c.QueueInterval == 0 {
		c.QueueInterval = 100 * time.Millisecond
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c LimiterConfig) validate() error {
	switch {
	case c.MinLimit < 1 || c.MaxLimit < c.MinLimit:
		return errors.New("overload: need 1 ≤ MinLimit ≤ MaxLimit")
	case c.Tolerance < 1:
		return errors.New("overload: Tolerance must be at least 1")
	case c.Smoothing <= 0 || c.Smoothing > 1:
		return errors.New("overload: Smoothing must be in (0, 1]")
	case c.Window <= 0 || c.MinSamples < 1 || c.BaselineHorizon <= 0 || c.QueueTarget <= 0 || c.QueueInterval <= 0:
		return errors.New("overload: Window, MinSamples, BaselineHorizon and the queue times must be positive")
	}
	return nil
}

// baselineBuckets divide the baseline horizon; each keeps its lowest window mean.
const baselineBuckets = 8

// Limiter is an adaptive concurrency limit for one class of requests.
//
// Each window (Window long, at least MinSamples requests) it compares the
// mean latency of the requests that finished in it with the baseline, the
// lowest window mean within BaselineHorizon. The gradient
// clamp(Tolerance×baseline/mean, 0.5, 1) scales the limit down once
// latency rises past Tolerance×baseline (requests are queueing somewhere
// downstream); while latency stays under it and the limit is in use (at
// least half of it in flight), the limit grows by √limit; it is cut only in
// a window where it was reached. A window with a
// dropped request (see Permit.Drop) or above MaxLatency cuts the limit by
// 10% whatever the gradient. The limit moves Smoothing of the way per window.
//
// The baseline is a windowed minimum, not a moving average: a moving
// average follows a lasting overload up until the gradient reads 1 and the
// limit stops falling, a minimum only forgets after the horizon.
type Limiter struct {
	cfg LimiterConfig
	now func() time.Time

	mu        sync.Mutex
	limit     float64
	inflight  int
	queue     []*waiter // FIFO
	lastEmpty time.Time // the queue was last seen empty

	winStart time.Time
	winSum   time.Duration
	winN     int
	winDrops int
	winPeak  int
	buckets  [baselineBuckets]bucket

	// Metrics; never nil (unregistered unless the Admission registers them).
	shedLimit, shedTimeout, shedExpired prometheus.Counter
	wait                                prometheus.Observer
}

type bucket struct {
	epoch int64 // which span of the horizon; 0: empty
	min   time.Duration
}

type waiter struct {
	ready   chan struct{}
	granted bool // under Limiter.mu
}

// NewLimiter returns a limiter, or an error for an invalid configuration.
func NewLimiter(cfg LimiterConfig) (*Limiter, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	l := &Limiter{cfg: cfg, now: cfg.Now}
	l.limit = float64(min(max(cfg.InitialLimit, cfg.MinLimit), cfg.MaxLimit))
	l.winStart = l.now()
	l.lastEmpty = l.winStart
	l.shedLimit = prometheus.NewCounter(prometheus.CounterOpts{Name: "unregistered"})
	l.shedTimeout, l.shedExpired = l.shedLimit, l.shedLimit
	l.wait = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "unregistered"})
	return l, nil
}

// Limit returns the current concurrency limit.
func (l *Limiter) Limit() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.limit)
}

// InFlight returns how many permits are held.
func (l *Limiter) InFlight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inflight
}

// Queued returns how many requests wait for capacity.
func (l *Limiter) Queued() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queue)
}

// Permit is the right to run one request. Release it exactly once, with
// Release or Drop. The zero Permit (from a nil Limiter) does nothing.
type Permit struct {
	l     *Limiter
	start time.Time
}

// Release returns the permit and counts the request's latency.
func (p Permit) Release() {
	if p.l != nil {
		p.l.release(p.start, false)
	}
}

// Drop returns the permit of a request that failed for lack of capacity
// downstream (a timeout, a full queue): its latency says nothing about the
// service's speed, and the failure itself is the strongest congestion signal.
func (p Permit) Drop() {
	if p.l != nil {
		p.l.release(p.start, true)
	}
}

// Acquire admits a request or refuses it. Below the limit it returns at
// once; at the limit it waits in the queue for at most the CoDel timeout
// (and ctx's deadline). It returns ErrLimit at once when the queue is full,
// ErrQueueTimeout after waiting in vain, and ctx's error when ctx ends
// first (including when it has already ended: nothing waits for a request
// whose client has given up). A nil Limiter admits everything.
func (l *Limiter) Acquire(ctx context.Context) (Permit, error) {
	if l == nil {
		return Permit{}, nil
	}
	if err := ctx.Err(); err != nil {
		l.shedExpired.Inc()
		return Permit{}, err
	}
	now := l.now()
	l.mu.Lock()
	if len(l.queue) == 0 {
		l.lastEmpty = now
		if float64(l.inflight) < l.limit {
			l.admit()
			l.mu.Unlock()
			return Permit{l, now}, nil
		}
	}
	if len(l.queue) >= l.queueCap() {
		l.mu.Unlock()
		l.shedLimit.Inc()
		return Permit{}, ErrLimit
	}
	timeout := l.cfg.QueueInterval
	if now.Sub(l.lastEmpty) > l.cfg.QueueInterval {
		timeout = l.cfg.QueueTarget // a standing queue: only fresh requests are worth keeping
	}
	w := &waiter{ready: make(chan struct{})}
	l.queue = append(l.queue, w)
	l.mu.Unlock()

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var err error
	select {
	case <-w.ready:
	case <-timer.C:
		err = ErrQueueTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	l.mu.Lock()
	if w.granted {
		l.mu.Unlock()
		if ctx.Err() != nil { // granted as ctx ended: give the slot back
			l.release(time.Time{}, true)
			l.shedExpired.Inc()
			return Permit{}, ctx.Err()
		}
		start := l.now()
		l.wait.Observe(start.Sub(now).Seconds())
		return Permit{l, start}, nil
	}
	for i, q := range l.queue {
		if q == w {
			l.queue = append(l.queue[:i], l.queue[i+1:]...)
			break
		}
	}
	l.mu.Unlock()
	l.wait.Observe(l.now().Sub(now).Seconds())
	if err == ErrQueueTimeout {
		l.shedTimeout.Inc()
	} else {
		l.shedExpired.Inc()
	}
	return Permit{}, err
}

// admit counts one more request in flight; l.mu is held.
func (l *Limiter) admit() {
	l.inflight++
	l.winPeak = max(l.winPeak, l.inflight)
}

// queueCap returns how many may wait; l.mu is held.
func (l *Limiter) queueCap() int {
	switch {
	case l.cfg.QueueSize > 0:
		return l.cfg.QueueSize
	case l.cfg.QueueSize < 0:
		return 0
	}
	return max(1, int(l.limit)/2)
}

// release ends a request: it counts its latency (or its drop; a zero start
// counts nothing), moves the limit when a window is complete, and hands
// free capacity to the queue's oldest waiters.
func (l *Limiter) release(start time.Time, dropped bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case start.IsZero():
	case dropped:
		l.winDrops++
	default:
		l.winSum += now.Sub(start)
		l.winN++
	}
	if now.Sub(l.winStart) >= l.cfg.Window && l.winN+l.winDrops >= l.cfg.MinSamples {
		l.update(now)
	}
	l.inflight--
	for float64(l.inflight) < l.limit && len(l.queue) > 0 {
		w := l.queue[0]
		l.queue[0] = nil
		l.queue = l.queue[1:]
		w.granted = true
		l.admit()
		close(w.ready)
	}
	if len(l.queue) == 0 {
		l.lastEmpty = now
	}
}

// update moves the limit at the end of a window; l.mu is held.
func (l *Limiter) update(now time.Time) {
	target := l.limit
	var mean time.Duration
	if l.winN > 0 {
		mean = l.winSum / time.Duration(l.winN)
		base := l.baseline(now, mean)
		gradient := min(max(l.cfg.Tolerance*float64(base)/float64(mean), 0.5), 1)
		switch {
		case gradient == 1 && 2*l.winPeak >= int(l.limit):
			target += math.Sqrt(l.limit)
		case gradient < 1 && l.winPeak >= int(l.limit):
			// Only a limit that was reached is cut: one that constrained
			// nothing cannot be what made latency rise, and cutting it on
			// noise would shed at low load.
			target = gradient * l.limit
		}
	}
	if l.winDrops > 0 || (l.cfg.MaxLatency > 0 && mean > l.cfg.MaxLatency) {
		target = min(target, 0.9*l.limit)
	}
	l.limit += l.cfg.Smoothing * (target - l.limit)
	l.limit = min(max(l.limit, float64(l.cfg.MinLimit)), float64(l.cfg.MaxLimit))
	l.winStart, l.winSum, l.winN, l.winDrops, l.winPeak = now, 0, 0, 0, l.inflight
}

// baseline records a window's mean and returns the lowest mean within the
// horizon; l.mu is held.
func (l *Limiter) baseline(now time.Time, mean time.Duration) time.Duration {
	span := int64(l.cfg.BaselineHorizon) / baselineBuckets
	epoch := now.UnixNano()/span + 1 // never 0, the empty bucket's
	b := &l.buckets[epoch%baselineBuckets]
	if b.epoch != epoch {
		*b = bucket{epoch: epoch, min: mean}
	}
	b.min = min(b.min, mean)
	lowest := mean
	for _, b := range l.buckets {
		if b.epoch > epoch-baselineBuckets && b.min < lowest {
			lowest = b.min
		}
	}
	return lowest
}
