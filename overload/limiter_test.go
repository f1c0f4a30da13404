package overload_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/overload"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func MustLimiter(tb testing.TB, cfg overload.LimiterConfig) *overload.Limiter {
	tb.Helper()
	l, err := overload.NewLimiter(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// serve runs windows of requests with the given latency on the fake
// clock: each round takes every permit the limit allows at once, lets
// latency pass, and releases them all. It returns the limit after.
func serve(t *testing.T, l *overload.Limiter, clock *fakeClock, latency time.Duration, rounds int) int {
	t.Helper()
	for range rounds {
		n := l.Limit()
		permits := make([]overload.Permit, 0, n)
		for range n {
			p, err := l.Acquire(context.Background())
			if err != nil {
				t.Fatalf("acquire below the limit: %v", err)
			}
			permits = append(permits, p)
		}
		clock.Advance(latency)
		for _, p := range permits {
			p.Release()
		}
	}
	return l.Limit()
}

// TestLimiter_FollowsLatency: the limit grows while latency stays at the
// baseline and the limit is in use, falls when latency rises (queueing
// downstream), and grows again when latency falls back.
func TestLimiter_FollowsLatency(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Unix(1_000_000, 0)}
	l := MustLimiter(t, overload.LimiterConfig{
		InitialLimit: 20, MinLimit: 5, MaxLimit: 500, Window: 100 * time.Millisecond, MinSamples: 10, Now: clock.Now,
	})
	healthy := serve(t, l, clock, 10*time.Millisecond, 50)
	if healthy <= 20 {
		t.Fatalf("limit %d after healthy windows, want above the initial 20", healthy)
	}
	slow := serve(t, l, clock, 80*time.Millisecond, 10)
	if slow >= healthy {
		t.Fatalf("limit %d after latency rose 8×, want below %d", slow, healthy)
	}
	if slow < 5 {
		t.Fatalf("limit %d below its minimum 5", slow)
	}
	recovered := serve(t, l, clock, 10*time.Millisecond, 50)
	t.Logf("limit: %d healthy, %d slow, %d recovered", healthy, slow, recovered)
	if recovered <= slow {
		t.Fatalf("limit %d after latency fell back, want above %d", recovered, slow)
	}
}

// TestLimiter_AppLimitedDoesNotGrow: a limit that is not in use (less
// than half of it in flight) does not grow, however fast requests are.
func TestLimiter_AppLimitedDoesNotGrow(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Unix(1_000_000, 0)}
	l := MustLimiter(t, overload.LimiterConfig{InitialLimit: 40, MinSamples: 1, Now: clock.Now})
	for range 100 {
		p, err := l.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		clock.Advance(100 * time.Millisecond)
		p.Release()
	}
	if got := l.Limit(); got != 40 {
		t.Fatalf("limit %d after one request at a time, want it to stay 40", got)
	}
}

// TestLimiter_DropsCutTheLimit: requests that fail for lack of capacity
// downstream cut the limit even when latency looks fine.
func TestLimiter_DropsCutTheLimit(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Unix(1_000_000, 0)}
	l := MustLimiter(t, overload.LimiterConfig{InitialLimit: 100, MinLimit: 5, MinSamples: 10, Now: clock.Now})
	for range 10 {
		n := l.Limit()
		permits := make([]overload.Permit, 0, n)
		for range n {
			p, err := l.Acquire(context.Background())
			if err != nil {
				t.Fatalf("acquire below the limit: %v", err)
			}
			permits = append(permits, p)
		}
		clock.Advance(100 * time.Millisecond)
		for _, p := range permits {
			p.Drop()
		}
	}
	if got := l.Limit(); got >= 100 {
		t.Fatalf("limit %d after windows of drops, want below 100", got)
	}
}

// TestLimiter_FullQueueRefusesAtOnce: at the limit a request waits in the
// queue; with the queue full the next is refused with EOVERLOADED at once;
// a release hands the freed permit to the waiting request.
func TestLimiter_FullQueueRefusesAtOnce(t *testing.T) {
	t.Parallel()
	l := MustLimiter(t, overload.LimiterConfig{InitialLimit: 2, MinLimit: 2, MaxLimit: 2, QueueSize: 1, QueueInterval: time.Hour, QueueTarget: time.Hour})
	ctx := context.Background()
	p1, err1 := l.Acquire(ctx)
	_, err2 := l.Acquire(ctx)
	if err1 != nil || err2 != nil {
		t.Fatalf("below the limit: %v, %v", err1, err2)
	}
	got := make(chan error)
	go func() {
		p, err := l.Acquire(ctx)
		if err == nil {
			defer p.Release()
		}
		got <- err
	}()
	waitFor(func() bool { return l.Queued() == 1 })
	if _, err := l.Acquire(ctx); !errors.Is(err, overload.ErrLimit) || !holdfast.IsCode(err, holdfast.EOVERLOADED) {
		t.Fatalf("with the queue full: %v, want ErrLimit (EOVERLOADED)", err)
	}
	p1.Release()
	if err := <-got; err != nil {
		t.Fatalf("queued request: %v, want the released permit", err)
	}
	if l.InFlight() != 1 {
		t.Fatalf("in flight %d, want 1", l.InFlight())
	}
}

