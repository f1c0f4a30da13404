package http

import (
	"bytes"
	"cmp"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/holdfast/holdfast"
)

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holdfast_http_requests_total", Help: "HTTP requests by route, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "holdfast_http_request_duration_seconds", Help: "HTTP request latency by route, method and status.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method", "status"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.duration} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) observe(route, method string, status int, d time.Duration) {
	if status == 0 {
		status = 499 // the client went away before anything was written
	}
	st := strconv.Itoa(status)
	m.requests.WithLabelValues(route, method, st).Inc()
	m.duration.WithLabelValues(route, method, st).Observe(d.Seconds())
}

// metricsWait is how long a scrape waits for the one before it to finish
// before it is refused (503): scrapes are normally seconds apart and take
// milliseconds, so a wait means a flood or a stuck source.
const metricsWait = time.Second

// metricsHandler serves /metrics one scrape at a time: /metrics needs no
// credentials, so a flood of scrapes must not become a flood of gathers
// (and of the NATS and database calls some collectors make, see
// CachedCollector). A scrape that cannot have its turn within metricsWait
// gets 503 overloaded. The page is rendered into memory during the turn
// and sent after it, so a client that reads slowly holds up no one.
func (s *Server) metricsHandler() http.Handler {
	gather := promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{})
	turn := make(chan struct{}, 1)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case turn <- struct{}{}:
		default:
			timer := time.NewTimer(metricsWait)
			defer timer.Stop()
			select {
			case turn <- struct{}{}:
			case <-timer.C:
				s.Error(w, r, holdfast.Errorf(holdfast.EOVERLOADED, "another scrape is in progress; retry shortly"))
				return
			case <-r.Context().Done():
				s.Error(w, r, r.Context().Err())
				return
			}
		}
		page := &bufferedResponse{header: http.Header{}}
		gather.ServeHTTP(page, r)
		<-turn
		for k, v := range page.header {
			w.Header()[k] = v
		}
		w.WriteHeader(cmp.Or(page.status, http.StatusOK))
		w.Write(page.body.Bytes())
	})
}

// bufferedResponse is a response rendered into memory.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) { return b.body.Write(p) }

// apiMetricsHandler is /metrics on the API's listener: the scrape handler,
// or, when /metrics has a listener of its own (Config.MetricsAddr), a 404.
func (s *Server) apiMetricsHandler() http.Handler {
	if s.cfg.MetricsAddr == "" {
		return s.metricsHandler()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Error(w, r, holdfast.Errorf(holdfast.ENOTFOUND, "/metrics is served on the metrics address"))
	})
}

// metricsRoutes is the handler of the metrics listener (Config.MetricsAddr).
func (s *Server) metricsRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metricsHandler())
	return s.observe(mux)
}

// DefaultMetricsCacheTTL is how long a CachedCollector serves a copy by default.
const DefaultMetricsCacheTTL = 5 * time.Second

// CachedCollector serves another collector's metrics from a copy at most
// TTL old, so that scrapes, however many and however often, ask its
// source (consumer lag from JetStream, queue depths, anything that costs a
// call to NATS or PostgreSQL) at most once per TTL. Concurrent scrapes of
// a stale copy wait for one collection and share it.
type CachedCollector struct {
	c   prometheus.Collector
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	valid   bool
	at      time.Time // when the copy was collected
	metrics []prometheus.Metric
}

// NewCachedCollector returns c cached for ttl; ttl ≤ 0 means
// DefaultMetricsCacheTTL.
func NewCachedCollector(c prometheus.Collector, ttl time.Duration) *CachedCollector {
	if ttl <= 0 {
		ttl = DefaultMetricsCacheTTL
	}
	return &CachedCollector{c: c, ttl: ttl, now: time.Now}
}

// Describe describes the source's metrics (it makes no call).
func (c *CachedCollector) Describe(ch chan<- *prometheus.Desc) { c.c.Describe(ch) }

// Collect sends the copy, collecting a new one first if it is TTL old.
func (c *CachedCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.copy() {
		ch <- m
	}
}

func (c *CachedCollector) copy() []prometheus.Metric {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.valid && now.Before(c.at.Add(c.ttl)) {
		return c.metrics
	}
	buf := make(chan prometheus.Metric)
	done := make(chan []prometheus.Metric)
	go func() {
		var got []prometheus.Metric
		for m := range buf {
			got = append(got, m)
		}
		done <- got
	}()
	func() {
		defer close(buf)
		c.c.Collect(buf)
	}()
	c.metrics, c.at, c.valid = <-done, now, true
	return c.metrics
}
