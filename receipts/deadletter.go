package receipts

import (
	"context"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast"
)

// DeadLetters lists and redrives dead-lettered jobs; it implements
// holdfast.DeadLetterService.
type DeadLetters struct {
	store DeadLetterStore
	js    njs.JetStream
	cfg   Config
}

var _ holdfast.DeadLetterService = (*DeadLetters)(nil)

// NewDeadLetters returns the dead-letter admin.
func NewDeadLetters(store DeadLetterStore, js njs.JetStream, cfg Config) *DeadLetters {
	return &DeadLetters{store: store, js: js, cfg: cfg.WithDefaults()}
}

// ListDeadLetters lists dead letters not yet redriven, of one tenant when
// tenantID is not empty.
func (d *DeadLetters) ListDeadLetters(ctx context.Context, tenantID string, page holdfast.Page) ([]*holdfast.DeadLetter, string, error) {
	return d.store.ListDeadLetters(ctx, tenantID, page)
}

// Redrive queues the dead letter's receipt again (a new job, through the
// outbox) and removes the message from the dead-letter stream.
func (d *DeadLetters) Redrive(ctx context.Context, id string) (*holdfast.DeadLetter, error) {
	dl, seq, err := d.store.Redrive(ctx, id)
	if err != nil {
		return nil, err
	}
	if s, err := d.js.Stream(ctx, d.cfg.DeadStream); err == nil {
		s.DeleteMsg(ctx, seq) // already gone is fine: the database says what is redriven
	}
	return dl, nil
}

// Collector reads the pipeline's gauges at scrape time: queue depth, jobs
// in flight across replicas, dead letters, and the database connections
// this replica's workers hold (workerDB; none when nil).
func Collector(js njs.JetStream, cfg Config, workerDB ConnStats) prometheus.Collector {
	return &collector{js: js, cfg: cfg.WithDefaults(), db: workerDB}
}

var (
	depthDesc    = prometheus.NewDesc("holdfast_receipt_queue_depth", "Receipt jobs waiting, not yet delivered to a worker.", nil, nil)
	inFlightDesc = prometheus.NewDesc("holdfast_receipt_jobs_in_flight", "Receipt jobs delivered and not yet acknowledged, across replicas (at most the cap).", nil, nil)
	capDesc      = prometheus.NewDesc("holdfast_receipt_jobs_cap", "The most receipt jobs in flight across replicas.", nil, nil)
	deadDesc     = prometheus.NewDesc("holdfast_receipt_dead_letters", "Messages in the dead-letter stream.", nil, nil)
	connsDesc    = prometheus.NewDesc("holdfast_receipt_worker_db_connections", "Database connections held by this replica's receipt workers.", []string{"state"}, nil)
)

type collector struct {
	js  njs.JetStream
	cfg Config
	db  ConnStats
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{depthDesc, inFlightDesc, capDesc, deadDesc, connsDesc} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ch <- prometheus.MustNewConstMetric(capDesc, prometheus.GaugeValue, float64(c.cfg.Cap))
	if c.db != nil {
		acquired, open, most := c.db.ConnStats()
		ch <- prometheus.MustNewConstMetric(connsDesc, prometheus.GaugeValue, float64(acquired), "acquired")
		ch <- prometheus.MustNewConstMetric(connsDesc, prometheus.GaugeValue, float64(open), "open")
		ch <- prometheus.MustNewConstMetric(connsDesc, prometheus.GaugeValue, float64(most), "max")
	}
	if cons, err := c.js.Consumer(ctx, c.cfg.Stream, c.cfg.Consumer); err == nil {
		if info, err := cons.Info(ctx); err == nil {
			ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(info.NumPending))
			ch <- prometheus.MustNewConstMetric(inFlightDesc, prometheus.GaugeValue, float64(info.NumAckPending))
		}
	}
	if s, err := c.js.Stream(ctx, c.cfg.DeadStream); err == nil {
		if info, err := s.Info(ctx); err == nil {
			ch <- prometheus.MustNewConstMetric(deadDesc, prometheus.GaugeValue, float64(info.State.Msgs))
		}
	}
}
