package postgres

import "github.com/prometheus/client_golang/prometheus"

// Collector returns Prometheus gauges and counters of the pool's state.
func (db *DB) Collector() prometheus.Collector { return poolCollector{db} }

// ConnStats returns the pool's connections: acquired, open (acquired,
// idle or being opened) and the most it opens.
func (db *DB) ConnStats() (acquired, open, max int32) {
	s := db.Pool.Stat()
	return s.AcquiredConns(), s.TotalConns(), s.MaxConns()
}

type poolCollector struct{ db *DB }

var (
	poolMax      = prometheus.NewDesc("holdfast_db_pool_max_conns", "Largest size of the database pool.", nil, nil)
	poolTotal    = prometheus.NewDesc("holdfast_db_pool_conns", "Connections in the pool, by state.", []string{"state"}, nil)
	poolAcquires = prometheus.NewDesc("holdfast_db_pool_acquires_total", "Connection acquisitions.", nil, nil)
	poolEmpty    = prometheus.NewDesc("holdfast_db_pool_empty_acquires_total", "Acquisitions that had to wait for a connection.", nil, nil)
	poolCanceled = prometheus.NewDesc("holdfast_db_pool_canceled_acquires_total", "Acquisitions cancelled while waiting.", nil, nil)
	poolWait     = prometheus.NewDesc("holdfast_db_pool_acquire_wait_seconds_total", "Time spent waiting for connections.", nil, nil)
)

func (c poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolMax, poolTotal, poolAcquires, poolEmpty, poolCanceled, poolWait} {
		ch <- d
	}
}

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.db.Pool.Stat()
	ch <- prometheus.MustNewConstMetric(poolMax, prometheus.GaugeValue, float64(s.MaxConns()))
	ch <- prometheus.MustNewConstMetric(poolTotal, prometheus.GaugeValue, float64(s.AcquiredConns()), "acquired")
	ch <- prometheus.MustNewConstMetric(poolTotal, prometheus.GaugeValue, float64(s.IdleConns()), "idle")
	ch <- prometheus.MustNewConstMetric(poolTotal, prometheus.GaugeValue, float64(s.ConstructingConns()), "constructing")
	ch <- prometheus.MustNewConstMetric(poolAcquires, prometheus.CounterValue, float64(s.AcquireCount()))
	ch <- prometheus.MustNewConstMetric(poolEmpty, prometheus.CounterValue, float64(s.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(poolCanceled, prometheus.CounterValue, float64(s.CanceledAcquireCount()))
	ch <- prometheus.MustNewConstMetric(poolWait, prometheus.CounterValue, s.AcquireDuration().Seconds())
}
