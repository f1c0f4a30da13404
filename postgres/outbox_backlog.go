package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast"
)

// OutboxCountCap is how many of each topic's oldest rows OutboxBacklog
// reads at most, so that reading the backlog costs a bounded walk of the
// (topic, seq) index however far the relay is behind.
const OutboxCountCap = 10_000

// OutboxBacklog returns, for each topic the relay serves, the rows waiting
// in the outbox and the time the oldest occurred, read from the topic's
// oldest OutboxCountCap rows: past that its count is a lower bound
// (AtLeast). Each topic is counted on its own, so a topic blocked behind a
// full stream does not hide another's backlog.
func OutboxBacklog(ctx context.Context, db *DB) ([]holdfast.OutboxBacklog, error) {
	rows, _ := db.Pool.Query(ctx, `SELECT t.topic, least(h.n, $2), h.oldest, h.n > $2
		FROM unnest($1::text[]) AS t(topic)
		CROSS JOIN LATERAL (SELECT count(*) AS n, min(occurred_at) AS oldest FROM (
			SELECT o.occurred_at FROM outbox o WHERE o.topic = t.topic ORDER BY o.topic, o.seq LIMIT $2 + 1) head) h
		ORDER BY t.topic`, []string{holdfast.TopicEvents, holdfast.TopicJobs}, OutboxCountCap)
	defer rows.Close()
	var out []holdfast.OutboxBacklog
	for rows.Next() {
		var b holdfast.OutboxBacklog
		var oldest *time.Time
		if err := rows.Scan(&b.Topic, &b.Rows, &oldest, &b.AtLeast); err != nil {
			return nil, fmt.Errorf("outbox backlog: %w", err)
		}
		if oldest != nil {
			b.Oldest = oldest.UTC()
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox backlog: %w", contextError(ctx, err))
	}
	return out, nil
}

// OutboxReader reads the outbox's backlog (for the console).
type OutboxReader struct{ DB *DB }

// OutboxBacklog returns OutboxBacklog(ctx, r.DB).
func (r OutboxReader) OutboxBacklog(ctx context.Context) ([]holdfast.OutboxBacklog, error) {
	return OutboxBacklog(ctx, r.DB)
}

var (
	outboxRowsDesc   = prometheus.NewDesc("holdfast_outbox_rows", "Rows waiting in the outbox, by topic (counted up to 10,000 a topic).", []string{"topic"}, nil)
	outboxOldestDesc = prometheus.NewDesc("holdfast_outbox_oldest_seconds", "Age of the oldest row waiting in the outbox, by topic (0 when none waits).", []string{"topic"}, nil)
)

// OutboxCollector returns gauges of the outbox's backlog, read from the
// database at each collection: register it behind a cache (see
// holdfasthttp.CachedCollector).
func OutboxCollector(db *DB) prometheus.Collector { return outboxCollector{db} }

type outboxCollector struct{ db *DB }

func (c outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- outboxRowsDesc
	ch <- outboxOldestDesc
}

func (c outboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	backlog, err := OutboxBacklog(ctx, c.db)
	if err != nil {
		return // the gauges are absent while the database cannot say
	}
	now := c.db.now()
	for _, b := range backlog {
		age := 0.0
		if !b.Oldest.IsZero() {
			age = max(0, now.Sub(b.Oldest).Seconds())
		}
		ch <- prometheus.MustNewConstMetric(outboxRowsDesc, prometheus.GaugeValue, float64(b.Rows), b.Topic)
		ch <- prometheus.MustNewConstMetric(outboxOldestDesc, prometheus.GaugeValue, age, b.Topic)
	}
}
