package webhooks

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast"
)

// Metrics counts this replica's attempts and measures delivery.
type Metrics struct {
	attempts *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	lag      prometheus.Histogram
}

// NewMetrics returns the metrics, registered with reg when it is not nil.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holdfast_webhook_attempts_total", Help: "Webhook attempts by result (succeeded, failed, timeout, refused)."}, []string{"result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "holdfast_webhook_attempt_seconds", Help: "Time of one webhook attempt, by result.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}, []string{"result"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "holdfast_webhook_delivery_lag_seconds", Help: "From a message's fan-out to its successful delivery to one endpoint.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 24)}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.attempts, m.latency, m.lag} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *Metrics) attempted(o *Outcome, now time.Time) {
	if m == nil {
		return
	}
	m.attempts.WithLabelValues(o.Result).Inc()
	m.latency.WithLabelValues(o.Result).Observe(o.Latency.Seconds())
	if o.Result == holdfast.WebhookSucceeded {
		m.lag.Observe(now.Sub(o.Delivery.CreatedAt).Seconds())
	}
}

// StatsCollector reports Store.Stats across replicas: endpoints by state,
// deliveries due and the oldest one's wait (the delivery backlog). Wrap it
// in a cache: each collection asks the database.
type StatsCollector struct {
	store  Store
	logger *slog.Logger
	states *prometheus.Desc
	due    *prometheus.Desc
	oldest *prometheus.Desc
}

// NewStatsCollector returns a collector of store's stats.
func NewStatsCollector(store Store, logger *slog.Logger) *StatsCollector {
	return &StatsCollector{store: store, logger: logger,
		states: prometheus.NewDesc("holdfast_webhook_endpoints", "Webhook endpoints by state (healthy, backing_off, open, disabled).", []string{"state"}, nil),
		due:    prometheus.NewDesc("holdfast_webhook_deliveries_due", "Webhook deliveries due and not being attempted.", nil, nil),
		oldest: prometheus.NewDesc("holdfast_webhook_oldest_due_seconds", "How long the oldest due webhook delivery has waited.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *StatsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.states
	ch <- c.due
	ch <- c.oldest
}

// Collect implements prometheus.Collector.
func (c *StatsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.store.Stats(ctx, time.Now())
	if err != nil {
		c.logger.Warn("webhook stats", "err", err)
		return
	}
	for _, s := range []string{holdfast.WebhookHealthy, holdfast.WebhookBackingOff, holdfast.WebhookOpen, holdfast.WebhookDisabled} {
		ch <- prometheus.MustNewConstMetric(c.states, prometheus.GaugeValue, float64(st.Endpoints[s]), s)
	}
	ch <- prometheus.MustNewConstMetric(c.due, prometheus.GaugeValue, float64(st.Due))
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, st.OldestDue.Seconds())
}

func byteReader(b []byte) io.Reader { return bytes.NewReader(b) }
