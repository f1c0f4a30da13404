package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast"
)

// OutboxCountCap is how many of the outbox's oldest rows OutboxBacklog
// reads at most, so that reading the backlog costs a bounded walk of the
// primary key however far the relay is behind.
const OutboxCountCap = 10_000

// OutboxBacklog returns, for each topic the relay serves, the rows waiting
// in the outbox and the time the oldest occurred, read from the oldest
// OutboxCountCap rows: past that every count is a lower bound (AtLeast),
// and a topic none of whose rows is among them shows none.
func OutboxBacklog(ctx context.Context, db *DB) ([]holdfast.OutboxBacklog, error) {
	rows, _ := db.Pool.Query(ctx, `WITH head AS MATERIALIZED (
			SELECT topic, occurred_at, row_number() OVER (ORDER BY seq) AS n FROM outbox ORDER BY seq LIMIT $2 + 1)
		SELECT t.topic, count(h.topic) FILTER (WHERE h.n <= $2), min(h.occurred_at) FILTER (WHERE h.n <= $2),
			(SELECT count(*) > $2 FROM head)
		FROM unnest($1::text[]) AS t(topic) LEFT JOIN head h ON h.topic = t.topic
		GROUP BY t.topic ORDER BY t.topic`, []string{holdfast.TopicEvents, holdfast.TopicJobs}, OutboxCountCap)
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
	outboxRowsDesc   = prometheus.NewDesc("holdfast_outbox_rows", "Rows waiting in the outbox, by topic (counted among its oldest 10,000).", []string{"topic"}, nil)
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
