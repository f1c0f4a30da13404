package http

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// expensiveCollector stands for a collector that asks NATS or PostgreSQL
// at every Collect; it counts its calls and reports the count.
type expensiveCollector struct{ calls atomic.Int64 }

var expensiveDesc = prometheus.NewDesc("test_expensive_calls", "Collect calls.", nil, nil)

func (c *expensiveCollector) Describe(ch chan<- *prometheus.Desc) { ch <- expensiveDesc }

func (c *expensiveCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.calls.Add(1)
	ch <- prometheus.MustNewConstMetric(expensiveDesc, prometheus.GaugeValue, float64(n))
}

// TestCachedCollector_QueriesOncePerInterval: however many scrapes,
// sequential or concurrent, a cached collector asks its source once per
// TTL (on a fake clock) and serves what it got in between.
func TestCachedCollector_QueriesOncePerInterval(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	src := &expensiveCollector{}
	cached := NewCachedCollector(src, 5*time.Second)
	cached.now = clock
	reg := prometheus.NewRegistry()
	reg.MustRegister(cached)
	gather := func() float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		if len(mfs) != 1 || len(mfs[0].Metric) != 1 {
			t.Fatalf("gathered %v, want the one gauge", mfs)
		}
		return mfs[0].Metric[0].GetGauge().GetValue()
	}

	for range 10 {
		if v := gather(); v != 1 {
			t.Fatalf("served value %v, want the first collection's 1", v)
		}
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() { defer wg.Done(); gather() }()
	}
	wg.Wait()
	if n := src.calls.Load(); n != 1 {
		t.Fatalf("%d collections for 30 scrapes within the TTL, want 1", n)
	}
	advance(5*time.Second - time.Nanosecond)
	gather()
	if n := src.calls.Load(); n != 1 {
		t.Fatalf("%d collections just before the TTL ran out, want 1", n)
	}
	advance(time.Nanosecond)
	for range 20 {
		wg.Add(1)
		go func() { defer wg.Done(); gather() }()
	}
	wg.Wait()
	if n := src.calls.Load(); n != 2 {
		t.Fatalf("%d collections after one TTL, with 20 concurrent scrapes, want 2", n)
	}
	if v := gather(); v != 2 {
		t.Fatalf("served value %v after the second collection, want 2", v)
	}
}
