package console

import (
	"context"
	"math"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/holdfast/holdfast/internal/lifecycle"
)

// A chart of the overview: its series are the ring's series whose names
// start with its ID and a slash.
type chart struct {
	ID, Title, Unit string
}

// charts are the overview's, in the order shown.
var charts = []chart{
	{"requests", "Requests", "req/s"},
	{"latency", "Latency", "ms"},
	{"shed", "Shed by reason", "req/s"},
	{"batch", "Group-commit batch size", "requests"},
	{"queue", "Group-commit queue wait", "ms"},
	{"pool", "Request pool in use", "%"},
	{"limits", "Adaptive limits by class", "requests"},
}

// Sampler samples the process's own metrics into a Ring every interval.
// It asks a Gatherer of in-process metrics only (no collector that calls
// PostgreSQL or NATS), so sampling costs the process microseconds and
// nothing else.
type Sampler struct {
	gatherer prometheus.Gatherer
	every    time.Duration
	ring     *Ring
	runner   lifecycle.Runner
	prev     *snapshot
}

// NewSampler returns a sampler of g into ring, every interval.
func NewSampler(g prometheus.Gatherer, ring *Ring, every time.Duration) *Sampler {
	return &Sampler{gatherer: g, ring: ring, every: every}
}

// Start samples in the background until Stop.
func (s *Sampler) Start(ctx context.Context) {
	ctx = s.runner.Start(ctx)
	s.runner.Go(func() {
		for {
			s.Sample(time.Now())
			if !lifecycle.Sleep(ctx, s.every) {
				return
			}
		}
	})
}

// Stop stops sampling; it is safe before Start and more than once.
func (s *Sampler) Stop() { s.runner.Stop() }

// Sample takes one sample at now (the background loop's step; tests call it
// to sample on their own clock). The first sample only sets the baseline of
// the rates.
func (s *Sampler) Sample(now time.Time) {
	fams, err := s.gatherer.Gather()
	if err != nil && len(fams) == 0 {
		return
	}
	snap := takeSnapshot(indexFamilies(fams), now)
	if s.prev != nil {
		if dt := now.Sub(s.prev.at).Seconds(); dt > 0 {
			s.ring.Append(now, snap.since(s.prev, dt))
		}
	}
	s.prev = snap
}

// snapshot is what one gather said: counters and histograms to take rates
// from, gauges as they are.
type snapshot struct {
	at              time.Time
	requests        float64
	errors          float64
	latency         hist
	shed            map[string]float64
	batch, queue    hist
	poolUse, poolOK float64
	limits          map[string]float64
}

// charted reports whether a request is one the charts count: the console's
// own polls and the scrapes of /metrics are left out.
func charted(m *dto.Metric) bool {
	r := label(m, "route") // "GET /console/api/series": a pattern, its method first
	_, path, ok := strings.Cut(r, " ")
	if !ok {
		path = r
	}
	return !strings.HasPrefix(path, "/console") && path != "/metrics"
}

func takeSnapshot(f families, at time.Time) *snapshot {
	s := &snapshot{at: at, shed: f.by("holdfast_admission_shed_total", "reason"), limits: f.by("holdfast_admission_limit", "class")}
	s.requests, _ = f.sum("holdfast_http_requests_total", charted)
	s.errors, _ = f.sum("holdfast_http_requests_total", func(m *dto.Metric) bool {
		return charted(m) && strings.HasPrefix(label(m, "status"), "5")
	})
	s.latency, _ = f.histogram("holdfast_http_request_duration_seconds", charted)
	if n, ok := f.sum("holdfast_ledger_shed_total", nil); ok {
		s.shed["group-commit"] += n
	}
	s.batch, _ = f.histogram("holdfast_ledger_batch_size", nil)
	s.queue, _ = f.histogram("holdfast_ledger_queue_wait_seconds", nil)
	acquired, _ := f.sum("holdfast_db_pool_conns", func(m *dto.Metric) bool { return label(m, "state") == "acquired" })
	if maxConns, ok := f.sum("holdfast_db_pool_max_conns", nil); ok && maxConns > 0 {
		s.poolUse, s.poolOK = 100*acquired/maxConns, 1
	}
	return s
}

// since returns the sample's values: rates over the dt seconds since prev,
// the distributions of what was observed since, and the gauges.
func (s *snapshot) since(prev *snapshot, dt float64) map[string]float64 {
	rate := func(now, before float64) float64 { return math.Max(0, now-before) / dt }
	v := map[string]float64{
		"requests/all": rate(s.requests, prev.requests),
		"requests/5xx": rate(s.errors, prev.errors),
		"latency/p50":  1000 * s.latency.minus(prev.latency).quantile(0.50),
		"latency/p99":  1000 * s.latency.minus(prev.latency).quantile(0.99),
		"batch/mean":   s.batch.minus(prev.batch).mean(),
		"queue/mean":   1000 * s.queue.minus(prev.queue).mean(),
		"queue/p99":    1000 * s.queue.minus(prev.queue).quantile(0.99),
	}
	for reason, n := range s.shed {
		v["shed/"+reason] = rate(n, prev.shed[reason])
	}
	if s.poolOK == 1 {
		v["pool/requests"] = s.poolUse
	}
	for class, l := range s.limits {
		v["limits/"+class] = l
	}
	return v
}
