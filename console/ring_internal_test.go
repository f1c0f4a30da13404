package console

import (
	"fmt"
	"math"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// However long it runs and however many series appear, the ring keeps
// size samples of at most maxSeries series, oldest first.
func TestRing_StaysBounded(t *testing.T) {
	r := NewRing(10, 3)
	start := time.Unix(1000, 0)
	for i := 0; i < 1000; i++ {
		r.Append(start.Add(time.Duration(i)*time.Second), map[string]float64{"a/x": float64(i), fmt.Sprintf("b/%d", i): 1})
	}
	w := r.Since(0)
	if len(w.Times) != 10 || len(w.Series) != 3 {
		t.Fatalf("%d samples of %d series, want 10 of 3", len(w.Times), len(w.Series))
	}
	if got := w.Values["a/x"]; got[0] != 990 || got[9] != 999 {
		t.Fatalf("a/x = %v, want 990…999", got)
	}
	if w.Times[0] != start.Add(990*time.Second).UnixMilli() {
		t.Fatalf("oldest sample at %d", w.Times[0])
	}
	if got := r.Since(w.Times[7]); len(got.Times) != 2 {
		t.Fatalf("since the 8th sample: %d samples, want 2", len(got.Times))
	}
	if !math.IsNaN(r.Latest("b/1")) || r.Latest("a/x") != 999 {
		t.Fatalf("latest: %v %v", r.Latest("b/1"), r.Latest("a/x"))
	}
}

// The sampler turns counters into rates and histograms into the quantiles
// of what was observed between two samples, leaving the console's own
// requests out.
func TestSampler_RatesAndQuantiles(t *testing.T) {
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "holdfast_http_requests_total"}, []string{"route", "method", "status"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "holdfast_http_request_duration_seconds",
		Buckets: []float64{.001, .01, .1, 1}}, []string{"route", "method", "status"})
	shed := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "holdfast_admission_shed_total"}, []string{"class", "reason"})
	limit := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "holdfast_admission_limit"}, []string{"class"})
	reg.MustRegister(requests, latency, shed, limit)
	ring := NewRing(100, maxSeries)
	s := NewSampler(reg, ring, time.Second)
	t0 := time.Unix(2000, 0)
	requests.WithLabelValues("POST /v1/transfers", "POST", "201").Add(1000)
	s.Sample(t0)
	if len(ring.Since(0).Times) != 0 {
		t.Fatal("the first sample, a baseline, was stored")
	}
	for i := 0; i < 98; i++ {
		requests.WithLabelValues("POST /v1/transfers", "POST", "201").Inc()
		latency.WithLabelValues("POST /v1/transfers", "POST", "201").Observe(0.005)
	}
	for i := 0; i < 2; i++ {
		requests.WithLabelValues("POST /v1/transfers", "POST", "503").Inc()
		latency.WithLabelValues("POST /v1/transfers", "POST", "503").Observe(0.5)
	}
	requests.WithLabelValues("GET /console/api/series", "GET", "200").Add(500)
	latency.WithLabelValues("GET /console/api/series", "GET", "200").Observe(5)
	requests.WithLabelValues("GET /metrics", "GET", "200").Add(500)
	shed.WithLabelValues("writes", "limit").Add(4)
	limit.WithLabelValues("writes").Set(1000)
	s.Sample(t0.Add(2 * time.Second))
	for name, want := range map[string]float64{"requests/all": 50, "requests/5xx": 1, "shed/limit": 2, "limits/writes": 1000} {
		if got := ring.Latest(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	// 98 of 100 observations at 5 ms (in (1 ms, 10 ms]), 2 at 500 ms: the
	// median is within the first bucket, the 99th percentile in (100 ms, 1 s].
	if p50 := ring.Latest("latency/p50"); !(p50 > 1 && p50 <= 10) {
		t.Errorf("p50 = %v ms, want within (1, 10]", p50)
	}
	if p99 := ring.Latest("latency/p99"); !(p99 > 100 && p99 <= 1000) {
		t.Errorf("p99 = %v ms, want within (100, 1000]", p99)
	}
	s.Sample(t0.Add(3 * time.Second))
	if got := ring.Latest("requests/all"); got != 0 {
		t.Errorf("requests/all without requests = %v", got)
	}
	if got := ring.Latest("latency/p99"); !math.IsNaN(got) {
		t.Errorf("p99 without requests = %v, want unknown", got)
	}
}

// BenchmarkSeries_FullRing measures /console/api/series with a full ring
// (15 minutes of 20 series): what a browser's first poll costs; later
// polls ask only for the samples after their last.
func BenchmarkSeries_FullRing(b *testing.B) {
	c, err := New(Config{AdminToken: "benchmark-admin-token-0123456789abcdef", Live: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now().Add(-15 * time.Minute)
	for i := 0; i < 900; i++ {
		v := map[string]float64{}
		for _, ch := range charts {
			for k := 0; k < 3; k++ {
				v[fmt.Sprintf("%s/s%d", ch.ID, k)] = float64(i * k)
			}
		}
		c.ring.Append(start.Add(time.Duration(i)*time.Second), v)
	}
	for b.Loop() {
		rec := httptest.NewRecorder()
		c.handleSeries(rec, httptest.NewRequest("GET", "/console/api/series", nil))
		b.SetBytes(int64(rec.Body.Len()))
	}
}