// TestLimiter_QueueTimeout: a queued request that gets no capacity within
// its queue timeout is refused with EOVERLOADED.
func TestLimiter_QueueTimeout(t *testing.T) {
	t.Parallel()
	l := MustLimiter(t, overload.LimiterConfig{InitialLimit: 1, MinLimit: 1, MaxLimit: 1, QueueInterval: time.Millisecond, QueueTarget: time.Millisecond})
	p, _ := l.Acquire(context.Background())
	defer p.Release()
	if _, err := l.Acquire(context.Background()); !errors.Is(err, overload.ErrQueueTimeout) || !holdfast.IsCode(err, holdfast.EOVERLOADED) {
		t.Fatalf("Acquire = %v, want ErrQueueTimeout (EOVERLOADED)", err)
	}
	if l.Queued() != 0 {
		t.Fatalf("%d left in the queue", l.Queued())
	}
}

// TestLimiter_ExpiredContext: a request whose deadline has passed is
// refused before taking a permit or a queue place.
func TestLimiter_ExpiredContext(t *testing.T) {
	t.Parallel()
	l := MustLimiter(t, overload.LimiterConfig{})
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if _, err := l.Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire = %v, want context.DeadlineExceeded", err)
	}
	if l.InFlight() != 0 || l.Queued() != 0 {
		t.Fatalf("in flight %d, queued %d, want 0", l.InFlight(), l.Queued())
	}
}

// TestLimiter_ConcurrentNeverExceedsLimit: many goroutines acquiring and
// releasing a fixed limit never hold more than it, and every request is
// either admitted or refused with EOVERLOADED.
func TestLimiter_ConcurrentNeverExceedsLimit(t *testing.T) {
	t.Parallel()
	const limit = 5
	l := MustLimiter(t, overload.LimiterConfig{InitialLimit: limit, MinLimit: limit, MaxLimit: limit})
	var holding, peak, admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for range 200 {
				p, err := l.Acquire(context.Background())
				if err != nil {
					if !holdfast.IsCode(err, holdfast.EOVERLOADED) {
						t.Error(err)
					}
					refused.Add(1)
					continue
				}
				n := holding.Add(1)
				for q := peak.Load(); n > q && !peak.CompareAndSwap(q, n); q = peak.Load() {
				}
				holding.Add(-1)
				p.Release()
				admitted.Add(1)
			}
		})
	}
	wg.Wait()
	if peak.Load() > limit {
		t.Fatalf("%d held at once, limit %d", peak.Load(), limit)
	}
	if admitted.Load()+refused.Load() != 64*200 || admitted.Load() == 0 {
		t.Fatalf("admitted %d + refused %d, want %d", admitted.Load(), refused.Load(), 64*200)
	}
	if l.InFlight() != 0 || l.Queued() != 0 {
		t.Fatalf("in flight %d, queued %d after the run", l.InFlight(), l.Queued())
	}
}

// BenchmarkLimiter_AcquireRelease is the per-request cost of admission
// below the limit, from parallel goroutines.
func BenchmarkLimiter_AcquireRelease(b *testing.B) {
	l := MustLimiter(b, overload.LimiterConfig{InitialLimit: 1000, MinLimit: 1000, MaxLimit: 1000})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p, err := l.Acquire(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			p.Release()
		}
	})
}

// BenchmarkLimiter_Shed is the cost of refusing a request at a full limit
// with no queue.
func BenchmarkLimiter_Shed(b *testing.B) {
	l := MustLimiter(b, overload.LimiterConfig{InitialLimit: 1, MinLimit: 1, MaxLimit: 1, QueueSize: -1})
	p, _ := l.Acquire(context.Background())
	defer p.Release()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Acquire(context.Background()); err == nil {
				b.Fatal("admitted past the limit")
			}
		}
	})
}

// TestAdmission_WriteFloor: the Writes class has its own floor (group
// commit needs concurrency to fill its batches); the other classes keep
// the shared one, and drops cut writes no lower than their floor.
func TestAdmission_WriteFloor(t *testing.T) {
	a, err := overload.NewAdmission(overload.AdmissionConfig{
		Limiter:       overload.LimiterConfig{MinLimit: 10, InitialLimit: 10, MaxLimit: 100, Window: time.Nanosecond, MinSamples: 1},
		WriteMinLimit: 500,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Limiter(overload.Reads).Limit(); got != 10 {
		t.Fatalf("reads limit %d, want 10", got)
	}
	w := a.Limiter(overload.Writes)
	if got := w.Limit(); got != 500 {
		t.Fatalf("writes limit %d, want its floor 500", got)
	}
	for range 50 { // every request dropped: the strongest congestion signal
		p, err := w.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		p.Drop()
	}
	if got := w.Limit(); got != 500 {
		t.Fatalf("writes limit %d after drops, want its floor 500", got)
	}
}
